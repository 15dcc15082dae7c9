import { memo, useEffect, useRef, useState, type KeyboardEvent } from 'react'
import { mentions } from '../chat/markdown.ts'
import type { Message } from '@switchboard/client'
import { AttachmentView } from './AttachmentView.tsx'
import { MessageText } from './MessageText.tsx'
import { PresenceDot } from './PresenceDot.tsx'

/** The reaction picker's choices (any emoji arriving from others is shown too). */
export const QUICK_REACTIONS = ['👍', '❤️', '😂', '🎉', '😮', '😢'] as const

export function formatTime(ts: string): string {
  const d = new Date(ts)
  if (Number.isNaN(d.getTime())) return ''
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
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

export interface MessageActions {
  onReply(m: Message): void
  onDirect(userId: string): void
  /** Resolves when the server took the edit; rejects with a reason to show. */
  onEdit(m: Message, text: string): Promise<void>
  onDelete(m: Message): void
  onReact(m: Message, emoji: string, on: boolean): void
}

interface Props extends MessageActions {
  message: Message
  /** My user id and name: my messages, my reactions, mentions of me. */
  meId: string
  meName: string
  /** Admins may delete anyone's message (the server checks the JWT's roles). */
  admin: boolean
  online: boolean
  /** undefined: not a reply; null: a reply to a message that is not loaded. */
  repliedTo: Message | null | undefined
}

/**
 * One stored message: who and when, its text as safe Markdown, attachment, reactions, and a
 * toolbar (Reply, React, Edit, Delete) that shows on hover and whenever focus is inside the
 * message, so the keyboard reaches every action with Tab.
 */
export const MessageItem = memo(function MessageItem(props: Props) {
  const { message: m, meId, meName, admin, online, repliedTo } = props
  const mine = m.userId === meId
  const [editing, setEditing] = useState(false)
  const [picking, setPicking] = useState(false)
  // Focus goes back to the button that opened the editor or the picker when it closes.
  const editButton = useRef<HTMLButtonElement>(null)
  const reactButton = useRef<HTMLButtonElement>(null)
  const refocus = useRef<'edit' | 'react' | null>(null)
  useEffect(() => {
    if (editing || picking || !refocus.current) return
    ;(refocus.current === 'edit' ? editButton : reactButton).current?.focus()
    refocus.current = null
  }, [editing, picking])
  const reactions = Object.entries(m.reactions ?? {}).filter(([, users]) => users.length > 0)
  const deleted = Boolean(m.deletedAt)
  const mentionsMe = !deleted && !mine && mentions(m.text, meName)
  const classes = ['msg', mine && 'mine', mentionsMe && 'msg--mentions-me', editing && 'msg--editing'].filter(Boolean).join(' ')

  return (
    <li className={classes} data-testid="message" data-seq={m.seq} data-id={m.id} data-status="sent" data-mine={mine ? 'true' : undefined}>
      {repliedTo !== undefined && <ReplyQuote to={repliedTo} />}
      <div className="meta">
        <span className="who">
          <PresenceDot userId={m.userId} online={online} />
          {mine ? (
            m.username
          ) : (
            <button type="button" className="link author" data-testid="author" title={`Message ${m.username} directly`} onClick={() => props.onDirect(m.userId)}>
              {m.username}
            </button>
          )}
        </span>
        <time dateTime={m.timestamp} title={new Date(m.timestamp).toLocaleString()}>
          {formatTime(m.timestamp)}
        </time>
        {!deleted && !editing && (
          <div className="toolbar" role="group" aria-label={`Actions for the message from ${m.username}`} data-testid="message-toolbar">
            <button type="button" className="link" data-testid="reply" aria-label={`Reply to ${m.username}`} onClick={() => props.onReply(m)}>
              Reply
            </button>
            <button type="button" ref={reactButton} className="link" data-testid="react" aria-expanded={picking} aria-label="Add a reaction" onClick={() => setPicking((p) => !p)}>
              React
            </button>
            {mine && (
              <button type="button" ref={editButton} className="link" data-testid="edit" aria-label="Edit your message" onClick={() => setEditing(true)}>
                Edit
              </button>
            )}
            {(mine || admin) && (
              <button type="button" className="link danger" data-testid="delete" aria-label={mine ? 'Delete your message' : `Delete the message from ${m.username}`} onClick={() => props.onDelete(m)}>
                Delete
              </button>
            )}
          </div>
        )}
      </div>
      {picking && !deleted && (
        <ReactionPicker
          onPick={(emoji) => {
            refocus.current = 'react'
            setPicking(false)
            props.onReact(m, emoji, !(m.reactions && Object.hasOwn(m.reactions, emoji) && m.reactions[emoji].includes(meId)))
          }}
          onClose={() => {
            refocus.current = 'react'
            setPicking(false)
          }}
        />
      )}
      {editing ? (
        <EditBox
          initial={m.text}
          onSave={(text) => props.onEdit(m, text)}
          onDone={() => {
            refocus.current = 'edit'
            setEditing(false)
          }}
        />
      ) : (
        <div className={deleted ? 'text deleted' : 'text'} data-testid="message-text">
          {deleted ? 'This message was deleted.' : <MessageText text={m.text} me={meName} />}
        </div>
      )}
      {m.editedAt && !deleted && !editing && (
        <span className="edited" data-testid="edited">
          (edited)
        </span>
      )}
      {m.attachment && !deleted && <AttachmentView attachment={m.attachment} />}
      {reactions.length > 0 && !deleted && (
        <div className="reactions" aria-label="Reactions">
          {reactions.map(([emoji, users]) => {
            const minePressed = users.includes(meId)
            return (
              <button
                key={emoji}
                type="button"
                className={minePressed ? 'chip reaction reaction--mine' : 'chip reaction'}
                data-testid="reaction"
                data-emoji={emoji}
                aria-pressed={minePressed}
                aria-label={`${emoji}: ${users.length} reaction${users.length > 1 ? 's' : ''}${minePressed ? ', including yours' : ''}`}
                onClick={() => props.onReact(m, emoji, !minePressed)}
              >
                {emoji} {users.length}
              </button>
            )
          })}
        </div>
      )}
    </li>
  )
})

/** A few emoji as buttons; focus starts on the first, Escape closes. */
function ReactionPicker({ onPick, onClose }: { onPick(emoji: string): void; onClose(): void }) {
  const first = useRef<HTMLButtonElement>(null)
  useEffect(() => first.current?.focus(), [])
  return (
    <div
      className="picker"
      role="group"
      aria-label="Pick a reaction"
      data-testid="reaction-picker"
      onKeyDown={(e) => {
        if (e.key === 'Escape') {
          e.stopPropagation()
          onClose()
        }
      }}
    >
      {QUICK_REACTIONS.map((emoji, i) => (
        <button key={emoji} ref={i === 0 ? first : undefined} type="button" className="chip" data-testid="pick-reaction" data-emoji={emoji} aria-label={`React with ${emoji}`} onClick={() => onPick(emoji)}>
          {emoji}
        </button>
      ))}
    </div>
  )
}

/** Editing in place: Enter saves, Shift+Enter is a new line, Escape cancels. */
function EditBox({ initial, onSave, onDone }: { initial: string; onSave(text: string): Promise<void>; onDone(): void }) {
  const [text, setText] = useState(initial)
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState('')
  const input = useRef<HTMLTextAreaElement>(null)
  useEffect(() => {
    const el = input.current
    if (!el) return
    el.focus()
    el.setSelectionRange(el.value.length, el.value.length)
  }, [])
  const save = () => {
    const t = text.trim()
    if (!t || busy) return
    if (t === initial.trim()) return onDone()
    setBusy(true)
    onSave(t).then(onDone, (err: unknown) => {
      setBusy(false)
      setError(err instanceof Error ? err.message : String(err))
    })
  }
  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === 'Escape') {
      e.preventDefault()
      e.stopPropagation()
      onDone()
    } else if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault()
      save()
    }
  }
  return (
    <div className="edit-box" data-testid="edit-box">
      <label className="sr-only" htmlFor="edit-input">
        Edit your message
      </label>
      <textarea id="edit-input" ref={input} data-testid="edit-input" rows={2} value={text} onChange={(e) => setText(e.target.value)} onKeyDown={onKeyDown} disabled={busy} />
      <div className="actions">
        <button type="button" data-testid="edit-save" onClick={save} disabled={busy || !text.trim()}>
          Save
        </button>
        <button type="button" className="secondary" data-testid="edit-cancel" onClick={onDone}>
          Cancel
        </button>
        <span className="hint">Enter saves · Escape cancels</span>
      </div>
      {error && (
        <p className="attachment-error" role="alert" data-testid="edit-error">
          {error}
        </p>
      )}
    </div>
  )
}
