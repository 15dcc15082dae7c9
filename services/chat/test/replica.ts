/**
 * A private Postgres primary and a real streaming replica of it (issue 17, D105, D115, D117):
 * `pg_basebackup -R` from the machine's binaries, the replica streaming through a TCP proxy of
 * this process so a test can cut it (a deterministic lag), then promote it. Asynchronous by
 * default (the single-node failover test makes it lag); `synchronous` makes it the primary's
 * synchronous standby, so no commit is acknowledged before the replica has it on disk (the
 * chaos suite's failover fault).
 */
import { appendFileSync, chownSync, mkdirSync } from 'node:fs'
import { execFile, execFileSync } from 'node:child_process'
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

/** The name a synchronous replica streams under (its `cluster_name`, the walreceiver's application_name). */
const SYNC_NAME = 'sbreplica'

/** A streaming replica of the Postgres on `primaryPort`, its data under `dir` (a new folder). */
export async function startReplica(dir: string, primaryPort: number, opts: { synchronous?: boolean } = {}): Promise<Replica> {
  if (!postgresBin) throw new Error('no Postgres binaries (apt-get install postgresql)')
  const stream = await tcpProxy(primaryPort)
  let replica: LocalPostgres | undefined
  try {
    mkdirSync(dir)
    if ('uid' in asPostgres) chownSync(dir, asPostgres.uid!, asPostgres.gid!)
    // Streams through `stream` (primary_conninfo names the host it was taken from).
    // Async: the proxy it goes through lives in this process.
    await promisify(execFile)(join(postgresBin, 'pg_basebackup'), ['-h', '127.0.0.1', '-p', String(stream.port), '-U', 'postgres', '-D', join(dir, 'pgdata'), '-X', 'stream', '-R', '-c', 'fast', '-w', '--no-sync'], { ...asPostgres, timeout: 30_000 })
    // Without an application_name in primary_conninfo, the walreceiver streams under cluster_name.
    if (opts.synchronous) appendFileSync(join(dir, 'pgdata', 'postgresql.auto.conf'), `cluster_name = '${SYNC_NAME}'\n`)
    replica = await startPostgres(dir)
    if (opts.synchronous) {
      // synchronous_commit stays `on` (the default): a commit returns once the standby has flushed it.
      await query(primaryPort, `alter system set synchronous_standby_names = '${SYNC_NAME}'`, [], 'postgres')
      await query(primaryPort, 'select pg_reload_conf()', [], 'postgres')
      await eventually(
        async () => (await query<{ state: string }>(primaryPort, 'select sync_state as state from pg_stat_replication where application_name = $1', [SYNC_NAME], 'postgres'))[0]?.state === 'sync',
        20_000,
        'the replica to stream as the synchronous standby',
      )
    }
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
