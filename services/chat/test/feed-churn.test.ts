import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { pino } from 'pino'
import { Server } from 'socket.io'
import { io as connect, type Socket } from 'socket.io-client'
import type { Message } from '../src/domain/types.ts'
import type { ChatServer, ChatSocket } from '../src/realtime/events.ts'
import { RoomFeed, type FeedSource } from '../src/realtime/room-feed.ts'
import { ack, chatClient, closeClients, collect, devToken, eventually, next, REDIS_URL, startIsolatedNode, startNode, type TestNode } from './helpers.ts'

/** One metric's value from a node's /metrics, summed over the series whose labels include `labels`. */
async function metric(url: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  let sum = 0
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line)
    if (!m || m[1] !== name) continue
    if (Object.entries(labels).every(([k, v]) => (m[2] ?? '').includes(`${k}="${v}"`))) sum += Number(m[3])
  }
  return sum
}
const feedRooms = (url: string) => metric(url, 'switchboard_feed_rooms')
/** Handlers of `event` that have finished on the node (answered, whether or not the socket was still there). */
const handled = (url: string, event: string) => metric(url, 'switchboard_ack_seconds_count', { event })

describe('RoomFeed state churn on real nodes: switchboard_feed_rooms returns to its baseline', () => {
  let a: Awaited<ReturnType<typeof startIsolatedNode>>
  let b: TestNode
  before(async () => {
    a = await startIsolatedNode({ NODE_ID: 'churn-a', RATE_LIMIT_JOINS: '1000', RATE_LIMIT_SYNCS: '1000', RATE_LIMIT_MESSAGES: '1000' })
    // A second node on the same database and Redis prefix: the cluster as it runs.
    b = await startNode({ NODE_ID: 'churn-b', DATABASE_URL: a.database.url, REDIS_URL, REDIS_PREFIX: a.redis.prefix, RATE_LIMIT_JOINS: '1000', RATE_LIMIT_SYNCS: '1000', RATE_LIMIT_MESSAGES: '1000' })
  })
  after(async () => {
    closeClients()
    await b?.close()
    await a?.close()
  })

  it('joins, leaves, disconnects (also right after room:join or chat:sync), FORBIDDEN joins and partly failing syncs leave no room state behind', async () => {
    const baseline = { a: await feedRooms(a.url), b: await feedRooms(b.url) }
    const owner = await devToken(a.url, 'fc-owner')
    const other = await devToken(a.url, 'fc-other')
    const stranger = await devToken(a.url, 'fc-stranger')
    const dm = [owner.userId, other.userId].sort().join(':')
    const privateRoom = `dm:${dm}`
    // The DM exists (private, two members), so the stranger's join is refused by membership.
    const ownerSocket = await chatClient(a.url, owner.token)
    assert.equal((await ack(ownerSocket, 'room:join', privateRoom)).status, 'ok')
    assert.equal(await feedRooms(a.url), baseline.a + 1, 'the gauge counts a room with a local socket')
    ownerSocket.disconnect()
    await eventually(async () => (await feedRooms(a.url)) === baseline.a, 5000, 'the DM state is dropped once its socket is gone')

    for (const [node, name] of [[a, 'a'], [b, 'b']] as const) {
      const rooms = [`fc-${name}-1`, `fc-${name}-2`, `fc-${name}-3`]
      const joins0 = await handled(node.url, 'room:join')
      const syncs0 = await handled(node.url, 'chat:sync')
      let joins = 0
      let syncs = 0
      // A plain join, then a leave; a join, then a disconnect.
      const s1 = await chatClient(node.url, stranger.token)
      for (const r of rooms) {
        assert.equal((await ack(s1, 'room:join', r)).status, 'ok')
        joins++
      }
      assert.equal(await feedRooms(node.url), baseline[name] + rooms.length)
      await ack(s1, 'room:leave', rooms[0])
      // A repeated join of a room the socket is in.
      assert.equal((await ack(s1, 'room:join', rooms[1])).status, 'ok')
      joins++
      // A join the private room refuses.
      const refused = await ack(s1, 'room:join', privateRoom)
      joins++
      assert.equal(refused.code, 'FORBIDDEN')
      // A sync that fails for some rooms (not a member of the DM, nor of a room never joined).
      const sync = await ack(s1, 'chat:sync', { rooms: { [rooms[1]]: 0, [privateRoom]: 0, [`fc-${name}-never`]: 0 } })
      syncs++
      assert.deepEqual(Object.keys(sync.errors ?? {}).sort(), [`fc-${name}-never`, privateRoom].sort())
      s1.disconnect()
      await eventually(async () => (await feedRooms(node.url)) === baseline[name], 5000, `node ${name}: back to its baseline after the leave and the disconnect`)

      // Disconnects right after emitting, with the join or sync still running on the server.
      for (let i = 0; i < 4; i++) {
        const s = await chatClient(node.url, stranger.token)
        s.emit('room:join', `fc-${name}-quick-${i}`)
        joins++
        if (i % 2 === 1) {
          s.emit('chat:sync', { rooms: { [rooms[1]]: 0, [rooms[2]]: 0, [privateRoom]: 0 } })
          syncs++
        }
        s.disconnect()
      }
      await eventually(async () => (await handled(node.url, 'room:join')) === joins0 + joins && (await handled(node.url, 'chat:sync')) === syncs0 + syncs, 5000, 'every join and sync finished')
      await eventually(async () => (await feedRooms(node.url)) === baseline[name], 5000, `node ${name}: switchboard_feed_rooms back to its baseline`)
    }

    // Afterwards rooms work as before: a fresh member on B follows a room that A writes to, once each, in order.
    const writer = await chatClient(a.url, owner.token)
    const reader = await chatClient(b.url, other.token)
    assert.equal((await ack(writer, 'room:join', 'fc-b-2')).status, 'ok')
    assert.equal((await ack(reader, 'room:join', 'fc-b-2')).status, 'ok')
    const got = collect<Message>(reader, 'chat:message')
    const sent: number[] = []
    for (let i = 0; i < 5; i++) sent.push((await ack(writer, 'chat:message', { roomId: 'fc-b-2', text: `after ${i}` })).seq)
    await eventually(() => got.length >= sent.length, 5000, 'the reader on B gets the messages')
    const last = await ack(writer, 'chat:message', { roomId: 'fc-b-2', text: 'last' })
    await next(reader, 'chat:message', (m: Message) => m.seq === last.seq)
    assert.deepEqual(got.map((m) => m.seq), [...sent, last.seq])
    writer.disconnect()
    reader.disconnect()
    await eventually(async () => (await feedRooms(a.url)) === baseline.a && (await feedRooms(b.url)) === baseline.b, 5000, 'both nodes back to their baseline')
  })
})

describe('RoomFeed state lifetime and reads racing with an emptying room (real Socket.IO, in-memory source)', () => {
  const msg = (roomId: string, seq: number): Message => ({ id: `${roomId}-m${seq}`, roomId, seq, version: seq, userId: 'u', username: 'u', text: `${seq}`, timestamp: new Date().toISOString() })

  async function setup() {
    const http = createServer()
    const io: ChatServer = new Server(http)
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r))
    const nsp = io.of('/chat')
    /** Committed messages per room, as Postgres holds them. */
    const stored = new Map<string, Message[]>()
    const rows = (room: string) => stored.get(room) ?? []
    const hooks: { failFor?: Set<string>; beforeChangedSince?: () => Promise<void>; beforeLatest?: () => Promise<void> } = {}
    const fail = (room: string) => {
      if (hooks.failFor?.has(room)) throw new Error(`database down for ${room}`)
    }
    const source: FeedSource = {
      head: async (room) => ({ lastSeq: rows(room).length, version: rows(room).length }),
      heads: async (ids) => new Map(ids.map((id) => [id, { lastSeq: rows(id).length, version: rows(id).length }])),
      range: async (room, after, upTo, limit) => (fail(room), rows(room).filter((m) => m.seq > after && m.seq <= upTo).slice(0, limit)),
      latest: async (room, upTo, limit) => {
        const gate = hooks.beforeLatest
        hooks.beforeLatest = undefined
        await gate?.()
        fail(room)
        return rows(room).filter((m) => m.seq <= upTo).slice(-limit)
      },
      changedSince: async (room, after, limit, maxSeq = Infinity) => {
        const gate = hooks.beforeChangedSince
        hooks.beforeChangedSince = undefined
        await gate?.()
        fail(room)
        return rows(room).filter((m) => m.version > after && m.seq <= maxSeq).slice(0, limit)
      },
    }
    let gauge = 0
    const feed = new RoomFeed(nsp, source, pino({ level: 'silent' }), { shared: false, gapWaitMs: 30, ringSize: 16, reconcileMs: 0, onTracked: (n) => (gauge = n) })
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`
    const clients: Socket[] = []
    /** A connected client and its server-side socket. */
    const client = async () => {
      const server = new Promise<ChatSocket>((resolve) => nsp.once('connection', resolve))
      const c = connect(`${url}/chat`, { transports: ['websocket'], forceNew: true, reconnection: false })
      clients.push(c)
      const s = await server
      await new Promise<void>((r) => (c.connected ? r() : c.once('connect', () => r())))
      return { c, s }
    }
    /** A message committed: in the store first, then (unless `lost`) through the feed. */
    const commit = (room: string, lost = false) => {
      const list = stored.get(room) ?? []
      stored.set(room, list)
      const m = msg(room, list.length + 1)
      list.push(m)
      if (!lost) feed.publish(m)
      return m
    }
    return {
      feed,
      nsp,
      hooks,
      client,
      commit,
      gauge: () => gauge,
      close: () => (feed.close(), clients.forEach((c) => c.disconnect()), new Promise((r) => io.close(r))),
    }
  }

  it('drops a room whose subscribe failed, was cancelled, or whose socket left before join(); keeps it while a join is in progress', async () => {
    const t = await setup()
    try {
      const { c, s } = await client(t)
      // A read that fails: the error reaches the caller, the state goes.
      t.hooks.failFor = new Set(['down'])
      await assert.rejects(t.feed.subscribe(s, 'down', undefined, 10), /database down/)
      assert.equal(t.feed.trackedRooms, 0)
      t.hooks.failFor = undefined
      // cancel(): the socket never joins; nothing else holds the room.
      const cancelled = await t.feed.subscribe(s, 'cancelled', undefined, 10)
      assert.equal(t.feed.trackedRooms, 1, 'held between subscribe and join')
      cancelled.cancel()
      assert.equal(t.feed.trackedRooms, 0)
      // A room with a member stays when another subscribe to it is cancelled.
      ;(await t.feed.subscribe(s, 'kept', undefined, 10)).join()
      const other = await client(t)
      ;(await t.feed.subscribe(other.s, 'kept', undefined, 10)).cancel()
      assert.equal(t.feed.trackedRooms, 1)
      // While a join is in progress the room's last member leaves: the state stays for the join.
      const pending = await t.feed.subscribe(other.s, 'kept', undefined, 10)
      await s.leave('kept')
      assert.equal(t.feed.trackedRooms, 1, 'a join in progress holds the state')
      pending.join()
      assert.equal(t.feed.trackedRooms, 1, 'the room has its new member')
      await other.s.leave('kept')
      assert.equal(t.feed.trackedRooms, 0)
      // The socket disconnects between subscribe and join: join() does not join, the state goes.
      const late = await t.feed.subscribe(other.s, 'gone', undefined, 10)
      const disconnected = new Promise((r) => other.s.once('disconnect', r))
      other.c.disconnect()
      await disconnected
      late.join()
      assert.equal(t.feed.trackedRooms, 0)
      assert.equal(t.gauge(), 0, 'onTracked saw every drop')
      c.disconnect()
    } finally {
      await t.close()
    }
  })

  it('a room that empties and refills while the feed reads a gap from the database delivers each message once, in order', async () => {
    const t = await setup()
    try {
      const first = await client(t)
      ;(await t.feed.subscribe(first.s, 'r', undefined, 10)).join()
      const firstGot = collect<Message>(first.c, 'chat:message')
      t.commit('r')
      await eventually(() => firstGot.length === 1)
      // Message 2's pub/sub copy is lost; 3 arrives and waits for it; the gap fill reads the
      // database, slowly (held until released).
      let release!: () => void
      let reading!: () => void
      const isReading = new Promise<void>((r) => (reading = r))
      t.hooks.beforeChangedSince = () => (reading(), new Promise<void>((r) => (release = r)))
      t.commit('r', true)
      t.commit('r')
      await isReading
      // Meanwhile the room empties (its state goes) and refills: the new member's history has 1..3.
      await first.s.leave('r')
      assert.equal(t.feed.trackedRooms, 0)
      const second = await client(t)
      const got = collect<Message>(second.c, 'chat:message')
      const sub = await t.feed.subscribe(second.s, 'r', undefined, 10)
      assert.deepEqual(sub.messages.map((m) => m.seq), [1, 2, 3])
      sub.join()
      // The slow read returns: what it found belongs to the dropped state, not to the new member.
      release()
      await sleepTick()
      const m4 = t.commit('r')
      await eventually(() => got.some((m) => m.seq === m4.seq), 5000, 'message 4 arrives')
      assert.deepEqual([...sub.messages, ...got].map((m) => m.seq), [1, 2, 3, 4], 'each message once, in order')
      assert.equal(t.feed.trackedRooms, 1)
    } finally {
      await t.close()
    }
  })

  it('a subscribe whose state is dropped while it reads (the feed closing) does not hand out a subscription on the dead state', async () => {
    const t = await setup()
    try {
      const { s } = await client(t)
      t.commit('c')
      let release!: () => void
      let reading!: () => void
      const isReading = new Promise<void>((r) => (reading = r))
      t.hooks.beforeLatest = () => (reading(), new Promise<void>((r) => (release = r)))
      const sub = t.feed.subscribe(s, 'c', undefined, 10)
      await isReading
      t.feed.close()
      release()
      await assert.rejects(sub, (err: { code?: string }) => err.code === 'UNAVAILABLE')
      assert.equal(t.feed.trackedRooms, 0)
      assert.equal(s.rooms.has('c'), false)
    } finally {
      await t.close()
    }
  })
})

const client = (t: { client: () => Promise<{ c: Socket; s: ChatSocket }> }) => t.client()
const sleepTick = () => new Promise((r) => setImmediate(r))
