import type { PresenceStore } from '../cluster/presence.ts'
import type { RoomsService } from '../domain/rooms.service.ts'
import type { OnlineUser } from '../domain/types.ts'
import type { Logger } from '../logger.ts'
import { userRoom, type ChatNamespace, type ChatSocket } from './events.ts'

/** Tells the rooms `user` belongs to that they came online or went offline (not the user's own sockets). */
export async function announcePresence(
  nsp: ChatNamespace,
  rooms: RoomsService,
  user: OnlineUser,
  event: 'presence:online' | 'presence:offline',
): Promise<void> {
  const roomIds = await rooms.roomIdsOf(user.userId)
  if (roomIds.length > 0) nsp.to(roomIds).except(userRoom(user.userId)).emit(event, user)
}

/**
 * Multi-device presence (SPEC §4): `presence:online` when a user's first socket anywhere
 * connects, `presence:offline` when the last one anywhere is gone, both to the rooms the user
 * belongs to; `presence:list` to each new socket. Presence failures are logged, never fatal.
 * Built once per node: `connected(socket)` at connection, `disconnected(socket)` from the
 * socket's disconnect listener (no closures kept per socket).
 */
export function presenceTracker(
  nsp: ChatNamespace,
  presence: PresenceStore,
  rooms: RoomsService,
  log: Logger,
  track: (work: Promise<unknown>) => void,
  isDraining: () => boolean,
): { connected(socket: ChatSocket): void; disconnected(socket: ChatSocket): void } {
  const userOf = (socket: ChatSocket): OnlineUser => ({ userId: socket.data.identity.userId, username: socket.data.identity.username })
  return {
    connected(socket) {
      const user = userOf(socket)
      void socket.join(userRoom(user.userId))
      // Ordered per socket: a quick disconnect must not be processed before its connect.
      socket.data.presence = presence
        .add(user, socket.id)
        .then(async (online) => {
          if (online) await announcePresence(nsp, rooms, user, 'presence:online')
          socket.emit('presence:list', await rooms.onlineRoomMates(user.userId))
        })
        .catch((err: unknown) => log.warn({ err, socketId: socket.id, userId: user.userId }, 'presence add failed'))
    },
    disconnected(socket) {
      // A drain leaves its sockets registered so users who reconnect elsewhere never look
      // offline; the drain reaps whoever did not come back (app.ts).
      if (isDraining()) return
      const user = userOf(socket)
      track(
        (socket.data.presence ?? Promise.resolve())
          .then(() => presence.remove(user, socket.id))
          .then((offline) => (offline ? announcePresence(nsp, rooms, user, 'presence:offline') : undefined))
          .catch((err: unknown) => log.warn({ err, socketId: socket.id, userId: user.userId }, 'presence remove failed')),
      )
    },
  }
}
