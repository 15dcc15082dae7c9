import type { ColumnType, Generated, Insertable, Selectable } from 'kysely'

/** bigint columns come back from pg as strings; we convert at the repository edge. */
type BigIntColumn = ColumnType<string | number, number | string, number | string>

export interface RoomsTable {
  id: string
  name: string
  is_private: Generated<boolean>
  created_by: string
  created_at: Generated<Date>
  last_seq: Generated<BigIntColumn>
  /** The room's change counter: every new message, edit, delete and reaction change bumps it (D90). */
  version: Generated<BigIntColumn>
}

export interface MembershipsTable {
  room_id: string
  user_id: string
  username: string
  joined_at: Generated<Date>
  last_read_seq: Generated<BigIntColumn>
}

/** Hash-partitioned by room_id, as are reactions and attachments (D120): every key starts with room_id. */
export interface MessagesTable {
  room_id: string
  seq: BigIntColumn
  id: string
  user_id: string
  username: string
  /** Plaintext, or '' when the text is encrypted (then `key_id` and `text_cipher` are set). */
  text: string
  /** The ENCRYPTION_KEYS id that sealed `text_cipher`; null for plaintext and deleted rows. */
  key_id: string | null
  text_cipher: Uint8Array | null
  reply_to: string | null
  client_msg_id: string | null
  attachment_id: string | null
  created_at: Date
  edited_at: Date | null
  deleted_at: Date | null
  /** The room's version at this message's last change (its creation, edit, delete or reaction). */
  version: BigIntColumn
}

export interface AttachmentsTable {
  id: string
  room_id: string
  user_id: string
  /** Plaintext, or '' when the name is encrypted (then `key_id` and `file_name_cipher` are set). */
  file_name: string
  /** The ENCRYPTION_KEYS id that sealed `file_name_cipher`; null for a plaintext name. */
  key_id: string | null
  file_name_cipher: Uint8Array | null
  mime_type: string
  size: number
  storage_key: string
  created_at: Generated<Date>
}

/** Attachment bytes in the Postgres blob store; `key_id` names the key that sealed `data` (null: plaintext). */
export interface AttachmentChunksTable {
  storage_key: string
  idx: number
  data: Uint8Array
  key_id: string | null
  created_at: Generated<Date>
}

export interface ReactionsTable {
  room_id: string
  message_id: string
  emoji: string
  user_id: string
  created_at: Generated<Date>
}

/** One row per node that reached Postgres lately (readiness, D80). */
export interface NodeHeartbeatsTable {
  node_id: string
  /** Whether the node reached Redis at its last heartbeat. */
  redis_ok: boolean
  at: Generated<Date>
}

/** The Kysely database type. */
export interface Database {
  rooms: RoomsTable
  memberships: MembershipsTable
  messages: MessagesTable
  attachments: AttachmentsTable
  attachment_chunks: AttachmentChunksTable
  reactions: ReactionsTable
  node_heartbeats: NodeHeartbeatsTable
}

export type RoomRow = Selectable<RoomsTable>
export type MessageRow = Selectable<MessagesTable>
export type NewMessageRow = Insertable<MessagesTable>
export type AttachmentRow = Selectable<AttachmentsTable>
