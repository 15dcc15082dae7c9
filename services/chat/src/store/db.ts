import { mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { Kysely, PostgresDialect, sql, type KyselyConfig } from 'kysely'
import pg from 'pg'
import lockfile from 'proper-lockfile'
import type { Config } from '../config.ts'
import type { Logger } from '../logger.ts'
import type { Database } from './schema.ts'

export type Db = Kysely<Database>

// bigint (int8) as JS number: seqs stay far below 2^53.
pg.types.setTypeParser(20, (v) => Number(v))

/** Leading comment that marks a hot statement to run as a named prepared statement (pg only). */
export const PREPARED = (name: string) => `/* prepared:${name} */`
const preparedTag = /^\s*\/\* prepared:([a-z_]+) \*\//

/**
 * A pg client that runs statements starting with `PREPARED(name)` as named prepared statements:
 * parsed and planned once per connection, then only bound and executed. The group commit's
 * statement is a seven-step CTE whose parse and plan cost about as much Postgres CPU as running
 * it (docs/decisions.md D35). Everything else goes through unchanged.
 */
class PreparingClient extends pg.Client {
  override query(...args: unknown[]): never {
    const [text, values] = args
    if (typeof text === 'string' && (args.length === 2 || (args.length === 3 && typeof args[2] === 'function'))) {
      const m = preparedTag.exec(text)
      if (m) return (super.query as (...a: unknown[]) => never)({ name: m[1], text, values }, ...args.slice(2))
    }
    return (super.query as (...a: unknown[]) => never)(...args)
  }
}

/** How long a crashed holder's lock on the embedded store keeps others out (proper-lockfile's default). */
export const STORE_LOCK_STALE_MS = 10_000

/** Another process (a node, `npm run migrate`) has the embedded store under this DATA_DIR open. */
export class StoreLockedError extends Error {
  constructor(readonly dataDir: string) {
    super(
      `DATA_DIR ${dataDir} is in use: another process holds its embedded database (lock ${join(dataDir, 'pglite.lock')}); stop it or give this one another DATA_DIR (a crashed holder's lock goes stale within ${STORE_LOCK_STALE_MS / 1000} s)`,
    )
    this.name = 'StoreLockedError'
  }
}

/**
 * Takes the exclusive lock on the embedded store under `dataDir` (PGlite aborts when two processes
 * open one directory). proper-lockfile: an atomic mkdir, its mtime refreshed while we live, removed
 * on exit, and taken over once stale after a crash. Resolves to the release function.
 */
export async function lockEmbeddedStore(dataDir: string, log: Logger): Promise<() => Promise<void>> {
  const dir = resolve(dataDir)
  mkdirSync(join(dir, 'pglite'), { recursive: true })
  try {
    return await lockfile.lock(join(dir, 'pglite'), {
      stale: STORE_LOCK_STALE_MS,
      realpath: false,
      onCompromised: (err) => {
        // Someone else may open the store now: stop rather than risk two writers.
        log.fatal({ err: err.message, dataDir: dir }, 'lost the lock on the embedded store; exiting')
        throw err
      },
    })
  } catch (err) {
    if ((err as { code?: string }).code === 'ELOCKED') throw new StoreLockedError(dir)
    throw err
  }
}

/**
 * Kysely over `pg` when DATABASE_URL is set, over embedded PGlite (data under DATA_DIR) otherwise.
 * Everything above this function is the same for both. `opts.queryTimeoutMs` replaces
 * DATABASE_TIMEOUT_MS as the query timeout (0: none; `npm run migrate`, whose copies may run long).
 */
export async function createDb(config: Config, log: Logger, opts: { queryTimeoutMs?: number } = {}): Promise<Db> {
  if (!config.embeddedDatabase) {
    const pool = new pg.Pool({
      Client: PreparingClient,
      connectionString: config.DATABASE_URL,
      max: config.DATABASE_POOL_MAX,
      connectionTimeoutMillis: config.DATABASE_TIMEOUT_MS,
      query_timeout: opts.queryTimeoutMs ?? config.DATABASE_TIMEOUT_MS,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      application_name: `switchboard:${config.nodeId}`,
    })
    // A client losing its connection must never crash the process. The pool listens while a
    // client is idle; a checked-out client (between two statements of a transaction) emits
    // 'error' with no listener unless we add one. Its pending query fails (UNAVAILABLE) and the
    // pool drops it on release.
    pool.on('error', (err: Error & { code?: string }) => log.warn({ err: err.message, code: err.code }, 'postgres idle client error'))
    pool.on('connect', (client) =>
      client.on('error', (err: Error & { code?: string }) => log.warn({ err: err.message, code: err.code }, 'postgres connection lost')),
    )
    return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
  }
  const { PGlite } = await import('@electric-sql/pglite')
  const { PGliteDialect } = await import('kysely-pglite-dialect')
  const dir = resolve(config.DATA_DIR, 'pglite')
  const release = await lockEmbeddedStore(config.DATA_DIR, log)
  let pglite
  try {
    pglite = await PGlite.create(dir, {
      parsers: { 20: (v: string) => Number(v) },
    })
  } catch (err) {
    await release()
    throw err
  }
  log.info({ dir }, 'embedded PGlite database')
  return new EmbeddedKysely({ dialect: new PGliteDialect(pglite) }, release)
}

/** Releases the store's lock once PGlite is closed. */
class EmbeddedKysely extends Kysely<Database> {
  constructor(
    config: KyselyConfig,
    private readonly release: () => Promise<void>,
  ) {
    super(config)
  }

  override async destroy(): Promise<void> {
    try {
      await super.destroy()
    } finally {
      await this.release().catch(() => undefined)
    }
  }
}

/** A cheap round trip for /readyz. */
export async function pingDb(db: Db): Promise<void> {
  await sql`select 1`.execute(db)
}
