import { type Kysely, sql } from 'kysely'

// Frozen in time: never import app code here.
// Encryption at rest (docs/decisions.md D51): with ENCRYPTION_KEYS set, `text` is '' and the
// AES-256-GCM blob sits in `text_cipher`, sealed under the key named by `key_id`. Both stay null
// for plaintext rows (encryption off, or written before it was turned on) and deleted ones.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('messages')
    .addColumn('key_id', 'text')
    .addColumn('text_cipher', 'bytea')
    .execute()
  await db.schema
    .alterTable('messages')
    .addCheckConstraint('messages_cipher_has_key', sql`(key_id is null) = (text_cipher is null)`)
    .execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('messages').dropConstraint('messages_cipher_has_key').execute()
  await db.schema.alterTable('messages').dropColumn('text_cipher').dropColumn('key_id').execute()
}
