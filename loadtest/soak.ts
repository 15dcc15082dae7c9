import { resolve, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { SignJWT } from 'jose'
import { io, type Socket } from 'socket.io-client'
import { startCluster, type RunningCluster } from '../infra/cluster.ts'
import { stopAll } from '../infra/processes.ts'
import { EVENT_LOOP_RESOLUTION_MS } from '../services/chat/src/metrics.ts'
import { linearFit, windowMinima } from './lib/fit.ts'
import { samples, scrape } from './lib/prom.ts'
import { fmt, table, writeJson } from './lib/report.ts'

// `npm run soak -- --minutes N`: connect / join / send / edit / leave / disconnect churn against a
// cluster at a bounded rate, each node's heap, RSS, event-loop delay and feed rooms sampled every
// few seconds; reports the bytes each node retains per 1,000 cycles (D113) and whether the
// cluster's gauges return to their baseline once the churn stops.

export interface SoakNode {
  id: string
  /** The node itself (not nginx): its `/metrics` is scraped. */
  url: string
}

export interface SoakOptions {
  /** The cluster entry point (nginx). */
  url: string
  nodes: SoakNode[]
  /** HS256 secret the nodes verify tokens with. */
  jwtSecret: string
  /** How long the churn runs. */
  durationSec: number
  /** Cycles started per second (at most; fewer when `concurrency` are in flight). */
  rate?: number
  /** Cycles in flight at most. */
  concurrency?: number
  /** Distinct source addresses 127.0.X.1 (nginx ip_hash spreads them over the nodes). */
  addresses?: number
  /** How long each client stays connected after its edit. */
  holdMs?: number
  /**
   * Users the cycles take turns as (one token each, reused): the nodes' bounded per-token and
   * per-user caches fill up early instead of growing for the whole run (D113).
   */
  users?: number
  /** Rooms shared by all cycles (each cycle also joins a room of its own). */
  sharedRooms?: number
  sampleSec?: number
  /** After the churn, how long to wait for every node's gauges to return to their baseline. */
  settleSec?: number
  /** The first share of the churn left out of the fits (JIT, pools and caches filling). */
  warmupShare?: number
  /** Windows the fitted span is cut into (one heap minimum each). */
  windows?: number
  /** False when the node has exited (a local cluster knows); otherwise a node is down when its /metrics stops answering. */
  alive?: (id: string) => boolean
  quiet?: boolean
}

export interface Sample {
  /** Seconds since the churn started (negative: the baseline). */
  t: number
  node: string
  /** Cycles finished (cluster-wide) when the sample was taken. */
  cycles: number
  heapUsed: number
  rss: number
  /** The node's event-loop delay p99 since its previous scrape (s), including EVENT_LOOP_RESOLUTION_MS. */
  loopP99: number
  feedRooms: number
  sockets: number
  /** Major (mark-sweep-compact) collections since the node started. */
  majorGcs: number
}

export interface NodeReport {
  id: string
  baseline: { feedRooms: number; sockets: number; heapUsed: number; rss: number }
  peak: { feedRooms: number; sockets: number; heapUsed: number; rss: number }
  after: { feedRooms: number; sockets: number; heapUsed: number; rss: number } | null
  /** Gauges back at their baseline after the churn. */
  settled: boolean
  crashed: boolean
  scrapeErrors: number
  loopP99Ms: { median: number; max: number }
  /** Slope of the heap-used minima per window, against cycles finished, × 1000 (D113). */
  heapBytesPer1000Cycles: number
  /** Windows of the fitted span, and those with a major collection (only their minima are fitted). */
  windows: { total: number; withMajorGc: number }
  majorGcs: number
  /** Slope of every RSS sample in the fitted span, × 1000. */
  rssBytesPer1000Cycles: number
  heapMinima: { t: number; cycles: number; heapUsed: number }[]
}

export interface SoakReport {
  startedAt: string
  url: string
  options: Required<Omit<SoakOptions, 'alive' | 'quiet' | 'nodes' | 'jwtSecret' | 'url'>>
  method: string
  cycles: { started: number; finished: number; ok: number; failed: number; abrupt: number; skipped: number; perSec: number; errors: Record<string, number> }
  ops: { connects: number; joins: number; sends: number; edits: number; leaves: number }
  churnSec: number
  /** Seconds after the churn until every node's gauges were back at baseline (null: they were not, within settleSec). */
  settledAfterSec: number | null
  nodes: NodeReport[]
  total: { heapBytesPer1000Cycles: number; rssBytesPer1000Cycles: number }
  samples: Sample[]
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function gauge(text: string, name: string, match: Record<string, string> = {}): number {
  return samples(text, name, match).reduce((s, x) => s + x.value, 0)
}

/** One node's numbers from its /metrics text. */
export function readNode(text: string): Omit<Sample, 't' | 'node' | 'cycles'> {
  return {
    heapUsed: gauge(text, 'switchboard_nodejs_heap_size_used_bytes'),
    rss: gauge(text, 'switchboard_process_resident_memory_bytes'),
    loopP99: gauge(text, 'switchboard_nodejs_eventloop_lag_p99_seconds'),
    feedRooms: gauge(text, 'switchboard_feed_rooms'),
    sockets: gauge(text, 'switchboard_sockets_connected'),
    majorGcs: gauge(text, 'switchboard_nodejs_gc_duration_seconds_count', { kind: 'major' }),
  }
}

class AckError extends Error {}

async function ackOk<T = Record<string, unknown>>(socket: Socket, event: string, payload: unknown): Promise<T> {
  const res = (await socket.timeout(10_000).emitWithAck(event, payload)) as { status?: string; code?: string }
  if (res?.status !== 'ok') throw new AckError(`${event} ${res?.code ?? 'no status'}`)
  return res as T
}

function median(xs: number[]): number {
  if (!xs.length) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

/** Runs the churn against `o.url` for `o.durationSec`, then waits for the gauges to settle. */
export async function runSoak(o: SoakOptions): Promise<SoakReport> {
  const opt = {
    durationSec: o.durationSec,
    rate: o.rate ?? 10,
    concurrency: o.concurrency ?? 20,
    addresses: o.addresses ?? 8,
    holdMs: o.holdMs ?? 1000,
    users: o.users ?? 200,
    sharedRooms: o.sharedRooms ?? 8,
    sampleSec: o.sampleSec ?? 2,
    settleSec: o.settleSec ?? 30,
    warmupShare: o.warmupShare ?? 0.2,
    windows: o.windows ?? 8,
  }
  const log = (s: string) => !o.quiet && process.stderr.write(s)
  const secret = new TextEncoder().encode(o.jwtSecret)
  const run = Math.random().toString(36).slice(2, 8)
  const startedAt = new Date().toISOString()
  const cycles = { started: 0, finished: 0, ok: 0, failed: 0, abrupt: 0, skipped: 0 }
  const errors: Record<string, number> = Object.create(null)
  const ops = { connects: 0, joins: 0, sends: 0, edits: 0, leaves: 0 }
  const all: Sample[] = []
  const scrapeErrors = new Map<string, number>(o.nodes.map((n) => [n.id, 0]))
  const down = new Set<string>()
  const tokens = new Map<number, string>()

  let t0 = performance.now()
  const takeSample = async (): Promise<Sample[]> => {
    const t = (performance.now() - t0) / 1000
    const got = await Promise.all(
      o.nodes.map(async (n) => {
        if (o.alive && !o.alive(n.id)) down.add(n.id)
        try {
          return { t, node: n.id, cycles: cycles.finished, ...readNode(await scrape(n.url)) }
        } catch {
          scrapeErrors.set(n.id, scrapeErrors.get(n.id)! + 1)
          return undefined
        }
      }),
    )
    const ok = got.filter((s): s is Sample => !!s)
    all.push(...ok)
    return ok
  }

  // One cycle: connect, join a shared room and one of its own, send, edit, stay a moment, then
  // leave its own room (every other cycle) and disconnect. Every sixth cycle instead disconnects
  // right after emitting its joins, so joins end mid-flight too.
  const cycle = async (i: number): Promise<void> => {
    const u = i % opt.users
    let token = tokens.get(u)
    if (!token) {
      token = await new SignJWT({ name: `soak ${u}` }).setProtectedHeader({ alg: 'HS256' }).setSubject(`soak-${run}-u${u}`).setExpirationTime('6h').sign(secret)
      tokens.set(u, token)
    }
    const socket = io(`${o.url}/chat`, {
      ...({ localAddress: `127.0.${1 + (i % opt.addresses)}.1` } as object),
      auth: { token },
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
      timeout: 10_000,
    })
    const shared = `soak-${run}-r${i % opt.sharedRooms}`
    const own = `soak-${run}-c${i}`
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve)
        socket.once('connect_error', reject)
      })
      ops.connects++
      if (i % 6 === 5) {
        socket.emit('room:join', { roomId: own })
        socket.emit('room:join', { roomId: shared })
        cycles.abrupt++
        return
      }
      await ackOk(socket, 'room:join', { roomId: shared })
      await ackOk(socket, 'room:join', { roomId: own })
      ops.joins += 2
      const sent = await ackOk<{ messageId: string }>(socket, 'chat:message', { roomId: shared, text: `soak ${i}` })
      ops.sends++
      await ackOk(socket, 'chat:edit', { roomId: shared, messageId: sent.messageId, text: `soak ${i} (edited)` })
      ops.edits++
      await sleep(opt.holdMs)
      if (i % 2 === 1) {
        await ackOk(socket, 'room:leave', own)
        ops.leaves++
      }
      cycles.ok++
    } catch (err) {
      cycles.failed++
      const key = (err as Error).message.slice(0, 80)
      errors[key] = (errors[key] ?? 0) + 1
    } finally {
      socket.disconnect()
      cycles.finished++
    }
  }

  // Baseline, then the churn with the sampler beside it.
  const [baselineSamples] = await Promise.all([takeSample(), sleep(0)])
  for (const s of baselineSamples) s.t = -1
  t0 = performance.now()
  const end = t0 + opt.durationSec * 1000
  let sampling = true
  const sampler = (async () => {
    let next = t0
    while (sampling) {
      next += opt.sampleSec * 1000
      await sleep(Math.max(0, next - performance.now()))
      if (!sampling) break
      const got = await takeSample()
      const last = (k: keyof Sample) => got.map((s) => fmt(s[k] as number)).join('/')
      log(`${process.stderr.isTTY ? '\r' : ''}[soak] ${Math.round((performance.now() - t0) / 1000)} s  cycles ${cycles.finished} (failed ${cycles.failed})  feed rooms ${last('feedRooms')}  sockets ${last('sockets')}  heap MiB ${got.map((s) => (s.heapUsed / 1048576).toFixed(1)).join('/')}${process.stderr.isTTY ? '   ' : '\n'}`)
    }
  })()

  const inflight = new Set<Promise<void>>()
  const interval = 1000 / opt.rate
  let next = t0
  for (let i = 0; performance.now() < end; i++) {
    if (inflight.size < opt.concurrency) {
      cycles.started++
      const p = cycle(i).finally(() => inflight.delete(p))
      inflight.add(p)
    } else cycles.skipped++
    next += interval
    await sleep(Math.max(0, next - performance.now()))
  }
  await Promise.all(inflight)
  const churnSec = (performance.now() - t0) / 1000
  sampling = false
  await sampler
  log('\n')

  // Settling: every node's feed rooms and sockets back at their baseline.
  const base = new Map(baselineSamples.map((s) => [s.node, s]))
  const settledNode = (s: Sample) => {
    const b = base.get(s.node)
    return !!b && s.feedRooms === b.feedRooms && s.sockets === b.sockets
  }
  let settledAfterSec: number | null = null
  const settleStart = performance.now()
  let lastSamples: Sample[] = []
  for (;;) {
    lastSamples = await takeSample()
    if (lastSamples.length === o.nodes.length && lastSamples.every(settledNode)) {
      settledAfterSec = (performance.now() - settleStart) / 1000
      break
    }
    if (performance.now() - settleStart > opt.settleSec * 1000) break
    await sleep(500)
  }
  if (o.alive) for (const n of o.nodes) if (!o.alive(n.id)) down.add(n.id)

  // Fits over the churn after the warm-up (D113).
  const from = churnSec * opt.warmupShare
  const windowLen = Math.max(opt.sampleSec * 3, 20, (churnSec - from) / opt.windows)
  const nodes: NodeReport[] = o.nodes.map((n) => {
    const mine = all.filter((s) => s.node === n.id)
    const during = mine.filter((s) => s.t >= 0 && s.t <= churnSec)
    const fitted = during.filter((s) => s.t >= from)
    // A window's lowest heap is a post-collection trough only if a major collection ran in it
    // (minor ones leave old-space garbage): windows without one are not fitted.
    const gcsBefore = (t: number) => [...mine].reverse().find((s) => s.t < t)?.majorGcs ?? 0
    const windows = windowMinima(fitted.map((s) => ({ ...s, y: s.heapUsed })), from, windowLen)
    const minima = windows.filter((w) => {
      const start = from + Math.floor((w.t - from) / windowLen) * windowLen
      const inWindow = fitted.filter((s) => s.t >= start && s.t < start + windowLen)
      return Math.max(...inWindow.map((s) => s.majorGcs)) > gcsBefore(start)
    })
    const heap = linearFit(minima.map((s) => ({ x: s.cycles, y: s.heapUsed })))
    const rss = linearFit(fitted.map((s) => ({ x: s.cycles, y: s.rss })))
    const b = base.get(n.id)
    const after = lastSamples.find((s) => s.node === n.id)
    const pick = (s: Sample | undefined) => (s ? { feedRooms: s.feedRooms, sockets: s.sockets, heapUsed: s.heapUsed, rss: s.rss } : null)
    const max = (k: 'feedRooms' | 'sockets' | 'heapUsed' | 'rss') => Math.max(0, ...mine.map((s) => s[k]))
    return {
      id: n.id,
      baseline: pick(b) ?? { feedRooms: NaN, sockets: NaN, heapUsed: NaN, rss: NaN },
      peak: { feedRooms: max('feedRooms'), sockets: max('sockets'), heapUsed: max('heapUsed'), rss: max('rss') },
      after: pick(after),
      settled: !!after && settledNode(after),
      crashed: down.has(n.id) || !after,
      scrapeErrors: scrapeErrors.get(n.id)!,
      loopP99Ms: { median: median(during.map((s) => s.loopP99 * 1000)), max: Math.max(...during.map((s) => s.loopP99 * 1000)) },
      heapBytesPer1000Cycles: heap.slope * 1000,
      windows: { total: windows.length, withMajorGc: minima.length },
      majorGcs: (during.at(-1)?.majorGcs ?? 0) - (b?.majorGcs ?? 0),
      rssBytesPer1000Cycles: rss.slope * 1000,
      heapMinima: minima.map((s) => ({ t: s.t, cycles: s.cycles, heapUsed: s.heapUsed })),
    }
  })
  return {
    startedAt,
    url: o.url,
    options: opt,
    method:
      `heap: least-squares slope of each node's lowest nodejs_heap_size_used_bytes per window (${fmt(windowLen)} s windows after the first ` +
      `${Math.round(opt.warmupShare * 100)} % of the churn; only windows with a major GC) against cycles finished; rss: slope of every process_resident_memory_bytes sample in the same span (D113)`,
    cycles: { ...cycles, perSec: cycles.finished / churnSec, errors },
    ops,
    churnSec,
    settledAfterSec,
    nodes,
    total: {
      heapBytesPer1000Cycles: nodes.reduce((s, n) => s + n.heapBytesPer1000Cycles, 0),
      rssBytesPer1000Cycles: nodes.reduce((s, n) => s + n.rssBytesPer1000Cycles, 0),
    },
    samples: all,
  }
}

const mib = (b: number) => (Number.isFinite(b) ? (b / 1048576).toFixed(1) : '-')

export function formatSoak(r: SoakReport): string {
  const c = r.cycles
  const rows = r.nodes.map((n) => [
    n.id,
    `${n.baseline.feedRooms} / ${n.peak.feedRooms} / ${n.after?.feedRooms ?? '-'}`,
    `${n.baseline.sockets} / ${n.peak.sockets} / ${n.after?.sockets ?? '-'}`,
    `${mib(n.heapMinima[0]?.heapUsed ?? NaN)} → ${mib(n.heapMinima.at(-1)?.heapUsed ?? NaN)}`,
    `${mib(n.baseline.rss)} → ${mib(n.after?.rss ?? NaN)}`,
    n.heapBytesPer1000Cycles,
    n.rssBytesPer1000Cycles,
    `${n.windows.withMajorGc}/${n.windows.total}`,
    `${fmt(n.loopP99Ms.median)} / ${fmt(n.loopP99Ms.max)}`,
    n.crashed ? 'CRASHED' : n.settled ? 'settled' : 'NOT settled',
  ])
  return [
    `soak ${r.startedAt}: ${fmt(r.churnSec)} s of churn against ${r.url}`,
    `cycles ${c.finished} (${fmt(c.perSec)}/s; ok ${c.ok}, abrupt ${c.abrupt}, failed ${c.failed}, not started at the cap ${c.skipped}); ` +
      `connects ${r.ops.connects}, joins ${r.ops.joins}, sends ${r.ops.sends}, edits ${r.ops.edits}, leaves ${r.ops.leaves}`,
    ...Object.entries(c.errors).map(([k, v]) => `  error ×${v}: ${k}`),
    '',
    table(
      ['node', 'feed rooms base/peak/after', 'sockets base/peak/after', 'heap min MiB first→last', 'RSS MiB base→after', 'heap B/1k cycles', 'RSS B/1k cycles', 'windows w/ major GC', `loop p99 ms med/max`, 'state'],
      rows,
    ),
    '',
    `retained per 1,000 cycles, whole cluster: heap ${fmt(r.total.heapBytesPer1000Cycles)} B, RSS ${fmt(r.total.rssBytesPer1000Cycles)} B`,
    `gauges ${r.settledAfterSec === null ? `NOT back at baseline within ${r.options.settleSec} s` : `back at baseline ${fmt(r.settledAfterSec)} s after the churn`}`,
    `method: ${r.method}; loop p99 includes the ${EVENT_LOOP_RESOLUTION_MS} ms sampling resolution`,
  ].join('\n')
}

// CLI. Without --url: a local cluster (startCluster: nodes, nginx, private Postgres and Redis).
if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const { values: a } = parseArgs({
    options: {
      minutes: { type: 'string', default: '10' },
      url: { type: 'string' },
      metrics: { type: 'string' },
      'jwt-secret': { type: 'string', default: process.env.JWT_SECRET },
      nodes: { type: 'string', default: '2' },
      rate: { type: 'string', default: '10' },
      concurrency: { type: 'string', default: '20' },
      addresses: { type: 'string', default: '8' },
      users: { type: 'string', default: '200' },
      hold: { type: 'string', default: '1000' },
      sample: { type: 'string', default: '2' },
      settle: { type: 'string', default: '30' },
      dir: { type: 'string', default: join(process.env.DATA_DIR ?? './data', 'soak') },
      out: { type: 'string' },
    },
  })
  const num = (k: keyof typeof a) => {
    const v = Number(a[k])
    if (!Number.isFinite(v) || v <= 0) {
      console.error(`--${k} must be a positive number (got ${a[k]})`)
      process.exit(2)
    }
    return v
  }
  let cluster: RunningCluster | undefined
  const shutdown = async (code: number) => {
    await cluster?.stop().catch(() => undefined)
    await stopAll()
    process.exit(code)
  }
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => void shutdown(130))
  try {
    let url: string
    let nodes: SoakNode[]
    let secret: string
    if (a.url) {
      if (!a.metrics || !a['jwt-secret']) throw new Error('--url needs --metrics <node url,node url,…> (each node\'s own address, for /metrics) and --jwt-secret (or JWT_SECRET)')
      url = a.url
      nodes = a.metrics.split(',').map((u, i) => ({ id: `node ${i + 1} (${u})`, url: u.replace(/\/$/, '') }))
      secret = a['jwt-secret']
    } else {
      console.error(`[soak] starting ${num('nodes')} nodes, nginx, Postgres and Redis under ${resolve(a.dir!)} …`)
      cluster = await startCluster({
        nodes: num('nodes'),
        dir: resolve(a.dir!),
        env: { LOG_LEVEL: 'warn', AUTH_DEV_TOKENS: 'false' },
        print: (line) => console.error(line),
      })
      url = cluster.url
      nodes = cluster.nodes.map((n) => ({ id: n.id, url: n.url }))
      secret = cluster.jwtSecret
    }
    const c = cluster
    const report = await runSoak({
      url,
      nodes,
      jwtSecret: secret,
      durationSec: num('minutes') * 60,
      rate: num('rate'),
      concurrency: num('concurrency'),
      addresses: num('addresses'),
      users: num('users'),
      holdMs: Number(a.hold),
      sampleSec: num('sample'),
      settleSec: num('settle'),
      alive: c ? (id) => c.nodes.find((n) => n.id === id)!.proc.child.exitCode === null && c.nodes.find((n) => n.id === id)!.proc.child.signalCode === null : undefined,
    })
    console.log(formatSoak(report))
    const out = a.out ?? `loadtest/results/soak-${report.startedAt.replace(/[:.]/g, '-')}.json`
    writeJson(out, report)
    console.log(`report: ${out}`)
    await shutdown(report.nodes.every((n) => n.settled && !n.crashed) ? 0 : 1)
  } catch (err) {
    console.error((err as Error).message)
    await shutdown(1)
  }
}
