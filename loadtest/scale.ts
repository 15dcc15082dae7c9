import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import http from 'node:http'
import { cpus, hostname, loadavg, tmpdir, totalmem } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { startCluster, type RunningCluster } from '../infra/cluster.ts'
import { stopAll } from '../infra/processes.ts'
import { startPostgres, startRedis, type LocalPostgres, type LocalRedis } from '../infra/services.ts'
import { withDescendants } from './lib/descendants.ts'
import { gitInfo } from './lib/git.ts'
import { totalCpu, treeCpuSeconds } from './lib/proc.ts'
import { samples, scrape } from './lib/prom.ts'
import { fromOthers, startRedisTap, type RedisTap, type TapSnapshot } from './lib/redis-tap.ts'
import { fmt, table, writeJson } from './lib/report.ts'
import { runSockets, type StepReport } from './sockets/run.ts'

// `npm run bench:scale`: what one node pays for the cluster's traffic as nodes are added.
// For 1, 2 and 4 nodes behind nginx, Switchboard and the bare Socket.IO + classic Redis adapter
// baseline (loadtest/baseline/server.ts) each carry the same fixed message rate in two layouts:
//   dm      rooms whose members are all on one node (2-person rooms: most chat);
//   spread  rooms with members on every node.
// Per node it reports the pub/sub messages it received from other nodes per message sent in the
// cluster (from `switchboard_cluster_messages_received_total` where the node exports it, and
// always from a counting proxy on each node's Redis connections, lib/redis-tap.ts), its CPU per
// message sent in the cluster, and its deliveries per core. On one machine this is cost per
// node, not wall-clock scaling (issue 18).

export type Layout = 'dm' | 'spread'
export type System = 'switchboard' | 'baseline'

export interface ScaleOptions {
  nodeCounts: number[]
  layouts: Layout[]
  systems: System[]
  /** Messages per second offered, all senders together (one sender per room). */
  rate: number
  durationSec: number
  warmupSec: number
  drainSec: number
  /** dm layout: rooms and members per room (all on one node). */
  dmRooms: number
  dmSize: number
  /** spread layout: rooms and members per room (round-robin over the nodes). */
  spreadRooms: number
  spreadSize: number
  /** Bytes of message text. */
  size: number
  workers: number
  /** Source addresses per node (127.0.X.1, chosen through nginx's ip_hash). */
  octetsPerNode: number
  /** Seconds each cluster idles, no clients, before its runs: its nodes' background CPU (heartbeats, reconciliation, GC) per second. */
  idleSec: number
  /** Use these instead of a private Postgres / Redis started here (the CI test gives its own). */
  databaseUrl?: string
  redisUrl?: string
  redisPrefix?: string
  dir?: string
  quiet?: boolean
  /** How it was started, for the report (the CLI gives its own command line). */
  command?: string
}

export const defaults: ScaleOptions = {
  nodeCounts: [1, 2, 4],
  layouts: ['dm', 'spread'],
  systems: ['switchboard', 'baseline'],
  rate: 200,
  durationSec: 10,
  warmupSec: 3,
  drainSec: 2,
  dmRooms: 100,
  dmSize: 2,
  spreadRooms: 50,
  spreadSize: 4,
  size: 128,
  workers: 2,
  octetsPerNode: 4,
  idleSec: 5,
}

export interface NodeRow {
  node: string
  /** Clients placed on this node (checked through nginx before the run). */
  clients: number
  /** Messages sent by this node's clients (acked). */
  sent: number
  /** Deliveries owed to this node's clients (acked messages × members here). */
  deliveries: number
  /** Redis pub/sub messages delivered to this node's connections, all of them (own echoes included). */
  pubsubDelivered: number
  /** … of which from other nodes (beyond its own publishes per channel, see redis-tap.ts). */
  pubsubFromOthers: number
  pubsubDeliveredBytes: number
  /** `switchboard_cluster_messages_received_total` over the step; null where the node has no such metric. */
  metricReceived: number | null
  /** The figure of the report: the metric where there is one, else the proxy's count. */
  receivedFromOthers: number
  receivedFromOthersPerMessageSent: number
  cpuSec: number
  /** This node's CPU per second with no clients (measured before the runs, see idleSec). */
  idleCpuPerSec: number
  /** This node's CPU per message sent anywhere in the cluster (ms). */
  cpuMsPerClusterMessage: number
  /** The same net of its idle CPU over the window (the step and its drain). */
  netCpuMsPerClusterMessage: number
  /** Deliveries to this node's clients per CPU second of this node. */
  deliveriesPerCore: number
}

export interface ScaleRun {
  system: System
  nodes: number
  layout: Layout
  rooms: number
  roomSize: number
  clients: number
  connected: number
  rate: number
  durationSec: number
  sent: number
  acked: number
  expected: number
  received: number
  loss: number
  latencyP50Ms: number
  latencyP99Ms: number
  ackP99Ms: number
  machineBusyPct: number
  /** How receivedFromOthers was counted. */
  source: 'metric' | 'redis-proxy'
  perNode: NodeRow[]
  /** Means over nodes. */
  mean: { receivedFromOthersPerMessageSent: number; cpuMsPerClusterMessage: number; netCpuMsPerClusterMessage: number; deliveriesPerCore: number }
  /** Redis CPU over the step (all systems share the one Redis; only one runs at a time). */
  redisCpuSec: number
  redisCpuMsPerMessage: number
  /** The cluster's Postgres (Switchboard only), when started here. */
  postgresCpuSec: number | null
  /** Switchboard: group-commit transactions and the messages in them over the window (the nodes' switchboard_db_batch_size). */
  commits: { transactions: number; messages: number } | null
}

export interface ScaleReport {
  command: string
  commit: string
  dirty: boolean
  host: { hostname: string; cpus: number; cpuModel: string; memGiB: number; loadAvgAtStart: number[] }
  startedAt: string
  finishedAt: string
  options: ScaleOptions
  counting: string
  runs: ScaleRun[]
}

const round = (x: number, d = 2) => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : x)
const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN)

/** Which node nginx sends a client from 127.0.<octet>.1 to (its x-switchboard-node header; the baseline sets it too). */
function nodeFor(url: string, octet: number): Promise<string> {
  return new Promise((res, rej) => {
    http
      .get(`${url}/healthz`, { localAddress: `127.0.${octet}.1`, agent: false, timeout: 5000 }, (r) => {
        r.resume()
        res(String(r.headers['x-switchboard-node']))
      })
      .on('error', rej)
  })
}

/** `perNode` source octets per node id, asked through nginx itself. */
async function octetsByNode(url: string, ids: string[], perNode: number): Promise<Map<string, number[]>> {
  const by = new Map(ids.map((id) => [id, [] as number[]]))
  for (let octet = 1; octet < 250; octet++) {
    const list = by.get(await nodeFor(url, octet))
    if (list && list.length < perNode) list.push(octet)
    if ([...by.values()].every((l) => l.length >= perNode)) return by
  }
  throw new Error(`ip_hash did not spread 250 source addresses over ${ids.length} nodes`)
}

/** Where each client goes: its room, its node (index) and whether it sends (the first member of each room). */
export function placeClients(layout: Layout, nodes: number, rooms: number, size: number, tag: string): { room: string; node: number; sender: boolean }[] {
  const out: { room: string; node: number; sender: boolean }[] = []
  for (let r = 0; r < rooms; r++) {
    for (let m = 0; m < size; m++) {
      out.push({ room: `scale-${tag}-${layout}-${r}`, node: layout === 'dm' ? r % nodes : (r + m) % nodes, sender: m === 0 })
    }
  }
  return out
}


const METRIC = 'switchboard_cluster_messages_received_total'
const sumOf = (text: string, name: string) => samples(text, name).reduce((a, b) => a + b.value, 0)

/** Runs the whole plan; everything started here is stopped before it returns or throws. */
export async function runScale(opts: Partial<ScaleOptions> = {}): Promise<ScaleReport> {
  const o: ScaleOptions = { ...defaults, ...opts }
  const log = (s: string) => !o.quiet && process.stderr.write(s + '\n')
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'sb-scale-'))
  chmodSync(dir, 0o755) // a private Postgres runs as the postgres user when we are root
  const startedAt = new Date().toISOString()
  const git = gitInfo() // what ran: taken before the run, so later edits do not change it
  const host = { hostname: hostname(), cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memGiB: round(totalmem() / 2 ** 30, 1), loadAvgAtStart: loadavg().map((x) => round(x)) }
  const secret = 'scale-secret-scale-secret-scale-secret'
  const prefix = o.redisPrefix ?? 'scale:'
  let redis: LocalRedis | undefined
  let postgres: LocalPostgres | undefined
  const runs: ScaleRun[] = []
  const open: { stop(): Promise<unknown> }[] = []
  try {
    if (!o.redisUrl) redis = await startRedis(join(dir, 'redis'))
    const redisUrl = new URL(o.redisUrl ?? redis!.url)
    if (!o.databaseUrl && o.systems.includes('switchboard')) postgres = await startPostgres(join(dir, 'postgres'))
    const databaseUrl = o.databaseUrl ?? postgres?.url
    const redisPids = () => (redis ? withDescendants(redis.proc.child.pid!) : [])
    const pgPids = () => (postgres ? withDescendants(postgres.proc.child.pid!) : [])

    for (const n of o.nodeCounts) {
      for (const system of o.systems) {
        // One counting proxy per node, in front of the one Redis.
        const taps: RedisTap[] = []
        for (let i = 0; i < n; i++) taps.push(await startRedisTap(Number(redisUrl.port || 6379), redisUrl.hostname))
        const tapsStop = { stop: () => Promise.all(taps.map((t) => t.close())) }
        open.push(tapsStop)
        log(`${system}, ${n} node${n > 1 ? 's' : ''}: starting …`)
        const cluster: RunningCluster = await startCluster({
          nodes: n,
          dir: join(dir, `${system}-${n}`),
          databaseUrl: system === 'switchboard' ? databaseUrl : undefined,
          redisUrl: redisUrl.toString(),
          redisPrefix: `${prefix}${system}-${n}:`,
          nodeScript: system === 'baseline' ? 'loadtest/baseline/server.ts' : undefined,
          // Each node reaches Redis through its own proxy; REDIS_PREFIX keys this run's channels.
          nodeEnv: (i) => ({ REDIS_URL: taps[i].url }),
          env:
            system === 'switchboard'
              ? { JWT_SECRET: secret, RATE_LIMIT_MESSAGES: '100000000', RATE_LIMIT_HTTP: '100000000', MAX_CONNECTIONS_PER_IP: '1000000', LOG_LEVEL: 'warn', AUTH_DEV_TOKENS: 'false' }
              : {},
        })
        const clusterStop = { stop: () => cluster.stop() }
        open.push(clusterStop)
        try {
          const ids = cluster.nodes.map((x) => x.id)
          const nodePids = cluster.nodes.map((x) => x.proc.child.pid!)
          const idle0 = nodePids.map((p) => totalCpu([p]))
          const idleT0 = performance.now()
          await new Promise((r) => setTimeout(r, o.idleSec * 1000))
          const idleSecs = (performance.now() - idleT0) / 1000
          const idlePerSec = nodePids.map((p, k) => round((totalCpu([p]) - idle0[k]) / idleSecs, 4))
          log(`${system}, ${n} node${n > 1 ? 's' : ''}: idle CPU per node ${idlePerSec.join(', ')} core`)
          const octets = await octetsByNode(cluster.url, ids, o.octetsPerNode)
          for (const layout of o.layouts) {
            const rooms = layout === 'dm' ? o.dmRooms : o.spreadRooms
            const size = layout === 'dm' ? o.dmSize : o.spreadSize
            const tag = Math.random().toString(36).slice(2, 8)
            const placed = placeClients(layout, n, rooms, size, tag)
            const octetOf = (i: number) => {
              const list = octets.get(ids[placed[i].node])!
              return list[i % list.length]
            }
            const pids = cluster.nodes.map((x) => x.proc.child.pid!)
            let cpu0: number[] = []
            let tap0: TapSnapshot[] = []
            let metric0: (number | null)[] = []
            let batches0 = { transactions: 0, messages: 0 }
            let t0 = 0
            let redis0 = 0
            let pg0 = 0
            // Each node's received-from-others metric (null without one) and its group commits.
            const readMetrics = async () => {
              const texts = await Promise.all(cluster.nodes.map((x) => scrape(x.url).catch(() => '')))
              return {
                metric: texts.map((t) => (samples(t, METRIC).length ? sumOf(t, METRIC) : null)),
                batches: { transactions: texts.reduce((a, t) => a + sumOf(t, 'switchboard_db_batch_size_count'), 0), messages: texts.reduce((a, t) => a + sumOf(t, 'switchboard_db_batch_size_sum'), 0) },
              }
            }
            let after: { cpu: number[]; tap: TapSnapshot[]; metric: (number | null)[]; batches: typeof batches0; redis: number; pg: number; seconds: number } | undefined
            const r = await runSockets({
              scenario: 'fanout',
              url: cluster.url,
              clients: placed.length,
              rooms,
              senders: rooms,
              rate: o.rate,
              durationSec: o.durationSec,
              warmupSec: o.warmupSec,
              drainSec: o.drainSec,
              size: o.size,
              workers: o.workers,
              jwtSecret: system === 'switchboard' ? secret : undefined,
              placement: (i) => ({ room: placed[i].room, octet: octetOf(i), sender: placed[i].sender }),
              label: `${system}, ${n} node${n > 1 ? 's' : ''}, ${layout}`,
              quiet: o.quiet,
              beforeStep: async () => {
                ;({ metric: metric0, batches: batches0 } = await readMetrics())
                t0 = performance.now()
                cpu0 = pids.map((p) => totalCpu([p]))
                tap0 = taps.map((t) => t.snapshot())
                redis0 = treeCpuSeconds(redisPids())
                pg0 = system === 'switchboard' ? treeCpuSeconds(pgPids()) : 0
              },
              afterStep: async () => {
                const cpu = pids.map((p) => totalCpu([p]))
                const tap = taps.map((t) => t.snapshot())
                const redisCpu = treeCpuSeconds(redisPids())
                const pg = system === 'switchboard' ? treeCpuSeconds(pgPids()) : 0
                const seconds = (performance.now() - t0) / 1000
                const m = await readMetrics()
                after = { cpu, tap, metric: m.metric, batches: m.batches, redis: redisCpu, pg, seconds }
              },
            })
            const step: StepReport | undefined = r.steps[0]
            if (!step || !after) throw new Error(`${r.label}: no measured step`)
            const a = after
            const total = step.acked
            const hasMetric = a.metric.every((m) => m !== null) && metric0.every((m) => m !== null)
            const perNode: NodeRow[] = cluster.nodes.map((x, k) => {
              let sent = 0
              let deliveries = 0
              let clients = 0
              const membersHere = new Map<string, number>()
              for (const p of placed) {
                if (p.node !== k) continue
                clients++
                membersHere.set(p.room, (membersHere.get(p.room) ?? 0) + 1)
                if (p.sender) sent += step.ackedByRoom[p.room] ?? 0
              }
              for (const [room, m] of membersHere) deliveries += (step.ackedByRoom[room] ?? 0) * m
              const tapped = fromOthers(tap0[k], a.tap[k])
              const metricReceived = hasMetric ? a.metric[k]! - metric0[k]! : null
              const received = metricReceived ?? tapped.fromOthers
              const cpuSec = round(a.cpu[k] - cpu0[k], 3)
              return {
                node: x.id,
                clients,
                sent,
                deliveries,
                pubsubDelivered: tapped.delivered,
                pubsubFromOthers: tapped.fromOthers,
                pubsubDeliveredBytes: tapped.bytes,
                metricReceived,
                receivedFromOthers: received,
                receivedFromOthersPerMessageSent: round(total ? received / total : NaN, 3),
                cpuSec,
                idleCpuPerSec: idlePerSec[k],
                cpuMsPerClusterMessage: round(total ? (cpuSec * 1000) / total : NaN, 3),
                netCpuMsPerClusterMessage: round(total ? (Math.max(0, cpuSec - idlePerSec[k] * a.seconds) * 1000) / total : NaN, 3),
                deliveriesPerCore: round(cpuSec > 0 ? deliveries / cpuSec : NaN, 0),
              }
            })
            const redisCpuSec = round(a.redis - redis0, 3)
            const run: ScaleRun = {
              system,
              nodes: n,
              layout,
              rooms,
              roomSize: size,
              clients: placed.length,
              connected: r.clients.connected,
              rate: o.rate,
              durationSec: o.durationSec,
              sent: step.sent,
              acked: step.acked,
              expected: step.expected,
              received: step.received,
              loss: step.loss,
              latencyP50Ms: step.latency.p50,
              latencyP99Ms: step.latency.p99,
              ackP99Ms: step.ack.p99,
              machineBusyPct: step.machineBusyPct,
              source: hasMetric ? 'metric' : 'redis-proxy',
              perNode,
              mean: {
                receivedFromOthersPerMessageSent: round(mean(perNode.map((p) => p.receivedFromOthersPerMessageSent)), 3),
                cpuMsPerClusterMessage: round(mean(perNode.map((p) => p.cpuMsPerClusterMessage)), 3),
                netCpuMsPerClusterMessage: round(mean(perNode.map((p) => p.netCpuMsPerClusterMessage)), 3),
                deliveriesPerCore: round(mean(perNode.map((p) => p.deliveriesPerCore)), 0),
              },
              redisCpuSec,
              redisCpuMsPerMessage: round(total ? (redisCpuSec * 1000) / total : NaN, 4),
              postgresCpuSec: system === 'switchboard' && postgres ? round(a.pg - pg0, 3) : null,
              commits: system === 'switchboard' ? { transactions: a.batches.transactions - batches0.transactions, messages: a.batches.messages - batches0.messages } : null,
            }
            runs.push(run)
            log(formatRun(run))
          }
        } finally {
          open.splice(open.indexOf(clusterStop), 1)
          await cluster.stop()
          open.splice(open.indexOf(tapsStop), 1)
          await tapsStop.stop()
        }
      }
    }
  } finally {
    for (const s of open.reverse()) await s.stop().catch(() => undefined)
    await postgres?.stop().catch(() => undefined)
    await redis?.stop().catch(() => undefined)
    if (!o.dir) rmSync(dir, { recursive: true, force: true })
  }
  return {
    command: o.command ?? 'npm run bench:scale (called from code: see options)',
    commit: git.commit,
    dirty: git.dirty,
    host,
    startedAt,
    finishedAt: new Date().toISOString(),
    options: o,
    counting:
      `receivedFromOthers: ${METRIC} from each node's /metrics where every node exports it (source "metric"), ` +
      'else Redis pub/sub messages delivered to the node minus its own publishes on the same channel, counted by a proxy on each node\'s Redis connections (source "redis-proxy"); both are in perNode',
    runs,
  }
}

export function formatRun(r: ScaleRun): string {
  const head =
    `${r.system}, ${r.nodes} node(s), ${r.layout}: ${r.rooms} rooms of ${r.roomSize}, ${r.connected}/${r.clients} clients, ${r.rate} msg/s for ${r.durationSec} s; ` +
    `sent ${r.sent}, acked ${r.acked}, deliveries ${r.received}/${r.expected} (loss ${r.loss}), p50/p99 ${r.latencyP50Ms}/${r.latencyP99Ms} ms, machine ${r.machineBusyPct} % busy; ` +
    `Redis ${fmt(r.redisCpuMsPerMessage)} ms CPU/msg` +
    (r.commits ? `; ${r.commits.transactions} group commits of ${r.commits.messages} messages` : '') +
    (r.postgresCpuSec !== null ? `, Postgres ${fmt(r.postgresCpuSec)} s CPU` : '') +
    `; received-from-others source: ${r.source}`
  return (
    head +
    '\n' +
    table(
      ['node', 'clients', 'sent', 'deliveries', 'pub/sub in', 'from others', 'metric', 'from others / msg sent', 'cpu s', 'idle core', 'cpu ms / cluster msg', 'net of idle', 'deliveries / core-s'],
      r.perNode.map((p) => [p.node, p.clients, p.sent, p.deliveries, p.pubsubDelivered, p.pubsubFromOthers, p.metricReceived ?? '-', p.receivedFromOthersPerMessageSent, p.cpuSec, p.idleCpuPerSec, p.cpuMsPerClusterMessage, p.netCpuMsPerClusterMessage, p.deliveriesPerCore]),
    ) +
    '\n'
  )
}

/** The side-by-side summary: per node count and layout, Switchboard beside the baseline (means over nodes). */
export function formatSummary(rep: ScaleReport): string {
  const keys = [...new Set(rep.runs.map((r) => `${r.nodes}|${r.layout}`))]
  const rows = keys.map((k) => {
    const [nodes, layout] = k.split('|')
    const of = (s: System) => rep.runs.find((r) => r.system === s && `${r.nodes}|${r.layout}` === k)
    const sb = of('switchboard')
    const base = of('baseline')
    const v = (r: ScaleRun | undefined, f: (r: ScaleRun) => number) => (r ? f(r) : '-')
    return [
      Number(nodes),
      layout,
      v(sb, (r) => r.mean.receivedFromOthersPerMessageSent),
      v(base, (r) => r.mean.receivedFromOthersPerMessageSent),
      v(sb, (r) => r.mean.cpuMsPerClusterMessage),
      v(base, (r) => r.mean.cpuMsPerClusterMessage),
      v(sb, (r) => r.mean.netCpuMsPerClusterMessage),
      v(base, (r) => r.mean.netCpuMsPerClusterMessage),
      v(sb, (r) => r.mean.deliveriesPerCore),
      v(base, (r) => r.mean.deliveriesPerCore),
      v(sb, (r) => r.loss),
      v(base, (r) => r.loss),
    ]
  })
  return table(
    ['nodes', 'layout', 'sb from others / msg', 'base from others / msg', 'sb cpu ms / cluster msg', 'base cpu ms / cluster msg', 'sb net of idle', 'base net of idle', 'sb deliveries / core-s', 'base deliveries / core-s', 'sb loss', 'base loss'],
    rows,
  )
}

// CLI
if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const { values: a } = parseArgs({
    options: {
      nodes: { type: 'string', default: defaults.nodeCounts.join(',') },
      layouts: { type: 'string', default: defaults.layouts.join(',') },
      systems: { type: 'string', default: defaults.systems.join(',') },
      rate: { type: 'string', default: String(defaults.rate) },
      duration: { type: 'string', default: String(defaults.durationSec) },
      warmup: { type: 'string', default: String(defaults.warmupSec) },
      drain: { type: 'string', default: String(defaults.drainSec) },
      'dm-rooms': { type: 'string', default: String(defaults.dmRooms) },
      'dm-size': { type: 'string', default: String(defaults.dmSize) },
      'spread-rooms': { type: 'string', default: String(defaults.spreadRooms) },
      'spread-size': { type: 'string', default: String(defaults.spreadSize) },
      size: { type: 'string', default: String(defaults.size) },
      workers: { type: 'string', default: String(defaults.workers) },
      idle: { type: 'string', default: String(defaults.idleSec) },
      // Stops everything and exits after this long, whatever is running.
      'max-minutes': { type: 'string', default: '20' },
      out: { type: 'string' },
    },
  })
  const list = (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean)
  let stopping = false
  const bail = (why: string, code: number) => {
    if (stopping) process.exit(code)
    stopping = true
    console.error(`\n${why}: stopping everything started here …`)
    void stopAll().finally(() => process.exit(code)) // processes.ts SIGKILLs what is left on exit
  }
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => bail(sig, 130))
  setTimeout(() => bail(`--max-minutes ${a['max-minutes']} reached`, 2), Number(a['max-minutes']) * 60_000).unref()
  const report = await runScale({
    nodeCounts: list(a.nodes!).map(Number),
    layouts: list(a.layouts!) as Layout[],
    systems: list(a.systems!) as System[],
    rate: Number(a.rate),
    durationSec: Number(a.duration),
    warmupSec: Number(a.warmup),
    drainSec: Number(a.drain),
    dmRooms: Number(a['dm-rooms']),
    dmSize: Number(a['dm-size']),
    spreadRooms: Number(a['spread-rooms']),
    spreadSize: Number(a['spread-size']),
    size: Number(a.size),
    workers: Number(a.workers),
    idleSec: Number(a.idle),
    command: ['npm run bench:scale', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' '),
  })
  console.log(`\n${report.command} at ${report.commit.slice(0, 7)}${report.dirty ? ' (uncommitted changes)' : ''} on ${report.host.hostname} (${report.host.cpus} × ${report.host.cpuModel}), ${report.startedAt} – ${report.finishedAt}`)
  console.log(`received from others: ${report.counting}\n`)
  for (const r of report.runs) console.log(formatRun(r))
  console.log(formatSummary(report))
  const out = a.out ?? `loadtest/results/scale-${report.startedAt.replace(/[:.]/g, '-')}.json`
  writeJson(out, report)
  writeJson('loadtest/results/scale-latest.json', report)
  console.log(`\nreport: ${out}`)
  process.exit(0)
}
