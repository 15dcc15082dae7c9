import type { RateLimiterMemory } from 'rate-limiter-flexible'
import type { Tokens } from '../auth/tokens.ts'
import type { PresenceStore } from '../cluster/presence.ts'
import type { Config } from '../config.ts'
import type { MessagesService } from '../domain/messages.service.ts'
import type { RoomsService } from '../domain/rooms.service.ts'
import * as S from '../domain/schemas.ts'
import type { Message } from '../domain/types.ts'
import { AppError, toAppError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { Metrics } from '../metrics.ts'
import { userRoom, type ChatNamespace, type ChatSocket } from './events.ts'
import { handle } from './handle.ts'
import type { RoomFeed, Subscription } from './room-feed.ts'

export interface ChatDeps {
  config: Config
  log: Logger
  metrics: Metrics
  tokens: Tokens
  rooms: RoomsService
  messages: MessagesService
  presence: PresenceStore
  feed: RoomFeed
  typingLimit: RateLimiterMemory
}

const MAX_TIMER_MS = 2 ** 31 - 1

/** /chat: rooms, messages, typing, receipts, sync, token refresh (SPEC §4). */
export function registerChatHandlers(nsp: ChatNamespace, socket: ChatSocket, deps: ChatDeps): void {
  const { config, metrics, rooms, messages, feed } = deps
  const who = () => socket.data.identity
  const log = deps.log
  const on = <T extends Parameters<typeof handle>[4]>(event: string, schema: T, fn: Parameters<typeof handle<T>>[5]) =>
    handle(socket, log, metrics, event, schema, fn)

  on('room:join', S.JoinPayload, async (p) => {
    const { roomId, lastSeq } = typeof p === 'string' ? { roomId: p, lastSeq: undefined } : p
    const wasIn = socket.rooms.has(roomId)
    await rooms.join(who(), roomId)
    const state = await rooms.roomState(roomId)
    const limit = lastSeq === undefined ? config.HISTORY_LIMIT : config.SYNC_MAX_MESSAGES
    const sub = await feed.subscribe(socket, roomId, lastSeq, limit)
    socket.emit('room:history', { roomId, messages: sub.messages, reads: state.reads, hasMore: sub.hasMore })
    sub.join()
    if (!wasIn) {
      const { userId, username } = who()
      nsp.to(roomId).except(userRoom(userId)).emit('room:user-joined', { userId, username, roomId })
    }
    return { roomId, lastSeq: sub.lastSeq, online: state.online }
  })

  on('room:leave', S.LeavePayload, async (p) => {
    const roomId = typeof p === 'string' ? p : p.roomId
    const { userId, username } = who()
    await rooms.leave(who(), roomId)
    // Membership is per user: every device of the user leaves, on whichever node.
    nsp.in(userRoom(userId)).socketsLeave(roomId)
    nsp.to(roomId).except(userRoom(userId)).emit('room:user-left', { userId, username, roomId })
  })

  on('chat:message', S.SendPayload, (p) => messages.send(who(), p, socket.rooms.has(p.roomId)))
  on('chat:edit', S.EditPayload, (p) => messages.edit(who(), p))
  on('chat:delete', S.DeletePayload, (p) => messages.delete(who(), p))
  on('chat:react', S.ReactPayload, (p) => messages.react(who(), p))
  on('chat:read', S.ReadPayload, (p) => messages.markRead(who(), p))

  on('chat:typing', S.TypingPayload, async (p) => {
    if (!socket.rooms.has(p.roomId)) throw new AppError('FORBIDDEN', 'Join the room first')
    const { userId, username } = who()
    // Throttled per user, room and state; a throttled event is dropped, not an error.
    const allowed = await deps.typingLimit.consume(`${userId}:${p.roomId}:${p.isTyping}`).then(
      () => true,
      () => false,
    )
    if (allowed) nsp.to(p.roomId).except(userRoom(userId)).emit('chat:typing', { userId, username, roomId: p.roomId, isTyping: p.isTyping })
  })

  on('chat:sync', S.SyncPayload, async (p, ctx) => {
    const out: Record<string, Message[]> = {}
    const errors: Record<string, string> = {}
    const hasMore: string[] = []
    const subs: Subscription[] = []
    try {
      for (const [roomId, lastSeq] of Object.entries(p.rooms)) {
        try {
          await rooms.requireMember(who(), roomId)
          const sub = await feed.subscribe(socket, roomId, lastSeq, config.SYNC_MAX_MESSAGES)
          subs.push(sub)
          out[roomId] = sub.messages
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
    ctx.ack(Object.keys(errors).length > 0 ? { rooms: out, hasMore, errors } : { rooms: out, hasMore })
    for (const s of subs) s.join()
  })

  on('auth:refresh', S.RefreshPayload, async (p) => {
    const next = await deps.tokens.verify(p.token)
    if (next.userId !== who().userId) throw new AppError('FORBIDDEN', 'The new token is for another user')
    socket.data.identity = next
    armExpiry()
    return { expiresAt: next.exp === undefined ? null : new Date(next.exp * 1000).toISOString() }
  })

  // A socket whose token expires is disconnected at expiry unless it refreshed (SPEC §2).
  let expiry: NodeJS.Timeout | undefined
  function armExpiry(): void {
    clearTimeout(expiry)
    const exp = who().exp
    if (exp === undefined) return
    const ms = exp * 1000 - Date.now()
    expiry = setTimeout(() => {
      if ((who().exp ?? Infinity) * 1000 <= Date.now()) {
        log.info({ socketId: socket.id, userId: who().userId }, 'token expired; disconnecting')
        socket.disconnect(true)
      } else armExpiry()
    }, Math.max(0, Math.min(ms, MAX_TIMER_MS)))
  }
  armExpiry()
  socket.on('disconnect', () => clearTimeout(expiry))
}
