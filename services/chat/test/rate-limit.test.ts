import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { LeasedRedisRateLimit, leaseCap } from '../src/cluster/rate-limit.ts'
import { AppError } from '../src/errors.ts'
import { REDIS_URL, redisPrefix } from './helpers.ts'

/** The cluster-wide message limit against the real Redis (decision D36). */
describe('leased cluster-wide rate limit', () => {
  const prefix = redisPrefix()
  const clients: Redis[] = []
  const redis = () => {
    const r = new Redis(REDIS_URL)
    clients.push(r)
    return r
  }
  after(async () => {
    await prefix.clear()
    for (const c of clients) c.disconnect()
  })

  let n = 0
  const limiter = (r: Redis, points: number, seconds: number, maxLease: number, keyPrefix = `${prefix.prefix}rl${n++}`) => {
    const limit = new LeasedRedisRateLimit(r, points, seconds, keyPrefix, { maxLease, storeReady: () => r.status === 'ready' })
    return { limit, counter: async (key: string) => Number(await r.get(`${keyPrefix}:${key}`)) }
  }
  /** Consumes one point; 'ok', or the error code. Reports whether Redis was asked. */
  const take = async (limit: LeasedRedisRateLimit, key: string) => {
    const p = limit.consume(key)
    try {
      await p
      return { result: 'ok', asked: p !== undefined }
    } catch (err) {
      assert.ok(err instanceof AppError, String(err))
      return { result: err.code, asked: p !== undefined, retryAfterMs: (err.details as { retryAfterMs?: number } | undefined)?.retryAfterMs }
    }
  }

  it('the default limit leases one point per message: exact, and a full window refuses without Redis', async () => {
    assert.equal(leaseCap(10, 100), 1)
    const { limit, counter } = limiter(redis(), 10, 60, leaseCap(10, 100))
    for (let i = 0; i < 10; i++) assert.deepEqual(await take(limit, 'u1'), { result: 'ok', asked: true })
    const over = await take(limit, 'u1')
    assert.equal(over.result, 'RATE_LIMITED')
    assert.ok(over.retryAfterMs! > 0 && over.retryAfterMs! <= 60_000, `retryAfterMs ${over.retryAfterMs}`)
    assert.equal(await counter('u1'), 11)
    // The window is known to be full: refused here, Redis not asked again.
    assert.equal((await take(limit, 'u1')).result, 'RATE_LIMITED')
    assert.equal(await counter('u1'), 11)
    // Another key is untouched.
    assert.equal((await take(limit, 'u2')).result, 'ok')
  })

  it('leases double while a key keeps sending: 40 messages take 6 Redis calls', async () => {
    assert.equal(leaseCap(1000, 100), 50)
    const { limit, counter } = limiter(redis(), 1000, 60, 50)
    let asked = 0
    for (let i = 0; i < 40; i++) {
      const r = await take(limit, 'busy')
      assert.equal(r.result, 'ok')
      if (r.asked) asked++
    }
    assert.equal(asked, 6) // leases of 1, 2, 4, 8, 16, 32
    assert.equal(await counter('busy'), 63) // leased, 23 of them not spent yet
  })

  it('two nodes together never admit more than the limit, and spend every point they leased', async () => {
    const a = limiter(redis(), 40, 60, 8)
    const b = limiter(redis(), 40, 60, 8, `${prefix.prefix}rl${n - 1}`) // the same key on a second connection
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => take((i % 2 ? a : b).limit, 'shared')))
    const ok = results.filter((r) => r.result === 'ok').length
    assert.equal(ok, 40)
    assert.ok(results.every((r) => r.result === 'ok' || r.result === 'RATE_LIMITED'))
    assert.ok((await a.counter('shared')) >= 40)
  })

  it('concurrent messages of one key pass in arrival order', async () => {
    const { limit } = limiter(redis(), 1000, 60, 50)
    const order: number[] = []
    await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        await limit.consume('ordered')
        order.push(i)
      }),
    )
    assert.deepEqual(order, Array.from({ length: 30 }, (_, i) => i))
  })

  it('a new window grants again', async () => {
    const { limit } = limiter(redis(), 2, 1, 1)
    assert.equal((await take(limit, 'w')).result, 'ok')
    assert.equal((await take(limit, 'w')).result, 'ok')
    const over = await take(limit, 'w')
    assert.equal(over.result, 'RATE_LIMITED')
    await new Promise((r) => setTimeout(r, over.retryAfterMs! + 50))
    assert.equal((await take(limit, 'w')).result, 'ok')
  })

  it('leased points are not spent while Redis is down; the message gets UNAVAILABLE', async () => {
    const r = redis()
    const { limit } = limiter(r, 1000, 60, 50)
    assert.equal((await take(limit, 'down')).result, 'ok') // lease of 1
    assert.equal((await take(limit, 'down')).result, 'ok') // lease of 2: one point left here
    const closed = new Promise((resolve) => r.once('end', resolve))
    r.disconnect()
    await closed
    const during = await take(limit, 'down')
    assert.equal(during.result, 'UNAVAILABLE')
  })
})
