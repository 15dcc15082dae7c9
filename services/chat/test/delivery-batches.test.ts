import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Socket } from 'socket.io-client'
import { Redis } from 'ioredis'
import { ack, chatClient, devToken, next, REDIS_URL, useIsolatedNode } from './helpers.ts'

// DELIVERY_BATCH_MS (D182): a room's deliveries gather for a moment and go out together, as one
// `chat:messages` frame to the sockets that announced `auth.batches`, as single events to the rest.

type Live = { kind: string; seq?: number; version: number; messageId?: string; frame: string }

/** Every feed event the socket receives, flattened in arrival order, with the frame it came in. */
function record(socket: Socket): Live[] {
  const seen: Live[] = []
  socket.on('chat:message', (m) => seen.push({ kind: 'message', seq: m.seq, version: m.version, messageId: m.id, frame: 'chat:message' }))
  socket.on('chat:messages', (p) => {
    for (const m of p.messages) seen.push({ kind: 'message', seq: m.seq, version: m.version, messageId: m.id, frame: `chat:messages×${p.messages.length}` })
  })
  socket.on('chat:edited', (e) => seen.push({ kind: 'edited', version: e.version, messageId: e.messageId, frame: 'chat:edited' }))
  socket.on('chat:reaction', (e) => seen.push({ kind: 'reaction', version: e.version, messageId: e.messageId, frame: 'chat:reaction' }))
  return seen
}

async function member(url: string, name: string, roomId: string, batches: boolean) {
  const { token, userId } = await devToken(url, name)
  const socket = await chatClient(url, token, batches ? { auth: { batches: true } } : {})
  const joined = await ack(socket, 'room:join', roomId)
  assert.equal(joined.status, 'ok')
  return { socket, userId, token }
}

const waitFor = async (what: () => boolean, label: string) => {
  const until = Date.now() + 5000
  while (!what()) {
    if (Date.now() > until) throw new Error(`timed out: ${label}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

describe('delivery batches (DELIVERY_BATCH_MS, chat:messages)', () => {
  const node = useIsolatedNode({ DELIVERY_BATCH_MS: '300', RATE_LIMIT_MESSAGES: '1000' })

  it('messages sent together reach a batching socket in one chat:messages frame and a plain one as chat:message, both in seq order', async () => {
    const sender = await member(node.url, 'db-ann', 'db-1', false)
    const batching = await member(node.url, 'db-bea', 'db-1', true)
    const plain = await member(node.url, 'db-cid', 'db-1', false)
    const b = record(batching.socket)
    const p = record(plain.socket)
    const acks = await Promise.all(Array.from({ length: 6 }, (_, i) => ack(sender.socket, 'chat:message', { roomId: 'db-1', text: `m${i}` })))
    assert.ok(acks.every((a) => a.status === 'ok'))
    await waitFor(() => b.length >= 6 && p.length >= 6, 'six deliveries each')
    assert.deepEqual(b.map((e) => e.seq), [1, 2, 3, 4, 5, 6])
    assert.deepEqual(p.map((e) => e.seq), [1, 2, 3, 4, 5, 6])
    assert.ok(b.some((e) => e.frame.startsWith('chat:messages')), `the batching socket got frames ${b.map((e) => e.frame)}`)
    assert.ok(p.every((e) => e.frame === 'chat:message'), 'the plain socket never gets chat:messages')
    // The sender (plain) gets its own messages too; a last message is the positive signal that nothing more comes.
    await ack(sender.socket, 'chat:message', { roomId: 'db-1', text: 'last' })
    await waitFor(() => b.length === 7 && p.length === 7, 'the last one')
    assert.deepEqual(b.map((e) => e.seq), [1, 2, 3, 4, 5, 6, 7])
  })

  it('changes gathered with messages keep version order: a run of messages is one frame, a change between them its own event', async () => {
    const sender = await member(node.url, 'db-dan', 'db-2', false)
    const first = await ack(sender.socket, 'chat:message', { roomId: 'db-2', text: 'first' })
    const watcher = await member(node.url, 'db-eve', 'db-2', true)
    const seen = record(watcher.socket)
    await Promise.all([
      ack(sender.socket, 'chat:message', { roomId: 'db-2', text: 'a' }),
      ack(sender.socket, 'chat:message', { roomId: 'db-2', text: 'b' }),
    ])
    for (const [event, payload] of [
      ['chat:edit', { roomId: 'db-2', messageId: first.messageId, text: 'first, edited' }],
      ['chat:react', { roomId: 'db-2', messageId: first.messageId, emoji: '👍', on: true }],
      ['chat:message', { roomId: 'db-2', text: 'c' }],
    ] as const) assert.equal((await ack(sender.socket, event, payload)).status, 'ok', event)
    await waitFor(() => seen.length >= 5, 'five events')
    const versions = seen.map((e) => e.version)
    assert.deepEqual(versions, [...versions].sort((x, y) => x - y), `version order: ${versions}`)
    assert.deepEqual(seen.map((e) => e.kind), ['message', 'message', 'edited', 'reaction', 'message'])
    // a and b (sent together) in one frame; the change events as their own.
    assert.deepEqual(seen.slice(0, 3).map((e) => e.frame), ['chat:messages×2', 'chat:messages×2', 'chat:edited'])
  })

  it('a socket that joins while deliveries are gathering gets each message once: in its history or live', async () => {
    const sender = await member(node.url, 'db-fay', 'db-3', false)
    const early = await member(node.url, 'db-gus', 'db-3', true)
    const earlySeen = record(early.socket)
    await Promise.all([1, 2, 3].map((i) => ack(sender.socket, 'chat:message', { roomId: 'db-3', text: `before ${i}` })))
    // Within the 300 ms window: the three are delivered to the feed, not yet written.
    const { token } = await devToken(node.url, 'db-hal')
    const late = await chatClient(node.url, token, { auth: { batches: true } })
    const history = next<{ messages: { seq: number }[] }>(late, 'room:history')
    const lateSeen = record(late)
    assert.equal((await ack(late, 'room:join', 'db-3')).status, 'ok')
    const shown = (await history).messages.map((m) => m.seq)
    await ack(sender.socket, 'chat:message', { roomId: 'db-3', text: 'after' })
    await waitFor(() => lateSeen.some((e) => e.seq === 4) && earlySeen.length >= 4, 'the message after the join')
    const all = [...shown, ...lateSeen.map((e) => e.seq)]
    assert.deepEqual(all, [1, 2, 3, 4], `history ${shown}, live ${lateSeen.map((e) => e.seq)}`)
    assert.deepEqual(earlySeen.map((e) => e.seq), [1, 2, 3, 4])
  })

  it('batch rooms stay on this node: the sharded adapter subscribes no channel for them, the room and user rooms keep theirs', async () => {
    const watcher = await member(node.url, 'db-lou', 'db-5', true)
    const redis = new Redis(REDIS_URL)
    try {
      const channel = (room: string) => `${node.config.REDIS_PREFIX}socket.io#/chat#${room}#`
      const subscribers = async (room: string) => ((await redis.call('PUBSUB', 'SHARDNUMSUB', channel(room))) as [string, number])[1]
      assert.equal(await subscribers('db-5'), 1, 'the room has its channel (the positive control)')
      assert.equal(await subscribers(`@user:${watcher.userId}`), 1, 'the user room has its channel')
      assert.equal(await subscribers('@batch:db-5'), 0, 'the batch room has none')
      const batchChannels = (await redis.call('PUBSUB', 'SHARDCHANNELS', `${node.config.REDIS_PREFIX}socket.io#/chat#@batch:*`)) as string[]
      assert.deepEqual(batchChannels, [], 'no batch room of any kind (not of the socket id either)')
    } finally {
      redis.disconnect()
    }
  })

  it('a read receipt comes after the gathered messages it refers to', async () => {
    const sender = await member(node.url, 'db-ida', 'db-4', false)
    const reader = await member(node.url, 'db-jon', 'db-4', false)
    const watcher = await member(node.url, 'db-kim', 'db-4', true)
    const order: string[] = []
    watcher.socket.on('chat:message', (m) => order.push(`message ${m.seq}`))
    watcher.socket.on('chat:messages', (p) => p.messages.forEach((m: { seq: number }) => order.push(`message ${m.seq}`)))
    watcher.socket.on('chat:read', (r) => order.push(`read ${r.seq}`))
    const sent = await ack(sender.socket, 'chat:message', { roomId: 'db-4', text: 'read me' })
    // The reader marks it read from the ack alone, before the 300 ms window has passed.
    assert.equal((await ack(reader.socket, 'chat:read', { roomId: 'db-4', messageId: sent.messageId })).status, 'ok')
    await waitFor(() => order.length >= 2, 'message and receipt')
    assert.deepEqual(order, ['message 1', 'read 1'])
  })
})
