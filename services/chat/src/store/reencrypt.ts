import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import { parseEncryptionKeys } from '../config.ts'
import type { Keyring } from '../crypto/at-rest.ts'
import { AttachmentSeals, lastChunk } from './attachment-seal.ts'
import * as attachments from './attachments.repository.ts'
import { FsBlobStore } from './blob-store.fs.ts'
import { uploadDir } from './blob-stores.ts'
import { MessageTexts } from './message-text.ts'
import { countNotOnKey, lockNotOnKey, rewriteTexts } from './messages.repository.ts'
import { partitionsOf, type RoomPartitioned } from './partitions.ts'
import type { Database } from './schema.ts'

/** What a run moves, in this order: message text, attachment file names, attachment bytes. */
export type ReencryptPart = 'messages' | 'file names' | 'attachment chunks' | 'attachment files'

export interface ReencryptProgress {
  /** The part the last batch belonged to. */
  part?: ReencryptPart
  batches: number
  /** Rows (or files) moved to the write key so far in this run, every part together. */
  done: number
  /** Still to move: the counts at the start of each part, less `done` (the final report recounts). */
  remaining: number
}

export interface ReencryptOptions {
  /** Rows per batch; each batch is one transaction. */
  batchSize: number
  /** Stop after this many batches, every part together (the rest is left for the next run). */
  maxBatches?: number
  /** Checked between batches: true stops cleanly (SIGINT/SIGTERM). */
  stopRequested?: () => boolean
  onProgress?: (p: ReencryptProgress) => void
  /** The fs blob store of the deployment (UPLOAD_STORE=fs), whose files move too; none: Postgres chunks only. */
  files?: FsBlobStore
  /** Something skipped that an operator should look at (an attachment whose file is missing). */
  onWarning?: (message: string) => void
}

/** One kind of row: how many are not on the key, and a batch that moves the next ones (0: none left). */
interface Part {
  name: ReencryptPart
  count(): Promise<number>
  batch(limit: number): Promise<number>
}

/** Chunks are 256 KiB: a batch moves at most this many (8 MiB), whatever `--batch-size` says. */
export const MAX_CHUNKS_PER_BATCH = 32
/** Files are up to UPLOAD_MAX_BYTES each: a batch (one transaction holding their rows) moves at most this many. */
export const MAX_FILES_PER_BATCH = 50

function parts(db: Kysely<Database>, keyring: Keyring, files: FsBlobStore | undefined, warn: (message: string) => void): Part[] {
  const keyId = keyring.writeKeyId
  const texts = new MessageTexts(keyring)
  const seals = new AttachmentSeals(keyring)
  // Messages and names are walked one partition at a time (D122): each batch reads one
  // partition's primary-key range, as a batch of one room's rows would.
  const walk = (table: RoomPartitioned, move: (trx: Kysely<Database>, partition: string, limit: number) => Promise<number>) => {
    let partitions: string[] | null = null
    let at = 0
    return async (limit: number) => {
      partitions ??= await partitionsOf(db, table)
      while (at < partitions.length) {
        const partition = partitions[at]
        const moved = await db.transaction().execute((trx) => move(trx, partition, limit))
        if (moved > 0) return moved
        at++
      }
      return 0
    }
  }
  let msgCursor: { roomId: string; seq: number } | null = null
  let nameCursor: { roomId: string; id: string } | null = null
  let chunkCursor: { storageKey: string; idx: number } | null = null
  let fileCursor: string | null = null
  const list: Part[] = [
    {
      name: 'messages',
      count: () => countNotOnKey(db, keyId),
      batch: walk('messages', async (trx, partition, limit) => {
        const rows = await lockNotOnKey(trx, keyId, partition, msgCursor, limit)
        // open() throws on a row it cannot authenticate or whose key is not listed: the batch
        // rolls back and the run stops, naming the row.
        await rewriteTexts(trx, partition, rows.map((r) => ({ roomId: r.room_id, seq: Number(r.seq), stored: texts.seal(r.room_id, r.id, texts.open(r)) })))
        const last = rows.at(-1)
        // The next partition starts from its beginning.
        msgCursor = last ? { roomId: last.room_id, seq: Number(last.seq) } : null
        return rows.length
      }),
    },
    {
      name: 'file names',
      count: () => attachments.countNamesNotOnKey(db, keyId),
      batch: walk('attachments', async (trx, partition, limit) => {
        const rows = await attachments.lockNamesNotOnKey(trx, keyId, partition, nameCursor, limit)
        await attachments.rewriteNames(trx, partition, rows.map((r) => ({ roomId: r.room_id, id: r.id, name: seals.sealName(r.id, seals.openName(r)) })))
        const last = rows.at(-1)
        nameCursor = last ? { roomId: last.room_id, id: last.id } : null
        return rows.length
      }),
    },
    {
      name: 'attachment chunks',
      count: () => attachments.countChunksNotOnKey(db, keyId),
      batch: (limit) =>
        db.transaction().execute(async (trx) => {
          const rows = await attachments.lockChunksNotOnKey(trx, keyId, chunkCursor, Math.min(limit, MAX_CHUNKS_PER_BATCH))
          await attachments.rewriteChunks(
            trx,
            rows.map((r) => {
              const size = Number(r.size)
              const plain = seals.openChunk(r.attachment_id, size, r.idx, r.key_id, r.data)
              const sealed = seals.sealChunk(r.attachment_id, { idx: r.idx, data: plain, last: r.idx === lastChunk(size) })!
              return { storageKey: r.storage_key, idx: r.idx, data: sealed.data, keyId: sealed.keyId }
            }),
          )
          const last = rows.at(-1)
          if (last) chunkCursor = { storageKey: last.storage_key, idx: last.idx }
          return rows.length
        }),
    },
  ]
  if (files) {
    const warned = new Set<string>()
    // A row whose file is gone cannot be moved: said once, and not counted, so the rest still moves.
    const notOnKey = async (r: { id: string; storage_key: string }) => {
      try {
        return (await files.keyIdOf(r.storage_key)) !== keyId
      } catch (err) {
        if (!/is missing/.test((err as Error).message)) throw err
        if (!warned.has(r.id)) warn(`attachment ${r.id}: its file ${r.storage_key} is missing under ${files.dir}; skipped`)
        warned.add(r.id)
        return false
      }
    }
    list.push({
      name: 'attachment files',
      // Every file's header is read: there is no index of the files' keys.
      async count() {
        let n = 0
        for (const r of await attachments.listBlobs(db)) if (await notOnKey(r)) n++
        return n
      },
      // Files are walked in attachment id order, `limit` rows at a time, their rows locked: the
      // sweep skips them meanwhile, and a second run waits instead of writing the same file.
      async batch(limit) {
        for (;;) {
          const result = await db.transaction().execute(async (trx) => {
            const rows = await attachments.lockAttachmentsAfter(trx, fileCursor, Math.min(limit, MAX_FILES_PER_BATCH))
            let moved = 0
            for (const r of rows) {
              if (!(await notOnKey(r))) continue
              await files.reseal({ key: r.storage_key, attachmentId: r.id, size: Number(r.size) })
              moved++
            }
            fileCursor = rows.at(-1)?.id ?? fileCursor
            return { seen: rows.length, moved }
          })
          // A batch of files already on the key moves on to the next one, so one batch is some work.
          if (result.moved > 0 || result.seen === 0) return result.moved
        }
      },
    })
  }
  return list
}

/**
 * Moves every message text, attachment file name and attachment chunk (and, with `files`, every
 * fs-stored file) not sealed under the key ring's write key — plaintext ones and older keys —
 * to that key, batch by batch in primary-key order (D52, D88). Each batch is its own transaction
 * and locks its rows `FOR UPDATE`, so it is safe beside serving nodes (an edit waits or is
 * re-read, never lost) and a stopped run loses nothing: the next one selects what is still not on
 * the write key. Returns the final state, `remaining` recounted.
 */
export async function reencrypt(db: Kysely<Database>, keyring: Keyring, opts: ReencryptOptions): Promise<ReencryptProgress> {
  const all = parts(db, keyring, opts.files, opts.onWarning ?? (() => undefined))
  const progress: ReencryptProgress = { batches: 0, done: 0, remaining: 0 }
  const counts = new Map<ReencryptPart, number>()
  for (const part of all) counts.set(part.name, await part.count())
  const total = [...counts.values()].reduce((a, b) => a + b, 0)
  progress.remaining = total
  const stopped = () => (opts.maxBatches !== undefined && progress.batches >= opts.maxBatches) || Boolean(opts.stopRequested?.())
  for (const part of all) {
    if (counts.get(part.name) === 0) continue
    while (!stopped()) {
      const moved = await part.batch(opts.batchSize)
      if (moved === 0) break
      progress.part = part.name
      progress.batches++
      progress.done += moved
      // Rows written meanwhile under another key are more than the count: never below 0.
      progress.remaining = Math.max(0, total - progress.done)
      opts.onProgress?.({ ...progress })
    }
    if (stopped()) break
  }
  let remaining = 0
  for (const part of all) remaining += await part.count()
  return { ...progress, remaining }
}

// `npm run reencrypt [-- --batch-size N] [--max-batches N]`: DATABASE_URL and ENCRYPTION_KEYS from the
// environment; with UPLOAD_STORE=fs also the files under UPLOAD_DIR (default DATA_DIR/uploads), as the nodes see them.
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
  const files =
    process.env.UPLOAD_STORE === 'fs'
      ? new FsBlobStore(uploadDir({ UPLOAD_DIR: process.env.UPLOAD_DIR ?? '', DATA_DIR: process.env.DATA_DIR || './data' }), new AttachmentSeals(keyring))
      : undefined
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
    const what = `message text, attachment names and ${files ? `attachment files under ${files.dir}` : 'attachment chunks'}`
    console.log(`reencrypt: moving ${what} to key "${keyring!.writeKeyId}" (readable keys: ${keyring!.keyIds.join(', ')}), batches of ${batchSize}`)
    const result = await reencrypt(db, keyring!, {
      batchSize,
      maxBatches,
      stopRequested: () => stop,
      files,
      onWarning: (message) => console.log(`reencrypt: warning: ${message}`),
      onProgress: (p) => console.log(`reencrypt: batch ${p.batches}: ${p.done} done, ${p.remaining} remaining (${p.part})`),
    })
    console.log(`reencrypt: finished: ${result.done} rows moved in ${result.batches} batches, ${result.remaining} remaining`)
    // A full pass that leaves rows behind: some node still writes with an older key first.
    const leftBehind = result.remaining > 0 && maxBatches === undefined && !stop
    if (leftBehind) console.log('reencrypt: rows were written with another key meanwhile: are all nodes running with the new key first? run again once they are')
    process.exitCode = leftBehind ? 1 : 0
    const elsewhere = files ? 0 : await attachments.countWithoutChunks(db)
    if (elsewhere > 0) {
      console.log(`reencrypt: ${elsewhere} attachments have no bytes in Postgres: if the nodes run UPLOAD_STORE=fs, run again with UPLOAD_STORE=fs and UPLOAD_DIR as they have them`)
    }
  } catch (err) {
    console.error(`reencrypt: failed: ${(err as Error).message}`)
    process.exitCode = 1
  } finally {
    await db.destroy()
  }
}
