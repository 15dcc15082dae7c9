import type { StepReport } from '../sockets/run.ts'
import { table } from './report.ts'

// The pure half of `npm run bench -- --rates …` (loadtest/bench.ts): the figures of one
// fixed-rate run, the medians and ratios over the pairs at one rate, and the tables printed.

/** The median of the finite values (NaN if there are none). */
export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((x, y) => x - y)
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN
}

/** x / y to two decimals; NaN when y is 0 or either is not a number. */
export function ratio(x: number, y: number): number {
  return y && Number.isFinite(x) && Number.isFinite(y) ? Math.round((x / y) * 100) / 100 : NaN
}

/**
 * `--rates 100,200,300,400`: distinct positive whole msg/s, returned ascending. Anything else
 * throws one line, "`--rates must be …`", that the CLI prints as it is.
 */
export function parseRates(value: string): number[] {
  const items = value.split(',').map((s) => s.trim())
  const bad = items.find((s) => !/^[1-9]\d*$/.test(s))
  const rates = items.map(Number)
  if (bad !== undefined || new Set(rates).size !== rates.length) {
    const why = bad !== undefined ? `"${bad}" is not one` : 'a rate is repeated'
    throw new Error(`--rates must be a comma-separated list of distinct positive whole numbers of msg/s, e.g. 100,200,300,400 (got "${value}": ${why})`)
  }
  return rates.sort((x, y) => x - y)
}

/** A whole number option ≥ `min`; otherwise one line, "`--<name> must be …`". */
export function wholeOption(name: string, value: string, min: number): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < min) throw new Error(`--${name} must be a whole number ≥ ${min} (got "${value}")`)
  return Number(value)
}

/** What one fixed-rate run measured in its (single) step. CPU is seconds per 100k deliveries. */
export interface FixedRateFigures {
  sent: number
  acked: number
  received: number
  loss: number
  deliveriesPerSec: number
  nodeCpuPer100k: number
  postgresCpuPer100k: number
  redisCpuPer100k: number
  ackP50Ms: number
  ackP99Ms: number
  /** The whole machine's busy share while the step sent, percent. */
  machineBusyPct: number
}

/** CPU seconds of Postgres (all its backends) and Redis over the same step, measured around it. */
export interface InfraCpu {
  /** NaN for the baseline, which uses no Postgres (Switchboard's sits idle beside it). */
  postgresSec: number
  redisSec: number
}

const per100k = (sec: number, received: number) => (received > 0 ? Math.round((sec / received) * 100_000 * 100) / 100 : NaN)

/** The figures of a fixed-rate run's step; NaN where there is nothing to divide by. */
export function figuresOf(s: StepReport, infra: InfraCpu): FixedRateFigures {
  return {
    sent: s.sent,
    acked: s.acked,
    received: s.received,
    loss: s.loss,
    deliveriesPerSec: s.deliveriesPerSec,
    nodeCpuPer100k: s.cpuSecPer100kDeliveries ?? NaN,
    postgresCpuPer100k: per100k(infra.postgresSec, s.received),
    redisCpuPer100k: per100k(infra.redisSec, s.received),
    ackP50Ms: s.ack.p50,
    ackP99Ms: s.ack.p99,
    machineBusyPct: s.machineBusyPct,
  }
}

export interface FixedRatePair {
  run: number
  baseline: FixedRateFigures
  switchboard: FixedRateFigures
}

/** Medians over the pairs; loss is the sum, so that one lossy run shows. */
export type FixedRateSide = Omit<FixedRateFigures, 'sent' | 'acked' | 'received'>

export interface FixedRateRow {
  rate: number
  pairs: number
  baseline: FixedRateSide
  switchboard: FixedRateSide
  /** Switchboard ÷ baseline, of the medians. Node CPU, all server CPU (node + Postgres + Redis), ack p50/p99, deliveries/s. */
  ratio: { nodeCpu: number; serverCpu: number; ackP50: number; ackP99: number; deliveriesPerSec: number }
}

function side(fs: FixedRateFigures[]): FixedRateSide {
  const m = (k: keyof FixedRateFigures) => median(fs.map((f) => f[k]))
  return {
    loss: fs.reduce((s, f) => s + f.loss, 0),
    deliveriesPerSec: m('deliveriesPerSec'),
    nodeCpuPer100k: m('nodeCpuPer100k'),
    postgresCpuPer100k: m('postgresCpuPer100k'),
    redisCpuPer100k: m('redisCpuPer100k'),
    ackP50Ms: m('ackP50Ms'),
    ackP99Ms: m('ackP99Ms'),
    machineBusyPct: m('machineBusyPct'),
  }
}

/** Node + Postgres + Redis, s per 100k; a missing Postgres or Redis figure counts 0 (the baseline has no Postgres of its own). */
const serverCpu = (s: FixedRateSide) => s.nodeCpuPer100k + (Number.isFinite(s.postgresCpuPer100k) ? s.postgresCpuPer100k : 0) + (Number.isFinite(s.redisCpuPer100k) ? s.redisCpuPer100k : 0)

/** One rate's row: both sides' medians over its pairs, and their ratios. */
export function summarizeRate(rate: number, pairs: FixedRatePair[]): FixedRateRow {
  const baseline = side(pairs.map((p) => p.baseline))
  const switchboard = side(pairs.map((p) => p.switchboard))
  return {
    rate,
    pairs: pairs.length,
    baseline,
    switchboard,
    ratio: {
      nodeCpu: ratio(switchboard.nodeCpuPer100k, baseline.nodeCpuPer100k),
      serverCpu: ratio(serverCpu(switchboard), serverCpu(baseline)),
      ackP50: ratio(switchboard.ackP50Ms, baseline.ackP50Ms),
      ackP99: ratio(switchboard.ackP99Ms, baseline.ackP99Ms),
      deliveriesPerSec: ratio(switchboard.deliveriesPerSec, baseline.deliveriesPerSec),
    },
  }
}

/** The two readable tables of the fixed-rate pairs: server CPU per delivery, then acks, deliveries and loss. */
export function formatFixedRate(rows: FixedRateRow[]): string {
  const c = (x: number) => (Number.isFinite(x) ? x : '-')
  const cpu = table(
    ['msg/s', 'pairs', 'node cpu s/100k base', 'sb', 'ratio', 'postgres s/100k base', 'sb', 'redis s/100k base', 'sb', 'node+pg+redis ratio'],
    rows.map((r) => [r.rate, r.pairs, ...[r.baseline.nodeCpuPer100k, r.switchboard.nodeCpuPer100k, r.ratio.nodeCpu, r.baseline.postgresCpuPer100k, r.switchboard.postgresCpuPer100k, r.baseline.redisCpuPer100k, r.switchboard.redisCpuPer100k, r.ratio.serverCpu].map(c)]),
  )
  const ack = table(
    ['msg/s', 'ack p50 ms base', 'sb (durable)', 'ratio', 'ack p99 ms base', 'sb (durable)', 'ratio', 'deliv/s base', 'sb', 'ratio', 'loss base', 'sb', 'machine busy % base', 'sb'],
    rows.map((r) => [r.rate, ...[r.baseline.ackP50Ms, r.switchboard.ackP50Ms, r.ratio.ackP50, r.baseline.ackP99Ms, r.switchboard.ackP99Ms, r.ratio.ackP99, r.baseline.deliveriesPerSec, r.switchboard.deliveriesPerSec, r.ratio.deliveriesPerSec, r.baseline.loss, r.switchboard.loss, r.baseline.machineBusyPct, r.switchboard.machineBusyPct].map(c)]),
  )
  return `fixed-rate pairs, medians over the pairs (loss: the sum), ratio = switchboard ÷ baseline\n\nserver CPU per 100k deliveries:\n${cpu}\n\nacks (baseline: bare; switchboard: durable), deliveries, loss:\n${ack}`
}
