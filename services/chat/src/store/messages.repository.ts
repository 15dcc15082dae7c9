import { sql, type Kysely, type RawBuilder } from 'kysely'
import { PREPARED } from './db.ts'
import type { StoredText } from './message-text.ts'
import type { Database, MessageRow } from './schema.ts'

type Q = Kysely<Database>

export type HistoryRow = MessageRow & {
  att_file_name: string | null
  att_key_id: string | null
  att_file_name_cipher: Uint8Array | null
  att_mime_type: string | null
  att_size: number | null
}

function selectHistory(db: Q, roomId: string) {
  return db
    .selectFrom('messages as m')
    // The attachment's room is the message's: the join reads one attachments partition (D121).
    .leftJoin('attachments as a', (j) => j.on('a.room_id', '=', roomId).onRef('a.id', '=', 'm.attachment_id'))
    .selectAll('m')
    .select(['a.file_name as att_file_name', 'a.key_id as att_key_id', 'a.file_name_cipher as att_file_name_cipher', 'a.mime_type as att_mime_type', 'a.size as att_size'])
    .where('m.room_id', '=', roomId)
}

/** Messages with afterSeq < seq <= upToSeq, oldest first, at most `limit`. */
export function listRange(db: Q, roomId: string, afterSeq: number, upToSeq: number, limit: number): Promise<HistoryRow[]> {
  return selectHistory(db, roomId)
    .where('m.seq', '>', afterSeq)
    .where('m.seq', '<=', upToSeq)
    .orderBy('m.seq', 'asc')
    .limit(limit)
    .execute() as Promise<HistoryRow[]>
}

/** The `limit` messages below `beforeSeq`, newest first. */
export function listBefore(db: Q, roomId: string, beforeSeq: number, limit: number): Promise<HistoryRow[]> {
  return selectHistory(db, roomId)
    .where('m.seq', '<', beforeSeq)
    .orderBy('m.seq', 'desc')
    .limit(limit)
    .execute() as Promise<HistoryRow[]>
}

export function findMessage(db: Q, roomId: string, by: { id: string } | { seq: number }) {
  let q = db.selectFrom('messages').selectAll().where('room_id', '=', roomId)
  q = 'id' in by ? q.where('id', '=', by.id) : q.where('seq', '=', by.seq)
  return q.executeTakeFirst()
}

export async function reactionsFor(db: Q, roomId: string, messageIds: string[]) {
  if (messageIds.length === 0) return []
  return db
    .selectFrom('reactions')
    .select(['message_id', 'emoji', 'user_id'])
    .where('room_id', '=', roomId)
    .where('message_id', 'in', messageIds)
    .orderBy('created_at')
    .execute()
}

/** What a change became: the message's seq and the room version it produced (D90). */
export interface Stamped {
  seq: number
  version: number
}

/**
 * One change to a live message, in ONE statement: lock the room row (every change of a room
 * serializes on it, as the group commit does), apply `change` to the message if it is still not
 * deleted (the row is re-checked after the lock, EvalPlanQual), and only then bump the room's
 * version and stamp it on the message. A message deleted meanwhile changes nothing: undefined.
 */
async function stampChange(db: Q, roomId: string, id: string, set: RawBuilder<unknown>): Promise<Stamped | undefined> {
  const r = await sql<{ seq: string | number; version: string | number }>`
    with locked as materialized (
      select version from rooms where id = ${roomId} for update
    ),
    changed as (
      update messages m set ${set}, version = (select version from locked) + 1
      where m.room_id = ${roomId} and m.id = ${id} and m.deleted_at is null
      returning m.seq, m.version
    ),
    bumped as (
      update rooms r set version = r.version + 1 where r.id = ${roomId} and exists (select 1 from changed)
    )
    select seq, version from changed`.execute(db)
  const row = r.rows[0]
  return row && { seq: Number(row.seq), version: Number(row.version) }
}

/** Writes an edit in its stored form (`MessageTexts.seal`), bumping the room version. */
export function updateText(db: Q, roomId: string, id: string, stored: StoredText, at: Date): Promise<Stamped | undefined> {
  return stampChange(db, roomId, id, sql`text = ${stored.text}, key_id = ${stored.keyId}, text_cipher = ${stored.textCipher}, edited_at = ${at}`)
}

/** Turns a message into a tombstone, bumping the room version. */
export function softDelete(db: Q, roomId: string, id: string, at: Date): Promise<Stamped | undefined> {
  // The attachment goes with the text: unreferenced now, the upload sweep removes it.
  return stampChange(db, roomId, id, sql`text = '', key_id = null, text_cipher = null, deleted_at = ${at}, attachment_id = null`)
}

/**
 * Adds or removes one reaction of a live message in ONE statement. Only a real change (a new
 * reaction, a removed one) bumps the room version and stamps the message: a repeated `on`
 * returns `{ changed: false }`. undefined when the message is gone or deleted.
 */
export async function setReaction(
  db: Q,
  roomId: string,
  messageId: string,
  emoji: string,
  userId: string,
  on: boolean,
): Promise<(Stamped & { changed: true }) | { changed: false } | undefined> {
  const change = on
    ? sql`insert into reactions (room_id, message_id, emoji, user_id)
          select ${roomId}, t.id, ${emoji}, ${userId} from target t
          on conflict do nothing returning 1`
    : sql`delete from reactions x using target t
          where x.room_id = ${roomId} and x.message_id = t.id and x.emoji = ${emoji} and x.user_id = ${userId} returning 1`
  const r = await sql<{ found: boolean; seq: string | number | null; version: string | number | null }>`
    with locked as materialized (
      select version from rooms where id = ${roomId} for update
    ),
    target as materialized (
      select m.id from locked, messages m
      where m.room_id = ${roomId} and m.id = ${messageId} and m.deleted_at is null for update of m
    ),
    changed as (${change}),
    bumped as (
      update rooms r set version = r.version + 1 where r.id = ${roomId} and exists (select 1 from changed) returning r.version
    ),
    stamped as (
      update messages m set version = b.version from bumped b where m.room_id = ${roomId} and m.id = ${messageId}
      returning m.seq, m.version
    )
    select exists (select 1 from target) as found, (select seq from stamped) as seq, (select version from stamped) as version`.execute(db)
  const row = r.rows[0]
  if (!row?.found) return undefined
  if (row.version === null || row.seq === null) return { changed: false }
  return { changed: true, seq: Number(row.seq), version: Number(row.version) }
}

/**
 * The messages of a room changed after `afterVersion` (`version > afterVersion`), in their current
 * state, oldest change first, at most `limit`; `maxSeq` keeps only those a client already holds.
 */
export function listChangedSince(db: Q, roomId: string, afterVersion: number, limit: number, maxSeq?: number): Promise<HistoryRow[]> {
  let q = selectHistory(db, roomId).where('m.version', '>', afterVersion)
  if (maxSeq !== undefined) q = q.where('m.seq', '<=', maxSeq)
  return q.orderBy('m.version', 'asc').limit(limit).execute() as Promise<HistoryRow[]>
}

// ---- group commit -------------------------------------------------------------------------

/** A message waiting for its seq; its text already in stored form (sealed in JS before the statement, D51). */
export interface Draft {
  id: string
  roomId: string
  userId: string
  username: string
  text: string
  keyId: string | null
  textCipher: Buffer | null
  replyTo: string | null
  clientMsgId: string | null
  attachmentId: string | null
}

/** What a committed (or deduplicated) draft became. */
export interface Committed {
  id: string
  seq: number
  /** The room version the message got (like seq, one per new message; a resend: the original's current one). */
  version: number
  createdAt: Date
  /** The draft was a resend: this is the original row, nothing new was written. */
  duplicate: boolean
}

/**
 * Commits a batch of drafts in ONE statement (one round trip, its own transaction): lock the
 * rooms in id order, skip resends already stored, number the rest per room after last_seq,
 * advance last_seq and insert. The UPDATE re-reads each room row after the lock (EvalPlanQual),
 * so seqs stay gap-free under concurrent nodes. The one case a single snapshot cannot see — the
 * same clientMsgId committed by another node between our snapshot and our lock — ends in a
 * unique violation that rolls everything back; then `commitBatchCarefully` runs instead.
 */
export async function commitBatch(db: Q, drafts: readonly Draft[], now: Date): Promise<Committed[]> {
  try {
    return await commitBatchInOneStatement(db, drafts, now)
  } catch (err) {
    if ((err as { code?: string }).code === '23505') return commitBatchCarefully(db, drafts, now)
    throw err
  }
}

async function commitBatchInOneStatement(db: Q, drafts: readonly Draft[], now: Date): Promise<Committed[]> {
  const col = <T>(f: (d: Draft) => T) => drafts.map(f)
  const rows = await sql<{ kind: 'new' | 'dup'; ord: number; id: string; seq: number; version: number; created_at: Date }>`${sql.raw(PREPARED('commit_batch'))}
    with input as materialized (
      select * from unnest(
        ${col((d) => d.roomId)}::text[], ${col((d) => d.id)}::uuid[], ${col((d) => d.userId)}::text[],
        ${col((d) => d.username)}::text[], ${col((d) => d.text)}::text[], ${col((d) => d.replyTo)}::uuid[],
        ${col((d) => d.clientMsgId)}::text[], ${col((d) => d.attachmentId)}::uuid[],
        ${col((d) => d.keyId)}::text[], ${col((d) => d.textCipher)}::bytea[]
      ) with ordinality as t(room_id, id, user_id, username, text, reply_to, client_msg_id, attachment_id, key_id, text_cipher, ord)
    ),
    locked as materialized (
      select r.id from rooms r where r.id in (select room_id from input) order by r.id for update
    ),
    existing as (
      -- One probe per draft, by its room (a LATERAL with LIMIT is never flattened into a hash
      -- join over every partition): each probe reads its room's partition only (D122).
      select i.ord, m.id, m.seq, m.version, m.created_at from input i
      cross join lateral (
        select m.id, m.seq, m.version, m.created_at from messages m
        where m.room_id = i.room_id and m.user_id = i.user_id and m.client_msg_id = i.client_msg_id
        limit 1
      ) m
      where i.client_msg_id is not null
    ),
    fresh as (
      select i.*, row_number() over (partition by i.room_id order by i.ord) as n from input i
      where not exists (select 1 from existing e where e.ord = i.ord)
    ),
    counts as (
      select f.room_id, count(*) as c from fresh f join locked l on l.id = f.room_id group by f.room_id
    ),
    bumped as (
      update rooms r set last_seq = r.last_seq + c.c, version = r.version + c.c from counts c where r.id = c.room_id
      returning r.id, r.last_seq - c.c as base, r.version - c.c as vbase
    ),
    inserted as (
      insert into messages (room_id, seq, version, id, user_id, username, text, reply_to, client_msg_id, attachment_id, key_id, text_cipher, created_at)
      select f.room_id, b.base + f.n, b.vbase + f.n, f.id, f.user_id, f.username, f.text, f.reply_to, f.client_msg_id, f.attachment_id, f.key_id, f.text_cipher, ${now}::timestamptz
      from fresh f join bumped b on b.id = f.room_id
      returning id, seq, version
    )
    select 'new' as kind, f.ord, i.id, i.seq, i.version, ${now}::timestamptz as created_at from inserted i join fresh f on f.id = i.id
    union all
    select 'dup', e.ord, e.id, e.seq, e.version, e.created_at from existing e`.execute(db)
  const byOrd = new Map(rows.rows.map((r) => [Number(r.ord), r]))
  return drafts.map((d, i) => {
    const r = byOrd.get(i + 1)
    if (!r) throw new Error(`room ${d.roomId} vanished before commit`)
    return { id: r.id, seq: Number(r.seq), version: Number(r.version), createdAt: new Date(r.created_at), duplicate: r.kind === 'dup' }
  })
}

/** The multi-statement path: lock, then look for resends under the lock, then write. */
export async function commitBatchCarefully(db: Q, drafts: readonly Draft[], now: Date): Promise<Committed[]> {
  return db.transaction().execute(async (trx) => {
    const roomIds = [...new Set(drafts.map((d) => d.roomId))].sort()
    const locked = await sql<{ id: string; last_seq: number; version: number }>`
      select id, last_seq, version from rooms where id = any(${roomIds}::text[]) order by id for update`.execute(trx)
    const lastSeq = new Map(locked.rows.map((r) => [r.id, Number(r.last_seq)]))
    const lastVersion = new Map(locked.rows.map((r) => [r.id, Number(r.version)]))

    // Resends: read after taking the lock, so a concurrent commit of the same key is visible.
    const existing = new Map<string, Committed>()
    const keyed = drafts.filter((d) => d.clientMsgId !== null)
    if (keyed.length > 0) {
      const found = await sql<{ room_id: string; user_id: string; client_msg_id: string; id: string; seq: number; version: number; created_at: Date }>`
        select m.room_id, m.user_id, m.client_msg_id, m.id, m.seq, m.version, m.created_at
        from unnest(${keyed.map((d) => d.roomId)}::text[], ${keyed.map((d) => d.userId)}::text[], ${keyed.map((d) => d.clientMsgId)}::text[]) as k(room_id, user_id, client_msg_id)
        cross join lateral (
          select * from messages m where m.room_id = k.room_id and m.user_id = k.user_id and m.client_msg_id = k.client_msg_id limit 1
        ) m`.execute(trx)
      for (const r of found.rows) {
        existing.set(dedupeKey(r.room_id, r.user_id, r.client_msg_id), {
          id: r.id,
          seq: Number(r.seq),
          version: Number(r.version),
          createdAt: new Date(r.created_at),
          duplicate: true,
        })
      }
    }

    const { results, inserts } = assignSeqs(drafts, lastSeq, existing, now, lastVersion)
    if (inserts.length > 0) {
      const rooms = [...lastSeq.entries()]
      await sql`
        update rooms set last_seq = v.last_seq, version = v.version
        from unnest(${rooms.map((r) => r[0])}::text[], ${rooms.map((r) => r[1])}::bigint[], ${rooms.map((r) => lastVersion.get(r[0])!)}::bigint[]) as v(id, last_seq, version)
        where rooms.id = v.id and rooms.last_seq < v.last_seq`.execute(trx)
      await sql`
        insert into messages (room_id, seq, version, id, user_id, username, text, reply_to, client_msg_id, attachment_id, key_id, text_cipher, created_at)
        select r.*, ${now}::timestamptz from unnest(
          ${inserts.map((i) => i.draft.roomId)}::text[], ${inserts.map((i) => i.seq)}::bigint[], ${inserts.map((i) => i.version)}::bigint[],
          ${inserts.map((i) => i.draft.id)}::uuid[], ${inserts.map((i) => i.draft.userId)}::text[],
          ${inserts.map((i) => i.draft.username)}::text[], ${inserts.map((i) => i.draft.text)}::text[],
          ${inserts.map((i) => i.draft.replyTo)}::uuid[], ${inserts.map((i) => i.draft.clientMsgId)}::text[],
          ${inserts.map((i) => i.draft.attachmentId)}::uuid[], ${inserts.map((i) => i.draft.keyId)}::text[],
          ${inserts.map((i) => i.draft.textCipher)}::bytea[]) as r`.execute(trx)
    }
    return results
  })
}

export const dedupeKey = (roomId: string, userId: string, clientMsgId: string) => `${roomId}\u0000${userId}\u0000${clientMsgId}`

/**
 * Pure sequencing rule: each new draft takes its room's next seq, in queue order; a draft whose
 * (room, user, clientMsgId) already exists, or appeared earlier in the same batch, gets that
 * original instead. Mutates `lastSeq` to the rooms' new last seqs, and `lastVersion` (when given)
 * to their new versions: each new message also takes its room's next version (D90).
 */
export function assignSeqs(
  drafts: readonly Draft[],
  lastSeq: Map<string, number>,
  existing: Map<string, Committed>,
  now: Date,
  lastVersion: Map<string, number> = new Map(),
): { results: Committed[]; inserts: { draft: Draft; seq: number; version: number }[] } {
  const results: Committed[] = []
  const inserts: { draft: Draft; seq: number; version: number }[] = []
  for (const d of drafts) {
    const key = d.clientMsgId === null ? null : dedupeKey(d.roomId, d.userId, d.clientMsgId)
    const prior = key === null ? undefined : existing.get(key)
    if (prior) {
      results.push({ ...prior, duplicate: true })
      continue
    }
    const last = lastSeq.get(d.roomId)
    if (last === undefined) throw new Error(`room ${d.roomId} vanished before commit`)
    const seq = last + 1
    lastSeq.set(d.roomId, seq)
    const version = (lastVersion.get(d.roomId) ?? last) + 1
    lastVersion.set(d.roomId, version)
    const committed = { id: d.id, seq, version, createdAt: now, duplicate: false }
    if (key !== null) existing.set(key, committed)
    inserts.push({ draft: d, seq, version })
    results.push(committed)
  }
  return { results, inserts }
}

// ---- re-encryption (`npm run reencrypt`, D52) ------------------------------------------------

/** Rows whose text is not sealed under `keyId`: plaintext rows (deleted ones excepted) and other keys. */
const notOnKey = (keyId: string) => sql<boolean>`((key_id is null and text <> '') or key_id <> ${keyId})`

export async function countNotOnKey(db: Q, keyId: string): Promise<number> {
  const row = await db.selectFrom('messages').select((eb) => eb.fn.countAll<number>().as('n')).where(notOnKey(keyId)).executeTakeFirstOrThrow()
  return Number(row.n)
}

/**
 * The next `limit` rows of one partition of messages (`partitionsOf`) not on `keyId`, after
 * `after` in primary-key order, locked `FOR UPDATE` (call inside a transaction): a concurrent
 * edit waits for the rewrite, or the lock re-reads the row it wrote (and skips it when the edit
 * already used `keyId`).
 */
export async function lockNotOnKey(trx: Q, keyId: string, partition: string, after: { roomId: string; seq: number } | null, limit: number) {
  const from = after ? sql`and (room_id, seq) > (${after.roomId}, ${after.seq})` : sql``
  const r = await sql<Pick<MessageRow, 'room_id' | 'seq' | 'id' | 'text' | 'key_id' | 'text_cipher'>>`
    select room_id, seq, id, text, key_id, text_cipher from ${sql.table(partition)}
    where ${notOnKey(keyId)} ${from}
    order by room_id, seq limit ${limit} for update`.execute(trx)
  return r.rows
}

/** Rewrites the stored text of locked rows of one partition in one statement. */
export async function rewriteTexts(trx: Q, partition: string, rows: readonly { roomId: string; seq: number; stored: StoredText }[]): Promise<void> {
  if (rows.length === 0) return
  await sql`
    update ${sql.table(partition)} m set text = v.text, key_id = v.key_id, text_cipher = v.text_cipher
    from unnest(${rows.map((r) => r.roomId)}::text[], ${rows.map((r) => r.seq)}::bigint[], ${rows.map((r) => r.stored.text)}::text[],
      ${rows.map((r) => r.stored.keyId)}::text[], ${rows.map((r) => r.stored.textCipher)}::bytea[]) as v(room_id, seq, text, key_id, text_cipher)
    where m.room_id = v.room_id and m.seq = v.seq`.execute(trx)
}
