import { promises as fs } from 'node:fs'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import { FileMigrationProvider, Migrator, type Kysely } from 'kysely'
import type { Logger } from '../logger.ts'

const migrationFolder = fileURLToPath(new URL('../../../../migrations', import.meta.url))

/** Applies every pending migration in migrations/ (Kysely's Migrator, which locks against concurrent runs). */
export async function migrateToLatest(db: Kysely<any>, log: Logger): Promise<void> {
  const migrator = new Migrator({ db, provider: new FileMigrationProvider({ fs, path, migrationFolder }) })
  const { error, results } = await migrator.migrateToLatest()
  for (const r of results ?? []) {
    if (r.status === 'Success') log.info({ migration: r.migrationName }, 'migration applied')
    if (r.status === 'Error') log.error({ migration: r.migrationName }, 'migration failed')
  }
  if (error) throw error
}

// `npm run migrate`: apply migrations to DATABASE_URL, or to the embedded store under DATA_DIR
// (taking its lock, so never while a node has it open), and exit.
if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const { loadConfig } = await import('../config.ts')
  const { createLogger } = await import('../logger.ts')
  const { createDb, StoreLockedError } = await import('./db.ts')
  let config
  try {
    config = loadConfig()
  } catch (err) {
    console.error(`switchboard migrate: invalid configuration: ${(err as Error).message}`)
    process.exit(78) // EX_CONFIG
  }
  const log = createLogger(config.LOG_LEVEL, { node: config.nodeId })
  if (config.embeddedDatabase) {
    log.info({ dataDir: path.resolve(config.DATA_DIR) }, `DATABASE_URL is not set: migrating the embedded store (PGlite) under ${path.resolve(config.DATA_DIR)}`)
  }
  let db
  try {
    // No query timeout: a migration that copies a table (2026-12-01T01-00, D123) may run for
    // minutes; the Job's activeDeadlineSeconds bounds the run instead.
    db = await createDb(config, log, { queryTimeoutMs: 0 })
  } catch (err) {
    if (!(err instanceof StoreLockedError)) throw err
    console.error(`switchboard migrate: ${err.message}`)
    process.exit(75) // EX_TEMPFAIL
  }
  try {
    await migrateToLatest(db, log)
    log.info('database is at the latest migration')
  } finally {
    await db.destroy()
  }
}
