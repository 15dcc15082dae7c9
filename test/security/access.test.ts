/**
 * Attack suite, authorisation per message (SPEC §4 rules): a stranger probes a private room and a
 * DM by id through every event and route; another user's message is edited or deleted. Every
 * probe is FORBIDDEN / NOT_FOUND, nothing changes, and no event reaches the members — checked
 * with the members' sockets waiting on a positive signal sent after the probes.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Socket } from 'socket.io-client'
import { ack, ackCode, chatClient, devToken, httpJson, next, useIsolatedNode } from './helpers.ts'

const MEMBER_EVENTS = ['room:user-joined', 'room:user-left', 'chat:message', 'chat:edited', 'chat:deleted', 'chat:reaction', 'chat:typing', 'chat:read']

/** Records every room event a socket receives. */
function recorder(socket: Socket) {
  const seen: [string, any][] = []
  for (const e of MEMBER_EVENTS) socket.on(e, (p: any) => seen.push([e, p]))
  return seen
}

describe('a stranger probing private rooms and DMs', () => {
  const node = useIsolatedNode({ TYPING_THROTTLE_MS: '0' })

  it('every event and route on a private room and a DM: FORBIDDEN / NOT_FOUND, nothing reaches the members', async () => {
    const owner = await devToken(node.url, 'acc-owner')
    const friend = await devToken(node.url, 'acc-friend')
    const stranger = await devToken(node.url, 'acc-stranger')
    const created = await httpJson(node.url, 'POST', '/api/rooms', { token: owner.token, body: { id: 'acc-secret', name: 'Secret', private: true, members: [friend.userId] } })
    assert.equal(created.status, 201)
    const dm = `dm:${owner.userId}:${friend.userId}`
    const o = await chatClient(node.url, owner.token)
    const f = await chatClient(node.url, friend.token)
    const s = await chatClient(node.url, stranger.token)
    const stolen = recorder(s)
    for (const room of ['acc-secret', dm]) {
      assert.equal(ackCode(await ack(o, 'room:join', room), 'owner join'), 'ok')
      assert.equal(ackCode(await ack(f, 'room:join', room), 'friend join'), 'ok')
    }
    const seenByOwner = recorder(o)
    const seenByFriend = recorder(f)
    const problems: string[] = []

    for (const room of ['acc-secret', dm]) {
      const msg = await ack(o, 'chat:message', { roomId: room, text: `private in ${room}` })
      assert.equal(ackCode(msg, 'owner send'), 'ok')
      seenByOwner.length = 0
      seenByFriend.length = 0
      const probes: [string, unknown][] = [
        ['room:join', room],
        ['room:join', { roomId: room, lastSeq: 0 }],
        ['chat:message', { roomId: room, text: 'let me in' }],
        ['chat:message', { roomId: room, text: 'reply', replyTo: msg.messageId }],
        ['chat:edit', { roomId: room, messageId: msg.messageId, text: 'defaced' }],
        ['chat:delete', { roomId: room, messageId: msg.messageId }],
        ['chat:react', { roomId: room, messageId: msg.messageId, emoji: '💩', on: true }],
        ['chat:typing', { roomId: room, isTyping: true }],
        ['chat:read', { roomId: room, seq: msg.seq }],
        ['chat:read', { roomId: room, messageId: msg.messageId }],
        ['room:leave', room],
        ['room:leave', { roomId: room }],
      ]
      for (const [event, payload] of probes) {
        const code = ackCode(await ack(s, event, payload), event)
        const allowed = event === 'room:leave' ? ['ok', 'FORBIDDEN', 'NOT_FOUND'] : ['FORBIDDEN', 'NOT_FOUND']
        if (!allowed.includes(code)) problems.push(`${room}: ${event} ${JSON.stringify(payload)} → ${code}`)
      }
      const sync = await ack(s, 'chat:sync', { rooms: { [room]: 0 } })
      if (sync.status === 'ok' && Object.prototype.hasOwnProperty.call(sync.rooms ?? {}, room)) problems.push(`${room}: chat:sync answered its messages`)
      if (sync.status !== 'ok' && !['FORBIDDEN', 'NOT_FOUND'].includes(sync.code)) problems.push(`${room}: chat:sync → ${sync.code}`)
      // HTTP: history in every shape, the room list, re-creating it, and joining it as a member.
      for (const path of [`/api/rooms/${room}/messages`, `/api/rooms/${room}/messages?before=100&limit=5`]) {
        const h = await httpJson(node.url, 'GET', path, { token: stranger.token })
        if (h.status !== 403 && h.status !== 404) problems.push(`GET ${path}: ${h.status}`)
        if (JSON.stringify(h.body).includes('private in')) problems.push(`GET ${path} leaked text`)
      }
      const mine = await httpJson(node.url, 'GET', '/api/rooms', { token: stranger.token })
      if (mine.body.rooms.some((r: any) => r.id === room)) problems.push(`${room} listed for the stranger`)
      const again = await httpJson(node.url, 'POST', '/api/rooms', { token: stranger.token, body: { id: room, name: 'mine now', members: [stranger.userId] } })
      if (again.status !== 409 && again.status !== 400 && again.status !== 403) problems.push(`POST /api/rooms ${room}: ${again.status}`)

      // Positive signal: the friend types, the owner sees it; everything the stranger sent came before.
      const signal = next(o, 'chat:typing', (p: any) => p.roomId === room && p.userId === friend.userId)
      f.emit('chat:typing', { roomId: room, isTyping: true })
      await signal
      const fromStranger = (seen: [string, any][]) => seen.filter(([, p]) => p.userId === stranger.userId || JSON.stringify(p).includes('let me in') || JSON.stringify(p).includes('defaced'))
      if (fromStranger(seenByOwner).length) problems.push(`${room}: the owner received ${JSON.stringify(fromStranger(seenByOwner))}`)
      if (fromStranger(seenByFriend).length) problems.push(`${room}: the friend received ${JSON.stringify(fromStranger(seenByFriend))}`)
      // Nothing changed.
      const h = await httpJson(node.url, 'GET', `/api/rooms/${room}/messages`, { token: owner.token })
      assert.deepEqual(h.body.messages.map((m: any) => [m.text, m.reactions, m.deletedAt, m.editedAt]), [[`private in ${room}`, undefined, undefined, undefined]], `${room} unchanged`)
    }
    // The stranger got nothing of either room, while a public room's message reaches it (positive signal).
    await ack(s, 'room:join', 'acc-public')
    await ack(o, 'room:join', 'acc-public')
    const pub = next(s, 'chat:message', (m: any) => m.roomId === 'acc-public')
    await ack(o, 'chat:message', { roomId: 'acc-public', text: 'public' })
    await ack(o, 'chat:message', { roomId: 'acc-secret', text: 'after the probes' })
    await pub
    const leaked = stolen.filter(([, p]) => p.roomId === 'acc-secret' || p.roomId === dm)
    assert.deepEqual(leaked, [], 'no event of the private rooms reached the stranger')
    assert.deepEqual(problems, [])
  })

  it("another user's message edited or deleted: FORBIDDEN, unchanged", async () => {
    const alice = await devToken(node.url, 'own-alice')
    const bob = await devToken(node.url, 'own-bob')
    const a = await chatClient(node.url, alice.token)
    const b = await chatClient(node.url, bob.token)
    await ack(a, 'room:join', 'own-room')
    await ack(b, 'room:join', 'own-room')
    const msg = await ack(a, 'chat:message', { roomId: 'own-room', text: 'alice wrote this' })
    const edited = await ack(b, 'chat:edit', { roomId: 'own-room', messageId: msg.messageId, text: 'bob wrote this' })
    assert.equal(ackCode(edited, 'edit'), 'FORBIDDEN')
    const deleted = await ack(b, 'chat:delete', { roomId: 'own-room', messageId: msg.messageId })
    assert.equal(ackCode(deleted, 'delete'), 'FORBIDDEN')
    // The same message named under another room id is not found there (no cross-room ids).
    await ack(b, 'room:join', 'own-other')
    for (const event of ['chat:edit', 'chat:delete']) {
      const r = await ack(b, event, { roomId: 'own-other', messageId: msg.messageId, text: 'moved' })
      assert.ok(['FORBIDDEN', 'NOT_FOUND'].includes(ackCode(r, event)), `${event} through another room: ${r.code}`)
    }
    const h = await httpJson(node.url, 'GET', '/api/rooms/own-room/messages', { token: alice.token })
    assert.deepEqual(h.body.messages.map((m: any) => [m.text, m.editedAt, m.deletedAt]), [['alice wrote this', undefined, undefined]])
  })
})
