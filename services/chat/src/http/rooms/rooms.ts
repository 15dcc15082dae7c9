import type { FastifyInstance } from 'fastify'
import type { MessagesService } from '../../domain/messages.service.ts'
import type { RoomsService } from '../../domain/rooms.service.ts'
import { parse } from '../../validation.ts'
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

  app.get('/api/rooms', async (request) => ({ rooms: await deps.rooms.listMine(request.identity) }))

  app.post('/api/rooms', async (request, reply) => {
    const body = parse(CreateRoomBody, request.body)
    const room = await deps.rooms.create(request.identity, body)
    deps.onInvited(room.id, room.members, { userId: request.identity.userId, username: request.identity.username })
    return reply.status(201).send({ id: room.id, name: room.name, private: room.isPrivate, lastSeq: room.lastSeq, members: room.members })
  })

  app.get('/api/rooms/:id/messages', async (request) => {
    const { id } = parse(RoomParams, request.params)
    const query = parse(HistoryQuery, coerceInts(request.query as Record<string, unknown>))
    await deps.rooms.requireReadable(request.identity, id)
    const limit = query.limit ?? deps.historyLimit
    const messages = await deps.messages.before(id, query.before, limit)
    const oldest = messages[messages.length - 1]
    return { roomId: id, messages, hasMore: oldest !== undefined && oldest.seq > 1 }
  })
}

/** Query strings are strings: turn integer-looking values into numbers before validation. */
function coerceInts(q: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(q)) out[k] = typeof v === 'string' && /^-?\d{1,16}$/.test(v) ? Number(v) : v
  return out
}
