import { useState } from 'react'
import { downloadAttachment, useBlobUrl } from '../chat/useBlobUrl.ts'
import { useVisible } from '../chat/useVisible.ts'
import type { Attachment } from '@switchboard/client'
import { useClient } from '@switchboard/react'
import { errorText } from '../chat/errors.ts'

const PREVIEW_TYPES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp'])

export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(bytes < 10 * 1024 ? 1 : 0)} KB`
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`
}

/**
 * A message's file: a preview for images (fetched once it scrolls near the view; its placeholder
 * is as tall as a preview may be, so the timeline never grows under the reader when it arrives),
 * and a download button for every file.
 */
export function AttachmentView({ attachment: a }: { attachment: Attachment }) {
  const client = useClient()
  const image = PREVIEW_TYPES.has(a.mimeType)
  const [box, visible] = useVisible<HTMLDivElement>()
  const preview = useBlobUrl(client, a.url, image && visible)
  const [error, setError] = useState<string | null>(null)
  const download = () => {
    setError(null)
    downloadAttachment(client, a.url, a.fileName).catch((err: unknown) => setError(errorText(err)))
  }
  return (
    <div className="attachment" data-testid="attachment" data-attachment-id={a.id} data-mime-type={a.mimeType}>
      {image && (
        <div className="preview-box" ref={box}>
          {preview.src ? <img className="preview" src={preview.src} alt={a.fileName} data-testid="attachment-image" /> : !preview.error && <p className="hint">Loading preview…</p>}
        </div>
      )}
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
