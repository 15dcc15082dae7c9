import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SignJWT } from 'jose'
import { ack, chatClient, collect, devToken, next, TEST_SECRET, useIsolatedNode } from './helpers.ts'

const sign = (claims: Record<string, unknown>, sub: string) =>
  new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime('1h').sign(new TextEncoder().encode(TEST_SECRET))

const post = (url: string, path: string, body: unknown, token?: string) =>
  fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })

const PROTO_KEYS = ['constructor', '__proto__', 'toString', 'valueOf', 'hasOwnProperty', 'prototype']

describe('hostile input: keys from users are data, never object properties', () => {
  const node = useIsolatedNode()

  it('reactions named after Object.prototype members work and leave the room usable for everyone', async () => {
    const a = await devToken(node.url, 'proto-a')
    const b = await devToken(node.url, 'proto-b')
    const sa = await chatClient(node.url, a.token)
    const sb = await chatClient(node.url, b.token)
    assert.equal((await ack(sa, 'room:join', 'proto-room')).status, 'ok')
    assert.equal((await ack(sb, 'room:join', 'proto-room')).status, 'ok')
    const sent = await ack(sa, 'chat:message', { roomId: 'proto-room', text: 'react to me' })
    for (const emoji of PROTO_KEYS) {
      const res = await ack(sb, 'chat:react', { roomId: 'proto-room', messageId: sent.messageId, emoji, on: true })
      assert.equal(res.status, 'ok', `${emoji}: ${res.error}`)
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined)

    // History over HTTP, a fresh join and a sync all still answer, with every reaction as data.
    const http = await fetch(`${node.url}/api/rooms/proto-room/messages`, { headers: { authorization: `Bearer ${a.token}` } })
    assert.equal(http.status, 200)
    const page = (await http.json()) as { messages: { reactions: Record<string, string[]> }[] }
    for (const emoji of PROTO_KEYS) assert.deepEqual(page.messages[0].reactions[emoji], [b.userId], emoji)

    const c = await chatClient(node.url, (await devToken(node.url, 'proto-c')).token)
    const history = next<{ messages: { reactions: Record<string, string[]> }[] }>(c, 'room:history')
    assert.equal((await ack(c, 'room:join', 'proto-room')).status, 'ok')
    const reactions = (await history).messages[0].reactions
    assert.ok(Object.hasOwn(reactions, '__proto__') && Object.hasOwn(reactions, 'constructor'))
    assert.deepEqual(Object.keys(reactions).sort(), [...PROTO_KEYS].sort())

    const sync = await ack(sa, 'chat:sync', { rooms: { 'proto-room': 0 } })
    assert.equal(sync.status, 'ok')
    assert.equal(sync.rooms['proto-room'][0].reactions.constructor[0], b.userId)
  })

  it('a room named __proto__ is a room like any other, in join, send and sync', async () => {
    const { token } = await devToken(node.url, 'proto-room-user')
    const s = await chatClient(node.url, token)
    for (const roomId of ['__proto__', 'constructor']) {
      assert.equal((await ack(s, 'room:join', roomId)).status, 'ok', roomId)
      assert.equal((await ack(s, 'chat:message', { roomId, text: `in ${roomId}` })).status, 'ok')
    }
    const sync = await ack(s, 'chat:sync', { rooms: JSON.parse('{"__proto__": 0, "constructor": 0}') })
    assert.equal(sync.status, 'ok')
    assert.ok(Object.hasOwn(sync.rooms, '__proto__'), 'the room named __proto__ is in the answer')
    assert.equal(sync.rooms['__proto__'][0].text, 'in __proto__')
    assert.equal(sync.rooms.constructor[0].text, 'in constructor')
  })
})

describe('hostile input: a stranger reaches nobody in a private room or a DM', () => {
  const node = useIsolatedNode()

  it('leave, typing and read marks from a non-member are refused and emit nothing', async () => {
    const owner = await devToken(node.url, 'priv-owner')
    const friend = await devToken(node.url, 'priv-friend')
    const stranger = await devToken(node.url, 'priv-stranger')
    const created = await post(node.url, '/api/rooms', { id: 'secret-room', name: 'Secret', private: true, members: [friend.userId] }, owner.token)
    assert.equal(created.status, 201)
    const so = await chatClient(node.url, owner.token)
    const sf = await chatClient(node.url, friend.token)
    const sx = await chatClient(node.url, stranger.token)
    assert.equal((await ack(so, 'room:join', 'secret-room')).status, 'ok')
    assert.equal((await ack(sf, 'room:join', 'secret-room')).status, 'ok')
    const dm = `dm:${[owner.userId, friend.userId].sort().join(':')}`
    assert.equal((await ack(so, 'room:join', dm)).status, 'ok')
    assert.equal((await ack(sf, 'room:join', dm)).status, 'ok')
    const first = await ack(so, 'chat:message', { roomId: 'secret-room', text: 'hello' })

    const leaks = [...['room:user-left', 'chat:typing', 'chat:read'].map((e) => collect(sf, e))]
    for (const roomId of ['secret-room', dm]) {
      assert.equal((await ack(sx, 'room:leave', roomId)).code, 'FORBIDDEN', `leave ${roomId}`)
      assert.equal((await ack(sx, 'room:leave', { roomId })).code, 'FORBIDDEN')
      assert.equal((await ack(sx, 'chat:typing', { roomId, isTyping: true })).code, 'FORBIDDEN')
      assert.equal((await ack(sx, 'chat:read', { roomId, seq: 1 })).code, 'FORBIDDEN')
      assert.equal((await ack(sx, 'chat:read', { roomId, messageId: first.messageId })).code, 'FORBIDDEN')
    }
    // A room that does not exist says so, and tells nobody anything either.
    assert.equal((await ack(sx, 'room:leave', 'no-such-room')).code, 'NOT_FOUND')

    // The positive signal: a member's message sent after the stranger's attempts arrives…
    const arrived = next(sf, 'chat:message', (m: { text: string }) => m.text === 'after the stranger')
    await ack(so, 'chat:message', { roomId: 'secret-room', text: 'after the stranger' })
    await arrived
    // …and nothing the stranger sent came before it.
    for (const l of leaks) assert.deepEqual(l, [])

    // A member's own leave is still announced.
    const left = next<{ userId: string }>(so, 'room:user-left')
    assert.equal((await ack(sf, 'room:leave', 'secret-room')).status, 'ok')
    assert.equal((await left).userId, friend.userId)
  })

  it("a room named after someone's socket id reaches only that room's members, not the socket", async () => {
    const victim = await chatClient(node.url, (await devToken(node.url, 'sid-victim')).token)
    const attacker = await chatClient(node.url, (await devToken(node.url, 'sid-attacker')).token)
    assert.match(victim.id!, /^[A-Za-z0-9_-]{20}$/, 'socket ids are valid room ids')
    assert.equal((await ack(victim, 'room:join', 'sid-signal')).status, 'ok')
    assert.equal((await ack(attacker, 'room:join', 'sid-signal')).status, 'ok')
    const stray = collect<{ roomId: string }>(victim, 'chat:message')
    assert.equal((await ack(attacker, 'room:join', victim.id)).status, 'ok')
    assert.equal((await ack(attacker, 'chat:message', { roomId: victim.id, text: 'injected' })).status, 'ok')
    // The positive signal: a message in a room the victim did join arrives, and nothing before it.
    await ack(attacker, 'chat:message', { roomId: 'sid-signal', text: 'signal' })
    await next(victim, 'chat:message', (m: { text: string }) => m.text === 'signal')
    assert.deepEqual(stray.map((m) => m.roomId), ['sid-signal'])
  })

  it("a DM's join ack names the online peer by their display name, not their id", async () => {
    const ana = await devToken(node.url, 'Ana Dm')
    const bob = await devToken(node.url, 'Bob Dm')
    const sb = await chatClient(node.url, bob.token)
    assert.equal((await ack(sb, 'room:join', 'bob-public')).status, 'ok') // bob is known by name somewhere
    const sa = await chatClient(node.url, ana.token)
    const dm = `dm:${[ana.userId, bob.userId].sort().join(':')}`
    const joined = await ack(sa, 'room:join', dm)
    assert.equal(joined.status, 'ok')
    const peer = joined.online.find((u: { userId: string }) => u.userId === bob.userId)
    assert.deepEqual(peer, { userId: bob.userId, username: 'Bob Dm' })
  })
})

describe('hostile input: strings Postgres cannot store are refused, never rewritten', () => {
  const node = useIsolatedNode()
  const BAD = { nul: 'x\u0000y', lone: 'x\ud800y', loneLow: 'x\udc00y' }

  it('U+0000 and unpaired surrogates in every socket field answer BAD_REQUEST; nothing is stored', async () => {
    const { token } = await devToken(node.url, 'unicode-user')
    const s = await chatClient(node.url, token)
    assert.equal((await ack(s, 'room:join', 'uni')).status, 'ok')
    const sent = await ack(s, 'chat:message', { roomId: 'uni', text: 'base' })
    for (const [kind, bad] of Object.entries(BAD)) {
      const cases: [string, unknown][] = [
        ['chat:message', { roomId: 'uni', text: bad }],
        ['chat:message', { roomId: 'uni', text: 'ok', clientMsgId: bad }],
        ['chat:edit', { roomId: 'uni', messageId: sent.messageId, text: bad }],
        ['chat:react', { roomId: 'uni', messageId: sent.messageId, emoji: bad, on: true }],
        ['chat:sync', { rooms: { uni: 0 }, extra: bad }],
        ['chat:sync', { rooms: { [`u${bad}`]: 0 } }],
        ['auth:refresh', { token: bad }],
      ]
      for (const [event, payload] of cases) {
        const res = await ack(s, event, payload)
        assert.equal(res.code, 'BAD_REQUEST', `${kind} in ${event} ${JSON.stringify(payload)} → ${res.code} ${res.error}`)
        assert.match(res.error, /U\+0000|unpaired|room ids/, res.error)
      }
    }
    assert.ok(s.connected)
    const rows = await node.db.selectFrom('messages').select(['text', 'edited_at']).execute()
    assert.deepEqual(rows, [{ text: 'base', edited_at: null }])
    assert.equal((await node.db.selectFrom('reactions').selectAll().execute()).length, 0)
    // A well-formed pair (a 4-byte emoji) and an RTL override are stored verbatim.
    const fine = 'ok 😀 \u202Eevil'
    assert.equal((await ack(s, 'chat:message', { roomId: 'uni', text: fine })).status, 'ok')
    assert.equal((await ack(s, 'chat:react', { roomId: 'uni', messageId: sent.messageId, emoji: '😀', on: true })).status, 'ok')
    const stored = await node.db.selectFrom('messages').select('text').where('seq', '=', '2').executeTakeFirstOrThrow()
    assert.equal(stored.text, fine)
  })

  it('HTTP bodies and dev-token usernames with U+0000 or lone surrogates answer 400, not 500', async () => {
    const { token } = await devToken(node.url, 'http-unicode')
    for (const bad of Object.values(BAD)) {
      for (const body of [{ name: bad }, { id: 'fine-id', name: 'ok', members: [bad] }]) {
        const res = await post(node.url, '/api/rooms', body, token)
        assert.equal(res.status, 400, JSON.stringify(body))
        assert.equal(((await res.json()) as { error: string }).error, 'BAD_REQUEST')
      }
      const dev = await post(node.url, '/api/dev/token', { username: bad })
      assert.equal(dev.status, 400)
    }
    // JSON text with the escape itself (what a hostile client sends on the wire).
    const raw = await post(node.url, '/api/dev/token', '{"username":"a\\u0000b"}')
    assert.equal(raw.status, 400)
    const history = await fetch(`${node.url}/api/rooms/x/messages?limit=%00`, { headers: { authorization: `Bearer ${token}` } })
    assert.equal(history.status, 400)
  })

  it('a JWT whose sub or name has a lone surrogate or U+0000 is refused: two subs never become one user', async () => {
    for (const [claims, sub] of [
      [{}, 'user\ud800'],
      [{}, 'user\udfff'],
      [{}, 'user\u0000'],
      [{ name: 'Eve\ud800' }, 'eve'],
      [{ name: 'Eve\u0000' }, 'eve'],
    ] as const) {
      const token = await sign(claims, sub)
      await assert.rejects(chatClient(node.url, token), (err: Error & { data?: { code?: string } }) => err.data?.code === 'AUTH_INVALID')
      const res = await fetch(`${node.url}/api/rooms`, { headers: { authorization: `Bearer ${token}` } })
      assert.equal(res.status, 401)
    }
    // A name cut at 64 characters keeps its emoji whole.
    const s = await chatClient(node.url, await sign({ name: 'a'.repeat(63) + '😀😀' }, 'long-name'))
    const joined = await ack(s, 'room:join', 'names')
    assert.equal(joined.online[0].username, 'a'.repeat(63) + '😀')
  })
})

describe('hostile input: size, depth, unknown events and error texts', () => {
  const node = useIsolatedNode()

  it('a 500 KB string answers TOO_LARGE and the socket stays connected', async () => {
    const { token } = await devToken(node.url, 'big-sender')
    const s = await chatClient(node.url, token)
    assert.equal((await ack(s, 'room:join', 'big')).status, 'ok')
    for (const payload of [
      { roomId: 'big', text: 'x'.repeat(500_000) },
      { roomId: 'big', text: 'hi', clientMsgId: 'y'.repeat(200_000) },
      { roomId: 'big', text: 'hi', junk: Array.from({ length: 50_000 }, () => 'z') },
    ]) {
      const res = await ack(s, 'chat:message', payload)
      assert.equal(res.code, 'TOO_LARGE', res.error)
      assert.ok(s.connected)
    }
    // Over 5,000 characters but within the event limit is the ordinary BAD_REQUEST.
    assert.equal((await ack(s, 'chat:message', { roomId: 'big', text: 'x'.repeat(5001) })).code, 'BAD_REQUEST')
    assert.equal((await ack(s, 'chat:message', { roomId: 'big', text: 'small' })).status, 'ok')
  })

  it('a payload nested 10,000 deep is BAD_REQUEST; an unknown event with an ack is answered', async () => {
    const { token } = await devToken(node.url, 'deep-sender')
    const s = await chatClient(node.url, token)
    // socket.io-client cannot even encode it (its binary check recurses), so write the packet raw.
    const deep = `${'{"d":'.repeat(10_000)}"core"${'}'.repeat(10_000)}`
    const answer = new Promise<string>((resolve) => {
      s.io.engine.on('packet', (p: { data?: unknown }) => {
        if (typeof p.data === 'string' && p.data.startsWith('3/chat,9999')) resolve(p.data)
      })
    })
    s.io.engine.write(`2/chat,9999["chat:message",{"roomId":"deep","text":"hi","extra":${deep}}]`)
    const res = JSON.parse((await answer).slice('3/chat,9999'.length))[0]
    assert.equal(res.code, 'BAD_REQUEST')
    assert.match(res.error, /nested/)
    const unknown = await ack(s, 'chat:nonsense', { a: 1 })
    assert.deepEqual(unknown, { status: 'error', code: 'BAD_REQUEST', error: 'Unknown event "chat:nonsense"' })
    assert.equal((await ack(s, 'constructor')).code, 'BAD_REQUEST')
    assert.ok(s.connected)
    const http = await post(node.url, '/api/dev/token', deep)
    assert.equal(http.status, 400)
  })

  it('every validation error names the field and what it accepts', async () => {
    const { token } = await devToken(node.url, 'err-texts')
    const s = await chatClient(node.url, token)
    assert.equal((await ack(s, 'room:join', 'texts')).status, 'ok')
    const cases: [string, unknown, RegExp][] = [
      ['room:join', { roomId: 'texts', lastSeq: 'abc' }, /^Invalid lastSeq: expected an integer seq ≥ 0/],
      ['room:join', { roomId: 'has space' }, /^Invalid roomId: expected a room id: 1–128 chars/],
      ['room:join', '..', /^Invalid roomId: expected a room id: 1–128 chars/],
      ['room:join', { roomId: '.' }, /^Invalid roomId: expected a room id: 1–128 chars/],
      ['room:join', 42, /^Invalid payload: expected an object/],
      ['chat:read', { roomId: 'texts', seq: 'x' }, /^Invalid seq: expected an integer seq ≥ 0/],
      ['chat:read', { roomId: 'texts' }, /exactly one of messageId .* and seq/],
      ['chat:message', { roomId: 'texts' }, /^Missing text$/],
      ['chat:message', { roomId: 'texts', text: 'x', replyTo: 'nope' }, /^Invalid replyTo: expected a message id \(UUID\)/],
      ['chat:typing', { roomId: 'texts', isTyping: 'yes' }, /^Invalid isTyping: expected isTyping: true or false/],
      ['chat:sync', { rooms: { 'bad room': 1 } }, /^Invalid key rooms\."bad room": the keys must be room ids/],
      ['chat:sync', { rooms: { texts: -1 } }, /^Invalid rooms\.texts: expected an integer seq ≥ 0/],
    ]
    for (const [event, payload, pattern] of cases) {
      const res = await ack(s, event, payload)
      assert.equal(res.code, 'BAD_REQUEST')
      assert.match(res.error, pattern, `${event} ${JSON.stringify(payload)}`)
    }
  })
})
