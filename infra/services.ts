import { execFile, execFileSync } from 'node:child_process'
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import net from 'node:net'
import { promisify } from 'node:util'
import pg from 'pg'
import { exitCause, freePort, MissingProgramError, requirePrograms, start, waitFor, type Proc, type Requirement } from './processes.ts'

/** A Redis of our own (for the launcher, and for tests that restart Redis). */
export interface LocalRedis {
  url: string
  port: number
  proc: Proc
  /** Stops it (SIGTERM by default) and starts it again on the same port, empty. */
  restart(downMs?: number): Promise<void>
  stop(): Promise<void>
  /** Starts it again (same port, empty) after `stop()`. */
  start(): Promise<void>
}

export async function startRedis(dir: string, port?: number): Promise<LocalRedis> {
  requirePrograms([redisRequirement])
  mkdirSync(dir, { recursive: true })
  const p = port ?? (await freePort())
  const launch = () => {
    const proc = start('redis', 'redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
      logFile: join(dir, 'redis.log'),
    })
    return proc
  }
  const ping = () =>
    new Promise<boolean>((resolve) => {
      const s = net.connect(p, '127.0.0.1', () => s.write('PING\r\n'))
      s.once('data', (d) => (s.destroy(), resolve(d.toString().startsWith('+PONG'))))
      s.once('error', () => resolve(false))
    })
  const handle: LocalRedis = {
    url: `redis://127.0.0.1:${p}`,
    port: p,
    proc: launch(),
    async restart(downMs = 1000) {
      await handle.proc.stop('SIGTERM')
      await new Promise((r) => setTimeout(r, downMs))
      handle.proc = launch()
      await waitFor('redis', ping, 10_000, handle.proc)
    },
    async stop() {
      await handle.proc.stop('SIGTERM')
    },
    async start() {
      handle.proc = launch()
      await waitFor('redis', ping, 10_000, handle.proc.exited)
    },
  }
  await waitFor('redis', ping, 10_000, handle.proc)
  return handle
}

/** A private Postgres from the machine's binaries (initdb into `dir`), database `switchboard`. */
export interface LocalPostgres {
  url: string
  proc: Proc
  stop(): Promise<void>
}

/** The newest Postgres `bin/` folder under /usr/lib/postgresql (Debian's layout), if any. */
export function findPostgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql'
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : []
  for (const v of versions) if (existsSync(join(root, v, 'bin', 'initdb'))) return join(root, v, 'bin')
  return undefined
}

/** What startPostgres needs, for requirePrograms(). */
export const postgresRequirement = (): Requirement => ({
  binary: 'initdb',
  path: join(findPostgresBinDir() ?? '/usr/lib/postgresql/<version>/bin', 'initdb'),
  aptPackage: 'postgresql',
  instead: 'or set DATABASE_URL',
})

/** What startRedis needs, for requirePrograms(). */
export const redisRequirement: Requirement = { binary: 'redis-server', aptPackage: 'redis-server', instead: 'or set REDIS_URL' }

function postgresBinDir(): string {
  const bin = findPostgresBinDir()
  if (!bin) throw new MissingProgramError([postgresRequirement()])
  return bin
}

/**
 * A pid file an earlier run left (Postgres' `postmaster.pid`, nginx's pid file): removed when no
 * process with that pid runs `program` on `owns` (it died; or the pid now belongs to something
 * else, as after a container restart), else an error in one line naming the process. `print`
 * hears about a removal.
 */
export function clearStalePidFile(file: string, what: string, owns: { program: string; path: string }, print?: (line: string) => void): void {
  const still = (pid: number) => new Error(`${what} (pid ${pid}) from an earlier launch is still running on ${owns.path}: stop it (kill ${pid}) and start again`)
  if (!existsSync(file)) return
  const pid = Number(readFileSync(file, 'utf8').split('\n')[0].trim())
  if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && runs(pid, owns)) throw still(pid)
  // The file names someone else, but the earlier instance may still run (its pid file overwritten).
  const other = runningOn(owns)
  if (other !== undefined) throw still(other)
  rmSync(file, { force: true })
  print?.(`removed a stale ${basename(file)} (${what} pid ${Number.isSafeInteger(pid) && pid > 0 ? pid : '?'} is not running)`)
}

/** A process (the oldest, its main one) whose command line has `program` and `path`, from /proc; undefined without /proc. */
function runningOn(owns: { program: string; path: string }): number | undefined {
  let pids: number[]
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b)
  } catch {
    return undefined
  }
  return pids.find((pid) => pid !== process.pid && isProgramOn(cmdlineOf(pid), owns))
}

/** The command line as written (NULs between arguments), or undefined. */
function cmdlineOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8')
  } catch {
    return undefined
  }
}

/** `program` itself (argv[0], or a title it set like "nginx: master process …") with `path` among its arguments. */
function isProgramOn(cmdline: string | undefined, owns: { program: string; path: string }): boolean {
  if (!cmdline) return false
  const argv0 = cmdline.split('\0')[0]
  const isProgram = basename(argv0.split(' ')[0]) === owns.program || argv0.startsWith(`${owns.program}:`)
  return isProgram && ` ${cmdline.replaceAll('\0', ' ')} `.includes(` ${owns.path}`)
}

/** True when `pid` is alive and, where /proc tells, runs `program` with `path` on its command line. */
function runs(pid: number, owns: { program: string; path: string }): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false // EPERM: alive, someone else's
  }
  const cmdline = cmdlineOf(pid)
  if (cmdline === undefined) return true // no /proc here: assume the worst and name it
  return isProgramOn(cmdline, owns)
}

export async function startPostgres(dir: string, opts: { print?: (line: string) => void } = {}): Promise<LocalPostgres> {
  const bin = postgresBinDir()
  const port = await freePort()
  // Postgres refuses to run as root: run it as the `postgres` system user then.
  const asUser = process.getuid?.() === 0 ? { uid: Number(execFileSync('id', ['-u', 'postgres']).toString()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString()) } : {}
  const data = join(dir, 'pgdata')
  mkdirSync(dir, { recursive: true })
  if ('uid' in asUser) chownSync(dir, asUser.uid!, asUser.gid!)
  if (!existsSync(join(data, 'PG_VERSION'))) {
    try {
      execFileSync(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync'], { ...asUser, stdio: 'pipe' })
    } catch (err) {
      const stderr = String((err as { stderr?: Buffer }).stderr ?? '')
      throw new Error(`initdb failed (every folder above ${dir} must be traversable by the postgres user): ${stderr.trim()}`)
    }
  }
  // An earlier launch that was killed leaves postmaster.pid; Postgres refuses to start while its
  // pid is alive, even when that pid now belongs to another program.
  clearStalePidFile(join(data, 'postmaster.pid'), 'Postgres', { program: 'postgres', path: data }, opts.print)
  const proc = start(
    'postgres',
    join(bin, 'postgres'),
    ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'],
    { ...asUser, logFile: join(dir, 'postgres.log'), stopSignal: 'SIGINT' },
  )
  const admin = `postgres://postgres@127.0.0.1:${port}/postgres`
  try {
    await waitFor(
      'postgres',
      async () => {
        const c = new pg.Client({ connectionString: admin })
        await c.connect()
        await c.end()
        return true
      },
      30_000,
      proc,
    )
  } catch (err) {
    await proc.stop('SIGINT', 5000)
    throw err
  }
  const c = new pg.Client({ connectionString: admin })
  await c.connect()
  const exists = await c.query(`select 1 from pg_database where datname = 'switchboard'`)
  if (exists.rowCount === 0) await c.query('create database switchboard')
  await c.end()
  return { url: `postgres://postgres@127.0.0.1:${port}/switchboard`, proc, stop: async () => void (await proc.stop('SIGINT')) }
}

/** One node of a local Redis Cluster, as `CLUSTER NODES` tells. */
export interface RedisClusterNode {
  id: string
  port: number
  role: 'master' | 'replica'
  /** The master's node id, for a replica. */
  masterId?: string
  /** Slot ranges a master serves ("0-5460"). */
  slots: string[]
  /** Marked failed (fail or fail?) by the node we asked. */
  failed: boolean
}

/** A Redis Cluster of our own from the machine's `redis-server` (tests, `npm run cluster -- --redis-cluster N`). */
export interface LocalRedisCluster {
  /** `host:port` of every node started (what REDIS_CLUSTER_NODES takes; any one of them would do; addMaster adds to it). */
  nodes: string[]
  ports: number[]
  /** The nodes as a live node sees them now. */
  topology(): Promise<RedisClusterNode[]>
  /** `topology()` in lines for people: role, port, slots or master. */
  describe(): Promise<string>
  /** The port of the master that serves `slot`. */
  masterOf(slot: number): Promise<number>
  /** The hash slot of `key` (CLUSTER KEYSLOT). */
  slotOf(key: string): Promise<number>
  /**
   * SIGKILLs the master on `port` and waits until one of its replicas serves its slots and every
   * live node says cluster_state:ok. Returns the promoted replica's port.
   */
  killMaster(port: number): Promise<number>
  /**
   * Adds a shard: starts an empty master, joins it (`redis-cli --cluster add-node`) and moves slots
   * to it (`redis-cli --cluster rebalance --cluster-use-empty-masters`), as an operator would.
   * Returns its port once every live node says cluster_state:ok.
   */
  addMaster(): Promise<number>
  /** Starts a killed node again on its port and folder: it rejoins as a replica of its promoted one. */
  restartNode(port: number): Promise<void>
  /** Stops every node started here (only these pids). */
  stop(): Promise<void>
}

export interface RedisClusterOptions {
  masters?: number
  replicasPerMaster?: number
  /** cluster-node-timeout in ms (default 5000; tests use ~1000 for fast failovers). */
  nodeTimeoutMs?: number
  print?: (line: string) => void
}

/** What startRedisCluster needs, for requirePrograms(). */
export const redisClusterRequirements: Requirement[] = [
  { binary: 'redis-server', aptPackage: 'redis-server', instead: 'or set REDIS_CLUSTER_NODES' },
  { binary: 'redis-cli', aptPackage: 'redis-tools', instead: 'or set REDIS_CLUSTER_NODES' },
]

const execFileP = promisify(execFile)

/** A port whose cluster bus port (port + 10000) is free too. */
async function freeClusterPort(taken: Set<number>): Promise<number> {
  const bindable = (port: number) =>
    new Promise<boolean>((resolve) => {
      const s = net.createServer()
      s.once('error', () => resolve(false))
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
    })
  for (let i = 0; i < 200; i++) {
    const port = 20_000 + Math.floor(Math.random() * 20_000)
    if (taken.has(port) || taken.has(port + 10_000) || taken.has(port - 10_000)) continue
    if ((await bindable(port)) && (await bindable(port + 10_000))) return port
  }
  throw new Error('no free port pair (port, port + 10000) for a Redis Cluster node')
}

async function redisCli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await execFileP('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 5000 })
  return stdout
}

/** Parses `CLUSTER NODES`. */
export function parseClusterNodes(text: string): RedisClusterNode[] {
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((line) => {
      const [id, addr, flags, master, , , , , ...slots] = line.trim().split(' ')
      const f = flags.split(',')
      return {
        id,
        port: Number(addr.split('@')[0].split(':').at(-1)),
        role: f.includes('master') ? 'master' : 'replica',
        masterId: master === '-' ? undefined : master,
        slots: slots.filter((s) => !s.startsWith('[')),
        failed: f.includes('fail') || f.includes('fail?'),
      }
    })
}

export async function startRedisCluster(dir: string, opts: RedisClusterOptions = {}): Promise<LocalRedisCluster> {
  requirePrograms(redisClusterRequirements)
  const masters = opts.masters ?? 3
  const replicas = opts.replicasPerMaster ?? 1
  if (masters < 3) throw new Error('a Redis Cluster needs at least 3 masters')
  const timeout = opts.nodeTimeoutMs ?? 5000
  mkdirSync(dir, { recursive: true })
  const taken = new Set<number>()
  const ports: number[] = []
  for (let i = 0; i < masters * (1 + replicas); i++) {
    const p = await freeClusterPort(taken)
    taken.add(p)
    ports.push(p)
  }
  const procs = new Map<number, Proc>()
  const nodeDir = (port: number) => join(dir, `node-${port}`)
  const launch = (port: number) => {
    const d = nodeDir(port)
    const proc = start(`redis-${port}`, 'redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', d, '--pidfile', join(d, 'redis.pid'),
      '--save', '', '--appendonly', 'no',
      '--cluster-enabled', 'yes', '--cluster-config-file', join(d, 'nodes.conf'), '--cluster-node-timeout', String(timeout),
      // A replica may always take over (a test's replicas are seconds old), and stays with its master.
      '--cluster-replica-validity-factor', '0', '--cluster-allow-replica-migration', 'no',
    ], { logFile: join(d, 'redis.log') })
    procs.set(port, proc)
    return proc
  }
  const ping = (port: number) => async () => (await redisCli(port, 'PING')).trim() === 'PONG'
  const stop = async () => {
    await Promise.all([...procs.values()].map((p) => p.stop('SIGTERM', 5000)))
  }
  try {
    // An earlier launch on this folder: a node still running would hold nodes.conf (refused in
    // one line); a dead one's cluster state is stale (new ports), so every folder starts empty.
    const earlier = (existsSync(dir) ? readdirSync(dir) : []).filter((name) => existsSync(join(dir, name, 'port')))
    for (const name of earlier) {
      const port = readFileSync(join(dir, name, 'port'), 'utf8').trim()
      clearStalePidFile(join(dir, name, 'redis.pid'), 'Redis', { program: 'redis-server', path: `127.0.0.1:${port}` }, opts.print)
    }
    for (const name of earlier) rmSync(join(dir, name), { recursive: true, force: true })
    for (const port of ports) {
      mkdirSync(nodeDir(port), { recursive: true })
      writeFileSync(join(nodeDir(port), 'port'), `${port}\n`)
      launch(port)
    }
    await Promise.all(ports.map((port) => waitFor(`redis ${port}`, ping(port), 10_000, procs.get(port))))
    const create = start('redis-cli', 'redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', String(replicas), '--cluster-yes'], {
      logFile: join(dir, 'create.log'),
    })
    if ((await create.exited) !== 0) throw new Error(`redis-cli --cluster create failed: ${exitCause(create) ?? 'no output'} (log: ${create.logFile})`)
    await waitFor('redis cluster', () => healthy(ports, masters * replicas), 30_000)
  } catch (err) {
    await stop()
    throw err
  }
  const live = () => ports.filter((p) => procs.get(p)?.child.exitCode === null && procs.get(p)?.child.signalCode === null)
  const topology = async () => parseClusterNodes(await redisCli(live()[0], 'CLUSTER', 'NODES'))
  const handle: LocalRedisCluster = {
    nodes: ports.map((p) => `127.0.0.1:${p}`),
    ports,
    topology,
    async describe() {
      const nodes = await topology()
      const byId = new Map(nodes.map((n) => [n.id, n]))
      return nodes
        .sort((a, b) => (a.role === b.role ? a.port - b.port : a.role === 'master' ? -1 : 1))
        .map((n) =>
          n.role === 'master'
            ? `master   127.0.0.1:${n.port}  slots ${n.slots.join(' ') || '-'}${n.failed ? '  (failed)' : ''}`
            : `replica  127.0.0.1:${n.port}  of 127.0.0.1:${byId.get(n.masterId ?? '')?.port ?? '?'}${n.failed ? '  (failed)' : ''}`,
        )
        .join('\n')
    },
    async masterOf(slot) {
      const nodes = await topology()
      const owner = nodes.find((n) => n.role === 'master' && !n.failed && n.slots.some((r) => inRange(slot, r)))
      if (!owner) throw new Error(`no master serves slot ${slot}`)
      return owner.port
    },
    async slotOf(key) {
      return Number((await redisCli(live()[0], 'CLUSTER', 'KEYSLOT', key)).trim())
    },
    async killMaster(port) {
      const nodes = await topology()
      const master = nodes.find((n) => n.port === port && n.role === 'master')
      if (!master) throw new Error(`127.0.0.1:${port} is not a master`)
      const replicaPorts = nodes.filter((n) => n.masterId === master.id && !n.failed).map((n) => n.port)
      if (replicaPorts.length === 0) throw new Error(`127.0.0.1:${port} has no replica to promote`)
      await procs.get(port)!.stop('SIGKILL')
      let promoted = 0
      await waitFor(
        `failover of 127.0.0.1:${port}`,
        async () => {
          for (const r of replicaPorts) {
            if (/role:master/.test(await redisCli(r, 'INFO', 'replication'))) promoted = r
          }
          if (!promoted) return false
          const states = await Promise.all(live().map((p) => redisCli(p, 'CLUSTER', 'INFO')))
          return states.every((s) => s.includes('cluster_state:ok'))
        },
        30_000 + 4 * timeout,
      )
      return promoted
    },
    async addMaster() {
      const port = await freeClusterPort(new Set(ports.flatMap((p) => [p, p + 10_000])))
      mkdirSync(nodeDir(port), { recursive: true })
      writeFileSync(join(nodeDir(port), 'port'), `${port}\n`)
      ports.push(port)
      handle.nodes.push(`127.0.0.1:${port}`)
      await waitFor(`redis ${port}`, ping(port), 10_000, launch(port))
      const existing = `127.0.0.1:${live().find((p) => p !== port)}`
      const cli = async (what: string, args: string[]) => {
        const proc = start('redis-cli', 'redis-cli', ['--cluster', ...args], { logFile: join(dir, `${what}.log`) })
        if ((await proc.exited) !== 0) throw new Error(`redis-cli --cluster ${args[0]} failed: ${exitCause(proc) ?? 'no output'} (log: ${proc.logFile})`)
      }
      await cli('add-node', ['add-node', `127.0.0.1:${port}`, existing])
      // Slots cannot move while the new node is unknown somewhere or has not yet learnt the slot
      // map (it answers MIGRATE with CLUSTERDOWN then).
      await waitFor('the new master known to every node', async () => {
        for (const p of live()) if (!parseClusterNodes(await redisCli(p, 'CLUSTER', 'NODES')).some((n) => n.port === port && n.role === 'master')) return false
        return healthy(live(), 0)
      }, 30_000)
      await cli('rebalance', ['rebalance', existing, '--cluster-use-empty-masters', '--cluster-yes'])
      await waitFor('redis cluster', () => healthy(live(), 0), 30_000 + 4 * timeout)
      return port
    },
    async restartNode(port) {
      const proc = procs.get(port)
      if (proc && proc.child.exitCode === null && proc.child.signalCode === null) throw new Error(`redis ${port} is still running`)
      await waitFor(`redis ${port}`, ping(port), 10_000, launch(port))
      await waitFor('redis cluster', () => healthy(live(), 0), 30_000 + 4 * timeout)
    },
    stop,
  }
  return handle
}

function inRange(slot: number, range: string): boolean {
  const [a, b] = range.split('-').map(Number)
  return slot >= a && slot <= (b ?? a)
}

/** Every node says cluster_state:ok and knows the same masters with all 16384 slots, and `replicas` replicas are attached. */
async function healthy(ports: number[], replicas: number): Promise<boolean> {
  for (const p of ports) if (!(await redisCli(p, 'CLUSTER', 'INFO')).includes('cluster_state:ok')) return false
  const nodes = parseClusterNodes(await redisCli(ports[0], 'CLUSTER', 'NODES'))
  const attached = nodes.filter((n) => n.role === 'replica' && !n.failed).length
  if (attached < replicas) return false
  // Replicas report a master link up only once their first sync is done.
  for (const p of ports) {
    const info = await redisCli(p, 'INFO', 'replication')
    if (info.includes('role:slave') && !info.includes('master_link_status:up')) return false
  }
  return true
}
