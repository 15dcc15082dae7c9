import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Cluster } from 'ioredis'
import pg from 'pg'
import type { RunningCluster } from '../../infra/cluster.ts'
import type { LocalRedisCluster } from '../../infra/services.ts'
import { ack, clientFrom, closeAll, connected, devToken, eventually, octetsByNode, RoomMember, sendReliably, sleep, startTestCluster, type TestClusterOnRedisCluster } from './helpers.ts'

const PREFIX = 'sbrc:'
const LIMIT = 60 // messages per user per window, cluster-wide
const HTTP_LIMIT = 30 // API requests per user per window, cluster-wide

/**
 * Three nodes behind nginx on a Redis Cluster of this file's own (3 masters, one replica each,
 * cluster-node-timeout 1 s): commands through an ioredis Cluster, the sharded adapter on sharded
 * pub/sub (D125, D126). Then a master is SIGKILLed while clients send, and its replica takes over.
 */
describe('Switchboard on a Redis Cluster (3 masters, 3 replicas)', () => {
  let test: TestClusterOnRedisCluster
  let cluster: RunningCluster
  let redisCluster: LocalRedisCluster
  let admin: Cluster
  let db: pg.Pool
  let octets: Map<string, number[]>
  const dir = mkdtempSync(join(tmpdir(), 'sb-rcluster-'))
  const ids = () => cluster.nodes.map((n) => n.id)
  const on = (nodeIndex: number, k = 0) => octets.get(cluster.nodes[nodeIndex].id)![k]

  before(async () => {
    test = await startTestCluster(
      dir,
      PREFIX,
      {
        REDIS_ADAPTER: 'sharded',
        RATE_LIMIT_MESSAGES: String(LIMIT),
        RATE_LIMIT_WINDOW_SECONDS: '300',
        RATE_LIMIT_HTTP: String(HTTP_LIMIT),
        RATE_LIMIT_HTTP_WINDOW_SECONDS: '300',
        RATE_LIMIT_DEV_TOKENS: '10000',
        LIVENESS_INTERVAL_MS: '1000',
        LIVENESS_TTL_MS: '3000',
        // The last test leaves Redis down: the nodes' drain at teardown need not wait long.
        SHUTDOWN_GRACE_MS: '4000',
      },
      3,
      undefined,
      { redisCluster: {} },
    )
    ;({ cluster, redisCluster } = test)
    admin = new Cluster(redisCluster.nodes.map((n) => ({ host: '127.0.0.1', port: Number(n.split(':')[1]) })), { lazyConnect: true })
    await admin.connect()
    db = new pg.Pool({ connectionString: test.database.url, max: 2 })
    octets = await octetsByNode(cluster.url, ids(), 4)
  })

  after(async () => {
    closeAll()
    admin?.disconnect()
    await db?.end()
    await test?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  const slotOf = async (key: string) => Number(await admin.cluster('KEYSLOT', key))

  it('the nodes use every master: keys of many users spread over all three shards', async () => {
    const masters = (await redisCluster.topology()).filter((m) => m.role === 'master')
    assert.equal(masters.length, 3)
    const members: RoomMember[] = []
    for (let i = 0; i < 9; i++) {
      const { token } = await devToken(cluster.url, `spread-${i}`)
      const m = new RoomMember(clientFrom(cluster.url, token, on(i % 3, Math.floor(i / 3))), 'spread-keys')
      await m.join()
      members.push(m)
    }
    const perMaster = await Promise.all(masters.map((m) => admin.nodes('master').find((n) => n.options.port === m.port)!.dbsize()))
    assert.ok(perMaster.every((n) => n > 0), `every master holds keys of this deployment: ${perMaster.join(', ')}`)
    for (const m of members) m.socket.disconnect()
  })

  // Order, exactly once, typing and presence across nodes on a Redis Cluster: the cluster suite's
  // Redis Cluster variant (test/cluster/cluster.test.ts, suite.ts).

  it('rate limits are cluster-wide: one user on three nodes gets the limit once, messages and HTTP', async () => {
    const { token, userId } = await devToken(cluster.url, 'limited')
    const sockets = [0, 1, 2].map((i) => clientFrom(cluster.url, token, on(i, 3)))
    for (const s of sockets) await new RoomMember(s, 'limits-rc').join()
    const results = await Promise.all(
      sockets.map(async (s, i) => {
        const out: string[] = []
        for (let n = 0; n < 30; n++) out.push((await ack(s, 'chat:message', { roomId: 'limits-rc', text: `${i}-${n}` })).code ?? 'ok')
        return out
      }),
    )
    const all = results.flat()
    const ok = all.filter((r) => r === 'ok').length
    assert.deepEqual([...new Set(all)].sort(), ['RATE_LIMITED', 'ok'])
    // Leases (D36) may leave at most one unspent point per node with this limit (leases of 2).
    assert.ok(ok <= LIMIT && ok >= LIMIT - 3, `${ok} of 90 accepted across three nodes (limit ${LIMIT})`)
    const rows = (await db.query('select count(*)::int as n from messages where room_id = $1 and user_id = $2', ['limits-rc', userId])).rows[0].n
    assert.equal(rows, ok)

    // HTTP: @fastify/rate-limit's Redis store on the Cluster, straight to each node (not nginx).
    const statuses: number[] = []
    for (let n = 0; n < 12; n++) {
      for (const node of cluster.nodes) {
        const res = await fetch(`${node.url}/api/rooms/limits-rc/messages`, { headers: { authorization: `Bearer ${token}` } })
        await res.arrayBuffer()
        statuses.push(res.status)
      }
    }
    assert.equal(statuses.filter((s) => s === 200).length, HTTP_LIMIT, `statuses ${statuses.join(' ')}`)
    assert.equal(statuses.filter((s) => s === 429).length, 36 - HTTP_LIMIT)
    for (const s of sockets) s.disconnect()
  })

  it('a shard added while clients send (add-node + rebalance): slots move under live traffic, nothing lost, pub/sub follows', async () => {
    // rebalance gives the new master the lowest slots of each master: a room whose channels hash
    // there is moved while its members listen.
    const lowest = (await redisCluster.topology()).filter((n) => n.role === 'master').map((n) => Number(n.slots[0].split('-')[0]))
    let room = ''
    for (let i = 0; i < 5000 && !room; i++) {
      const slots = await Promise.all([`${PREFIX}socket.io#/chat#reshard-${i}#`, `${PREFIX}room:{reshard-${i}}`].map(slotOf))
      if (slots.every((s) => lowest.some((l) => s >= l && s < l + 300))) room = `reshard-${i}`
    }
    assert.ok(room, 'a room whose channels hash to the first slots of a master')
    const members: RoomMember[] = []
    for (const [i] of cluster.nodes.entries()) {
      for (let k = 0; k < 2; k++) {
        const { token } = await devToken(cluster.url, `rs-${i}-${k}`)
        const m = new RoomMember(clientFrom(cluster.url, token, on(i, k), { reconnection: true }), room)
        await m.join()
        members.push(m)
      }
    }
    const count = 20
    let resharding = true
    const senders = [0, 2, 4].map(async (j, k) => {
      // Keep sending while the slots move: `count` each, then one every ~200 ms until the
      // rebalance is over (50 at most: the user's rate limit is LIMIT).
      const acked = await sendReliably(members[j].socket, room, `rs${k}`, count, 40)
      for (let n = count; resharding && n < 50; n++) acked.push(...(await sendReliably(members[j].socket, room, `rs${k}-more${n}`, 1, 200)))
      return acked
    })
    await sleep(300)
    const t0 = Date.now()
    const added = await redisCluster.addMaster().finally(() => (resharding = false))
    const reshardMs = Date.now() - t0
    const acked = (await Promise.all(senders)).flat()
    const slots = await Promise.all([`${PREFIX}socket.io#/chat#${room}#`, `${PREFIX}room:{${room}}`].map(slotOf))
    for (const slot of slots) assert.equal(await redisCluster.masterOf(slot), added, `slot ${slot} moved to the new master`)

    const rows = (await db.query('select id, seq from messages where room_id = $1 order by seq', [room])).rows
    assert.deepEqual(rows.map((r) => Number(r.seq)), Array.from({ length: acked.length }, (_, i) => i + 1), 'one row per clientMsgId')
    await eventually(() => members.every((m) => m.seen.length >= acked.length), 20_000, 'every member has every message')
    for (const m of members) {
      assert.deepEqual(m.seen, Array.from({ length: acked.length }, (_, i) => i + 1), 'no gap, in order')
      assert.equal(m.liveRepeats, 0, `no live message delivered twice; arrivals: ${m.trace.join(' ')}`)
    }
    // The sharded subscriptions followed their slots to the new master.
    await crossesNodesAgain(members, room, 'reshard', acked.length + 1)
    console.log(`# Redis Cluster reshard: 4th master 127.0.0.1:${added} added and rebalanced in ${reshardMs} ms under ${acked.length} sends`)
    for (const m of members) m.socket.disconnect()
  })

  it('a master SIGKILLed while clients send: its replica takes over, sends resume, nothing lost or doubled, pub/sub and presence recover', async () => {
    // The master that serves the adapter's main channel, and a room whose channels live there too
    // (the sharded adapter's dynamic room channel and the per-room channel, SPEC §7).
    // (The shard added by the test before has no replica: then another master.)
    const mainChannel = `${PREFIX}socket.io#/chat#`
    const nodes = await redisCluster.topology()
    const withReplica = nodes.filter((m) => m.role === 'master' && !m.failed && nodes.some((r) => r.masterId === m.id && !r.failed)).map((m) => m.port)
    const mainOwner = await redisCluster.masterOf(await slotOf(mainChannel))
    const victim = withReplica.includes(mainOwner) ? mainOwner : withReplica[0]
    let room = ''
    for (let i = 0; i < 500 && !room; i++) {
      const candidate = `failover-${i}`
      const slots = await Promise.all([`${PREFIX}socket.io#/chat#${candidate}#`, `${PREFIX}room:{${candidate}}`].map(slotOf))
      if ((await Promise.all(slots.map((s) => redisCluster.masterOf(s)))).every((p) => p === victim)) room = candidate
    }
    assert.ok(room, 'a room whose channels hash to the victim')

    const members: RoomMember[] = []
    for (const [i] of cluster.nodes.entries()) {
      for (let k = 0; k < 2; k++) {
        const { token } = await devToken(cluster.url, `fo-${i}-${k}`)
        const m = new RoomMember(clientFrom(cluster.url, token, on(i, k), { reconnection: true }), room)
        await m.join()
        members.push(m)
      }
    }
    const errorsBefore = await redisErrors()
    const count = 30
    const senders = [0, 2, 4].map((j, k) => sendReliably(members[j].socket, room, `fo${k}`, count, 60))
    await sleep(400)
    const t0 = Date.now()
    const promoted = await redisCluster.killMaster(victim)
    const failoverMs = Date.now() - t0
    const acked = (await Promise.all(senders)).flat()

    // Every acked message is stored exactly once (resends with the same clientMsgId), seqs 1..N.
    assert.equal(acked.length, 3 * count)
    const rows = (await db.query('select id, seq from messages where room_id = $1 order by seq', [room])).rows
    assert.deepEqual(rows.map((r) => Number(r.seq)), Array.from({ length: 3 * count }, (_, i) => i + 1), 'one row per clientMsgId')
    const bySeq = new Map(rows.map((r) => [Number(r.seq), r.id]))
    for (const a of acked) assert.equal(bySeq.get(a.seq), a.messageId)
    await eventually(() => members.every((m) => m.seen.length >= 3 * count), 20_000, 'every member has every message').catch((err) => {
      throw new Error(`${err.message}\n${members.map((m, j) => `#${j} seen ${m.seen.length}: ${m.trace.slice(-20).join(' ')}`).join('\n')}`)
    })
    for (const m of members) {
      assert.deepEqual(m.seen, Array.from({ length: 3 * count }, (_, i) => i + 1), 'no gap, in order')
      assert.equal(m.liveRepeats, 0, `no live message delivered twice; arrivals: ${m.trace.join(' ')}`)
    }

    // Pub/sub resubscribed on the promoted master: typing (never stored, never gap-filled) and a
    // new message cross nodes again.
    await crossesNodesAgain(members, room, 'failover', 3 * count + 1)

    // Presence still right: a newcomer on node 3 is listed online, offline when it leaves, online
    // again when it is back, as seen by a member on node 1.
    const online: string[] = []
    const offline: string[] = []
    members[0].socket.on('presence:online', (u) => online.push(u.username))
    members[0].socket.on('presence:offline', (u) => offline.push(u.username))
    const late = await devToken(cluster.url, 'fo-late')
    const ls = clientFrom(cluster.url, late.token, on(2, 2))
    await connected(ls)
    const joined = await ack(ls, 'room:join', { roomId: room })
    assert.equal(joined.status, 'ok')
    assert.deepEqual(joined.online.map((u: any) => u.username).sort(), [...members.map((_, j) => `fo-${Math.floor(j / 2)}-${j % 2}`), 'fo-late'].sort())
    ls.disconnect()
    await eventually(() => offline.includes('fo-late'), 5000, 'the newcomer offline')
    const back = clientFrom(cluster.url, late.token, on(2, 2))
    await connected(back)
    await eventually(() => online.includes('fo-late'), 5000, 'the newcomer online again')
    back.disconnect()
    assert.ok((await redisErrors()) > errorsBefore, 'the nodes counted the dead master in switchboard_redis_errors_total')
    console.log(`# Redis Cluster failover: 127.0.0.1:${victim} killed, 127.0.0.1:${promoted} promoted in ${failoverMs} ms; ${acked.length} sends acked, none lost or doubled`)
    for (const m of members) m.socket.disconnect()
  })

  it('the whole Redis Cluster down: sends answer UNAVAILABLE at once instead of hanging, /readyz says degraded (runs last)', async () => {
    const { token } = await devToken(cluster.url, 'outage')
    const s = clientFrom(cluster.url, token, on(0, 3))
    await new RoomMember(s, 'outage-rc').join()
    assert.equal((await ack(s, 'chat:message', { roomId: 'outage-rc', text: 'before' })).status, 'ok')
    await redisCluster.stop()
    await eventually(async () => {
      const r = await (await fetch(`${cluster.nodes[0].url}/readyz`)).json()
      return r.checks?.redis === 'down'
    }, 15_000, 'node 1 sees Redis down')
    const t0 = Date.now()
    const r = await ack(s, 'chat:message', { roomId: 'outage-rc', text: 'during', clientMsgId: 'outage-1' }, 8000)
    const took = Date.now() - t0
    assert.equal(r.code, 'UNAVAILABLE', JSON.stringify(r))
    assert.ok(took < 5000, `answered in ${took} ms`)
    const ready = await fetch(`${cluster.nodes[0].url}/readyz`)
    assert.equal(ready.status, 200)
    assert.equal((await ready.json()).status, 'degraded')
    s.disconnect()
  })

  /** switchboard_redis_errors_total summed over every node and client. */
  async function redisErrors(): Promise<number> {
    let sum = 0
    for (const n of cluster.nodes) {
      const text = await (await fetch(`${n.url}/metrics`)).text()
      for (const m of text.matchAll(/^switchboard_redis_errors_total\{[^}]*\} (\d+)/gm)) sum += Number(m[1])
    }
    return sum
  }
})

/**
 * After `event`: typing from the first member (on node 1) reaches the members on the other nodes
 * (members[2..], pub/sub only), and a new message reaches them live with seq `seq`.
 */
async function crossesNodesAgain(members: RoomMember[], room: string, event: string, seq: number): Promise<void> {
  const others = members.slice(2)
  const typing = others.map((m) => new Promise<any>((r) => m.socket.once('chat:typing', r)))
  await eventually(
    async () => {
      members[0].socket.emit('chat:typing', { roomId: room, isTyping: true })
      return Promise.race([Promise.all(typing).then(() => true), sleep(1000).then(() => false)])
    },
    20_000,
    `typing from node 1 reaches nodes 2 and 3 after the ${event}`,
  )
  const live = others.map((m) => new Promise<any>((r) => m.socket.on('chat:message', (msg) => msg.text === `after the ${event}` && r(msg))))
  assert.equal((await ack(members[0].socket, 'chat:message', { roomId: room, text: `after the ${event}` })).status, 'ok')
  for (const msg of await Promise.all(live)) assert.equal(msg.seq, seq)
}
