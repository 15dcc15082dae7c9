import type { RateLimit, Throttle } from '../cluster/rate-limit.ts'
import type { Tokens } from '../auth/tokens.ts'
import type { Config } from '../config.ts'
import type { MessagesService } from '../domain/messages.service.ts'
import type { RoomsService } from '../domain/rooms.service.ts'
import * as S from '../domain/schemas.ts'
import type { Message } from '../domain/types.ts'
import { AppError, toAppError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { Metrics } from '../metrics.ts'
import { nodeRoom, userRoom, type ChatNamespace, type ChatSocket } from './events.ts'
import { EventRouter } from './handle.ts'
import type { RoomFeed, Subscription } from './room-feed.ts'
import { addRefresh } from './session.ts'

export interface ChatDeps {
  config: Config
  log: Logger
  metrics: Metrics
  tokens: Tokens
  rooms: RoomsService
  messages: MessagesService
  feed: RoomFeed
  /** Per user, cluster-wide: room joins (which create rooms) and syncs (D56). */
  joinLimit: RateLimit
  syncLimit: RateLimit
  typing: Throttle
}

/**
 * /chat: rooms, messages, typing, receipts, sync, token refresh (SPEC §4). Built once per
 * node; each socket gets `router.listener` (see `EventRouter`).
 */
export function chatRouter(nsp: ChatNamespace, deps: ChatDeps): EventRouter {
  const { config, rooms, messages, feed } = deps
  const who = (socket: ChatSocket) => socket.data.identity
  const router = new EventRouter(deps.log, deps.metrics)

  router.on('room:join', S.JoinPayload, async (socket, p) => {
    const { roomId } = p
    const { lastSeq, version } = S.syncPoint(p)
    await deps.joinLimit.consume(who(socket).userId)
    const wasIn = socket.rooms.has(roomId)
    await rooms.join(who(socket), roomId)
    const state = await rooms.roomState(roomId)
    const limit = lastSeq === undefined ? config.HISTORY_LIMIT : config.SYNC_MAX_MESSAGES
    const sub = await feed.subscribe(socket, roomId, lastSeq, limit, version)
    const history = { roomId, messages: sub.messages, reads: state.reads, hasMore: sub.hasMore }
    // `updated` only when the client gave its version (SPEC §4): the bare form stays as it was.
    socket.emit('room:history', sub.updated ? { ...history, updated: sub.updated } : history)
    sub.join()
    if (!wasIn) {
      const { userId, username } = who(socket)
      nsp.to(roomId).except(userRoom(userId)).emit('room:user-joined', { userId, username, roomId })
    }
    return { roomId, lastSeq: sub.lastSeq, online: state.online }
  }, { bareRoomId: true })

  router.on('room:leave', S.LeavePayload, async (socket, { roomId }) => {
    const { userId, username } = who(socket)
    const wasMember = await rooms.leave(who(socket), roomId)
    // Membership is per user: every device of the user leaves, on whichever node. This node's
    // sockets leave now; the others' through the adapter, which applies a cross-node leave only
    // after a Redis round trip, here too: a join right after this (the same socket) must not be
    // undone by it, so this node's sockets are left out of that one.
    nsp.local.in(userRoom(userId)).socketsLeave(roomId)
    nsp.in(userRoom(userId)).except(nodeRoom(config.nodeId)).socketsLeave(roomId)
    // Only a member's leave is news; a stranger's must reach nobody (SPEC §4).
    if (wasMember) nsp.to(roomId).except(userRoom(userId)).emit('room:user-left', { userId, username, roomId })
  }, { bareRoomId: true })

  router.on('chat:message', S.SendPayload, (socket, p) => messages.send(who(socket), p, socket.rooms.has(p.roomId)))
  router.on('chat:edit', S.EditPayload, (socket, p) => messages.edit(who(socket), p))
  router.on('chat:delete', S.DeletePayload, (socket, p) => messages.delete(who(socket), p))
  router.on('chat:react', S.ReactPayload, (socket, p) => messages.react(who(socket), p))
  router.on('chat:read', S.ReadPayload, (socket, p) => messages.markRead(who(socket), p))

  router.on('chat:typing', S.TypingPayload, async (socket, p) => {
    if (!socket.rooms.has(p.roomId)) throw new AppError('FORBIDDEN', 'Join the room first')
    const { userId, username } = who(socket)
    // Throttled per user, room and state; a throttled event is dropped, not an error.
    // Cluster-wide: the user's sockets on other nodes share the window (D56).
    const allowed = await deps.typing.allow(`${userId}:${p.roomId}:${p.isTyping}`)
    if (!allowed) deps.metrics.rateLimited.inc({ kind: 'typing' })
    else nsp.to(p.roomId).except(userRoom(userId)).emit('chat:typing', { userId, username, roomId: p.roomId, isTyping: p.isTyping })
  })

  router.on('chat:sync', S.SyncPayload, async (socket, p, ctx) => {
    await deps.syncLimit.consume(who(socket).userId)
    // Room ids are user input: `__proto__` is a room like any other.
    const out: Record<string, Message[]> = Object.create(null)
    const updated: Record<string, Message[]> = Object.create(null)
    const errors: Record<string, string> = Object.create(null)
    const hasMore: string[] = []
    const subs: Subscription[] = []
    try {
      for (const [roomId, point] of Object.entries(p.rooms)) {
        try {
          const { lastSeq, version } = S.syncPoint(point)
          await rooms.requireMember(who(socket), roomId)
          const sub = await feed.subscribe(socket, roomId, lastSeq, config.SYNC_MAX_MESSAGES, version)
          subs.push(sub)
          out[roomId] = sub.messages
          if (sub.updated) updated[roomId] = sub.updated
          if (sub.hasMore) hasMore.push(roomId)
        } catch (err) {
          const e = toAppError(err)
          if (e.code === 'UNAVAILABLE' || e.code === 'INTERNAL') throw e
          errors[roomId] = e.code
        }
      }
    } catch (err) {
      for (const s of subs) s.cancel()
      throw err
    }
    // The ack (what was missed) goes out before any live message of these rooms: then join.
    ctx.ack(Object.keys(errors).length > 0 ? { rooms: out, updated, hasMore, errors } : { rooms: out, updated, hasMore })
    for (const s of subs) s.join()
  })

  addRefresh(router, deps.tokens, deps.log)

  return router
}
