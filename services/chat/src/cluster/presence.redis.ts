import type { Redis } from 'ioredis'
import type { OnlineUser } from '../domain/types.ts'
import type { PresenceStore } from './presence.ts'

// KEYS[1] user hash (socketId -> nodeId), KEYS[2] node set; ARGV socketId, nodeId, member
const ADD = `
local added = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if added == 1 and redis.call('HLEN', KEYS[1]) == 1 then return 1 end
return 0`

const REMOVE = `
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[3])
if removed == 1 and redis.call('HLEN', KEYS[1]) == 0 then return 1 end
return 0`

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
    const r = await this.redis.eval(ADD, 2, this.userKey(user.userId), this.nodeKey(this.nodeId), socketId, this.nodeId, `${user.userId}\n${socketId}`)
    return r === 1
  }

  async remove(userId: string, socketId: string): Promise<boolean> {
    const r = await this.redis.eval(REMOVE, 2, this.userKey(userId), this.nodeKey(this.nodeId), socketId, this.nodeId, `${userId}\n${socketId}`)
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
}
