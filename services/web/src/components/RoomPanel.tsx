import { useCallback, useState } from 'react'
import type { ChatState, ChatStore } from '../chat/store.ts'
import { nameList, seenBy, typingText } from '../chat/timeline.ts'
import type { Message } from '../protocol.ts'
import { Composer } from './Composer.tsx'
import { MessageList } from './MessageList.tsx'
import { OnlineUsers } from './OnlineUsers.tsx'

/** The open room: title and who is online, the timeline, receipts, typing, the composer. */
export function RoomPanel({ store, state }: { store: ChatStore; state: ChatState }) {
  const [replyTo, setReplyTo] = useState<Message | null>(null)
  const direct = useCallback((userId: string) => store.openDirect(userId), [store])
  const roomId = state.openRoomId
  const view = roomId ? state.views.get(roomId) : undefined
  const me = state.me.userId

  if (!roomId || !view) {
    return (
      <section className="room room--empty" aria-labelledby="room-title">
        <h2 id="room-title" data-testid="room-title">
          Pick a room
        </h2>
        <p className="hint">Choose a room on the left, join one by id, or create one. Pick someone online to message them directly.</p>
      </section>
    )
  }

  const readers = seenBy(view.reads, view.messages[view.messages.length - 1], me)
  const known = readers.flatMap((u) => state.names.get(u) ?? [])
  const unknown = readers.length - known.length
  const seen = readers.length === 0 ? '' : `Seen by ${nameList(unknown > 0 ? [...known, `${unknown} other${unknown > 1 ? 's' : ''}`] : known)}`
  const typing = typingText([...view.typing.values()])

  return (
    <section className="room" aria-labelledby="room-title" data-testid="room" data-room-id={roomId} data-joined={view.joined}>
      <div className="room-head">
        <button type="button" className="link back" data-testid="back" onClick={() => store.closeRoom()}>
          ← Rooms
        </button>
        <h2 id="room-title" data-testid="room-title" title={roomId}>
          {store.roomTitle(roomId)}
        </h2>
        <OnlineUsers view={view} state={state} onDirect={direct} />
      </div>
      <MessageList
        view={view}
        state={state}
        onReply={setReplyTo}
        onDirect={direct}
        onLoadOlder={() => void store.loadOlder()}
        onRetry={(id) => store.retry(id)}
        onDiscard={(id) => store.discard(id)}
        seen={seen}
      />
      <p className="typing" data-testid="typing" aria-live="polite">
        {typing}
      </p>
      <Composer
        roomId={roomId}
        replyTo={replyTo}
        onCancelReply={() => setReplyTo(null)}
        draft={state.draft?.roomId === roomId ? state.draft : null}
        onTakeDraft={(id) => store.takeDraft(id)}
        onTyping={(text) => store.typing(text)}
        onStopTyping={() => store.stopTyping()}
        onSend={(text) => {
          const sent = store.send(text, replyTo?.id)
          if (sent) setReplyTo(null)
          return sent
        }}
        onSendFile={async (file, text) => {
          const sent = await store.sendFile(file, text, replyTo?.id)
          if (sent) setReplyTo(null)
          return sent
        }}
      />
    </section>
  )
}
