import type { RedisClient } from './redis.ts'
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible'
import { AppError } from '../errors.ts'

/**
 * A per-key fixed-window limit: `points` per `durationSeconds`, cluster-wide when backed by
 * Redis. `consume(key)` takes one point and returns `undefined` when the point was granted on the
 * spot, or a promise that settles when the store answered (rejecting with RATE_LIMITED over the
 * limit, or with the store's error).
 */
export interface RateLimit {
  consume(key: string): Promise<void> | undefined
}

export interface LeaseOptions {
  /** Most points one Redis call may lease to this node for one key (1 = a Redis call per point). */
  maxLease: number
  /** False while the Redis connection is down: leased points are not spent then (SPEC §5.6). */
  storeReady: () => boolean
}

function refusal(res: RateLimiterRes | { msBeforeNext: number }, what = 'messages'): AppError {
  return new AppError('RATE_LIMITED', `Too many ${what}; retry in ${Math.ceil(res.msBeforeNext / 1000)} s`, {
    retryAfterMs: res.msBeforeNext,
  })
}

/** The largest lease the default settings allow: a twentieth of the window's points, at most `cap`. */
export function leaseCap(points: number, cap: number): number {
  return Math.max(1, Math.min(cap, Math.floor(points / 20)))
}

/** In-process limit (one node, the embedded default): no round trip to lease. */
export class MemoryRateLimit implements RateLimit {
  private readonly limiter: RateLimiterMemory

  constructor(points: number, durationSeconds: number, keyPrefix: string) {
    this.limiter = new RateLimiterMemory({ points, duration: durationSeconds, keyPrefix })
  }

  consume(key: string): Promise<void> {
    return consumeOne(this.limiter, key)
  }
}

async function consumeOne(limiter: RateLimiterAbstract, key: string, what?: string): Promise<void> {
  try {
    await limiter.consume(key)
  } catch (res) {
    throw res instanceof RateLimiterRes ? refusal(res, what) : res
  }
}

/**
 * A per-key limit on a rarer event (room joins, syncs): `points` per `durationSeconds`, in Redis
 * when there is one, so a user's sockets on every node share one counter (decision D56). A key
 * that filled its window is then refused on this node without asking Redis again. While Redis
 * does not answer, each node counts on its own (`insuranceLimiter`): joins and syncs keep
 * working in an outage (SPEC §5.6), limited per node.
 */
export class EventRateLimit implements RateLimit {
  private readonly limiter: RateLimiterAbstract

  constructor(
    redis: RedisClient | undefined,
    points: number,
    durationSeconds: number,
    keyPrefix: string,
    /** What the refusal says there were too many of ("room joins"). */
    private readonly what: string,
  ) {
    const memory = new RateLimiterMemory({ points, duration: durationSeconds, keyPrefix })
    this.limiter = redis
      ? new RateLimiterRedis({
          storeClient: redis,
          points,
          duration: durationSeconds,
          keyPrefix,
          inMemoryBlockOnConsumed: points,
          rejectIfRedisNotReady: true,
          insuranceLimiter: memory,
        })
      : memory
  }

  consume(key: string): Promise<void> {
    return consumeOne(this.limiter, key, this.what)
  }
}

/**
 * At most one event per key per `ms` across the cluster (typing: per user, room and state).
 * A node first drops repeats it has seen itself in the window (no Redis call), then takes the
 * window in Redis with one `SET key 1 PX ms NX`, so a user on several nodes is not throttled
 * once per node. Redis windows are in milliseconds here, which rate-limiter-flexible's Redis
 * store (whole seconds) cannot do. When Redis does not answer, the node's own window decides.
 */
export class Throttle {
  private readonly local: RateLimiterMemory

  constructor(
    private readonly redis: RedisClient | undefined,
    private readonly ms: number,
    private readonly keyPrefix: string,
  ) {
    this.local = new RateLimiterMemory({ points: 1, duration: Math.max(ms, 1) / 1000 })
  }

  /** True when the event may pass. */
  async allow(key: string): Promise<boolean> {
    if (this.ms <= 0) return true
    const here = await this.local.consume(key).then(
      () => true,
      () => false,
    )
    if (!here || !this.redis) return here
    try {
      return (await this.redis.set(`${this.keyPrefix}:${key}`, '1', 'PX', this.ms, 'NX')) === 'OK'
    } catch {
      return true
    }
  }
}

interface Lease {
  /** Points this node holds for the key in the current window. */
  remaining: number
  /** When the window (and with it every leased point) ends, by this node's clock. */
  until: number
  /** The size of the next lease: doubles while the key keeps spending inside one window. */
  next: number
  /** The window is full: refuse here until it ends. */
  exhausted: boolean
  /** Consumers waiting, in arrival order, for the lease in flight. */
  queue: { resolve: () => void; reject: (e: unknown) => void }[]
  leasing: boolean
}

/**
 * The cluster-wide limit without a Redis round trip per message (decision D36). The window's
 * counter lives in Redis exactly as with a plain `RateLimiterRedis` (same key, same fixed
 * window), but a node takes points from it in leases — 1, then 2, 4, … up to `maxLease` while a
 * key keeps sending inside one window — and spends them locally. The counter therefore never
 * admits more than `points` per window across the cluster; a node can hold at most
 * `maxLease − 1` unspent points, which the key cannot spend on another node until the window
 * ends. With the default limit (10 per 10 s) `maxLease` is 1: every message is one Redis call,
 * exactly as before. Waiters are served in arrival order, so one user's messages pass in order.
 */
export class LeasedRedisRateLimit implements RateLimit {
  private readonly limiter: RateLimiterRedis
  private readonly leases = new Map<string, Lease>()
  private calls = 0

  constructor(
    redis: RedisClient,
    private readonly points: number,
    durationSeconds: number,
    keyPrefix: string,
    private readonly opts: LeaseOptions,
  ) {
    this.limiter = new RateLimiterRedis({ storeClient: redis, points, duration: durationSeconds, keyPrefix })
  }

  consume(key: string): Promise<void> | undefined {
    const now = Date.now()
    if (++this.calls % 4096 === 0) this.sweep(now)
    let lease = this.leases.get(key)
    if (lease && lease.until <= now && !lease.leasing) {
      this.leases.delete(key)
      lease = undefined
    }
    if (!lease) {
      lease = { remaining: 0, until: 0, next: 1, exhausted: false, queue: [], leasing: false }
      this.leases.set(key, lease)
    }
    if (!lease.leasing) {
      if (lease.exhausted) return Promise.reject(refusal({ msBeforeNext: lease.until - now }))
      if (lease.remaining > 0) {
        if (!this.opts.storeReady()) return Promise.reject(new AppError('UNAVAILABLE', 'Redis is unavailable; retry shortly'))
        lease.remaining--
        return undefined
      }
    }
    const l = lease
    return new Promise<void>((resolve, reject) => {
      l.queue.push({ resolve, reject })
      if (!l.leasing) this.lease(key, l)
    })
  }

  /** Leases points for the waiters of `key` and serves them in order; leases again while some still wait. */
  private lease(key: string, l: Lease): void {
    l.leasing = true
    const want = Math.min(this.opts.maxLease, Math.max(l.next, l.queue.length))
    const sameWindow = l.until > Date.now()
    this.limiter.consume(key, want).then(
      (res) => this.granted(key, l, want, want, res.msBeforeNext, sameWindow),
      (err: unknown) => {
        if (err instanceof RateLimiterRes) {
          // The window had fewer than `want` points left: take what there was, and no more.
          const got = Math.max(0, want - (err.consumedPoints - this.points))
          return this.granted(key, l, want, got, err.msBeforeNext, sameWindow)
        }
        l.leasing = false
        for (const w of l.queue.splice(0)) w.reject(err)
      },
    )
  }

  private granted(key: string, l: Lease, want: number, got: number, msBeforeNext: number, sameWindow: boolean): void {
    l.leasing = false
    l.until = Date.now() + msBeforeNext
    l.remaining = got
    l.next = sameWindow ? Math.min(this.opts.maxLease, want * 2) : Math.min(this.opts.maxLease, 2)
    l.exhausted = got < want
    while (l.remaining > 0 && l.queue.length > 0) {
      l.remaining--
      l.queue.shift()!.resolve()
    }
    if (l.queue.length === 0) return
    if (l.exhausted) {
      for (const w of l.queue.splice(0)) w.reject(refusal({ msBeforeNext }))
      return
    }
    this.lease(key, l)
  }

  private sweep(now: number): void {
    for (const [key, l] of this.leases) if (l.until <= now && !l.leasing) this.leases.delete(key)
  }
}
