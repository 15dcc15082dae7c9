import { useEffect, useState } from 'react'
import type { SwitchboardClient } from '@switchboard/client'
import { errorText } from './errors.ts'

/**
 * An object URL for an attachment fetched with the bearer token (an `<img src>` cannot send the
 * Authorization header; D47). Fetched once per url while `enabled`; revoked when the component goes.
 */
export function useBlobUrl(client: SwitchboardClient, url: string, enabled: boolean): { src: string | null; error: string | null } {
  const [state, setState] = useState<{ src: string | null; error: string | null }>({ src: null, error: null })
  useEffect(() => {
    if (!enabled) return
    let alive = true
    let objectUrl: string | null = null
    client.fetchAttachment(url).then(
      (blob) => {
        if (!alive) return
        objectUrl = URL.createObjectURL(blob)
        setState({ src: objectUrl, error: null })
      },
      (err: unknown) => alive && setState({ src: null, error: errorText(err) }),
    )
    return () => {
      alive = false
      if (objectUrl) URL.revokeObjectURL(objectUrl)
    }
  }, [client, url, enabled])
  return state
}

/** Saves an attachment under its own name: fetched with the token, handed over as a blob. */
export async function downloadAttachment(client: SwitchboardClient, url: string, fileName: string): Promise<void> {
  const objectUrl = URL.createObjectURL(await client.fetchAttachment(url))
  const a = document.createElement('a')
  a.href = objectUrl
  a.download = fileName
  document.body.append(a)
  a.click()
  a.remove()
  // The download has its own copy once it started.
  setTimeout(() => URL.revokeObjectURL(objectUrl), 60_000)
}
