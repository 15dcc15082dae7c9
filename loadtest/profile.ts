import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { startCluster, type NodeLauncher, type RunningCluster } from '../infra/cluster.ts'
import { start } from '../infra/processes.ts'
import { startRedis } from '../infra/services.ts'
import { wholeOption } from './lib/fixed-rate.ts'
import { BENCH_SECRET, benchNodeEnv, envOption } from './lib/bench-node.ts'
import { summarizeProfile, formatProfile, type CpuProfile } from './lib/cpu-profile.ts'
import { fmt } from './lib/report.ts'
import { formatReport, runSockets } from './sockets/run.ts'

// `npm run bench:profile -- --rate 200`: one fixed-rate fan-out step (the bench's load: 1,000
// clients, 10 rooms of 100, 2 nodes behind nginx) against Switchboard — or with --baseline the
// bare Socket.IO server — with V8's CPU profiler on in every node. Prints where the nodes spent
// their CPU during the measured step only (connecting and warming up are cut out by time), by
// function and by package, and keeps the .cpuprofile files (open them in Chrome DevTools).

const { values: a } = parseArgs({
  args: process.argv.slice(2),
  options: {
    rate: { type: 'string', default: '200' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    clients: { type: 'string', default: '1000' },
    rooms: { type: 'string', default: '10' },
    size: { type: 'string', default: '128' },
    nodes: { type: 'string', default: '2' },
    top: { type: 'string', default: '40' },
    // µs between samples: finer costs more (the profiler's own signals show up as kernel time).
    interval: { type: 'string', default: '500' },
    baseline: { type: 'boolean', default: false },
    out: { type: 'string', default: 'loadtest/results/profile' },
    // Node settings to try, e.g. --env DELIVERY_BATCH_MS=20 (repeatable).
    env: { type: 'string', multiple: true },
  },
})
let nodeEnv: Record<string, string> = {}
try {
  for (const k of ['rate', 'duration', 'clients', 'rooms', 'nodes', 'top', 'interval', 'size'] as const) wholeOption(k, a[k], 1)
  wholeOption('warmup', a.warmup, 0)
  nodeEnv = envOption(a.env)
} catch (err) {
  console.error((err as Error).message)
  process.exit(2)
}
const n = (k: 'rate' | 'duration' | 'warmup' | 'clients' | 'rooms' | 'nodes' | 'top' | 'size') => Number(a[k])
const root = fileURLToPath(new URL('..', import.meta.url))
const name = a.baseline ? 'baseline' : 'switchboard'
const out = resolve(a.out!, `${name}-${n('rate')}`)
rmSync(out, { recursive: true, force: true })
mkdirSync(out, { recursive: true })
const dir = mkdtempSync(join(tmpdir(), 'sb-profile-'))
chmodSync(dir, 0o755)
const secret = BENCH_SECRET
const redis = await startRedis(join(dir, 'redis'))
let cluster: RunningCluster | undefined
try {
  // The profiler writes its file when the process exits (the nodes exit on SIGTERM).
  const script = a.baseline ? 'loadtest/baseline/server.ts' : 'services/chat/src/server.ts'
  const launchNode: NodeLauncher = (x) =>
    start(x.id, process.execPath, ['--cpu-prof', `--cpu-prof-dir=${out}`, `--cpu-prof-interval=${a.interval}`, '--import', 'tsx', script], { cwd: root, env: x.env, logFile: x.logFile, onLine: x.onLine })
  cluster = await startCluster(
    a.baseline
      ? { nodes: n('nodes'), dir: join(dir, 'c'), redisUrl: redis.url, redisPrefix: 'prof-base:', nodeScript: script, launchNode }
      : {
          nodes: n('nodes'),
          dir: join(dir, 'c'),
          redisUrl: redis.url,
          redisPrefix: 'prof-sb:',
          env: benchNodeEnv(nodeEnv),
          launchNode,
        },
  )
  // The profile's clock is the monotonic one process.hrtime reads (µs).
  let from = 0
  const r = await runSockets({
    scenario: 'fanout',
    url: cluster.url,
    clients: n('clients'),
    rooms: n('rooms'),
    senders: 10,
    rate: n('rate'),
    durationSec: n('duration'),
    warmupSec: n('warmup'),
    size: n('size'),
    workers: 2,
    jwtSecret: a.baseline ? undefined : secret,
    pids: cluster.nodes.map((x) => x.proc.child.pid!),
    label: `${name} @ ${n('rate')} msg/s, profiled`,
    beforeStep: async () => {
      from = Number(process.hrtime.bigint() / 1000n)
    },
  })
  const to = from + n('duration') * 1e6
  console.log(formatReport(r) + '\n')
  await cluster.stop()
  cluster = undefined
  const files = readdirSync(out).filter((f) => f.endsWith('.cpuprofile'))
  const profiles = files.map((f) => JSON.parse(readFileSync(join(out, f), 'utf8')) as CpuProfile)
  const summary = summarizeProfile(profiles, from, to)
  const deliveries = r.steps[0]?.received ?? 0
  const text =
    `${name} @ ${n('rate')} msg/s, ${n('duration')} s step, ${files.length} node profiles: ${fmt(summary.totalMs / 1000)} CPU s sampled in the step, ` +
    `${fmt(deliveries ? (summary.totalMs / 1000 / deliveries) * 1e5 : NaN)} s per 100k deliveries\n\n` +
    formatProfile(summary, n('top'))
  console.log(text)
  writeFileSync(join(out, 'summary.txt'), text)
  writeFileSync(join(out, 'summary.json'), JSON.stringify(summary, null, 2))
  console.log(`\nprofiles and summary in ${out}`)
} finally {
  await cluster?.stop()
  await redis.stop()
  rmSync(dir, { recursive: true, force: true })
}
