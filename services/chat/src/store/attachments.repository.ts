import { sql, type Kysely } from 'kysely'
import type { StoredName } from './attachment-seal.ts'
import type { AttachmentRow, Database } from './schema.ts'

type Q = Kysely<Database>

export interface NewAttachment {
  id: string
  roomId: string
  userId: string
  /** In its stored form (`AttachmentSeals.sealName`). */
  name: StoredName
  mimeType: string
  size: number
  storageKey: string
}

export async function insertAttachment(db: Q, a: NewAttachment): Promise<void> {
  await db
    .insertInto('attachments')
    .values({
      id: a.id,
      room_id: a.roomId,
      user_id: a.userId,
      file_name: a.name.fileName,
      key_id: a.name.keyId,
      file_name_cipher: a.name.fileNameCipher,
      mime_type: a.mimeType,
      size: a.size,
      storage_key: a.storageKey,
    })
    .execute()
}

/**
 * The attachment and whether a (not deleted) message shows it. With `roomId` (a send's
 * attachment, a download whose URL names the room) one attachments and one messages partition
 * are read; without it (a bare `/api/attachments/:id`) each partition's id index is probed.
 */
export async function findWithReference(db: Q, id: string, roomId?: string): Promise<(AttachmentRow & { referenced: boolean }) | undefined> {
  let q = db
    .selectFrom('attachments as a')
    .selectAll('a')
    .select((eb) =>
      eb
        .exists(
          eb
            .selectFrom('messages as m')
            .select(sql.lit(1).as('one'))
            // The room as a value, not only as a.room_id: a subquery in the select list is pruned on what it says itself.
            .where((w) => (roomId === undefined ? w('m.room_id', '=', w.ref('a.room_id')) : w('m.room_id', '=', roomId)))
            .whereRef('m.attachment_id', '=', 'a.id')
            .where('m.deleted_at', 'is', null),
        )
        .as('referenced'),
    )
    .where('a.id', '=', id)
  if (roomId !== undefined) q = q.where('a.room_id', '=', roomId)
  const row = await q.executeTakeFirst()
  return row && { ...row, referenced: Boolean(row.referenced) }
}

/**
 * Deletes up to `limit` uploads created before `cutoff` that no message references, and returns
 * their storage keys (the caller removes the bytes). Rows another node is deleting right now are
 * skipped, and a row is deleted once whoever runs it: safe on every node at once.
 */
export async function deleteUnreferenced(db: Q, cutoff: Date, limit: number): Promise<string[]> {
  // Old uploads of every room (by created_at in each partition); each one's references are
  // looked up in its own room's messages partition, and deleted by its full key.
  const rows = await sql<{ storage_key: string }>`
    delete from attachments x using (
      select a.room_id, a.id from attachments a
      where a.created_at < ${cutoff}
        and not exists (select 1 from messages m where m.room_id = a.room_id and m.attachment_id = a.id)
      order by a.created_at limit ${limit}
      for update skip locked
    ) d
    where x.room_id = d.room_id and x.id = d.id
    returning x.storage_key`.execute(db)
  return rows.rows.map((r) => r.storage_key)
}

/** Which of `keys` some attachment row still uses (the blob stores' orphan sweep keeps those). */
export async function keysInUse(db: Q, keys: string[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set()
  const rows = await db.selectFrom('attachments').select('storage_key').where('storage_key', 'in', keys).execute()
  return new Set(rows.map((r) => r.storage_key))
}

// ---- re-encryption (`npm run reencrypt`, D88) ------------------------------------------------

/** Names not sealed under `keyId`: plaintext names and other keys. */
const nameNotOnKey = (keyId: string) => sql<boolean>`((key_id is null and file_name <> '') or key_id <> ${keyId})`

export async function countNamesNotOnKey(db: Q, keyId: string): Promise<number> {
  const row = await db.selectFrom('attachments').select((eb) => eb.fn.countAll<number>().as('n')).where(nameNotOnKey(keyId)).executeTakeFirstOrThrow()
  return Number(row.n)
}

/**
 * The next `limit` attachments of one partition (`partitionsOf`) whose name is not on `keyId`,
 * after `after` in primary-key order, locked (call in a transaction).
 */
export async function lockNamesNotOnKey(trx: Q, keyId: string, partition: string, after: { roomId: string; id: string } | null, limit: number) {
  const from = after ? sql`and (room_id, id) > (${after.roomId}, ${after.id}::uuid)` : sql``
  // NO KEY UPDATE: a message inserting a reference to the row (its foreign key takes KEY SHARE) does not wait.
  const r = await sql<Pick<AttachmentRow, 'room_id' | 'id' | 'file_name' | 'key_id' | 'file_name_cipher'>>`
    select room_id, id, file_name, key_id, file_name_cipher from ${sql.table(partition)}
    where ${nameNotOnKey(keyId)} ${from}
    order by room_id, id limit ${limit} for no key update`.execute(trx)
  return r.rows
}

export async function rewriteNames(trx: Q, partition: string, rows: readonly { roomId: string; id: string; name: StoredName }[]): Promise<void> {
  if (rows.length === 0) return
  await sql`
    update ${sql.table(partition)} a set file_name = v.file_name, key_id = v.key_id, file_name_cipher = v.file_name_cipher
    from unnest(${rows.map((r) => r.roomId)}::text[], ${rows.map((r) => r.id)}::uuid[], ${rows.map((r) => r.name.fileName)}::text[],
      ${rows.map((r) => r.name.keyId)}::text[], ${rows.map((r) => r.name.fileNameCipher)}::bytea[]) as v(room_id, id, file_name, key_id, file_name_cipher)
    where a.room_id = v.room_id and a.id = v.id`.execute(trx)
}

/**
 * Chunks (Postgres store) not sealed under `keyId`, of attachments that have a row: chunks of an
 * upload still in flight or cut off by a crash have no attachment id to bind to, and the sweep
 * removes the orphans.
 */
function chunksNotOnKey(db: Q, keyId: string) {
  return db
    .selectFrom('attachment_chunks as c')
    .innerJoin('attachments as a', 'a.storage_key', 'c.storage_key')
    .where((eb) => eb.or([eb('c.key_id', 'is', null), eb('c.key_id', '<>', keyId)]))
}

export async function countChunksNotOnKey(db: Q, keyId: string): Promise<number> {
  const row = await chunksNotOnKey(db, keyId).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()
  return Number(row.n)
}

/** The next `limit` such chunks after `after` in (storage_key, idx) order, locked (call in a transaction). */
export function lockChunksNotOnKey(trx: Q, keyId: string, after: { storageKey: string; idx: number } | null, limit: number) {
  let q = chunksNotOnKey(trx, keyId).select(['c.storage_key', 'c.idx', 'c.data', 'c.key_id', 'a.id as attachment_id', 'a.size'])
  if (after) q = q.where(sql<boolean>`(c.storage_key, c.idx) > (${after.storageKey}, ${after.idx})`)
  return q.orderBy('c.storage_key').orderBy('c.idx').limit(limit).forUpdate('c').execute()
}

export async function rewriteChunks(trx: Q, rows: readonly { storageKey: string; idx: number; data: Buffer; keyId: string }[]): Promise<void> {
  if (rows.length === 0) return
  await sql`
    update attachment_chunks c set data = v.data, key_id = v.key_id
    from unnest(${rows.map((r) => r.storageKey)}::text[], ${rows.map((r) => r.idx)}::int[], ${rows.map((r) => r.data)}::bytea[],
      ${rows.map((r) => r.keyId)}::text[]) as v(storage_key, idx, data, key_id)
    where c.storage_key = v.storage_key and c.idx = v.idx`.execute(trx)
}

/** Attachments after `afterId` in id order, locked (the fs store's re-encryption walks every file). */
export function lockAttachmentsAfter(trx: Q, afterId: string | null, limit: number) {
  let q = trx.selectFrom('attachments').select(['id', 'size', 'storage_key'])
  if (afterId !== null) q = q.where('id', '>', afterId)
  return q.orderBy('id').limit(limit).forNoKeyUpdate().execute()
}

export function listBlobs(db: Q) {
  return db.selectFrom('attachments').select(['id', 'size', 'storage_key']).orderBy('id').execute()
}

/** Attachments with no chunk in Postgres: their bytes are files (UPLOAD_STORE=fs). */
export async function countWithoutChunks(db: Q): Promise<number> {
  const row = await db
    .selectFrom('attachments as a')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where((eb) => eb.not(eb.exists(eb.selectFrom('attachment_chunks as c').select(sql.lit(1).as('one')).whereRef('c.storage_key', '=', 'a.storage_key'))))
    .executeTakeFirstOrThrow()
  return Number(row.n)
}
