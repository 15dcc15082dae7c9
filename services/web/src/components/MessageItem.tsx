import { memo } from 'react'
import type { Message } from '../protocol.ts'
import { AttachmentView } from './AttachmentView.tsx'
import { PresenceDot } from './PresenceDot.tsx'

export function formatTime(ts: string): string {
  const d = new Date(ts)
  if (Number.isNaN(d.getTime())) return ''
  const t = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
  return d.toDateString() === new Date().toDateString() ? t : `${d.toLocaleDateString()} ${t}`
}

const excerpt = (text: string) => (text.length > 80 ? `${text.slice(0, 80)}…` : text)

/** What a message replies to: the quoted message when loaded, else a placeholder. */
export function ReplyQuote({ to }: { to: Message | null | undefined }) {
  const jump = () => {
    if (to) document.querySelector(`[data-testid="message"][data-seq="${to.seq}"]`)?.scrollIntoView({ block: 'center', behavior: 'smooth' })
  }
  return (
    <button type="button" className="quote" data-testid="reply-quote" onClick={jump} disabled={!to}>
      ↪ {to ? `${to.username}: ${to.deletedAt ? 'a deleted message' : excerpt(to.text)}` : 'an earlier message'}
    </button>
  )
}

interface Props {
  message: Message
  mine: boolean
  online: boolean
  /** undefined: not a reply; null: a reply to a message that is not loaded. */
  repliedTo: Message | null | undefined
  onReply(m: Message): void
  onDirect(userId: string): void
  /** For fetching attachments (previews and downloads). */
  token: string
}

export const MessageItem = memo(function MessageItem({ message: m, mine, online, repliedTo, onReply, onDirect, token }: Props) {
  const reactions = Object.entries(m.reactions ?? {}).filter(([, users]) => users.length > 0)
  return (
    <li className={mine ? 'msg mine' : 'msg'} data-testid="message" data-seq={m.seq} data-id={m.id} data-status="sent">
      {repliedTo !== undefined && <ReplyQuote to={repliedTo} />}
      <div className="meta">
        <span className="who">
          <PresenceDot userId={m.userId} online={online} />
          {mine ? (
            m.username
          ) : (
            <button type="button" className="link author" data-testid="author" title={`Message ${m.username} directly`} onClick={() => onDirect(m.userId)}>
              {m.username}
            </button>
          )}
        </span>
        <time dateTime={m.timestamp}>{formatTime(m.timestamp)}</time>
        {!m.deletedAt && (
          <button type="button" className="link reply" data-testid="reply" aria-label={`Reply to ${m.username}`} onClick={() => onReply(m)}>
            Reply
          </button>
        )}
      </div>
      <div className={m.deletedAt ? 'text deleted' : 'text'} data-testid="message-text">
        {m.deletedAt ? 'This message was deleted.' : m.text}
        {m.editedAt && !m.deletedAt && <span className="edited"> (edited)</span>}
      </div>
      {m.attachment && !m.deletedAt && <AttachmentView attachment={m.attachment} token={token} />}
      {reactions.length > 0 && (
        <div className="reactions">
          {reactions.map(([emoji, users]) => (
            <span key={emoji} className="chip" title={`${users.length} reaction${users.length > 1 ? 's' : ''}`}>
              {emoji} {users.length}
            </span>
          ))}
        </div>
      )}
    </li>
  )
})
