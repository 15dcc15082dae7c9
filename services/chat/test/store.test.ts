import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import { pino } from 'pino'
import { newMessageId } from '../src/ids.ts'
import { migrateToLatest } from '../src/store/migrate.ts'
import { commitBatch, commitBatchCarefully, type Draft } from '../src/store/messages.repository.ts'
import * as rooms from '../src/store/rooms.repository.ts'
import type { Database } from '../src/store/schema.ts'
import { createTestDatabase } from './helpers.ts'

const draft = (roomId: string, userId: string, clientMsgId: string | null, text = 't'): Draft => ({
  id: newMessageId(),
  roomId,
  userId,
  username: userId,
  text,
  replyTo: null,
  clientMsgId,
  attachmentId: null,
})

describe('group-commit SQL against real Postgres', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>
  let a: Kysely<Database>
  let b: Kysely<Database>
  const open = (url: string) => new Kysely<Database>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 4 }) }) })

  before(async () => {
    database = await createTestDatabase()
    a = open(database.url)
    b = open(database.url)
    await migrateToLatest(a, pino({ level: 'silent' }))
    for (const id of ['r1', 'r2', 'race']) await rooms.insertRoom(a, { id, name: id, isPrivate: false, createdBy: 'u' })
  })
  after(async () => {
    await a?.destroy()
    await b?.destroy()
    await database?.drop()
  })

  it('numbers a mixed batch per room, in order, and returns resends as the originals', async () => {
    const first = await commitBatch(a, [draft('r1', 'u1', 'k1'), draft('r2', 'u1', null), draft('r1', 'u2', null)], new Date())
    assert.deepEqual(first.map((c) => [c.seq, c.duplicate]), [[1, false], [1, false], [2, false]])
    const again = await commitBatch(a, [draft('r2', 'u1', null), draft('r1', 'u1', 'k1'), draft('r1', 'u1', 'k2')], new Date())
    assert.deepEqual(again.map((c) => [c.seq, c.duplicate]), [[2, false], [1, true], [3, false]])
    assert.equal(again[1].id, first[0].id)
    const careful = await commitBatchCarefully(a, [draft('r1', 'u1', 'k2'), draft('r1', 'u3', null)], new Date())
    assert.deepEqual(careful.map((c) => [c.seq, c.duplicate]), [[3, true], [4, false]], 'both paths agree')
  })

  it('two nodes committing the same clientMsgId at once store it once, without a seq gap', async () => {
    for (let i = 0; i < 25; i++) {
      const key = `race-${i}`
      const [x, y] = await Promise.all([
        commitBatch(a, [draft('race', 'u', key), draft('race', 'v', null)], new Date()),
        commitBatch(b, [draft('race', 'u', key)], new Date()),
      ])
      assert.equal(x[0].id, y[0].id, `one id for ${key}`)
      assert.equal(x[0].seq, y[0].seq)
      assert.notEqual(x[0].duplicate, y[0].duplicate, 'exactly one of them stored it')
    }
    const seqs = (await a.selectFrom('messages').select('seq').where('room_id', '=', 'race').orderBy('seq').execute()).map((r) => Number(r.seq))
    assert.deepEqual(seqs, Array.from({ length: 50 }, (_, i) => i + 1), 'gap-free')
    const last = await rooms.findRoom(a, 'race')
    assert.equal(Number(last!.last_seq), 50)
  })

  it('refuses a room that does not exist instead of inventing one', async () => {
    await assert.rejects(commitBatch(a, [draft('no-such-room', 'u', null)], new Date()), /vanished/)
  })
})
