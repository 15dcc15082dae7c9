import { type Kysely, sql } from 'kysely'

// Frozen in time: never import app code here.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('rooms')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('is_private', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('last_seq', 'bigint', (c) => c.notNull().defaultTo(0))
    .execute()

  await db.schema
    .createTable('memberships')
    .addColumn('room_id', 'text', (c) => c.notNull().references('rooms.id').onDelete('cascade'))
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('username', 'text', (c) => c.notNull())
    .addColumn('joined_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('last_read_seq', 'bigint', (c) => c.notNull().defaultTo(0))
    .addPrimaryKeyConstraint('memberships_pkey', ['room_id', 'user_id'])
    .execute()
  await db.schema.createIndex('memberships_user_idx').on('memberships').columns(['user_id', 'room_id']).execute()

  await db.schema
    .createTable('attachments')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('room_id', 'text', (c) => c.notNull().references('rooms.id').onDelete('cascade'))
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('file_name', 'text', (c) => c.notNull())
    .addColumn('mime_type', 'text', (c) => c.notNull())
    .addColumn('size', 'integer', (c) => c.notNull())
    .addColumn('storage_key', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()

  // Primary key (room_id, seq): seq is unique and gap-free per room, and the key is
  // partition-ready (SPEC §7: messages partitioned by room).
  await db.schema
    .createTable('messages')
    .addColumn('room_id', 'text', (c) => c.notNull().references('rooms.id').onDelete('cascade'))
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .addColumn('id', 'uuid', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('username', 'text', (c) => c.notNull())
    .addColumn('text', 'text', (c) => c.notNull())
    .addColumn('reply_to', 'uuid')
    .addColumn('client_msg_id', 'text')
    .addColumn('attachment_id', 'uuid', (c) => c.references('attachments.id').onDelete('set null'))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('edited_at', 'timestamptz')
    .addColumn('deleted_at', 'timestamptz')
    .addPrimaryKeyConstraint('messages_pkey', ['room_id', 'seq'])
    .execute()
  await db.schema.createIndex('messages_room_id_idx').unique().on('messages').columns(['room_id', 'id']).execute()
  // Idempotent sends: one row per (room, user, clientMsgId).
  await db.schema
    .createIndex('messages_client_msg_idx')
    .unique()
    .on('messages')
    .columns(['room_id', 'user_id', 'client_msg_id'])
    .where(sql.ref('client_msg_id'), 'is not', null)
    .execute()

  await db.schema
    .createTable('reactions')
    .addColumn('room_id', 'text', (c) => c.notNull())
    .addColumn('message_id', 'uuid', (c) => c.notNull())
    .addColumn('emoji', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('reactions_pkey', ['room_id', 'message_id', 'emoji', 'user_id'])
    .addForeignKeyConstraint('reactions_message_fk', ['room_id', 'message_id'], 'messages', ['room_id', 'id'], (c) =>
      c.onDelete('cascade'),
    )
    .execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of ['reactions', 'messages', 'attachments', 'memberships', 'rooms']) {
    await db.schema.dropTable(table).ifExists().execute()
  }
}
