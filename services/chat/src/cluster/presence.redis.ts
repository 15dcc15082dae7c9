import type { RedisClient } from './redis.ts'
import type { OnlineUser } from '../domain/types.ts'
import type { LiveSocket, PresenceRepair, PresenceStore } from './presence.ts'
import { LUA_NOW, luaCommands } from './redis.ts'

// Every script touches ONE key (a user's entry set), so each stays on one Redis Cluster slot.
// Deadlines are Redis server time (TIME), so nodes' clocks never matter.
const NOW = LUA_NOW

// KEYS[1] user entries (zset member nodeId, score deadline ms); ARGV nodeId, ttl ms, gc ms.
// Registers (or refreshes) this node's entry. 2: the user had no live entry (came online);
// 1: our entry was missing but the user was online elsewhere; 0: our entry was there.
const ADD = `${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local before = redis.call('ZCARD', KEYS[1])
local own = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], tonumber(top[2]) + tonumber(ARGV[3]))
if before == 0 then return 2 end
if own == false then return 1 end
return 0`

// KEYS[1] user entries; ARGV nodeId. Removes that node's entry (live or expired) and drops
// expired ones. Returns { 1 if the node's entry was there, 1 if the user still has a live entry }.
const REMOVE = `${NOW}
local own = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local live = redis.call('ZCARD', KEYS[1])
if live > 0 then live = 1 end
return { own, live }`

// KEYS[1] user entries. 1 when the user has a live (unexpired) entry.
const ONLINE = `${NOW}
if redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf') > 0 then return 1 end
return 0`

interface PresenceCommands {
  sbPresenceAdd(key: string, nodeId: string, ttlMs: number, gcMs: number): Promise<number>
  sbPresenceRemove(key: string, nodeId: string): Promise<[number, number]>
  sbPresenceOnline(key: string): Promise<number>
}

const commands = (redis: RedisClient) => luaCommands<PresenceCommands>(redis, { sbPresenceAdd: ADD, sbPresenceRemove: REMOVE, sbPresenceOnline: ONLINE })

interface LocalUser {
  username: string
  sockets: Set<string>
}

export interface RedisPresenceOptions {
  /** How long an entry lives unless its node refreshes it (reconcile() does). */
  ttlMs: number
}

/** Whether two sets hold the same members. */
function sameMembers(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false
  for (const x of a) if (!b.has(x)) return false
  return true
}

/** Calls in flight per batch: bounded, so a node with many users never floods Redis at once. */
const BATCH = 500

/**
 * Presence in Redis (D75). `<prefix>presence:{u:<userId>}` is a sorted set with one entry per
 * node that holds a socket of the user, scored by a deadline: an entry whose node stops
 * refreshing it expires, and `online()` ignores expired entries, so nothing Redis misses can keep
 * a user online for longer than `ttlMs`. `<prefix>presence:{n:<nodeId>}` is the node's index
 * (userId → username), how a survivor finds a crashed node's users to announce them offline.
 *
 * The node's own sockets per user are kept here in memory; Redis sees a user's first socket on
 * this node and its last. `reconcile()` (every PRESENCE_RECONCILE_MS) makes Redis match the
 * node's live sockets: it refreshes deadlines, re-adds what Redis lost, removes what it should
 * not hold and retries removals that failed while Redis was unreachable.
 *
 * Ordering: every decision to write is taken synchronously against the in-memory map right
 * before the command is queued on the one command connection, so a connect or disconnect that
 * happens meanwhile is queued after it and Redis applies both in the order they happened.
 */
export class RedisPresence implements PresenceStore {
  private readonly local = new Map<string, LocalUser>()
  /** Users whose removal failed (Redis unreachable) or was never made: userId → username. */
  private readonly pending = new Map<string, string>()
  private readonly cmd: PresenceCommands
  private readonly ttlMs: number
  private readonly gcMs: number

  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly nodeId: string,
    opts: RedisPresenceOptions = { ttlMs: 20_000 },
  ) {
    this.cmd = commands(redis)
    this.ttlMs = opts.ttlMs
    // A user key outlives its newest deadline by this much, so a survivor still finds a crashed
    // node's expired entry to announce its offline; then Redis drops the key by itself.
    this.gcMs = Math.max(10 * opts.ttlMs, 120_000)
  }

  userKey = (userId: string) => `${this.prefix}presence:{u:${userId}}`
  nodeKey = (nodeId: string) => `${this.prefix}presence:{n:${nodeId}}`

  /** Removals waiting for Redis (a gauge for /metrics). */
  get pendingRemovals(): number {
    return this.pending.size
  }

  /** Users with a socket on this node (a gauge for /metrics). */
  get localUsers(): number {
    return this.local.size
  }

  /**
   * Queues the index entry and the user's entry, index first: a crash between them leaves an
   * index entry a reaper skips. `strict`: an index write that fails fails the call (reconcile);
   * otherwise the next reconcile() writes it again.
   */
  private register(user: OnlineUser, strict: boolean): Promise<number> {
    const indexed = this.redis.hset(this.nodeKey(this.nodeId), user.userId, user.username)
    const added = this.refresh(user)
    if (!strict) {
      indexed.catch(() => undefined)
      return added
    }
    return Promise.all([indexed, added]).then(([, r]) => r)
  }

  /** Refreshes the user's entry (re-adding it if Redis lost it); the index entry is known to be there. */
  private refresh(user: OnlineUser): Promise<number> {
    return this.cmd.sbPresenceAdd(this.userKey(user.userId), this.nodeId, this.ttlMs, this.gcMs)
  }

  async add(user: OnlineUser, socketId: string): Promise<boolean> {
    let mine = this.local.get(user.userId)
    if (!mine) this.local.set(user.userId, (mine = { username: user.username, sockets: new Set() }))
    mine.sockets.add(socketId)
    this.pending.delete(user.userId)
    if (mine.sockets.size > 1) return false
    // If this fails, the user stays in the map and the next reconcile() registers them.
    return (await this.register(user, false)) === 2
  }

  async remove(user: OnlineUser, socketId: string): Promise<boolean> {
    const mine = this.local.get(user.userId)
    if (!mine || !mine.sockets.delete(socketId) || mine.sockets.size > 0) return false
    this.local.delete(user.userId)
    try {
      const [own, live] = await this.cmd.sbPresenceRemove(this.userKey(user.userId), this.nodeId)
      await this.unindex(this.nodeId, [user.userId])
      return own === 1 && live === 0
    } catch (err) {
      // Retried by reconcile(); until then the entry expires on its own.
      if (!this.local.has(user.userId)) this.pending.set(user.userId, user.username)
      throw err
    }
  }

  /** Drops index entries, except (for our own index) users who connected again meanwhile. */
  private async unindex(nodeId: string, userIds: string[]): Promise<void> {
    const gone = nodeId === this.nodeId ? userIds.filter((id) => !this.local.has(id)) : userIds
    if (gone.length > 0) await this.redis.hdel(this.nodeKey(nodeId), ...gone)
  }

  async online(userIds: readonly string[]): Promise<Set<string>> {
    const online = new Set<string>()
    for (let i = 0; i < userIds.length; i += BATCH) {
      const ids = userIds.slice(i, i + BATCH)
      const results = await Promise.all(ids.map((id) => this.cmd.sbPresenceOnline(this.userKey(id))))
      results.forEach((n, j) => n === 1 && online.add(ids[j]))
    }
    return online
  }

  /** Every userId → username in a node's index (HSCAN: safe while entries are being removed). */
  private async *indexed(nodeId: string): AsyncGenerator<[string, string][]> {
    let cursor = '0'
    do {
      const [next, flat] = await this.redis.hscan(this.nodeKey(nodeId), cursor, 'COUNT', BATCH)
      cursor = next
      const pairs: [string, string][] = []
      for (let i = 0; i < flat.length; i += 2) pairs.push([flat[i], flat[i + 1]])
      if (pairs.length > 0) yield pairs
    } while (cursor !== '0')
  }

  /**
   * Removes `nodeId`'s entries user by user, each removal one atomic script that also says
   * whether it left the user with no live entry; a user's index entry goes only after their
   * entry did. So a reaper that dies mid-way strands nothing: what it did is done, what it did
   * not is still in the index for the next reaper, and nobody is announced offline twice.
   * `hooks.renew` runs before each batch (the reaper renews its lock there), `hooks.offline`
   * after each with the users it left offline, so an error later loses no announcement. For
   * this node's own id (a drain), local state is dropped too.
   */
  async reapNode(nodeId: string, hooks: { renew?(): Promise<void>; offline?(users: OnlineUser[]): void } = {}): Promise<OnlineUser[]> {
    const offline: OnlineUser[] = []
    const removeBatch = async (pairs: [string, string][], announceIfGone: boolean) => {
      await hooks.renew?.()
      const results = await Promise.all(pairs.map(([id]) => this.cmd.sbPresenceRemove(this.userKey(id), nodeId)))
      const gone: OnlineUser[] = []
      results.forEach(([own, live], i) => {
        if (live === 0 && (own === 1 || announceIfGone)) gone.push({ userId: pairs[i][0], username: pairs[i][1] })
      })
      offline.push(...gone)
      if (gone.length > 0) hooks.offline?.(gone)
      await this.redis.hdel(this.nodeKey(nodeId), ...pairs.map(([id]) => id))
    }
    if (nodeId === this.nodeId) {
      const held: [string, string][] = [...this.local].map(([id, u]) => [id, u.username])
      const failed: [string, string][] = [...this.pending]
      this.local.clear()
      this.pending.clear()
      for (let i = 0; i < held.length; i += BATCH) await removeBatch(held.slice(i, i + BATCH), false)
      for (let i = 0; i < failed.length; i += BATCH) await removeBatch(failed.slice(i, i + BATCH), true)
    }
    // Until a full pass finds nothing: entries removed during a pass may hide others from it.
    for (let found = true; found; ) {
      found = false
      for await (const pairs of this.indexed(nodeId)) {
        found = true
        await removeBatch(pairs, false)
      }
    }
    return offline
  }

  async reconcile(live: Iterable<LiveSocket>): Promise<PresenceRepair> {
    const repair: PresenceRepair = { online: [], offline: [], readded: 0, removed: 0 }
    // 1. The truth, synchronously: this node's sockets now. Users we held who have none any
    //    more (their removal has not run yet, or ran and failed) are to be removed.
    //    The map is brought to the truth in place, and what was built for it is dropped before
    //    the first await: a new map every pass outlived many scavenges and died in the old
    //    generation, 19,000 users' worth of garbage every PRESENCE_RECONCILE_MS (D185).
    const next = new Map<string, LocalUser>()
    for (const { user, socketId } of live) {
      let mine = next.get(user.userId)
      if (!mine) next.set(user.userId, (mine = { username: user.username, sockets: new Set() }))
      mine.sockets.add(socketId)
    }
    for (const [id, mine] of this.local) {
      if (!next.has(id)) {
        this.pending.set(id, mine.username)
        this.local.delete(id)
      }
    }
    for (const [id, truth] of next) {
      this.pending.delete(id)
      const mine = this.local.get(id)
      if (!mine || mine.username !== truth.username || !sameMembers(mine.sockets, truth.sockets)) this.local.set(id, truth)
    }
    next.clear()

    // 2. What our index says (HSCAN; entries written meanwhile are ours anyway).
    const indexed = new Map<string, string>()
    for await (const pairs of this.indexed(this.nodeId)) for (const [id, name] of pairs) indexed.set(id, name)

    // 3. Refresh every user held here (re-adding what Redis lost, the index entry only where it
    //    is missing); each batch filtered by who is still here when it is queued.
    const held = [...this.local.keys()]
    for (let i = 0; i < held.length; i += BATCH) {
      const users = held.slice(i, i + BATCH).flatMap((userId) => {
        const mine = this.local.get(userId)
        return mine ? [{ userId, username: mine.username }] : []
      })
      const results = await Promise.all(
        users.map((u) => (indexed.get(u.userId) === u.username ? this.refresh(u) : this.register(u, true))),
      )
      results.forEach((r, j) => {
        if (r > 0) repair.readded++
        if (r === 2) repair.online.push(users[j])
      })
    }

    // 4. Our index names users we do not hold (a removal that never reached Redis, a previous
    //    incarnation under our NODE_ID): remove them. And retry the removals that failed.
    const todo: [userId: string, username: string, failed: boolean][] = []
    for (const [id, name] of indexed) if (!this.local.has(id) && !this.pending.has(id)) todo.push([id, name, false])
    for (const [id, name] of this.pending) todo.push([id, name, true])
    for (let i = 0; i < todo.length; i += BATCH) {
      const batch = todo.slice(i, i + BATCH).filter(([id]) => !this.local.has(id))
      const results = await Promise.all(batch.map(([id]) => this.cmd.sbPresenceRemove(this.userKey(id), this.nodeId)))
      results.forEach(([own, liveAnywhere], j) => {
        const [userId, username, failed] = batch[j]
        if (own === 1) repair.removed++
        // A failed removal is announced whenever the user is offline now: Redis may have lost
        // the entry (restarted empty) without anyone telling the user's rooms.
        if (liveAnywhere === 0 && (own === 1 || failed) && !this.local.has(userId)) repair.offline.push({ userId, username })
        if (failed && !this.local.has(userId)) this.pending.delete(userId)
      })
      await this.unindex(this.nodeId, batch.map(([id]) => id))
    }
    return repair
  }
}
