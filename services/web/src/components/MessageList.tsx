import { useLayoutEffect, useRef } from 'react'
import type { ChatState, RoomView } from '../chat/store.ts'
import { firstSeqOf, visiblePending } from '../chat/timeline.ts'
import type { Message } from '../protocol.ts'
import { MessageItem } from './MessageItem.tsx'
import { PendingItem } from './PendingItem.tsx'

interface Props {
  view: RoomView
  state: ChatState
  onReply(m: Message): void
  onDirect(userId: string): void
  onLoadOlder(): void
  onRetry(clientMsgId: string): void
  onDiscard(clientMsgId: string): void
  /** "Seen by …" under the newest message. */
  seen: string
}

/**
 * The timeline. Scrolling: it follows new messages while the reader is at the bottom, jumps to
 * the bottom after our own send, and keeps its place when older messages are put on top.
 */
export function MessageList({ view, state, onReply, onDirect, onLoadOlder, onRetry, onDiscard, seen }: Props) {
  const scroller = useRef<HTMLDivElement>(null)
  const last = useRef({ height: 0, top: 0, firstSeq: 0, pending: 0, stick: true })
  const pending = visiblePending(view.pending, view.messages)
  const firstSeq = firstSeqOf(view.messages)
  const byId = new Map(view.messages.map((m) => [m.id, m]))
  const me = state.me.userId

  useLayoutEffect(() => {
    const el = scroller.current
    if (!el) return
    const prev = last.current
    if (prev.firstSeq > 0 && firstSeq > 0 && firstSeq < prev.firstSeq) el.scrollTop = prev.top + (el.scrollHeight - prev.height)
    else if (prev.stick || pending.length > prev.pending) el.scrollTop = el.scrollHeight
    last.current = { height: el.scrollHeight, top: el.scrollTop, firstSeq, pending: pending.length, stick: el.scrollHeight - el.scrollTop - el.clientHeight < 80 }
  })

  const onScroll = () => {
    const el = scroller.current
    if (el) last.current = { ...last.current, height: el.scrollHeight, top: el.scrollTop, stick: el.scrollHeight - el.scrollTop - el.clientHeight < 80 }
  }

  return (
    <div className="scroller" ref={scroller} onScroll={onScroll}>
      {firstSeq > 1 && (
        <button type="button" className="link load-older" data-testid="load-older" disabled={view.loadingOlder} onClick={onLoadOlder}>
          {view.loadingOlder ? 'Loading…' : 'Load older messages'}
        </button>
      )}
      {view.messages.length === 0 && pending.length === 0 && <p className="hint">No messages yet. Say hello!</p>}
      <ol className="messages" data-testid="messages" aria-label="Messages">
        {view.messages.map((m) => (
          <MessageItem
            key={m.seq}
            message={m}
            mine={m.userId === me}
            online={state.online.has(m.userId)}
            repliedTo={m.replyTo ? (byId.get(m.replyTo) ?? null) : undefined}
            onReply={onReply}
            onDirect={onDirect}
            token={state.me.token}
          />
        ))}
        {pending.map((p) => (
          <PendingItem key={p.clientMsgId} pending={p} username={state.me.username} repliedTo={p.replyTo ? byId.get(p.replyTo) : undefined} onRetry={onRetry} onDiscard={onDiscard} />
        ))}
      </ol>
      <p className="seen" data-testid="seen-by" aria-live="polite">
        {seen}
      </p>
    </div>
  )
}
