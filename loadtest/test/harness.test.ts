import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { freePort, waitFor, answers } from '../../infra/processes.ts'
import { mkdtempSync, rmSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { TEST_SECRET, useIsolatedNode } from '../../services/chat/test/helpers.ts'
import { startTestCluster, type TestCluster } from '../../test/cluster/helpers.ts'
import { withDescendants } from '../lib/descendants.ts'
import { affinity, pin, pinTree, splitCpus } from '../lib/pin.ts'
import { bucketDelta, buckets, quantile, samples, scrape } from '../lib/prom.ts'
import { ackHeldRate, formatReport, runSockets, type SocketLoadReport, type StepReport } from '../sockets/run.ts'

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
    assert.ok(Number.isFinite(s.generatorLagP99Ms) && s.generatorLagP99Ms >= 0, `generator lag p99 ${s.generatorLagP99Ms} ms`)
  }
  assert.match(formatReport(r), /msg\/s/)
}

describe('pinning the bench (--pin)', () => {
  it('splits the CPUs: servers on the first half, the load generator on the rest', () => {
    assert.deepEqual(splitCpus(2), { server: '0', generator: '1' })
    assert.deepEqual(splitCpus(4), { server: '0-1', generator: '2-3' })
    assert.deepEqual(splitCpus(3), { server: '0', generator: '1-2' })
    assert.throws(() => splitCpus(1), /at least 2 CPUs/)
  })

  it('pins a running process tree, and what it starts afterwards inherits the pin', async () => {
    // A shell with a child of its own; on a signal it starts another child and reports its pid.
    const sh = spawn('sh', ['-c', 'trap \'sleep 30 & echo $!\' USR1; sleep 30 & while :; do wait; done'], { stdio: ['ignore', 'pipe', 'inherit'] })
    try {
      await waitFor('the shell and its child', async () => withDescendants(sh.pid!).length === 2, 5000)
      const [, child] = withDescendants(sh.pid!)
      assert.notEqual(affinity(child), '0', 'not pinned yet (every CPU of a machine with two or more)')
      assert.deepEqual(pinTree(sh.pid!, '0', { exceptRoot: true }), [child])
      assert.equal(affinity(child), '0')
      assert.notEqual(affinity(sh.pid!), '0', 'the root was left alone')
      assert.deepEqual(pinTree(sh.pid!, '0'), [sh.pid!, child])
      const later = new Promise<number>((resolve) => sh.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim()))))
      sh.kill('SIGUSR1')
      assert.equal(affinity(await later), '0', 'a process started after the pin inherits it')
      assert.equal(pin(2 ** 22 + 1, '0'), false, 'a pid that does not exist is skipped')
    } finally {
      for (const p of withDescendants(sh.pid!).reverse()) process.kill(p, 'SIGKILL')
    }
  })
})

describe('summing up a ramp', () => {
  it('ackHeldRate: the highest rate up to which every step kept its ack p99 within the bound', () => {
    const step = (rate: number, ackP99: number, extra: Partial<StepReport> = {}) =>
      ({ rate, sent: 10, acked: 10, loss: 0, ack: { p99: ackP99 }, ...extra }) as StepReport
    const ramp = (...steps: StepReport[]) => ({ steps }) as SocketLoadReport
    assert.equal(ackHeldRate(ramp(step(100, 10), step(150, 20), step(200, 60), step(250, 30)), 50), 150, 'a step over the bound ends it, even if a later one is under')
    assert.equal(ackHeldRate(ramp(step(100, 10), step(150, 50)), 50), 150, 'the bound itself holds')
    assert.equal(ackHeldRate(ramp(step(100, 60)), 50), 0)
    assert.equal(ackHeldRate(ramp(step(100, 10), step(150, 10, { loss: 3 })), 50), 100, 'a loss ends it')
    assert.equal(ackHeldRate(ramp(step(100, 10), step(150, 10, { acked: 9 })), 50), 100, 'an unacked send ends it')
    assert.equal(ackHeldRate(ramp(step(100, 10), step(150, NaN)), 50), 100, 'no ack figure is not within the bound')
  })
})

describe('reading a node\'s Prometheus histogram', () => {
  const text = [
    '# HELP switchboard_ack_seconds Time from a client event to its ack',
    'switchboard_ack_seconds_bucket{le="0.01",event="chat:message",status="ok",node="a"} 50',
    'switchboard_ack_seconds_bucket{le="0.025",event="chat:message",status="ok",node="a"} 90',
    'switchboard_ack_seconds_bucket{le="+Inf",event="chat:message",status="ok",node="a"} 100',
    'switchboard_ack_seconds_bucket{le="0.01",event="room:join",status="ok",node="a"} 7',
    'switchboard_ack_seconds_bucket{le="+Inf",event="room:join",status="ok",node="a"} 7',
    'switchboard_nodejs_eventloop_lag_p99_seconds{node="a"} 0.0125',
  ].join('\n')
  const match = { event: 'chat:message', status: 'ok' }

  it('sums buckets over nodes and takes differences between scrapes', () => {
    assert.deepEqual([...buckets([text, text], 'switchboard_ack_seconds', match)], [[0.01, 100], [0.025, 180], [Infinity, 200]])
    assert.deepEqual([...bucketDelta(buckets([text, text], 'switchboard_ack_seconds', match), buckets([text], 'switchboard_ack_seconds', match))], [[0.01, 50], [0.025, 90], [Infinity, 100]])
    assert.deepEqual(samples(text, 'switchboard_nodejs_eventloop_lag_p99_seconds').map((s) => s.value), [0.0125])
  })

  it('interpolates quantiles inside a bucket, as histogram_quantile does', () => {
    const b = buckets([text], 'switchboard_ack_seconds', match)
    assert.equal(quantile(b, 0.5), 0.01)
    assert.ok(Math.abs(quantile(b, 0.7) - 0.0175) < 1e-12)
    assert.ok(Math.abs(quantile(b, 0.9) - 0.025) < 1e-12)
    assert.equal(quantile(b, 0.99), 0.025) // in +Inf: the highest finite bound
    assert.ok(Number.isNaN(quantile(new Map(), 0.5)))
  })
})

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
    let before = ''
    let calls = 0
    const beforeStep = async () => {
      calls++
      before = await scrape(node.url)
    }
    const r = await runSockets({ ...small, scenario: 'fanout', url: node.url, jwtSecret: TEST_SECRET, pids: [process.pid], warmupSec: 0.5, beforeStep })
    assertConsistent(r, 6, 3)
    assert.equal(calls, 1, 'called once, for the one measured step')
    // The node's own ack histogram (what the bench reads as the node side), scraped as the step
    // started, saw exactly this step's acks: none of the warm-up's.
    const match = { event: 'chat:message', status: 'ok' }
    const seen = bucketDelta(buckets([await scrape(node.url)], 'switchboard_ack_seconds', match), buckets([before], 'switchboard_ack_seconds', match))
    assert.equal(seen.get(Infinity), r.steps[0].acked)
    assert.ok(quantile(seen, 0.99) > 0)
    assert.equal(r.steps.length, 1)
    assert.ok((r.steps[0].serverCpuSec ?? -1) >= 0)
    // The test itself keeps a core busy (six clients, a node, Postgres): above 0, at most 100.
    assert.ok(r.steps[0].machineBusyPct > 0 && r.steps[0].machineBusyPct <= 100, `machine busy ${r.steps[0].machineBusyPct} %`)
    // …and each CPU's share, one per CPU, which average to the whole machine's.
    const per = r.steps[0].cpuBusyPct
    assert.equal(per.length, cpus().length)
    assert.ok(per.every((x) => x >= 0 && x <= 100), per.join(' / '))
    assert.ok(Math.abs(per.reduce((a, b) => a + b, 0) / per.length - r.steps[0].machineBusyPct) < 2, `${per.join(' / ')} vs ${r.steps[0].machineBusyPct}`)
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
  let tc: TestCluster | undefined
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sb-harness-'))
    tc = await startTestCluster(dir, 'harness:', { JWT_SECRET: TEST_SECRET, RATE_LIMIT_MESSAGES: '100000' }, 1)
  })
  after(async () => {
    await tc?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('long-polling clients leave the server when the run ends, not at its heartbeat timeout', async () => {
    const cluster = tc!.cluster
    const node = cluster.nodes[0].url
    const sessions = async () => samples(await scrape(node), 'switchboard_sockets_connected', { namespace: '/chat' })[0]?.value ?? NaN
    const idle = await sessions()
    assert.ok(Number.isNaN(idle) || idle === 0, `${idle} sessions before the run`) // no sample until the first connection
    const r = await runSockets({ clients: 40, rooms: 2, senders: 2, rate: 20, durationSec: 1, size: 64, workers: 2, addresses: 3, quiet: true, scenario: 'fanout', url: cluster.url, jwtSecret: TEST_SECRET, pollingShare: 0.5 })
    assertConsistent(r, 40, 20)
    // Twenty clients polled through nginx. Their sessions must end with the run: a worker that
    // exits before its polling disconnect is sent leaves them open until the server's heartbeat
    // gives up on them (45 s or more). With ten, all of them sometimes got out in time anyway.
    await waitFor('the polling sessions to close', async () => (await sessions()) === 0, 5000)
  })
})
