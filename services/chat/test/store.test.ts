import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Kysely, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import { pino } from 'pino'
import { newMessageId } from '../src/ids.ts'
import { migrateToLatest } from '../src/store/migrate.ts'
import { loadConfig } from '../src/config.ts'
import { createDb } from '../src/store/db.ts'
import { GroupCommit } from '../src/store/group-commit.ts'
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
  keyId: null,
  textCipher: null,
  replyTo: null,
  clientMsgId,
  attachmentId: null,
})

describe('group-commit SQL against real Postgres', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>
  let a: Kysely<Database>
  let b: Kysely<Database>
  const open = (url: string) => {
    const pool = new pg.Pool({ connectionString: url, max: 4 })
    // The forced drop at the end terminates any connection still open; an idle client's error
    // then surfaces on the pool (once seen in CI as an uncaught exception after the tests).
    pool.on('error', () => undefined)
    return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
  }

  before(async () => {
    database = await createTestDatabase()
    a = open(database.url)
    b = open(database.url)
    await migrateToLatest(a, pino({ level: 'silent' }))
    for (const id of ['r1', 'r2', 'race', 'gated', 'gated-fail']) await rooms.insertRoom(a, { id, name: id, isPrivate: false, createdBy: 'u' })
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

  describe('GroupCommit with gates (the rate-limit check overlapping the wait)', () => {
    const gate = () => {
      let open!: () => void
      let refuse!: (e: Error) => void
      const p = new Promise<void>((res, rej) => ((open = res), (refuse = rej)))
      return { p, open, refuse }
    }
    const stored = async (roomId: string) =>
      (await a.selectFrom('messages').select(['seq', 'text']).where('room_id', '=', roomId).orderBy('seq').execute()).map((r) => [Number(r.seq), r.text])

    it('holds a draft until its gate opens, while later ready drafts commit; order follows the batches', async () => {
      const batches: number[] = []
      const gc = new GroupCommit(a, pino({ level: 'silent' }), { maxBatch: 256, maxWaitMs: 2, onBatch: (n) => batches.push(n) })
      const slow = gate()
      const first = gc.submit(draft('gated', 'u1', null, 'slow'), slow.p)
      const second = gc.submit(draft('gated', 'u2', null, 'fast'))
      const fast = await second
      assert.equal(fast.seq, 1, 'the ready draft did not wait for the closed gate')
      assert.equal(gc.depth, 1, 'the gated draft is still queued')
      slow.open()
      assert.equal((await first).seq, 2)
      await gc.flush()
      assert.deepEqual(await stored('gated'), [[1, 'fast'], [2, 'slow']])
      assert.deepEqual(batches, [1, 1])
    })

    it('a refused gate stores nothing and leaves no gap; its neighbours commit', async () => {
      const gc = new GroupCommit(a, pino({ level: 'silent' }), { maxBatch: 256, maxWaitMs: 2 })
      const g = gate()
      const refusedOne = gc.submit(draft('gated-fail', 'u1', 'k-refused', 'refused'), g.p)
      const ok = gc.submit(draft('gated-fail', 'u2', null, 'ok'), Promise.resolve())
      g.refuse(new Error('RATE_LIMITED here'))
      await assert.rejects(refusedOne, /RATE_LIMITED here/)
      assert.equal((await ok).seq, 1)
      // A resend of the refused message while nothing is pending is a fresh draft: it can be stored.
      assert.equal((await gc.submit(draft('gated-fail', 'u1', 'k-refused', 'refused'), Promise.resolve())).seq, 2)
      await gc.flush()
      assert.equal(gc.depth, 0)
      assert.deepEqual(await stored('gated-fail'), [[1, 'ok'], [2, 'refused']])
    })
  })

  it('runs the commit statement as a prepared statement on the node\'s pool, and still answers right', async () => {
    const config = loadConfig({ DATABASE_URL: database.url, DATABASE_POOL_MAX: '1', JWT_SECRET: 'x'.repeat(32) })
    const db = await createDb(config, pino({ level: 'silent' }))
    try {
      await rooms.insertRoom(db, { id: 'prepared', name: 'prepared', isPrivate: false, createdBy: 'u' })
      for (let i = 1; i <= 7; i++) {
        // Past the fifth execution Postgres may switch to its generic plan: results must not change.
        const [c] = await commitBatch(db, [draft('prepared', 'u1', `p${i}`)], new Date())
        assert.deepEqual([c.seq, c.duplicate], [i, false])
      }
      const [again] = await commitBatch(db, [draft('prepared', 'u1', 'p3')], new Date())
      assert.deepEqual([again.seq, again.duplicate], [3, true])
      const prepared = await sql<{ name: string }>`select name from pg_prepared_statements`.execute(db)
      assert.deepEqual(prepared.rows.map((r) => r.name), ['commit_batch'], 'one connection, one prepared statement')
    } finally {
      await db.destroy()
    }
  })
})
