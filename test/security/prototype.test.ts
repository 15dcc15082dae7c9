/**
 * Attack suite, prototype keys (SPEC §4: "keys that come from users are data, never object
 * properties"): `__proto__`, `constructor`, `prototype` and friends as payload keys, emoji, room
 * ids, user ids and usernames, and in `chat:sync` rooms. Afterwards the node process (in this
 * process) has no polluted prototype and every room still works for every member.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Socket } from 'socket.io-client'
import { ack, ackCode, chatClient, devToken, httpJson, next, prototypeSnapshot, refused, signToken, useIsolatedNode } from './helpers.ts'

const KEYS = ['__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString', 'valueOf', '__defineGetter__']
/** Payload keys that would pollute a prototype if merged into an object carelessly. */
const POISON = '{"__proto__":{"polluted":"yes","isAdmin":true},"constructor":{"prototype":{"polluted":"yes"}},"prototype":{"polluted":"yes"}}'
const withPoison = (payload: object) => Object.assign(JSON.parse(POISON), payload) as Record<string, unknown>
const own = (o: unknown, k: string) => o !== null && typeof o === 'object' && Object.prototype.hasOwnProperty.call(o, k)
const ownValue = (o: any, k: string) => (own(o, k) ? Object.getOwnPropertyDescriptor(o, k)!.value : undefined)

describe('prototype keys are data', () => {
  const node = useIsolatedNode({ RATE_LIMIT_MESSAGES: '1000', TYPING_THROTTLE_MS: '0' })

  it('as user ids, usernames, room ids, emoji, payload keys and sync keys: everything works and nothing is polluted', async () => {
    const before = prototypeSnapshot()
    const problems: string[] = []
    const check = (ok: boolean, what: string) => void (ok || problems.push(what))

    // Users whose JWT sub and name are prototype keys, plus dev-token users named so.
    const users: { userId: string; token: string; socket: Socket }[] = []
    for (const sub of ['__proto__', 'constructor', 'prototype']) {
      const token = await signToken(sub, { name: sub })
      users.push({ userId: sub, token, socket: await chatClient(node.url, token) })
    }
    for (const name of ['__proto__', 'toString']) {
      const t = await devToken(node.url, name)
      users.push({ userId: t.userId, token: t.token, socket: await chatClient(node.url, t.token) })
    }
    const [alice] = users

    for (const room of KEYS) {
      for (const u of users) {
        const history = next(u.socket, 'room:history', (h: any) => h.roomId === room)
        const joined = await ack(u.socket, 'room:join', withPoison({ roomId: room }))
        check(ackCode(joined, `join ${room}`) === 'ok' && joined.roomId === room, `${u.userId} joins ${room}: ${JSON.stringify(joined)}`)
        await history
      }
      const last = users[users.length - 1]
      const joined = await ack(last.socket, 'room:join', room)
      const online = new Set((joined.online ?? []).map((o: any) => o.userId))
      check(users.every((u) => online.has(u.userId)), `${room}: online lists every member: ${JSON.stringify(joined.online)}`)

      // A message whose payload carries poison keys, and whose text is a key itself.
      const sent = await ack(alice.socket, 'chat:message', withPoison({ roomId: room, text: room, clientMsgId: '__proto__' }))
      check(ackCode(sent, `send ${room}`) === 'ok', `send in ${room}: ${JSON.stringify(sent)}`)
      if (sent.status !== 'ok') continue
      const again = await ack(alice.socket, 'chat:message', { roomId: room, text: room, clientMsgId: '__proto__' })
      check(again.messageId === sent.messageId, `${room}: clientMsgId "__proto__" is idempotent`)
      for (const emoji of KEYS) {
        for (const u of users.slice(0, 2)) {
          const r = await ack(u.socket, 'chat:react', withPoison({ roomId: room, messageId: sent.messageId, emoji, on: true }))
          check(ackCode(r, `react ${emoji}`) === 'ok', `${u.userId} reacts ${emoji} in ${room}: ${JSON.stringify(r)}`)
        }
      }
      const readSeen = next(users[1].socket, 'chat:read', (p: any) => p.roomId === room && p.userId === alice.userId)
      const read = await ack(alice.socket, 'chat:read', withPoison({ roomId: room, seq: sent.seq }))
      check(ackCode(read, `read ${room}`) === 'ok', `read in ${room}: ${JSON.stringify(read)}`)
      await readSeen.catch(() => problems.push(`${room}: chat:read of ${alice.userId} did not reach the room`))
      const typingSeen = next(users[1].socket, 'chat:typing', (p: any) => p.roomId === room && p.userId === alice.userId)
      alice.socket.emit('chat:typing', withPoison({ roomId: room, isTyping: true }))
      await typingSeen.catch(() => problems.push(`${room}: chat:typing of ${alice.userId} did not reach the room`))
    }

    // HTTP: a room named and populated with prototype keys; bodies carrying poison keys.
    const created = await httpJson(node.url, 'POST', '/api/rooms', {
      token: alice.token,
      body: { id: 'proto-private', name: '__proto__', private: true, members: ['constructor', '__proto__', 'prototype'] },
    })
    check(created.status === 201, `POST /api/rooms with prototype-key members: ${created.status} ${JSON.stringify(created.body)}`)
    for (const body of [`{"name":"p1",${POISON.slice(1)}`, '{"name":"p2","constructor":{"prototype":{"polluted":"yes"}}}', '{"__proto__":{"name":"p3"}}']) {
      const r = await httpJson(node.url, 'POST', '/api/rooms', { token: alice.token, body })
      check(r.status === 201 || r.status === 400, `POST /api/rooms ${body}: ${r.status}`)
    }
    const dev = await httpJson(node.url, 'POST', '/api/dev/token', { body: '{"username":"mallory","__proto__":{"roles":["admin"]},"constructor":{"prototype":{"roles":["admin"]}}}' })
    check(dev.status === 200 || dev.status === 400, `dev token with poison: ${dev.status}`)
    if (dev.status === 200) check((await refused(node.url, '/admin', { auth: { token: dev.body.token } })).code === 'FORBIDDEN', 'poisoned dev token is no admin')

    // The process: no prototype gained or lost a property.
    assert.deepEqual(prototypeSnapshot(), before, 'built-in prototypes unchanged')
    const probe: any = {}
    for (const k of ['polluted', 'isAdmin', 'roles', 'admin']) assert.equal(probe[k], undefined, `({}).${k}`)
    assert.equal(([] as any).polluted, undefined)
    assert.equal(Object.getPrototypeOf({}), Object.prototype)

    // Every room still works for every member: history over HTTP, join, sync — each keyed right.
    for (const room of KEYS) {
      for (const u of users) {
        const h = await httpJson(node.url, 'GET', `/api/rooms/${room}/messages`, { token: u.token })
        check(h.status === 200 && h.body.roomId === room, `${u.userId}: history of ${room}: ${h.status} ${JSON.stringify(h.body).slice(0, 200)}`)
        if (h.status !== 200) continue
        const m = h.body.messages?.[0]
        check(m?.text === room && m?.roomId === room && m?.userId === alice.userId, `${room}: the message reads back: ${JSON.stringify(m)}`)
        for (const emoji of KEYS) {
          const who = ownValue(m?.reactions, emoji)
          check(Array.isArray(who) && who.length === 2 && who.includes(users[0].userId) && who.includes(users[1].userId), `${room}: reaction ${emoji} → ${JSON.stringify(who)}`)
        }
        const historyEvent = next(u.socket, 'room:history', (p: any) => p.roomId === room)
        const j = await ack(u.socket, 'room:join', room)
        check(ackCode(j, 'rejoin') === 'ok', `${u.userId} rejoins ${room}: ${JSON.stringify(j)}`)
        const hist = await historyEvent
        check(own(hist.reads, alice.userId) && ownValue(hist.reads, alice.userId) === 1, `${room}: reads carry ${alice.userId}: ${JSON.stringify(hist.reads)}`)
      }
    }
    const syncRooms: Record<string, number> = Object.create(null)
    for (const room of KEYS) syncRooms[room] = 0
    for (const u of users) {
      const sync = await ack(u.socket, 'chat:sync', { rooms: syncRooms })
      check(ackCode(sync, 'sync') === 'ok', `${u.userId} sync: ${JSON.stringify(sync).slice(0, 200)}`)
      for (const room of KEYS) {
        const got = ownValue(sync.rooms, room)
        check(Array.isArray(got) && got.length === 1 && got[0].text === room, `${u.userId} sync ${room} → ${JSON.stringify(got)?.slice(0, 100)}`)
      }
    }
    if (created.status === 201) {
      for (const sub of ['constructor', '__proto__']) {
        const token = await signToken(sub, { name: sub })
        const mine = await httpJson(node.url, 'GET', '/api/rooms', { token })
        check(mine.body.rooms?.some((r: any) => r.id === 'proto-private'), `${sub} is a member of proto-private`)
        const h = await httpJson(node.url, 'GET', '/api/rooms/proto-private/messages', { token })
        check(h.status === 200, `${sub} reads proto-private: ${h.status}`)
      }
    }
    assert.deepEqual(problems, [])
  })
})
