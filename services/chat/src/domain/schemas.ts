import Type, { type Static } from 'typebox'

/** SPEC §4 limits. */
export const MAX_TEXT = 5000
export const ROOM_ID_PATTERN = '^[A-Za-z0-9:_.\\-]{1,128}$'

export const RoomId = Type.String({ pattern: ROOM_ID_PATTERN, description: '1–128 chars of [A-Za-z0-9:_.-]' })
export const MessageId = Type.String({ pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' })
export const Seq = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })
// Length is checked again after trimming; this bound only stops absurd payloads early.
const Text = Type.String({ maxLength: MAX_TEXT * 4 })

export const JoinPayload = Type.Union([RoomId, Type.Object({ roomId: RoomId, lastSeq: Type.Optional(Seq) })])
export const LeavePayload = Type.Union([RoomId, Type.Object({ roomId: RoomId })])
export const SendPayload = Type.Object({
  roomId: RoomId,
  text: Text,
  replyTo: Type.Optional(MessageId),
  clientMsgId: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  attachmentId: Type.Optional(MessageId),
})
export const EditPayload = Type.Object({ roomId: RoomId, messageId: MessageId, text: Text })
export const DeletePayload = Type.Object({ roomId: RoomId, messageId: MessageId })
export const ReactPayload = Type.Object({
  roomId: RoomId,
  messageId: MessageId,
  emoji: Type.String({ minLength: 1, maxLength: 32 }),
  on: Type.Boolean(),
})
export const TypingPayload = Type.Object({ roomId: RoomId, isTyping: Type.Boolean() })
export const ReadPayload = Type.Union([
  Type.Object({ roomId: RoomId, messageId: MessageId }),
  Type.Object({ roomId: RoomId, seq: Seq }),
])
export const SyncPayload = Type.Object({
  rooms: Type.Record(Type.String({ pattern: ROOM_ID_PATTERN }), Seq, { maxProperties: 200, additionalProperties: false }),
})
export const RefreshPayload = Type.Object({ token: Type.String({ minLength: 1, maxLength: 8192 }) })

export type SendInput = Static<typeof SendPayload>
export type EditInput = Static<typeof EditPayload>
export type DeleteInput = Static<typeof DeletePayload>
export type ReactInput = Static<typeof ReactPayload>
export type ReadInput = Static<typeof ReadPayload>

/** Trims message text and enforces SPEC §4: non-empty, at most 5,000 characters. */
export function cleanText(text: string): string | null {
  const t = text.trim()
  if (t.length === 0) return null
  // Count code points, not UTF-16 units; a cheap bound first.
  if (t.length > MAX_TEXT && [...t].length > MAX_TEXT) return null
  return t
}
