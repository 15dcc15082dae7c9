import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import type { Socket } from 'socket.io-client'
import type { RunningCluster } from '../../infra/cluster.ts'
import { ack, clientFrom, closeAll, connected, devToken, eventually, octetsByNode, startTestCluster, type TestCluster } from './helpers.ts'

const LINGER_MS = 3000

/** A node's value of a metric: the sum over the series whose labels include `labels`. */
async function metric(url: string, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  let sum = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue
    if (labels && !line.includes(labels)) continue
    sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return sum
}

const received = (url: string) => metric(url, 'switchboard_cluster_messages_received_total')
const subscriptions = (url: string) => metric(url, 'switchboard_cluster_room_subscriptions')

/** Every live `chat:message` seq of one room, in arrival order, after what history brought. */
class Seqs {
  readonly seqs: number[] = []
  constructor(
    readonly socket: Socket,
    readonly roomId: string,
  ) {
    socket.on('chat:message', (m: any) => m.roomId === roomId && this.seqs.push(m.seq))
  }

  /** Joins with `lastSeq` (0: everything so far comes in the history, ahead of the live stream). */
  async join(lastSeq?: number): Promise<void> {
    await connected(this.socket)
    const history = new Promise<any>((resolve) => this.socket.once('room:history', resolve))
    const r = await ack(this.socket, 'room:join', lastSeq === undefined ? this.roomId : { roomId: this.roomId, lastSeq })
    if (r.status !== 'ok') throw new Error(`join: ${r.code}`)
    const h = await history
    // The history is emitted before the ack and before any live message (SPEC §5.4).
    this.seqs.unshift(...h.messages.map((m: any) => m.seq))
  }
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)

/** Sends `count` messages one after another (each acked before the next). */
async function send(s: Socket, roomId: string, tag: string, count: number, onEach?: (i: number) => void | Promise<void>): Promise<number> {
  let last = 0
  for (let i = 0; i < count; i++) {
    const r = await ack(s, 'chat:message', { roomId, text: `${tag} ${i}`, clientMsgId: `${tag}-${i}` })
    if (r.status !== 'ok') throw new Error(`send ${tag} ${i}: ${r.code}`)
    last = r.seq
    await onEach?.(i)
  }
  return last
}

/**
 * SPEC §7, issue 18's done-when: a node hears only the rooms it serves. Three real nodes behind
 * nginx on one Redis of this file, once per adapter: the feed travels on per-room channels with
 * either (the adapter carries only room events).
 */
for (const adapter of ['classic', 'sharded']) describe(`per-room channels (${adapter} adapter)`, () => {
  let test: TestCluster
  let cluster: RunningCluster
  let octets: Map<string, number[]>
  const dir = mkdtempSync(join(tmpdir(), 'sb-channels-'))
  const on = (nodeIndex: number, k = 0) => octets.get(cluster.nodes[nodeIndex].id)![k]
  const url = (nodeIndex: number) => cluster.nodes[nodeIndex].url
  const client = async (name: string, nodeIndex: number, k = 0) => clientFrom(cluster.url, (await devToken(cluster.url, `${name}-${adapter}`)).token, on(nodeIndex, k))

  before(async () => {
    test = await startTestCluster(dir, `sbch${adapter}:`, {
      REDIS_ADAPTER: adapter,
      RATE_LIMIT_MESSAGES: '100000',
      RATE_LIMIT_JOINS: '100000',
      TYPING_THROTTLE_MS: '0',
      ROOM_CHANNEL_LINGER_MS: String(LINGER_MS),
    })
    cluster = test.cluster
    octets = await octetsByNode(cluster.url, cluster.nodes.map((n) => n.id), 3)
  })

  after(async () => {
    closeAll()
    await test?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('1,000 messages in a room whose sockets are all on node-1 raise the other nodes’ received count by (nearly) nothing', async () => {
    const room = `local-${adapter}`
    const members = [await client('lo-a', 0, 0), await client('lo-b', 0, 1), await client('lo-c', 0, 2)].map((s) => new Seqs(s, room))
    for (const m of members) await m.join()
    const before = await Promise.all([1, 2].map((i) => received(url(i))))
    const last = await send(members[0].socket, room, `lo-${adapter}`, 1000)
    assert.equal(last, 1000)
    await eventually(() => members.every((m) => m.seqs.length >= 1000), 20_000, 'every member got 1,000 messages')
    for (const m of members) assert.deepEqual(m.seqs, range(1, 1000), 'in order, exactly once')
    const after = await Promise.all([1, 2].map((i) => received(url(i))))
    for (const [k, i] of [1, 2].entries()) {
      // Before per-room channels each of them received every one of the 1,000.
      assert.ok(after[k] - before[k] <= 10, `node-${i + 1} received ${after[k] - before[k]} messages from other nodes for a room it has no socket in`)
    }
  })

  it(`typing, joins and leaves in a room local to node-1 ${adapter === 'sharded' ? 'stay off' : 'reach (classic: one pattern subscription)'} the other nodes`, async () => {
    // 20 characters with a ':' — the adapter's own test would take it for a socket id (D142).
    const room = `local-events:${adapter.padEnd(7, '-')}`
    const watcher = await client('le-w', 0, 0)
    await new Seqs(watcher, room).join()
    const visitors: Socket[] = []
    const rounds = 20
    for (let i = 0; i < rounds; i++) visitors.push(await client(`le-v${i}`, 0, 1 + (i % 2)))
    for (const v of visitors) await connected(v)
    const before = await Promise.all([1, 2].map((i) => received(url(i))))
    for (const [i, v] of visitors.entries()) {
      // Each round: a joined broadcast, a typing broadcast, a leave of every device of the user
      // (socketsLeave on the user room) and a left broadcast.
      const got: string[] = []
      const seen = Promise.all(
        (['room:user-joined', 'chat:typing', 'room:user-left'] as const).map((event) => new Promise<void>((resolve) => watcher.once(event, () => (got.push(event), resolve())))),
      )
      assert.equal((await ack(v, 'room:join', room)).status, 'ok')
      v.emit('chat:typing', { roomId: room, isTyping: true })
      assert.equal((await ack(v, 'room:leave', room)).status, 'ok')
      // The positive signal: node-1's watcher got all three.
      await Promise.race([seen, new Promise((_, reject) => setTimeout(() => reject(new Error(`round ${i}: got only ${got.join(', ')}`)), 5000))])
    }
    const after = await Promise.all([1, 2].map((i) => received(url(i))))
    for (const [k, i] of [1, 2].entries()) {
      const got = after[k] - before[k]
      const kinds = (await (await fetch(`${url(i)}/metrics`)).text()).split('\n').filter((l) => l.startsWith('switchboard_cluster_messages_received_total{'))
      if (adapter === 'sharded') assert.ok(got <= 5, `node-${i + 1} received ${got} messages of a room it has no socket in: ${kinds.join('; ')}`)
      else assert.ok(got >= 3 * rounds, `classic: node-${i + 1} hears every room event (${got})`)
    }
  })

  it('a room channel keeps delivering after its subscriber connection is killed (ioredis subscribes again)', async () => {
    const room = `killed-${adapter}`
    const far = new Seqs(await client('kill-far', 1, 1), room)
    await far.join()
    const sender = await client('kill-s', 0, 1)
    await new Seqs(sender, room).join()
    assert.equal(await send(sender, room, `kill1-${adapter}`, 5), 5)
    await eventually(() => far.seqs.length === 5, 5000, 'the first five on node-2')
    const admin = new Redis(test.redis.url)
    try {
      const list = async () => String(await admin.call('CLIENT', 'LIST'))
      const channel = `sbch${adapter}:room:{${room}}`
      const subscribed = async () => ((await admin.call('PUBSUB', 'SHARDNUMSUB', channel)) as [string, number])[1]
      const idOf = (text: string) => new RegExp(`id=(\\d+) [^\\n]*name=${cluster.nodes[1].id}:rooms `).exec(text)?.[1]
      const before = idOf(await list())
      assert.ok(before, 'node-2 has a room channel connection')
      assert.equal(await subscribed(), 2, 'node-1 and node-2 follow the room')
      await admin.call('CLIENT', 'KILL', 'ID', before)
      await eventually(async () => {
        const id = idOf(await list())
        return id !== undefined && id !== before && (await subscribed()) === 2
      }, 10_000, 'node-2 reconnected its room channel connection and subscribed again')
      const gapFills = () => metric(url(1), 'switchboard_feed_gap_fills_total')
      const filled = await gapFills()
      const last = await send(sender, room, `kill2-${adapter}`, 20)
      await eventually(() => far.seqs.length >= last, 10_000, 'node-2 delivers again')
      assert.deepEqual(far.seqs, range(1, last))
      assert.equal(await gapFills(), filled, 'live, on the channel: nothing read back from Postgres')
    } finally {
      admin.disconnect()
    }
  })

  it('a room spread over every node delivers everything in order, exactly once; each node counts what it received', async () => {
    const room = `spread-${adapter}`
    const members: Seqs[] = []
    for (const i of [0, 1, 2]) for (const k of [0, 1]) members.push(new Seqs(await client(`sp-${i}-${k}`, i, k), room))
    for (const m of members) await m.join()
    const before = await Promise.all([0, 1, 2].map((i) => metric(url(i), 'switchboard_cluster_messages_received_total', 'kind="room"')))
    // Senders on node-1 and node-3 at once.
    await Promise.all([send(members[0].socket, room, `sp1-${adapter}`, 150), send(members[4].socket, room, `sp3-${adapter}`, 150)])
    await eventually(() => members.every((m) => m.seqs.length >= 300), 20_000, 'every member got 300 messages')
    for (const m of members) assert.deepEqual(m.seqs, range(1, 300), 'in order, exactly once')
    const after = await Promise.all([0, 1, 2].map((i) => metric(url(i), 'switchboard_cluster_messages_received_total', 'kind="room"')))
    // Every node follows the room: the ones that did not send it got the others' commits on its channel
    // (one publication per commit batch, so at least one per ack'd round trip of the other sender).
    assert.ok(after[1] - before[1] >= 150, `node-2 received ${after[1] - before[1]} room messages`)
    assert.ok(after[0] - before[0] >= 1 && after[2] - before[2] >= 1, 'node-1 and node-3 received each other’s')
  })

  it('a node that gets its first socket in a busy room mid-stream delivers with no gap and no duplicate', async () => {
    const room = `busy-${adapter}`
    const sender = new Seqs(await client('busy-s', 0, 0), room)
    await sender.join()
    const late: Seqs[] = []
    const joins: Promise<void>[] = []
    const subsBefore = await Promise.all([1, 2].map((i) => subscriptions(url(i))))
    // node-2 and node-3 have no socket in the room until the stream is under way.
    const last = await send(sender.socket, room, `busy-${adapter}`, 600, (i) => {
      if (i === 150 || i === 350) {
        const nodeIndex = i === 150 ? 1 : 2
        joins.push(
          client(`busy-late-${nodeIndex}`, nodeIndex, 2).then(async (s) => {
            const m = new Seqs(s, room)
            late.push(m)
            await m.join(0)
          }),
        )
      }
    })
    await Promise.all(joins)
    assert.equal(late.length, 2)
    await eventually(() => late.every((m) => m.seqs.length >= last), 20_000, 'the late joiners got every message')
    for (const m of late) assert.deepEqual(m.seqs, range(1, last), 'history, then the live stream: no gap, no duplicate')
    const subsAfter = await Promise.all([1, 2].map((i) => subscriptions(url(i))))
    for (const k of [0, 1]) assert.ok(subsAfter[k] > subsBefore[k], 'the late node subscribed to the room’s channel')
  })

  it('after the last socket leaves, the subscription gauge drops back once the linger is over; a join within the linger reuses it', async () => {
    const room = `linger-${adapter}`
    const feedRooms = () => metric(url(1), 'switchboard_feed_rooms')
    const baseRooms = await feedRooms()
    const base = await subscriptions(url(1))
    const s = await client('linger-a', 1, 0)
    const m = new Seqs(s, room)
    await m.join()
    assert.equal(await subscriptions(url(1)), base + 1, 'subscribed while it has a socket in the room')

    // Leave; the feed lets the room go at once, the channel only after the linger.
    await ack(s, 'room:leave', room)
    await eventually(async () => (await feedRooms()) === baseRooms, 5000, 'the feed released the room')
    assert.equal(await subscriptions(url(1)), base + 1, 'still subscribed during the linger')
    // Back within the linger: the same subscription serves, and messages flow.
    await m.join()
    assert.equal(await subscriptions(url(1)), base + 1, 'one subscription, not two')
    const sender = await client('linger-s', 0, 0)
    await new Seqs(sender, room).join()
    const seq = await send(sender, room, `linger-${adapter}`, 3)
    await eventually(() => m.seqs.includes(seq), 5000, 'a message after the re-join')

    s.disconnect()
    await eventually(async () => (await feedRooms()) === baseRooms, 5000, 'the feed released the room again')
    await eventually(async () => (await subscriptions(url(1))) === base, LINGER_MS + 5000, 'the subscription gauge back at its baseline')
  })
})
