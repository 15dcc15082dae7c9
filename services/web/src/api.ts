import type { Message, RoomSummary } from './protocol.ts'

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

async function request<T>(path: string, init: { token?: string; method?: string; body?: unknown } = {}): Promise<T> {
  const headers: Record<string, string> = {}
  if (init.token) headers.authorization = `Bearer ${init.token}`
  if (init.body !== undefined) headers['content-type'] = 'application/json'
  let res: Response
  try {
    res = await fetch(path, { method: init.method ?? 'GET', headers, body: init.body === undefined ? undefined : JSON.stringify(init.body) })
  } catch {
    throw new ApiError(0, 'NETWORK', 'The server cannot be reached')
  }
  const body = (await res.json().catch(() => ({}))) as { error?: string; message?: string }
  if (!res.ok) throw new ApiError(res.status, body.error ?? String(res.status), body.message ?? res.statusText)
  return body as T
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
}
