import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import {
  ack,
  chatClient,
  closeClients,
  createTestDatabase,
  devToken,
  eventually,
  PG_ADMIN_URL,
  REDIS_URL,
  redisPrefix,
  startNode,
  tcpProxy,
  sleep,
  type TestNode,
  useIsolatedNode,
} from './helpers.ts'

/**
 * Dependency loss (SPEC §5.6): the node reaches Postgres and Redis through TCP proxies that
 * the test cuts, so the shared servers are never touched.
 */
describe('dependency loss is loud, and the node recovers by itself', () => {
  let node: TestNode
  let database: Awaited<ReturnType<typeof createTestDatabase>>
  let redis: ReturnType<typeof redisPrefix>
  let pgProxy: Awaited<ReturnType<typeof tcpProxy>>
  let redisProxy: Awaited<ReturnType<typeof tcpProxy>>

  before(async () => {
    database = await createTestDatabase()
    redis = redisPrefix()
    pgProxy = await tcpProxy(Number(new URL(PG_ADMIN_URL).port || 5432), new URL(PG_ADMIN_URL).hostname)
    redisProxy = await tcpProxy(Number(new URL(REDIS_URL).port || 6379), new URL(REDIS_URL).hostname)
    const dbUrl = new URL(database.url)
    dbUrl.host = `127.0.0.1:${pgProxy.port}`
    node = await startNode({
      DATABASE_URL: dbUrl.toString(),
      DATABASE_TIMEOUT_MS: '1500',
      REDIS_URL: `redis://127.0.0.1:${redisProxy.port}`,
      REDIS_PREFIX: redis.prefix,
      RATE_LIMIT_MESSAGES: '1000',
    })
  })
  after(async () => {
    closeClients()
    await node?.close()
    await pgProxy?.close()
    await redisProxy?.close()
    await database?.drop()
    await redis?.clear()
  })

  const ready = async () => (await fetch(`${node.url}/readyz`)).status
  const readyBody = async () => (await (await fetch(`${node.url}/readyz`)).json()) as { status: string; checks: Record<string, string> }

  // A lone node has no peer that reaches what it lost: the outage is fleet-wide, so it stays in
  // service, degraded (D80); test/cluster/readiness.test.ts covers the node cut off alone.
  it('Postgres unreachable: sends get UNAVAILABLE, /readyz 200 degraded, then recovery without restart', async () => {
    const { token } = await devToken(node.url, 'pg-user')
    const s = await chatClient(node.url, token)
    await ack(s, 'room:join', 'outage')
    assert.equal((await ack(s, 'chat:message', { roomId: 'outage', text: 'before' })).status, 'ok')
    assert.equal(await ready(), 200)

    pgProxy.cut()
    const during = await ack(s, 'chat:message', { roomId: 'outage', text: 'during', clientMsgId: 'during-1' })
    assert.deepEqual([during.status, during.code], ['error', 'UNAVAILABLE'])
    const readyz = await fetch(`${node.url}/readyz`)
    assert.equal(readyz.status, 200)
    const body = await readyz.json()
    assert.equal(body.status, 'degraded')
    assert.deepEqual(body.checks, { postgres: 'down', redis: 'ok' })
    assert.ok(body.errors.postgres, 'the reason is in the body')
    assert.equal((await fetch(`${node.url}/healthz`)).status, 200, 'liveness does not check dependencies')
    assert.ok(s.connected)

    pgProxy.restore()
    await eventually(async () => (await readyBody()).status === 'ready', 10_000, '/readyz ready again')
    // The client retries with the same clientMsgId: stored once.
    const retry = await ack(s, 'chat:message', { roomId: 'outage', text: 'during', clientMsgId: 'during-1' })
    assert.equal(retry.status, 'ok')
    const rows = await node.db.selectFrom('messages').select(['text', 'seq']).where('room_id', '=', 'outage').orderBy('seq').execute()
    assert.deepEqual(rows.map((r) => [r.text, Number(r.seq)]), [['before', 1], ['during', 2]])
  })

  it('Redis unreachable: sends get UNAVAILABLE, /readyz 200 degraded, then recovery without restart', async () => {
    const { token } = await devToken(node.url, 'redis-user')
    const s = await chatClient(node.url, token)
    await ack(s, 'room:join', 'outage-r')
    assert.equal((await ack(s, 'chat:message', { roomId: 'outage-r', text: 'before' })).status, 'ok')

    redisProxy.cut()
    await eventually(async () => {
      const r = await ack(s, 'chat:message', { roomId: 'outage-r', text: 'during' })
      assert.notEqual(r.status, 'ok', 'never a false ok while Redis is down')
      return r.code === 'UNAVAILABLE'
    }, 5000, 'UNAVAILABLE')
    assert.equal(await ready(), 200)
    assert.deepEqual([(await readyBody()).status, (await readyBody()).checks], ['degraded', { postgres: 'ok', redis: 'down' }])
    await eventually(
      async () => /switchboard_redis_errors_total\{client="(command|pub|sub)"[^}]*\} [1-9]/.test(await (await fetch(`${node.url}/metrics`)).text()),
      5000,
      'the outage shows in switchboard_redis_errors_total',
    )

    redisProxy.restore()
    await eventually(async () => (await readyBody()).status === 'ready', 15_000, '/readyz ready again')
    await eventually(async () => (await ack(s, 'chat:message', { roomId: 'outage-r', text: 'after' })).status === 'ok', 5000, 'send ok')
    const rows = await node.db.selectFrom('messages').select('text').where('room_id', '=', 'outage-r').execute()
    assert.deepEqual(rows.map((r) => r.text), ['before', 'after'])
  })
})

for (const adapter of ['classic', 'sharded']) {
  describe(`${adapter} adapter: rooms and broadcasts while its Redis connections are closed`, () => {
    const node = useIsolatedNode({ REDIS_ADAPTER: adapter })

    it('are no unhandled rejection (which would end the node)', async () => {
      const { token } = await devToken(node.url, 'shard-user')
      await chatClient(node.url, token)
      const nsp = node.app.io.of('/chat')
      const socket = [...nsp.sockets.values()][0]
      const unhandled: unknown[] = []
      const onUnhandled = (err: unknown) => unhandled.push(err)
      process.on('unhandledRejection', onUnhandled)
      try {
        const clients = nsp.adapter as unknown as { pubClient: { quit(): Promise<unknown> }; subClient: { quit(): Promise<unknown> } }
        await clients.subClient.quit()
        await clients.pubClient.quit()
        await socket.join('made-while-closed') // sharded: SSUBSCRIBE on a closed connection
        nsp.to('made-while-closed').emit('admin:announce', { text: 'x', from: { userId: 'u', username: 'u' }, timestamp: '' }) // PUBLISH
        await socket.leave('made-while-closed') // sharded: SUNSUBSCRIBE
        await sleep(200)
        assert.deepEqual(unhandled.map((e) => (e as Error).message), [])
      } finally {
        process.off('unhandledRejection', onUnhandled)
      }
    })
  })
}

describe('shutdown while Redis is unreachable', () => {
  it('completes: no Redis command or QUIT waits for a Redis that does not answer', async () => {
    const database = await createTestDatabase()
    const redis = redisPrefix()
    const proxy = await tcpProxy(Number(new URL(REDIS_URL).port || 6379), new URL(REDIS_URL).hostname)
    try {
      const node = await startNode({ DATABASE_URL: database.url, REDIS_URL: `redis://127.0.0.1:${proxy.port}`, REDIS_PREFIX: redis.prefix, REDIS_ADAPTER: 'sharded' })
      const { token } = await devToken(node.url, 'leaving-user')
      const s = await chatClient(node.url, token)
      await ack(s, 'room:join', 'shutdown-r')
      proxy.cut()
      // Generous: a hang is what this guards against (pub/sub clients queue commands while disconnected).
      let timer: NodeJS.Timeout | undefined
      const closed = await Promise.race([node.close().then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), 20_000)))])
      clearTimeout(timer)
      assert.ok(closed, 'node.close() finished with Redis unreachable')
    } finally {
      closeClients()
      await proxy.close()
      await database.drop()
      await redis.clear()
    }
  })
})
