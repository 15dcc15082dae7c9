import { type Kysely, sql } from 'kysely'

// Frozen in time: never import app code here.
// Encryption at rest for attachments (docs/decisions.md D85, D87): with ENCRYPTION_KEYS set, a
// file name is stored as '' in `file_name` and AES-256-GCM sealed in `file_name_cipher` under the
// key named by `key_id`; both null for plaintext names. The bytes' chunks already have
// `attachment_chunks.key_id` (2026-12-01T00-00); mime type and size stay plain.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('attachments')
    .addColumn('key_id', 'text')
    .addColumn('file_name_cipher', 'bytea')
    .execute()
  await db.schema
    .alterTable('attachments')
    .addCheckConstraint('attachments_cipher_has_key', sql`(key_id is null) = (file_name_cipher is null)`)
    .execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('attachments').dropConstraint('attachments_cipher_has_key').execute()
  await db.schema.alterTable('attachments').dropColumn('file_name_cipher').dropColumn('key_id').execute()
}
