import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { cpus } from 'node:os'
import { startCluster, type RunningCluster } from '../infra/cluster.ts'
import { startRedis } from '../infra/services.ts'
import { withDescendants } from './lib/descendants.ts'
import { pin, pinTree, splitCpus } from './lib/pin.ts'
import { treeCpuSeconds } from './lib/proc.ts'
import { bucketDelta, buckets, quantile, samples, scrape } from './lib/prom.ts'
import { EVENT_LOOP_RESOLUTION_MS } from '../services/chat/src/metrics.ts'
import { fmt, table, writeJson } from './lib/report.ts'
import { formatHttp, loadToken, runHttp, seedRoom, type HttpResult } from './http/run.ts'
import { ackHeldRate, formatReport, runSockets, type SocketLoadReport, type StepReport } from './sockets/run.ts'
import { figuresOf, formatFixedRate, median, parseRates, ratio, summarizeRate, wholeOption, type FixedRateFigures, type FixedRatePair, type FixedRateRow, type InfraCpu } from './lib/fixed-rate.ts'
import { gitInfo } from './lib/git.ts'
import { BENCH_SECRET, benchNodeEnv, compiledLauncher, envOption } from './lib/bench-node.ts'

// `npm run bench`: the same fan-out ramp against a bare Socket.IO cluster (the baseline) and
// against Switchboard — same node count, same nginx, same Redis, same load client — alternating
// A B A B … and reporting medians, ratios and server CPU per delivery. Then durable-ack latency,
// idle connections per node, and the HTTP history endpoint. With --rates, fixed-rate pairs
// replace the ramp (issue 20: the two compared at the same load, rate by rate).

const options = {
  // Fixed-rate pairs instead of the ramp: at each of these msg/s, --runs baseline/Switchboard
  // pairs (default 3), each one measured step of --duration s after --warmup s at that rate.
  rates: { type: 'string' },
  runs: { type: 'string', default: '5' },
  'ack-runs': { type: 'string', default: '3' },
  nodes: { type: 'string', default: '2' },
  clients: { type: 'string', default: '1000' },
  rooms: { type: 'string', default: '10' },
  senders: { type: 'string', default: '10' },
  start: { type: 'string', default: '100' },
  step: { type: 'string', default: '50' },
  'max-rate': { type: 'string', default: '3000' },
  duration: { type: 'string', default: '8' },
  warmup: { type: 'string', default: '4' },
  'p99-bound': { type: 'string', default: '250' },
  // The durable-ack bound of issue 4: each ramp also reports up to which rate its ack p99 stayed within it.
  'ack-bound': { type: 'string', default: '50' },
  // Ramp pairs (--headroom-runs, default 1) that stop at the first step whose ack p99 passes
  // --ack-bound: the durable ack's headroom, without ramping on to the p99 bound.
  'ack-headroom': { type: 'boolean', default: false },
  'headroom-runs': { type: 'string', default: '1' },
  size: { type: 'string', default: '128' },
  workers: { type: 'string', default: '2' },
  connections: { type: 'string', default: '19000' },
  'skip-ramp': { type: 'boolean', default: false },
  // The durable-ack pairs' rate; by default half of Switchboard's highest rate in the ramps.
  // Given with --skip-ramp, the ack pairs run alone.
  'ack-rate': { type: 'string' },
  'skip-connections': { type: 'boolean', default: false },
  'skip-http': { type: 'boolean', default: false },
  // Servers on the first half of the CPUs, load generator on the other half (loadtest/lib/pin.ts).
  pin: { type: 'boolean', default: false },
  // Switchboard's load clients do not announce `auth.batches` (plain `chat:message` only, as a
  // client that is not the SDK).
  'plain-clients': { type: 'boolean', default: false },
  // Switchboard node settings to try, e.g. --env DELIVERY_BATCH_MS=20 (repeatable).
  env: { type: 'string', multiple: true },
  // Switchboard's nodes run the compiled build (`npm run build:server`, as the image does), not tsx.
  compiled: { type: 'boolean', default: false },
  // `npm run bench:quick`: the sizes of QUICK below, for every option not given.
  quick: { type: 'boolean', default: false },
  out: { type: 'string' },
} as const

// `npm run bench:quick`, sized to finish in under 10 minutes on the 2-vCPU host (D180): the
// fixed-rate pairs at 100–400 msg/s and one ack-headroom pair, no connections, no HTTP.
// - Two pairs, not three: a fixed-rate run costs ≈ 6 s besides its step (forking the load
//   workers, connecting and joining 1,000 clients, both drains), so 4 rates × 2 pairs × 2 servers
//   is 16 runs of ≈ 15 s, ≈ 4 min; a third pair would add 2 min.
// - 5 s steps after a 2 s warm-up: at 100 msg/s that is 500 acks and 50,000 deliveries, enough
//   for a p99; the full bench's 8 s + 4 s would take 3 min more.
// - The headroom ramp steps by 100 msg/s (as bench O did) and stops where the ack p99 passes
//   50 ms (300–700 msg/s on the Xeon host), at most at 1,000 msg/s: ≈ 2 min for the pair.
// Measured: 4.7 min in all at 564940d on the 2-vCPU Intel Xeon host (2026-12-01).
const QUICK = {
  rates: '100,200,300,400',
  runs: '2',
  duration: '5',
  warmup: '2',
  step: '100',
  'max-rate': '1000',
  'ack-headroom': true,
  'skip-connections': true,
  'skip-http': true,
} as const

/** The options, checked before anything starts; a bad one throws one line ("`--x must be …`"). */
function readOptions(argv: string[]) {
  const { values, tokens } = parseArgs({ args: argv, options, tokens: true })
  const given = new Set<string>(tokens.flatMap((t) => (t.kind === 'option' ? [t.name] : [])))
  const a: typeof values = { ...values }
  if (a.quick) for (const [k, v] of Object.entries(QUICK)) if (!given.has(k)) Object.assign(a, { [k]: v })
  const rates = a.rates === undefined ? undefined : parseRates(a.rates)
  // The fixed-rate pairs default to 3 (the ramp's to 5).
  if (rates && !given.has('runs') && !a.quick) a.runs = '3'
  for (const k of ['runs', 'ack-runs', 'headroom-runs', 'duration'] as const) wholeOption(k, a[k], 1)
  for (const k of ['warmup', 'ack-bound'] as const) wholeOption(k, a[k], 0)
  return { a, rates, nodeEnv: envOption(a.env) }
}

let parsed: ReturnType<typeof readOptions>
try {
  parsed = readOptions(process.argv.slice(2))
} catch (err) {
  console.error((err as Error).message)
  process.exit(2)
}
const { a, rates, nodeEnv } = parsed
const n = (k: keyof typeof a) => Number(a[k])
/** An ack run; Switchboard's also carries its nodes' own view of it. */
type AckReport = SocketLoadReport & { nodeSide?: { acks: number; ackP50Ms: number; ackP99Ms: number; eventLoopLagP99Ms: number } }
const began = Date.now()

const dir = mkdtempSync(join(tmpdir(), 'sb-bench-'))
chmodSync(dir, 0o755) // the private Postgres runs as the postgres user when we are root
const redis = await startRedis(join(dir, 'redis'))
const secret = BENCH_SECRET
let sb: RunningCluster | undefined
let base: RunningCluster | undefined
const stopAll = async () => {
  await sb?.stop()
  await base?.stop()
  await redis.stop()
  rmSync(dir, { recursive: true, force: true })
}
process.once('SIGINT', () => void stopAll().then(() => process.exit(130)))

try {
  const machine = { cpus: cpus().length, model: cpus()[0]?.model }
  const cpuSets = a.pin ? splitCpus(machine.cpus) : undefined
  console.log(
    `machine: ${machine.cpus} × ${machine.model}; ` +
      (cpuSets
        ? `nginx, nodes, Redis and Postgres pinned to CPU ${cpuSets.server}, the load generator to CPU ${cpuSets.generator}`
        : 'load generator, nginx, nodes, Redis and Postgres all share it'),
  )
  sb = await startCluster({
    nodes: n('nodes'),
    dir: join(dir, 'switchboard'),
    redisUrl: redis.url,
    redisPrefix: 'bench-sb:',
    env: benchNodeEnv(nodeEnv),
    ...(a.compiled ? { launchNode: compiledLauncher() } : {}),
  })
  base = await startCluster({ nodes: n('nodes'), dir: join(dir, 'baseline'), redisUrl: redis.url, redisPrefix: 'bench-base:', nodeScript: 'loadtest/baseline/server.ts' })
  // Everything started so far is a server; the bench and the load workers it forks are the generator.
  const pinServers = () => {
    if (!cpuSets) return
    pinTree(process.pid, cpuSets.server, { exceptRoot: true })
    pin(process.pid, cpuSets.generator)
  }
  pinServers()
  const pidsOf = (c: RunningCluster) => c.nodes.map((x) => x.proc.child.pid!)
  const redisPids = () => withDescendants(redis.proc.child.pid!)
  const postgresPids = () => (sb?.postgres ? withDescendants(sb.postgres.proc.child.pid!) : [])
  const infraPids = () => [...redisPids(), ...postgresPids()]

  const common = {
    batches: !a['plain-clients'],
    clients: n('clients'),
    rooms: n('rooms'),
    senders: n('senders'),
    rate: n('start'),
    step: n('step'),
    maxRate: n('max-rate'),
    durationSec: n('duration'),
    warmupSec: n('warmup'),
    p99BoundMs: n('p99-bound'),
    size: n('size'),
    workers: n('workers'),
  }
  const result: Record<string, unknown> = { startedAt: new Date().toISOString(), ...gitInfo(), options: a, cpus: machine.cpus, cpuModel: machine.model, pinned: cpuSets ?? null }

  // 1. Fan-out ramp, alternating baseline (A) and Switchboard (B).
  const ramps: { baseline: SocketLoadReport[]; switchboard: SocketLoadReport[] } = { baseline: [], switchboard: [] }
  let ackRate: number | undefined
  if (!a['skip-ramp'] && !rates) {
    for (let run = 1; run <= n('runs'); run++) {
      for (const [name, cluster] of [['baseline', base], ['switchboard', sb]] as const) {
        const cpu0 = treeCpuSeconds(infraPids()) // Redis and Postgres with all their backends
        const r = await runSockets({
          ...common,
          scenario: 'ramp',
          url: cluster.url,
          jwtSecret: name === 'switchboard' ? secret : undefined,
          pids: pidsOf(cluster),
          label: `${name} run ${run}`,
        })
        ;(r as SocketLoadReport & { infraCpuSec?: number }).infraCpuSec = Math.round((treeCpuSeconds(infraPids()) - cpu0) * 100) / 100
        console.log(formatReport(r) + '\n')
        ramps[name].push(r)
      }
    }
    // CPU per delivery compared at the highest rate both held in each pair.
    const cpuAt = (r: SocketLoadReport, rate: number) => r.steps.find((s) => s.rate === rate)?.cpuSecPer100kDeliveries ?? NaN
    const pairs = ramps.baseline.map((b, i) => {
      const s = ramps.switchboard[i]
      const rate = Math.min(b.maxGoodRate ?? 0, s.maxGoodRate ?? 0)
      return {
        run: i + 1,
        baselineMax: b.maxGoodRate ?? 0,
        switchboardMax: s.maxGoodRate ?? 0,
        cpuRate: rate,
        baselineCpu: cpuAt(b, rate),
        switchboardCpu: cpuAt(s, rate),
        baselineAckHeld: ackHeldRate(b, n('ack-bound')),
        switchboardAckHeld: ackHeldRate(s, n('ack-bound')),
      }
    })
    const summary = {
      baselineMaxRate: median(pairs.map((p) => p.baselineMax)),
      switchboardMaxRate: median(pairs.map((p) => p.switchboardMax)),
      baselineCpuPer100k: median(pairs.map((p) => p.baselineCpu)),
      switchboardCpuPer100k: median(pairs.map((p) => p.switchboardCpu)),
      // Up to which rate every step's ack p99 stayed within --ack-bound (Switchboard's ack is durable).
      ackBoundMs: n('ack-bound'),
      baselineAckHeldRate: median(pairs.map((p) => p.baselineAckHeld)),
      switchboardAckHeldRate: median(pairs.map((p) => p.switchboardAckHeld)),
    }
    // CPU per delivery falls as the rate rises (fixed per-message costs spread over more
    // deliveries), so also compare rate by rate: every step both measured, held or not.
    const rates = [...new Set(ramps.switchboard.flatMap((r) => r.steps.map((st) => st.rate)))].sort((x, y) => x - y)
    const byRate = rates
      .map((rate) => {
        const b = median(ramps.baseline.map((r) => cpuAt(r, rate)))
        const s = median(ramps.switchboard.map((r) => cpuAt(r, rate)))
        return { rate, baselineCpu: b, switchboardCpu: s, ratio: ratio(s, b) }
      })
      .filter((r) => Number.isFinite(r.baselineCpu) && Number.isFinite(r.switchboardCpu))
    result.ramp = { pairs, summary, cpuByRate: byRate, reports: ramps }
    console.log(
      table(
        ['run', 'baseline max msg/s', 'switchboard max msg/s', 'CPU compared at', 'baseline cpu s/100k', 'switchboard cpu s/100k', `baseline ack p99 ≤ ${n('ack-bound')} ms up to`, `switchboard ack p99 ≤ ${n('ack-bound')} ms up to`],
        pairs.map((p) => [p.run, p.baselineMax, p.switchboardMax, p.cpuRate, p.baselineCpu, p.switchboardCpu, p.baselineAckHeld, p.switchboardAckHeld]),
      ),
    )
    console.log(
      '\n' +
        table(
          ['msg/s', 'baseline cpu s/100k (median)', 'switchboard cpu s/100k (median)', 'ratio'],
          byRate.map((r) => [r.rate, r.baselineCpu, r.switchboardCpu, r.ratio]),
        ),
    )
    console.log(
      `\nmedians: max rate baseline ${summary.baselineMaxRate} vs switchboard ${summary.switchboardMaxRate} msg/s (ratio ${ratio(summary.switchboardMaxRate, summary.baselineMaxRate)}); ` +
        `server CPU per 100k deliveries baseline ${fmt(summary.baselineCpuPer100k)} s vs switchboard ${fmt(summary.switchboardCpuPer100k)} s (ratio ${ratio(summary.switchboardCpuPer100k, summary.baselineCpuPer100k)}); ` +
        `ack p99 ≤ ${summary.ackBoundMs} ms up to baseline ${summary.baselineAckHeldRate} vs switchboard (durable) ${summary.switchboardAckHeldRate} msg/s\n`,
    )

    ackRate = Math.max(n('start'), Math.round(summary.switchboardMaxRate / 2 / 10) * 10)
  }

  // 1'. Fixed-rate pairs (--rates), instead of the ramp: at each rate, baseline (A) and
  // Switchboard (B) alternate, each run one measured step after its own warm-up at that rate.
  // Postgres's and Redis's CPU are read around the measured step, as the nodes' is.
  if (rates) {
    const rows: FixedRateRow[] = []
    const pairsByRate: Record<number, FixedRatePair[]> = {}
    const reports: Record<number, { baseline: SocketLoadReport[]; switchboard: SocketLoadReport[] }> = {}
    for (const rate of rates) {
      const pairs: FixedRatePair[] = []
      reports[rate] = { baseline: [], switchboard: [] }
      for (let run = 1; run <= n('runs'); run++) {
        const figures: Partial<Record<'baseline' | 'switchboard', FixedRateFigures>> = {}
        for (const [name, cluster] of [['baseline', base], ['switchboard', sb]] as const) {
          // The baseline uses no Postgres: Switchboard's, idle beside it, is not its cost.
          const infra: InfraCpu = { postgresSec: NaN, redisSec: NaN }
          let pg0 = 0
          let redis0 = 0
          const r = await runSockets({
            ...common,
            scenario: 'fanout',
            rate,
            url: cluster.url,
            jwtSecret: name === 'switchboard' ? secret : undefined,
            pids: pidsOf(cluster),
            label: `${name} @ ${rate} msg/s, pair ${run}/${n('runs')}`,
            beforeStep: async () => {
              pg0 = treeCpuSeconds(postgresPids())
              redis0 = treeCpuSeconds(redisPids())
            },
            afterStep: async () => {
              infra.redisSec = Math.round((treeCpuSeconds(redisPids()) - redis0) * 100) / 100
              if (name === 'switchboard') infra.postgresSec = Math.round((treeCpuSeconds(postgresPids()) - pg0) * 100) / 100
            },
          })
          ;(r as SocketLoadReport & { infraCpuSec?: InfraCpu }).infraCpuSec = infra
          console.log(formatReport(r) + '\n')
          reports[rate][name].push(r)
          figures[name] = figuresOf(r.steps[0], infra)
        }
        pairs.push({ run, baseline: figures.baseline!, switchboard: figures.switchboard! })
      }
      pairsByRate[rate] = pairs
      const row = summarizeRate(rate, pairs)
      rows.push(row)
      // As each rate is done (the tables come at the end): a run cut short still says this much.
      console.log(
        `@ ${rate} msg/s, median of ${pairs.length}: node cpu s/100k baseline ${fmt(row.baseline.nodeCpuPer100k)} vs switchboard ${fmt(row.switchboard.nodeCpuPer100k)} (ratio ${fmt(row.ratio.nodeCpu)}); ` +
          `ack p99 baseline ${fmt(row.baseline.ackP99Ms)} vs switchboard (durable) ${fmt(row.switchboard.ackP99Ms)} ms; loss ${row.baseline.loss} / ${row.switchboard.loss}\n`,
      )
    }
    result.fixedRate = { rates, runs: n('runs'), durationSec: n('duration'), warmupSec: n('warmup'), rows, pairs: pairsByRate, reports }
    console.log(formatFixedRate(rows) + '\n')
  }

  // 1''. The durable ack's headroom (--ack-headroom): ramp pairs that stop at the first step
  // whose ack p99 passes --ack-bound, and the rate up to which every step held it (ackHeldRate).
  if (a['ack-headroom']) {
    const bound = n('ack-bound')
    const headroom: { run: number; baseline: number; switchboard: number; baselineCapped: boolean; switchboardCapped: boolean }[] = []
    const reports: { baseline: SocketLoadReport[]; switchboard: SocketLoadReport[] } = { baseline: [], switchboard: [] }
    for (let run = 1; run <= n('headroom-runs'); run++) {
      const row = { run, baseline: 0, switchboard: 0, baselineCapped: false, switchboardCapped: false }
      for (const [name, cluster] of [['baseline', base], ['switchboard', sb]] as const) {
        const r = await runSockets({ ...common, scenario: 'ramp', ackBoundMs: bound, url: cluster.url, jwtSecret: name === 'switchboard' ? secret : undefined, pids: pidsOf(cluster), label: `${name} ack headroom (ack p99 ≤ ${bound} ms) run ${run}` })
        console.log(formatReport(r) + '\n')
        reports[name].push(r)
        row[name] = ackHeldRate(r, bound)
        // Every step held: the ramp ran out of rates (--max-rate), so the headroom is at least that.
        row[`${name}Capped`] = r.steps.length > 0 && r.maxGoodRate === r.steps[r.steps.length - 1].rate
      }
      headroom.push(row)
    }
    const summary = { ackBoundMs: bound, baseline: median(headroom.map((h) => h.baseline)), switchboard: median(headroom.map((h) => h.switchboard)) }
    result.ackHeadroom = { ...summary, ratio: ratio(summary.switchboard, summary.baseline), runs: headroom, reports }
    const held = (x: number, capped: boolean) => (capped ? `≥ ${x}` : x)
    console.log(
      table(
        ['run', `baseline (bare ack) p99 ≤ ${bound} ms up to msg/s`, `switchboard (durable ack) p99 ≤ ${bound} ms up to msg/s`],
        [...headroom.map((h) => [h.run, held(h.baseline, h.baselineCapped), held(h.switchboard, h.switchboardCapped)]), ['median', summary.baseline, summary.switchboard]],
      ) + `\nratio switchboard ÷ baseline: ${fmt(ratio(summary.switchboard, summary.baseline))}\n`,
    )
  }

  // 2. Durable-ack latency at half of Switchboard's highest rate (or at --ack-rate).
  if (a['ack-rate']) ackRate = n('ack-rate')
  if (ackRate !== undefined) {
    const ackAt: number = ackRate
    // The baseline's (non-durable) ack at the same rate beside it: what this machine's load alone
    // costs an ack round trip, so a figure from a busy machine can be read against its floor.
    // Switchboard's nodes also say how long they took themselves (event in → ack out, from their
    // own histogram) and how late their event loops ran: what of the figure is the server's.
    const ackRun = async (name: 'baseline' | 'switchboard', c: RunningCluster): Promise<AckReport> => {
      const scrapeAll = () => Promise.all(c.nodes.map((x) => scrape(x.url)))
      // Scraped as the measured step starts: the histogram's counts so far, and the event-loop
      // gauges start over (prom-client resets them on every scrape). Connecting and warm-up are out.
      let before: string[] = []
      const beforeStep = async () => void (before = await scrapeAll())
      const r: AckReport = await runSockets({ ...common, scenario: 'ack', rate: ackAt, durationSec: Math.max(10, n('duration')), url: c.url, jwtSecret: name === 'switchboard' ? secret : undefined, pids: pidsOf(c), label: `${name} ${name === 'switchboard' ? 'durable ' : ''}ack @ ${ackAt} msg/s`, beforeStep: name === 'switchboard' ? beforeStep : undefined })
      if (name === 'switchboard') {
        const after = await scrapeAll()
        const match = { event: 'chat:message', status: 'ok' }
        const d = bucketDelta(buckets(after, 'switchboard_ack_seconds', match), buckets(before, 'switchboard_ack_seconds', match))
        const ms = (x: number) => Math.round(x * 10_000) / 10
        r.nodeSide = {
          acks: d.get(Infinity) ?? 0,
          ackP50Ms: ms(quantile(d, 0.5)),
          ackP99Ms: ms(quantile(d, 0.99)),
          // The gauge includes the 20 ms sampling tick itself: the delay is what is beyond it.
          eventLoopLagP99Ms: Math.max(0, ms(Math.max(...after.flatMap((t) => samples(t, 'switchboard_nodejs_eventloop_lag_p99_seconds').map((x) => x.value)))) - EVENT_LOOP_RESOLUTION_MS),
        }
        console.log(
          `  node side (from the nodes' own histograms, the measured step and its drain): ${r.nodeSide.acks} acks, event → ack p50 ${fmt(r.nodeSide.ackP50Ms)} / p99 ${fmt(r.nodeSide.ackP99Ms)} ms; ` +
            `event-loop delay p99 ${fmt(r.nodeSide.eventLoopLagP99Ms)} ms (worst node)`,
        )
      }
      return r
    }
    // Alternating pairs, medians: one ack run on this machine moves by ±30 %.
    const acks: { baseline: AckReport[]; switchboard: AckReport[] } = { baseline: [], switchboard: [] }
    for (let run = 1; run <= n('ack-runs'); run++) {
      for (const [name, c] of [['baseline', base], ['switchboard', sb]] as const) {
        const r = await ackRun(name, c)
        console.log(formatReport(r) + '\n')
        acks[name].push(r)
      }
    }
    // One figure of each run's (single) step, NaN for a run without one.
    const each = (rs: SocketLoadReport[], of: (s: StepReport) => number) => rs.map((r) => (r.steps[0] ? of(r.steps[0]) : NaN))
    const p99s = (rs: SocketLoadReport[]) => each(rs, (s) => s.ack.p99)
    const perCpu = (rs: SocketLoadReport[]) => (rs[0]?.steps[0]?.cpuBusyPct ?? []).map((_, i) => median(each(rs, (s) => s.cpuBusyPct[i])))
    const ackSummary = {
      rate: ackAt,
      p99: median(p99s(acks.switchboard)),
      p50: median(each(acks.switchboard, (s) => s.ack.p50)),
      baselineP99: median(p99s(acks.baseline)),
      baselineP50: median(each(acks.baseline, (s) => s.ack.p50)),
      // Near 100 %, both figures measure the machine's CPU queue more than either server.
      machineBusyPct: median(each(acks.switchboard, (s) => s.machineBusyPct)),
      baselineMachineBusyPct: median(each(acks.baseline, (s) => s.machineBusyPct)),
      // Each CPU's (with --pin: the servers' and the generator's).
      cpuBusyPct: perCpu(acks.switchboard),
      baselineCpuBusyPct: perCpu(acks.baseline),
      // The load generator's own event-loop delay p99: part of every latency it measured.
      generatorLagP99Ms: median(each(acks.switchboard, (s) => s.generatorLagP99Ms)),
      baselineGeneratorLagP99Ms: median(each(acks.baseline, (s) => s.generatorLagP99Ms)),
      // Switchboard's nodes' own view (bucketed histogram, interpolated).
      nodeAckP50Ms: median(acks.switchboard.map((r) => r.nodeSide?.ackP50Ms ?? NaN)),
      nodeAckP99Ms: median(acks.switchboard.map((r) => r.nodeSide?.ackP99Ms ?? NaN)),
      nodeEventLoopLagP99Ms: median(acks.switchboard.map((r) => r.nodeSide?.eventLoopLagP99Ms ?? NaN)),
    }
    result.ack = { ...ackSummary, runs: acks }
    console.log(
      `ack @ ${ackAt} msg/s, median of ${n('ack-runs')}: switchboard (durable) p50 ${fmt(ackSummary.p50)} / p99 ${fmt(ackSummary.p99)} ms ` +
        `[p99s ${p99s(acks.switchboard).join(', ')}]; baseline (nothing stored) p50 ${fmt(ackSummary.baselineP50)} / p99 ${fmt(ackSummary.baselineP99)} ms [p99s ${p99s(acks.baseline).join(', ')}]; ` +
        `machine busy ${fmt(ackSummary.machineBusyPct)} % / ${fmt(ackSummary.baselineMachineBusyPct)} % (per CPU ${ackSummary.cpuBusyPct.join(' / ')} / ${ackSummary.baselineCpuBusyPct.join(' / ')}); ` +
        `load generator's own event-loop delay p99 ${fmt(ackSummary.generatorLagP99Ms)} / ${fmt(ackSummary.baselineGeneratorLagP99Ms)} ms; ` +
        `switchboard node side: event → ack p50 ${fmt(ackSummary.nodeAckP50Ms)} / p99 ${fmt(ackSummary.nodeAckP99Ms)} ms, event-loop delay p99 ${fmt(ackSummary.nodeEventLoopLagP99Ms)} ms\n`,
    )
  }

  // 3. Idle connections on one node: RSS per connection, baseline vs Switchboard.
  if (!a['skip-connections']) {
    const count = n('connections')
    const conn: Record<string, SocketLoadReport> = {}
    for (const [name, cluster] of [['baseline', base], ['switchboard', sb]] as const) {
      // A fresh process for each: after the ramps a node's heap is grown (or just shrunk) by
      // whatever the ramps left, which moved "RSS before" by 100 MiB between runs.
      await cluster.nodes[0].proc.stop('SIGTERM', 30_000)
      await cluster.restartNode(0)
      pinServers()
      await new Promise((r) => setTimeout(r, 3000))
      const node = cluster.nodes[0]
      conn[name] = await runSockets({
        scenario: 'connections',
        batches: !a['plain-clients'],
        url: node.url,
        clients: count,
        rooms: 1,
        senders: 0,
        rate: 0,
        durationSec: 0,
        size: 0,
        workers: Math.max(2, Math.ceil(count / 6000)),
        addresses: 100,
        jwtSecret: name === 'switchboard' ? secret : undefined,
        pids: [node.proc.child.pid!],
        label: `${name}: ${count} idle connections on one node`,
      })
      console.log(formatReport(conn[name]) + '\n')
    }
    const per = (r: SocketLoadReport) => r.connections?.rssPerConnectionBytes ?? NaN
    result.connections = { baseline: conn.baseline, switchboard: conn.switchboard, ratio: ratio(per(conn.switchboard), per(conn.baseline)) }
    console.log(`RSS per connection: baseline ${fmt(per(conn.baseline) / 1024)} KiB, switchboard ${fmt(per(conn.switchboard) / 1024)} KiB (ratio ${ratio(per(conn.switchboard), per(conn.baseline))})\n`)
  }

  // 4. HTTP: history endpoint with real data on one node, beside a bare Fastify route.
  if (!a['skip-http']) {
    const token = await loadToken(secret)
    const node = sb.nodes[0].url
    await seedRoom(node, token, 'bench-history', 200)
    const http: HttpResult[] = [
      await runHttp({ label: 'switchboard GET /api/rooms/:id/messages (latest 50)', url: `${node}/api/rooms/bench-history/messages?limit=50`, headers: { authorization: `Bearer ${token}` } }),
      await runHttp({ label: 'switchboard GET /api/rooms/:id/messages?before=100 (50)', url: `${node}/api/rooms/bench-history/messages?before=100&limit=50`, headers: { authorization: `Bearer ${token}` } }),
      await runHttp({ label: 'switchboard GET /healthz', url: `${node}/healthz` }),
      await runHttp({ label: 'bare Fastify static 50 messages', url: `${base.nodes[0].url}/static-history` }),
      await runHttp({ label: 'bare Fastify /healthz', url: `${base.nodes[0].url}/healthz` }),
    ]
    console.log(formatHttp(http) + '\n')
    result.http = http
  }

  const out = a.out ?? `loadtest/results/bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`
  result.elapsedSec = Math.round((Date.now() - began) / 1000)
  writeJson(out, result)
  writeJson('loadtest/results/bench-latest.json', result) // creates the folder (a fresh clone with --out has none)
  console.log(`report: ${out} (took ${fmt(Number(result.elapsedSec) / 60)} min)`)
} finally {
  await stopAll()
}
