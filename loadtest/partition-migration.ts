/**
 * How long the partitioning migration (migrations/2026-12-01T01-00_partition-messages.ts) takes
 * on this machine: a scratch database at the migration before it, filled with synthetic rows
 * (encrypted-size text, one reaction per three messages), then the migration timed. The figure
 * in infra/runbooks/messages-partitioning.md comes from here.
 *
 *   node --import tsx loadtest/partition-migration.ts [--messages 300000] [--rooms 3000] [--partitions 16]
 *
 * PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres) must be allowed to create
 * databases; the scratch one is dropped at the end, also on failure.
 */
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { FileMigrationProvider, Kysely, Migrator, PostgresDialect, sql } from 'kysely'
import pg from 'pg'

const { values } = parseArgs({ options: { messages: { type: 'string', default: '300000' }, rooms: { type: 'string', default: '3000' }, partitions: { type: 'string', default: '16' } } })
const messages = Number(values.messages)
const rooms = Number(values.rooms)
process.env.MESSAGE_PARTITIONS = values.partitions
const adminUrl = process.env.PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const name = `sb_partition_bench_${process.pid}`
const admin = async (q: string) => {
  const c = new pg.Client({ connectionString: adminUrl })
  await c.connect()
  try {
    await c.query(q)
  } finally {
    await c.end()
  }
}

await admin(`create database ${name}`)
const url = new URL(adminUrl)
url.pathname = `/${name}`
const db = new Kysely<any>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url.toString(), max: 1 }) }) })
try {
  const migrationFolder = fileURLToPath(new URL('../migrations', import.meta.url))
  const migrator = new Migrator({ db, provider: new FileMigrationProvider({ fs, path, migrationFolder }) })
  const before = await migrator.migrateTo('2026-12-01T00-20_node-heartbeats')
  if (before.error) throw before.error
  const perRoom = Math.ceil(messages / rooms)
  await sql`insert into rooms (id, name, created_by, last_seq, version) select 'r' || g, 'r', 'u', ${perRoom}, ${perRoom} from generate_series(1, ${rooms}::int) g`.execute(db)
  // 80 bytes of "ciphertext" per row, about what a short sealed text is.
  await sql`insert into messages (room_id, seq, id, user_id, username, text, client_msg_id, created_at, key_id, text_cipher, version)
    select 'r' || (g % ${rooms}::int + 1), g / ${rooms}::int + 1, gen_random_uuid(), 'u' || (g % 7), 'user', '', 'c' || g, now(), 'k1',
      decode(repeat(md5(g::text), 5), 'hex'), g / ${rooms}::int + 1
    from generate_series(0, ${messages - 1}::int) g`.execute(db)
  await sql`insert into reactions (room_id, message_id, emoji, user_id) select room_id, id, '👍', 'u9' from messages where seq % 3 = 0`.execute(db)
  await sql`vacuum analyze`.execute(db)
  const size = await sql<{ bytes: string; reactions: string }>`
    select pg_total_relation_size('messages') + pg_total_relation_size('reactions') as bytes, (select count(*) from reactions) as reactions`.execute(db)
  const t0 = performance.now()
  const result = await migrator.migrateToLatest()
  if (result.error) throw result.error
  const seconds = (performance.now() - t0) / 1000
  console.log(JSON.stringify({
    messages,
    reactions: Number(size.rows[0].reactions),
    rooms,
    partitions: Number(values.partitions),
    tableBytes: Number(size.rows[0].bytes),
    seconds: Math.round(seconds * 100) / 100,
    messagesPerSecond: Math.round(messages / seconds),
  }))
} finally {
  await db.destroy()
  await admin(`drop database if exists ${name} with (force)`)
}
