import Type, { type Static } from 'typebox'
import type * as Wire from '../../../../packages/client/src/protocol.ts'
import { ERROR_CODES } from '../../../../packages/client/src/protocol.ts'
import { RoomId } from '../domain/schemas.ts'

/**
 * The JSON bodies the HTTP routes answer, as TypeBox schemas: Fastify serializes each response
 * with its schema (fast-json-stringify, which drops any property a schema does not name) and
 * `@fastify/swagger` documents them (D172). The compile-time checks at the end keep every schema
 * the same type as its protocol-module counterpart, so a field added to the wire type and not
 * here fails to compile instead of silently vanishing from the responses.
 */

/** Emoji → user ids. A plain map with any key (emoji are data, D32), never `patternProperties`. */
const Reactions = Type.Unsafe<Record<string, string[]>>({
  type: 'object',
  additionalProperties: { type: 'array', items: { type: 'string' } },
  description: 'emoji → the ids of the users who reacted with it',
})

export const AttachmentSchema = Type.Object(
  {
    id: Type.String(),
    fileName: Type.String(),
    mimeType: Type.String(),
    size: Type.Integer({ minimum: 0 }),
    url: Type.String({ description: '`/api/attachments/<id>?room=<roomId>`: fetch it with the bearer token' }),
  },
  { title: 'Attachment' },
)

export const MessageSchema = Type.Object(
  {
    id: Type.String({ description: 'UUIDv7' }),
    roomId: Type.String(),
    seq: Type.Integer({ minimum: 1, description: 'rises by one per message within the room, no gaps' }),
    version: Type.Integer({ minimum: 0, description: "the room's version at this message's last change" }),
    userId: Type.String(),
    username: Type.String(),
    text: Type.String({ description: 'empty once deleted' }),
    replyTo: Type.Optional(Type.String()),
    attachment: Type.Optional(AttachmentSchema),
    reactions: Type.Optional(Reactions),
    editedAt: Type.Optional(Type.String({ format: 'date-time' })),
    deletedAt: Type.Optional(Type.String({ format: 'date-time', description: 'set on a tombstone' })),
    timestamp: Type.String({ format: 'date-time', description: 'when it was committed' }),
  },
  { title: 'Message' },
)

export const HttpErrorSchema = Type.Object(
  {
    error: Type.String({ description: `a code: ${[...ERROR_CODES, 'CONFLICT', 'AUTH_REQUIRED', 'AUTH_INVALID', 'AUTH_EXPIRED'].join(', ')}` }),
    message: Type.String(),
  },
  { title: 'HttpError' },
)

export const RoomSummarySchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  private: Type.Boolean(),
  lastSeq: Type.Integer({ minimum: 0 }),
  lastReadSeq: Type.Integer({ minimum: 0 }),
  unread: Type.Integer({ minimum: 0 }),
})
export const RoomListSchema = Type.Object({ rooms: Type.Array(RoomSummarySchema) })

/** `POST /api/rooms` → 201. */
export const CreatedRoomSchema = Type.Object({
  id: RoomId,
  name: Type.String(),
  private: Type.Boolean(),
  lastSeq: Type.Integer({ minimum: 0 }),
  members: Type.Array(Type.String(), { description: 'the user ids of the members, the creator included' }),
})

export const HistoryPageSchema = Type.Object({
  roomId: Type.String(),
  messages: Type.Array(MessageSchema, { description: 'newest first' }),
  hasMore: Type.Boolean({ description: 'older messages exist: ask again with before = the oldest seq here' }),
})

export const DevTokenSchema = Type.Object({
  token: Type.String({ description: 'an HS256 JWT' }),
  userId: Type.String({ description: 'stable: derived from the username' }),
  username: Type.String(),
  roles: Type.Array(Type.String()),
  expiresAt: Type.String({ format: 'date-time' }),
})

export const HealthSchema = Type.Object({ status: Type.Literal('ok'), node: Type.String() })

const Dependency = Type.Union([Type.Literal('postgres'), Type.Literal('redis')])
const DependencyState = Type.Union([Type.Literal('ok'), Type.Literal('down')])
/** `/readyz`, 200 and 503: every field any of its answers carries. */
export const ReadinessSchema = Type.Object({
  status: Type.Union(['ready', 'degraded', 'unavailable', 'draining'].map((s) => Type.Literal(s))),
  node: Type.String(),
  checks: Type.Optional(Type.Object({ postgres: Type.Optional(DependencyState), redis: Type.Optional(DependencyState) })),
  errors: Type.Optional(Type.Object({ postgres: Type.Optional(Type.String()), redis: Type.Optional(Type.String()) })),
  /** 503 answers: `UNAVAILABLE`, and why. */
  error: Type.Optional(Type.String()),
  message: Type.Optional(Type.String()),
  lost: Type.Optional(Dependency),
  peers: Type.Optional(Type.Integer({ minimum: 0 })),
})

/**
 * Route options for request schemas that only document a route: its handler still validates
 * with `parse()` (the same TypeBox objects), so the error texts and the storable-string checks
 * stay as they are and Fastify's Ajv neither coerces nor strips anything (D172).
 */
export const documentedOnly = { validatorCompiler: () => () => true } as const

/** Error answers of a route: `{ error, message }` for each status it can send. */
export function errors<const S extends readonly number[]>(...statuses: S): { [K in S[number]]: typeof HttpErrorSchema } {
  return Object.fromEntries(statuses.map((s) => [s, HttpErrorSchema])) as { [K in S[number]]: typeof HttpErrorSchema }
}

// Exact equality (an optional field on one side only counts as a difference).
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false
/** Compile-time: each response schema is its protocol type (D172). */
export const RESPONSES_MATCH_PROTOCOL = {
  attachment: true as Same<Static<typeof AttachmentSchema>, Wire.Attachment>,
  message: true as Same<Static<typeof MessageSchema>, Wire.Message>,
  roomSummary: true as Same<Static<typeof RoomSummarySchema>, Wire.RoomSummary>,
  historyPage: true as Same<Static<typeof HistoryPageSchema>, Wire.HistoryPage>,
  httpError: true as Same<Static<typeof HttpErrorSchema>, Wire.HttpError>,
  devToken: true as Same<Static<typeof DevTokenSchema>, Wire.DevTokenOk>,
  createdRoom: true as Same<Static<typeof CreatedRoomSchema>, Wire.CreatedRoom>,
} satisfies Record<string, true>
