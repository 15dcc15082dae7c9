import { type Kysely, sql } from 'kysely'

// Frozen in time: never import app code here.
// Versions (docs/decisions.md D90): each room counts its changes (`rooms.version`: every new
// message, edit, delete and reaction change bumps it in the same statement), and each message
// keeps the room version of its last change (`messages.version`). Existing rows start where
// their seqs are: version = seq, rooms.version = last_seq (edits made before this migration
// are simply older than any version a client can hold).
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('rooms').addColumn('version', 'bigint', (c) => c.notNull().defaultTo(0)).execute()
  await db.schema.alterTable('messages').addColumn('version', 'bigint', (c) => c.notNull().defaultTo(0)).execute()
  await sql`update rooms set version = last_seq`.execute(db)
  await sql`update messages set version = seq`.execute(db)
  // "Messages of a room changed after version v" (sync's `updated`, the feed's catch-up).
  await db.schema.createIndex('messages_room_version_idx').on('messages').columns(['room_id', 'version']).execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('messages_room_version_idx').execute()
  await db.schema.alterTable('messages').dropColumn('version').execute()
  await db.schema.alterTable('rooms').dropColumn('version').execute()
}
