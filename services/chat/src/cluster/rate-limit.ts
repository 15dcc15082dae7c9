import type { Redis } from 'ioredis'
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible'
import { AppError } from '../errors.ts'

/** Per-key fixed-window limit; cluster-wide when backed by Redis. */
export class RateLimit {
  constructor(private readonly limiter: RateLimiterAbstract) {}

  static memory(points: number, durationSeconds: number, keyPrefix: string): RateLimit {
    return new RateLimit(new RateLimiterMemory({ points, duration: durationSeconds, keyPrefix }))
  }

  static redis(redis: Redis, points: number, durationSeconds: number, keyPrefix: string): RateLimit {
    return new RateLimit(new RateLimiterRedis({ storeClient: redis, points, duration: durationSeconds, keyPrefix }))
  }

  /** Takes one point for `key`; throws RATE_LIMITED over the limit (a store failure propagates). */
  async consume(key: string): Promise<void> {
    try {
      await this.limiter.consume(key)
    } catch (res) {
      if (res instanceof RateLimiterRes) {
        throw new AppError('RATE_LIMITED', `Too many messages; retry in ${Math.ceil(res.msBeforeNext / 1000)} s`, {
          retryAfterMs: res.msBeforeNext,
        })
      }
      throw res
    }
  }
}
