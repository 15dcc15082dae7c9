import { mkdirSync } from 'node:fs'
import { resolve } from 'node:path'
import { Kysely, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
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

/**
 * Kysely over `pg` when DATABASE_URL is set, over embedded PGlite (data under DATA_DIR) otherwise.
 * Everything above this function is the same for both.
 */
export async function createDb(config: Config, log: Logger): Promise<Db> {
  if (!config.embeddedDatabase) {
    const pool = new pg.Pool({
      Client: PreparingClient,
      connectionString: config.DATABASE_URL,
      max: config.DATABASE_POOL_MAX,
      connectionTimeoutMillis: config.DATABASE_TIMEOUT_MS,
      query_timeout: config.DATABASE_TIMEOUT_MS,
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
  mkdirSync(dir, { recursive: true })
  const pglite = await PGlite.create(dir, {
    parsers: { 20: (v: string) => Number(v) },
  })
  log.info({ dir }, 'embedded PGlite database')
  return new Kysely<Database>({ dialect: new PGliteDialect(pglite) })
}

/** A cheap round trip for /readyz. */
export async function pingDb(db: Db): Promise<void> {
  await sql`select 1`.execute(db)
}
