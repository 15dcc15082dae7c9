import assert from 'node:assert/strict'
import net from 'node:net'
import { describe, it } from 'node:test'
import { Redis, ReplyError } from 'ioredis'
import { isUnavailable, toAppError } from '../src/errors.ts'
import { useIsolatedNode, ack, chatClient, devToken } from './helpers.ts'

describe('error paths answer the SPEC shape and keep the socket connected', () => {
  const node = useIsolatedNode({ RATE_LIMIT_MESSAGES: '3', RATE_LIMIT_WINDOW_SECONDS: '60' })

  const badPayloads: [string, unknown][] = [
    ['room:join', undefined],
    ['room:join', 42],
    ['room:join', ''],
    ['room:join', 'has space'],
    ['room:join', 'x'.repeat(129)],
    ['room:join', { roomId: 'ok', lastSeq: -1 }],
    ['room:join', { roomId: 'ok', lastSeq: 'nine' }],
    ['room:leave', null],
    ['chat:message', null],
    ['chat:message', 'text'],
    ['chat:message', { roomId: 'valid' }],
    ['chat:message', { roomId: 'valid', text: 5 }],
    ['chat:message', { roomId: 'valid', text: '   ' }],
    ['chat:message', { roomId: 'valid', text: 'a'.repeat(5001) }],
    ['chat:message', { roomId: 'valid', text: 'hi', replyTo: 'not-a-uuid' }],
    ['chat:message', { roomId: 'valid', text: 'hi', clientMsgId: '' }],
    ['chat:message', { roomId: ['valid'], text: 'hi' }],
    ['chat:message', { roomId: "valid'; drop table messages; --", text: 'hi' }],
    ['chat:edit', { roomId: 'valid', messageId: 'nope', text: 'x' }],
    ['chat:delete', { roomId: 'valid' }],
    ['chat:react', { roomId: 'valid', messageId: '0190a0a0-0000-7000-8000-000000000000', emoji: '👍' }],
    ['chat:typing', { roomId: 'valid', isTyping: 'yes' }],
    ['chat:read', { roomId: 'valid' }],
    ['chat:read', { roomId: 'valid', seq: 1.5 }],
    ['chat:sync', { rooms: [] }],
    ['chat:sync', { rooms: { 'bad room': 1 } }],
    ['chat:sync', { rooms: { valid: -4 } }],
    ['auth:refresh', {}],
  ]

  it('rejects each malformed payload with BAD_REQUEST, touching nothing', async () => {
    const { token } = await devToken(node.url, 'fuzzer')
    const s = await chatClient(node.url, token)
    await ack(s, 'room:join', 'valid')
    for (const [event, payload] of badPayloads) {
      const res = payload === undefined ? await ack(s, event) : await ack(s, event, payload)
      assert.equal(res.status, 'error', `${event} ${JSON.stringify(payload)}`)
      assert.equal(res.code, 'BAD_REQUEST', `${event} ${JSON.stringify(payload)} → ${res.code}`)
      assert.equal(typeof res.error, 'string')
      assert.ok(s.connected, 'still connected')
    }
    // Text of exactly 5,000 characters (after trimming) is fine.
    const max = await ack(s, 'chat:message', { roomId: 'valid', text: ` ${'é'.repeat(5000)} ` })
    assert.equal(max.status, 'ok')
    const rows = await node.db.selectFrom('messages').select('text').execute()
    assert.equal(rows.length, 1)
    // An event with no ack and garbage does not hurt either.
    s.emit('chat:message', { nonsense: true })
    s.emit('room:join')
    assert.equal((await ack(s, 'room:join', 'valid')).status, 'ok')
  })

  it('unknown rooms and messages are NOT_FOUND', async () => {
    const { token } = await devToken(node.url, 'wanderer')
    const s = await chatClient(node.url, token)
    const post = await ack(s, 'chat:message', { roomId: 'never-created', text: 'hello?' })
    assert.deepEqual([post.status, post.code], ['error', 'NOT_FOUND'])
    const read = await ack(s, 'chat:read', { roomId: 'never-created', seq: 1 })
    assert.equal(read.code, 'NOT_FOUND')
    await ack(s, 'room:join', 'exists')
    const reply = await ack(s, 'chat:message', { roomId: 'exists', text: 'hi', replyTo: '0190a0a0-0000-7000-8000-000000000000' })
    assert.equal(reply.code, 'NOT_FOUND')
    const edit = await ack(s, 'chat:edit', { roomId: 'exists', messageId: '0190a0a0-0000-7000-8000-000000000000', text: 'x' })
    assert.equal(edit.code, 'NOT_FOUND')
    const http = await fetch(`${node.url}/api/rooms/never-created/messages`, { headers: { authorization: `Bearer ${token}` } })
    assert.equal(http.status, 404)
    assert.deepEqual(Object.keys(await http.json()).sort(), ['error', 'message'])
    assert.ok(s.connected)
  })

  it('over the rate limit gets RATE_LIMITED and nothing is stored; the limit is per user', async () => {
    const { token } = await devToken(node.url, 'chatty')
    const s = await chatClient(node.url, token)
    const s2 = await chatClient(node.url, token) // a second device shares the budget
    await ack(s, 'room:join', 'limits')
    await ack(s2, 'room:join', 'limits')
    const results = []
    for (let i = 0; i < 3; i++) results.push(await ack(i % 2 ? s2 : s, 'chat:message', { roomId: 'limits', text: `m${i}` }))
    assert.ok(results.every((r) => r.status === 'ok'))
    const over = await ack(s2, 'chat:message', { roomId: 'limits', text: 'one too many' })
    assert.deepEqual([over.status, over.code], ['error', 'RATE_LIMITED'])
    assert.ok(over.retryAfterMs > 0)
    const rows = await node.db.selectFrom('messages').select('text').where('room_id', '=', 'limits').execute()
    assert.deepEqual(rows.map((r) => r.text).sort(), ['m0', 'm1', 'm2'])
    const other = await chatClient(node.url, (await devToken(node.url, 'quiet')).token)
    await ack(other, 'room:join', 'limits')
    assert.equal((await ack(other, 'chat:message', { roomId: 'limits', text: 'my turn' })).status, 'ok')
    assert.ok(s.connected && s2.connected)
  })

  it('HTTP errors are JSON with the right status', async () => {
    const { token } = await devToken(node.url, 'http-user')
    const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' }
    const cases: [string, RequestInit, number, string][] = [
      ['/api/rooms', {}, 401, 'AUTH_REQUIRED'],
      ['/api/rooms', { headers: { authorization: 'Bearer junk' } }, 401, 'AUTH_INVALID'],
      ['/api/rooms', { method: 'POST', headers: auth, body: '{"name": 5}' }, 400, 'BAD_REQUEST'],
      ['/api/rooms', { method: 'POST', headers: auth, body: '{"id":"a b","name":"x"}' }, 400, 'BAD_REQUEST'],
      ['/api/rooms', { method: 'POST', headers: auth, body: '{not json' }, 400, 'BAD_REQUEST'],
      ['/api/rooms/valid/messages?limit=9999', { headers: auth }, 400, 'BAD_REQUEST'],
      ['/api/dev/token', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"username":""}' }, 400, 'BAD_REQUEST'],
      ['/api/nope', {}, 404, 'NOT_FOUND'],
    ]
    for (const [path, init, status, code] of cases) {
      const res = await fetch(`${node.url}${path}`, init)
      assert.equal(res.status, status, `${init.method ?? 'GET'} ${path}`)
      assert.equal((await res.json()).error, code, path)
      assert.equal(res.headers.get('x-switchboard-node'), node.config.nodeId)
    }
    const dup = { method: 'POST', headers: auth, body: JSON.stringify({ id: 'dup-room', name: 'Dup' }) }
    assert.equal((await fetch(`${node.url}/api/rooms`, dup)).status, 201)
    const again = await fetch(`${node.url}/api/rooms`, dup)
    assert.equal(again.status, 409)
    assert.equal((await again.json()).error, 'CONFLICT')
  })
})

describe('dependency errors that mean "retry shortly"', () => {
  it('a Redis command that outlives its deadline (a connection that stopped answering) is UNAVAILABLE, not INTERNAL', async () => {
    // A server that accepts and never answers: the command's reply never comes.
    const silent = net.createServer(() => undefined)
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
    const client = new Redis({ port: (silent.address() as net.AddressInfo).port, host: '127.0.0.1', commandTimeout: 100, maxRetriesPerRequest: 0, lazyConnect: true, enableReadyCheck: false })
    try {
      await client.connect()
      const err = await client.get('k').then(
        () => assert.fail('a reply from a server that never answers'),
        (e: Error) => e,
      )
      assert.equal(isUnavailable(err), true, err.message)
      assert.equal(toAppError(err).code, 'UNAVAILABLE')
    } finally {
      client.disconnect()
      silent.close()
    }
  })

  it('a Redis Cluster in transition (a redirect to a master that just died, no master yet, a demoted node) is UNAVAILABLE; other Redis replies stay INTERNAL', () => {
    // The errors ioredis raises for these replies (its own ReplyError), as the chaos suite saw them.
    for (const reply of ['MOVED 7162 127.0.0.1:36879', 'ASK 7162 127.0.0.1:36880', 'TRYAGAIN Multiple keys request during rehashing of slot', 'CLUSTERDOWN The cluster is down', 'LOADING Redis is loading the dataset in memory', "READONLY You can't write against a read only replica.", 'MASTERDOWN Link with MASTER is down']) {
      const err = new ReplyError(reply)
      assert.equal(isUnavailable(err), true, reply)
      assert.equal(toAppError(err).code, 'UNAVAILABLE', reply)
    }
    for (const reply of ["ERR wrong number of arguments for 'get' command", 'WRONGTYPE Operation against a key holding the wrong kind of value', 'NOSCRIPT No matching script']) {
      assert.equal(toAppError(new ReplyError(reply)).code, 'INTERNAL', reply)
    }
  })
})
