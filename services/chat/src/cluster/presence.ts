import type { OnlineUser } from '../domain/types.ts'

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
    return users
  }
}
