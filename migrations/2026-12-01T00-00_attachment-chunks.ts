import { type Kysely, sql } from 'kysely'

// Frozen in time: never import app code here.
// Attachment bytes in Postgres, in chunks (256 KiB each by default) so no file is one giant row
// read at once, and a range request reads only the chunks it needs. `key_id` is null for
// plaintext; encryption at rest (SPEC §5.8) will store each chunk's AES-256-GCM ciphertext with
// its key id here, so chunks can be re-encrypted one row at a time.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('attachment_chunks')
    .addColumn('storage_key', 'text', (c) => c.notNull())
    .addColumn('idx', 'integer', (c) => c.notNull())
    .addColumn('data', 'bytea', (c) => c.notNull())
    .addColumn('key_id', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('attachment_chunks_pkey', ['storage_key', 'idx'])
    .execute()
  // The orphan sweep: chunks of uploads that never finished.
  await db.schema.createIndex('attachment_chunks_created_idx').on('attachment_chunks').column('created_at').where(sql.ref('idx'), '=', sql.lit(0)).execute()
  // The unreferenced sweep: old uploads, and whether any message points at them.
  await db.schema.createIndex('attachments_created_idx').on('attachments').column('created_at').execute()
  await db.schema.createIndex('attachments_storage_key_idx').on('attachments').column('storage_key').execute()
  await db.schema
    .createIndex('messages_attachment_idx')
    .on('messages')
    .column('attachment_id')
    .where(sql.ref('attachment_id'), 'is not', null)
    .execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('messages_attachment_idx').ifExists().execute()
  await db.schema.dropIndex('attachments_storage_key_idx').ifExists().execute()
  await db.schema.dropIndex('attachments_created_idx').ifExists().execute()
  await db.schema.dropTable('attachment_chunks').ifExists().execute()
}
