import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { startRedis, type LocalRedis } from '../../infra/services.ts'
import { createTestDatabase } from '../../services/chat/test/helpers.ts'
import { fromOthers, startRedisTap } from '../lib/redis-tap.ts'
import { formatSummary, placeClients, runScale, type ScaleReport } from '../scale.ts'

describe('placing clients for bench:scale', () => {
  it('dm: every member of a room on one node; spread: a room on every node; one sender per room', () => {
    const dm = placeClients('dm', 4, 8, 2, 't')
    assert.equal(dm.length, 16)
    for (let r = 0; r < 8; r++) {
      const members = dm.filter((p) => p.room === `scale-t-dm-${r}`)
      assert.deepEqual(new Set(members.map((m) => m.node)).size, 1)
      assert.equal(members.filter((m) => m.sender).length, 1)
    }
    assert.deepEqual([0, 1, 2, 3].map((k) => dm.filter((p) => p.node === k).length), [4, 4, 4, 4], 'rooms spread evenly over the nodes')
    const spread = placeClients('spread', 4, 3, 4, 't')
    for (let r = 0; r < 3; r++) assert.deepEqual(new Set(spread.filter((p) => p.room === `scale-t-spread-${r}`).map((m) => m.node)).size, 4)
  })
})

describe('the counting Redis proxy', () => {
  let redis: LocalRedis
  const dir = mkdtempSync(join(tmpdir(), 'sb-tap-'))
  before(async () => void (redis = await startRedis(join(dir, 'redis'))))
  after(async () => {
    await redis.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('counts publishes and deliveries per channel, and tells its own echo from other nodes\' messages', async () => {
    const tap = await startRedisTap(redis.port)
    const mine = { pub: new Redis(tap.url), sub: new Redis(tap.url) }
    const other = new Redis(redis.url)
    try {
      await mine.sub.subscribe('a')
      await mine.sub.psubscribe('p:*')
      const got = new Promise<void>((resolve) => {
        let n = 0
        const one = () => ++n === 6 && resolve()
        mine.sub.on('message', one)
        mine.sub.on('pmessage', one)
      })
      const t0 = tap.snapshot()
      await mine.pub.publish('a', 'x') // own echo
      await mine.pub.publish('p:1', 'yy') // own echo through the pattern
      await mine.pub.publish('nobody', 'z') // published, heard by nobody here
      await other.publish('a', 'x')
      await other.publish('a', 'x')
      await other.publish('p:2', 'yyy')
      await other.publish('p:2', 'yyy')
      await got
      const d = fromOthers(t0, tap.snapshot())
      assert.deepEqual(d, { delivered: 6, own: 2, fromOthers: 4, bytes: 1 + 2 + 1 + 1 + 3 + 3 })
    } finally {
      for (const c of [mine.pub, mine.sub, other]) c.disconnect()
      await tap.close()
    }
    // Closed: nothing listens on its port any more.
    await assert.rejects(new Promise((resolve, reject) => net.connect(tap.port, '127.0.0.1').once('connect', resolve).once('error', reject)))
  })
})

describe('npm run bench:scale, a tiny run (2 nodes, both layouts, Switchboard and the baseline)', () => {
  let report: ScaleReport
  let database: Awaited<ReturnType<typeof createTestDatabase>>
  before(async () => {
    database = await createTestDatabase()
    report = await runScale({
      nodeCounts: [2],
      rate: 40,
      durationSec: 1,
      warmupSec: 0,
      drainSec: 1,
      dmRooms: 4,
      spreadRooms: 2,
      spreadSize: 4,
      workers: 1,
      octetsPerNode: 2,
      idleSec: 1,
      databaseUrl: database.url,
      quiet: true,
    })
  })
  after(async () => {
    await database?.drop()
  })

  it('says what ran, where and how', () => {
    assert.match(report.commit, /^[0-9a-f]{40}$/)
    assert.match(report.command, /^npm run bench:scale/)
    assert.ok(report.host.cpus >= 1 && report.host.cpuModel)
    assert.ok(Date.parse(report.finishedAt) >= Date.parse(report.startedAt))
    assert.match(report.counting, /switchboard_cluster_messages_received_total/)
    assert.deepEqual(report.runs.map((r) => `${r.system} ${r.nodes} ${r.layout}`).sort(), ['baseline 2 dm', 'baseline 2 spread', 'switchboard 2 dm', 'switchboard 2 spread'])
    assert.equal(formatSummary(report).split('\n').length, 4, 'a header, a rule and a row per layout')
  })

  it('every owed delivery arrived, and the per-node figures add up to the run\'s', () => {
    for (const r of report.runs) {
      const what = `${r.system} ${r.layout}`
      assert.equal(r.connected, r.clients, what)
      assert.ok(r.sent > 0, `${what}: something was sent`)
      assert.equal(r.acked, r.sent, `${what}: every send acked`)
      assert.equal(r.expected, r.acked * r.roomSize, `${what}: each message owed to every member of its room`)
      assert.equal(r.received, r.expected, `${what}: deliveries counted = deliveries expected`)
      assert.equal(r.loss, 0)
      assert.equal(r.perNode.length, 2)
      assert.equal(r.perNode.reduce((s, p) => s + p.sent, 0), r.acked, `${what}: sends by node add up`)
      assert.equal(r.perNode.reduce((s, p) => s + p.deliveries, 0), r.expected, `${what}: deliveries by node add up`)
      assert.equal(r.perNode.reduce((s, p) => s + p.clients, 0), r.clients)
      for (const p of r.perNode) {
        assert.ok(p.clients > 0 && p.sent > 0, `${what} ${p.node}: has clients that sent`)
        assert.equal(p.receivedFromOthers, p.metricReceived ?? p.pubsubFromOthers, 'the metric where there is one, else the proxy')
        assert.equal(p.receivedFromOthersPerMessageSent, Math.round((p.receivedFromOthers / r.acked) * 1000) / 1000)
        assert.ok(p.cpuSec > 0 && Number.isFinite(p.cpuMsPerClusterMessage) && Number.isFinite(p.deliveriesPerCore))
        assert.ok(p.idleCpuPerSec >= 0 && p.netCpuMsPerClusterMessage >= 0 && p.netCpuMsPerClusterMessage <= p.cpuMsPerClusterMessage)
      }
      if (r.system === 'switchboard') {
        assert.ok(r.commits && r.commits.transactions > 0, `${what}: group commits counted`)
        assert.equal(r.commits.messages, r.acked, `${what}: every acked message was in a group commit of the window`)
      } else assert.equal(r.commits, null)
    }
  })

  it('the baseline (classic adapter) hands every node every other node\'s messages, and the proxy counts exactly those', () => {
    for (const r of report.runs.filter((x) => x.system === 'baseline')) {
      assert.equal(r.source, 'redis-proxy')
      for (const [k, p] of r.perNode.entries()) {
        const others = r.perNode.filter((_, j) => j !== k).reduce((s, q) => s + q.sent, 0)
        assert.equal(p.pubsubFromOthers, others, `${r.layout} ${p.node}`)
      }
    }
  })

  it('Switchboard: in rooms spread over both nodes, each node hears the other\'s messages', () => {
    const r = report.runs.find((x) => x.system === 'switchboard' && x.layout === 'spread')!
    for (const p of r.perNode) assert.ok(p.receivedFromOthers > 0, `${p.node} received ${p.receivedFromOthers} (${r.source})`)
  })
})
