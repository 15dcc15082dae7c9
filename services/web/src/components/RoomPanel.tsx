import { useCallback, useMemo, useRef, useState, type ReactNode } from 'react'
import { nameList, seenBy, typingText } from '../chat/words.ts'
import type { Message } from '@switchboard/client'
import { Composer } from './Composer.tsx'
import type { MessageActions } from './MessageItem.tsx'
import { MessageList } from './MessageList.tsx'
import type { ShownPending } from './PendingItem.tsx'

/** Everything the open room shows and can do, whatever keeps the state (see ChatPage). */
export interface RoomModel {
  roomId: string
  title: string
  joined: boolean
  messages: readonly Message[]
  pending: readonly ShownPending[]
  hasOlder: boolean
  loadingOlder: boolean
  /** userId → highest seq read. */
  reads: ReadonlyMap<string, number>
  /** My read mark as the server had it when the room was opened (for the "New messages" divider). */
  readMark: number | null
  typingNames: readonly string[]
  nameOf(userId: string): string | undefined
  isOnline(userId: string): boolean
  me: { userId: string; username: string; admin: boolean }
  send(text: string, replyTo?: string): boolean
  sendFile(file: File, text: string, replyTo?: string): Promise<boolean>
  edit(messageId: string, text: string): Promise<void>
  remove(messageId: string): void
  react(messageId: string, emoji: string, on: boolean): void
  typing(text: string): void
  stopTyping(): void
  loadOlder(): void
  retry(clientMsgId: string): void
  discard(clientMsgId: string): void
  direct(userId: string): void
  back(): void
  /** Text handed back after a send that cannot succeed as it is. */
  draft: { id: number; text: string } | null
  takeDraft(id: number): void
}

export function EmptyRoom() {
  return (
    <section className="room room--empty" aria-labelledby="room-title">
      <h2 id="room-title" data-testid="room-title">
        Pick a room
      </h2>
      <p className="hint">Choose a room on the left, join one by id, or create one. Pick someone online to message them directly.</p>
    </section>
  )
}

/** The open room: title and who is online, the timeline, receipts, typing, the composer. Keyed by room id. */
export function RoomPanel({ room, online, notice }: { room: RoomModel; online: ReactNode; notice?: ReactNode }) {
  const [replyTo, setReplyTo] = useState<Message | null>(null)
  const composer = useRef<HTMLTextAreaElement>(null)
  const me = room.me.userId

  // The divider sits above the first message from someone else after my read mark at opening; it stays put while I read.
  const firstUnread = useRef<number | null | undefined>(undefined)
  if (firstUnread.current === undefined && room.joined && room.messages.length > 0 && room.readMark !== null) {
    firstUnread.current = room.messages.find((m) => m.seq > room.readMark! && m.userId !== me)?.seq ?? null
  }

  const latest = useRef(room)
  latest.current = room
  const actions = useMemo<MessageActions>(
    () => ({
      onReply: setReplyTo,
      onDirect: (userId) => latest.current.direct(userId),
      onEdit: (m, text) => latest.current.edit(m.id, text),
      onDelete: (m) => latest.current.remove(m.id),
      onReact: (m, emoji, on) => latest.current.react(m.id, emoji, on),
    }),
    [],
  )
  const focusComposer = useCallback(() => composer.current?.focus(), [])

  const readers = seenBy(room.reads, room.messages[room.messages.length - 1], me)
  const known = readers.flatMap((u) => room.nameOf(u) ?? [])
  const unknown = readers.length - known.length
  const seen = readers.length === 0 ? '' : `Seen by ${nameList(unknown > 0 ? [...known, `${unknown} other${unknown > 1 ? 's' : ''}`] : known)}`

  return (
    <section className="room" aria-labelledby="room-title" data-testid="room" data-room-id={room.roomId} data-joined={room.joined}>
      <div className="room-head">
        <button type="button" className="link back" data-testid="back" onClick={room.back}>
          ← Rooms
        </button>
        <h2 id="room-title" data-testid="room-title" title={room.roomId}>
          {room.title}
        </h2>
        {online}
      </div>
      {notice}
      <MessageList
        messages={room.messages}
        pending={room.pending}
        loading={!room.joined && room.messages.length === 0}
        ready={room.joined && firstUnread.current !== undefined}
        hasOlder={room.hasOlder}
        loadingOlder={room.loadingOlder}
        firstUnreadSeq={firstUnread.current ?? null}
        meId={me}
        meName={room.me.username}
        admin={room.me.admin}
        isOnline={room.isOnline}
        actions={actions}
        onLoadOlder={room.loadOlder}
        onRetry={room.retry}
        onDiscard={room.discard}
        onJumped={focusComposer}
        seen={seen}
      />
      <p className="typing" data-testid="typing" aria-live="polite">
        {typingText(room.typingNames)}
      </p>
      <Composer
        inputRef={composer}
        roomId={room.roomId}
        replyTo={replyTo}
        onCancelReply={() => setReplyTo(null)}
        draft={room.draft}
        onTakeDraft={room.takeDraft}
        onTyping={room.typing}
        onStopTyping={room.stopTyping}
        onSend={(text) => {
          const sent = room.send(text, replyTo?.id)
          if (sent) setReplyTo(null)
          return sent
        }}
        onSendFile={async (file, text) => {
          const sent = await room.sendFile(file, text, replyTo?.id)
          if (sent) setReplyTo(null)
          return sent
        }}
      />
    </section>
  )
}
