import { sql, type Kysely } from 'kysely'
import type { Database } from './schema.ts'

/** The tables hash-partitioned by room (migrations/2026-12-01T01-00_partition-messages.ts, D120). */
export type RoomPartitioned = 'messages' | 'attachments' | 'reactions'

/**
 * The partitions of `table` (`messages_p0`, `messages_p1`, …, in remainder order), or the table
 * itself when it is not partitioned (a database migrated down). Jobs that walk every row (the
 * re-encryption) go one partition at a time, so each batch reads one partition's key range
 * instead of merging all of them.
 */
export async function partitionsOf(db: Kysely<Database>, table: RoomPartitioned): Promise<string[]> {
  const r = await sql<{ name: string }>`
    select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
    where i.inhparent = to_regclass(${table})
    order by substring(pg_get_expr(c.relpartbound, c.oid) from 'remainder ([0-9]+)')::int, c.relname`.execute(db)
  return r.rows.length > 0 ? r.rows.map((row) => row.name) : [table]
}
