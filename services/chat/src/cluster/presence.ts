import type { OnlineUser } from '../domain/types.ts'

/** One socket this node holds, as `reconcile()` is told about it. */
export interface LiveSocket {
  user: OnlineUser
  socketId: string
}

/** What a reconciliation changed. `online`/`offline`: users whose cluster-wide state flipped because of it (to announce). */
export interface PresenceRepair {
  online: OnlineUser[]
  offline: OnlineUser[]
  /** Users of ours the store had lost and got back. */
  readded: number
  /** Entries of ours the store held for users with no socket here any more (removals that had failed, a previous incarnation). */
  removed: number
}

/**
 * Cluster-wide, multi-device presence: a user is online while any of their sockets is
 * registered on any node.
 */
export interface PresenceStore {
  /** Registers a socket; true when it is the user's first socket anywhere (now online). */
  add(user: OnlineUser, socketId: string): Promise<boolean>
  /** Unregisters a socket; true when it was the user's last socket anywhere (now offline). */
  remove(user: OnlineUser, socketId: string): Promise<boolean>
  /** The subset of `userIds` that is online. */
  online(userIds: readonly string[]): Promise<Set<string>>
  /** Removes every socket `nodeId` registered; the users this left with no socket anywhere. */
  reapNode(nodeId: string): Promise<OnlineUser[]>
  /**
   * Makes the store agree with `live`, every socket this node holds right now (SPEC §4: presence
   * heals by itself): re-registers what the store lost, drops what it holds for sockets that are
   * gone, and keeps this node's entries from expiring.
   */
  reconcile(live: Iterable<LiveSocket>): Promise<PresenceRepair>
  /** Removals that failed and wait for the next reconcile() (for /metrics). */
  readonly pendingRemovals?: number
}

/** In-process presence for the embedded single node. */
export class MemoryPresence implements PresenceStore {
  private readonly sockets = new Map<string, Set<string>>()
  private readonly names = new Map<string, string>()

  async add(user: OnlineUser, socketId: string): Promise<boolean> {
    this.names.set(user.userId, user.username)
    let set = this.sockets.get(user.userId)
    if (!set) this.sockets.set(user.userId, (set = new Set()))
    set.add(socketId)
    return set.size === 1
  }

  async remove({ userId }: OnlineUser, socketId: string): Promise<boolean> {
    const set = this.sockets.get(userId)
    if (!set || !set.delete(socketId)) return false
    if (set.size > 0) return false
    this.sockets.delete(userId)
    this.names.delete(userId)
    return true
  }

  async online(userIds: readonly string[]): Promise<Set<string>> {
    return new Set(userIds.filter((id) => this.sockets.has(id)))
  }

  /** The single embedded node's sockets are all of them: everyone goes offline. */
  async reapNode(): Promise<OnlineUser[]> {
    const users = [...this.names.entries()].filter(([id]) => this.sockets.has(id)).map(([userId, username]) => ({ userId, username }))
    this.sockets.clear()
    this.names.clear()
    return users
  }

  /** Nothing in-process is ever lost, but the same contract holds: the store becomes `live`. */
  async reconcile(live: Iterable<LiveSocket>): Promise<PresenceRepair> {
    const next = new Map<string, Set<string>>()
    const names = new Map<string, string>()
    for (const { user, socketId } of live) {
      names.set(user.userId, user.username)
      let set = next.get(user.userId)
      if (!set) next.set(user.userId, (set = new Set()))
      set.add(socketId)
    }
    const online = [...next.keys()].filter((id) => !this.sockets.has(id)).map((userId) => ({ userId, username: names.get(userId)! }))
    const offline = [...this.sockets.keys()].filter((id) => !next.has(id)).map((userId) => ({ userId, username: this.names.get(userId) ?? userId }))
    this.sockets.clear()
    this.names.clear()
    for (const [id, set] of next) this.sockets.set(id, set)
    for (const [id, name] of names) this.names.set(id, name)
    return { online, offline, readded: online.length, removed: offline.length }
  }
}
