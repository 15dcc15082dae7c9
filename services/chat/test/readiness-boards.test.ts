import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import pino from 'pino'
import { RedisPeerBoard, type PeerBoard } from '../src/cluster/readiness.ts'
import { loadConfig } from '../src/config.ts'
import { createDb, type Db } from '../src/store/db.ts'
import { migrateToLatest } from '../src/store/migrate.ts'
import { PgPeerBoard } from '../src/store/node-heartbeats.ts'
import { createTestDatabase, REDIS_URL, redisPrefix, sleep, TEST_SECRET } from './helpers.ts'

const MARGIN_MS = 100
const FRESH_MS = 1500

/**
 * The two heartbeat boards of D80 on the real stores: a peer counts only when its heartbeat
 * says it reaches the other dependency, is fresh, and came after this node lost it (so a
 * fleet-wide loss, where every peer's last good heartbeat predates the loss, is never taken for
 * "only me").
 */
describe('readiness heartbeat boards', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>
  let db: Db
  const prefix = redisPrefix()
  let redis: Redis

  before(async () => {
    database = await createTestDatabase()
    const log = pino({ level: 'silent' })
    db = await createDb(loadConfig({ JWT_SECRET: TEST_SECRET, DATABASE_URL: database.url, LOG_LEVEL: 'silent' }), log)
    await migrateToLatest(db, log)
    redis = new Redis(REDIS_URL)
  })
  after(async () => {
    await db?.destroy()
    await redis?.quit()
    await prefix.clear()
    await database?.drop()
  })

  const opts = { freshMs: FRESH_MS, marginMs: MARGIN_MS }
  const boards: Record<string, (node: string) => PeerBoard> = {
    postgres: (node) => new PgPeerBoard(db, node, opts),
    redis: (node) => new RedisPeerBoard(redis, prefix.prefix, node, opts),
  }

  for (const [where, board] of Object.entries(boards)) {
    it(`in ${where}: counts peers that reached the other dependency after this node lost it, not before, not itself`, async () => {
      const me = board(`me-${where}`)
      const peer = board(`peer-${where}`)
      const down = board(`down-${where}`)
      await me.beat(true)
      await peer.beat(true)
      await down.beat(false)
      // I lose the other dependency now: the peer's heartbeat (from before) does not count.
      const first = await me.peersReaching(null)
      assert.equal(first.peers, 0)
      assert.ok(first.nowMs > 0)
      assert.equal((await me.peersReaching(first.nowMs)).peers, 0, 'a heartbeat from before the loss is no proof')
      await sleep(MARGIN_MS + 50)
      await down.beat(false)
      assert.equal((await me.peersReaching(first.nowMs)).peers, 0, 'a peer that lost it too is no proof')
      await peer.beat(true)
      await me.beat(false)
      assert.equal((await me.peersReaching(first.nowMs)).peers, 1, 'a peer that reached it after my loss: only me')
      assert.equal((await peer.peersReaching(first.nowMs)).peers, 0, 'my own heartbeat never counts for me')
      // Fresh only: a peer that stopped beating (gone, or lost it later) stops counting.
      await sleep(FRESH_MS + 100)
      assert.equal((await me.peersReaching(first.nowMs)).peers, 0)
    })
  }
})
