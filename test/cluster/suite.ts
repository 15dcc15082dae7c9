import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import pg from 'pg'
import { SignJWT } from 'jose'
import { io } from 'socket.io-client'
import type { NodeLauncher, RunningCluster } from '../../infra/cluster.ts'
import type { LocalRedis, LocalRedisCluster } from '../../infra/services.ts'
import {
  ack,
  clientFrom,
  closeAll,
  connected,
  devToken,
  eventually,
  median,
  nodeFor,
  octetsByNode,
  RoomMember,
  sendReliably,
  sleep,
  startTestCluster,
  type TestCluster,
  type TestClusterOnRedisCluster,
} from './helpers.ts'

const GRACE_MS = 8000

export interface ClusterSuiteOptions {
  /** The describe's title. */
  title: string
  /** In the suite's console lines (e.g. the adapter). */
  label: string
  /** Extra node environment (e.g. REDIS_ADAPTER). */
  env?: Record<string, string>
  /** Nodes (default 3, at least 2). */
  nodes?: number
  /** On a private Redis Cluster (3 masters, 3 replicas) instead of one Redis: a master failover stands in for the Redis restart. */
  redisCluster?: boolean
  /** How nodes start (default: node processes of this machine); called in the suite's `before`. */
  launchNode?: () => NodeLauncher
  /** The folder for logs, nginx and the suite's Redis (default: a new one under the temp folder, removed at the end). */
  dir?: () => string
}

/**
 * The cluster behaviour suite: N real nodes behind real nginx (ip_hash), Postgres (a database of
 * this run), and a Redis of our own so it can be restarted (or a Redis Cluster of our own). Clients bind 127.0.X.1 so ip_hash
 * spreads them. test/cluster/cluster.test.ts runs it once per adapter variant on node processes,
 * test/docker/image.test.ts on two containers of the image.
 */
export function clusterSuite(opts: ClusterSuiteOptions): void {
 describe(opts.title, () => {
  const nodeCount = opts.nodes ?? 3
  const last = nodeCount - 1
  const label = opts.label
  let test: TestCluster | TestClusterOnRedisCluster
  let cluster: RunningCluster
  let redis: LocalRedis | undefined
  let redisCluster: LocalRedisCluster | undefined
  let db: pg.Pool
  let octets: Map<string, number[]>
  let dir = ''
  const ids = () => cluster.nodes.map((n) => n.id)
  const on = (nodeIndex: number, k = 0) => octets.get(cluster.nodes[nodeIndex].id)![k]
  /**
   * Starts node `i` again and waits until nginx sends it its clients again: nginx took it out
   * for `fail_timeout` when it went away, and a later case (with 2 nodes the same node is killed
   * and drained) must find every client where `on()` says.
   */
  const restart = async (i: number) => {
    await cluster.restartNode(i)
    await eventually(async () => (await nodeFor(cluster.url, on(i))) === cluster.nodes[i].id, 30_000, `nginx routes to ${cluster.nodes[i].id} again`)
  }

  before(async () => {
    dir = opts.dir?.() ?? mkdtempSync(join(tmpdir(), 'sb-cluster-'))
    const env = {
      RATE_LIMIT_MESSAGES: '100000',
      SHUTDOWN_GRACE_MS: String(GRACE_MS),
      LIVENESS_INTERVAL_MS: '2000',
      LIVENESS_TTL_MS: '6000',
      ...opts.env,
    }
    const launchNode = opts.launchNode?.()
    test = opts.redisCluster
      ? await startTestCluster(dir, 'sbcluster:', env, nodeCount, undefined, { launchNode, redisCluster: {} })
      : await startTestCluster(dir, 'sbcluster:', env, nodeCount, undefined, { launchNode })
    cluster = test.cluster
    redis = 'redis' in test ? test.redis : undefined
    redisCluster = 'redisCluster' in test ? test.redisCluster : undefined
    db = new pg.Pool({ connectionString: test.database.url, max: 2 })
    octets = await octetsByNode(cluster.url, ids(), 4)
  })

  after(async () => {
    closeAll()
    await db?.end()
    await test?.stop()
    if (!opts.dir) rmSync(dir, { recursive: true, force: true })
  })

  it('spreads clients over every node; a message sent on one node reaches all, in seq order', async () => {
    const members: RoomMember[] = []
    const placed = new Map<string, number>()
    for (const [i] of cluster.nodes.entries()) {
      for (let k = 0; k < 2; k++) {
        const { token } = await devToken(cluster.url, `spread-${i}-${k}`)
        const m = new RoomMember(clientFrom(cluster.url, token, on(i, k)), 'spread')
        await m.join()
        members.push(m)
        const node = await nodeFor(cluster.url, on(i, k))
        placed.set(node, (placed.get(node) ?? 0) + 1)
      }
    }
    assert.deepEqual([...placed.keys()].sort(), ids().sort(), 'every node holds clients')
    for (const n of cluster.nodes) {
      const metrics = await (await fetch(`${n.url}/metrics`)).text()
      assert.match(metrics, /switchboard_sockets_connected\{namespace="\/chat",node="node-\d"\} [1-9]/, `${n.id} reports its sockets`)
    }

    // Senders on every node at once: every member sees 1..20N exactly once, in order.
    const total = 20 * nodeCount
    await Promise.all(cluster.nodes.map((_, k) => sendReliably(members[2 * k].socket, 'spread', `s${k}`, 20, 5)))
    await eventually(() => members.every((m) => m.seen.length >= total), 10_000, `every member got ${total} messages`)
    for (const m of members) {
      assert.deepEqual(m.seen, Array.from({ length: total }, (_, i) => i + 1))
      assert.equal(m.liveRepeats, 0, `no message delivered twice; arrivals: ${m.trace.join(' ')}`)
    }
  })

  it('typing, receipts, joins and leaves, edits and reactions cross nodes', async () => {
    const room = 'events-x'
    const a = await devToken(cluster.url, 'ev-a')
    const b = await devToken(cluster.url, 'ev-b')
    const sa = clientFrom(cluster.url, a.token, on(0))
    const sb = clientFrom(cluster.url, b.token, on(last))
    await new RoomMember(sb, room).join()
    const joined = new Promise<any>((r) => sb.once('room:user-joined', r))
    await new RoomMember(sa, room).join()
    assert.deepEqual(await joined, { userId: a.userId, username: 'ev-a', roomId: room })

    const typing = new Promise<any>((r) => sb.once('chat:typing', r))
    sa.emit('chat:typing', { roomId: room, isTyping: true })
    assert.equal((await typing).userId, a.userId)

    const sent = await ack(sb, 'chat:message', { roomId: room, text: 'read me' })
    const read = new Promise<any>((r) => sb.once('chat:read', r))
    assert.equal((await ack(sa, 'chat:read', { roomId: room, seq: sent.seq })).status, 'ok')
    assert.deepEqual(await read, { roomId: room, userId: a.userId, messageId: sent.messageId, seq: sent.seq })

    // History cached on node 1, the edit made through the last node: node 1 must not serve the old text.
    const historyOnNode1 = async () =>
      ((await (await fetch(`${cluster.nodes[0].url}/api/rooms/${room}/messages`, { headers: { authorization: `Bearer ${b.token}` } })).json()) as any).messages[0].text
    assert.equal(await historyOnNode1(), 'read me')
    const edited = new Promise<any>((r) => sa.once('chat:edited', r))
    await ack(sb, 'chat:edit', { roomId: room, messageId: sent.messageId, text: 'read me, edited' })
    assert.equal((await edited).text, 'read me, edited')
    await eventually(async () => (await historyOnNode1()) === 'read me, edited', 2000, 'cross-node history invalidation')
    const reaction = new Promise<any>((r) => sb.once('chat:reaction', r))
    await ack(sa, 'chat:react', { roomId: room, messageId: sent.messageId, emoji: '🎉', on: true })
    assert.equal((await reaction).emoji, '🎉')

    const left = new Promise<any>((r) => sb.once('room:user-left', r))
    await ack(sa, 'room:leave', room)
    assert.equal((await left).userId, a.userId)
  })

  it('admin: stats cover every node, kick and announce reach sockets on other nodes', async () => {
    const adminToken = await new SignJWT({ name: 'Root', roles: ['admin'] })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('cluster-admin')
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(cluster.jwtSecret))
    const admin = io(`${cluster.url}/admin`, { auth: { token: adminToken }, transports: ['websocket'], forceNew: true, reconnection: false, ...({ localAddress: `127.0.${on(0)}.1` } as object) })
    await connected(admin)
    const { token, userId } = await devToken(cluster.url, 'kick-me')
    const target = clientFrom(cluster.url, token, on(last))
    const listener = clientFrom(cluster.url, (await devToken(cluster.url, 'listener')).token, on(1))
    await Promise.all([connected(target), connected(listener)])

    const stats = await ack(admin, 'admin:stats', {})
    assert.deepEqual(stats.nodes.map((n: any) => n.node).sort(), ids().sort(), 'every node answered')
    const announced = new Promise<any>((r) => listener.once('admin:announce', r))
    await ack(admin, 'admin:announce', { text: 'hello cluster' })
    assert.equal((await announced).text, 'hello cluster')
    const kicked = new Promise<string>((r) => target.once('disconnect', r))
    await ack(admin, 'admin:kick', { userId })
    assert.equal(await kicked, 'io server disconnect')
    admin.disconnect()
  })

  it('a long-polling-only client works for a whole session through nginx; a websocket client upgrades', async () => {
    const { token: pt } = await devToken(cluster.url, 'poller')
    const poller = clientFrom(cluster.url, pt, on(0), { transports: ['polling'] })
    const errors: string[] = []
    poller.on('connect_error', (e) => errors.push(e.message))
    poller.on('disconnect', (r) => errors.push(`disconnect: ${r}`))
    const member = new RoomMember(poller, 'polling')
    await member.join()
    const { token: wt } = await devToken(cluster.url, 'upgrader')
    const upgrader = clientFrom(cluster.url, wt, on(1), { transports: ['polling', 'websocket'] })
    const other = new RoomMember(upgrader, 'polling')
    await other.join()
    await eventually(() => upgrader.io.engine.transport.name === 'websocket', 5000, 'upgrade to websocket')

    for (let i = 0; i < 10; i++) {
      const from = i % 2 ? poller : upgrader
      assert.equal((await ack(from, 'chat:message', { roomId: 'polling', text: `p${i}` })).status, 'ok')
      await sleep(300) // long enough for several polling cycles
    }
    await eventually(() => member.seen.length >= 10 && other.seen.length >= 10, 5000, 'both got everything')
    assert.deepEqual(member.seen, Array.from({ length: 10 }, (_, i) => i + 1))
    assert.equal(poller.io.engine.transport.name, 'polling')
    assert.deepEqual(errors, [], 'no "Session ID unknown", no disconnects')
  })

  it('browsers (which send Origin) connect through nginx on both transports; foreign origins are refused', async () => {
    const { token } = await devToken(cluster.url, 'browser')
    const attempt = (origin: string, transport: 'polling' | 'websocket') =>
      new Promise<string>((resolve) => {
        const s = io(`${cluster.url}/chat`, { auth: { token }, transports: [transport], extraHeaders: { origin }, reconnection: false, forceNew: true })
        s.on('connect', () => (s.disconnect(), resolve('connected')))
        s.on('connect_error', () => (s.disconnect(), resolve('refused')))
      })
    for (const transport of ['polling', 'websocket'] as const) {
      assert.equal(await attempt(cluster.url, transport), 'connected', `same origin over ${transport}`)
      assert.equal(await attempt('https://evil.example', transport), 'refused', `foreign origin over ${transport}`)
    }
  })

  it('presence across nodes: online/offline with two devices of one user on different nodes', async () => {
    const watcher = await devToken(cluster.url, 'p-watcher')
    const w = clientFrom(cluster.url, watcher.token, on(last))
    await new RoomMember(w, 'presence-x').join()
    const online: any[] = []
    const offline: any[] = []
    w.on('presence:online', (u) => online.push(u))
    w.on('presence:offline', (u) => offline.push(u))

    const dana = await devToken(cluster.url, 'dana')
    const first = clientFrom(cluster.url, dana.token, on(0))
    await new RoomMember(first, 'presence-x').join()
    first.disconnect()
    await eventually(() => offline.length === 1, 5000, 'offline after the only device left')
    online.length = offline.length = 0

    const phone = clientFrom(cluster.url, dana.token, on(0))
    await connected(phone)
    await eventually(() => online.length === 1, 5000, 'online on node 1')
    const laptop = clientFrom(cluster.url, dana.token, on(1))
    await connected(laptop)
    assert.notEqual(await nodeFor(cluster.url, on(0)), await nodeFor(cluster.url, on(1)))
    phone.disconnect()
    await sleep(500)
    assert.equal(online.length, 1, 'the second device is not a second online')
    assert.deepEqual(offline, [], 'still online on the other node')
    laptop.disconnect()
    await eventually(() => offline.length === 1, 5000, 'offline after the last device')
    assert.deepEqual(offline[0], { userId: dana.userId, username: 'dana' })
  })

  it('SIGKILL a node while clients send: no acked message lost or doubled, clients catch up, presence turns offline', async () => {
    const victim = 1
    const room = 'crash'
    const members: RoomMember[] = []
    const memberOctets: number[] = []
    for (const [i] of cluster.nodes.entries()) {
      for (let k = 0; k < 3; k++) {
        const { token } = await devToken(cluster.url, `crash-${i}-${k}`)
        const m = new RoomMember(clientFrom(cluster.url, token, on(i, k), { reconnection: true }), room)
        await m.join()
        members.push(m)
        memberOctets.push(on(i, k))
      }
    }
    // One user whose only socket is on the victim and who will not come back.
    const lost = await devToken(cluster.url, 'gone-for-good')
    const lostSocket = clientFrom(cluster.url, lost.token, on(victim, 3))
    await new RoomMember(lostSocket, room).join()
    const offline: any[] = []
    members[0].socket.on('presence:offline', (u) => offline.push(u))

    const total = 40 * nodeCount
    const senders = cluster.nodes.map((_, k) => sendReliably(members[3 * k].socket, room, `crash${k}`, 40, 25))
    await sleep(400)
    const killedAt = Date.now()
    await cluster.nodes[victim].proc.stop('SIGKILL')
    const acked = (await Promise.all(senders)).flat()

    // Every acked message is in Postgres exactly once, with the seq its ack named.
    const rows = (await db.query('select id, seq, client_msg_id from messages where room_id = $1 order by seq', [room])).rows
    assert.equal(acked.length, total)
    assert.equal(rows.length, total, 'one row per clientMsgId')
    const bySeq = new Map(rows.map((r) => [Number(r.seq), r]))
    for (const a of acked) assert.equal(bySeq.get(a.seq)?.id, a.messageId)
    assert.deepEqual(rows.map((r) => Number(r.seq)), Array.from({ length: total }, (_, i) => i + 1))

    // Every member, moved or not, ends with 1..total exactly once and in order.
    await eventually(() => members.every((m) => new Set(m.seen).size >= total), 20_000, 'all members caught up').catch((err) => {
      const state = members.map((m, j) => {
        const gap = m.seen.findIndex((s, i) => s !== i + 1)
        return `#${j} seen ${m.seen.length} syncs ${JSON.stringify(m.syncs)} connected ${m.socket.connected}${gap < 0 ? '' : ` gap at ${gap + 1}: ${m.trace.slice(Math.max(0, m.trace.indexOf(`l${gap}`) - 3), m.trace.indexOf(`l${gap}`) + 12).join(' ')}`}`
      })
      throw new Error(`${err.message}\n${state.join('\n')}`)
    })
    for (const m of members) {
      assert.deepEqual(m.seen, Array.from({ length: total }, (_, i) => i + 1), 'no gap, in order')
      assert.equal(m.liveRepeats, 0, `no live message delivered twice; arrivals: ${m.trace.join(' ')}`)
    }
    const moved = members.filter((m) => m.syncs.length > 0)
    assert.ok(moved.length >= 3, 'the victim’s clients reconnected elsewhere and synced')
    for (const [j, m] of members.entries()) {
      if (m.syncs.length > 0) assert.notEqual(await nodeFor(cluster.url, memberOctets[j]), cluster.nodes[victim].id)
    }

    await eventually(() => offline.some((u) => u.userId === lost.userId), 30_000, 'presence:offline for the lost user')
    const reconnectMs = moved.map((m) => m.syncs[0].ms)
    console.log(
      `# SIGKILL (${label}): ${moved.length} clients reconnected and synced; reconnect+sync median ${median(reconnectMs)} ms, worst ${Math.max(...reconnectMs)} ms; ` +
        `offline announced ${Date.now() - killedAt} ms after the kill (upper bound)`,
    )
    await restart(victim)
  })

  it('SIGTERM drains: the node exits within the grace period, clients move, nothing acked is lost', async () => {
    const target = last
    const room = 'drain'
    const members: RoomMember[] = []
    for (const [i] of cluster.nodes.entries()) {
      for (let k = 0; k < 2; k++) {
        const { token } = await devToken(cluster.url, `drain-${i}-${k}`)
        const m = new RoomMember(clientFrom(cluster.url, token, on(i, k), { reconnection: true }), room)
        await m.join()
        members.push(m)
      }
    }
    // Presence across the drain: movers never look offline; a user who does not come back does.
    const watcherPresence: { offline: string[]; last: Map<string, string> } = { offline: [], last: new Map() }
    members[0].socket.on('presence:online', (u) => watcherPresence.last.set(u.userId, 'online'))
    members[0].socket.on('presence:offline', (u) => (watcherPresence.offline.push(u.userId), watcherPresence.last.set(u.userId, 'offline')))
    const leaver = await devToken(cluster.url, 'drain-leaver')
    await new RoomMember(clientFrom(cluster.url, leaver.token, on(target, 2)), room).join()
    const moverIds = await Promise.all([0, 1].map((k) => devToken(cluster.url, `drain-${target}-${k}`).then((t) => t.userId)))

    const total = 30 * nodeCount
    const senders = cluster.nodes.map((_, k) => sendReliably(members[2 * k].socket, room, `drain${k}`, 30, 30))
    await sleep(300)
    const t0 = Date.now()
    const code = await cluster.nodes[target].proc.stop('SIGTERM', 60_000)
    const took = Date.now() - t0
    assert.equal(code, 0, 'clean exit')
    assert.ok(took < GRACE_MS, `exited in ${took} ms, within the ${GRACE_MS} ms grace period`)
    const acked = (await Promise.all(senders)).flat()
    const rows = (await db.query('select seq from messages where room_id = $1', [room])).rows
    assert.equal(rows.length, acked.length)
    await eventually(() => members.every((m) => m.seen.length >= total), 15_000, `all members have all ${total}`)
    for (const m of members) {
      assert.deepEqual(m.seen, Array.from({ length: total }, (_, i) => i + 1))
      assert.equal(m.liveRepeats, 0, `no live message delivered twice; arrivals: ${m.trace.join(' ')}`)
    }
    const movedFrom = members.slice(2 * target)
    for (const m of movedFrom) {
      assert.ok(m.socket.connected, 'the drained node’s clients are connected again')
      assert.ok(m.syncs.length > 0, `the moved client synced; arrivals: ${m.trace.join(' ')}`)
    }
    await eventually(() => watcherPresence.offline.includes(leaver.userId), 10_000, 'the user who did not come back is offline')
    // Movers reconnect within the drain's settle time, so normally they never look offline; on a
    // starved machine one may flicker, but none may end offline.
    for (const id of moverIds) assert.notEqual(watcherPresence.last.get(id), 'offline', 'a client that moved is online')
    const flickered = moverIds.filter((id) => watcherPresence.offline.includes(id)).length
    console.log(`# SIGTERM (${label}): node exited in ${took} ms; moved clients resynced in ${movedFrom.map((m) => m.syncs[0].ms).join(', ')} ms; ${flickered} of them flickered offline`)
    await restart(target)
  })

  it(opts.redisCluster ? 'a Redis Cluster master failover while nodes run: cross-node broadcast resumes by itself' : 'Redis restarted while nodes run: cross-node broadcast resumes by itself', async () => {
    const { token: a } = await devToken(cluster.url, 'redis-a')
    const { token: b } = await devToken(cluster.url, 'redis-b')
    const ma = new RoomMember(clientFrom(cluster.url, a, on(0), { reconnection: true }), 'redis-room')
    const mb = new RoomMember(clientFrom(cluster.url, b, on(1), { reconnection: true }), 'redis-room')
    await ma.join()
    await mb.join()
    assert.equal((await ack(ma.socket, 'chat:message', { roomId: 'redis-room', text: 'before' })).status, 'ok')
    await eventually(() => mb.seen.length === 1, 5000, 'cross-node before the restart')

    // One Redis: restarted empty. A Redis Cluster: the master of the adapter's main channel and
    // of this room's channels is SIGKILLed and its replica promoted (the data stays).
    const failedOver = redisCluster ? await killMasterOf(redisCluster, ['sbcluster:socket.io#/chat#', 'sbcluster:socket.io#/chat#redis-room#', 'sbcluster:room:{redis-room}']) : undefined
    if (redis) await redis.restart(1000)
    // Sends fail (UNAVAILABLE) until the nodes' clients reconnect; then broadcast works again.
    await eventually(
      async () => (await ack(ma.socket, 'chat:message', { roomId: 'redis-room', text: 'after', clientMsgId: 'after-1' }).catch(() => ({ status: 'timeout' }))).status === 'ok',
      20_000,
      'send ok after the restart',
    )
    await eventually(() => mb.seen.includes(2), 10_000, 'cross-node delivery after the restart')
    assert.deepEqual(mb.seen, [1, 2])
    // Presence was re-registered from the nodes' own sockets (Redis came back empty), or kept
    // by the promoted replica.
    const { token: c } = await devToken(cluster.url, 'redis-c')
    const mc = new RoomMember(clientFrom(cluster.url, c, on(last)), 'redis-room')
    await eventually(async () => {
      const r = await ack(mc.socket, 'room:join', { roomId: 'redis-room' }).catch(() => null)
      return r?.status === 'ok' && r.online.length >= 3
    }, 15_000, 'presence restored')
    // The killed master comes back as a replica of the promoted one.
    if (failedOver) await redisCluster!.restartNode(failedOver)
  })
})
}

/**
 * SIGKILLs the master that serves the most of `keys` (channels) and waits for its replica to
 * take over; returns the killed master's port.
 */
async function killMasterOf(rc: LocalRedisCluster, keys: string[]): Promise<number> {
  const owners = await Promise.all(keys.map(async (k) => rc.masterOf(await rc.slotOf(k))))
  const victim = owners.sort((a, b) => owners.filter((o) => o === b).length - owners.filter((o) => o === a).length)[0]
  await rc.killMaster(victim)
  return victim
}
