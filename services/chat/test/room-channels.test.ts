import assert from 'node:assert/strict'
import { once } from 'node:events'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { adapterChannelKind } from '../src/cluster/pubsub-meter.ts'
import { RedisRoomChannels } from '../src/cluster/room-channels.ts'
import { redisPrefix, REDIS_URL } from './helpers.ts'

const LINGER_MS = 300

/** Two "nodes" (each a publisher and a subscriber connection) on the shared Redis, under a prefix of this test. */
describe('RedisRoomChannels on real Redis (sharded pub/sub)', () => {
  const { prefix } = redisPrefix()
  const clients: Redis[] = []
  const redis = () => {
    const c = new Redis(REDIS_URL)
    clients.push(c)
    return c
  }
  /** Every connection ready before it is used, as `createCluster` has them (`connectWithin`). */
  const allReady = () => Promise.all(clients.map((c) => (c.status === 'ready' ? undefined : once(c, 'ready'))))
  let a: RedisRoomChannels
  let b: RedisRoomChannels
  const atA: string[] = []
  const atB: string[] = []
  let receivedAtB = 0
  const admin = () => clients[0]
  const subscribers = async (roomId: string) => ((await admin().call('PUBSUB', 'SHARDNUMSUB', a.channel(roomId))) as [string, number])[1]

  before(async () => {
    const [, aPub, aSub, bPub, bSub] = [redis() /* admin */, redis(), redis(), redis(), redis()]
    await allReady()
    a = new RedisRoomChannels(aPub, aSub, { prefix, lingerMs: LINGER_MS })
    b = new RedisRoomChannels(bPub, bSub, { prefix, lingerMs: LINGER_MS, onReceived: () => receivedAtB++ })
    a.onMessage((roomId, payload) => atA.push(`${roomId}:${payload}`))
    b.onMessage((roomId, payload) => atB.push(`${roomId}:${payload}`))
  })

  after(async () => {
    a.close()
    b.close()
    await Promise.all(clients.map((c) => c.quit()))
  })

  const next = async (list: string[], what: string) => {
    const until = Date.now() + 3000
    while (!list.includes(what)) {
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}; got ${list.join(', ')}`)
      await new Promise((r) => setTimeout(r, 10))
    }
  }

  it('channel names carry the room as a hash tag (one Redis Cluster slot per room)', () => {
    assert.equal(a.channel('dm:u1:u2'), `${prefix}room:{dm:u1:u2}`)
  })

  it('a confirmed subscription receives what is published from then on; its own echoes and other rooms never reach it', async () => {
    await a.subscribe('r1')
    await b.subscribe('r1')
    assert.ok(a.listening('r1') > 0 && b.listening('r1') > 0, 'listening once confirmed')
    assert.equal(await subscribers('r1'), 2)
    // Published right after the confirmation: nothing falls in a gap.
    a.publish('r1', 'hello')
    a.publish('r2', 'not yours') // nobody follows r2
    a.publish('r1', 'after')
    await next(atB, 'r1:after')
    assert.deepEqual(atB, ['r1:hello', 'r1:after'], 'in order, only the room followed')
    assert.equal(receivedAtB, 2, 'counted (r2 never arrived)')
    // A's own two publications came back on its connection and were dropped unread: B's next one is the only arrival.
    b.publish('r1', 'from b')
    await next(atA, 'r1:from b')
    assert.deepEqual(atA, ['r1:from b'])
  })

  it('subscriptions are counted; the last unsubscribe ends it only after the linger, and a subscribe meanwhile reuses it', async () => {
    await b.subscribe('r3')
    await b.subscribe('r3')
    const id = b.listening('r3')
    const size = b.size
    b.unsubscribe('r3')
    b.unsubscribe('r3')
    assert.equal(b.size, size, 'lingering')
    await b.subscribe('r3') // within the linger: no new SSUBSCRIBE
    assert.equal(b.listening('r3'), id, 'the same subscription')
    b.unsubscribe('r3')
    const left = Date.now()
    while (b.size !== size - 1 && Date.now() - left < LINGER_MS + 3000) await new Promise((r) => setTimeout(r, 10))
    assert.equal(b.size, size - 1, 'ended after the linger')
    assert.ok(Date.now() - left >= LINGER_MS - 20, 'not before the linger')
    assert.equal(b.listening('r3'), 0)
    assert.equal(await subscribers('r3'), 0, 'Redis has no subscriber left')
    // Gone for good: a publication to it does not arrive, though the next one to a followed room does.
    a.publish('r3', 'too late')
    a.publish('r1', 'marker')
    await next(atB, 'r1:marker')
    assert.ok(!atB.includes('r3:too late'))
    // Subscribed again: a new subscription (a cache read under the old one no longer counts).
    await b.subscribe('r3')
    assert.ok(b.listening('r3') > id)
    a.publish('r3', 'back')
    await next(atB, 'r3:back')
  })

  it('an unsubscribe right before a subscribe does not undo it (commands run in order on the connection)', async () => {
    const [cPub, cSub] = [redis(), redis()]
    await allReady()
    const c = new RedisRoomChannels(cPub, cSub, { prefix, lingerMs: 0 })
    const atC: string[] = []
    c.onMessage((roomId, payload) => atC.push(`${roomId}:${payload}`))
    await c.subscribe('r4')
    c.unsubscribe('r4') // SUNSUBSCRIBE sent at once (no linger)
    await c.subscribe('r4')
    assert.equal(await subscribers('r4'), 1)
    a.publish('r4', 'kept')
    await next(atC, 'r4:kept')
    c.close()
  })
})

describe('adapter channel kinds (switchboard_cluster_messages_received_total{kind})', () => {
  const key = 'sb:socket.io'
  const uid = (nsp: string) => (nsp === '/chat' ? 'a1b2c3d4e5f60718' : undefined)
  it('names the kind of each channel both adapters use', () => {
    const cases: [string, { nsp: string; kind: string } | undefined][] = [
      // sharded: main, this node's response channel, one room, one user room
      ['sb:socket.io#/chat#', { nsp: '/chat', kind: 'main' }],
      ['sb:socket.io#/chat#a1b2c3d4e5f60718#', { nsp: '/chat', kind: 'main' }],
      ['sb:socket.io#/chat#general:news#', { nsp: '/chat', kind: 'room' }],
      ['sb:socket.io#/notifications#@user:u-42#', { nsp: '/notifications', kind: 'user' }],
      ['sb:socket.io#/#', { nsp: '/', kind: 'main' }],
      // classic: requests and responses between nodes
      ['sb:socket.io-request#/admin#', { nsp: '/admin', kind: 'main' }],
      ['sb:socket.io-response#/admin#xyz123#', { nsp: '/admin', kind: 'main' }],
      // not the adapter's
      ['sb:room:{general}', undefined],
      ['other:socket.io#/chat#', undefined],
    ]
    for (const [channel, expected] of cases) assert.deepEqual(adapterChannelKind(channel, key, uid), expected, channel)
  })
})
