import { useEffect, useRef, useState, type FormEvent, type KeyboardEvent, type RefObject } from 'react'
import { MAX_TEXT, type Message } from '@switchboard/client'
import { AttachPicker } from './AttachPicker.tsx'

interface Props {
  /** The textarea, for focusing it from outside (after "Jump to latest"). */
  inputRef?: RefObject<HTMLTextAreaElement | null>
  roomId: string
  replyTo: Message | null
  onCancelReply(): void
  /** Text handed back after a send the server refused for good (too long, no access). */
  draft: { id: number; text: string } | null
  onTakeDraft(id: number): void
  onTyping(text: string): void
  onStopTyping(): void
  onSend(text: string): boolean
  /** Uploads the file, then sends it with `text` (may be empty); false when the upload failed. */
  onSendFile(file: File, text: string): Promise<boolean>
}

/** Enter sends, Shift+Enter starts a new line. Over-long text is sent anyway: the server's answer is shown. */
export function Composer({ inputRef, roomId, replyTo, onCancelReply, draft, onTakeDraft, onTyping, onStopTyping, onSend, onSendFile }: Props) {
  const [text, setText] = useState('')
  const [file, setFile] = useState<File | null>(null)
  const [uploading, setUploading] = useState(false)
  const own = useRef<HTMLTextAreaElement>(null)
  const input = inputRef ?? own
  const length = [...text.trim()].length

  useEffect(() => {
    if (!draft) return
    setText((t) => t || draft.text)
    onTakeDraft(draft.id)
  }, [draft, onTakeDraft])

  useEffect(() => {
    if (replyTo) input.current?.focus()
  }, [replyTo])

  function send(e?: FormEvent) {
    e?.preventDefault()
    if (uploading) return
    if (file) {
      setUploading(true)
      void onSendFile(file, text).then((sent) => {
        setUploading(false)
        if (sent) {
          setText('')
          setFile(null)
        }
        input.current?.focus()
      })
      return
    }
    if (onSend(text)) setText('')
    input.current?.focus()
  }

  function onKeyDown(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (e.key === 'Escape' && replyTo) {
      e.preventDefault()
      return onCancelReply()
    }
    if (e.key !== 'Enter' || e.shiftKey || e.nativeEvent.isComposing) return
    e.preventDefault()
    send()
  }

  return (
    <form className="composer" onSubmit={send} aria-label={`Message ${roomId}`}>
      {replyTo && (
        <div className="replying" data-testid="reply-preview">
          <span>
            Replying to <strong>{replyTo.username}</strong>: {replyTo.text.length > 80 ? `${replyTo.text.slice(0, 80)}…` : replyTo.text}
          </span>
          <button type="button" className="link" data-testid="reply-cancel" onClick={onCancelReply} aria-label="Cancel the reply">
            Cancel
          </button>
        </div>
      )}
      <label htmlFor="composer">Message</label>
      <textarea
        id="composer"
        ref={input}
        data-testid="composer"
        rows={2}
        placeholder="Enter to send, Shift+Enter for a new line"
        value={text}
        aria-describedby={length > MAX_TEXT * 0.9 ? 'composer-count' : undefined}
        onChange={(e) => {
          setText(e.target.value)
          onTyping(e.target.value)
        }}
        onKeyDown={onKeyDown}
        onBlur={onStopTyping}
      />
      <button type="submit" data-testid="send" disabled={uploading || (!text.trim() && !file)}>
        {uploading ? 'Uploading…' : 'Send'}
      </button>
      <AttachPicker file={file} disabled={uploading} onPick={setFile} />
      {length > MAX_TEXT * 0.9 && (
        <p id="composer-count" className={length > MAX_TEXT ? 'count over' : 'count'} data-testid="composer-count">
          {length} / {MAX_TEXT} characters
        </p>
      )}
    </form>
  )
}
