import type { RedisClient } from './redis.ts'
import { LUA_NOW, luaCommands } from './redis.ts'

/** One socket this node holds, as `reconcile()` is told about it. */
export interface CountedSocket {
  namespace: string
  userId: string
  socketId: string
}

/** What a reconciliation changed in the store. */
export interface ConnectionRepair {
  /** Sockets of ours the store had lost (or never counted: let in during an outage) and got back. */
  readded: number
  /** Entries of ours for sockets this node no longer holds (failed releases, a previous incarnation). */
  removed: number
}

/**
 * Sockets per user per namespace across the cluster (SPEC §3 `MAX_CONNECTIONS_PER_USER`, D55,
 * D95). `acquire` is atomic: two nodes admitting the same user at once never both take the last
 * place. Counts heal by themselves as presence does (D75–D77): entries expire unless their node
 * refreshes them, `reconcile()` makes the store match the node's live sockets, and a dead node's
 * entries are removed by the survivor that reaps it.
 */
export interface ConnectionRegistry {
  /** Registers the socket unless the user already holds `max` in `namespace`; false when full. */
  acquire(namespace: string, userId: string, socketId: string, max: number): Promise<boolean>
  /** Gives the place back (nothing to do for a socket that was never counted). */
  release(namespace: string, userId: string, socketId: string): Promise<void>
  /**
   * Makes the store agree with `live`, every counted socket this node holds right now: re-adds
   * what it lost (and counts sockets let in uncounted), drops entries of sockets that are gone,
   * retries failed releases, and keeps this node's entries from expiring.
   */
  reconcile(live: Iterable<CountedSocket>): Promise<ConnectionRepair>
  /** Removes every socket `nodeId` registered; `renew` runs before each batch (the reaper's lock). */
  reapNode(nodeId: string, hooks?: { renew?(): Promise<void> }): Promise<number>
  /** Releases that failed and wait for the next reconcile() (for /metrics). */
  readonly pendingReleases?: number
}

/** In-process registry of the embedded single node. */
export class MemoryConnections implements ConnectionRegistry {
  private byUser = new Map<string, Set<string>>()

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

  /** Nothing in-process is ever lost, but the same contract holds: the registry becomes `live`. */
  async reconcile(live: Iterable<CountedSocket>): Promise<ConnectionRepair> {
    const next = new Map<string, Set<string>>()
    let readded = 0
    for (const { namespace, userId, socketId } of live) {
      const key = `${namespace}\n${userId}`
      let set = next.get(key)
      if (!set) next.set(key, (set = new Set()))
      set.add(socketId)
      if (!this.byUser.get(key)?.has(socketId)) readded++
    }
    let removed = 0
    for (const [key, set] of this.byUser) for (const id of set) if (!next.get(key)?.has(id)) removed++
    this.byUser = next
    return { readded, removed }
  }

  async reapNode(): Promise<number> {
    const n = [...this.byUser.values()].reduce((s, set) => s + set.size, 0)
    this.byUser.clear()
    return n
  }
}

// Every script touches ONE key (a user's entries in one namespace, a sorted set of
// `<nodeId>\n<socketId>` scored by a deadline in Redis server time), so each operation stays on
// one Redis Cluster slot. Expired members are dropped by every script and never counted.
const DROP_EXPIRED = `${LUA_NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)`

// The key lives as long as its newest entry.
const KEEP_KEY = `
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], tonumber(top[2])) end`

// KEYS[1] user entries; ARGV member, max, ttl ms. 1: counted (or already was), 0: full.
const ACQUIRE = `${DROP_EXPIRED}
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
${KEEP_KEY}
return 1`

// KEYS[1] user entries; ARGV member. Returns 1 if it was there.
const RELEASE = `${DROP_EXPIRED}
return redis.call('ZREM', KEYS[1], ARGV[1])`

// KEYS[1] user entries; ARGV nodeId, ttl ms, n, then n members to hold (refreshed, re-added when
// missing), then members to leave as they are (acquisitions in flight). Every other entry of
// nodeId is removed, so the call is idempotent: a reap is the same call with nothing to hold.
// The node part of a member is everything before its last newline (socket ids have none).
// Returns { re-added, removed }.
const SYNC = `${DROP_EXPIRED}
local n = tonumber(ARGV[3])
local wanted = {}
for i = 4, #ARGV do wanted[ARGV[i]] = true end
local removed = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if not wanted[m] and string.match(m, '^(.*)\\n[^\\n]*$') == ARGV[1] then
    removed = removed + redis.call('ZREM', KEYS[1], m)
  end
end
local readded = 0
if n > 0 then
  local deadline = now + tonumber(ARGV[2])
  for i = 4, 3 + n do readded = readded + redis.call('ZADD', KEYS[1], deadline, ARGV[i]) end
  ${KEEP_KEY}
end
return { readded, removed }`

interface ConnectionCommands {
  sbConnAcquire(key: string, member: string, max: number, ttlMs: number): Promise<number>
  sbConnRelease(key: string, member: string): Promise<number>
  sbConnSync(key: string, nodeId: string, ttlMs: number, n: number, ...members: string[]): Promise<[number, number]>
}

const commands = (redis: RedisClient) => luaCommands<ConnectionCommands>(redis, { sbConnAcquire: ACQUIRE, sbConnRelease: RELEASE, sbConnSync: SYNC })

/** A socket this node counts. `born`: the reconciliation pass it was acquired in. */
interface Held {
  acquiring: boolean
  born: number
}

/** Keys per batch of calls in flight: bounded, so a node with many users never floods Redis at once. */
const BATCH = 500

export interface RedisConnectionsOptions {
  /** How long an entry lives unless its node refreshes it (reconcile() does). */
  ttlMs: number
}

/**
 * The registry in Redis (D95), laid out as presence is (presence.redis.ts):
 * `<prefix>conn:{u:<userId>}:<namespace>` holds the user's sockets in that namespace, one member
 * `<nodeId>\n<socketId>` each, scored by its deadline; `<prefix>conn:{n:<nodeId>}` (a set of
 * `[namespace, userId]`) is the node's index, how a survivor finds a dead node's entries. The hash
 * tags keep a user's keys (presence's too) on one Cluster slot.
 *
 * The node's own counted sockets are kept here in memory (the truth `reconcile()` writes back).
 * Every decision to write is taken synchronously against that map right before the command is
 * queued on the one command connection, so a connect or disconnect happening meanwhile is applied
 * by Redis after it, in order.
 */
export class RedisConnections implements ConnectionRegistry {
  /** keyId (`[namespace, userId]` as JSON) → this node's counted sockets of it. */
  private readonly local = new Map<string, Map<string, Held>>()
  /** Keys whose release failed (Redis unreachable), retried by reconcile(): keyId → failure number. */
  private readonly pending = new Map<string, number>()
  private failures = 0
  private readonly cmd: ConnectionCommands
  private readonly ttlMs: number
  /** Reconciliation passes so far; sockets acquired since the previous one are spared once. */
  private pass = 0

  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly nodeId: string,
    opts: RedisConnectionsOptions = { ttlMs: 20_000 },
  ) {
    this.cmd = commands(redis)
    this.ttlMs = opts.ttlMs
  }

  private keyId = (namespace: string, userId: string) => JSON.stringify([namespace, userId])
  private userKey(keyId: string): string {
    const [namespace, userId] = JSON.parse(keyId) as [string, string]
    return `${this.prefix}conn:{u:${userId}}:${namespace}`
  }
  private nodeKey = (nodeId: string) => `${this.prefix}conn:{n:${nodeId}}`
  private member = (socketId: string, nodeId = this.nodeId) => `${nodeId}\n${socketId}`

  /** Releases waiting for Redis (a gauge for /metrics). */
  get pendingReleases(): number {
    return this.pending.size
  }

  async acquire(namespace: string, userId: string, socketId: string, max: number): Promise<boolean> {
    const k = this.keyId(namespace, userId)
    let mine = this.local.get(k)
    if (!mine) this.local.set(k, (mine = new Map()))
    const held: Held = { acquiring: true, born: this.pass }
    mine.set(socketId, held)
    // Index first: a crash between the two leaves an index entry a reaper finds nothing under.
    // If it fails alone, the next reconcile() writes it again.
    this.redis.sadd(this.nodeKey(this.nodeId), k).catch(() => undefined)
    let ok: boolean
    try {
      ok = (await this.cmd.sbConnAcquire(this.userKey(k), this.member(socketId), max, this.ttlMs)) === 1
    } catch (err) {
      // Redis unreachable: the socket is let in uncounted; the next reconcile() counts it.
      held.acquiring = false
      throw err
    }
    if (mine.get(socketId) === held) {
      held.acquiring = false
      if (!ok) this.forget(k, socketId)
    }
    return ok
  }

  private forget(k: string, socketId: string): boolean {
    const mine = this.local.get(k)
    if (!mine?.delete(socketId)) return false
    if (mine.size === 0) this.local.delete(k)
    return true
  }

  async release(namespace: string, userId: string, socketId: string): Promise<void> {
    const k = this.keyId(namespace, userId)
    if (!this.forget(k, socketId)) return
    try {
      await this.cmd.sbConnRelease(this.userKey(k), this.member(socketId))
      await this.unindex([k])
    } catch (err) {
      this.pending.set(k, ++this.failures)
      throw err
    }
  }

  /** Drops our index entries of keys this node holds nothing of (checked as the command is queued). */
  private async unindex(keys: string[]): Promise<void> {
    const gone = keys.filter((k) => !this.local.has(k))
    if (gone.length > 0) await this.redis.srem(this.nodeKey(this.nodeId), ...gone)
  }

  /** Every key in a node's index (SSCAN: safe while entries are being removed). */
  private async *indexed(nodeId: string): AsyncGenerator<string[]> {
    let cursor = '0'
    do {
      const [next, keys] = await this.redis.sscan(this.nodeKey(nodeId), cursor, 'COUNT', BATCH)
      cursor = next
      if (keys.length > 0) yield keys
    } while (cursor !== '0')
  }

  /** Queues SYNC for key `k` from what this node holds of it now. */
  private sync(k: string, nodeId: string, hold: boolean): Promise<[number, number]> {
    const mine = hold ? this.local.get(k) : undefined
    const held: string[] = []
    const inFlight: string[] = []
    for (const [id, h] of mine ?? []) (h.acquiring ? inFlight : held).push(this.member(id, nodeId))
    return this.cmd.sbConnSync(this.userKey(k), nodeId, this.ttlMs, held.length, ...held, ...inFlight)
  }

  async reconcile(live: Iterable<CountedSocket>): Promise<ConnectionRepair> {
    const repair: ConnectionRepair = { readded: 0, removed: 0 }
    // 1. The truth, synchronously: this node's sockets now. A counted socket that is not among
    //    them is gone (its release has run or failed, or Socket.IO dropped it between the limit
    //    and the connection, without a disconnect), unless it was acquired since the previous
    //    pass: it may be on its way into the namespace. Live sockets we do not count (let in
    //    while Redis was down) are counted from now on.
    this.pass++
    const touched = new Set<string>()
    const now = new Map<string, Set<string>>()
    for (const { namespace, userId, socketId } of live) {
      const k = this.keyId(namespace, userId)
      let ids = now.get(k)
      if (!ids) now.set(k, (ids = new Set()))
      ids.add(socketId)
      let mine = this.local.get(k)
      if (!mine) this.local.set(k, (mine = new Map()))
      if (!mine.has(socketId)) mine.set(socketId, { acquiring: false, born: this.pass })
    }
    for (const [k, mine] of this.local) {
      for (const [id, h] of mine) {
        if (!h.acquiring && h.born < this.pass - 1 && !now.get(k)?.has(id)) {
          mine.delete(id)
          touched.add(k)
        }
      }
      if (mine.size === 0) this.local.delete(k)
    }
    // Dropped before the first await, so it dies young instead of outliving the pass (D185).
    now.clear()

    // 2. What our index says.
    const indexed = new Set<string>()
    for await (const keys of this.indexed(this.nodeId)) for (const k of keys) indexed.add(k)

    // 3. Every key we hold, our index names, or a release failed on: our entries there become
    //    exactly what we hold (refreshed, re-added), each key's batch taken as it is queued.
    const todo = [...new Set([...this.local.keys(), ...indexed, ...this.pending.keys(), ...touched])]
    for (let i = 0; i < todo.length; i += BATCH) {
      const batch = todo.slice(i, i + BATCH)
      const retried = batch.flatMap((k) => (this.pending.has(k) ? [[k, this.pending.get(k)] as const] : []))
      const results = await Promise.all(
        batch.map((k) => {
          const synced = this.sync(k, this.nodeId, true)
          if (!this.local.has(k) || indexed.has(k)) return synced
          return Promise.all([this.redis.sadd(this.nodeKey(this.nodeId), k), synced]).then(([, r]) => r)
        }),
      )
      for (const [readded, removed] of results) {
        repair.readded += readded
        repair.removed += removed
      }
      // Done, unless a release of the key failed again meanwhile.
      for (const [k, n] of retried) if (this.pending.get(k) === n) this.pending.delete(k)
      await this.unindex(batch)
    }
    return repair
  }

  /**
   * Removes `nodeId`'s entries key by key, each removal one idempotent script; a key's index
   * entry goes only after its script ran. A reaper that dies mid-way strands nothing: what it did
   * is done, what it did not is still in the index for the next reaper (and expires by itself
   * meanwhile). For this node's own id (a drain), local state is dropped too.
   */
  async reapNode(nodeId: string, hooks: { renew?(): Promise<void> } = {}): Promise<number> {
    let removed = 0
    const removeBatch = async (keys: string[]) => {
      await hooks.renew?.()
      const results = await Promise.all(keys.map((k) => this.sync(k, nodeId, false)))
      for (const [, n] of results) removed += n
      await this.redis.srem(this.nodeKey(nodeId), ...keys)
    }
    if (nodeId === this.nodeId) {
      const keys = [...new Set([...this.local.keys(), ...this.pending.keys()])]
      this.local.clear()
      this.pending.clear()
      for (let i = 0; i < keys.length; i += BATCH) await removeBatch(keys.slice(i, i + BATCH))
    }
    // Until a full pass finds nothing: entries removed during a pass may hide others from it.
    for (let found = true; found; ) {
      found = false
      for await (const keys of this.indexed(nodeId)) {
        found = true
        await removeBatch(keys)
      }
    }
    return removed
  }
}
