import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import { parseEncryptionKeys } from '../config.ts'
import type { Keyring } from '../crypto/at-rest.ts'
import { MessageTexts } from './message-text.ts'
import { countNotOnKey, lockNotOnKey, rewriteTexts } from './messages.repository.ts'
import type { Database } from './schema.ts'

export interface ReencryptProgress {
  batches: number
  /** Rows moved to the write key so far in this run. */
  done: number
  /** Rows still to move (the count at the start of the run, less `done`; the final report recounts). */
  remaining: number
}

export interface ReencryptOptions {
  /** Rows per batch; each batch is one transaction. */
  batchSize: number
  /** Stop after this many batches (the rest is left for the next run). */
  maxBatches?: number
  /** Checked between batches: true stops cleanly (SIGINT/SIGTERM). */
  stopRequested?: () => boolean
  onProgress?: (p: ReencryptProgress) => void
}

/**
 * Moves every message whose text is not sealed under the key ring's write key (plaintext rows,
 * and rows of older keys) to that key, batch by batch in primary-key order (D52). Each batch is
 * its own transaction and locks its rows `FOR UPDATE`, so it is safe beside serving nodes (an
 * edit waits or is re-read, never lost) and a stopped run loses nothing: the next one selects
 * what is still not on the write key. Returns the final state, `remaining` recounted.
 */
export async function reencrypt(db: Kysely<Database>, keyring: Keyring, opts: ReencryptOptions): Promise<ReencryptProgress> {
  const texts = new MessageTexts(keyring)
  const keyId = keyring.writeKeyId
  const total = await countNotOnKey(db, keyId)
  const progress: ReencryptProgress = { batches: 0, done: 0, remaining: total }
  let cursor: { roomId: string; seq: number } | null = null
  while (!(opts.maxBatches !== undefined && progress.batches >= opts.maxBatches) && !opts.stopRequested?.()) {
    const moved: number = await db.transaction().execute(async (trx) => {
      const rows = await lockNotOnKey(trx, keyId, cursor, opts.batchSize)
      // open() throws on a row it cannot authenticate or whose key is not listed: the batch
      // rolls back and the run stops, naming the row.
      await rewriteTexts(trx, rows.map((r) => ({ roomId: r.room_id, seq: Number(r.seq), stored: texts.seal(r.room_id, r.id, texts.open(r)) })))
      const last = rows.at(-1)
      if (last) cursor = { roomId: last.room_id, seq: Number(last.seq) }
      return rows.length
    })
    if (moved === 0) break
    progress.batches++
    progress.done += moved
    progress.remaining = Math.max(0, total - progress.done)
    opts.onProgress?.({ ...progress })
  }
  return { ...progress, remaining: await countNotOnKey(db, keyId) }
}

// `npm run reencrypt [-- --batch-size N] [--max-batches N]`: DATABASE_URL and ENCRYPTION_KEYS from the environment.
if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const fail = (message: string): never => {
    console.error(`reencrypt: ${message}`)
    process.exit(78) // EX_CONFIG
  }
  const positive = (name: string, value: string | undefined, fallback: number | undefined) => {
    if (value === undefined) return fallback
    if (!/^[1-9]\d{0,6}$/.test(value)) fail(`${name} must be a whole number from 1 to 9999999`)
    return Number(value)
  }
  let args: { 'batch-size'?: string; 'max-batches'?: string } = {}
  try {
    args = parseArgs({ options: { 'batch-size': { type: 'string' }, 'max-batches': { type: 'string' } }, strict: true }).values
  } catch (err) {
    fail(`${(err as Error).message} (options: --batch-size N, --max-batches N)`)
  }
  const batchSize = positive('--batch-size', args['batch-size'], 500)!
  const maxBatches = positive('--max-batches', args['max-batches'], undefined)
  const url = process.env.DATABASE_URL ?? ''
  if (url === '') fail('DATABASE_URL is not set: point it at the Postgres database to re-encrypt')
  let keyring: Keyring | null = null
  try {
    keyring = parseEncryptionKeys(process.env.ENCRYPTION_KEYS ?? '')
  } catch (err) {
    fail((err as Error).message)
  }
  if (!keyring) fail('ENCRYPTION_KEYS is not set: list the new key first, then every key rows may still use')
  pg.types.setTypeParser(20, (v) => Number(v))
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 2, application_name: 'switchboard:reencrypt' }) }) })
  let stop = false
  const onSignal = () => {
    if (stop) process.exit(130)
    stop = true
    console.log('reencrypt: stopping after this batch (again to abort; an aborted batch rolls back)')
  }
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal)
  try {
    console.log(`reencrypt: moving message text to key "${keyring!.writeKeyId}" (readable keys: ${keyring!.keyIds.join(', ')}), batches of ${batchSize}`)
    const result = await reencrypt(db, keyring!, {
      batchSize,
      maxBatches,
      stopRequested: () => stop,
      onProgress: (p) => console.log(`reencrypt: batch ${p.batches}: ${p.done} done, ${p.remaining} remaining`),
    })
    console.log(`reencrypt: finished: ${result.done} rows moved in ${result.batches} batches, ${result.remaining} remaining`)
    // A full pass that leaves rows behind: some node still writes with an older key first.
    const leftBehind = result.remaining > 0 && maxBatches === undefined && !stop
    if (leftBehind) console.log('reencrypt: rows were written with another key meanwhile: are all nodes running with the new key first? run again once they are')
    process.exitCode = leftBehind ? 1 : 0
  } catch (err) {
    console.error(`reencrypt: failed: ${(err as Error).message}`)
    process.exitCode = 1
  } finally {
    await db.destroy()
  }
}
