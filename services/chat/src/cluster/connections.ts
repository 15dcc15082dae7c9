import type { Redis } from 'ioredis'

/**
 * Sockets per user per namespace across the cluster (SPEC §3 `MAX_CONNECTIONS_PER_USER`).
 * `acquire` is atomic: two nodes admitting the same user at once never both take the last
 * place. Entries of a crashed node are removed by the survivor that reaps it (liveness.ts), as
 * presence entries are, so counts heal by themselves.
 */
export interface ConnectionRegistry {
  /** Registers the socket unless the user already holds `max` in `namespace`; false when full. */
  acquire(namespace: string, userId: string, socketId: string, max: number): Promise<boolean>
  release(namespace: string, userId: string, socketId: string): Promise<void>
  /** Registers again, without a limit (after Redis lost our entries). */
  restore(namespace: string, userId: string, socketId: string): Promise<void>
  /** Removes every socket `nodeId` registered. */
  reapNode(nodeId: string): Promise<number>
}

/** In-process registry of the embedded single node. */
export class MemoryConnections implements ConnectionRegistry {
  private readonly byUser = new Map<string, Set<string>>()

  async acquire(namespace: string, userId: string, socketId: string, max: number): Promise<boolean> {
    const key = `${namespace}\n${userId}`
    let set = this.byUser.get(key)
    if (!set) this.byUser.set(key, (set = new Set()))
    if (!set.has(socketId) && set.size >= max) return false
    set.add(socketId)
    return true
  }

  async release(namespace: string, userId: string, socketId: string): Promise<void> {
    const key = `${namespace}\n${userId}`
    const set = this.byUser.get(key)
    if (set?.delete(socketId) && set.size === 0) this.byUser.delete(key)
  }

  async restore(namespace: string, userId: string, socketId: string): Promise<void> {
    await this.acquire(namespace, userId, socketId, Infinity)
  }

  async reapNode(): Promise<number> {
    const n = [...this.byUser.values()].reduce((s, set) => s + set.size, 0)
    this.byUser.clear()
    return n
  }
}

// KEYS[1] user hash (socketId -> nodeId), KEYS[2] node set; ARGV socketId, nodeId, member, max
const ACQUIRE = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1`

// KEYS[1] user hash, KEYS[2] node set; ARGV socketId, member
const RELEASE = `
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
return 0`

/**
 * The registry in Redis, laid out as presence is (presence.redis.ts):
 * `<prefix>conn:user:<namespace>:<userId>` maps each socket to its node, and
 * `<prefix>conn:node:<nodeId>` lists the node's entries so a survivor can remove them.
 */
export class RedisConnections implements ConnectionRegistry {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly nodeId: string,
  ) {}

  private userKey = (namespace: string, userId: string) => `${this.prefix}conn:user:${namespace}:${userId}`
  private nodeKey = (nodeId: string) => `${this.prefix}conn:node:${nodeId}`
  private member = (namespace: string, userId: string, socketId: string) => JSON.stringify([namespace, userId, socketId])

  async acquire(namespace: string, userId: string, socketId: string, max: number): Promise<boolean> {
    const keys = [this.userKey(namespace, userId), this.nodeKey(this.nodeId)]
    const r = await this.redis.eval(ACQUIRE, 2, ...keys, socketId, this.nodeId, this.member(namespace, userId, socketId), max)
    return r === 1
  }

  async release(namespace: string, userId: string, socketId: string): Promise<void> {
    await this.redis.eval(RELEASE, 2, this.userKey(namespace, userId), this.nodeKey(this.nodeId), socketId, this.member(namespace, userId, socketId))
  }

  async restore(namespace: string, userId: string, socketId: string): Promise<void> {
    await this.acquire(namespace, userId, socketId, Number.MAX_SAFE_INTEGER)
  }

  /** SPOP hands each entry to exactly one reaper. */
  async reapNode(deadNodeId: string): Promise<number> {
    let removed = 0
    for (;;) {
      const entries = (await this.redis.spop(this.nodeKey(deadNodeId), 500)) as string[]
      if (entries.length === 0) return removed
      for (const entry of entries) {
        const [namespace, userId, socketId] = JSON.parse(entry) as [string, string, string]
        await this.redis.eval(RELEASE, 2, this.userKey(namespace, userId), this.nodeKey(deadNodeId), socketId, entry)
        removed++
      }
    }
  }
}
