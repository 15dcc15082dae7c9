import { useCallback, useEffect, useMemo, useRef, useState } from 'react'
import { dmRoomId, ROOM_ID, type Notification } from '@switchboard/client'
import { useClient, useConnection, useNotifications, usePresence, useRoom, useRooms } from '@switchboard/react'
import { api } from '../api.ts'
import { errorText } from '../chat/errors.ts'
import { dmPeer } from '../chat/words.ts'
import { lastRoom, type Session } from '../session.ts'
import { BAD_ROOM_ID, useJoinWithConfirm } from './JoinConfirm.tsx'
import { OpenRoom } from './OpenRoom.tsx'
import { RoomList, type RoomListItem } from './RoomList.tsx'
import { EmptyRoom } from './RoomPanel.tsx'
import { Sidebar } from './Sidebar.tsx'
import { ConnectionBanner, ErrorLine, type Connection } from './StatusLines.tsx'
import { useDocumentHidden, useUnreadTitle } from './useUnreadTitle.ts'

const ERROR_SHOWN_MS = 15_000
/** Join answers that will not change by trying again. */
const REFUSED = new Set(['FORBIDDEN', 'NOT_FOUND', 'BAD_REQUEST'])

/** The shown error line, replaced by the next one, gone after 15 s. */
function useErrorLine(): [{ id: number; text: string } | null, (text: string) => void, () => void] {
  const [error, setError] = useState<{ id: number; text: string } | null>(null)
  const next = useRef(0)
  useEffect(() => {
    if (!error) return
    const t = setTimeout(() => setError((e) => (e?.id === error.id ? null : e)), ERROR_SHOWN_MS)
    return () => clearTimeout(t)
  }, [error])
  const show = useCallback((text: string) => setError({ id: ++next.current, text }), [])
  const dismiss = useCallback(() => setError(null), [])
  return [error, show, dismiss]
}

/**
 * The signed-in app on the SDK (one `SwitchboardClient` per session, from the provider): the
 * room list (`useRooms`, live unread, DMs and mentions from `useNotifications`), the open room
 * (`useRoom`), presence, the connection banner, the unread count in the title.
 *
 * Every room opened in this session stays followed (a `<FollowRoom>` each), as before the SDK:
 * its unread count stays live and a reconnect syncs it. Leaving a view is not leaving the room
 * (D165): the membership is never ended from here.
 */
export function ChatPage({ session, onSignOut }: { session: Session; onSignOut(reason: string): void }) {
  const client = useClient()
  const conn = useConnection()
  const { rooms, loading } = useRooms()
  const notifications = useNotifications()
  const presence = usePresence()
  const me = session.userId
  const [error, showError, dismissError] = useErrorLine()
  const [openRoomId, setOpenRoomId] = useState<string | null>(() => {
    const last = lastRoom.get()
    return last && ROOM_ID.test(last) ? last : null
  })
  const [followed, setFollowed] = useState<readonly string[]>(() => (openRoomId ? [openRoomId] : []))
  /** When each room's notifications were last looked at (its line goes once the room is opened). */
  const [seenAt, setSeenAt] = useState<ReadonlyMap<string, string>>(() => new Map())

  // The session is over: an expired or refused token (a server disconnect at expiry ends up here too).
  const wasConnected = useRef(false)
  if (conn.status === 'connected') wasConnected.current = true
  useEffect(() => {
    const code = conn.error?.code
    if (!code?.startsWith('AUTH_')) return
    const why = code === 'AUTH_EXPIRED' ? 'your sign-in has expired' : code === 'AUTH_REQUIRED' ? 'a sign-in is needed' : 'your token was refused'
    onSignOut(wasConnected.current ? `The server ended your session: ${why} (${code}). Please sign in again.` : `${why[0].toUpperCase()}${why.slice(1)} (${code}). Please sign in again.`)
  }, [conn.error, onSignOut])

  /** User names this tab has seen (presence, notifications, messages of the open room): DM titles. */
  const names = useRef(new Map<string, string>())
  for (const [userId, name] of presence.online) if (name !== userId) names.current.set(userId, name)
  for (const n of notifications.items) names.current.set(n.from.userId, n.from.username)
  const nameOf = useCallback((userId: string) => names.current.get(userId), [])
  const titleOf = useCallback(
    (roomId: string, name?: string) => {
      const peer = dmPeer(roomId, me)
      if (peer !== null) return `@${names.current.get(peer) ?? peer}`
      return name ?? roomId
    },
    [me],
  )

  const open = useCallback(
    (roomId: string) => {
      if (!ROOM_ID.test(roomId)) return showError(BAD_ROOM_ID)
      setOpenRoomId(roomId)
      setFollowed((f) => (f.includes(roomId) ? f : [...f, roomId]))
      setSeenAt((m) => new Map(m).set(roomId, new Date().toISOString()))
      lastRoom.set(roomId)
    },
    [showError],
  )
  const closeRoom = useCallback(() => {
    setOpenRoomId(null)
    lastRoom.set(null)
  }, [])
  const direct = useCallback((userId: string) => userId !== me && open(dmRoomId(me, userId)), [me, open])
  /** A join the server refused (FORBIDDEN, NOT_FOUND…): the room is not followed or shown. */
  const refused = useCallback(
    (roomId: string, err: { code: string; message: string }) => {
      showError(`Could not open "${roomId}": ${err.message} (${err.code})`)
      setFollowed((f) => f.filter((id) => id !== roomId))
      setOpenRoomId((cur) => (cur === roomId ? null : cur))
      if (lastRoom.get() === roomId) lastRoom.set(null)
    },
    [showError],
  )

  const latestNote = useMemo(() => {
    const byRoom = new Map<string, Notification>()
    for (const n of notifications.items) {
      if (n.type === 'invite' && byRoom.has(n.roomId)) continue
      if (!byRoom.has(n.roomId) && n.timestamp > (seenAt.get(n.roomId) ?? '')) byRoom.set(n.roomId, n)
    }
    return byRoom
  }, [notifications.items, seenAt])
  const listed = new Set(rooms.map((r) => r.id))
  const items: RoomListItem[] = [
    ...rooms.map((r) => ({ id: r.id, title: titleOf(r.id, r.name), private: r.private || r.id.startsWith('dm:'), unread: r.unread, note: latestNote.get(r.id) })),
    ...followed.filter((id) => !listed.has(id)).map((id) => ({ id, title: titleOf(id), private: id.startsWith('dm:'), unread: 0 })),
  ]
  // The open room counts too while the tab is in the background (nothing is marked read then).
  const hidden = useDocumentHidden()
  useUnreadTitle(items.reduce((n, r) => n + (r.id === openRoomId && !hidden ? 0 : r.unread), 0))

  const isKnown = useCallback((id: string) => followed.includes(id) || client.rooms.get().rooms.some((r) => r.id === id), [followed, client])
  const exists = useCallback((id: string) => api.roomExists(session.token, id), [session.token])
  const [join, dialog] = useJoinWithConfirm({ isKnown, exists, open, showError })
  const create = useCallback(
    async (input: { name: string; id?: string; private?: boolean }) => {
      if (input.id && !ROOM_ID.test(input.id)) {
        showError(BAD_ROOM_ID)
        return false
      }
      try {
        const created = await client.createRoom(input)
        open(created.id)
        return true
      } catch (err) {
        showError(`Could not create the room: ${errorText(err)}`)
        return false
      }
    },
    [client, open, showError],
  )

  const connection: Connection = conn.status === 'connected' ? 'connected' : conn.status === 'reconnecting' ? 'reconnecting' : 'connecting'
  // The token's roles, as the SDK read them (the server decides; this only shows the admin's Delete).
  const admin = conn.me?.roles.includes('admin') ?? false
  const summary = openRoomId ? rooms.find((r) => r.id === openRoomId) : undefined

  return (
    <>
      <ConnectionBanner connection={connection} attempt={conn.attempt} connectError={conn.error && !conn.error.code.startsWith('AUTH_') ? conn.error.message : null} />
      <ErrorLine error={error} onDismiss={dismissError} />
      {followed.map((id) => (
        <FollowRoom key={id} roomId={id} onRefused={refused} />
      ))}
      {/* On narrow screens one pane at a time: the room when one is open, else the room list. */}
      <main className={openRoomId ? 'chat chat--room-open' : 'chat'} data-testid="chat" data-connection={connection}>
        <Sidebar list={<RoomList items={items} openRoomId={openRoomId} onOpen={open} loading={loading && rooms.length === 0} />} onJoin={join} onCreate={create} />
        {openRoomId ? (
          <OpenRoom
            key={openRoomId}
            roomId={openRoomId}
            title={titleOf(openRoomId, summary?.name)}
            me={{ userId: me, username: session.username, admin }}
            serverReadMark={summary?.lastReadSeq ?? null}
            nameOf={nameOf}
            direct={direct}
            back={closeRoom}
            showError={showError}
          />
        ) : (
          <EmptyRoom />
        )}
      </main>
      {dialog}
    </>
  )
}

/** Keeps a room followed for the session (renders nothing); reports a refused join. */
function FollowRoom({ roomId, onRefused }: { roomId: string; onRefused(roomId: string, err: { code: string; message: string }): void }) {
  const room = useRoom(roomId)
  useEffect(() => {
    if (room.status === 'error' && room.error && REFUSED.has(room.error.code)) onRefused(roomId, room.error)
  }, [room.status, room.error, roomId, onRefused])
  return null
}
