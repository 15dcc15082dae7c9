import Type, { type Static } from 'typebox'
import { AppError } from '../errors.ts'

import type * as Wire from '../../../../packages/client/src/protocol.ts'
// SPEC §4 limits, from the protocol module. `.` and `..` are refused as room ids: every HTTP client
// folds them out of `/api/rooms/<id>/messages` (D116).
import { MAX_EMOJI, MAX_SYNC_ROOMS, MAX_TEXT, ROOM_ID_PATTERN } from '../../../../packages/client/src/protocol.ts'
export { MAX_TEXT, ROOM_ID_PATTERN }

export const RoomId = Type.String({ pattern: ROOM_ID_PATTERN, description: 'a room id: 1–128 chars of [A-Za-z0-9:_.-]' })
export const MessageId = Type.String({
  pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$',
  description: 'a message id (UUID)',
})
export const Seq = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'an integer seq ≥ 0' })
// Length is checked again after trimming; this bound only stops absurd payloads early.
const Text = Type.String({ maxLength: MAX_TEXT * 4, description: `a string of 1–${MAX_TEXT} characters` })
const Flag = (name: string) => Type.Boolean({ description: `${name}: true or false` })

export const Version = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'an integer version ≥ 0' })

/**
 * `room:join` and `room:leave` also take a bare room id: the router wraps it as `{ roomId }`.
 * `version` (the highest the client saw) asks for `updated`; it needs `lastSeq` (checked by `syncPoint`).
 */
export const JoinPayload = Type.Object({ roomId: RoomId, lastSeq: Type.Optional(Seq), version: Type.Optional(Version) })
export const LeavePayload = Type.Object({ roomId: RoomId })
export const SendPayload = Type.Object({
  roomId: RoomId,
  text: Text,
  replyTo: Type.Optional(MessageId),
  clientMsgId: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'a string of 1–128 characters' })),
  attachmentId: Type.Optional(Type.String({ ...MessageId, description: 'an attachment id (UUID)' })),
})
export const EditPayload = Type.Object({ roomId: RoomId, messageId: MessageId, text: Text })
export const DeletePayload = Type.Object({ roomId: RoomId, messageId: MessageId })
export const ReactPayload = Type.Object({
  roomId: RoomId,
  messageId: MessageId,
  emoji: Type.String({ minLength: 1, maxLength: MAX_EMOJI, description: `a string of 1–${MAX_EMOJI} characters` }),
  on: Flag('on'),
})
export const TypingPayload = Type.Object({ roomId: RoomId, isTyping: Flag('isTyping') })
/** One of `messageId` and `seq` (checked by `readTarget`: a union would report the wrong branch). */
export const ReadPayload = Type.Object({ roomId: RoomId, messageId: Type.Optional(MessageId), seq: Type.Optional(Seq) })
/** Where a client is in a room: a bare lastSeq, or `{ lastSeq, version }` to also get `updated`. */
export const SyncPoint = Type.Union(
  [Seq, Type.Object({ lastSeq: Seq, version: Version }, { additionalProperties: false })],
  { description: 'an integer seq ≥ 0 (the lastSeq), or { lastSeq, version } of integers ≥ 0' },
)
export const SyncPayload = Type.Object({
  rooms: Type.Record(Type.String({ pattern: ROOM_ID_PATTERN }), SyncPoint, {
    maxProperties: MAX_SYNC_ROOMS,
    additionalProperties: false,
    description: `an object of at most ${MAX_SYNC_ROOMS} room ids, each mapped to its lastSeq or { lastSeq, version }`,
    keyDescription: 'room ids (1–128 chars of [A-Za-z0-9:_.-])',
  }),
})
export const RefreshPayload = Type.Object({ token: Type.String({ minLength: 1, maxLength: 8192, description: 'a JWT' }) })

export type SendInput = Static<typeof SendPayload>
export type EditInput = Static<typeof EditPayload>
export type DeleteInput = Static<typeof DeletePayload>
export type ReactInput = Static<typeof ReactPayload>
export type ReadInput = Static<typeof ReadPayload>
export type JoinInput = Static<typeof JoinPayload>

/** A sync point as the feed takes it: `version` undefined for the bare form (no `updated`). */
export function syncPoint(p: Static<typeof SyncPoint> | { lastSeq?: number; version?: number }): { lastSeq?: number; version?: number } {
  if (typeof p === 'number') return { lastSeq: p }
  if (p.version !== undefined && p.lastSeq === undefined) {
    throw new AppError('BAD_REQUEST', 'Invalid payload: version needs lastSeq (an integer seq ≥ 0)')
  }
  return { lastSeq: p.lastSeq, version: p.version }
}

/** What a `chat:read` points at: exactly one of `messageId` and `seq`. */
export function readTarget(input: ReadInput): { id: string } | { seq: number } {
  if ((input.messageId === undefined) === (input.seq === undefined)) {
    throw new AppError('BAD_REQUEST', 'Invalid payload: give exactly one of messageId (a message id) and seq (an integer seq ≥ 0)')
  }
  return input.messageId !== undefined ? { id: input.messageId } : { seq: input.seq! }
}

/** Trims message text and enforces SPEC §4: non-empty, at most 5,000 characters. */
export function cleanText(text: string): string | null {
  const t = text.trim()
  if (t.length === 0) return null
  // Count code points, not UTF-16 units; a cheap bound first.
  if (t.length > MAX_TEXT && [...t].length > MAX_TEXT) return null
  return t
}

/**
 * Compile-time drift check (D162): every payload the protocol module lets a client send is one
 * these schemas accept, and the simple ones are the same type both ways.
 */
// Exact equality (an optional field on one side only counts as a difference).
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false
type Accepts<Schema, Wire> = [Wire] extends [Schema] ? true : false
export const PAYLOADS_MATCH_PROTOCOL = {
  join: true as Accepts<JoinInput, Exclude<Wire.JoinPayload, string>>,
  send: true as Same<SendInput, Wire.SendPayload>,
  edit: true as Same<EditInput, Wire.EditPayload>,
  delete: true as Same<DeleteInput, Wire.DeletePayload>,
  react: true as Same<ReactInput, Wire.ReactPayload>,
  typing: true as Same<Static<typeof TypingPayload>, Wire.TypingPayload>,
  read: true as Accepts<ReadInput, Wire.ReadPayload>,
  sync: true as Same<Static<typeof SyncPayload>, Wire.SyncPayload>,
  refresh: true as Same<Static<typeof RefreshPayload>, Wire.RefreshPayload>,
} satisfies Record<string, true>
