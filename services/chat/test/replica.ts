/**
 * A private Postgres primary and a real async streaming replica of it (issue 17, D105, D115):
 * `pg_basebackup -R` from the machine's binaries, the replica streaming through a TCP proxy of
 * this process so a test can cut it (a deterministic lag), then promote it. Used by the
 * single-node failover test and the chaos suite's failover fault.
 */
import { execFile, execFileSync } from 'node:child_process'
import { chownSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'
import { findPostgresBinDir, startPostgres, type LocalPostgres } from '../../../infra/services.ts'
import { eventually, tcpProxy } from './helpers.ts'

export const postgresBin = findPostgresBinDir()
/** Postgres refuses to run as root: its files and processes belong to the `postgres` user then. */
const asPostgres = process.getuid?.() === 0 ? { uid: Number(execFileSync('id', ['-u', 'postgres']).toString()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString()) } : {}
export const portOf = (url: string) => Number(new URL(url).port)

/** One query on a fresh connection to 127.0.0.1:`port`. */
export async function query<T extends pg.QueryResultRow>(port: number, text: string, values: unknown[] = [], database = 'switchboard'): Promise<T[]> {
  const c = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/${database}` })
  await c.connect()
  try {
    return (await c.query<T>(text, values)).rows
  } finally {
    await c.end()
  }
}

export interface Replica {
  pg: LocalPostgres
  port: number
  /** The proxy the replica streams through: `cut()` it and later commits reach only the primary. */
  stream: Awaited<ReturnType<typeof tcpProxy>>
  /** Waits until the replica has replayed everything the primary (on `primaryPort`) has written so far. */
  caughtUp(primaryPort: number, timeoutMs?: number): Promise<void>
  /** Makes it a primary (after the old one stopped). */
  promote(): Promise<void>
  /** Stops it (its own pid only) and closes the stream proxy. */
  stop(): Promise<void>
}

/** A streaming replica of the Postgres on `primaryPort`, its data under `dir` (a new folder). */
export async function startReplica(dir: string, primaryPort: number): Promise<Replica> {
  if (!postgresBin) throw new Error('no Postgres binaries (apt-get install postgresql)')
  const stream = await tcpProxy(primaryPort)
  let replica: LocalPostgres | undefined
  try {
    mkdirSync(dir)
    if ('uid' in asPostgres) chownSync(dir, asPostgres.uid!, asPostgres.gid!)
    // Streams through `stream` (primary_conninfo names the host it was taken from).
    // Async: the proxy it goes through lives in this process.
    await promisify(execFile)(join(postgresBin, 'pg_basebackup'), ['-h', '127.0.0.1', '-p', String(stream.port), '-U', 'postgres', '-D', join(dir, 'pgdata'), '-X', 'stream', '-R', '-c', 'fast', '-w', '--no-sync'], { ...asPostgres, timeout: 30_000 })
    replica = await startPostgres(dir)
  } catch (err) {
    await stream.close()
    throw err
  }
  const pgr = replica
  const port = portOf(pgr.url)
  return {
    pg: pgr,
    port,
    stream,
    async caughtUp(primaryPort, timeoutMs = 10_000) {
      const [{ lsn }] = await query<{ lsn: string }>(primaryPort, 'select pg_current_wal_lsn()::text as lsn')
      await eventually(async () => (await query<{ ok: boolean }>(port, 'select pg_last_wal_replay_lsn() >= $1::pg_lsn as ok', [lsn]))[0].ok, timeoutMs, 'the replica to catch up')
    },
    async promote() {
      await query(port, 'select pg_promote(true, 20)', [], 'postgres')
    },
    async stop() {
      await stream.close()
      await pgr.stop()
    },
  }
}
