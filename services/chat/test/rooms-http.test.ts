import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { io } from 'socket.io-client'
import { getJson, usersInRoom, useIsolatedNode, ack, chatClient, collect, devToken, eventually, next } from './helpers.ts'

describe('HTTP rooms and history, edits, reactions, transports', () => {
  const node = useIsolatedNode({ RATE_LIMIT_MESSAGES: '1000', HISTORY_LIMIT: '5' })

  const get = (token: string, path: string) => getJson(node.url, token, path)

  it('pages history newest first with before/limit; join history is the latest HISTORY_LIMIT', async () => {
    const { token } = await devToken(node.url, 'historian')
    const s = await chatClient(node.url, token)
    await ack(s, 'room:join', 'pages')
    for (let i = 1; i <= 12; i++) await ack(s, 'chat:message', { roomId: 'pages', text: `n${i}` })

    const early = await get(token, '/api/rooms/pages/messages?limit=4')
    assert.deepEqual(early.body.messages.map((m: any) => m.seq), [12, 11, 10, 9])
    await ack(s, 'chat:message', { roomId: 'pages', text: 'n13' })
    const first = await get(token, '/api/rooms/pages/messages?limit=4&before=13')
    assert.equal(first.status, 200)
    assert.deepEqual(first.body.messages.map((m: any) => m.seq), [12, 11, 10, 9])
    assert.equal(first.body.hasMore, true)
    const second = await get(token, '/api/rooms/pages/messages?before=9&limit=4')
    assert.deepEqual(second.body.messages.map((m: any) => m.seq), [8, 7, 6, 5])
    const last = await get(token, '/api/rooms/pages/messages?before=3&limit=4')
    assert.deepEqual(last.body.messages.map((m: any) => m.seq), [2, 1])
    assert.equal(last.body.hasMore, false)
    const dflt = await get(token, '/api/rooms/pages/messages')
    assert.equal(dflt.body.messages.length, 5)
    assert.equal(dflt.body.messages[0].seq, 13, 'a cached latest page gives way to the new message')

    const late = await chatClient(node.url, token)
    const hist = next(late, 'room:history')
    await ack(late, 'room:join', 'pages')
    const h = await hist
    assert.deepEqual(h.messages.map((m: any) => m.seq), [9, 10, 11, 12, 13], 'oldest first, the latest five')
    assert.equal(h.hasMore, true)
  })

  it('creates rooms over HTTP and lists them with unread counts', async () => {
    const a = await devToken(node.url, 'lister')
    const res = await fetch(`${node.url}/api/rooms`, {
      method: 'POST',
      headers: { authorization: `Bearer ${a.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Generated id' }),
    })
    assert.equal(res.status, 201)
    const room = await res.json()
    assert.match(room.id, /^r-/)
    assert.equal(room.private, false)
    const mine = await get(a.token, '/api/rooms')
    assert.deepEqual(mine.body.rooms.find((r: any) => r.id === room.id), {
      id: room.id,
      name: 'Generated id',
      private: false,
      lastSeq: 0,
      lastReadSeq: 0,
      unread: 0,
    })
  })

  it('edits, deletes and reactions reach the room and show in history', async () => {
    const [a, b] = await usersInRoom(node.url, 'edits', ['editor', 'viewer'])
    const [sa, sb] = [a.socket, b.socket]
    const m = await ack(sa, 'chat:message', { roomId: 'edits', text: 'tpyo' })
    const reply = await ack(sb, 'chat:message', { roomId: 'edits', text: 'you mean typo?', replyTo: m.messageId })
    assert.equal(reply.status, 'ok')

    // Cache the page first: every later change must show through.
    assert.equal((await get(a.token, '/api/rooms/edits/messages')).body.messages[1].text, 'tpyo')
    const edited = next(sb, 'chat:edited')
    assert.equal((await ack(sb, 'chat:edit', { roomId: 'edits', messageId: m.messageId, text: 'hijack' })).code, 'FORBIDDEN')
    assert.equal((await ack(sa, 'chat:edit', { roomId: 'edits', messageId: m.messageId, text: 'typo' })).status, 'ok')
    const e = await edited
    assert.deepEqual([e.roomId, e.messageId, e.text], ['edits', m.messageId, 'typo'])

    const reactions = collect(sa, 'chat:reaction')
    assert.equal((await ack(sb, 'chat:react', { roomId: 'edits', messageId: m.messageId, emoji: '👍', on: true })).status, 'ok')
    assert.equal((await ack(sa, 'chat:react', { roomId: 'edits', messageId: m.messageId, emoji: '👍', on: true })).status, 'ok')
    await eventually(() => reactions.length === 2)
    // Versions: the message (1), the reply (2), the edit (3), then this reaction (4).
    assert.deepEqual(reactions[0], { roomId: 'edits', messageId: m.messageId, version: 4, emoji: '👍', userId: b.userId, on: true })

    const page = await get(a.token, '/api/rooms/edits/messages')
    const [r2, r1] = page.body.messages
    assert.equal(r1.text, 'typo')
    assert.ok(r1.editedAt)
    assert.deepEqual(r1.reactions['👍'].sort(), [a.userId, b.userId].sort())
    assert.equal(r2.replyTo, m.messageId)

    const deleted = next(sb, 'chat:deleted')
    assert.equal((await ack(sb, 'chat:delete', { roomId: 'edits', messageId: m.messageId })).code, 'FORBIDDEN')
    assert.equal((await ack(sa, 'chat:delete', { roomId: 'edits', messageId: m.messageId })).status, 'ok')
    assert.equal((await deleted).messageId, m.messageId)
    const after = await get(a.token, '/api/rooms/edits/messages')
    const gone = after.body.messages.find((x: any) => x.id === m.messageId)
    assert.ok(gone.deletedAt)
    assert.equal(gone.text, '')
    assert.equal(gone.reactions, undefined, 'a tombstone carries no reactions (it had two)')
    assert.equal((await ack(sa, 'chat:edit', { roomId: 'edits', messageId: m.messageId, text: 'zombie' })).code, 'NOT_FOUND')
  })

  it('long-polling works and every Engine.IO response names the node', async () => {
    const { token } = await devToken(node.url, 'poller')
    const s = await chatClient(node.url, token, { transports: ['polling'] })
    await ack(s, 'room:join', 'poll-room')
    const got = next(s, 'chat:message')
    await ack(s, 'chat:message', { roomId: 'poll-room', text: 'over polling' })
    assert.equal((await got).text, 'over polling')
    const handshake = await fetch(`${node.url}/socket.io/?EIO=4&transport=polling`)
    assert.equal(handshake.status, 200)
    assert.equal(handshake.headers.get('x-switchboard-node'), node.config.nodeId)
  })

  it('refuses WebSocket handshakes from foreign origins; same origin passes', async () => {
    const { token } = await devToken(node.url, 'origin-user')
    const attempt = (origin: string) =>
      new Promise<string>((resolve) => {
        const s = io(`${node.url}/chat`, { auth: { token }, transports: ['websocket'], extraHeaders: { origin }, reconnection: false, forceNew: true })
        s.on('connect', () => (s.disconnect(), resolve('connected')))
        s.on('connect_error', () => (s.disconnect(), resolve('refused')))
      })
    assert.equal(await attempt('https://evil.example'), 'refused')
    assert.equal(await attempt(node.url), 'connected')
  })
})
