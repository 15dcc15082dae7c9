import type { PresenceRepair, PresenceStore } from '../cluster/presence.ts'
import type { RoomsService } from '../domain/rooms.service.ts'
import type { OnlineUser } from '../domain/types.ts'
import type { Logger } from '../logger.ts'
import { userRoom, type ChatNamespace, type ChatSocket } from './events.ts'

/** Sends a presence change to the sockets in `roomIds` except the user's own, once each (room-pushes.ts). */
export type PresencePush = (roomIds: string[], user: OnlineUser, event: 'presence:online' | 'presence:offline') => void

/** Tells the rooms `user` belongs to that they came online or went offline (not the user's own sockets). */
export async function announcePresence(
  push: PresencePush,
  rooms: RoomsService,
  user: OnlineUser,
  event: 'presence:online' | 'presence:offline',
): Promise<void> {
  push(await rooms.roomIdsOf(user.userId), user, event)
}

export type Announce = (user: OnlineUser, event: 'presence:online' | 'presence:offline') => Promise<void>

/**
 * `announcePresence` in the order this node decided, per user: an offline and the online right
 * after it (a quick reconnect) never reach the rooms swapped. Failures are logged.
 */
export function presenceAnnouncer(push: PresencePush, rooms: RoomsService, log: Logger): Announce {
  const chains = new Map<string, Promise<void>>()
  return (user, event) => {
    const next = (chains.get(user.userId) ?? Promise.resolve())
      .then(() => announcePresence(push, rooms, user, event))
      .catch((err: unknown) => log.warn({ err, userId: user.userId, event }, 'presence announce failed'))
    chains.set(user.userId, next)
    void next.then(() => chains.get(user.userId) === next && chains.delete(user.userId))
    return next
  }
}

/**
 * Multi-device presence (SPEC §4): `presence:online` when a user's first socket anywhere
 * connects, `presence:offline` when the last one anywhere is gone, both to the rooms the user
 * belongs to; `presence:list` to each new socket. Presence failures are logged (and counted
 * through `onError`), never fatal: the periodic reconciliation (`presenceRepair`) makes up for
 * them. Built once per node: `connected(socket)` at connection, `disconnected(socket)` from the
 * socket's disconnect listener (no closures kept per socket).
 */
export function presenceTracker(
  presence: PresenceStore,
  rooms: RoomsService,
  log: Logger,
  track: (work: Promise<unknown>) => void,
  isDraining: () => boolean,
  extras: { announce: Announce; onError?: (op: 'add' | 'remove') => void },
): { connected(socket: ChatSocket): void; disconnected(socket: ChatSocket): void } {
  const announce = extras.announce
  const userOf = (socket: ChatSocket): OnlineUser => ({ userId: socket.data.identity.userId, username: socket.data.identity.username })
  return {
    connected(socket) {
      const user = userOf(socket)
      void socket.join(userRoom(user.userId))
      // Ordered per socket: a quick disconnect must not be processed before its connect.
      socket.data.presence = presence
        .add(user, socket.id)
        .then(async (online) => {
          if (online) await announce(user, 'presence:online')
          socket.emit('presence:list', await rooms.onlineRoomMates(user.userId))
        })
        .catch((err: unknown) => {
          extras.onError?.('add')
          log.warn({ err, socketId: socket.id, userId: user.userId }, 'presence add failed')
        })
    },
    disconnected(socket) {
      // A drain leaves its sockets registered so users who reconnect elsewhere never look
      // offline; the drain reaps whoever did not come back (app.ts).
      if (isDraining()) return
      const user = userOf(socket)
      track(
        (socket.data.presence ?? Promise.resolve())
          .then(() => presence.remove(user, socket.id))
          .then((offline) => (offline ? announce(user, 'presence:offline') : undefined))
          .catch((err: unknown) => {
            extras.onError?.('remove')
            log.warn({ err, socketId: socket.id, userId: user.userId }, 'presence remove failed; reconciliation retries it')
          }),
      )
    },
  }
}

/**
 * Presence that heals by itself (SPEC §4): every `intervalMs`, and at once on `runNow()`, the
 * store is reconciled with this node's live /chat sockets; users whose cluster-wide state the
 * repair changed are announced. The first pass runs at start (it also cleans up after a previous
 * incarnation under the same NODE_ID). Paused while draining (the drain hands presence over).
 * `alsoEachPass` runs in the same pass, after presence: other per-node registries that heal the
 * same way (connection counts, D95), so one loop and one timer serve them all.
 */
export function presenceRepair(
  nsp: ChatNamespace,
  presence: PresenceStore,
  announce: Announce,
  log: Logger,
  opts: {
    intervalMs: number
    isDraining: () => boolean
    onRun?: (seconds: number, repair: PresenceRepair | undefined) => void
    /** Must not throw. */
    alsoEachPass?: () => Promise<void>
  },
): { runNow(): Promise<void>; stop(): Promise<void> } {
  let running: Promise<void> | undefined
  let again = false
  let stopped = false
  const live = function* () {
    for (const socket of nsp.sockets.values()) {
      const { userId, username } = socket.data.identity
      yield { user: { userId, username }, socketId: socket.id }
    }
  }
  const pass = async () => {
    const started = performance.now()
    try {
      const repair = await presence.reconcile(live())
      opts.onRun?.((performance.now() - started) / 1000, repair)
      if (repair.readded + repair.removed > 0) {
        log.warn({ readded: repair.readded, removed: repair.removed, online: repair.online.length, offline: repair.offline.length }, 'presence repaired')
      }
      await Promise.all([...repair.online.map((u) => announce(u, 'presence:online')), ...repair.offline.map((u) => announce(u, 'presence:offline'))])
    } catch (err) {
      opts.onRun?.((performance.now() - started) / 1000, undefined)
      log.warn({ err: (err as Error).message }, 'presence reconciliation failed; retrying at the next pass')
    }
    await opts.alsoEachPass?.()
  }
  const runNow = (): Promise<void> => {
    if (stopped || opts.isDraining()) return Promise.resolve()
    if (running) {
      again = true
      return running
    }
    running = (async () => {
      do {
        again = false
        await pass()
      } while (again && !stopped && !opts.isDraining())
    })().finally(() => (running = undefined))
    return running
  }
  const timer = setInterval(() => void runNow(), opts.intervalMs)
  timer.unref()
  void runNow()
  return {
    runNow,
    async stop() {
      stopped = true
      clearInterval(timer)
      await running
    },
  }
}
