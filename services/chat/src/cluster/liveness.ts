import type { RedisClient } from './redis.ts'
import type { OnlineUser } from '../domain/types.ts'
import type { Logger } from '../logger.ts'
import type { RedisPresence } from './presence.redis.ts'

export interface LivenessHooks {
  /** Users a dead node's crash left with no socket anywhere: announce them offline. */
  onOffline(users: OnlineUser[], deadNodeId: string): void
  /** Our own liveness key vanished (Redis restarted empty, or we were reaped during a stall): reconcile presence now. */
  onLostRegistration(): Promise<void>
  onReap?(deadNodeId: string, removed: number): void
}

// KEYS[1] reaping lock; ARGV holder, ttl ms. 1 if we still hold it (and renewed it).
const RENEW = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`

/**
 * Node liveness (SPEC §4: crashed nodes detected within 30 s). Each node refreshes
 * `<prefix>node:alive:<id>` (TTL `ttlMs`) every `intervalMs` and lists itself in
 * `<prefix>nodes`; each node also looks for listed nodes whose key expired and reaps their
 * presence under a short lock, so exactly one survivor announces each offline. Every command
 * names one key, so it works on a Redis Cluster as on one Redis.
 */
export class NodeLiveness {
  private timer?: NodeJS.Timeout
  private beats = 0
  private running = false

  constructor(
    private readonly redis: RedisClient,
    private readonly presence: RedisPresence,
    private readonly prefix: string,
    private readonly nodeId: string,
    private readonly log: Logger,
    private readonly opts: { intervalMs: number; ttlMs: number },
    /** Other per-node entries to remove with a dead node's presence (connection counts), under the same lock. */
    private readonly alsoReap?: { reapNode(nodeId: string, hooks: { renew(): Promise<void> }): Promise<unknown> },
  ) {}

  private aliveKey = (id: string) => `${this.prefix}node:alive:${id}`
  private get registry() {
    return `${this.prefix}nodes`
  }

  start(hooks: LivenessHooks): void {
    // A previous incarnation under the same NODE_ID is cleaned up by the reconciliation's first
    // pass (presence and connection counts, app.ts).
    const tick = async () => {
      if (this.running) return
      this.running = true
      try {
        await this.beat(hooks)
        await this.reap(hooks)
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'liveness tick failed')
      } finally {
        this.running = false
      }
    }
    void tick()
    this.timer = setInterval(() => void tick(), this.opts.intervalMs)
    this.timer.unref()
  }

  /**
   * Graceful exit: drop our liveness key. The drain already removed our sockets; should any be
   * left, a survivor reaps and announces them at its next tick and takes us off the registry.
   */
  async stop(): Promise<void> {
    clearInterval(this.timer)
    await this.redis.del(this.aliveKey(this.nodeId)).catch(() => undefined)
  }

  private async beat(hooks: LivenessHooks): Promise<void> {
    // Two single-key commands, not one script over both keys: on a Redis Cluster the alive keys
    // and the registry live on different slots (D127). The key first, then the registry: a node
    // is never listed without its key, so no survivor reaps a live node between the two.
    const previous = await this.redis.set(this.aliveKey(this.nodeId), '1', 'PX', this.opts.ttlMs, 'GET')
    await this.redis.sadd(this.registry, this.nodeId)
    if (previous === null && this.beats > 0) {
      this.log.warn('our liveness key had vanished; re-registering local sockets')
      await hooks.onLostRegistration()
    }
    this.beats++
  }

  private async reap(hooks: LivenessHooks): Promise<void> {
    const nodes = await this.redis.smembers(this.registry)
    for (const id of nodes) {
      if (id === this.nodeId || (await this.redis.exists(this.aliveKey(id))) === 1) continue
      const lockKey = `${this.prefix}node:reaping:${id}`
      const lock = await this.redis.set(lockKey, this.nodeId, 'PX', this.opts.ttlMs, 'NX')
      if (lock !== 'OK') continue
      // The lock is renewed before each batch; a reaper that dies lets it lapse and the next
      // one finishes the job (each step is idempotent, presence.redis.ts).
      const renew = async () => {
        if ((await this.redis.eval(RENEW, 1, lockKey, this.nodeId, this.opts.ttlMs)) !== 1) throw new Error(`lost the reaping lock of ${id}`)
      }
      const offline = await this.presence.reapNode(id, { renew, offline: (users) => hooks.onOffline(users, id) })
      await this.alsoReap?.reapNode(id, { renew })
      await this.redis.srem(this.registry, id)
      this.log.warn({ deadNode: id, offline: offline.length }, 'reaped presence of a dead node')
      hooks.onReap?.(id, offline.length)
    }
  }
}
