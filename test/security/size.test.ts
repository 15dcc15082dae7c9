/**
 * Attack suite, sizes and depth (SPEC §4 rules): a 500 KB string answers TOO_LARGE and keeps the
 * socket; a frame above maxHttpBufferSize may close only that connection; JSON nested 10,000 deep
 * (HTTP body or socket payload) gets a clear error. The node keeps serving everyone else.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import { describe, it } from 'node:test'
import { ack, ackCode, chatClient, devToken, httpJson, next, RawSocket, useIsolatedNode } from './helpers.ts'

const BIG = 'x'.repeat(500 * 1024)
const nested = (depth: number, open = '[', close = ']') => open.repeat(depth) + close.repeat(depth)
const nestedObject = (depth: number) => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)

describe('oversized payloads and frames', () => {
  const node = useIsolatedNode({ RATE_LIMIT_MESSAGES: '1000' })

  const countMessages = async (roomId: string) =>
    Number((await node.db.selectFrom('messages').select((eb) => eb.fn.countAll().as('n')).where('room_id', '=', roomId).executeTakeFirstOrThrow()).n)

  it('a 500 KB message text answers TOO_LARGE, stores nothing, and the socket stays', async () => {
    const { token } = await devToken(node.url, 'big-sender')
    const s = await chatClient(node.url, token)
    await ack(s, 'room:join', 'big-room')
    const res = await ack(s, 'chat:message', { roomId: 'big-room', text: BIG })
    assert.equal(ackCode(res, 'chat:message 500 KB'), 'TOO_LARGE')
    assert.ok(s.connected)
    assert.equal(await countMessages('big-room'), 0)
    assert.equal(ackCode(await ack(s, 'chat:message', { roomId: 'big-room', text: 'small' }), 'after'), 'ok')
  })

  it('a 500 KB string in any field of any /chat event answers TOO_LARGE and the socket stays', async () => {
    const { token } = await devToken(node.url, 'big-fields')
    const s = await chatClient(node.url, token)
    await ack(s, 'room:join', 'big-fields')
    const sent = await ack(s, 'chat:message', { roomId: 'big-fields', text: 'target' })
    const messageId = sent.messageId as string
    const cases: [string, unknown][] = [
      ['room:join', BIG],
      ['room:join', { roomId: BIG }],
      ['room:leave', BIG],
      ['chat:message', { roomId: BIG, text: 'x' }],
      ['chat:message', { roomId: 'big-fields', text: 'x', clientMsgId: BIG }],
      ['chat:message', { roomId: 'big-fields', text: 'x', padding: BIG }],
      ['chat:edit', { roomId: 'big-fields', messageId, text: BIG }],
      ['chat:delete', { roomId: 'big-fields', messageId: BIG }],
      ['chat:react', { roomId: 'big-fields', messageId, emoji: BIG, on: true }],
      ['chat:typing', { roomId: BIG, isTyping: true }],
      ['chat:read', { roomId: 'big-fields', messageId: BIG }],
      ['chat:sync', { rooms: { [BIG]: 0 } }],
      ['auth:refresh', { token: BIG }],
    ]
    const wrong: string[] = []
    for (const [event, payload] of cases) {
      const code = ackCode(await ack(s, event, payload), event)
      if (code !== 'TOO_LARGE') wrong.push(`${event} ${JSON.stringify(payload).slice(0, 60)} → ${code}`)
      assert.ok(s.connected, `${event}: socket kept`)
    }
    assert.deepEqual(wrong, [], 'every 500 KB payload is TOO_LARGE')
    assert.equal(await countMessages('big-fields'), 1, 'nothing stored')
    const history = await httpJson(node.url, 'GET', '/api/rooms/big-fields/messages', { token })
    assert.equal(history.body.messages[0].text, 'target', 'the message was not edited')
  })

  it('a WebSocket frame over maxHttpBufferSize closes only that connection; the node serves the others', async () => {
    const { token } = await devToken(node.url, 'frame-sender')
    const other = await devToken(node.url, 'bystander')
    const victim = await chatClient(node.url, token)
    const bystander = await chatClient(node.url, other.token)
    const poller = await chatClient(node.url, other.token, { transports: ['polling'] })
    await ack(victim, 'room:join', 'frame-room')
    await ack(bystander, 'room:join', 'frame-room')
    await ack(poller, 'room:join', 'frame-room')
    const closed = next(victim, 'disconnect', () => true, 10_000)
    victim.emit('chat:message', { roomId: 'frame-room', text: 'y'.repeat(1_500_000) })
    assert.equal(await closed, 'transport close')
    const got = next(poller, 'chat:message', (m: any) => m.text === 'still here')
    assert.equal(ackCode(await ack(bystander, 'chat:message', { roomId: 'frame-room', text: 'still here' }), 'bystander'), 'ok')
    await got
    assert.ok(bystander.connected && poller.connected)
    assert.equal(await countMessages('frame-room'), 1, 'the oversized frame stored nothing')
    assert.equal((await httpJson(node.url, 'GET', '/healthz')).status, 200)
  })

  it('a long-polling POST over maxHttpBufferSize is refused; the node serves the others', async () => {
    const { token } = await devToken(node.url, 'poll-big')
    const ws = await chatClient(node.url, token)
    await ack(ws, 'room:join', 'poll-big')
    const open = await (await fetch(`${node.url}/socket.io/?EIO=4&transport=polling`)).text()
    const sid = /"sid":"([^"]+)"/.exec(open)![1]
    // A GET poll in flight, as every polling client keeps one: when the session ends, engine.io
    // answers it at once (with no poll pending it would hold a 30 s close timer in this process).
    const poll = fetch(`${node.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`).then((r) => r.text(), () => '')
    // Raw http.request, destroyed once answered: the server need not read the rest of the body.
    const big = await new Promise<{ status: number }>((resolve, reject) => {
      let answered = false
      const req = http.request(`${node.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`, { method: 'POST', agent: false, headers: { 'content-type': 'text/plain;charset=UTF-8' } }, (res) => {
        answered = true
        resolve({ status: res.statusCode ?? 0 })
        req.destroy()
      })
      req.on('error', (err) => void (answered || reject(err)))
      req.end(`42/chat,["chat:message",{"roomId":"poll-big","text":"${'z'.repeat(1_500_000)}"}]`)
    })
    assert.ok(big.status >= 400 && big.status < 500, `oversized POST: ${big.status}`)
    await poll
    assert.equal(ackCode(await ack(ws, 'chat:message', { roomId: 'poll-big', text: 'fine' }), 'ws after'), 'ok')
    assert.equal((await httpJson(node.url, 'GET', '/healthz')).status, 200)
  })
})

describe('JSON nested 10,000 deep', () => {
  const node = useIsolatedNode()

  it('as an HTTP body: a clear 4xx JSON error, no crash', async () => {
    const { token } = await devToken(node.url, 'deep-http')
    const bodies = [
      `{"name":${nested(10_000)}}`,
      `{"name":"x","members":${nested(10_000)}}`,
      nestedObject(10_000),
      `{"name":${nested(100_000)}}`,
    ]
    for (const body of bodies) {
      for (const [path, auth] of [['/api/rooms', token], ['/api/dev/token', undefined]] as const) {
        const res = await httpJson(node.url, 'POST', path, { token: auth, body })
        assert.ok(res.status === 400 || res.status === 413, `${path} ${body.slice(0, 20)}: ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`)
        assert.ok(res.body.error === 'BAD_REQUEST' || res.body.error === 'TOO_LARGE', `${path}: ${JSON.stringify(res.body).slice(0, 200)}`)
        assert.equal(typeof res.body.message, 'string')
      }
    }
    assert.equal((await httpJson(node.url, 'GET', '/healthz')).status, 200)
    assert.equal((await httpJson(node.url, 'POST', '/api/rooms', { token, body: { name: 'fine' } })).status, 201)
  })

  it('as a socket payload of every /chat event: BAD_REQUEST, the connection stays', async () => {
    const { token } = await devToken(node.url, 'deep-socket')
    const raw = await RawSocket.open(node.url, '/chat', { token })
    const events = ['room:join', 'room:leave', 'chat:message', 'chat:edit', 'chat:delete', 'chat:react', 'chat:typing', 'chat:read', 'chat:sync', 'auth:refresh']
    const deepArray = nested(10_000)
    const deepObject = nestedObject(10_000)
    const shapes = (event: string) => [
      `["${event}",${deepArray}]`,
      `["${event}",${deepObject}]`,
      `["${event}",{"roomId":${deepArray},"text":"x"}]`,
      `["${event}",{"rooms":${deepObject}}]`,
    ]
    const wrong: string[] = []
    for (const event of events) {
      for (const frame of shapes(event)) {
        const res = await raw.emitRaw(frame)
        const code = ackCode(res, `${event} deep`, { auth: event === 'auth:refresh' })
        if (code !== 'BAD_REQUEST' && code !== 'TOO_LARGE') wrong.push(`${frame.slice(0, 40)} → ${code}`)
        assert.equal(raw.closed, false, `${event}: connection kept`)
      }
    }
    assert.deepEqual(wrong, [])
    // A deep extra field beside a valid message: answered (stored or refused), never INTERNAL.
    assert.equal(ackCode(await raw.emitRaw('["room:join","deep-room"]'), 'join'), 'ok')
    const extra = ackCode(await raw.emitRaw(`["chat:message",{"roomId":"deep-room","text":"hello","extra":${deepArray}}]`), 'extra')
    assert.ok(extra === 'ok' || extra === 'BAD_REQUEST' || extra === 'TOO_LARGE', extra)
    raw.close()
    assert.equal((await httpJson(node.url, 'GET', '/healthz')).status, 200)
  })
})
