import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { figuresOf, formatFixedRate, median, parseRates, ratio, summarizeRate, wholeOption, type FixedRateFigures } from '../lib/fixed-rate.ts'
import { stepHolds, type StepReport } from '../sockets/run.ts'
import { benchNodeEnv, envOption } from '../lib/bench-node.ts'

const root = fileURLToPath(new URL('../..', import.meta.url))

describe('npm run bench -- --rates', () => {
  it('parses a list of distinct positive whole msg/s, ascending', () => {
    assert.deepEqual(parseRates('100,200,300,400'), [100, 200, 300, 400])
    assert.deepEqual(parseRates('400, 100,250'), [100, 250, 400])
    assert.deepEqual(parseRates('50'), [50])
  })

  it('refuses anything else with one "--rates must be …" line', () => {
    for (const bad of ['100,abc', '', '100,', '0,100', '-100', '100.5', '1e3', '100,100', '0x10']) {
      assert.throws(
        () => parseRates(bad),
        (err: Error) => err.message.startsWith('--rates must be ') && !err.message.includes('\n') && err.message.includes(`"${bad}"`),
        bad,
      )
    }
  })

  it('checks the counts and durations as whole numbers with their names', () => {
    assert.equal(wholeOption('runs', '3', 1), 3)
    assert.equal(wholeOption('warmup', '0', 0), 0)
    assert.throws(() => wholeOption('runs', '0', 1), /^Error: --runs must be a whole number ≥ 1 \(got "0"\)$/)
    assert.throws(() => wholeOption('duration', 'x', 1), /^Error: --duration must be /)
  })

  it('stops the CLI with that one line and starts nothing', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'loadtest/bench.ts', '--rates', '100,abc'], { cwd: root, encoding: 'utf8', timeout: 60_000 })
    assert.equal(r.status, 2, r.stderr)
    assert.equal(r.stdout, '', 'no machine line: nothing started')
    assert.match(r.stderr, /^--rates must be a comma-separated list of distinct positive whole numbers of msg\/s, e\.g\. 100,200,300,400 \(got "100,abc": "abc" is not one\)\n$/)
  })
})

describe('the fixed-rate report', () => {
  const step = (extra: Partial<StepReport>): StepReport =>
    ({ rate: 100, sent: 1000, acked: 1000, received: 100_000, loss: 0, deliveriesPerSec: 20_000, cpuSecPer100kDeliveries: 2, ack: { p50: 5, p99: 40 }, machineBusyPct: 60, ...extra }) as StepReport

  it('figuresOf: Postgres and Redis CPU per 100k deliveries of the same step; NaN for none', () => {
    const f = figuresOf(step({ received: 50_000 }), { postgresSec: 0.25, redisSec: 0.05 })
    assert.deepEqual(f, {
      sent: 1000,
      acked: 1000,
      received: 50_000,
      loss: 0,
      deliveriesPerSec: 20_000,
      nodeCpuPer100k: 2,
      postgresCpuPer100k: 0.5,
      redisCpuPer100k: 0.1,
      ackP50Ms: 5,
      ackP99Ms: 40,
      machineBusyPct: 60,
    })
    const none = figuresOf(step({ received: 0, cpuSecPer100kDeliveries: undefined }), { postgresSec: NaN, redisSec: 0.1 })
    assert.ok(Number.isNaN(none.nodeCpuPer100k) && Number.isNaN(none.postgresCpuPer100k) && Number.isNaN(none.redisCpuPer100k))
  })

  it('median and ratio: even counts average the middle two, non-numbers are left out, x ÷ 0 is NaN', () => {
    assert.equal(median([3, 1, 2]), 2)
    assert.equal(median([4, 1, 3, 2]), 2.5)
    assert.equal(median([NaN, 5, Infinity]), 5)
    assert.ok(Number.isNaN(median([])))
    assert.equal(ratio(3, 2), 1.5)
    assert.equal(ratio(1, 3), 0.33)
    assert.ok(Number.isNaN(ratio(1, 0)) && Number.isNaN(ratio(NaN, 1)))
  })

  it('summarizeRate: medians of each side over the pairs, loss summed, ratios switchboard ÷ baseline', () => {
    const f = (o: Partial<FixedRateFigures>): FixedRateFigures => ({ sent: 1000, acked: 1000, received: 100_000, loss: 0, deliveriesPerSec: 10_000, nodeCpuPer100k: 2, postgresCpuPer100k: NaN, redisCpuPer100k: 0.1, ackP50Ms: 5, ackP99Ms: 20, machineBusyPct: 50, ...o })
    const row = summarizeRate(200, [
      { run: 1, baseline: f({ nodeCpuPer100k: 2, ackP99Ms: 20 }), switchboard: f({ nodeCpuPer100k: 3, postgresCpuPer100k: 0.4, ackP99Ms: 30, loss: 2 }) },
      { run: 2, baseline: f({ nodeCpuPer100k: 1.8, ackP99Ms: 40 }), switchboard: f({ nodeCpuPer100k: 2.4, postgresCpuPer100k: 0.6, ackP99Ms: 70 }) },
      { run: 3, baseline: f({ nodeCpuPer100k: 2.2, ackP99Ms: 30 }), switchboard: f({ nodeCpuPer100k: 2.7, postgresCpuPer100k: 0.5, ackP99Ms: 45, loss: 1 }) },
    ])
    assert.deepEqual(Object.keys(row), ['rate', 'pairs', 'baseline', 'switchboard', 'ratio'])
    assert.equal(row.rate, 200)
    assert.equal(row.pairs, 3)
    assert.equal(row.baseline.nodeCpuPer100k, 2)
    assert.equal(row.switchboard.nodeCpuPer100k, 2.7)
    assert.equal(row.switchboard.postgresCpuPer100k, 0.5)
    assert.ok(Number.isNaN(row.baseline.postgresCpuPer100k), 'the baseline has no Postgres')
    assert.equal(row.baseline.loss, 0)
    assert.equal(row.switchboard.loss, 3, 'one lossy run is not hidden by a median')
    assert.deepEqual(row.ratio, {
      nodeCpu: 1.35, // 2.7 / 2
      serverCpu: 1.57, // (2.7 + 0.5 + 0.1) / (2 + 0.1)
      ackP50: 1,
      ackP99: 1.5, // 45 / 30
      deliveriesPerSec: 1,
    })
  })

  it('formatFixedRate: one line per rate in each of its two tables, "-" for what was not measured', () => {
    const f = (o: Partial<FixedRateFigures>): FixedRateFigures => ({ sent: 1, acked: 1, received: 1, loss: 0, deliveriesPerSec: 10_000, nodeCpuPer100k: 2, postgresCpuPer100k: NaN, redisCpuPer100k: 0.1, ackP50Ms: 5, ackP99Ms: 20, machineBusyPct: 50, ...o })
    const rows = [100, 200].map((rate) => summarizeRate(rate, [{ run: 1, baseline: f({}), switchboard: f({ nodeCpuPer100k: 3, postgresCpuPer100k: 0.4 }) }]))
    const out = formatFixedRate(rows)
    const lines = out.split('\n')
    const cpuHeader = lines.findIndex((l) => l.startsWith('msg/s  pairs  node cpu s/100k base'))
    const ackHeader = lines.findIndex((l) => l.startsWith('msg/s  ack p50 ms base'))
    assert.ok(cpuHeader > 0 && ackHeader > cpuHeader, out)
    for (const at of [cpuHeader, ackHeader]) {
      assert.match(lines[at + 2], /^ *100 /)
      assert.match(lines[at + 3], /^ *200 /)
    }
    const cells = lines[cpuHeader + 2].trim().split(/\s+/)
    assert.deepEqual(cells, ['100', '1', '2', '3', '1.50', '-', '0.40', '0.10', '0.10', '1.67'])
  })
})

describe('the ack-headroom ramp (--ack-headroom)', () => {
  const step = (extra: Partial<StepReport>): StepReport => ({ rate: 100, sent: 10, acked: 10, loss: 0, latency: { p99: 100 }, ack: { p99: 40 }, ...extra }) as StepReport

  it('a step holds only while its ack p99 is within --ack-bound, besides the p99 bound and no loss', () => {
    assert.equal(stepHolds(step({ ack: { p99: 400 } as StepReport['ack'] }), {}), true, 'without an ack bound the ack does not matter')
    assert.equal(stepHolds(step({}), { ackBoundMs: 50 }), true)
    assert.equal(stepHolds(step({ ack: { p99: 50 } as StepReport['ack'] }), { ackBoundMs: 50 }), true, 'the bound itself holds')
    assert.equal(stepHolds(step({ ack: { p99: 50.1 } as StepReport['ack'] }), { ackBoundMs: 50 }), false)
    assert.equal(stepHolds(step({ ack: { p99: NaN } as StepReport['ack'] }), { ackBoundMs: 50 }), false, 'no ack figure is not within it')
    assert.equal(stepHolds(step({ latency: { p99: 251 } as StepReport['latency'] }), { ackBoundMs: 50 }), false, 'the delivery bound still applies (default 250 ms)')
    assert.equal(stepHolds(step({ loss: 1 }), { ackBoundMs: 50 }), false)
    assert.equal(stepHolds(step({ acked: 9 }), { ackBoundMs: 50 }), false)
  })
})

describe('--env (npm run bench, bench:profile): node settings to try', () => {
  it('turns NAME=value options into an environment, values kept whole (an "=" in them too)', () => {
    assert.deepEqual(envOption(['DELIVERY_BATCH_MS=20', 'NODE_OPTIONS=--max-semi-space-size=32']), { DELIVERY_BATCH_MS: '20', NODE_OPTIONS: '--max-semi-space-size=32' })
    assert.deepEqual(envOption(undefined), {})
    assert.deepEqual(benchNodeEnv({ DELIVERY_BATCH_MS: '0', LOG_LEVEL: 'info' }).DELIVERY_BATCH_MS, '0')
    assert.equal(benchNodeEnv({ LOG_LEVEL: 'info' }).LOG_LEVEL, 'info', 'a setting tried wins over the default')
  })

  it('refuses anything else with one "--env must be …" line, before anything starts', () => {
    for (const bad of ['delivery=1', 'NOEQUALS', '=1']) assert.throws(() => envOption([bad]), new RegExp(`^Error: --env must be NAME=value \\(got "${bad}"\\)$`))
    for (const script of ['loadtest/bench.ts', 'loadtest/profile.ts']) {
      const r = spawnSync(process.execPath, ['--import', 'tsx', script, '--env', 'lower=1'], { cwd: root, encoding: 'utf8' })
      assert.equal(r.status, 2, script)
      assert.equal(r.stderr.trim(), '--env must be NAME=value (got "lower=1")', script)
    }
  })
})
