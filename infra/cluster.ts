import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { answers, exitCause, freePort, requirePrograms, start, stopAll, waitFor, type Proc, type Requirement } from './processes.ts'
import {
  clearStalePidFile,
  postgresRequirement,
  redisClusterRequirements,
  redisRequirement,
  startPostgres,
  startRedis,
  startRedisCluster,
  type LocalPostgres,
  type LocalRedis,
  type LocalRedisCluster,
} from './services.ts'

const root = fileURLToPath(new URL('..', import.meta.url))

export interface ClusterOptions {
  /** Number of chat nodes (default 3). */
  nodes?: number
  /** nginx listen port (0 = any free port). */
  port?: number
  /** Where logs, nginx files and locally started databases live. */
  dir: string
  /** Use these instead of starting Postgres / Redis locally. */
  databaseUrl?: string
  redisUrl?: string
  /**
   * A Redis Cluster instead of one Redis: a number starts a local one with that many masters
   * (one replica each) under `dir`; `host:port` strings use a running one (REDIS_CLUSTER_NODES).
   */
  redisCluster?: number | string[]
  /** cluster-node-timeout of a Redis Cluster started here (ms; default 5000). */
  redisClusterNodeTimeoutMs?: number
  redisPrefix?: string
  /** Extra environment for every node. */
  env?: Record<string, string>
  /** Extra environment for node `index` (0-based) only, over `env` (all of it given): e.g. its own DATABASE_URL. */
  nodeEnv?: (index: number, env: Readonly<Record<string, string>>) => Record<string, string>
  /** Called with each warning-or-worse node log line, and launcher messages. */
  print?: (line: string) => void
  /** The node program (default the chat node); another one, e.g. the load-test baseline, skips migrations and databases. */
  nodeScript?: string
  /**
   * Starts one node instead of `node --import tsx <nodeScript>` on this machine, e.g. a container
   * of the image (`containerNodeLauncher` in infra/docker.ts). It gets the node's whole
   * environment, its log file and line callback; its `Proc` must stop on SIGTERM (drain) and
   * SIGKILL like the process, and `exited` must settle only once nothing of the node runs.
   */
  launchNode?: NodeLauncher
}

/** What a launcher gets for one node. */
export interface NodeLaunch {
  id: string
  port: number
  /** 0-based. */
  index: number
  /** The node's whole environment (NODE_ID and PORT included; PATH and HOME of this machine too). */
  env: Record<string, string>
  logFile: string
  onLine: (line: string) => void
}

export type NodeLauncher = (node: NodeLaunch) => Proc

export interface ClusterNode {
  id: string
  port: number
  url: string
  proc: Proc
}

export interface RunningCluster {
  /** The nginx entry point. */
  url: string
  nodes: ClusterNode[]
  databaseUrl: string
  /** The Redis the nodes use ('' on a Redis Cluster). */
  redisUrl: string
  redis?: LocalRedis
  /** REDIS_CLUSTER_NODES of the nodes, when they use a Redis Cluster. */
  redisClusterNodes?: string[]
  /** The Redis Cluster started here, if any. */
  redisCluster?: LocalRedisCluster
  postgres?: LocalPostgres
  jwtSecret: string
  /** Starts node `i` again (same id and port) after it exited. */
  restartNode(i: number): Promise<void>
  /** Stops everything this launcher started, nodes first. */
  stop(): Promise<void>
}

/** Fills `{{NAME}}` placeholders; an unknown placeholder is an error. */
export function renderTemplate(template: string, values: Record<string, string>): string {
  return template.replace(/\{\{([A-Z_]+)\}\}/g, (_, name: string) => {
    if (!(name in values)) throw new Error(`no value for {{${name}}}`)
    return values[name]
  })
}

export interface NginxOptions {
  /** nginx's files go to `<dir>/nginx`, its log to `<dir>/logs/nginx.log`. */
  dir: string
  /** Listen port on 127.0.0.1 (0 or unset: any free port). */
  port?: number
  /** The chat nodes on 127.0.0.1, in order. */
  upstreamPorts: readonly number[]
  /** The nodes' UPLOAD_MAX_BYTES (default 10 MiB). */
  uploadMaxBytes?: number
  print?: (line: string) => void
}

/**
 * nginx from nginx/switchboard.conf.template (ip_hash over `upstreamPorts`) as a child of ours,
 * answering /nginx-health when this returns; `proc.stop()` (SIGQUIT) ends it.
 */
export async function startNginx(opts: NginxOptions): Promise<{ url: string; port: number; proc: Proc }> {
  requirePrograms([{ binary: 'nginx', aptPackage: 'nginx' }])
  const dir = resolve(opts.dir)
  const logs = join(dir, 'logs')
  mkdirSync(logs, { recursive: true })
  const port = opts.port || (await freePort())
  const prefix = join(dir, 'nginx')
  mkdirSync(join(prefix, 'cache'), { recursive: true })
  const conf = renderTemplate(readFileSync(join(root, 'nginx/switchboard.conf.template'), 'utf8'), {
    PREFIX: prefix,
    LISTEN: `127.0.0.1:${port}`,
    // UPLOAD_MAX_BYTES of the nodes, plus a MiB for the multipart framing.
    CLIENT_MAX_BODY_SIZE: `${Math.ceil((opts.uploadMaxBytes ?? 10 * 1024 * 1024) / 1048576) + 1}m`,
    // Clients on this machine may name their address in X-Forwarded-For (browser tests use it to
    // reach chosen nodes through ip_hash); other sources' headers are ignored.
    REAL_IP_FROM: '127.0.0.1',
    UPSTREAM_SERVERS: opts.upstreamPorts.map((p) => `    server 127.0.0.1:${p} max_fails=1 fail_timeout=10s;`).join('\n'),
  })
  writeFileSync(join(prefix, 'nginx.conf'), conf)
  // As root, nginx workers would switch to `nobody`, who cannot use our prefix: keep root locally.
  const globals = `daemon off;${process.getuid?.() === 0 ? ' user root;' : ''}`
  clearStalePidFile(join(prefix, 'nginx.pid'), 'nginx', { program: 'nginx', path: prefix }, opts.print)
  const proc = start('nginx', 'nginx', ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-e', join(prefix, 'error.log'), '-g', globals], {
    logFile: join(logs, 'nginx.log'),
    stopSignal: 'SIGQUIT',
  })
  const url = `http://127.0.0.1:${port}`
  try {
    await waitFor('nginx', () => answers(`${url}/nginx-health`), 10_000, proc)
  } catch (err) {
    await proc.stop('SIGQUIT', 5000)
    throw err
  }
  return { url, port, proc }
}

/**
 * Starts a local cluster: Postgres and Redis (unless given), migrations, N nodes, nginx in
 * front. Everything is a child process of ours, stopped by `stop()`.
 */
export async function startCluster(opts: ClusterOptions): Promise<RunningCluster> {
  const nodeScript = opts.nodeScript ?? 'services/chat/src/server.ts'
  const chatNodes = nodeScript === 'services/chat/src/server.ts'
  // Everything missing is said at once, before anything starts.
  const needed: Requirement[] = [{ binary: 'nginx', aptPackage: 'nginx' }]
  if (opts.redisUrl && opts.redisCluster !== undefined) throw new Error('give either redisUrl or redisCluster, not both')
  if (typeof opts.redisCluster === 'number') needed.push(...redisClusterRequirements)
  else if (!opts.redisUrl && !opts.redisCluster) needed.push(redisRequirement)
  if (!opts.databaseUrl && chatNodes) needed.push(postgresRequirement())
  requirePrograms(needed)
  const dir = resolve(opts.dir)
  const logs = join(dir, 'logs')
  mkdirSync(logs, { recursive: true })
  const print = opts.print ?? (() => {})
  const started: { stop(): Promise<unknown> }[] = []
  try {
    const postgres = opts.databaseUrl || !chatNodes ? undefined : await startPostgres(join(dir, 'postgres'), { print })
    if (postgres) started.push(postgres)
    const redisCluster =
      typeof opts.redisCluster === 'number'
        ? await startRedisCluster(join(dir, 'redis-cluster'), { masters: opts.redisCluster, replicasPerMaster: 1, nodeTimeoutMs: opts.redisClusterNodeTimeoutMs, print })
        : undefined
    if (redisCluster) started.push(redisCluster)
    const redisClusterNodes = redisCluster?.nodes ?? (Array.isArray(opts.redisCluster) ? opts.redisCluster : undefined)
    const redis = opts.redisUrl || redisClusterNodes ? undefined : await startRedis(join(dir, 'redis'))
    if (redis) started.push(redis)
    const databaseUrl = opts.databaseUrl ?? postgres?.url ?? ''
    const redisUrl = redisClusterNodes ? '' : (opts.redisUrl ?? redis!.url)
    const jwtSecret = opts.env?.JWT_SECRET ?? randomBytes(32).toString('base64url')
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      HOST: '127.0.0.1',
      DATABASE_URL: databaseUrl,
      ...(redisClusterNodes ? { REDIS_CLUSTER_NODES: redisClusterNodes.join(',') } : { REDIS_URL: redisUrl }),
      REDIS_PREFIX: opts.redisPrefix ?? 'sb:',
      JWT_SECRET: jwtSecret,
      AUTH_DEV_TOKENS: 'true',
      MIGRATE_ON_START: 'false',
      LOG_LEVEL: 'info',
      ...opts.env,
    }

    if (chatNodes) {
      const migrate = start('migrate', process.execPath, ['--import', 'tsx', 'services/chat/src/store/migrate.ts'], {
        cwd: root,
        env,
        logFile: join(logs, 'migrate.log'),
      })
      if ((await migrate.exited) !== 0) throw new Error(`migrations failed: ${exitCause(migrate) ?? 'no output'} (log: ${migrate.logFile})`)
    }

    const nodes: ClusterNode[] = []
    const launcher: NodeLauncher =
      opts.launchNode ?? ((n) => start(n.id, process.execPath, ['--import', 'tsx', nodeScript], { cwd: root, env: n.env, logFile: n.logFile, onLine: n.onLine }))
    const launchNode = (id: string, port: number, index: number): Proc =>
      launcher({
        id,
        port,
        index,
        env: { ...env, ...opts.nodeEnv?.(index, env), NODE_ID: id, PORT: String(port) },
        logFile: join(logs, `${id}.log`),
        onLine: (line) => {
          if (/"level":(40|50|60)/.test(line)) print(`[${id}] ${line}`)
        },
      })
    for (let i = 0; i < (opts.nodes ?? 3); i++) {
      const port = await freePort()
      const id = `node-${i + 1}`
      const node: ClusterNode = { id, port, url: `http://127.0.0.1:${port}`, proc: launchNode(id, port, i) }
      nodes.push(node)
      started.unshift({ stop: () => node.proc.stop('SIGTERM') })
    }
    await Promise.all(nodes.map((n) => waitFor(n.id, () => answers(`${n.url}/readyz`), 60_000, n.proc)))

    const { url, proc: nginx } = await startNginx({
      dir,
      port: opts.port,
      upstreamPorts: nodes.map((n) => n.port),
      uploadMaxBytes: Number(env.UPLOAD_MAX_BYTES || 10 * 1024 * 1024),
      print,
    })
    started.unshift({ stop: () => nginx.stop('SIGQUIT') })

    return {
      url,
      nodes,
      databaseUrl,
      redisUrl,
      redis,
      redisClusterNodes,
      redisCluster,
      postgres,
      jwtSecret,
      async restartNode(i) {
        const n = nodes[i]
        if (n.proc.child.exitCode === null && n.proc.child.signalCode === null) throw new Error(`${n.id} is still running`)
        // A launcher's `exited` may settle after its client process ended (a container being removed).
        await n.proc.exited
        n.proc = launchNode(n.id, n.port, i)
        await waitFor(n.id, () => answers(`${n.url}/readyz`), 60_000, n.proc)
      },
      async stop() {
        await nginx.stop('SIGQUIT', 5000)
        await Promise.all(nodes.map((n) => n.proc.stop('SIGTERM', 30_000)))
        await redis?.stop()
        await redisCluster?.stop()
        await postgres?.stop()
      },
    }
  } catch (err) {
    for (const s of started) await s.stop().catch(() => undefined)
    throw err
  }
}

// `npm run cluster [-- --nodes N --port P --redis-cluster M]`: run until Ctrl-C.
if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const arg = (name: string, dflt: string) => {
    const i = process.argv.indexOf(`--${name}`)
    return i > 0 ? process.argv[i + 1] : dflt
  }
  const nodes = Number(arg('nodes', process.env.CLUSTER_NODES ?? '3'))
  const port = Number(arg('port', process.env.CLUSTER_PORT ?? '8080'))
  const dir = resolve(arg('dir', join(process.env.DATA_DIR ?? './data', 'cluster')))
  // `--redis-cluster N`: a local Redis Cluster of N masters (one replica each) instead of one Redis.
  const given = arg('redis-cluster', '3') ?? '3'
  const masters = process.argv.includes('--redis-cluster') ? Number(given.startsWith('--') ? '3' : given) : undefined
  if (masters !== undefined && !(Number.isInteger(masters) && masters >= 3)) {
    console.error('--redis-cluster takes the number of masters, at least 3 (npm run cluster -- --redis-cluster 3)')
    process.exit(1)
  }
  const clusterNodes = process.env.REDIS_CLUSTER_NODES?.split(',').map((n) => n.trim()).filter(Boolean)
  // Ctrl-C (SIGINT), `kill` (SIGTERM) and a closed terminal (SIGHUP) all stop everything started
  // here, also while it is still starting. A second Ctrl-C kills the children at once.
  // After SIGHUP our output has nowhere to go: a write error must not end the launcher mid-stop.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined)
  let cluster: RunningCluster | undefined
  let stopping = false
  const shutdown = async (signal: NodeJS.Signals) => {
    if (stopping) {
      if (signal === 'SIGINT') {
        console.log('Killing everything started here …')
        process.exit(130) // processes.ts SIGKILLs the children on exit
      }
      return
    }
    stopping = true
    console.log(`\n${signal}: stopping …`)
    try {
      await cluster?.stop()
      await stopAll()
      console.log('Stopped.')
    } finally {
      process.exit(0)
    }
  }
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => void shutdown(signal))

  console.log(`Starting ${nodes} nodes behind nginx${masters ? ` on a Redis Cluster of ${masters} masters` : ''} (logs under ${dir}/logs) …`)
  try {
    cluster = await startCluster({
      nodes,
      port,
      dir,
      databaseUrl: process.env.DATABASE_URL || undefined,
      redisUrl: masters || clusterNodes?.length ? undefined : process.env.REDIS_URL || undefined,
      redisCluster: masters ?? (clusterNodes?.length ? clusterNodes : undefined),
      env: process.env.JWT_SECRET ? { JWT_SECRET: process.env.JWT_SECRET } : undefined,
      print: (line) => console.log(line),
    })
  } catch (err) {
    if (stopping) await new Promise(() => {}) // shutdown() stops what started and exits
    // One line for the operator (a missing program says how to install it, a process that ended
    // says why, from its log); the logs hold the rest.
    console.error((err as Error).message)
    await stopAll()
    process.exit(1)
  }
  if (stopping) await new Promise(() => {})
  const redisLines = cluster.redisClusterNodes
    ? cluster.redisCluster
      ? `  Redis Cluster (started here; REDIS_CLUSTER_NODES=${cluster.redisClusterNodes.join(',')}):\n${(await cluster.redisCluster.describe().catch((err: Error) => `could not read its nodes: ${err.message}`)).replace(/^/gm, '    ')}`
      : `  Redis Cluster:        ${cluster.redisClusterNodes.join(',')}`
    : `  Redis:                ${cluster.redisUrl}${cluster.redis ? '  (started here)' : ''}`
  console.log(`
Switchboard cluster is up.
  open the web client:  ${cluster.url}/
  nginx (ip_hash):      ${cluster.url}
${cluster.nodes.map((n) => `  ${n.id.padEnd(20)}  ${n.url}   (metrics ${n.url}/metrics)`).join('\n')}
  Postgres:             ${cluster.databaseUrl}${cluster.postgres ? '  (started here)' : ''}
${redisLines}
Ctrl-C (or closing the terminal, or SIGTERM) stops everything started here.`)
}
