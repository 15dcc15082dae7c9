import type { Redis } from 'ioredis'
import type { OnlineUser } from '../domain/types.ts'
import type { PresenceStore } from './presence.ts'

// KEYS[1] user hash (socketId -> nodeId), KEYS[2] node set; ARGV socketId, nodeId, member
const ADD = `
local added = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if added == 1 and redis.call('HLEN', KEYS[1]) == 1 then return 1 end
return 0`

// KEYS[1] user hash, KEYS[2] node set; ARGV socketId, member
const REMOVE = `
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
if removed == 1 and redis.call('HLEN', KEYS[1]) == 0 then return 1 end
return 0`

/** A node-set member: who, which socket, and the name to announce when they go offline. */
const member = (user: OnlineUser, socketId: string) => JSON.stringify([user.userId, socketId, user.username])

/**
 * Presence in Redis: `<prefix>presence:user:<userId>` maps each of the user's sockets to its
 * node; `<prefix>presence:node:<nodeId>` lists the node's sockets so a surviving node can clean
 * up after a crashed one. Add/remove are single Lua scripts, so two nodes can never both decide
 * that the same user went offline.
 */
export class RedisPresence implements PresenceStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly nodeId: string,
  ) {}

  userKey = (userId: string) => `${this.prefix}presence:user:${userId}`
  nodeKey = (nodeId: string) => `${this.prefix}presence:node:${nodeId}`

  async add(user: OnlineUser, socketId: string): Promise<boolean> {
    const r = await this.redis.eval(ADD, 2, this.userKey(user.userId), this.nodeKey(this.nodeId), socketId, this.nodeId, member(user, socketId))
    return r === 1
  }

  async remove(user: OnlineUser, socketId: string): Promise<boolean> {
    const r = await this.redis.eval(REMOVE, 2, this.userKey(user.userId), this.nodeKey(this.nodeId), socketId, member(user, socketId))
    return r === 1
  }

  async online(userIds: readonly string[]): Promise<Set<string>> {
    if (userIds.length === 0) return new Set()
    const pipeline = this.redis.pipeline()
    for (const id of userIds) pipeline.exists(this.userKey(id))
    const results = (await pipeline.exec()) ?? []
    const online = new Set<string>()
    results.forEach(([err, n], i) => {
      if (err) throw err
      if (n === 1) online.add(userIds[i])
    })
    return online
  }

  /**
   * Removes every socket a dead node registered. SPOP hands each entry to exactly one reaper;
   * returns the users who were left with no socket anywhere.
   */
  async reapNode(deadNodeId: string): Promise<OnlineUser[]> {
    const offline: OnlineUser[] = []
    for (;;) {
      const entries = (await this.redis.spop(this.nodeKey(deadNodeId), 500)) as string[]
      if (entries.length === 0) return offline
      for (const entry of entries) {
        const [userId, socketId, username] = JSON.parse(entry) as [string, string, string]
        const r = await this.redis.eval(REMOVE, 2, this.userKey(userId), this.nodeKey(deadNodeId), socketId, entry)
        if (r === 1) offline.push({ userId, username })
      }
    }
  }
}
