import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, it } from 'node:test'
import { pino } from 'pino'
import { Server } from 'socket.io'
import { io as connect } from 'socket.io-client'
import type { Message } from '../src/domain/types.ts'
import type { ChatServer } from '../src/realtime/events.ts'
import { RoomFeed, type FeedSource } from '../src/realtime/room-feed.ts'
import { assignSeqs, dedupeKey, type Committed, type Draft } from '../src/store/messages.repository.ts'
import { eventually, sleep } from './helpers.ts'

const draft = (roomId: string, clientMsgId: string | null = null, userId = 'u1'): Draft => ({
  id: crypto.randomUUID(),
  roomId,
  userId,
  username: userId,
  text: 't',
  keyId: null,
  textCipher: null,
  replyTo: null,
  clientMsgId,
  attachmentId: null,
})

describe('assignSeqs (pure sequencing rule)', () => {
  it('numbers each room from its last seq, in queue order, per room', () => {
    const last = new Map([
      ['a', 5],
      ['b', 0],
    ])
    const { results, inserts } = assignSeqs([draft('a'), draft('b'), draft('a'), draft('b'), draft('a')], last, new Map(), new Date())
    assert.deepEqual(results.map((r) => r.seq), [6, 1, 7, 2, 8])
    assert.equal(inserts.length, 5)
    assert.deepEqual([...last], [['a', 8], ['b', 2]])
  })

  it('gives resends the original, whether stored earlier or earlier in the batch', () => {
    const stored: Committed = { id: 'orig', seq: 3, version: 3, createdAt: new Date(0), duplicate: true }
    const existing = new Map([[dedupeKey('a', 'u1', 'k-old'), stored]])
    const ds = [draft('a', 'k-old'), draft('a', 'k-new'), draft('a', 'k-new'), draft('a', 'k-new', 'u2')]
    const { results, inserts } = assignSeqs(ds, new Map([['a', 3]]), existing, new Date())
    assert.deepEqual(results.map((r) => [r.seq, r.duplicate]), [[3, true], [4, false], [4, true], [5, false]])
    assert.equal(results[0].id, 'orig')
    assert.equal(results[2].id, ds[1].id)
    assert.equal(inserts.length, 2, 'only new keys are inserted; seqs stay gap-free')
  })

  it('refuses a room it did not lock', () => {
    assert.throws(() => assignSeqs([draft('zzz')], new Map(), new Map(), new Date()), /vanished/)
  })
})

describe('RoomFeed ordering (real Socket.IO, in-memory source)', () => {
  async function setup(stored: Message[], reconcileMs = 0, hooks: { beforeLatest?: () => Promise<unknown> } = {}) {
    const http = createServer()
    const io: ChatServer = new Server(http)
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r))
    const nsp = io.of('/chat')
    const source: FeedSource = {
      head: async () => ({ lastSeq: 0, version: 0 }),
      heads: async (ids) => new Map(ids.map((id) => [id, { lastSeq: stored.length, version: stored.length }])),
      range: async (room, after, upTo, limit) => stored.filter((m) => m.seq > after && m.seq <= upTo).slice(0, limit).map((m) => ({ ...m, roomId: room })),
      latest: async (_room, upTo, limit) => {
        const page = stored.filter((m) => m.seq <= upTo).slice(-limit)
        await hooks.beforeLatest?.()
        return page
      },
      changedSince: async (room, after, limit, maxSeq = Infinity) =>
        stored.filter((m) => m.version > after && m.seq <= maxSeq).slice(0, limit).map((m) => ({ ...m, roomId: room })),
    }
    const feed = new RoomFeed(nsp, source, pino({ level: 'silent' }), { shared: false, gapWaitMs: 50, ringSize: 4, reconcileMs })
    let server: import('../src/realtime/events.ts').ChatSocket | undefined
    const joined = new Promise<void>((resolve) =>
      nsp.on('connection', (s) => {
        server = s
        void feed.subscribe(s, 'r', 0, 100).then((sub) => (sub.join(), resolve()))
      }),
    )
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`
    const client = connect(`${url}/chat`, { transports: ['websocket'] })
    const got: number[] = []
    client.on('chat:message', (m: Message) => got.push(m.seq))
    await joined
    return { feed, got, client, url, server: server!, close: () => (feed.close(), client.disconnect(), new Promise((r) => io.close(r))) }
  }
  const msg = (seq: number): Message => ({ id: `m${seq}`, roomId: 'r', seq, version: seq, userId: 'u', username: 'u', text: `${seq}`, timestamp: new Date().toISOString() })

  it("sends a batch of one room's messages to each WebSocket member in one write", async () => {
    const t = await setup([])
    try {
      // Count what reaches the kernel: each _write/_writev of the member's TCP socket is one system call.
      const raw = (t.server.conn.transport as unknown as { socket: { _socket: { _write: Function; _writev: Function } } }).socket._socket
      let writes = 0
      for (const k of ['_write', '_writev'] as const) {
        const orig = raw[k].bind(raw)
        raw[k] = (...args: unknown[]) => (writes++, orig(...args))
      }
      for (const s of [1, 2, 3, 4, 5]) t.feed.publish(msg(s)) // committed together: one batch
      await eventually(() => t.got.length >= 5)
      assert.deepEqual(t.got, [1, 2, 3, 4, 5])
      assert.equal(writes, 1, 'five frames, one write')
      // The same messages one batch each: one write apiece (the counter does count).
      writes = 0
      for (const s of [6, 7, 8]) {
        t.feed.publish(msg(s))
        await eventually(() => t.got.at(-1) === s)
      }
      assert.deepEqual(t.got, [1, 2, 3, 4, 5, 6, 7, 8])
      assert.equal(writes, 3)
    } finally {
      await t.close()
    }
  })

  it('holds an early message until its predecessor arrives, and drops duplicates', async () => {
    const t = await setup([])
    for (const s of [1, 3, 2, 2, 1, 4]) t.feed.publish(msg(s))
    await eventually(() => t.got.length >= 4)
    await sleep(100)
    assert.deepEqual(t.got, [1, 2, 3, 4])
    await t.close()
  })

  it('reads a lost message from the store when it does not arrive', async () => {
    const stored = [1, 2, 3, 4, 5].map(msg)
    const t = await setup(stored)
    t.feed.publish(msg(1))
    t.feed.publish(msg(4)) // 2 and 3 were "lost in pub/sub"
    t.feed.publish(msg(5))
    await eventually(() => t.got.length >= 5, 2000, 'gap filled')
    assert.deepEqual(t.got, [1, 2, 3, 4, 5])
    await t.close()
  })

  it('reconciles a lost tail that no later message reveals', async () => {
    const stored = [1, 2, 3].map(msg)
    const t = await setup(stored, 100)
    t.feed.publish(msg(1)) // 2 and 3 were committed but their pub/sub messages were lost
    await eventually(() => t.got.length >= 3, 2000, 'tail reconciled')
    assert.deepEqual(t.got, [1, 2, 3])
    await t.close()
  })

  it('holds live messages for a subscriber until it joins, then replays them first, in order', async () => {
    const stored = [1, 2, 3].map(msg)
    const t = await setup(stored)
    const order: string[] = []
    t.client.on('chat:message', (m: Message) => order.push(`live ${m.seq}`))
    // A second subscription of the same socket to another room, as chat:sync does.
    const sub = await t.feed.subscribe(t.server, 'r2', 0, 100)
    const r2 = (seq: number): Message => ({ ...msg(seq), roomId: 'r2' })
    t.feed.publish(r2(1))
    t.feed.publish(r2(2))
    await sleep(100)
    assert.deepEqual(order, [], 'nothing reaches the socket before it joins')
    sub.join()
    t.feed.publish(r2(3))
    await eventually(() => order.length >= 3, 2000, 'replayed and live')
    assert.deepEqual(order, ['live 1', 'live 2', 'live 3'])
    await t.close()
  })

  it('orders changes with messages by version; a lost change is caught up from the store in its current state, once', async () => {
    // Stored now: 1 edited (version 3), 2 with a reaction (version 4). Version 3's pub/sub copy was lost.
    const edited: Message = { ...msg(1), version: 3, text: 'one, edited', editedAt: new Date().toISOString() }
    const reacted: Message = { ...msg(2), version: 4, reactions: { '👍': ['u2'] } }
    const t = await setup([edited, reacted])
    const events: string[] = []
    t.client.on('chat:edited', (e) => events.push(`edited ${e.messageId} v${e.version} ${e.text}`))
    t.client.on('chat:reaction', (e) => events.push(`reaction ${e.messageId} v${e.version} ${'reactions' in e ? JSON.stringify(e.reactions) : `${e.emoji} ${e.on}`}`))
    t.client.on('chat:message', (m: Message) => events.push(`message ${m.seq} v${m.version}`))
    try {
      // The reaction (version 4) arrives before the lost edit (3) and before message 2 (2).
      t.feed.change({ kind: 'reaction', event: { roomId: 'r', messageId: 'm2', version: 4, emoji: '👍', userId: 'u2', on: true } })
      t.feed.publish(msg(1))
      t.feed.publish(msg(2))
      await eventually(() => events.length >= 4, 2000, 'the gap is filled from the store')
      await sleep(150) // longer than a gap wait: a second fill would repeat something
      assert.deepEqual(events, [
        'message 1 v1',
        'message 2 v2',
        'edited m1 v3 one, edited',
        'reaction m1 v3 {}',
        'reaction m2 v4 {"👍":["u2"]}',
      ])
    } finally {
      await t.close()
    }
  })

  it('a join that races with a change: replayed after the answer when the answer misses it, never twice', async () => {
    const stored: Message[] = []
    let during: (() => void) | undefined
    // The change goes out while the history is being read (its delivery runs before the read returns).
    const t = await setup(stored, 0, { beforeLatest: async () => (during?.(), await sleep(10)) })
    const other = connect(`${t.url}/chat`, { transports: ['websocket'] })
    try {
      await new Promise<void>((r) => other.once('connect', () => r()))
      const otherOnServer = [...t.server.nsp.sockets.values()].find((s) => s.id !== t.server.id)!
      const edits: string[] = []
      t.client.on('chat:edited', (e) => edits.push(`${e.roomId} v${e.version}`))
      const room = async (roomId: string) => {
        const first = await t.feed.subscribe(otherOnServer, roomId, undefined, 100)
        first.join()
        t.feed.publish({ ...msg(1), roomId })
        await sleep(20)
      }
      const edit = (roomId: string) => ({ kind: 'edited' as const, event: { roomId, messageId: 'm1', version: 2, text: 'edited', editedAt: new Date().toISOString() } })
      const edited = { ...msg(1), version: 2, text: 'edited', editedAt: new Date().toISOString() }

      // A: the edit is delivered while the history is read, and the history shows the old text.
      await room('ra')
      stored.splice(0, stored.length, msg(1))
      during = () => ((during = undefined), t.feed.change(edit('ra')))
      const a = await t.feed.subscribe(t.server, 'ra', undefined, 100)
      assert.deepEqual(a.messages.map((m) => m.version), [1])
      a.join()

      // B: the history already shows the edit that is delivered while it is read: no replay.
      await room('rb')
      stored.splice(0, stored.length, edited)
      during = () => ((during = undefined), t.feed.change(edit('rb')))
      const b = await t.feed.subscribe(t.server, 'rb', undefined, 100)
      assert.deepEqual(b.messages.map((m) => m.version), [2])
      b.join()

      // C: the history shows an edit this node has not delivered yet: the feed catches up first,
      // and the late live copy is dropped.
      await room('rc')
      stored.splice(0, stored.length, edited)
      const c = await t.feed.subscribe(t.server, 'rc', undefined, 100)
      assert.deepEqual(c.messages.map((m) => m.version), [2])
      c.join()
      t.feed.change(edit('rc'))
      t.feed.publish({ ...msg(2), roomId: 'rc', version: 3 })
      const later = new Promise<void>((r) => t.client.on('chat:message', (m: Message) => m.roomId === 'rc' && m.seq === 2 && r()))
      await later // comes after anything the edit would have brought
      assert.deepEqual(edits, ['ra v2'], 'A replayed once; B and C already showed it')
    } finally {
      other.disconnect()
      await t.close()
    }
  })

  it('a socket ahead of this node (moved from a node that died) gets nothing twice; the feed catches up from the store', async () => {
    // Messages 1-3 of r3 are committed and were delivered by the node the moving client was on;
    // this node has delivered none of them yet (their pub/sub messages are in flight or lost).
    const stored = [1, 2, 3].map(msg)
    const t = await setup(stored)
    const r3 = (seq: number): Message => ({ ...msg(seq), roomId: 'r3' })
    const moved: number[] = []
    t.client.on('chat:message', (m: Message) => m.roomId === 'r3' && moved.push(m.seq))
    // A member of r3 that was on this node all along.
    const other = connect(`${t.url}/chat`, { transports: ['websocket'] })
    const local: number[] = []
    other.on('chat:message', (m: Message) => m.roomId === 'r3' && local.push(m.seq))
    try {
      await new Promise<void>((r) => other.once('connect', () => r()))
      const otherOnServer = [...t.server.nsp.sockets.values()].find((s) => s.id !== t.server.id)!
      const localSub = await t.feed.subscribe(otherOnServer, 'r3', undefined, 100)
      assert.equal(localSub.lastSeq, 0, "this node's feed of r3 is at 0")
      localSub.join()

      // The moved socket syncs from 3, the last seq it saw on its old node.
      const sub = await t.feed.subscribe(t.server, 'r3', 3, 100)
      assert.deepEqual(sub.messages, [], 'nothing after 3 yet')
      assert.equal(sub.lastSeq, 3, 'the feed caught up with what the socket had seen')
      sub.join()
      // The copies in flight arrive late, then the next message (committed now: the catch-up reads the whole room).
      stored.push(msg(4))
      for (const s of [1, 2, 3, 4]) t.feed.publish(r3(s))
      await eventually(() => moved.length >= 1 && local.length >= 4, 2000, 'live 4 delivered')
      await sleep(100)
      assert.deepEqual(moved, [4], 'the moved socket sees no repeat')
      assert.deepEqual(local, [1, 2, 3, 4], 'the local member got 1-3 from the catch-up, once each')
    } finally {
      other.disconnect()
      await t.close()
    }
  })
})
