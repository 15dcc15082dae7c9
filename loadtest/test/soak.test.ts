import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { answers } from '../../infra/processes.ts'
import { redisPrefix } from '../../services/chat/test/helpers.ts'
import { startTestCluster, type TestCluster } from '../../test/cluster/helpers.ts'
import { linearFit, windowMinima } from '../lib/fit.ts'
import { formatSoak, readNode, runSoak, type SoakReport } from '../soak.ts'

describe('soak arithmetic', () => {
  it('fits a line by least squares; fewer than two distinct x give NaN', () => {
    const f = linearFit([{ x: 0, y: 1 }, { x: 1000, y: 3 }, { x: 2000, y: 5 }])
    assert.ok(Math.abs(f.slope - 0.002) < 1e-12)
    assert.ok(Math.abs(f.intercept - 1) < 1e-9)
    assert.ok(Number.isNaN(linearFit([{ x: 1, y: 1 }]).slope))
    assert.ok(Number.isNaN(linearFit([{ x: 1, y: 1 }, { x: 1, y: 2 }]).slope))
  })

  it('takes the lowest point of each window, from the given start', () => {
    const pts = [0, 1, 2, 3, 4, 5, 6, 7].map((t) => ({ t, y: [9, 5, 7, 8, 3, 6, 4, 2][t] }))
    assert.deepEqual(windowMinima(pts, 2, 3).map((p) => p.t), [4, 7]) // [2,5) → t=4, [5,8) → t=7
  })

  it('reads heap, RSS, loop delay, feed rooms, sockets and major GCs from a node\'s metrics', () => {
    const text = [
      'switchboard_nodejs_heap_size_used_bytes{node="a"} 1000',
      'switchboard_process_resident_memory_bytes{node="a"} 5000',
      'switchboard_nodejs_eventloop_lag_p99_seconds{node="a"} 0.021',
      'switchboard_feed_rooms{node="a"} 3',
      'switchboard_sockets_connected{namespace="/chat",node="a"} 2',
      'switchboard_sockets_connected{namespace="/admin",node="a"} 1',
      'switchboard_nodejs_gc_duration_seconds_count{kind="major",node="a"} 4',
      'switchboard_nodejs_gc_duration_seconds_count{kind="minor",node="a"} 40',
    ].join('\n')
    assert.deepEqual(readNode(text), { heapUsed: 1000, rss: 5000, loopP99: 0.021, feedRooms: 3, sockets: 3, majorGcs: 4 })
  })
})

// The one-minute version of `npm run soak`: behaviour, not speed. Light on purpose (a few cycles
// a second on two nodes): the machine is shared.
describe('soak churn against a two-node cluster (about a minute)', () => {
  let dir: string
  let tc: TestCluster
  let report: SoakReport
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sb-soak-'))
    tc = await startTestCluster(dir, redisPrefix().prefix, { AUTH_DEV_TOKENS: 'false' }, 2)
    const { cluster } = tc
    const running = (id: string) => {
      const n = cluster.nodes.find((x) => x.id === id)!
      return n.proc.child.exitCode === null && n.proc.child.signalCode === null
    }
    report = await runSoak({
      url: cluster.url,
      nodes: cluster.nodes.map((n) => ({ id: n.id, url: n.url })),
      jwtSecret: cluster.jwtSecret,
      durationSec: 40,
      rate: 4,
      concurrency: 8,
      addresses: 8,
      holdMs: 1000,
      sampleSec: 2,
      settleSec: 20,
      alive: running,
      quiet: true,
    })
  })
  after(async () => {
    await tc?.stop()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  it('churned on every node, every cycle answered', () => {
    const c = report.cycles
    assert.ok(c.finished >= 100, `${c.finished} cycles`)
    assert.equal(c.finished, c.started)
    assert.equal(c.failed, 0, JSON.stringify(c.errors))
    assert.ok(c.abrupt > 0 && c.ok > 0)
    assert.equal(report.ops.sends, c.ok)
    assert.equal(report.ops.edits, c.ok)
    assert.ok(report.ops.leaves > 0)
    for (const n of report.nodes) {
      // The gauges moved while the churn ran: a return to baseline below means something.
      assert.ok(n.peak.sockets > n.baseline.sockets, `${n.id}: peak sockets ${n.peak.sockets}`)
      assert.ok(n.peak.feedRooms > n.baseline.feedRooms, `${n.id}: peak feed rooms ${n.peak.feedRooms}`)
      const sampled = report.samples.filter((s) => s.node === n.id && s.t >= 0 && s.t <= report.churnSec).length
      assert.ok(sampled >= 15, `${n.id}: ${sampled} samples during the churn`)
      // Heap troughs count only in windows with a major collection, which a short light run may not have.
      assert.ok(n.windows.total > 0 && n.heapMinima.length === n.windows.withMajorGc && n.peak.heapUsed > 0 && n.peak.rss > 0)
    }
  })

  it('after the churn, every node\'s feed rooms and sockets are back at their baseline', () => {
    for (const n of report.nodes) {
      assert.ok(n.after, `${n.id} answered after the churn`)
      assert.equal(n.after.feedRooms, n.baseline.feedRooms, `${n.id}: switchboard_feed_rooms`)
      assert.equal(n.after.sockets, n.baseline.sockets, `${n.id}: switchboard_sockets_connected`)
      assert.ok(n.settled)
    }
    assert.notEqual(report.settledAfterSec, null)
    assert.match(formatSoak(report), /back at baseline/)
  })

  it('no node crashed: every one still running and ready', async () => {
    for (const n of report.nodes) {
      assert.equal(n.crashed, false, n.id)
      assert.equal(n.scrapeErrors, 0, n.id)
    }
    for (const n of tc.cluster.nodes) {
      assert.equal(n.proc.child.exitCode, null, `${n.id} exited`)
      assert.ok(await answers(`${n.url}/readyz`), `${n.id} ready`)
    }
  })
})
