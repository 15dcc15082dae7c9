/**
 * Messages partitioned by room (SPEC §7, migrations/2026-12-01T01-00_partition-messages.ts,
 * D120–D123): the migration on a database that already holds messages, edits, deletes,
 * reactions and encrypted attachments (written by the app), on Postgres and on PGlite; every hot
 * statement the repositories produce reads one partition (EXPLAIN ANALYZE of the exact SQL);
 * the partition count comes from MESSAGE_PARTITIONS.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { after, afterEach, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { PGlite } from '@electric-sql/pglite'
import { FileMigrationProvider, Kysely, Migrator, PostgresDialect, sql, type CompiledQuery } from 'kysely'
import { PGliteDialect } from 'kysely-pglite-dialect'
import pg from 'pg'
import { loadConfig } from '../src/config.ts'
import { parseKeyring } from '../src/crypto/at-rest.ts'
import { newMessageId } from '../src/ids.ts'
import { AttachmentSeals } from '../src/store/attachment-seal.ts'
import * as attachments from '../src/store/attachments.repository.ts'
import { PostgresBlobStore } from '../src/store/blob-store.postgres.ts'
import type { Db } from '../src/store/db.ts'
import { MessageTexts } from '../src/store/message-text.ts'
import * as messages from '../src/store/messages.repository.ts'
import { partitionsOf } from '../src/store/partitions.ts'
import * as rooms from '../src/store/rooms.repository.ts'
import type { Database } from '../src/store/schema.ts'
import { partitionCount } from '../../../migrations/2026-12-01T01-00_partition-messages.ts'
import { ack, chatClient, closeClients, createTestDatabase, devToken, getJson, redisPrefix, REDIS_URL, startNode, type TestNode } from './helpers.ts'

const migrationFolder = fileURLToPath(new URL('../../../migrations', import.meta.url))
/** The migration before partitioning: the database an existing deployment has. */
const BEFORE = '2026-12-01T00-20_node-heartbeats'
const migrator = (db: Kysely<any>) => new Migrator({ db, provider: new FileMigrationProvider({ fs, path, migrationFolder }) })
const migrateTo = async (db: Kysely<any>, name: string) => {
  const { error } = await migrator(db).migrateTo(name)
  if (error) throw error
}
const migrateToLatest = async (db: Kysely<any>) => {
  const { error } = await migrator(db).migrateToLatest()
  if (error) throw error
}

const key = () => randomBytes(32).toString('base64')

/** MESSAGE_PARTITIONS for the migrations run inside `fn` (the migration reads process.env). */
async function withPartitions<T>(value: string | undefined, fn: () => Promise<T>): Promise<T> {
  const saved = process.env.MESSAGE_PARTITIONS
  if (value === undefined) delete process.env.MESSAGE_PARTITIONS
  else process.env.MESSAGE_PARTITIONS = value
  try {
    return await fn()
  } finally {
    if (saved === undefined) delete process.env.MESSAGE_PARTITIONS
    else process.env.MESSAGE_PARTITIONS = saved
  }
}

/** How each table is partitioned: its strategy (`h` hash, null plain) and partition count. */
async function layout(db: Kysely<any>) {
  const out: Record<string, { strategy: string | null; partitions: number }> = {}
  for (const t of ['messages', 'reactions', 'attachments']) {
    const r = await sql<{ strategy: string | null; partitions: number }>`
      select (select partstrat from pg_partitioned_table where partrelid = ${t}::regclass) as strategy,
        (select count(*)::int from pg_inherits where inhparent = ${t}::regclass) as partitions`.execute(db)
    out[t] = r.rows[0]
  }
  return out
}

const countRows = async (db: Kysely<any>) => {
  const r = await sql<{ m: number; r: number; a: number; enc: number }>`
    select (select count(*)::int from messages) as m, (select count(*)::int from reactions) as r, (select count(*)::int from attachments) as a,
      (select count(*)::int from messages where key_id is not null) as enc`.execute(db)
  return r.rows[0]
}

const PNG_1PX = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64')
/** A PNG (judged image/png from its bytes) of three 256 KiB chunks. */
const tiny = (fill: number) => Buffer.concat([PNG_1PX, Buffer.alloc(600 * 1024 - PNG_1PX.length, fill)])

async function upload(url: string, token: string, roomId: string, bytes: Buffer, name: string) {
  const form = new FormData()
  form.append('roomId', roomId)
  form.append('file', new Blob([new Uint8Array(bytes)], { type: 'image/png' }), name)
  const res = await fetch(`${url}/api/uploads`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: form })
  assert.equal(res.status, 201, await res.clone().text())
  return (await res.json()) as { id: string; url: string }
}

describe('partitioned messages: the migration on a database with data (Postgres, through the app)', () => {
  const database = createTestDatabase()
  const redis = redisPrefix()
  const env = async () => ({ DATABASE_URL: (await database).url, REDIS_URL, REDIS_PREFIX: redis.prefix, ENCRYPTION_KEYS: `k1:${KEY}`, RATE_LIMIT_MESSAGES: '10000' })
  const KEY = key()
  let node: TestNode | undefined
  after(async () => {
    closeClients()
    await node?.close()
    await (await database).drop()
    await redis.clear()
  })

  it('copies every row (encrypted as written), history, sync with versions and downloads read the same, resends dedupe, new sends continue the seqs', async () => {
    node = await startNode(await env(), { migrate: (db) => migrateTo(db, BEFORE) })
    assert.equal((await layout(node.db)).messages.strategy, null, 'starts unpartitioned')
    const ana = await devToken(node.url, 'ana')
    const ben = await devToken(node.url, 'ben')
    const a = await chatClient(node.url, ana.token)
    const b = await chatClient(node.url, ben.token)
    // Rooms enough to land in several partitions.
    const roomIds = Array.from({ length: 6 }, (_, i) => `part-${i}`)
    const files = new Map<string, Buffer>()
    for (const [i, roomId] of roomIds.entries()) {
      assert.equal((await ack(a, 'room:join', roomId)).status, 'ok')
      assert.equal((await ack(b, 'room:join', roomId)).status, 'ok')
      const sent: string[] = []
      for (let n = 1; n <= 5; n++) {
        const r = await ack(n % 2 ? a : b, 'chat:message', { roomId, text: `${roomId} says ${n}`, clientMsgId: `c-${n}` })
        assert.equal(r.status, 'ok')
        sent.push(r.messageId)
      }
      const bytes = tiny(i + 1)
      const up = await upload(node.url, ana.token, roomId, bytes, `photo-${i}.png`)
      files.set(up.id, bytes)
      const withFile = await ack(a, 'chat:message', { roomId, text: 'a photo', attachmentId: up.id, clientMsgId: 'c-file' })
      assert.equal(withFile.status, 'ok')
      // A deleted message that had a file: the tombstone keeps no reference.
      const gone = await upload(node.url, ana.token, roomId, tiny(200), 'gone.png')
      const doomed = await ack(a, 'chat:message', { roomId, text: 'oops', attachmentId: gone.id })
      assert.equal((await ack(a, 'chat:delete', { roomId, messageId: doomed.messageId })).status, 'ok')
      assert.equal((await ack(a, 'chat:edit', { roomId, messageId: sent[0], text: `${roomId} edited` })).status, 'ok')
      assert.equal((await ack(b, 'chat:react', { roomId, messageId: sent[0], emoji: '👍', on: true })).status, 'ok')
      assert.equal((await ack(a, 'chat:react', { roomId, messageId: sent[0], emoji: '👍', on: true })).status, 'ok')
      assert.equal((await ack(a, 'chat:react', { roomId, messageId: withFile.messageId, emoji: 'constructor', on: true })).status, 'ok')
      assert.equal((await ack(b, 'chat:react', { roomId, messageId: sent[1], emoji: '🎉', on: true })).status, 'ok')
      assert.equal((await ack(b, 'chat:react', { roomId, messageId: sent[1], emoji: '🎉', on: false })).status, 'ok')
      assert.equal((await ack(b, 'chat:read', { roomId, seq: 3 })).status, 'ok')
    }
    const before = await countRows(node.db)
    assert.equal(before.m, 6 * 7)
    assert.equal(before.enc, 6 * 6, 'every live message is stored encrypted (the tombstones have no text)')
    assert.ok(before.r >= 6 * 3 && before.a >= 6)

    // What the app serves before: history pages, sync with versions, the rooms list.
    const read = async (n: TestNode, token: string) => {
      const s = await chatClient(n.url, token)
      const out: Record<string, unknown> = {}
      for (const roomId of roomIds) {
        const page = await getJson(n.url, token, `/api/rooms/${roomId}/messages?limit=100`)
        assert.equal(page.status, 200)
        const sync = await ack(s, 'chat:sync', { rooms: { [roomId]: { lastSeq: 2, version: 3 } } })
        assert.equal(sync.status, 'ok')
        out[roomId] = { page: page.body, rooms: sync.rooms[roomId], updated: sync.updated[roomId] }
      }
      out.rooms = (await getJson(n.url, token, '/api/rooms')).body
      s.disconnect()
      return out
    }
    const served = await read(node, ben.token)
    closeClients()
    await node.close()
    node = undefined

    // The rest of the migrations, as a node starting on the new release applies them.
    node = await withPartitions('8', async () => startNode(await env()))
    const shape = await layout(node.db)
    for (const t of ['messages', 'reactions', 'attachments']) assert.deepEqual(shape[t], { strategy: 'h', partitions: 8 }, t)
    assert.deepEqual(await countRows(node.db), before, 'every row copied')
    const perPartition = await sql<{ n: number }>`select count(distinct tableoid)::int as n from messages`.execute(node.db)
    assert.ok(perPartition.rows[0].n >= 2, 'the rooms spread over partitions')
    // A room's rows sit in partitions of one number (co-located).
    const colocated = await sql<{ bad: number }>`
      select count(*)::int as bad from messages m join reactions r on r.room_id = m.room_id and r.message_id = m.id
      where substring(m.tableoid::regclass::text from '[0-9]+$') <> substring(r.tableoid::regclass::text from '[0-9]+$')`.execute(node.db)
    assert.equal(colocated.rows[0].bad, 0)

    assert.deepEqual(await read(node, ben.token), served, 'history, sync (with updated) and the rooms list are the same')
    const some = (served[roomIds[0]] as any).page.messages as any[]
    assert.equal(some.find((m) => m.seq === 1).text, `${roomIds[0]} edited`)
    assert.deepEqual(some.find((m) => m.seq === 1).reactions, { '👍': [ben.userId, ana.userId] })

    // Every file downloads, by the url the messages carry and by its bare id.
    for (const roomId of roomIds) {
      const m = ((served[roomId] as any).page.messages as any[]).find((x) => x.attachment)
      assert.ok(m, roomId)
      const res: Response = await fetch(`${node.url}${m.attachment.url}`, { headers: { authorization: `Bearer ${ben.token}` } })
      assert.equal(res.status, 200)
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(files.get(m.attachment.id)!))
      const bare: Response = await fetch(`${node.url}/api/attachments/${m.attachment.id}`, { headers: { authorization: `Bearer ${ben.token}`, range: 'bytes=0-7' } })
      assert.equal(bare.status, 206)
    }

    // A resend from before the migration is still recognised; a new send takes the next seq and version.
    const s = await chatClient(node.url, ana.token)
    for (const roomId of roomIds) {
      const page = (served[roomId] as any).page.messages as any[]
      const head: { last_seq: unknown; version: unknown } = (await rooms.heads(node.db, [roomId]))[0]
      const again = await ack(s, 'chat:message', { roomId, text: 'a photo', clientMsgId: 'c-file' })
      assert.equal(again.status, 'ok')
      assert.equal(again.messageId, page.find((m) => m.text === 'a photo').id, 'the resend is the original')
      assert.equal(again.seq, page.find((m) => m.text === 'a photo').seq)
      const fresh = await ack(s, 'chat:message', { roomId, text: 'after the migration', clientMsgId: 'c-new' })
      assert.equal(fresh.status, 'ok')
      assert.equal(fresh.seq, Number(head.last_seq) + 1)
      const row = await messages.findMessage(node.db, roomId, { id: fresh.messageId })
      assert.equal(Number(row!.version), Number(head.version) + 1)
      assert.equal(row!.key_id, 'k1')
    }
    // An edit, a delete and a reaction on a copied message still work.
    const roomId = roomIds[1]
    const first = ((served[roomId] as any).page.messages as any[]).find((m) => m.seq === 5) // ana's
    assert.equal((await ack(s, 'chat:edit', { roomId, messageId: first.id, text: 'edited after' })).status, 'ok')
    assert.equal((await ack(s, 'chat:react', { roomId, messageId: first.id, emoji: '🔥', on: true })).status, 'ok')
    const third = ((served[roomId] as any).page.messages as any[]).find((m) => m.seq === 3)
    assert.equal((await ack(s, 'chat:delete', { roomId, messageId: third.id })).status, 'ok')
    const after2 = await getJson(node.url, ana.token, `/api/rooms/${roomId}/messages?limit=100`)
    const bySeq = new Map((after2.body.messages as any[]).map((m) => [m.seq, m]))
    assert.equal(bySeq.get(5).text, 'edited after')
    assert.deepEqual(bySeq.get(5).reactions, { '🔥': [ana.userId] })
    assert.ok(bySeq.get(3).deletedAt)
  })
})

/** Every plan node of a JSON plan. */
function* nodes(plan: any): Generator<any> {
  yield plan
  for (const child of plan.Plans ?? []) yield* nodes(child)
}

/**
 * The partitions of messages, reactions and attachments a statement reads: named in its plan
 * (`planned`) and actually scanned (`scanned`: a scan node that ran at least once), from
 * EXPLAIN (ANALYZE, FORMAT JSON) of the exact SQL and parameters, in a transaction rolled back.
 */
async function partitionsRead(client: pg.Client, q: CompiledQuery) {
  await client.query('begin')
  try {
    const r = await client.query(`explain (analyze, format json) ${q.sql}`, q.parameters as unknown[])
    const plan = r.rows[0]['QUERY PLAN'][0].Plan
    const planned: Record<string, Set<string>> = {}
    const scanned: Record<string, Set<string>> = {}
    for (const n of nodes(plan)) {
      const m = /^(messages|reactions|attachments)_p\d+$/.exec(n['Relation Name'] ?? '')
      if (!m) continue
      ;(planned[m[1]] ??= new Set()).add(n['Relation Name'])
      if (n['Actual Loops'] > 0) (scanned[m[1]] ??= new Set()).add(n['Relation Name'])
    }
    const count = (o: Record<string, Set<string>>) => Object.fromEntries(Object.entries(o).map(([t, s]) => [t, s.size]))
    return { planned: count(planned), scanned: count(scanned), plan }
  } finally {
    await client.query('rollback')
  }
}

describe('partitioned messages: every hot statement reads one partition (EXPLAIN of the SQL the repositories run)', () => {
  const database = createTestDatabase()
  let db: Kysely<Database> | undefined
  let client: pg.Client | undefined
  after(async () => {
    await client?.end()
    await db?.destroy()
    await (await database).drop()
  })

  it('send (with its dedupe), history pages, sync by seq and by version, edits, deletes, reactions, attachment look-ups, re-encryption batches', async () => {
    const { url } = await database
    let captured: CompiledQuery[] = []
    db = new Kysely<Database>({
      dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 2 }) }),
      log: (e) => {
        if (e.level === 'query') captured.push(e.query)
      },
    })
    // MESSAGE_PARTITIONS unset: the default count.
    await withPartitions(undefined, () => migrateToLatest(db!))
    assert.deepEqual((await layout(db)).messages, { strategy: 'h', partitions: 16 })
    client = new pg.Client({ connectionString: url })
    await client.connect()

    const keyring = parseKeyring(`k1:${key()}`)!
    const texts = new MessageTexts(keyring)
    const seals = new AttachmentSeals(keyring)
    // Many rooms with data in every partition, so a plan that reads more than one has something to read.
    const roomIds = Array.from({ length: 48 }, (_, i) => `explain-${i}`)
    for (const id of roomIds) {
      await rooms.insertRoom(db, { id, name: id, isPrivate: false, createdBy: 'u1' })
      await rooms.addMembers(db, id, [{ userId: 'u1', username: 'one' }])
    }
    const draft = (roomId: string, n: number, extra: Partial<messages.Draft> = {}): messages.Draft => {
      const id = newMessageId()
      const stored = texts.seal(roomId, id, `hello ${n}`)
      return { id, roomId, userId: 'u1', username: 'one', text: stored.text, keyId: stored.keyId, textCipher: stored.textCipher, replyTo: null, clientMsgId: `c-${n}`, attachmentId: null, ...extra }
    }
    for (let n = 0; n < 20; n++) await messages.commitBatch(db, roomIds.map((r) => draft(r, n)), new Date())
    await sql`analyze messages, reactions, attachments`.execute(db)

    const room = roomIds[7]
    const attId = newMessageId()
    await attachments.insertAttachment(db, { id: attId, roomId: room, userId: 'u1', name: seals.sealName(attId, 'x.png'), mimeType: 'image/png', size: 3, storageKey: 'k' })
    const [withFile] = await messages.commitBatch(db, [draft(room, 100, { attachmentId: attId })], new Date())
    const target = (await messages.listRange(db, room, 0, 1, 1))[0]

    type Check = { what: string; run: () => Promise<unknown>; pruned?: boolean }
    const checks: Check[] = [
      { what: 'send (group commit, new message)', run: () => messages.commitBatch(db!, [draft(room, 200)], new Date()) },
      // A full batch (GROUP_COMMIT_MAX_BATCH) of one room: still its partition only, however the join is planned.
      { what: 'send (group commit, a full batch of one room)', run: () => messages.commitBatch(db!, Array.from({ length: 256 }, (_, n) => draft(room, 1000 + n)), new Date()) },
      { what: 'send (group commit, a resend deduplicated)', run: () => messages.commitBatch(db!, [draft(room, 3)], new Date()) },
      { what: 'send with an attachment', run: () => messages.commitBatch(db!, [draft(room, 201, { attachmentId: attId })], new Date()) },
      { what: 'send (careful path, resend)', run: () => messages.commitBatchCarefully(db!, [draft(room, 4)], new Date()) },
      { what: 'history page (before a seq)', run: () => messages.listBefore(db!, room, 15, 10), pruned: true },
      { what: 'sync by seq', run: () => messages.listRange(db!, room, 5, 50, 100), pruned: true },
      { what: 'sync by version (changedSince)', run: () => messages.listChangedSince(db!, room, 3, 100, 50), pruned: true },
      { what: 'reactions of a page', run: () => messages.reactionsFor(db!, room, [target.id, withFile.id]), pruned: true },
      { what: 'a message by id (reply, read receipt)', run: () => messages.findMessage(db!, room, { id: target.id }), pruned: true },
      { what: 'a message by seq (read receipt)', run: () => messages.findMessage(db!, room, { seq: 3 }), pruned: true },
      { what: 'edit', run: () => messages.updateText(db!, room, target.id, texts.seal(room, target.id, 'edited'), new Date()) },
      { what: 'reaction on', run: () => messages.setReaction(db!, room, target.id, '👍', 'u1', true) },
      { what: 'reaction off', run: () => messages.setReaction(db!, room, target.id, '👍', 'u1', false) },
      { what: 'delete', run: () => messages.softDelete(db!, room, target.id, new Date()) },
      { what: 'attachment look-up (send, download by url)', run: () => attachments.findWithReference(db!, attId, room), pruned: true },
    ]
    for (const c of checks) {
      captured = []
      await c.run()
      const statements = captured.filter((q) => /\b(messages|reactions|attachments)\b/.test(q.sql))
      assert.ok(statements.length > 0, `${c.what}: captured its SQL`)
      for (const q of statements) {
        const read = await partitionsRead(client, q)
        for (const [table, n] of Object.entries(read.scanned)) assert.equal(n, 1, `${c.what}: ${table} partitions scanned (${q.sql.slice(0, 80)}…)`)
        if (c.pruned) {
          // Pruned when planned: the plan names one partition of each table it reads.
          for (const [table, n] of Object.entries(read.planned)) assert.equal(n, 1, `${c.what}: ${table} partitions in the plan`)
        }
      }
      // The statements that read messages at all did read them.
      if (c.what.startsWith('send (group') || c.pruned) {
        const reads = await Promise.all(statements.map((q) => partitionsRead(client!, q)))
        assert.ok(reads.some((r) => Object.values(r.scanned).includes(1)), `${c.what}: reads one partition`)
      }
    }

    // Re-encryption walks one partition per batch.
    const partitions = await partitionsOf(db, 'messages')
    assert.equal(partitions.length, 16)
    assert.deepEqual(partitions.slice(0, 3), ['messages_p0', 'messages_p1', 'messages_p2'])
    await db.transaction().execute(async (trx) => {
      captured = []
      await messages.lockNotOnKey(trx, 'k2', partitions[3], null, 50)
      await attachments.lockNamesNotOnKey(trx, 'k2', 'attachments_p3', null, 50)
    })
    const batch = captured.filter((q) => /messages_p3|attachments_p3/.test(q.sql))
    assert.equal(batch.length, 2)
    for (const q of batch) assert.match(q.sql, /from "(messages|attachments)_p3"/)
  })
})

describe('partitioned messages: the count comes from MESSAGE_PARTITIONS', () => {
  const database = createTestDatabase()
  let db: Kysely<any> | undefined
  after(async () => {
    await db?.destroy()
    await (await database).drop()
  })

  it('a bad value stops the migration with the config words and leaves the tables as they were; a good one is the count', async () => {
    assert.equal(partitionCount({}), 16)
    assert.equal(partitionCount({ MESSAGE_PARTITIONS: '5' }), 5)
    for (const bad of ['0', '1025', 'many', '-3', '2.5']) {
      const words = (() => {
        try {
          loadConfig({ JWT_SECRET: 'x'.repeat(32), MESSAGE_PARTITIONS: bad })
        } catch (err) {
          return (err as Error).message
        }
        return 'accepted'
      })()
      assert.match(words, /^MESSAGE_PARTITIONS must be an integer from 1 to 1024/, bad)
      assert.throws(() => partitionCount({ MESSAGE_PARTITIONS: bad }), { message: words }, bad)
    }
    db = new Kysely<any>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: (await database).url, max: 1 }) }) })
    await migrateTo(db, BEFORE)
    await assert.rejects(withPartitions('0', () => migrateToLatest(db!)), /MESSAGE_PARTITIONS must be an integer from 1 to 1024 \(got "0"\)/)
    assert.equal((await layout(db)).messages.strategy, null, 'still the plain table')
    await withPartitions('5', () => migrateToLatest(db!))
    const shape = await layout(db)
    for (const t of ['messages', 'reactions', 'attachments']) assert.deepEqual(shape[t], { strategy: 'h', partitions: 5 }, t)
  })
})

describe('partitioned messages: npm run migrate copies a table longer than DATABASE_TIMEOUT_MS', () => {
  const database = createTestDatabase()
  let db: Kysely<any> | undefined
  after(async () => {
    await db?.destroy()
    await (await database).drop()
  })

  it('has no query timeout (the Job bounds it), and takes MESSAGE_PARTITIONS from its environment', async () => {
    const { url } = await database
    db = new Kysely<any>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 1 }) }) })
    await migrateTo(db, BEFORE)
    // Volume, not realism: 200,000 rows take well over the 100 ms timeout to copy and index.
    await sql`insert into rooms (id, name, created_by, last_seq, version) select 'r' || g, 'r', 'u', 200, 200 from generate_series(1, 1000) g`.execute(db)
    await sql`insert into messages (room_id, seq, id, user_id, username, text, created_at, version)
      select 'r' || (g % 1000 + 1), g / 1000 + 1, gen_random_uuid(), 'u', 'u', repeat('x', 100), now(), g / 1000 + 1 from generate_series(0, 199999) g`.execute(db)
    const child = spawn(process.execPath, ['--import', 'tsx', 'services/chat/src/store/migrate.ts'], {
      cwd: fileURLToPath(new URL('../../..', import.meta.url)),
      env: { PATH: process.env.PATH, DATABASE_URL: url, DATABASE_TIMEOUT_MS: '100', MESSAGE_PARTITIONS: '4', JWT_SECRET: 'x'.repeat(32), LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
    assert.equal(code, 0, out)
    for (const t of ['messages', 'reactions', 'attachments']) assert.deepEqual((await layout(db))[t], { strategy: 'h', partitions: 4 }, t)
    assert.equal((await countRows(db)).m, 200_000)
  })
})

describe('partitioned messages on PGlite (the embedded default): up with data, down, up again', () => {
  let db: Db | undefined
  afterEach(async () => {
    await db?.destroy()
    db = undefined
  })

  it('keeps every row readable through the repositories, and the seqs going', async () => {
    const pglite = await PGlite.create({ parsers: { 20: (v: string) => Number(v) } })
    db = new Kysely<Database>({ dialect: new PGliteDialect(pglite) })
    await migrateTo(db, BEFORE)
    const keyring = parseKeyring(`k1:${key()}`)!
    const texts = new MessageTexts(keyring)
    const seals = new AttachmentSeals(keyring)
    const blobs = new PostgresBlobStore(db, seals)
    const roomIds = ['lite-a', 'lite-b', 'lite-c', 'lite-d', 'dm:u1:u2']
    const bytes = tiny(7)
    const ids: Record<string, string[]> = {}
    const attIds: Record<string, string> = {}
    for (const roomId of roomIds) {
      await rooms.insertRoom(db, { id: roomId, name: roomId, isPrivate: false, createdBy: 'u1' })
      await rooms.addMembers(db, roomId, [{ userId: 'u1', username: 'one' }, { userId: 'u2', username: 'two' }])
      const attId = newMessageId()
      const stored = await blobs.put(attId, (async function* () { yield bytes })())
      await attachments.insertAttachment(db, { id: attId, roomId, userId: 'u1', name: seals.sealName(attId, `${roomId}.png`), mimeType: 'image/png', size: stored.size, storageKey: stored.key })
      attIds[roomId] = attId
      const drafts = Array.from({ length: 4 }, (_, n) => {
        const id = newMessageId()
        const s = texts.seal(roomId, id, `${roomId} #${n + 1}`)
        return { id, roomId, userId: n % 2 ? 'u2' : 'u1', username: 'x', text: s.text, keyId: s.keyId, textCipher: s.textCipher, replyTo: null, clientMsgId: `c${n}`, attachmentId: n === 3 ? attId : null }
      })
      ids[roomId] = (await messages.commitBatch(db, drafts, new Date())).map((c) => c.id)
      await messages.updateText(db, roomId, ids[roomId][0], texts.seal(roomId, ids[roomId][0], 'edited'), new Date())
      await messages.softDelete(db, roomId, ids[roomId][1], new Date())
      await messages.setReaction(db, roomId, ids[roomId][2], '🙂', 'u2', true)
    }

    const view = async () => {
      const out: Record<string, unknown> = {}
      for (const roomId of roomIds) {
        const rows = await messages.listRange(db!, roomId, 0, 100, 100)
        const reactions = await messages.reactionsFor(db!, roomId, rows.map((r) => r.id))
        const changed = await messages.listChangedSince(db!, roomId, 4, 100)
        const att = await attachments.findWithReference(db!, attIds[roomId], roomId)
        const file = Buffer.concat(await (await blobs.get({ key: att!.storage_key, attachmentId: att!.id, size: att!.size })).toArray())
        out[roomId] = {
          rows: rows.map((r) => ({ seq: r.seq, version: r.version, text: texts.open(r), deleted: r.deleted_at !== null, file: r.att_file_name_cipher && seals.openName({ id: r.attachment_id!, file_name: r.att_file_name!, key_id: r.att_key_id, file_name_cipher: r.att_file_name_cipher }) })),
          reactions: reactions.map((r) => [r.message_id, r.emoji, r.user_id]),
          changed: changed.map((r) => r.seq),
          att: { referenced: att!.referenced, name: seals.openName(att!), same: file.equals(bytes) },
        }
      }
      return out
    }
    const seen = await view()
    assert.deepEqual((seen['lite-a'] as any).rows.map((r: any) => r.text), ['edited', '', 'lite-a #3', 'lite-a #4'])
    assert.deepEqual((seen['lite-a'] as any).att, { referenced: true, name: 'lite-a.png', same: true })

    await withPartitions('3', () => migrateToLatest(db!))
    for (const t of ['messages', 'reactions', 'attachments']) assert.deepEqual((await layout(db))[t], { strategy: 'h', partitions: 3 }, t)
    assert.deepEqual(await view(), seen, 'the same rows, readable, after up')

    const next = async (roomId: string, clientMsgId: string) => {
      const id = newMessageId()
      const s = texts.seal(roomId, id, 'next')
      return (await messages.commitBatch(db!, [{ id, roomId, userId: 'u1', username: 'one', text: s.text, keyId: s.keyId, textCipher: s.textCipher, replyTo: null, clientMsgId, attachmentId: null }], new Date()))[0]
    }
    const resend = await next('lite-b', 'c2')
    assert.equal(resend.duplicate, true)
    assert.equal(resend.id, ids['lite-b'][2])
    const fresh = await next('lite-b', 'c-new')
    assert.equal(fresh.seq, 5)

    // Down keeps the rows too (and up again, once more).
    await migrateTo(db, BEFORE)
    assert.equal((await layout(db)).messages.strategy, null)
    const down = await view()
    assert.equal(((down['lite-b'] as any).rows as any[]).at(-1).text, 'next')
    await withPartitions('2', () => migrateToLatest(db!))
    assert.deepEqual(await view(), down)
    assert.equal((await next('lite-b', 'c-newer')).seq, 6)
  })
})
