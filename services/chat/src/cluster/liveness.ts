import type { Redis } from 'ioredis'
import type { OnlineUser } from '../domain/types.ts'
import type { Logger } from '../logger.ts'
import type { RedisPresence } from './presence.redis.ts'

export interface LivenessHooks {
  /** Users a dead node's crash left with no socket anywhere: announce them offline. */
  onOffline(users: OnlineUser[], deadNodeId: string): void
  /** Our own entries vanished (Redis restarted empty, or we were reaped during a stall): re-register local sockets. */
  onLostRegistration(): Promise<void>
  onReap?(deadNodeId: string, removed: number): void
}

// KEYS[1] alive key, KEYS[2] node registry; ARGV nodeId, ttl ms. Returns 1 if the key still existed.
const BEAT = `
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return existed`

/**
 * Node liveness (SPEC §4: crashed nodes detected within 30 s). Each node refreshes
 * `<prefix>node:alive:<id>` (TTL `ttlMs`) every `intervalMs` and lists itself in
 * `<prefix>nodes`; each node also looks for listed nodes whose key expired and reaps their
 * presence under a short lock, so exactly one survivor announces each offline.
 */
export class NodeLiveness {
  private timer?: NodeJS.Timeout
  private beats = 0
  private running = false

  constructor(
    private readonly redis: Redis,
    private readonly presence: RedisPresence,
    private readonly prefix: string,
    private readonly nodeId: string,
    private readonly log: Logger,
    private readonly opts: { intervalMs: number; ttlMs: number },
    /** Other per-node entries to remove with a dead node's presence (connection counts). */
    private readonly alsoReap?: { reapNode(nodeId: string): Promise<unknown> },
  ) {}

  private aliveKey = (id: string) => `${this.prefix}node:alive:${id}`
  private get registry() {
    return `${this.prefix}nodes`
  }

  start(hooks: LivenessHooks): void {
    // A previous incarnation under the same NODE_ID may have crashed: clean up after it first.
    const first = Promise.all([this.presence.reapNode(this.nodeId), this.alsoReap?.reapNode(this.nodeId)]).then(([offline]) => offline).then(
      (offline) => offline.length > 0 && hooks.onOffline(offline, this.nodeId),
      (err: Error) => this.log.warn({ err: err.message }, 'could not reap our previous incarnation'),
    )
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
    void first.then(tick)
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
    const existed = await this.redis.eval(BEAT, 2, this.aliveKey(this.nodeId), this.registry, this.nodeId, this.opts.ttlMs)
    if (existed === 0 && this.beats > 0) {
      this.log.warn('our liveness key had vanished; re-registering local sockets')
      await hooks.onLostRegistration()
    }
    this.beats++
  }

  private async reap(hooks: LivenessHooks): Promise<void> {
    const nodes = await this.redis.smembers(this.registry)
    for (const id of nodes) {
      if (id === this.nodeId || (await this.redis.exists(this.aliveKey(id))) === 1) continue
      const lock = await this.redis.set(`${this.prefix}node:reaping:${id}`, this.nodeId, 'PX', this.opts.ttlMs, 'NX')
      if (lock !== 'OK') continue
      const offline = await this.presence.reapNode(id)
      await this.alsoReap?.reapNode(id)
      await this.redis.srem(this.registry, id)
      this.log.warn({ deadNode: id, offline: offline.length }, 'reaped presence of a dead node')
      hooks.onReap?.(id, offline.length)
      if (offline.length > 0) hooks.onOffline(offline, id)
    }
  }
}
