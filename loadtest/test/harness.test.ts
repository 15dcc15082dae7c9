import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { freePort, waitFor, answers } from '../../infra/processes.ts'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startCluster, type RunningCluster } from '../../infra/cluster.ts'
import { startRedis, type LocalRedis } from '../../infra/services.ts'
import { createTestDatabase, TEST_SECRET, useIsolatedNode } from '../../services/chat/test/helpers.ts'
import { formatReport, runSockets, type SocketLoadReport } from '../sockets/run.ts'

const root = fileURLToPath(new URL('../..', import.meta.url))

/** The numbers of a report must add up: what was acked is owed to every member of its room. */
function assertConsistent(r: SocketLoadReport, clients: number, roomSize: number): void {
  assert.equal(r.clients.connected, clients)
  assert.equal(r.clients.failed, 0)
  for (const s of r.steps) {
    assert.ok(s.sent > 0, 'something was sent')
    assert.equal(s.acked + Object.values(s.ackErrors).reduce((a, b) => a + b, 0), s.sent, 'every send was answered')
    assert.equal(s.expected, s.acked * roomSize, 'expected = acked × room size')
    assert.equal(s.received, s.expected, 'every owed delivery arrived')
    assert.equal(s.loss, 0)
    assert.equal(s.latency.count, s.received, 'one latency sample per delivery')
    assert.equal(s.ack.count, s.acked, 'one ack sample per ack')
    assert.equal(s.timeline.reduce((a, t) => a + t.deliveries, 0), s.received, 'the timeline adds up')
    assert.ok(Number.isFinite(s.generatorLagP99Ms) && s.generatorLagP99Ms > 0, `generator lag p99 ${s.generatorLagP99Ms} ms`)
  }
  assert.match(formatReport(r), /msg\/s/)
}

describe('load-test harness (a few clients, a second)', () => {
  const node = useIsolatedNode({ RATE_LIMIT_MESSAGES: '100000' })
  let baseline: ChildProcess
  let baselineUrl: string
  before(async () => {
    const port = await freePort()
    baseline = spawn(process.execPath, ['--import', 'tsx', 'loadtest/baseline/server.ts'], { cwd: root, env: { ...process.env, PORT: String(port), REDIS_URL: '' }, stdio: 'ignore' })
    baselineUrl = `http://127.0.0.1:${port}`
    await waitFor('baseline', () => answers(`${baselineUrl}/healthz`), 20_000)
  })
  after(() => {
    baseline?.kill('SIGKILL')
  })

  const small = { clients: 6, rooms: 2, senders: 2, rate: 20, durationSec: 1, size: 64, workers: 2, addresses: 3, quiet: true }

  it('fanout against Switchboard: sent, acked, expected, received and loss are consistent', async () => {
    const r = await runSockets({ ...small, scenario: 'fanout', url: node.url, jwtSecret: TEST_SECRET, pids: [process.pid] })
    assertConsistent(r, 6, 3)
    assert.equal(r.steps.length, 1)
    assert.ok((r.steps[0].serverCpuSec ?? -1) >= 0)
    // The test itself keeps a core busy (six clients, a node, Postgres): above 0, at most 100.
    assert.ok(r.steps[0].machineBusyPct > 0 && r.steps[0].machineBusyPct <= 100, `machine busy ${r.steps[0].machineBusyPct} %`)
  })

  it('ramp against the baseline: steps until the bound, reports the last rate that held', async () => {
    // Eleven short steps: the runner waits on each worker once per step, and must not pile up
    // listeners on it while doing so (Node warns from the eleventh on).
    const warnings: Error[] = []
    const onWarning = (w: Error) => {
      if (w.name === 'MaxListenersExceededWarning') warnings.push(w)
    }
    process.on('warning', onWarning)
    try {
      const r = await runSockets({ ...small, scenario: 'ramp', url: baselineUrl, step: 20, maxRate: 220, durationSec: 0.5, drainSec: 1, p99BoundMs: 60_000 })
      assertConsistent(r, 6, 3)
      assert.deepEqual(r.steps.map((s) => s.rate), [20, 40, 60, 80, 100, 120, 140, 160, 180, 200, 220])
      assert.equal(r.maxGoodRate, 220)
    } finally {
      process.off('warning', onWarning)
    }
    assert.deepEqual(warnings.map((w) => w.message), [])
  })

  it('connections: counts idle clients and RSS per connection', async () => {
    const r = await runSockets({ ...small, scenario: 'connections', url: node.url, jwtSecret: TEST_SECRET, pids: [process.pid] })
    assert.equal(r.clients.connected, 6)
    assert.ok(r.connections && r.connections.rssAfterBytes > 0)
    assert.deepEqual(r.steps, [])
  })
})

describe('load-test harness through nginx', () => {
  let dir: string
  let database: Awaited<ReturnType<typeof createTestDatabase>> | undefined
  let redis: LocalRedis | undefined
  let cluster: RunningCluster | undefined
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sb-harness-'))
    database = await createTestDatabase()
    redis = await startRedis(join(dir, 'redis'))
    cluster = await startCluster({ nodes: 1, dir, databaseUrl: database.url, redisUrl: redis.url, redisPrefix: 'harness:', env: { JWT_SECRET: TEST_SECRET, LOG_LEVEL: 'warn', RATE_LIMIT_MESSAGES: '100000' } })
  })
  after(async () => {
    await cluster?.stop()
    await redis?.stop()
    await database?.drop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('long-polling clients leave the server when the run ends, not at its heartbeat timeout', async () => {
    const node = cluster!.nodes[0].url
    const sessions = async () => {
      const text = await (await fetch(`${node}/metrics`)).text()
      return Number(/^switchboard_sockets_connected\{[^}]*namespace="\/chat"[^}]*\} (\d+)/m.exec(text)?.[1] ?? NaN)
    }
    const idle = await sessions()
    assert.ok(Number.isNaN(idle) || idle === 0, `${idle} sessions before the run`) // no sample until the first connection
    const r = await runSockets({ clients: 20, rooms: 2, senders: 2, rate: 20, durationSec: 1, size: 64, workers: 2, addresses: 3, quiet: true, scenario: 'fanout', url: cluster!.url, jwtSecret: TEST_SECRET, pollingShare: 0.5 })
    assertConsistent(r, 20, 10)
    // Ten clients polled through nginx. Their sessions must end with the run: a worker that
    // exits before its polling disconnect is sent leaves them open until the server's heartbeat
    // gives up on them (45 s or more).
    await waitFor('the polling sessions to close', async () => (await sessions()) === 0, 5000)
  })
})
