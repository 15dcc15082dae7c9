import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { startRedis, type LocalRedis } from '../../../infra/services.ts'
import { ack, chatClient, closeClients, collect, createTestDatabase, devToken, eventually, next, startNode, usersInRoom, useIsolatedNode, type TestNode } from './helpers.ts'

const roomVersion = async (node: { db: any }, roomId: string) =>
  Number((await node.db.selectFrom('rooms').select('version').where('id', '=', roomId).executeTakeFirstOrThrow()).version)

describe('versions: every change to a room counts, and a reconnecting client gets what changed (SPEC §4 "Versions")', () => {
  // A small cap, so that "more changed than one answer carries" is cheap to reach.
  const node = useIsolatedNode({ RATE_LIMIT_MESSAGES: '1000', SYNC_MAX_MESSAGES: '3' })

  it('rises by one per new message, edit, delete and reaction change; live events carry the version they produced', async () => {
    const [ana, bob] = await usersInRoom(node.url, 'v-rise', ['v-ana', 'v-bob'])
    const seen = { message: collect(bob.socket, 'chat:message'), edited: collect(bob.socket, 'chat:edited'), deleted: collect(bob.socket, 'chat:deleted'), reaction: collect(bob.socket, 'chat:reaction') }
    const m1 = await ack(ana.socket, 'chat:message', { roomId: 'v-rise', text: 'one' })
    const m2 = await ack(ana.socket, 'chat:message', { roomId: 'v-rise', text: 'two' })
    assert.equal((await ack(ana.socket, 'chat:edit', { roomId: 'v-rise', messageId: m1.messageId, text: 'one, edited' })).status, 'ok')
    assert.equal((await ack(bob.socket, 'chat:react', { roomId: 'v-rise', messageId: m2.messageId, emoji: '👍', on: true })).status, 'ok')
    // The same reaction again changes nothing: no version, no event.
    assert.equal((await ack(bob.socket, 'chat:react', { roomId: 'v-rise', messageId: m2.messageId, emoji: '👍', on: true })).status, 'ok')
    assert.equal((await ack(bob.socket, 'chat:react', { roomId: 'v-rise', messageId: m2.messageId, emoji: '👍', on: false })).status, 'ok')
    assert.equal((await ack(ana.socket, 'chat:delete', { roomId: 'v-rise', messageId: m2.messageId })).status, 'ok')
    await eventually(() => seen.deleted.length === 1, 5000, 'the delete reaches bob')

    assert.deepEqual(seen.message.map((m) => [m.seq, m.version]), [[1, 1], [2, 2]])
    assert.deepEqual(seen.edited.map((e) => [e.messageId, e.version, e.text]), [[m1.messageId, 3, 'one, edited']])
    assert.deepEqual(seen.reaction.map((e) => [e.version, e.emoji, e.on]), [[4, '👍', true], [5, '👍', false]])
    assert.deepEqual(seen.deleted.map((e) => [e.messageId, e.version]), [[m2.messageId, 6]])
    assert.equal(await roomVersion(node, 'v-rise'), 6)

    // History shows each message at its last change.
    const late = await chatClient(node.url, (await devToken(node.url, 'v-late')).token)
    const history = next(late, 'room:history')
    await ack(late, 'room:join', 'v-rise')
    assert.deepEqual((await history).messages.map((m: any) => [m.seq, m.version, m.text, !!m.deletedAt]), [[1, 3, 'one, edited', false], [2, 6, '', true]])
  })

  it('concurrent edits, deletes, reactions and sends in one room: each change gets its own version, delivered once, in order', async () => {
    const [ana, bob] = await usersInRoom(node.url, 'v-race', ['vr-ana', 'vr-bob'])
    const ids: string[] = []
    const firstSix: number[] = []
    bob.socket.on('chat:message', (m: { seq: number }) => firstSix.push(m.seq))
    for (let i = 0; i < 6; i++) ids.push((await ack(ana.socket, 'chat:message', { roomId: 'v-race', text: `m${i}` })).messageId)
    // An ack does not wait for the room's delivery (DELIVERY_BATCH_MS gathers it): bob has the six first.
    await eventually(() => firstSix.includes(6), 5000, 'bob has the first six')
    bob.socket.removeAllListeners('chat:message')
    const base = await roomVersion(node, 'v-race')
    const seen: number[] = []
    for (const e of ['chat:message', 'chat:edited', 'chat:deleted', 'chat:reaction']) bob.socket.on(e, (p: { version: number }) => seen.push(p.version))
    const ops: Promise<{ status: string; code?: string }>[] = []
    for (let i = 0; i < 6; i++) {
      const messageId = ids[i]
      ops.push(ack(ana.socket, 'chat:edit', { roomId: 'v-race', messageId, text: `edit ${i}` }))
      if (i % 2 === 0) ops.push(ack(bob.socket, 'chat:delete', { roomId: 'v-race', messageId }).then((r) => (r.code === 'FORBIDDEN' ? ack(ana.socket, 'chat:delete', { roomId: 'v-race', messageId }) : r)))
      ops.push(ack(bob.socket, 'chat:react', { roomId: 'v-race', messageId, emoji: 'a', on: true }))
      ops.push(ack(ana.socket, 'chat:react', { roomId: 'v-race', messageId, emoji: 'b', on: true }))
      ops.push(ack(ana.socket, 'chat:message', { roomId: 'v-race', text: `new ${i}` }))
    }
    const results = await Promise.all(ops)
    for (const r of results) assert.ok(r.status === 'ok' || r.code === 'NOT_FOUND', JSON.stringify(r)) // a change after the delete finds nothing
    const changes = results.filter((r) => r.status === 'ok').length
    const head = await roomVersion(node, 'v-race')
    assert.equal(head, base + changes, 'one version per change that happened, none spent on a change that did not')
    const top = await node.db.selectFrom('messages').select((eb: any) => eb.fn.max('version').as('v')).where('room_id', '=', 'v-race').executeTakeFirstOrThrow()
    assert.equal(Number((top as { v: unknown }).v), head, 'the room version is its newest message version')
    await eventually(() => seen.length >= changes, 5000, 'every change reaches bob')
    assert.deepEqual(seen, Array.from({ length: changes }, (_, i) => base + 1 + i), 'each version once, in order')
  })

  it('chat:sync with { lastSeq, version } returns the missed messages in rooms and the changed older ones in updated; the bare form no updated', async () => {
    const [ana, bob] = await usersInRoom(node.url, 'v-sync', ['vs-ana', 'vs-bob'])
    const sent = []
    for (const text of ['a', 'b', 'c', 'd']) sent.push(await ack(ana.socket, 'chat:message', { roomId: 'v-sync', text }))
    await ack(bob.socket, 'chat:react', { roomId: 'v-sync', messageId: sent[3].messageId, emoji: 'x', on: true })
    // Bob has seen everything up to here.
    const bobSeq = 4
    const bobVersion = await roomVersion(node, 'v-sync')
    bob.socket.disconnect()

    await ack(ana.socket, 'chat:edit', { roomId: 'v-sync', messageId: sent[0].messageId, text: 'a, edited' })
    await ack(ana.socket, 'chat:delete', { roomId: 'v-sync', messageId: sent[1].messageId })
    await ack(ana.socket, 'chat:react', { roomId: 'v-sync', messageId: sent[2].messageId, emoji: 'constructor', on: true })
    const fresh = await ack(ana.socket, 'chat:message', { roomId: 'v-sync', text: 'e' })
    await ack(ana.socket, 'chat:edit', { roomId: 'v-sync', messageId: fresh.messageId, text: 'e, edited' })

    const again = await chatClient(node.url, bob.token)
    const res = await ack(again, 'chat:sync', { rooms: { 'v-sync': { lastSeq: bobSeq, version: bobVersion } } })
    assert.equal(res.status, 'ok')
    assert.deepEqual(res.rooms['v-sync'].map((m: any) => [m.seq, m.text]), [[5, 'e, edited']], 'exactly the missed message, in its current state')
    const updated = res.updated['v-sync']
    assert.deepEqual(updated.map((m: any) => m.seq).sort(), [1, 2, 3], 'exactly the changed older ones (4 is unchanged since)')
    const bySeq = new Map<number, any>(updated.map((m: any) => [m.seq, m]))
    assert.equal(bySeq.get(1).text, 'a, edited')
    assert.ok(bySeq.get(1).editedAt)
    assert.equal(bySeq.get(2).text, '', 'a deleted message is a tombstone')
    assert.ok(bySeq.get(2).deletedAt)
    assert.deepEqual(bySeq.get(3).reactions.constructor, [ana.userId])
    for (const m of updated) assert.ok(m.version > bobVersion)

    // Synced with the newest version: nothing is updated.
    const newest = Math.max(...res.rooms['v-sync'].map((m: any) => m.version), ...updated.map((m: any) => m.version))
    const quiet = await ack(again, 'chat:sync', { rooms: { 'v-sync': { lastSeq: 5, version: newest } } })
    assert.deepEqual([quiet.rooms['v-sync'], quiet.updated['v-sync']], [[], []])

    // The bare form keeps working and says nothing about changes.
    const bare = await ack(again, 'chat:sync', { rooms: { 'v-sync': bobSeq } })
    assert.equal(bare.status, 'ok')
    assert.deepEqual(bare.rooms['v-sync'].map((m: any) => m.seq), [5])
    assert.equal(Object.hasOwn(bare.updated, 'v-sync'), false)
  })

  it('room:join with lastSeq and version gives updated in room:history; without a version, none', async () => {
    const [ana] = await usersInRoom(node.url, 'v-join', ['vj-ana'])
    const a = await ack(ana.socket, 'chat:message', { roomId: 'v-join', text: 'first' })
    const v = await roomVersion(node, 'v-join')
    await ack(ana.socket, 'chat:edit', { roomId: 'v-join', messageId: a.messageId, text: 'first, edited' })
    await ack(ana.socket, 'chat:message', { roomId: 'v-join', text: 'second' })

    const other = await chatClient(node.url, ana.token)
    const history = next(other, 'room:history')
    assert.equal((await ack(other, 'room:join', { roomId: 'v-join', lastSeq: 1, version: v })).status, 'ok')
    const h = await history
    assert.deepEqual(h.messages.map((m: any) => m.text), ['second'])
    assert.deepEqual(h.updated.map((m: any) => [m.seq, m.text]), [[1, 'first, edited']])

    const plain = next(other, 'room:history')
    await ack(other, 'room:join', { roomId: 'v-join', lastSeq: 1 })
    assert.equal('updated' in (await plain), false)
  })

  it('more changes than SYNC_MAX_MESSAGES: updated is capped, oldest change first, and the room is in hasMore', async () => {
    const [ana] = await usersInRoom(node.url, 'v-many', ['vm-ana'])
    const ids: string[] = []
    for (const text of ['1', '2', '3', '4']) ids.push((await ack(ana.socket, 'chat:message', { roomId: 'v-many', text })).messageId)
    const v = await roomVersion(node, 'v-many')
    for (const messageId of [ids[3], ids[1], ids[0], ids[2]]) await ack(ana.socket, 'chat:edit', { roomId: 'v-many', messageId, text: 'edited' })
    const res = await ack(ana.socket, 'chat:sync', { rooms: { 'v-many': { lastSeq: 4, version: v } } })
    assert.deepEqual(res.hasMore, ['v-many'])
    assert.deepEqual(res.updated['v-many'].map((m: any) => m.seq), [4, 2, 1], 'the three oldest changes')
    const history = next(ana.socket, 'room:history')
    await ack(ana.socket, 'room:join', { roomId: 'v-many', lastSeq: 4, version: v })
    assert.equal((await history).hasMore, true)
    // Three changes fit.
    const fits = await ack(ana.socket, 'chat:sync', { rooms: { 'v-many': { lastSeq: 4, version: v + 1 } } })
    assert.deepEqual([fits.hasMore, fits.updated['v-many'].map((m: any) => m.seq)], [[], [2, 1, 3]])
  })

  it('a room named __proto__ works in sync updated', async () => {
    const { token, userId } = await devToken(node.url, 'v-proto')
    const s = await chatClient(node.url, token)
    await ack(s, 'room:join', '__proto__')
    const m = await ack(s, 'chat:message', { roomId: '__proto__', text: 'in proto' })
    await ack(s, 'chat:react', { roomId: '__proto__', messageId: m.messageId, emoji: '__proto__', on: true })
    const res = await ack(s, 'chat:sync', { rooms: JSON.parse(`{"__proto__": {"lastSeq": ${m.seq}, "version": 0}}`) })
    assert.equal(res.status, 'ok')
    assert.ok(Object.hasOwn(res.updated, '__proto__'), 'the room named __proto__ is in updated')
    assert.equal(res.updated['__proto__'][0].id, m.messageId)
    assert.deepEqual(res.updated['__proto__'][0].reactions['__proto__'], [userId])
  })

  it('a bad sync point is BAD_REQUEST, and version needs lastSeq', async () => {
    const { token } = await devToken(node.url, 'v-bad')
    const s = await chatClient(node.url, token)
    await ack(s, 'room:join', 'v-bad')
    for (const point of [{ lastSeq: 1 }, { version: 1 }, { lastSeq: -1, version: 0 }, { lastSeq: 1, version: 'x' }, { lastSeq: 0, version: 0, more: 1 }, 'x']) {
      const res = await ack(s, 'chat:sync', { rooms: { 'v-bad': point } })
      assert.equal(res.code, 'BAD_REQUEST', JSON.stringify(point))
      assert.match(res.error, /lastSeq/)
    }
    const join = await ack(s, 'room:join', { roomId: 'v-bad', version: 3 })
    assert.equal(join.code, 'BAD_REQUEST')
    assert.match(join.error, /version needs lastSeq/)
    assert.equal(s.connected, true)
  })
})

describe('versions across two nodes: a change lost in pub/sub is repaired from Postgres', () => {
  // A Redis of our own: CLIENT KILL TYPE pubsub must not touch anyone else's subscribers.
  let dir: string
  let redis: LocalRedis
  let database: Awaited<ReturnType<typeof createTestDatabase>>
  const nodes: TestNode[] = []
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sb-versions-'))
    redis = await startRedis(join(dir, 'redis'))
    database = await createTestDatabase()
    const env = { DATABASE_URL: database.url, REDIS_URL: redis.url, REDIS_PREFIX: 'versions:', RATE_LIMIT_MESSAGES: '1000' }
    nodes.push(await startNode({ ...env, NODE_ID: 'va' }))
    nodes.push(await startNode({ ...env, NODE_ID: 'vb' }))
  })
  after(async () => {
    closeClients()
    for (const n of nodes) await n.close().catch(() => undefined)
    await database?.drop()
    await redis?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('after CLIENT KILL TYPE pubsub, an edit made on node A right away reaches a live client on node B, exactly once', async () => {
    const [a, b] = nodes
    const [ana] = await usersInRoom(a.url, 'v-kill', ['vk-ana'])
    const [bob] = await usersInRoom(b.url, 'v-kill', ['vk-bob'])
    const first = next(bob.socket, 'chat:message')
    const m = await ack(ana.socket, 'chat:message', { roomId: 'v-kill', text: 'before the cut' })
    assert.equal((await first).version, m.seq)
    const edits = collect(bob.socket, 'chat:edited')
    const messages = collect(bob.socket, 'chat:message')

    const admin = new Redis(redis.url)
    try {
      const killed = Number(await admin.client('KILL', 'TYPE', 'pubsub'))
      assert.ok(killed >= 2, `both nodes' subscribers are cut (${killed})`)
      // At once, while node B's subscriber is reconnecting (its first retry waits 200 ms): the
      // edit's pub/sub copy is lost for B, and nothing after it reveals a gap.
      assert.equal((await ack(ana.socket, 'chat:edit', { roomId: 'v-kill', messageId: m.messageId, text: 'after the cut' })).status, 'ok')
    } finally {
      admin.disconnect()
    }
    await eventually(() => edits.length > 0, 8000, "the edit reaches bob on node B (through the feed's catch-up)")
    assert.deepEqual(edits.map((e) => [e.messageId, e.text, e.version]), [[m.messageId, 'after the cut', m.seq + 1]])

    // Exactly once: a message sent after it arrives, and the edit came no second time.
    assert.equal((await ack(ana.socket, 'chat:message', { roomId: 'v-kill', text: 'probe' })).status, 'ok')
    await eventually(() => messages.some((x) => x.text === 'probe'), 5000, 'the probe reaches bob')
    assert.equal(edits.length, 1, 'the edit reached bob once')
    const versions = messages.map((x) => x.version)
    assert.deepEqual(versions, [...versions].sort((x, y) => x - y), 'in version order')
  })
})
