import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { after, before } from 'node:test'
import net from 'node:net'
import { Redis } from 'ioredis'
import pg from 'pg'
import { fileURLToPath } from 'node:url'
import { io as connect, type Socket } from 'socket.io-client'
import { buildApp, type App } from '../src/app.ts'
import { createCluster, type Cluster } from '../src/cluster/cluster.ts'
import { loadConfig, type Config } from '../src/config.ts'
import { createLogger, type Logger } from '../src/logger.ts'
import { createMetrics } from '../src/metrics.ts'
import { createDb, type Db } from '../src/store/db.ts'
import { migrateToLatest } from '../src/store/migrate.ts'

export const PG_ADMIN_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
export const TEST_SECRET = 'test-secret-test-secret-test-secret-42'

/** A private database for one test file: created empty, dropped by `drop()`. */
export async function createTestDatabase(): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const name = `sb_test_${process.pid}_${randomBytes(4).toString('hex')}`
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL })
  await admin.connect()
  await admin.query(`create database ${name}`)
  await admin.end()
  const url = new URL(PG_ADMIN_URL)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    name,
    async drop() {
      const c = new pg.Client({ connectionString: PG_ADMIN_URL })
      await c.connect()
      await c.query(`drop database if exists ${name} with (force)`)
      await c.end()
    },
  }
}

/** A Redis key prefix of one's own; `clear()` deletes only keys under it (never FLUSHALL). */
export function redisPrefix(): { prefix: string; clear(): Promise<void> } {
  const prefix = `sbtest:${process.pid}:${randomBytes(3).toString('hex')}:`
  return {
    prefix,
    async clear() {
      const r = new Redis(REDIS_URL)
      let cursor = '0'
      do {
        const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500)
        cursor = next
        if (keys.length) await r.del(...keys)
      } while (cursor !== '0')
      await r.quit()
    },
  }
}

export interface TestNode {
  url: string
  port: number
  app: App
  config: Config
  db: Db
  cluster: Cluster
  /** Closes the node (not the database it was given). */
  close(): Promise<void>
}

/**
 * Builds and starts a real node in this process on a free port, as server.ts does (`opts.log`: a
 * logger to read its logs from; `opts.migrate`: instead of every migration, e.g. only up to one).
 */
export async function startNode(env: Record<string, string>, opts: { log?: Logger; migrate?: (db: Db, log: Logger) => Promise<void> } = {}): Promise<TestNode> {
  const config = loadConfig({ JWT_SECRET: TEST_SECRET, LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent', HOST: '127.0.0.1', PORT: '0', ...env })
  const log = opts.log ?? createLogger(config.LOG_LEVEL, { node: config.nodeId })
  const db = await createDb(config, log)
  await (opts.migrate ?? migrateToLatest)(db, log)
  const metrics = createMetrics(config.nodeId)
  const cluster = await createCluster(config, log, (client) => metrics.redisErrors.inc({ client }))
  const app = await buildApp({ config, log, db, cluster, metrics })
  await app.http.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.http.server.address() as net.AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    app,
    config,
    db,
    cluster,
    async close() {
      // A client a test left mid-request holds the HTTP server's close (Fastify waits for
      // in-flight requests; close-with-grace bounds that in production). After 5 s its
      // connections are cut, so one stray client cannot hang the whole test file's teardown.
      const cut = setTimeout(() => app.http.server.closeAllConnections(), 5000)
      try {
        await app.close()
      } finally {
        clearTimeout(cut)
      }
      await cluster.close()
      await db.destroy()
    },
  }
}

/** A node on its own Postgres database and Redis prefix; `close()` removes both. */
export async function startIsolatedNode(env: Record<string, string> = {}) {
  const database = await createTestDatabase()
  const redis = redisPrefix()
  const node = await startNode({ DATABASE_URL: database.url, REDIS_URL: REDIS_URL, REDIS_PREFIX: redis.prefix, ...env })
  return {
    ...node,
    database,
    redis,
    async close() {
      await node.close()
      await database.drop()
      await redis.clear()
    },
  }
}

export async function devToken(baseUrl: string, username: string): Promise<{ token: string; userId: string }> {
  const res = await fetch(`${baseUrl}/api/dev/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username }),
  })
  if (res.status !== 200) throw new Error(`dev token: ${res.status} ${await res.text()}`)
  return (await res.json()) as { token: string; userId: string }
}

const clients: Socket[] = []

/** A connected /chat client (real socket.io-client); closed by `closeClients()`. */
export async function chatClient(
  baseUrl: string,
  token: string | undefined,
  opts: {
    transports?: ('websocket' | 'polling')[]
    namespace?: string
    /** Runs before the connection completes: attach listeners for events sent on connect. */
    setup?: (socket: Socket) => void
    /** More handshake `auth` beside the token (e.g. `batches: true`). */
    auth?: Record<string, unknown>
  } = {},
): Promise<Socket> {
  const socket = connect(`${baseUrl}${opts.namespace ?? '/chat'}`, {
    auth: { ...(token === undefined ? {} : { token }), ...opts.auth },
    transports: opts.transports ?? ['websocket'],
    reconnection: false,
    forceNew: true,
  })
  clients.push(socket)
  opts.setup?.(socket)
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('connect_error', (err) => reject(err))
  })
  return socket
}

export function closeClients(): void {
  for (const s of clients.splice(0)) s.disconnect()
}

/** Emits and waits for the ack (fails after 5 s). */
export function ack<T = any>(socket: Socket, event: string, ...args: unknown[]): Promise<T> {
  return socket.timeout(5000).emitWithAck(event, ...args) as Promise<T>
}

/** Resolves with the next `event` on `socket` that passes `filter`, or rejects after `ms`. */
export function next<T = any>(socket: Socket, event: string, filter: (p: T) => boolean = () => true, ms = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, on)
      reject(new Error(`no ${event} within ${ms} ms`))
    }, ms)
    const on = (p: T) => {
      if (!filter(p)) return
      clearTimeout(timer)
      socket.off(event, on)
      resolve(p)
    }
    socket.on(event, on)
  })
}

/** Collects every `event` payload on `socket` from now on. */
export function collect<T = any>(socket: Socket, event: string): T[] {
  const out: T[] = []
  socket.on(event, (p: T) => out.push(p))
  return out
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Polls `fn` until it returns true, failing after `ms`. */
export async function eventually(fn: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (await fn()) return
    await sleep(25)
  }
  throw new Error(`timed out waiting for ${what}`)
}

/**
 * A TCP proxy we can cut, to make a dependency unreachable without touching the shared
 * server: `cut()` drops every connection and refuses new ones until `restore()`. The target port
 * may be a function, read at each connection (for a target that starts after the proxy).
 */
export async function tcpProxy(targetPort: number | (() => number), targetHost = '127.0.0.1') {
  let open = true
  const live = new Set<net.Socket>()
  const server = net.createServer((client) => {
    if (!open) return client.destroy()
    const upstream = net.connect(typeof targetPort === 'function' ? targetPort() : targetPort, targetHost)
    live.add(client).add(upstream)
    const done = () => {
      client.destroy()
      upstream.destroy()
      live.delete(client)
      live.delete(upstream)
    }
    client.on('error', done).on('close', done)
    upstream.on('error', done).on('close', done)
    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as net.AddressInfo).port
  return {
    port,
    cut() {
      open = false
      for (const s of live) s.destroy()
      live.clear()
    },
    restore() {
      open = true
    },
    async close() {
      this.cut()
      await new Promise((r) => server.close(r))
    },
  }
}

type IsolatedNode = Awaited<ReturnType<typeof startIsolatedNode>>

/**
 * Registers before/after hooks that start an isolated node for the enclosing suite and stop it
 * (closing every client) afterwards. The returned object stands for the node once started.
 */
export function useIsolatedNode(env: Record<string, string> = {}): IsolatedNode {
  let node: IsolatedNode | undefined
  before(async () => {
    node = await startIsolatedNode(env)
  })
  after(async () => {
    closeClients()
    await node?.close()
  })
  return new Proxy({} as IsolatedNode, {
    get: (_, key) => {
      if (!node) throw new Error('node not started yet')
      return node[key as keyof IsolatedNode]
    },
  })
}

/** Signs in each name, connects it to /chat and joins `roomId`. */
export async function usersInRoom(url: string, roomId: string, names: string[]) {
  return Promise.all(
    names.map(async (name) => {
      const { token, userId } = await devToken(url, name)
      const socket = await chatClient(url, token)
      const joined = await ack(socket, 'room:join', roomId)
      if (joined.status !== 'ok') throw new Error(`${name} could not join ${roomId}: ${joined.code}`)
      return { name, token, userId, socket }
    }),
  )
}

/** GET with a bearer token; the status and the parsed JSON body. */
export async function getJson(url: string, token: string, path: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${token}` } })
  return { status: res.status, body: await res.json() }
}

const REPO_ROOT = fileURLToPath(new URL('../../..', import.meta.url))

/**
 * Runs `npm run reencrypt -- <args>` (or, with `viaNpm` false, the script itself) with only PATH,
 * HOME and `env` in its environment; resolves with its exit code and everything it printed.
 */
export function runReencrypt(env: Record<string, string | undefined>, args: string[], viaNpm = true): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const [cmd, argv] = viaNpm
      ? ['npm', ['run', '--silent', 'reencrypt', '--', ...args]]
      : [process.execPath, ['--import', 'tsx', 'services/chat/src/store/reencrypt.ts', ...args]]
    const child = spawn(cmd, argv, { cwd: REPO_ROOT, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, out })
    })
  })
}
