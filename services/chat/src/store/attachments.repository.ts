import { sql, type Kysely } from 'kysely'
import type { AttachmentRow, Database } from './schema.ts'

type Q = Kysely<Database>

export interface NewAttachment {
  id: string
  roomId: string
  userId: string
  fileName: string
  mimeType: string
  size: number
  storageKey: string
}

export async function insertAttachment(db: Q, a: NewAttachment): Promise<void> {
  await db
    .insertInto('attachments')
    .values({ id: a.id, room_id: a.roomId, user_id: a.userId, file_name: a.fileName, mime_type: a.mimeType, size: a.size, storage_key: a.storageKey })
    .execute()
}

export function findAttachment(db: Q, id: string): Promise<AttachmentRow | undefined> {
  return db.selectFrom('attachments').selectAll().where('id', '=', id).executeTakeFirst()
}

/** The attachment and whether a (not deleted) message shows it. */
export async function findWithReference(db: Q, id: string): Promise<(AttachmentRow & { referenced: boolean }) | undefined> {
  const row = await db
    .selectFrom('attachments as a')
    .selectAll('a')
    .select((eb) =>
      eb
        .exists(eb.selectFrom('messages as m').select(sql.lit(1).as('one')).whereRef('m.attachment_id', '=', 'a.id').where('m.deleted_at', 'is', null))
        .as('referenced'),
    )
    .where('a.id', '=', id)
    .executeTakeFirst()
  return row && { ...row, referenced: Boolean(row.referenced) }
}

/**
 * Deletes up to `limit` uploads created before `cutoff` that no message references, and returns
 * their storage keys (the caller removes the bytes). Rows another node is deleting right now are
 * skipped, and a row is deleted once whoever runs it: safe on every node at once.
 */
export async function deleteUnreferenced(db: Q, cutoff: Date, limit: number): Promise<string[]> {
  const rows = await db
    .deleteFrom('attachments')
    .where('id', 'in', (eb) =>
      eb
        .selectFrom('attachments as a')
        .select('a.id')
        .where('a.created_at', '<', cutoff)
        .where((w) => w.not(w.exists(w.selectFrom('messages as m').select(sql.lit(1).as('one')).whereRef('m.attachment_id', '=', 'a.id'))))
        .orderBy('a.created_at')
        .limit(limit)
        .forUpdate()
        .skipLocked(),
    )
    .returning('storage_key')
    .execute()
  return rows.map((r) => r.storage_key)
}

/** Which of `keys` some attachment row still uses (the blob stores' orphan sweep keeps those). */
export async function keysInUse(db: Q, keys: string[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set()
  const rows = await db.selectFrom('attachments').select('storage_key').where('storage_key', 'in', keys).execute()
  return new Set(rows.map((r) => r.storage_key))
}
