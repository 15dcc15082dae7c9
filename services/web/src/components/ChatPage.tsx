import { useCallback, useMemo } from 'react'
import { api } from '../api.ts'
import { useChat, useChatStore } from '../chat/useChat.ts'
import type { ChatState, ChatStore } from '../chat/store.ts'
import { visiblePending } from '../chat/timeline.ts'
import { isAdmin, type Session } from '../session.ts'
import { useJoinWithConfirm } from './JoinConfirm.tsx'
import { OnlineUsers } from './OnlineUsers.tsx'
import { RateLimitNotice } from './RateLimitNotice.tsx'
import { RoomList, type RoomListItem } from './RoomList.tsx'
import { EmptyRoom, RoomPanel, type RoomModel } from './RoomPanel.tsx'
import { Sidebar } from './Sidebar.tsx'
import { ConnectionBanner, ErrorLine } from './StatusLines.tsx'
import { useUnreadTitle } from './useUnreadTitle.ts'

/** The signed-in app: one store (one /chat connection) per session. */
export function ChatPage({ session, onSignOut }: { session: Session; onSignOut(reason: string): void }) {
  const store = useChatStore(session, onSignOut)
  return store ? <ChatView store={store} /> : null
}

function ChatView({ store }: { store: ChatStore }) {
  const state = useChat(store)
  const listed = new Set(state.rooms.map((r) => r.id))
  const items: RoomListItem[] = [
    ...state.rooms.map((r) => ({ id: r.id, title: store.roomTitle(r.id), private: r.private || r.id.startsWith('dm:'), unread: r.unread, note: state.notes.get(r.id) })),
    ...[...state.views.keys()].filter((id) => !listed.has(id)).map((id) => ({ id, title: store.roomTitle(id), private: id.startsWith('dm:'), unread: 0 })),
  ]
  useUnreadTitle(items.reduce((n, r) => n + (r.id === state.openRoomId && !document.hidden ? 0 : r.unread), 0))

  const isKnown = useCallback((id: string) => store.getState().views.has(id) || store.getState().rooms.some((r) => r.id === id), [store])
  const exists = useCallback((id: string) => api.roomExists(store.getState().me.token, id), [store])
  const open = useCallback((id: string) => store.openRoom(id), [store])
  const showError = useCallback((text: string) => store.showError(text), [store])
  const [join, dialog] = useJoinWithConfirm({ isKnown, exists, open, showError })

  return (
    <>
      <ConnectionBanner connection={state.connection} attempt={state.attempt} connectError={state.connectError} />
      <ErrorLine error={state.error} onDismiss={() => store.dismissError()} />
      {/* On narrow screens one pane at a time: the room when one is open, else the room list. */}
      <main className={state.openRoomId ? 'chat chat--room-open' : 'chat'} data-testid="chat" data-connection={state.connection}>
        <Sidebar list={<RoomList items={items} openRoomId={state.openRoomId} onOpen={open} />} onJoin={join} onCreate={(input) => store.createRoom(input)} />
        <OpenRoom key={state.openRoomId ?? ''} store={store} state={state} />
      </main>
      {dialog}
    </>
  )
}

function OpenRoom({ store, state }: { store: ChatStore; state: ChatState }) {
  const roomId = state.openRoomId
  const view = roomId ? state.views.get(roomId) : undefined
  const summary = roomId ? state.rooms.find((r) => r.id === roomId) : undefined
  const me = state.me
  const admin = useMemo(() => isAdmin(me.token), [me.token])
  if (!roomId || !view) return <EmptyRoom />
  const pending = visiblePending(view.pending, view.messages)
  const model: RoomModel = {
    roomId,
    title: store.roomTitle(roomId),
    joined: view.joined,
    messages: view.messages,
    pending: pending.map((p) => ({ ...p, error: p.status === 'waiting' ? undefined : p.error })),
    hasOlder: true,
    loadingOlder: view.loadingOlder,
    reads: view.reads,
    readMark: view.joined ? (view.reads.get(me.userId) ?? summary?.lastReadSeq ?? 0) : null,
    typingNames: [...view.typing.values()],
    nameOf: (u) => state.names.get(u),
    isOnline: (u) => state.online.has(u),
    me: { userId: me.userId, username: me.username, token: me.token, admin },
    send: (text, replyTo) => store.send(text, replyTo),
    sendFile: (file, text, replyTo) => store.sendFile(file, text, replyTo),
    edit: (id, text) => store.edit(roomId, id, text),
    remove: (id) => void store.remove(roomId, id),
    react: (id, emoji, on) => void store.react(roomId, id, emoji, on),
    typing: (text) => store.typing(text),
    stopTyping: () => store.stopTyping(),
    loadOlder: () => void store.loadOlder(),
    retry: (id) => store.retry(id),
    discard: (id) => store.discard(id),
    direct: (id) => store.openDirect(id),
    back: () => store.closeRoom(),
    draft: state.draft?.roomId === roomId ? state.draft : null,
    takeDraft: (id) => store.takeDraft(id),
  }
  const here = [...state.online].filter(([userId]) => userId === me.userId || view.members.has(userId))
  return (
    <RoomPanel
      room={model}
      online={<OnlineUsers users={here} me={me.userId} onDirect={model.direct} />}
      notice={<RateLimitNotice held={pending.map((p) => ({ retryAt: p.retryAt, code: p.errorCode }))} />}
    />
  )
}
