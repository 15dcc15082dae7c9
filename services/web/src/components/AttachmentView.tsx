import { useState } from 'react'
import { ApiError } from '../api.ts'
import { downloadAttachment, useBlobUrl } from '../chat/useBlobUrl.ts'
import type { Attachment } from '../protocol.ts'

const PREVIEW_TYPES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp'])

export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(bytes < 10 * 1024 ? 1 : 0)} KB`
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`
}

/** A message's file: a preview for images, and a download button for every file. */
export function AttachmentView({ attachment: a, token }: { attachment: Attachment; token: string }) {
  const image = PREVIEW_TYPES.has(a.mimeType)
  const preview = useBlobUrl(token, a.url, image)
  const [error, setError] = useState<string | null>(null)
  const download = () => {
    setError(null)
    downloadAttachment(token, a.url, a.fileName).catch((err: unknown) => setError(err instanceof ApiError ? err.display : String(err)))
  }
  return (
    <div className="attachment" data-testid="attachment" data-attachment-id={a.id} data-mime-type={a.mimeType}>
      {image && preview.src && <img className="preview" src={preview.src} alt={a.fileName} data-testid="attachment-image" />}
      {image && !preview.src && !preview.error && <p className="hint">Loading preview…</p>}
      <button type="button" className="chip" data-testid="attachment-download" title={`Download ${a.fileName}`} onClick={download}>
        📎 {a.fileName} <span className="size">({formatSize(a.size)})</span>
      </button>
      {(error ?? preview.error) && (
        <p className="attachment-error" role="alert">
          {error ?? `No preview: ${preview.error}`}
        </p>
      )}
    </div>
  )
}
