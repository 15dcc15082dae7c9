import { fork, type ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { SignJWT } from 'jose'
import { decode, merge, summarize, type LatencySummary } from '../lib/histogram.ts'
import { machineBusyPct, machineCpuTicks, rssBytes, totalCpu } from '../lib/proc.ts'
import { fmt, latencySvg, table, writeJson } from '../lib/report.ts'
import type { ClientSpec, StepResult, WorkerMsg } from './protocol.ts'

export type Scenario = 'fanout' | 'ack' | 'ramp' | 'connections'

export interface SocketLoadOptions {
  scenario: Scenario
  url: string
  namespace?: string
  clients: number
  rooms: number
  senders: number
  /** Offered messages per second (all senders together); the first rate of a ramp. */
  rate: number
  /** Ramp: add this much per step, up to maxRate. */
  step?: number
  maxRate?: number
  /** Ramp: a step holds when p99 <= this (ms) and nothing is lost. */
  p99BoundMs?: number
  /** Ramp: a step also holds only if its ack p99 <= this (ms): the durable ack's headroom, which stops far below the p99 bound. */
  ackBoundMs?: number
  durationSec: number
  /** A discarded first step at the starting rate (JIT, caches, connection pools warm up). */
  warmupSec?: number
  /** After each step's sending window, how long late deliveries still count for it (default 2 s). */
  drainSec?: number
  size: number
  /** Share of clients on long-polling (0..1). */
  pollingShare?: number
  /** Distinct source addresses 127.0.X.1 to spread clients over. */
  addresses?: number
  workers?: number
  /** Sign HS256 tokens with this secret (Switchboard); without it clients send no token (baseline). */
  jwtSecret?: string
  /** Server processes to measure: CPU seconds per step, RSS for `connections`. */
  pids?: number[]
  ackTimeoutMs?: number
  /** Switchboard's clients take `chat:messages` frames, as the SDK's do (default true; the baseline never sends them). */
  batches?: boolean
  /** Called just before each measured step starts sending (after connecting and warming up). */
  beforeStep?: (rate: number) => Promise<void>
  /** Called as soon as a measured step's results are in (after its drain, before the next step or the disconnect). */
  afterStep?: (step: StepReport) => Promise<void>
  /**
   * Client `i`'s room, source address and whether it sends, instead of the default round-robin
   * (`npm run bench:scale` places each room's members on chosen nodes this way). `clients` still
   * gives the count; `rooms` is then only reported.
   */
  placement?: (i: number) => { room: string; octet: number; sender: boolean }
  label?: string
  quiet?: boolean
}

export interface StepReport {
  rate: number
  durationSec: number
  sent: number
  acked: number
  /** Acked messages per room. */
  ackedByRoom: Record<string, number>
  ackErrors: Record<string, number>
  expected: number
  received: number
  loss: number
  deliveriesPerSec: number
  latency: LatencySummary
  ack: LatencySummary
  serverCpuSec?: number
  cpuSecPer100kDeliveries?: number
  /**
   * How busy the whole machine was while the step sent (all cores, every process: load
   * generator, nginx, nodes, Redis, Postgres), in percent. Near 100, latency measures CPU
   * queueing more than any one process.
   */
  machineBusyPct: number
  /** The same for each CPU (cpu0, cpu1, …): with `npm run bench -- --pin`, the servers' and the load generator's own. */
  cpuBusyPct: number[]
  /**
   * The load generator's own event-loop delay p99 over the sending window (ms), the worst of
   * its workers: a floor under every latency it measured in this step.
   */
  generatorLagP99Ms: number
  timeline: { t: number; deliveries: number; p50: number; p99: number }[]
}

export interface SocketLoadReport {
  scenario: Scenario
  label?: string
  url: string
  startedAt: string
  clients: { requested: number; connected: number; failed: number; errors: Record<string, number> }
  rooms: number
  roomSize: number
  senders: number
  size: number
  steps: StepReport[]
  /** Ramp: the highest offered rate that held (p99 within bound, zero loss). */
  maxGoodRate?: number
  connections?: { rssBeforeBytes: number; rssAfterBytes: number; rssPerConnectionBytes: number }
}

const workerPath = fileURLToPath(new URL('./worker.ts', import.meta.url))

/** Runs one load scenario against `url` and returns its report. */
export async function runSockets(o: SocketLoadOptions): Promise<SocketLoadReport> {
  const workers = o.workers ?? 2
  const addresses = o.addresses ?? 50
  const runId = Math.random().toString(36).slice(2, 8)
  const log = (s: string) => !o.quiet && process.stderr.write(s)

  // Clients round-robin over rooms; senders spread over rooms; polling clients first.
  const polling = Math.floor(o.clients * (o.pollingShare ?? 0))
  const secret = o.jwtSecret ? new TextEncoder().encode(o.jwtSecret) : undefined
  const specs: ClientSpec[] = []
  for (let i = 0; i < o.clients; i++) {
    const room = o.scenario === 'connections' ? null : `lt-${runId}-${i % o.rooms}`
    const token = secret
      ? await new SignJWT({ name: `load ${i}` }).setProtectedHeader({ alg: 'HS256' }).setSubject(`lt-${runId}-${i}`).setExpirationTime('2h').sign(secret)
      : undefined
    const placed = o.placement?.(i)
    specs.push({
      id: i,
      octet: placed?.octet ?? 1 + (i % addresses),
      room: placed?.room ?? room,
      token,
      transport: i < polling ? 'polling' : 'websocket',
      sender: placed?.sender ?? (o.scenario !== 'connections' && i < o.senders),
    })
  }

  const rssBefore = o.pids?.reduce((s, p) => s + rssBytes(p), 0) ?? 0
  const specsOf = (w: number) => specs.filter((_, i) => i % workers === w)
  const procs: ChildProcess[] = Array.from({ length: workers }, () =>
    fork(workerPath, [], { execArgv: ['--import', 'tsx', '--max-old-space-size=4096'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
  )
  const progress = new Map<ChildProcess, { connected: number; failed: number; sent: number; received: number }>()
  const waitAll = <T extends WorkerMsg['type']>(type: T) =>
    Promise.all(
      procs.map(
        (p) =>
          new Promise<Extract<WorkerMsg, { type: T }>>((resolve, reject) => {
            // Both listeners go once this step is settled: a ramp waits on every worker many times.
            const done = () => {
              p.off('message', on)
              p.off('exit', exited)
            }
            const on = (m: WorkerMsg) => {
              if (m.type === 'progress') progress.set(p, m)
              else if (m.type === 'error') {
                done()
                reject(new Error(m.message))
              } else if (m.type === type) {
                done()
                resolve(m as Extract<WorkerMsg, { type: T }>)
              }
            }
            const exited = (code: number | null) => {
              done()
              reject(new Error(`load worker exited (${code})`))
            }
            p.on('message', on)
            p.once('exit', exited)
          }),
      ),
    )
  const ticker = setInterval(() => {
    const sum = [...progress.values()].reduce((a, b) => ({ connected: a.connected + b.connected, failed: a.failed + b.failed, sent: a.sent + b.sent, received: a.received + b.received }), { connected: 0, failed: 0, sent: 0, received: 0 })
    if (process.stderr.isTTY) log(`\r  connected ${fmt(sum.connected)}/${fmt(o.clients)}  failed ${sum.failed}  sent ${fmt(sum.sent)}  received ${fmt(sum.received)}      `)
  }, 500)

  try {
    log(`${o.label ?? o.scenario}: connecting ${o.clients} clients through ${o.url} from ${new Set(specs.map((x) => x.octet)).size} source addresses …\n`)
    const ready = waitAll('ready')
    procs.forEach((p, w) =>
      p.send({ type: 'setup', url: o.url, namespace: o.namespace ?? '/chat', clients: specsOf(w), size: o.size, ackTimeoutMs: o.ackTimeoutMs ?? 10_000, connectConcurrency: 100, batches: o.batches ?? true }),
    )
    const readies = await ready
    const connected = readies.reduce((s, r) => s + r.connected, 0)
    const failed = readies.reduce((s, r) => s + r.failed, 0)
    const errors: Record<string, number> = {}
    const joined: Record<string, number> = {}
    for (const r of readies) {
      for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v
      for (const [k, v] of Object.entries(r.joined)) joined[k] = (joined[k] ?? 0) + v
    }
    const report: SocketLoadReport = {
      scenario: o.scenario,
      label: o.label,
      url: o.url,
      startedAt: new Date().toISOString(),
      clients: { requested: o.clients, connected, failed, errors },
      rooms: o.rooms,
      roomSize: Math.round(o.clients / o.rooms),
      senders: o.senders,
      size: o.size,
      steps: [],
    }
    if (o.scenario === 'connections') {
      await new Promise((r) => setTimeout(r, 2000)) // let the server settle
      const rssAfter = o.pids?.reduce((s, p) => s + rssBytes(p), 0) ?? 0
      report.connections = { rssBeforeBytes: rssBefore, rssAfterBytes: rssAfter, rssPerConnectionBytes: connected > 0 ? Math.round((rssAfter - rssBefore) / connected) : 0 }
      return report
    }

    // Senders per worker, to split the offered rate evenly across all senders.
    const sendersOf = procs.map((_, w) => specsOf(w).filter((s) => s.sender).length)
    const totalSenders = sendersOf.reduce((a, b) => a + b, 0)
    const rates = o.scenario === 'ramp' ? rampRates(o) : [o.rate]
    if (o.warmupSec) {
      log(`${o.label ?? o.scenario}: warming up at ${rates[0]} msg/s for ${o.warmupSec} s …\n`)
      const warm = waitAll('result')
      procs.forEach((p) => p.send({ type: 'run', step: -1, ratePerSender: totalSenders ? rates[0] / totalSenders : 0, durationMs: o.warmupSec! * 1000, drainMs: 1000 }))
      await warm
    }
    for (const [step, rate] of rates.entries()) {
      log(`${o.label ?? o.scenario}: step ${step + 1}/${rates.length}: ${rate} msg/s for ${o.durationSec} s …\n`)
      await o.beforeStep?.(rate)
      const cpu0 = o.pids ? totalCpu(o.pids) : 0
      // Over the sending window only (the drain after it is mostly idle).
      const machine0 = machineCpuTicks()
      let machineBusy: number[] | undefined
      const sampleMachine = setTimeout(() => (machineBusy = machineBusyPct(machine0)), o.durationSec * 1000)
      const results = waitAll('result')
      procs.forEach((p) =>
        p.send({ type: 'run', step, ratePerSender: totalSenders ? rate / totalSenders : 0, durationMs: o.durationSec * 1000, drainMs: (o.drainSec ?? 2) * 1000 }),
      )
      const stepResults = (await results).map((r) => r.result)
      clearTimeout(sampleMachine)
      machineBusy ??= machineBusyPct(machine0)
      const cpu = o.pids ? totalCpu(o.pids) - cpu0 : undefined
      const s = stepReport(rate, o.durationSec, stepResults, joined, machineBusy, cpu)
      report.steps.push(s)
      await o.afterStep?.(s)
      log(`  → ${fmt(s.deliveriesPerSec)} deliveries/s, p99 ${s.latency.p99} ms, loss ${s.loss}, ack p99 ${s.ack.p99} ms, machine ${s.machineBusyPct} % busy (per CPU ${s.cpuBusyPct.join(' / ')}), generator lag p99 ${s.generatorLagP99Ms} ms\n`)
      if (o.scenario === 'ramp') {
        if (stepHolds(s, o)) report.maxGoodRate = rate
        else break
      }
    }
    return report
  } finally {
    clearInterval(ticker)
    if (process.stderr.isTTY) log('\n')
    for (const p of procs) {
      if (p.connected) p.send({ type: 'stop' })
    }
    await Promise.all(procs.map((p) => (p.exitCode !== null ? null : new Promise((r) => p.once('exit', r)))))
  }
}

/**
 * Whether a ramp step held: nothing lost, every send acked, delivery p99 within `p99BoundMs`
 * (default 250) and, given `ackBoundMs`, the ack p99 within that too.
 */
export function stepHolds(s: StepReport, o: Pick<SocketLoadOptions, 'p99BoundMs' | 'ackBoundMs'>): boolean {
  return s.loss === 0 && s.acked === s.sent && s.latency.p99 <= (o.p99BoundMs ?? 250) && (o.ackBoundMs === undefined || s.ack.p99 <= o.ackBoundMs)
}

/**
 * The highest rate of a ramp up to which every step also kept its ack p99 within `boundMs`
 * (and held: no loss, every send acked); 0 if the first step did not. Contiguous from the
 * start, like the ramp's own bound: a step over it ends the count.
 */
export function ackHeldRate(r: SocketLoadReport, boundMs: number): number {
  let held = 0
  for (const s of r.steps) {
    if (s.loss !== 0 || s.acked !== s.sent || !(s.ack.p99 <= boundMs)) break
    held = s.rate
  }
  return held
}

function rampRates(o: SocketLoadOptions): number[] {
  const out: number[] = []
  for (let r = o.rate; r <= (o.maxRate ?? o.rate * 10); r += o.step ?? o.rate) out.push(r)
  return out
}

function stepReport(rate: number, durationSec: number, results: StepResult[], joined: Record<string, number>, machineBusy: number[], cpu?: number): StepReport {
  const sent = results.reduce((s, r) => s + r.sent, 0)
  const acked = results.reduce((s, r) => s + r.acked, 0)
  const received = results.reduce((s, r) => s + r.received, 0)
  const ackErrors: Record<string, number> = {}
  for (const r of results) for (const [k, v] of Object.entries(r.ackErrors)) ackErrors[k] = (ackErrors[k] ?? 0) + v
  const ackedByRoom: Record<string, number> = {}
  for (const r of results) for (const [k, v] of Object.entries(r.ackedByRoom)) ackedByRoom[k] = (ackedByRoom[k] ?? 0) + v
  // Each acked message is owed to every member of its room who joined, the sender included.
  let expected = 0
  for (const r of results) for (const [room, n] of Object.entries(r.ackedByRoom)) expected += n * (joined[room] ?? 0)
  const seconds = Math.max(...results.map((r) => r.perSecond.length), 0)
  const timeline = Array.from({ length: seconds }, (_, t) => {
    const hs = results.map((r) => r.perSecond[t]).filter(Boolean)
    const m = summarize(merge(hs.map((h) => decode(h.latency))))
    return { t, deliveries: hs.reduce((s, h) => s + h.deliveries, 0), p50: m.p50, p99: m.p99 }
  })
  return {
    rate,
    durationSec,
    sent,
    acked,
    ackedByRoom,
    ackErrors,
    expected,
    received,
    loss: Math.max(0, expected - received),
    deliveriesPerSec: Math.round(received / durationSec),
    latency: summarize(merge(results.map((r) => decode(r.latency)))),
    ack: summarize(merge(results.map((r) => decode(r.ack)))),
    serverCpuSec: cpu === undefined ? undefined : Math.round(cpu * 100) / 100,
    cpuSecPer100kDeliveries: cpu === undefined || received === 0 ? undefined : Math.round((cpu / received) * 100_000 * 100) / 100,
    machineBusyPct: machineBusy[0],
    cpuBusyPct: machineBusy.slice(1),
    generatorLagP99Ms: Math.max(...results.map((r) => r.loopDelayMs.p99)),
    timeline,
  }
}

/** The readable table of a report. */
export function formatReport(r: SocketLoadReport): string {
  const head = `${r.label ?? r.scenario} — ${r.url} — ${r.clients.connected}/${r.clients.requested} clients (${r.clients.failed} failed), ${r.rooms} rooms of ~${r.roomSize}, ${r.senders} senders, ${r.size} B`
  if (r.connections) {
    return `${head}\n${table(['connections', 'RSS before', 'RSS after', 'RSS per connection'], [[r.clients.connected, `${fmt(r.connections.rssBeforeBytes / 1048576)} MiB`, `${fmt(r.connections.rssAfterBytes / 1048576)} MiB`, `${fmt(r.connections.rssPerConnectionBytes / 1024)} KiB`]])}`
  }
  const rows = r.steps.map((s) => [
    s.rate,
    s.sent,
    s.acked,
    s.expected,
    s.received,
    s.loss,
    s.deliveriesPerSec,
    s.latency.p50,
    s.latency.p95,
    s.latency.p99,
    s.latency.max,
    s.ack.p50,
    s.ack.p99,
    s.cpuSecPer100kDeliveries ?? '-',
    s.machineBusyPct,
    s.cpuBusyPct.join(' / '),
    s.generatorLagP99Ms,
  ])
  const t = table(['msg/s', 'sent', 'acked', 'expected', 'received', 'loss', 'deliv/s', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'ack p50', 'ack p99', 'cpu s/100k', 'machine busy %', 'per CPU %', 'generator lag p99 ms'], rows)
  const errors = r.steps.flatMap((s) => Object.entries(s.ackErrors).map(([k, v]) => `${s.rate} msg/s: ${v} × ${k}`))
  return [head, t, r.maxGoodRate !== undefined ? `highest rate that held: ${r.maxGoodRate} msg/s` : '', errors.length ? `ack errors: ${errors.join('; ')}` : '']
    .filter(Boolean)
    .join('\n')
}

// CLI: npm run loadtest:sockets -- --scenario fanout --url http://127.0.0.1:8080 …
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values: a } = parseArgs({
    options: {
      scenario: { type: 'string', default: 'fanout' },
      url: { type: 'string', default: 'http://127.0.0.1:3000' },
      clients: { type: 'string', default: '1000' },
      rooms: { type: 'string', default: '10' },
      senders: { type: 'string', default: '10' },
      rate: { type: 'string', default: '100' },
      step: { type: 'string' },
      'max-rate': { type: 'string' },
      'p99-bound': { type: 'string', default: '250' },
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '0' },
      drain: { type: 'string', default: '2' },
      size: { type: 'string', default: '128' },
      polling: { type: 'string', default: '0' },
      addresses: { type: 'string', default: '50' },
      workers: { type: 'string', default: '2' },
      'jwt-secret': { type: 'string', default: process.env.JWT_SECRET },
      pids: { type: 'string' },
      out: { type: 'string' },
      svg: { type: 'string' },
      label: { type: 'string' },
    },
  })
  const report = await runSockets({
    scenario: a.scenario as Scenario,
    url: a.url!,
    clients: Number(a.clients),
    rooms: Number(a.rooms),
    senders: Number(a.senders),
    rate: Number(a.rate),
    step: a.step ? Number(a.step) : undefined,
    maxRate: a['max-rate'] ? Number(a['max-rate']) : undefined,
    p99BoundMs: Number(a['p99-bound']),
    durationSec: Number(a.duration),
    warmupSec: Number(a.warmup),
    drainSec: Number(a.drain),
    size: Number(a.size),
    pollingShare: Number(a.polling),
    addresses: Number(a.addresses),
    workers: Number(a.workers),
    jwtSecret: a['jwt-secret'] || undefined,
    pids: a.pids ? a.pids.split(',').map(Number) : undefined,
    label: a.label,
  })
  console.log(formatReport(report))
  const out = a.out ?? `loadtest/results/${report.scenario}-${report.startedAt.replace(/[:.]/g, '-')}.json`
  writeJson(out, report)
  console.log(`report: ${out}`)
  const last = report.steps[report.steps.length - 1]
  if (a.svg && last) {
    writeFileSync(a.svg, latencySvg(`${report.label ?? report.scenario} @ ${last.rate} msg/s`, last.timeline))
    console.log(`chart: ${a.svg}`)
  }
  process.exit(0)
}
