import type { RoomsService } from '../domain/rooms.service.ts'
import { dmPeer } from '../domain/rooms.service.ts'
import type { Message, OnlineUser } from '../domain/types.ts'
import type { Tokens } from '../auth/tokens.ts'
import type { Logger } from '../logger.ts'
import type { Metrics } from '../metrics.ts'
import { userRoom, type ChatServer } from './events.ts'
import { EventRouter } from './handle.ts'
import { addRefresh } from './session.ts'

/** `@name` mentions in a text (lower-cased, at most 20). */
export function mentionedNames(text: string): string[] {
  const names = new Set<string>()
  for (const m of text.matchAll(/(?:^|[^\w@])@([\w.-]{1,64})/g)) {
    names.add(m[1].toLowerCase())
    if (names.size >= 20) break
  }
  return [...names]
}

export type { Notification } from '../../../../packages/client/src/protocol.ts'
import type { Notification } from '../../../../packages/client/src/protocol.ts'

/**
 * Per-user pushes on /notifications (SPEC §3): every socket of a user sits in its user room,
 * so `to(userRoom)` reaches them on whichever node they are.
 */
export function createNotifier(io: ChatServer, rooms: RoomsService, log: Logger) {
  const nsp = io.of('/notifications')
  const push = (userId: string, n: Notification) => nsp.to(userRoom(userId)).emit('notification', n)
  return {
    /** A DM reaches its other member; a mention reaches mentioned members of the room. */
    async messageCommitted(m: Message): Promise<void> {
      const from = { userId: m.userId, username: m.username }
      const base = { roomId: m.roomId, messageId: m.id, from, text: m.text.slice(0, 200), timestamp: m.timestamp }
      const peer = dmPeer(m.roomId, m.userId)
      if (peer && peer !== m.userId) push(peer, { type: 'dm', ...base })
      const names = m.text.includes('@') ? mentionedNames(m.text) : []
      if (names.length === 0) return
      try {
        for (const userId of await rooms.membersNamed(m.roomId, names)) {
          if (userId !== m.userId && userId !== peer) push(userId, { type: 'mention', ...base })
        }
      } catch (err) {
        log.warn({ err: (err as Error).message, roomId: m.roomId }, 'mention notification failed')
      }
    },
    /** Members added to a room by someone else. */
    invited(roomId: string, userIds: string[], by: OnlineUser): void {
      for (const userId of userIds) if (userId !== by.userId) push(userId, { type: 'invite', roomId, from: by, timestamp: new Date().toISOString() })
    },
  }
}

export type Notifier = ReturnType<typeof createNotifier>

/** /notifications client events: only `auth:refresh` (SPEC §2); pushes go the other way. */
export function notificationsRouter(log: Logger, metrics: Metrics, tokens: Tokens): EventRouter {
  return addRefresh(new EventRouter(log, metrics), tokens, log)
}
