import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { getJson, usersInRoom, ack, chatClient, closeClients, collect, devToken, eventually, next, sleep, startIsolatedNode, startNode } from './helpers.ts'

/** The same suite against Redis presence and against the embedded default's in-process presence. */
const variants: [string, () => Promise<{ url: string; close(): Promise<void> }>][] = [
  ['Redis presence, Postgres', () => startIsolatedNode()],
  [
    'in-process presence, embedded PGlite',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'sb-presence-'))
      const node = await startNode({ DATA_DIR: dir })
      return { url: node.url, close: async () => (await node.close(), rmSync(dir, { recursive: true, force: true })) }
    },
  ],
]

for (const [variant, start] of variants) describe(`presence, typing, receipts (${variant})`, () => {
  let node: { url: string; close(): Promise<void> }
  before(async () => {
    node = await start()
  })
  after(async () => {
    closeClients()
    await node?.close()
  })

  it('online on the first device, offline only when the last one leaves', async () => {
    const watcher = await devToken(node.url, 'watcher')
    const mia = await devToken(node.url, 'mia')
    const w = await chatClient(node.url, watcher.token)
    await ack(w, 'room:join', 'presence-room')
    const m1 = await chatClient(node.url, mia.token)
    await ack(m1, 'room:join', 'presence-room')
    // Mia is a member now: her first device leaving is announced; wait for it before counting.
    const firstGone = next(w, 'presence:offline', (u) => u.userId === mia.userId)
    m1.disconnect()
    await firstGone

    const online = collect(w, 'presence:online')
    const offline = collect(w, 'presence:offline')
    const phone = await chatClient(node.url, mia.token)
    await eventually(() => online.length === 1, 3000, 'presence:online')
    assert.deepEqual(online[0], { userId: mia.userId, username: 'mia' })
    const laptop = await chatClient(node.url, mia.token)
    await sleep(150)
    assert.equal(online.length, 1, 'a second device is not a second online')

    // A new socket learns who is online among its room mates.
    let list: Promise<any> = Promise.resolve()
    await chatClient(node.url, watcher.token, { setup: (s) => (list = next(s, 'presence:list')) })
    const listed = await list
    assert.ok(listed.some((u: any) => u.userId === mia.userId))
    assert.ok(!listed.some((u: any) => u.userId === watcher.userId), 'not oneself')

    phone.disconnect()
    await sleep(200)
    assert.deepEqual(offline, [], 'still online on the laptop')
    laptop.disconnect()
    await eventually(() => offline.length === 1, 3000, 'presence:offline')
    assert.deepEqual(offline[0], { userId: mia.userId, username: 'mia' })
    const join = await ack(w, 'room:join', 'presence-room')
    assert.ok(!join.online.some((u: any) => u.userId === mia.userId))
  })

  it('typing reaches the room except the typist, throttled', async () => {
    const [{ socket: a }, { socket: b }] = await usersInRoom(node.url, 'typing-room', ['typist', 'reader'])
    const atA = collect(a, 'chat:typing')
    const atB = collect(b, 'chat:typing')
    for (let i = 0; i < 5; i++) a.emit('chat:typing', { roomId: 'typing-room', isTyping: true })
    a.emit('chat:typing', { roomId: 'typing-room', isTyping: false })
    await eventually(() => atB.length >= 2)
    await sleep(100)
    assert.deepEqual(atB.map((t) => t.isTyping), [true, false], 'five typing:true in a burst are throttled to one')
    assert.equal(atB[0].username, 'typist')
    assert.deepEqual(atA, [])
    const outside = await ack(b, 'chat:typing', { roomId: 'not-joined', isTyping: true })
    assert.equal(outside.code, 'FORBIDDEN')
  })

  it('read receipts persist and reach the room except the reader; unread counts follow', async () => {
    const [aT, bT] = await usersInRoom(node.url, 'reads', ['reads-a', 'reads-b'])
    const [a, b] = [aT.socket, bT.socket]
    const sent = []
    for (let i = 0; i < 3; i++) sent.push(await ack(a, 'chat:message', { roomId: 'reads', text: `r${i}` }))
    const unread = async (token: string) => (await getJson(node.url, token, '/api/rooms')).body.rooms.find((r: any) => r.id === 'reads')
    assert.equal((await unread(bT.token)).unread, 3)
    assert.equal((await unread(aT.token)).unread, 0, 'one’s own messages are never unread')
    const atA = next(a, 'chat:read')
    const atB = collect(b, 'chat:read')
    assert.equal((await ack(b, 'chat:read', { roomId: 'reads', messageId: sent[1].messageId })).status, 'ok')
    assert.deepEqual(await atA, { roomId: 'reads', userId: bT.userId, messageId: sent[1].messageId, seq: 2 })
    assert.equal((await unread(bT.token)).unread, 1)
    // Read marks never go backwards.
    await ack(b, 'chat:read', { roomId: 'reads', seq: 1 })
    assert.equal((await unread(bT.token)).lastReadSeq, 2)
    await sleep(50)
    assert.deepEqual(atB, [])
    const hist = next(a, 'room:history')
    await ack(a, 'room:join', 'reads')
    assert.equal((await hist).reads[bT.userId], 2)
  })
})
