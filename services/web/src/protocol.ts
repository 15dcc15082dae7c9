/**
 * The /chat wire protocol as the browser sees it (SPEC §4). Payload types come from the
 * server's domain/types.ts so the two cannot drift; the browser bundle never imports server code.
 */

// The wire types are the server's own (a type-only import: nothing of the server is bundled).
import type { DeletedEvent, EditedEvent, Message, OnlineUser, ReactionEvent } from '../../chat/src/domain/types.ts'
export type { Attachment, DeletedEvent, EditedEvent, Message, OnlineUser, ReactionEvent } from '../../chat/src/domain/types.ts'

export type ErrorCode = 'BAD_REQUEST' | 'FORBIDDEN' | 'NOT_FOUND' | 'RATE_LIMITED' | 'TOO_LARGE' | 'UNAVAILABLE' | 'INTERNAL'

export interface AckError {
  status: 'error'
  code: ErrorCode | string
  error: string
  retryAfterMs?: number
}

/** Every ack: `{ status: "ok", ... }` or `{ status: "error", code, error }`. */
export type Ack<T extends object = object> = ({ status: 'ok' } & T) | AckError
type Cb<T extends object = object> = (res: Ack<T>) => void

export interface JoinOk {
  roomId: string
  lastSeq: number
  online: OnlineUser[]
}

export interface SyncOk {
  rooms: Record<string, Message[]>
  /** Messages we hold (seq <= our lastSeq) that changed after our version: their current state. */
  updated?: Record<string, Message[]>
  hasMore?: string[]
  errors?: Record<string, string>
}

export interface SendInput {
  roomId: string
  text: string
  replyTo?: string
  clientMsgId?: string
  attachmentId?: string
}

export interface ClientToServerEvents {
  'room:join': (p: string | { roomId: string; lastSeq?: number; version?: number }, ack: Cb<JoinOk>) => void
  'room:leave': (p: string | { roomId: string }, ack: Cb) => void
  'chat:message': (p: SendInput, ack: Cb<{ messageId: string; seq: number }>) => void
  'chat:typing': (p: { roomId: string; isTyping: boolean }) => void
  'chat:read': (p: { roomId: string; seq: number }, ack: Cb) => void
  'chat:sync': (p: { rooms: Record<string, number | { lastSeq: number; version: number }> }, ack: Cb<SyncOk>) => void
}

export interface RoomUserEvent {
  userId: string
  username: string
  roomId: string
}

export interface ServerToClientEvents {
  'room:history': (p: { roomId: string; messages: Message[]; reads: Record<string, number>; hasMore?: boolean; updated?: Message[] }) => void
  'room:user-joined': (p: RoomUserEvent) => void
  'room:user-left': (p: RoomUserEvent) => void
  'chat:message': (m: Message) => void
  'chat:edited': (p: EditedEvent) => void
  'chat:deleted': (p: DeletedEvent) => void
  'chat:reaction': (p: ReactionEvent) => void
  'chat:typing': (p: RoomUserEvent & { isTyping: boolean }) => void
  'chat:read': (p: { userId: string; roomId: string; messageId: string; seq: number }) => void
  'presence:list': (users: OnlineUser[]) => void
  'presence:online': (u: OnlineUser) => void
  'presence:offline': (u: OnlineUser) => void
}

/** A room of mine as `GET /api/rooms` lists it. */
export interface RoomSummary {
  id: string
  name: string
  private: boolean
  lastSeq: number
  lastReadSeq: number
  unread: number
}

/** SPEC §4 room ids (the regular expression, and the same as an HTML `pattern`). */
export const ROOM_ID = /^(?!\.{1,2}$)[A-Za-z0-9:_.-]{1,128}$/
export const ROOM_ID_PATTERN = '[A-Za-z0-9:_.\\-]{1,128}'
export const ROOM_ID_TITLE = '1–128 characters: letters, digits, : _ . -'
export const MAX_TEXT = 5000
