/**
 * Attack suite, rate limits (SPEC §4: per user across the whole cluster): one user on several
 * sockets, on two nodes sharing Redis and Postgres, sending as fast as it can, never gets more
 * than RATE_LIMIT_MESSAGES accepted in a window; the refused ones are RATE_LIMITED and store nothing.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Socket } from 'socket.io-client'
import { ackCode, chatClient, closeClients, createTestDatabase, devToken, redisPrefix, REDIS_URL, startNode, type TestNode } from './helpers.ts'

const LIMIT = 5

describe('one user multiplying sockets and nodes to beat the message rate limit', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>
  const redis = redisPrefix()
  const nodes: TestNode[] = []

  before(async () => {
    database = await createTestDatabase()
    const env = { DATABASE_URL: database.url, REDIS_URL, REDIS_PREFIX: redis.prefix, RATE_LIMIT_MESSAGES: String(LIMIT), RATE_LIMIT_WINDOW_SECONDS: '60' }
    nodes.push(await startNode(env), await startNode(env))
  })
  after(async () => {
    closeClients()
    for (const n of nodes) await n.close()
    await database?.drop()
    await redis.clear()
  })

  it(`accepts at most ${LIMIT} messages per window in total, over 6 sockets on 2 nodes`, async () => {
    const { token } = await devToken(nodes[0].url, 'flooder')
    const sockets: Socket[] = []
    for (let i = 0; i < 6; i++) sockets.push(await chatClient(nodes[i % 2].url, token, { transports: i === 5 ? ['polling'] : ['websocket'] }))
    for (const s of sockets) assert.equal(ackCode(await s.timeout(5000).emitWithAck('room:join', 'flood'), 'join'), 'ok')
    const sends = sockets.flatMap((s, i) =>
      Array.from({ length: 8 }, (_, j) =>
        s
          .timeout(10_000)
          .emitWithAck('chat:message', { roomId: 'flood', text: `burst ${i}.${j}`, clientMsgId: `c-${i}-${j}` })
          .then((r: unknown) => ackCode(r, 'send')),
      ),
    )
    const codes = await Promise.all(sends)
    const count = (c: string) => codes.filter((x) => x === c).length
    assert.ok(count('ok') <= LIMIT, `accepted ${count('ok')} of ${codes.length}, limit ${LIMIT}`)
    assert.ok(count('ok') >= 1, 'some were accepted')
    assert.equal(count('ok') + count('RATE_LIMITED'), codes.length, `only ok or RATE_LIMITED: ${[...new Set(codes)]}`)
    const stored = await nodes[0].db.selectFrom('messages').select('seq').where('room_id', '=', 'flood').orderBy('seq').execute()
    assert.equal(stored.length, count('ok'), 'refused messages stored nothing')
    assert.deepEqual(stored.map((r) => Number(r.seq)), Array.from({ length: stored.length }, (_, i) => i + 1), 'gap-free')
    // A fresh token of the same user (another "device") does not reset the limit either.
    const again = await devToken(nodes[1].url, 'flooder')
    const fresh = await chatClient(nodes[1].url, again.token)
    await fresh.timeout(5000).emitWithAck('room:join', 'flood')
    assert.equal(ackCode(await fresh.timeout(5000).emitWithAck('chat:message', { roomId: 'flood', text: 'one more' }), 'fresh'), 'RATE_LIMITED')
    // Another user is not affected.
    const other = await devToken(nodes[1].url, 'bystander')
    const b = await chatClient(nodes[1].url, other.token)
    await b.timeout(5000).emitWithAck('room:join', 'flood')
    assert.equal(ackCode(await b.timeout(5000).emitWithAck('chat:message', { roomId: 'flood', text: 'hello' }), 'bystander'), 'ok')
  })
})
