import assert from 'node:assert/strict'
import http from 'node:http'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { buildClient } from '../../services/web/test/browser.ts'
import { PG_ADMIN_URL, tcpProxy } from '../../services/chat/test/helpers.ts'
import { ack, clientFrom, closeAll, connected, devToken, eventually, octetsByNode, sleep, sourceAddress, startTestCluster, type TestCluster } from './helpers.ts'

/**
 * Degraded, never dark (SPEC §5.6, §6 `/readyz`): three real nodes behind nginx. Nodes 1 and 3
 * reach Postgres through one TCP proxy, node 2 through its own, so the test can cut Postgres
 * for node 2 alone or for all; Redis is the test's own and can be stopped, and node 2 reaches it
 * through a proxy of its own too.
 */
describe('readiness: degraded, never dark', () => {
  let test: TestCluster
  let fleetPg: Awaited<ReturnType<typeof tcpProxy>>
  let node2Pg: Awaited<ReturnType<typeof tcpProxy>>
  let node2Redis: Awaited<ReturnType<typeof tcpProxy>>
  let redisPort = 0
  let octets: Map<string, number[]>
  const dir = mkdtempSync(join(tmpdir(), 'sb-readiness-'))
  const nodes = () => test.cluster.nodes
  const url = () => test.cluster.url

  before(async () => {
    const pg = new URL(PG_ADMIN_URL)
    fleetPg = await tcpProxy(Number(pg.port || 5432), pg.hostname)
    node2Pg = await tcpProxy(Number(pg.port || 5432), pg.hostname)
    node2Redis = await tcpProxy(() => redisPort)
    const webRoot = join(dir, 'web')
    await buildClient(webRoot)
    const via = (proxy: { port: number }, databaseUrl: string) => {
      const u = new URL(databaseUrl)
      u.host = `127.0.0.1:${proxy.port}`
      return u.toString()
    }
    test = await startTestCluster(
      dir,
      'sbready:',
      { WEB_DIR: webRoot, RATE_LIMIT_MESSAGES: '100000', LIVENESS_INTERVAL_MS: '1000', LIVENESS_TTL_MS: '4000', DATABASE_TIMEOUT_MS: '2000' },
      3,
      (i, env): Record<string, string> => {
        redisPort = Number(new URL(env.REDIS_URL).port)
        if (i !== 1) return { DATABASE_URL: via(fleetPg, env.DATABASE_URL) }
        return { DATABASE_URL: via(node2Pg, env.DATABASE_URL), REDIS_URL: `redis://127.0.0.1:${node2Redis.port}` }
      },
    )
    octets = await octetsByNode(url(), nodes().map((n) => n.id), 1)
  })

  after(async () => {
    closeAll()
    await test?.stop()
    await fleetPg?.close()
    await node2Pg?.close()
    await node2Redis?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const readyz = async (nodeUrl: string) => {
    const res = await fetch(`${nodeUrl}/readyz`)
    return { status: res.status, body: (await res.json()) as { status: string; checks: Record<string, string>; lost?: string } }
  }
  const all = () => Promise.all(nodes().map((n) => readyz(n.url)))
  /** GET through nginx from 127.0.<octet>.1 (ip_hash picks the node); status, serving node, body. */
  const getVia = (octet: number, path: string, token?: string) =>
    new Promise<{ status: number; node: string; body: string }>((resolve, reject) => {
      const req = http.get(`${url()}${path}`, { localAddress: sourceAddress(octet), headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
        let body = ''
        res.on('data', (c) => (body += c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, node: String(res.headers['x-switchboard-node']), body }))
      })
      req.on('error', reject)
    })

  it('every node loses Redis: pages, history and joins still work, /readyz is 200 degraded, sends answer UNAVAILABLE; Redis back, sends work', async () => {
    const { token } = await devToken(url(), 'no-redis')
    const before = clientFrom(url(), token, octets.get(nodes()[0].id)![0], { reconnection: true })
    await connected(before)
    assert.equal((await ack(before, 'room:join', 'r-redis')).status, 'ok')
    assert.equal((await ack(before, 'chat:message', { roomId: 'r-redis', text: 'before the outage' })).status, 'ok')
    assert.deepEqual((await all()).map((r) => [r.status, r.body.status]), [[200, 'ready'], [200, 'ready'], [200, 'ready']])

    await test.redis.stop()
    await eventually(async () => (await all()).every((r) => r.body.checks.redis === 'down'), 10_000, 'every node sees Redis down')
    // Peers' heartbeats keep saying "Redis down" (longer than the margin and a few heartbeats): no node calls itself the odd one out.
    for (let round = 0; round < 3; round++) {
      for (const r of await all()) {
        assert.equal(r.status, 200, JSON.stringify(r.body))
        assert.deepEqual([r.body.status, r.body.checks], ['degraded', { postgres: 'ok', redis: 'down' }])
      }
      await sleep(1000)
    }

    for (const [, [octet]] of octets) {
      const page = await getVia(octet, '/')
      assert.equal(page.status, 200, `the web client loads through nginx (node ${page.node})`)
      assert.match(page.body, /<html/i)
      const history = await getVia(octet, '/api/rooms/r-redis/messages', token)
      assert.equal(history.status, 200, history.body)
      assert.deepEqual(JSON.parse(history.body).messages.map((m: { text: string }) => m.text), ['before the outage'])
    }
    // A new connection, a join with history, a sync: Postgres-only paths work without Redis.
    const { token: late } = await devToken(url(), 'late-joiner')
    const s = clientFrom(url(), late, octets.get(nodes()[2].id)![0])
    const history = new Promise<any>((resolve) => s.on('room:history', resolve))
    await connected(s)
    const joined = await ack(s, 'room:join', 'r-redis')
    assert.equal(joined.status, 'ok', JSON.stringify(joined))
    assert.equal(joined.lastSeq, 1)
    assert.deepEqual((await history).messages.map((m: { seq: number }) => m.seq), [1])
    const synced = await ack(s, 'chat:sync', { rooms: { 'r-redis': 0 } })
    assert.equal(synced.status, 'ok')
    assert.deepEqual(synced.rooms['r-redis'].map((m: { seq: number }) => m.seq), [1])
    // Sends need the cluster-wide rate limit (Redis): never a false ok.
    const refused = await ack(s, 'chat:message', { roomId: 'r-redis', text: 'during', clientMsgId: 'during-1' })
    assert.deepEqual([refused.status, refused.code], ['error', 'UNAVAILABLE'])

    await test.redis.start()
    await eventually(async () => (await all()).every((r) => r.status === 200 && r.body.status === 'ready'), 20_000, 'every node ready again')
    await eventually(
      async () => (await ack(s, 'chat:message', { roomId: 'r-redis', text: 'during', clientMsgId: 'during-1' }).catch(() => ({ status: 'timeout' }))).status === 'ok',
      15_000,
      'sends work again',
    )
    // Stored once. (A node that serves no socket of the room may answer from its history cache for up to its 5 s TTL.)
    const texts = async () => JSON.parse((await getVia(octets.get(nodes()[1].id)![0], '/api/rooms/r-redis/messages', token)).body).messages.map((m: { text: string }) => m.text)
    await eventually(async () => (await texts()).length === 2, 10_000, 'the retried send in history')
    assert.deepEqual(await texts(), ['during', 'before the outage'])
  })

  it('one node loses Postgres alone: its /readyz is 503, the others 200, and nginx serves its clients elsewhere', async () => {
    const isolated = nodes()[1]
    const octet = octets.get(isolated.id)![0]
    const { token } = await devToken(url(), 'pg-alone')
    assert.equal((await getVia(octet, '/api/rooms/nowhere/messages', token)).node, isolated.id, 'this address is served by node 2')
    const created = await fetch(`${url()}/api/rooms`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'r-pg-alone', name: 'Postgres alone' }),
    })
    assert.equal(created.status, 201)

    node2Pg.cut()
    await eventually(async () => (await readyz(isolated.url)).status === 503, 15_000, 'node 2 unready')
    const alone = await readyz(isolated.url)
    assert.deepEqual([alone.body.status, alone.body.lost, alone.body.checks], ['unavailable', 'postgres', { postgres: 'down', redis: 'ok' }])
    for (const n of nodes().filter((n) => n !== isolated)) {
      const r = await readyz(n.url)
      assert.deepEqual([r.status, r.body.status], [200, 'ready'], n.id)
    }

    // HTTP (nginx retries the 503 on another node) and new sessions (refused here) go to the others.
    const res = await getVia(octet, '/api/rooms/r-pg-alone/messages', token)
    assert.equal(res.status, 200, res.body)
    assert.notEqual(res.node, isolated.id)
    const s = clientFrom(url(), token, octet)
    await connected(s)
    assert.equal((await ack(s, 'room:join', 'r-pg-alone')).status, 'ok', 'joined on a node that reaches Postgres')
    assert.equal((await ack(s, 'chat:message', { roomId: 'r-pg-alone', text: 'hello' })).status, 'ok')

    node2Pg.restore()
    await eventually(async () => (await readyz(isolated.url)).status === 200, 15_000, 'node 2 ready again')
    assert.equal((await readyz(isolated.url)).body.status, 'ready')
  })

  it('one node loses Redis alone: its /readyz is 503, the others 200, and its new clients land where sends work', async () => {
    const isolated = nodes()[1]
    const octet = octets.get(isolated.id)![0]
    const { token } = await devToken(url(), 'redis-alone')

    node2Redis.cut()
    await eventually(async () => (await readyz(isolated.url)).status === 503, 15_000, 'node 2 unready')
    const alone = await readyz(isolated.url)
    assert.deepEqual([alone.body.status, alone.body.lost, alone.body.checks], ['unavailable', 'redis', { postgres: 'ok', redis: 'down' }])
    for (const n of nodes().filter((n) => n !== isolated)) {
      const r = await readyz(n.url)
      assert.deepEqual([r.status, r.body.status], [200, 'ready'], n.id)
    }
    // Node 2 would answer this send UNAVAILABLE (no rate limit without Redis); the node nginx picks instead stores it.
    const s = clientFrom(url(), token, octet)
    await connected(s)
    assert.equal((await ack(s, 'room:join', 'r-redis-alone')).status, 'ok')
    assert.equal((await ack(s, 'chat:message', { roomId: 'r-redis-alone', text: 'hello' })).status, 'ok')

    node2Redis.restore()
    await eventually(async () => (await readyz(isolated.url)).body.status === 'ready', 20_000, 'node 2 ready again')
  })

  it('every node loses Postgres: /readyz is 200 degraded everywhere, the page loads, sends answer UNAVAILABLE', async () => {
    const { token, userId } = await devToken(url(), 'no-pg')
    const s = clientFrom(url(), token, octets.get(nodes()[0].id)![0])
    await connected(s)
    assert.equal((await ack(s, 'room:join', 'r-no-pg')).status, 'ok')
    const { token: other } = await devToken(url(), 'no-pg-peer')
    const peer = clientFrom(url(), other, octets.get(nodes()[2].id)![0])
    await connected(peer)
    assert.equal((await ack(peer, 'room:join', 'r-no-pg')).status, 'ok')

    fleetPg.cut()
    node2Pg.cut()
    await eventually(async () => (await all()).every((r) => r.body.checks.postgres === 'down'), 10_000, 'every node sees Postgres down')
    for (let round = 0; round < 3; round++) {
      for (const r of await all()) {
        assert.equal(r.status, 200, JSON.stringify(r.body))
        assert.deepEqual([r.body.status, r.body.checks], ['degraded', { postgres: 'down', redis: 'ok' }])
      }
      await sleep(1000)
    }
    const page = await getVia(octets.get(nodes()[2].id)![0], '/')
    assert.equal(page.status, 200)
    const refused = await ack(s, 'chat:message', { roomId: 'r-no-pg', text: 'lost?' })
    assert.deepEqual([refused.status, refused.code], ['error', 'UNAVAILABLE'])
    // What needs only Redis still crosses nodes: typing from node 1 reaches node 3.
    const typing = new Promise<any>((resolve) => peer.on('chat:typing', resolve))
    s.emit('chat:typing', { roomId: 'r-no-pg', isTyping: true })
    assert.deepEqual(await typing, { userId, username: 'no-pg', roomId: 'r-no-pg', isTyping: true })

    fleetPg.restore()
    node2Pg.restore()
    await eventually(async () => (await all()).every((r) => r.status === 200 && r.body.status === 'ready'), 15_000, 'every node ready again')
    assert.equal((await ack(s, 'chat:message', { roomId: 'r-no-pg', text: 'after' })).status, 'ok')
  })
})
