import type { Attachment, Message, RoomSummary } from './protocol.ts'

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

async function call(path: string, init: { token?: string; method?: string; body?: unknown; form?: FormData }): Promise<Response> {
  const headers: Record<string, string> = {}
  if (init.token) headers.authorization = `Bearer ${init.token}`
  if (init.body !== undefined) headers['content-type'] = 'application/json'
  const body = init.form ?? (init.body === undefined ? undefined : JSON.stringify(init.body))
  try {
    return await fetch(path, { method: init.method ?? 'GET', headers, body })
  } catch {
    throw new ApiError(0, 'NETWORK', 'The server cannot be reached')
  }
}

const failure = async (res: Response) => {
  const body = (await res.json().catch(() => ({}))) as { error?: string; message?: string }
  return new ApiError(res.status, body.error ?? String(res.status), body.message ?? res.statusText)
}

async function request<T>(path: string, init: { token?: string; method?: string; body?: unknown; form?: FormData } = {}): Promise<T> {
  const res = await call(path, init)
  if (!res.ok) throw await failure(res)
  return (await res.json().catch(() => ({}))) as T
}

export const api = {
  devToken: (username: string) =>
    request<{ token: string; userId: string; username: string }>('/api/dev/token', { method: 'POST', body: { username } }),
  rooms: (token: string) => request<{ rooms: RoomSummary[] }>('/api/rooms', { token }),
  createRoom: (token: string, body: { name: string; id?: string; private?: boolean }) =>
    request<{ id: string; name: string; private: boolean }>('/api/rooms', { token, method: 'POST', body }),
  /** Older history, newest first. */
  messagesBefore: (token: string, roomId: string, before: number, limit = 50) =>
    request<{ roomId: string; messages: Message[]; hasMore: boolean }>(
      `/api/rooms/${encodeURIComponent(roomId)}/messages?before=${before}&limit=${limit}`,
      { token },
    ),
  /**
   * Whether a room exists, without joining (a join creates a missing public room): the history
   * route answers 404 for a missing room, 403 for someone else's private one.
   */
  roomExists: async (token: string, roomId: string): Promise<'exists' | 'missing' | 'forbidden'> => {
    const res = await call(`/api/rooms/${encodeURIComponent(roomId)}/messages?limit=1`, { token })
    await res.arrayBuffer().catch(() => undefined)
    if (res.status === 404) return 'missing'
    if (res.status === 403) return 'forbidden'
    if (!res.ok) throw await failure(res)
    return 'exists'
  },
  /** `POST /api/uploads`: roomId first (the server checks the room before it reads the file). */
  upload: (token: string, roomId: string, file: File) => {
    const form = new FormData()
    form.append('roomId', roomId)
    form.append('file', file, file.name)
    return request<Attachment>('/api/uploads', { token, method: 'POST', form })
  },
  /** An attachment's bytes. Fetched with the bearer token: an `<img src>` could not send it. */
  attachment: async (token: string, url: string): Promise<Blob> => {
    const res = await call(url, { token })
    if (!res.ok) throw await failure(res)
    return res.blob()
  },
}
