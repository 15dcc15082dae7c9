import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import pg from 'pg'
import { ack, chatClient, devToken, eventually, useIsolatedNode } from './helpers.ts'

const CAP = 4

/**
 * Overload is loud (SPEC §5.6): while Postgres commits nothing (another session holds the room's
 * row lock, which every group commit takes), at most GROUP_COMMIT_MAX_QUEUE drafts wait; the rest
 * answer UNAVAILABLE with retryAfterMs and store nothing.
 */
describe('bounded writes: the group-commit queue has a cap', () => {
  const node = useIsolatedNode({ GROUP_COMMIT_MAX_QUEUE: String(CAP), RATE_LIMIT_MESSAGES: '1000' })

  const metric = async (name: string) => {
    const text = await (await fetch(`${node.url}/metrics`)).text()
    const m = text.match(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm'))
    return m ? Number(m[1]) : NaN
  }

  it('past the cap sends answer UNAVAILABLE with retryAfterMs; every acked message is stored once; the node recovers', async () => {
    const { token } = await devToken(node.url, 'writer')
    const s = await chatClient(node.url, token)
    assert.equal((await ack(s, 'room:join', 'busy')).status, 'ok')
    assert.equal(await metric('switchboard_commit_queue_limit'), CAP)

    const lock = new pg.Client({ connectionString: node.database.url })
    await lock.connect()
    const answers: any[] = []
    try {
      await lock.query('begin')
      await lock.query(`select id from rooms where id = 'busy' for update`)
      const sends = Array.from({ length: 10 }, (_, i) =>
        ack(s, 'chat:message', { roomId: 'busy', text: `m${i}`, clientMsgId: `c${i}` }).then((r) => (answers[i] = r)),
      )
      // The refusals come back while the commit still waits for the lock.
      await eventually(() => answers.filter(Boolean).length === 10 - CAP, 5000, 'the sends past the cap answered')
      assert.equal(await metric('switchboard_commit_queue_depth'), CAP)
      assert.equal(await metric('switchboard_commit_queue_refused_total'), 10 - CAP)
      for (let i = CAP; i < 10; i++) {
        assert.deepEqual([answers[i].status, answers[i].code], ['error', 'UNAVAILABLE'], `send ${i}`)
        assert.ok(answers[i].retryAfterMs >= 250, `send ${i} says when to retry (${answers[i].retryAfterMs})`)
      }
      assert.equal(answers.slice(0, CAP).filter(Boolean).length, 0, 'the queued sends are not acked before their commit')
      await lock.query('commit')
      await Promise.all(sends)
    } finally {
      await lock.end()
    }
    assert.deepEqual(answers.slice(0, CAP).map((a) => [a.status, a.seq]), [['ok', 1], ['ok', 2], ['ok', 3], ['ok', 4]])

    const rows = async () =>
      (await node.db.selectFrom('messages').select(['seq', 'client_msg_id']).where('room_id', '=', 'busy').orderBy('seq').execute()).map((r) => [Number(r.seq), r.client_msg_id])
    assert.deepEqual(await rows(), [[1, 'c0'], [2, 'c1'], [3, 'c2'], [4, 'c3']], 'each acked message once, nothing of the refused ones')

    // Recovered: a refused message resent with its clientMsgId is stored now, once; the queue is empty.
    assert.deepEqual((await ack(s, 'chat:message', { roomId: 'busy', text: 'm4', clientMsgId: 'c4' })).seq, 5)
    assert.deepEqual((await ack(s, 'chat:message', { roomId: 'busy', text: 'm4', clientMsgId: 'c4' })).seq, 5)
    assert.deepEqual((await rows()).slice(4), [[5, 'c4']])
    assert.equal(await metric('switchboard_commit_queue_depth'), 0)
  })
})
