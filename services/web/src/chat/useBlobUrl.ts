import { useEffect, useState } from 'react'
import { api, ApiError } from '../api.ts'

/**
 * An object URL for an attachment fetched with the bearer token (an `<img src>` cannot send the
 * Authorization header). Fetched once per url while `enabled`; revoked when the component goes.
 */
export function useBlobUrl(token: string, url: string, enabled: boolean): { src: string | null; error: string | null } {
  const [state, setState] = useState<{ src: string | null; error: string | null }>({ src: null, error: null })
  useEffect(() => {
    if (!enabled) return
    let alive = true
    let objectUrl: string | null = null
    api.attachment(token, url).then(
      (blob) => {
        if (!alive) return
        objectUrl = URL.createObjectURL(blob)
        setState({ src: objectUrl, error: null })
      },
      (err: unknown) => alive && setState({ src: null, error: err instanceof ApiError ? err.display : String(err) }),
    )
    return () => {
      alive = false
      if (objectUrl) URL.revokeObjectURL(objectUrl)
    }
  }, [token, url, enabled])
  return state
}

/** Saves an attachment under its own name: fetched with the token, handed over as a blob. */
export async function downloadAttachment(token: string, url: string, fileName: string): Promise<void> {
  const objectUrl = URL.createObjectURL(await api.attachment(token, url))
  const a = document.createElement('a')
  a.href = objectUrl
  a.download = fileName
  document.body.append(a)
  a.click()
  a.remove()
  // The download has its own copy once it started.
  setTimeout(() => URL.revokeObjectURL(objectUrl), 60_000)
}
