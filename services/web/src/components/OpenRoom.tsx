import { useCallback, useEffect, useMemo, useRef, useState } from 'react'
import { MAX_TEXT, SwitchboardError, type PendingMessage } from '@switchboard/client'
import { useClient, usePresence, useRoom } from '@switchboard/react'
import { errorText } from '../chat/errors.ts'
import { OnlineUsers } from './OnlineUsers.tsx'
import type { ShownPending } from './PendingItem.tsx'
import { RateLimitNotice } from './RateLimitNotice.tsx'
import { RoomPanel, type RoomModel } from './RoomPanel.tsx'

/** Codes after which a send can never succeed as it is: its text goes back to the composer. */
const FINAL = new Set(['BAD_REQUEST', 'FORBIDDEN', 'NOT_FOUND', 'TOO_LARGE'])
const READ_DELAY_MS = 300

interface Props {
  roomId: string
  title: string
  me: { userId: string; username: string; admin: boolean }
  /** My read mark from the rooms list (for the divider when the history carries none). */
  serverReadMark: number | null
  nameOf(userId: string): string | undefined
  direct(userId: string): void
  back(): void
  showError(text: string): void
}

/** The SDK's outbox entry as the timeline shows it: held for the connection (or behind another) is "queued". */
function shown(p: PendingMessage): ShownPending {
  const status = p.status === 'waiting' ? (p.retryAt !== undefined ? 'waiting' : 'queued') : p.status
  const out: ShownPending = { clientMsgId: p.clientMsgId, text: p.text, status }
  if (p.replyTo) out.replyTo = p.replyTo
  if (p.attachment) out.attachment = p.attachment
  if (p.status === 'failed' && p.error) out.error = `${p.error.message} (${p.error.code})`
  return out
}

/**
 * The open room on `useRoom`: joined while shown, marked read while it is shown and the page is
 * visible, sends through the SDK's ordered outbox (a refusal that cannot succeed hands the text
 * back to the composer), and the rate-limit notice over what the outbox holds.
 */
export function OpenRoom({ roomId, title, me, serverReadMark, nameOf, direct, back, showError }: Props) {
  const client = useClient()
  const room = useRoom(roomId)
  const { online, isOnline } = usePresence()
  const [draft, setDraft] = useState<{ id: number; text: string } | null>(null)
  const drafts = useRef(0)
  const joined = room.status === 'joined' || room.status === 'syncing'
  const newest = room.messages.length > 0 ? room.messages[room.messages.length - 1].seq : 0

  const latest = useRef(room)
  latest.current = room
  // Leaving the room (switching, closing) marks read what was shown, even inside the short delay below.
  useEffect(() => () => void (!document.hidden && latest.current.markRead().catch(() => undefined)), [])

  // Read while shown: the newest message, shortly after it arrives, only while the page is visible.
  const { markRead } = room
  useEffect(() => {
    if (!joined || newest === 0) return
    const mark = () => {
      if (!document.hidden) markRead().catch(() => undefined)
    }
    const t = setTimeout(mark, READ_DELAY_MS)
    document.addEventListener('visibilitychange', mark)
    return () => {
      clearTimeout(t)
      document.removeEventListener('visibilitychange', mark)
    }
  }, [joined, newest, markRead])


  const send = useCallback(
    (text: string, replyTo?: string, attachment?: RoomModel['messages'][number]['attachment']) => {
      const trimmed = text.trim()
      if (!trimmed) return false
      const r = latest.current
      const sending = r.send(trimmed, { ...(replyTo ? { replyTo } : {}), ...(attachment ? { attachment } : {}) })
      // The entry is in the outbox synchronously: its id, for handing it back if it cannot succeed.
      const entry = client.room(roomId).state.get().pending.at(-1)
      sending.catch((err: unknown) => {
        if (!(err instanceof SwitchboardError) || !FINAL.has(err.code)) return // discarded, closed: nothing to say
        if (entry) client.room(roomId).discard(entry.clientMsgId)
        setDraft({ id: ++drafts.current, text: trimmed })
        showError(`Message not sent: ${err.message} (${err.code})`)
      })
      return true
    },
    [client, roomId, showError],
  )

  const members = useMemo(() => {
    const ids = new Set<string>([me.userId, ...room.reads.keys(), ...room.typists.map((t) => t.userId)])
    for (const m of room.messages) ids.add(m.userId)
    return ids
  }, [room.messages, room.reads, room.typists, me.userId])
  const here = [...online].filter(([userId]) => members.has(userId))

  const model: RoomModel = {
    roomId,
    title,
    joined,
    messages: room.messages,
    pending: room.pending.map(shown),
    hasOlder: room.hasOlder,
    loadingOlder: room.loadingOlder,
    reads: room.reads,
    readMark: joined ? (room.reads.get(me.userId) ?? serverReadMark ?? 0) : null,
    typingNames: room.typists.map((t) => t.username),
    nameOf,
    isOnline,
    me,
    send: (text, replyTo) => send(text, replyTo),
    sendFile: async (file, text, replyTo) => {
      try {
        const attachment = await client.upload(roomId, file, file.name)
        return send(text.trim() || [...attachment.fileName].slice(0, MAX_TEXT).join(''), replyTo, attachment)
      } catch (err) {
        showError(`Could not upload "${file.name}": ${errorText(err)}`)
        return false
      }
    },
    edit: (id, text) => room.edit(id, text).catch((err: unknown) => Promise.reject(new Error(errorText(err)))),
    remove: (id) => void room.remove(id).catch((err: unknown) => showError(`Could not delete the message: ${errorText(err)}`)),
    react: (id, emoji, on) => void room.react(id, emoji, on).catch((err: unknown) => showError(`Could not react: ${errorText(err)}`)),
    typing: (text) => room.typing(text.trim() !== ''),
    stopTyping: () => room.typing(false),
    loadOlder: () => void room.loadOlder().catch((err: unknown) => showError(`Could not load older messages: ${errorText(err)}`)),
    retry: room.retry,
    discard: room.discard,
    direct,
    back,
    draft,
    takeDraft: (id) => setDraft((d) => (d?.id === id ? null : d)),
  }
  return (
    <RoomPanel
      room={model}
      online={<OnlineUsers users={here} me={me.userId} onDirect={direct} />}
      notice={<RateLimitNotice held={room.pending.map((p) => ({ retryAt: p.retryAt, code: p.error?.code }))} />}
    />
  )
}
