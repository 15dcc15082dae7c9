import { type Kysely, sql } from 'kysely'

// Frozen in time: never import app code here.
// Messages partitioned by room (SPEC §7, docs/decisions.md D120–D123): `messages`, `reactions`
// and `attachments` (the metadata rows; the bytes in `attachment_chunks` are the blob store's,
// keyed by storage key) become `PARTITION BY HASH (room_id)` with the same modulus, so a room's
// messages, reactions and uploads sit in partitions of the same number (`messages_p3`,
// `reactions_p3`, `attachments_p3`) and can move to another server together. The count is
// MESSAGE_PARTITIONS (default 16), read when this migration runs: changing it later means
// rebuilding the tables (down, then up again with the new count).
//
// Every key carries the partition key: messages (room_id, seq) and unique (room_id, id) and
// (room_id, user_id, client_msg_id); attachments (room_id, id) where it was (id); a message's
// attachment reference is (room_id, attachment_id) → attachments (room_id, id). Nothing in the
// AAD of encrypted values changes (message text: room id and message id; attachment names and
// chunks: attachment id), so rows are copied as they are and keep decrypting.
//
// The copy: rename the old tables, create the new ones, insert … select, drop the old ones,
// then indexes and constraints (faster after a bulk load), in the migrator's one transaction:
// the three tables are locked for the whole copy. infra/runbooks/messages-partitioning.md says
// what to do with a big table.

export const DEFAULT_PARTITIONS = 16
export const MAX_PARTITIONS = 1024

/** MESSAGE_PARTITIONS, validated as config.ts does (same words). */
export function partitionCount(env: Record<string, string | undefined> = process.env): number {
  const raw = env.MESSAGE_PARTITIONS
  if (raw === undefined || raw === '') return DEFAULT_PARTITIONS
  const n = /^\d{1,5}$/.test(raw.trim()) ? Number(raw.trim()) : NaN
  if (!(n >= 1 && n <= MAX_PARTITIONS)) {
    throw new Error(`MESSAGE_PARTITIONS must be an integer from 1 to ${MAX_PARTITIONS} (got ${JSON.stringify(raw.slice(0, 40))})`)
  }
  return n
}

const MESSAGE_COLUMNS = [
  'room_id', 'seq', 'id', 'user_id', 'username', 'text', 'reply_to', 'client_msg_id', 'attachment_id',
  'created_at', 'edited_at', 'deleted_at', 'key_id', 'text_cipher', 'version',
]
const ATTACHMENT_COLUMNS = ['id', 'room_id', 'user_id', 'file_name', 'mime_type', 'size', 'storage_key', 'created_at', 'key_id', 'file_name_cipher']
const REACTION_COLUMNS = ['room_id', 'message_id', 'emoji', 'user_id', 'created_at']

const TABLES = ['attachments', 'messages', 'reactions'] as const

/**
 * Rebuilds the three tables: hash-partitioned into `partitions` when a number, as a plain table
 * each (the layout before this migration) when null. Rows, names and constraints are kept.
 */
async function rebuild(db: Kysely<any>, partitions: number | null): Promise<void> {
  const run = (q: string) => sql.raw(q).execute(db)
  // Old tables out of the way; their indexes keep their names until they are dropped below.
  for (const t of [...TABLES].reverse()) await run(`alter table ${t} rename to ${t}_before`)

  const by = partitions === null ? '' : ' partition by hash (room_id)'
  await run(`create table attachments (
    id uuid not null, room_id text not null, user_id text not null, file_name text not null, mime_type text not null,
    size integer not null, storage_key text not null, created_at timestamptz not null default now(), key_id text, file_name_cipher bytea
  )${by}`)
  await run(`create table messages (
    room_id text not null, seq bigint not null, id uuid not null, user_id text not null, username text not null, text text not null,
    reply_to uuid, client_msg_id text, attachment_id uuid, created_at timestamptz not null, edited_at timestamptz, deleted_at timestamptz,
    key_id text, text_cipher bytea, version bigint not null default 0
  )${by}`)
  await run(`create table reactions (
    room_id text not null, message_id uuid not null, emoji text not null, user_id text not null, created_at timestamptz not null default now()
  )${by}`)
  if (partitions !== null) {
    for (const t of TABLES) {
      for (let i = 0; i < partitions; i++) {
        await run(`create table ${t}_p${i} partition of ${t} for values with (modulus ${partitions}, remainder ${i})`)
      }
    }
  }

  const copy = (t: string, cols: string[]) => run(`insert into ${t} (${cols.join(', ')}) select ${cols.join(', ')} from ${t}_before`)
  await copy('attachments', ATTACHMENT_COLUMNS)
  await copy('messages', MESSAGE_COLUMNS)
  await copy('reactions', REACTION_COLUMNS)
  for (const t of [...TABLES].reverse()) await run(`drop table ${t}_before`)

  const partitioned = partitions !== null
  await run(`alter table attachments add constraint attachments_pkey primary key (${partitioned ? 'room_id, id' : 'id'})`)
  await run('alter table attachments add constraint attachments_room_id_fkey foreign key (room_id) references rooms (id) on delete cascade')
  await run('alter table attachments add constraint attachments_cipher_has_key check ((key_id is null) = (file_name_cipher is null))')
  // A download by bare id (GET /api/attachments/:id without ?room=, links made before this) probes each partition's index.
  if (partitioned) await run('create index attachments_id_idx on attachments (id)')
  await run('create index attachments_created_idx on attachments (created_at)')
  await run('create index attachments_storage_key_idx on attachments (storage_key)')

  await run('alter table messages add constraint messages_pkey primary key (room_id, seq)')
  await run('create unique index messages_room_id_idx on messages (room_id, id)')
  await run('create unique index messages_client_msg_idx on messages (room_id, user_id, client_msg_id) where client_msg_id is not null')
  await run('create index messages_room_version_idx on messages (room_id, version)')
  await run(`create index messages_attachment_idx on messages (${partitioned ? 'room_id, attachment_id' : 'attachment_id'}) where attachment_id is not null`)
  await run('alter table messages add constraint messages_room_id_fkey foreign key (room_id) references rooms (id) on delete cascade')
  await run(
    partitioned
      ? // SET NULL of the reference only: room_id stays (PostgreSQL 15+).
        'alter table messages add constraint messages_attachment_id_fkey foreign key (room_id, attachment_id) references attachments (room_id, id) on delete set null (attachment_id)'
      : 'alter table messages add constraint messages_attachment_id_fkey foreign key (attachment_id) references attachments (id) on delete set null',
  )
  await run('alter table messages add constraint messages_cipher_has_key check ((key_id is null) = (text_cipher is null))')

  await run('alter table reactions add constraint reactions_pkey primary key (room_id, message_id, emoji, user_id)')
  await run(
    'alter table reactions add constraint reactions_message_fk foreign key (room_id, message_id) references messages (room_id, id) on delete cascade',
  )
  // Fresh statistics, so the first queries after the copy plan on the new tables' real sizes.
  await run('analyze attachments, messages, reactions')
}

export async function up(db: Kysely<any>): Promise<void> {
  const n = partitionCount()
  // The app never lets a message show another room's upload; a row that does would break the
  // new (room_id, attachment_id) reference, so say which instead of failing on the constraint.
  const crossed = await sql<{ room_id: string; id: string }>`
    select m.room_id, m.id from messages m join attachments a on a.id = m.attachment_id where a.room_id <> m.room_id limit 5`.execute(db)
  if (crossed.rows.length > 0) {
    const which = crossed.rows.map((r) => `${r.id} (room ${r.room_id})`).join(', ')
    throw new Error(`messages show attachments of another room, which partitioned tables cannot reference: ${which}; set their attachment_id to null first`)
  }
  await rebuild(db, n)
}

export async function down(db: Kysely<any>): Promise<void> {
  await rebuild(db, null)
}
