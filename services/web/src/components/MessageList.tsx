import { Fragment, useLayoutEffect, useRef, useState } from 'react'
import type { Message } from '@switchboard/client'
import { dayLabel, sameDay } from '../chat/days.ts'
import { MessageItem, type MessageActions } from './MessageItem.tsx'
import { PendingItem, type ShownPending } from './PendingItem.tsx'

interface Props {
  messages: readonly Message[]
  /** Sends not yet acknowledged, in send order (their echoes already removed). */
  pending: readonly ShownPending[]
  /** Nothing to show yet: the first page of history is on its way. */
  loading: boolean
  /** The room is joined: the first scroll position (divider or bottom) is taken once this is true. */
  ready: boolean
  hasOlder: boolean
  loadingOlder: boolean
  /** The first message that was unread when the room was opened (the "New messages" divider goes above it). */
  firstUnreadSeq: number | null
  meId: string
  meName: string
  admin: boolean
  isOnline(userId: string): boolean
  actions: MessageActions
  onLoadOlder(): void
  onRetry(clientMsgId: string): void
  onDiscard(clientMsgId: string): void
  /** Where focus goes after "Jump to latest" (the composer). */
  onJumped(): void
  /** "Seen by …" under the newest message. */
  seen: string
}

const NEAR_BOTTOM_PX = 80

/**
 * The timeline. Scrolling: it follows new messages while the reader is at the bottom, jumps to
 * the bottom after our own send, keeps its place when older messages are put on top, and opens
 * at the "New messages" divider when there is one. Scrolled up, a "Jump to latest" button
 * counts what arrived meanwhile.
 */
export function MessageList(props: Props) {
  const { messages, pending, meId, firstUnreadSeq } = props
  const scroller = useRef<HTMLDivElement>(null)
  const divider = useRef<HTMLLIElement>(null)
  const last = useRef({ height: 0, top: 0, firstSeq: 0, pending: 0, stick: true, placed: false })
  const [atBottom, setAtBottom] = useState(true)
  /** The newest seq the reader had in view when they scrolled up. */
  const [seenUpTo, setSeenUpTo] = useState(0)
  const firstSeq = messages.length > 0 ? messages[0].seq : 0
  const lastSeq = messages.length > 0 ? messages[messages.length - 1].seq : 0
  const byId = new Map(messages.map((m) => [m.id, m]))

  useLayoutEffect(() => {
    const el = scroller.current
    if (!el) return
    const prev = last.current
    let placed = prev.placed
    if (!placed && props.ready && messages.length > 0) {
      // First paint of the joined room: at the divider when there is one, else at the bottom.
      placed = true
      const d = divider.current
      el.scrollTop = d ? d.offsetTop - el.offsetTop - 8 : el.scrollHeight
      // What is below the divider counts as new until the reader has been at the bottom.
      setSeenUpTo(firstUnreadSeq !== null ? firstUnreadSeq - 1 : lastSeq)
    } else if (prev.firstSeq > 0 && firstSeq > 0 && firstSeq < prev.firstSeq) el.scrollTop = prev.top + (el.scrollHeight - prev.height)
    else if (prev.stick || pending.length > prev.pending) el.scrollTop = el.scrollHeight
    const stick = el.scrollHeight - el.scrollTop - el.clientHeight < NEAR_BOTTOM_PX
    last.current = { height: el.scrollHeight, top: el.scrollTop, firstSeq, pending: pending.length, stick, placed }
    if (placed && stick !== atBottom) setAtBottom(stick)
    if (placed && stick && seenUpTo !== lastSeq) setSeenUpTo(lastSeq)
  })

  const onScroll = () => {
    const el = scroller.current
    if (!el) return
    const stick = el.scrollHeight - el.scrollTop - el.clientHeight < NEAR_BOTTOM_PX
    last.current = { ...last.current, height: el.scrollHeight, top: el.scrollTop, stick }
    if (!last.current.placed) return
    if (stick !== atBottom) setAtBottom(stick)
    if (stick) setSeenUpTo(lastSeq)
  }

  const jump = () => {
    const el = scroller.current
    if (el) el.scrollTop = el.scrollHeight
    props.onJumped()
  }

  const newCount = messages.filter((m) => m.seq > seenUpTo && m.userId !== meId).length

  return (
    <div className="timeline">
      <div className="scroller" ref={scroller} onScroll={onScroll} aria-busy={props.loading} data-testid="scroller">
        {props.hasOlder && firstSeq > 1 && (
          <button type="button" className="link load-older" data-testid="load-older" disabled={props.loadingOlder} onClick={props.onLoadOlder}>
            {props.loadingOlder ? 'Loading…' : 'Load older messages'}
          </button>
        )}
        {props.loading ? (
          <div className="skeleton" data-testid="loading" role="status">
            <span className="sr-only">Loading messages…</span>
            <div className="skeleton-line" aria-hidden="true" />
            <div className="skeleton-line short" aria-hidden="true" />
            <div className="skeleton-line" aria-hidden="true" />
          </div>
        ) : (
          messages.length === 0 && pending.length === 0 && <p className="hint">No messages yet. Say hello!</p>
        )}
        <ol className="messages" data-testid="messages" aria-label="Messages">
          {messages.map((m, i) => (
            <Fragment key={m.seq}>
              {(i === 0 || !sameDay(messages[i - 1].timestamp, m.timestamp)) && (
                <li className="day-separator" data-testid="day-separator">
                  <span>{dayLabel(m.timestamp)}</span>
                </li>
              )}
              {m.seq === firstUnreadSeq && (
                <li className="new-divider" ref={divider} data-testid="new-divider">
                  <span>New messages</span>
                </li>
              )}
              <MessageItem
                message={m}
                meId={meId}
                meName={props.meName}
                admin={props.admin}
                online={props.isOnline(m.userId)}
                repliedTo={m.replyTo ? (byId.get(m.replyTo) ?? null) : undefined}
                {...props.actions}
              />
            </Fragment>
          ))}
          {pending.map((p) => (
            <PendingItem key={p.clientMsgId} pending={p} username={props.meName} repliedTo={p.replyTo ? byId.get(p.replyTo) : undefined} onRetry={props.onRetry} onDiscard={props.onDiscard} />
          ))}
        </ol>
        <p className="seen" data-testid="seen-by" aria-live="polite">
          {props.seen}
        </p>
      </div>
      {!atBottom && (
        <button type="button" className="jump-latest" data-testid="jump-latest" onClick={jump}>
          ↓ Jump to latest
          {newCount > 0 && (
            <span className="badge" data-testid="jump-count">
              {newCount} new
            </span>
          )}
        </button>
      )}
    </div>
  )
}
