import { useRef } from 'react'
import { formatSize } from './AttachmentView.tsx'

/** Picks one file for the next message, and shows the picked one with a way to drop it. */
export function AttachPicker({ file, disabled, onPick }: { file: File | null; disabled: boolean; onPick(file: File | null): void }) {
  const input = useRef<HTMLInputElement>(null)
  return (
    <div className="attach">
      <input
        ref={input}
        type="file"
        hidden
        data-testid="attach-input"
        onChange={(e) => {
          onPick(e.target.files?.[0] ?? null)
          e.target.value = '' // picking the same file again still fires
        }}
      />
      <button type="button" className="link" data-testid="attach" disabled={disabled} onClick={() => input.current?.click()}>
        📎 Attach
      </button>
      {file && (
        <span className="chip" data-testid="attach-picked">
          {file.name} ({formatSize(file.size)})
          <button type="button" className="link" data-testid="attach-remove" aria-label={`Remove ${file.name}`} disabled={disabled} onClick={() => onPick(null)}>
            ×
          </button>
        </span>
      )}
    </div>
  )
}
