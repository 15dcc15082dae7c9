import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { usersInRoom, useIsolatedNode, ack, chatClient, collect, devToken, sleep } from './helpers.ts'

describe('private and dm: rooms', () => {
  const node = useIsolatedNode()

  const createRoom = async (token: string, body: object) =>
    fetch(`${node.url}/api/rooms`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    })

  it('a non-member gets FORBIDDEN on join, read and post, and receives nothing of the room', async () => {
    const owner = await devToken(node.url, 'owner')
    const friend = await devToken(node.url, 'friend')
    const stranger = await devToken(node.url, 'stranger')
    const res = await createRoom(owner.token, { id: 'secret', name: 'Secret', private: true, members: [friend.userId] })
    assert.equal(res.status, 201)
    assert.deepEqual((await res.json()).members.sort(), [owner.userId, friend.userId].sort())

    const o = await chatClient(node.url, owner.token)
    const f = await chatClient(node.url, friend.token)
    const s = await chatClient(node.url, stranger.token)
    assert.equal((await ack(o, 'room:join', 'secret')).status, 'ok')
    assert.equal((await ack(f, 'room:join', 'secret')).status, 'ok')

    const leaked: unknown[] = []
    for (const e of ['chat:message', 'room:history', 'chat:typing', 'chat:read', 'room:user-joined', 'chat:edited', 'chat:reaction']) {
      s.on(e, (p: any) => {
        if (JSON.stringify(p).includes('secret')) leaked.push([e, p])
      })
    }
    const join = await ack(s, 'room:join', 'secret')
    assert.deepEqual([join.status, join.code], ['error', 'FORBIDDEN'])
    assert.equal(typeof join.error, 'string')
    const post = await ack(s, 'chat:message', { roomId: 'secret', text: 'let me in' })
    assert.deepEqual([post.status, post.code], ['error', 'FORBIDDEN'])
    const read = await ack(s, 'chat:read', { roomId: 'secret', seq: 1 })
    assert.deepEqual([read.status, read.code], ['error', 'FORBIDDEN'])
    const sync = await ack(s, 'chat:sync', { rooms: { secret: 0 } })
    assert.equal(sync.status, 'ok')
    assert.deepEqual(sync.rooms, {})
    assert.equal(sync.errors.secret, 'FORBIDDEN')
    const history = await fetch(`${node.url}/api/rooms/secret/messages`, { headers: { authorization: `Bearer ${stranger.token}` } })
    assert.equal(history.status, 403)
    assert.equal((await history.json()).error, 'FORBIDDEN')

    const sent = await ack(o, 'chat:message', { roomId: 'secret', text: 'only for friends' })
    assert.equal(sent.status, 'ok')
    await ack(o, 'chat:typing', { roomId: 'secret', isTyping: true })
    await ack(f, 'chat:read', { roomId: 'secret', seq: sent.seq })
    await sleep(200)
    assert.deepEqual(leaked, [])
    const rows = await node.db.selectFrom('messages').select('text').where('room_id', '=', 'secret').execute()
    assert.deepEqual(rows.map((r) => r.text), ['only for friends'], 'the refused post stored nothing')
  })

  it('dm:<a>:<b> is private to its two members', async () => {
    const a = await devToken(node.url, 'dm-a')
    const b = await devToken(node.url, 'dm-b')
    const c = await devToken(node.url, 'dm-c')
    const room = `dm:${a.userId}:${b.userId}`
    const sa = await chatClient(node.url, a.token)
    const sb = await chatClient(node.url, b.token)
    const sc = await chatClient(node.url, c.token)
    assert.equal((await ack(sa, 'room:join', room)).status, 'ok')
    assert.equal((await ack(sb, 'room:join', room)).status, 'ok')
    const seenByC = collect(sc, 'chat:message')
    assert.equal((await ack(sc, 'room:join', room)).code, 'FORBIDDEN')
    assert.equal((await ack(sc, 'room:join', `dm:${c.userId}:${b.userId}x`)).status, 'ok', 'c may open its own dm')
    const m = await ack(sa, 'chat:message', { roomId: room, text: 'psst' })
    assert.equal(m.status, 'ok')
    await sleep(100)
    assert.deepEqual(seenByC, [])
    const rooms = await fetch(`${node.url}/api/rooms`, { headers: { authorization: `Bearer ${b.token}` } })
    const listed = (await rooms.json()).rooms.find((r: any) => r.id === room)
    assert.equal(listed.private, true)
    assert.equal(listed.unread, 1)
  })

  it('room:leave removes the membership: the room stops reaching the user', async () => {
    const [u, v] = await usersInRoom(node.url, 'leave-me', ['leaver', 'stayer'])
    const [su, sv] = [u.socket, v.socket]
    const left = new Promise((r) => sv.once('room:user-left', r))
    assert.equal((await ack(su, 'room:leave', 'leave-me')).status, 'ok')
    assert.deepEqual(await left, { userId: u.userId, username: 'leaver', roomId: 'leave-me' })
    const got = collect(su, 'chat:message')
    await ack(sv, 'chat:message', { roomId: 'leave-me', text: 'gone?' })
    await sleep(100)
    assert.deepEqual(got, [])
    const post = await ack(su, 'chat:message', { roomId: 'leave-me', text: 'still here' })
    assert.equal(post.code, 'FORBIDDEN')
  })
})
