import { execFileSync } from 'node:child_process'
import { chownSync, existsSync, mkdirSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import net from 'node:net'
import pg from 'pg'
import { freePort, MissingProgramError, requirePrograms, start, waitFor, type Proc, type Requirement } from './processes.ts'

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
      await waitFor('redis', ping, 10_000, handle.proc.exited)
    },
    async stop() {
      await handle.proc.stop('SIGTERM')
    },
    async start() {
      handle.proc = launch()
      await waitFor('redis', ping, 10_000, handle.proc.exited)
    },
  }
  await waitFor('redis', ping, 10_000, handle.proc.exited)
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

export async function startPostgres(dir: string): Promise<LocalPostgres> {
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
  const proc = start(
    'postgres',
    join(bin, 'postgres'),
    ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'],
    { ...asUser, logFile: join(dir, 'postgres.log') },
  )
  const admin = `postgres://postgres@127.0.0.1:${port}/postgres`
  await waitFor(
    'postgres',
    async () => {
      const c = new pg.Client({ connectionString: admin })
      await c.connect()
      await c.end()
      return true
    },
    30_000,
    proc.exited,
  )
  const c = new pg.Client({ connectionString: admin })
  await c.connect()
  const exists = await c.query(`select 1 from pg_database where datname = 'switchboard'`)
  if (exists.rowCount === 0) await c.query('create database switchboard')
  await c.end()
  return { url: `postgres://postgres@127.0.0.1:${port}/switchboard`, proc, stop: async () => void (await proc.stop('SIGINT')) }
}
