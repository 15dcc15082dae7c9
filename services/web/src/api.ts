/**
 * The HTTP calls the web client makes without a connected client: sign-in (dev tokens) and
 * asking whether a room exists before a join would create it. Everything else goes through
 * `@switchboard/client`.
 */
import type { DevTokenOk, HttpError } from '@switchboard/client'

/** An HTTP error answer `{ error: CODE, message }` (SPEC §6). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
  /** "message (CODE)", for the error line. */
  get display(): string {
    return `${this.message} (${this.code})`
  }
}

async function call(path: string, init: { token?: string; method?: string; body?: unknown } = {}): Promise<Response> {
  const headers: Record<string, string> = {}
  if (init.token) headers.authorization = `Bearer ${init.token}`
  if (init.body !== undefined) headers['content-type'] = 'application/json'
  try {
    return await fetch(path, { method: init.method ?? 'GET', headers, body: init.body === undefined ? undefined : JSON.stringify(init.body) })
  } catch {
    throw new ApiError(0, 'NETWORK', 'The server cannot be reached')
  }
}

const failure = async (res: Response) => {
  const body = (await res.json().catch(() => ({}))) as Partial<HttpError>
  return new ApiError(res.status, body.error ?? String(res.status), body.message ?? res.statusText)
}

export const api = {
  devToken: async (username: string): Promise<DevTokenOk> => {
    const res = await call('/api/dev/token', { method: 'POST', body: { username } })
    if (!res.ok) throw await failure(res)
    return (await res.json()) as DevTokenOk
  },
  /**
   * Whether a room exists, without joining (a join creates a missing public room): the history
   * route answers 404 for a missing room, 403 for someone else's private one.
   */
  roomExists: async (token: string, roomId: string): Promise<'exists' | 'missing' | 'forbidden'> => {
    const res = await call(`/api/rooms/${encodeURIComponent(roomId)}/messages?limit=1`, { token })
    if (res.status === 404 || res.status === 403) {
      await res.arrayBuffer().catch(() => undefined)
      return res.status === 404 ? 'missing' : 'forbidden'
    }
    if (!res.ok) throw await failure(res)
    await res.arrayBuffer().catch(() => undefined)
    return 'exists'
  },
}
