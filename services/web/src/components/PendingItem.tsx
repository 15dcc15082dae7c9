import type { Attachment, Message } from '@switchboard/client'
import { ReplyQuote } from './MessageItem.tsx'

/** A send not yet acknowledged, as the timeline shows it. */
export interface ShownPending {
  clientMsgId: string
  text: string
  replyTo?: string
  attachment?: Attachment
  /** sending: emitted, waiting for the ack; queued: waits for the connection or for an earlier send; waiting: held until `retryAt`; failed: needs the user. */
  status: 'sending' | 'queued' | 'waiting' | 'failed'
  error?: string
}

const STATUS: Record<ShownPending['status'], string> = {
  sending: 'sending…',
  queued: 'waiting to be sent…',
  waiting: 'held, sent again shortly…',
  failed: 'not sent',
}

/** A send not yet acknowledged: shown at once, greyed, with what happens to it. */
export function PendingItem({
  pending: p,
  username,
  repliedTo,
  onRetry,
  onDiscard,
}: {
  pending: ShownPending
  username: string
  repliedTo: Message | undefined
  onRetry(clientMsgId: string): void
  onDiscard(clientMsgId: string): void
}) {
  return (
    <li
      className={p.status === 'failed' ? 'msg mine pending failed' : 'msg mine pending'}
      data-testid="message"
      data-status={p.status}
      data-client-msg-id={p.clientMsgId}
    >
      {p.replyTo && <ReplyQuote to={repliedTo ?? null} />}
      <div className="meta">
        <span className="who">{username}</span>
        <span className="status" data-testid="message-status">
          {STATUS[p.status]}
          {p.error ? `: ${p.error}` : ''}
        </span>
      </div>
      <div className="text" data-testid="message-text">
        {p.text}
      </div>
      {p.attachment && <span className="chip">📎 {p.attachment.fileName}</span>}
      {p.status === 'failed' && (
        <div className="actions">
          <button type="button" data-testid="retry" onClick={() => onRetry(p.clientMsgId)}>
            Retry
          </button>
          <button type="button" className="link" data-testid="discard" onClick={() => onDiscard(p.clientMsgId)}>
            Discard
          </button>
        </div>
      )}
    </li>
  )
}
