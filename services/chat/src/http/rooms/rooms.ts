import type { FastifyInstance } from 'fastify'
import type { MessagesService } from '../../domain/messages.service.ts'
import type { Message } from '../../domain/types.ts'
import type { HistoryPage } from '../../../../../packages/client/src/protocol.ts'
import type { RoomsService } from '../../domain/rooms.service.ts'
import { parse } from '../../validation.ts'
import { CreatedRoomSchema, documentedOnly, errors, HistoryPageSchema, RoomListSchema } from '../wire-schemas.ts'
import { CreateRoomBody, HistoryQuery, RoomParams } from './schema.ts'

/** `GET /api/rooms`, `POST /api/rooms`, `GET /api/rooms/:id/messages` (SPEC §6). */
export async function roomRoutes(
  app: FastifyInstance,
  deps: {
    rooms: RoomsService
    messages: MessagesService
    historyLimit: number
    /** Members added by the creator are told so (a /notifications `invite`). */
    onInvited: (roomId: string, userIds: string[], by: { userId: string; username: string }) => void
  },
) {
  app.addHook('preHandler', app.authenticate)

  const security = [{ bearer: [] }]
  const tags = ['rooms']

  app.get(
    '/api/rooms',
    { schema: { tags, security, summary: 'My rooms, with lastSeq and unread', response: { 200: RoomListSchema, ...errors(401, 429) } } },
    async (request) => ({ rooms: await deps.rooms.listMine(request.identity) }),
  )

  const createSchema = {
    tags,
    security,
    summary: 'Create a room (members get an invite on /notifications)',
    body: CreateRoomBody,
    response: { 201: CreatedRoomSchema, ...errors(400, 401, 409, 429) },
  }
  app.post('/api/rooms', { schema: createSchema, ...documentedOnly }, async (request, reply) => {
    const body = parse(CreateRoomBody, request.body)
    const room = await deps.rooms.create(request.identity, body)
    deps.onInvited(room.id, room.members, { userId: request.identity.userId, username: request.identity.username })
    return reply.status(201).send({ id: room.id, name: room.name, private: room.isPrivate, lastSeq: room.lastSeq, members: room.members })
  })

  const historySchema = {
    tags,
    security,
    summary: 'A page of history, newest first: the messages below `before` (default: the newest)',
    params: RoomParams,
    querystring: HistoryQuery,
    response: { 200: HistoryPageSchema, ...errors(400, 401, 403, 404, 429) },
  }
  // A cached page is the same array until its room changes: its body is serialized once, not on
  // every read of it (issue 20: per-request work done once). A page read from Postgres is a new
  // array; its entry goes with it.
  const bodies = new WeakMap<Message[], string>()
  app.get('/api/rooms/:id/messages', { schema: historySchema, ...documentedOnly }, async (request, reply) => {
    const { id } = parse(RoomParams, request.params)
    const query = parse(HistoryQuery, coerceInts(request.query as Record<string, unknown>))
    await deps.rooms.requireReadable(request.identity, id)
    const limit = query.limit ?? deps.historyLimit
    const messages = await deps.messages.before(id, query.before, limit)
    let body = bodies.get(messages)
    if (body === undefined) {
      const oldest = messages[messages.length - 1]
      const page: HistoryPage = { roomId: id, messages, hasMore: oldest !== undefined && oldest.seq > 1 }
      bodies.set(messages, (body = JSON.stringify(page)))
    }
    return reply.type('application/json; charset=utf-8').send(body)
  })
}

/** Query strings are strings: turn integer-looking values into numbers before validation. */
function coerceInts(q: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(q)) out[k] = typeof v === 'string' && /^-?\d{1,16}$/.test(v) ? Number(v) : v
  return out
}
