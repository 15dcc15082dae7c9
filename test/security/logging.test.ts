/**
 * Attack suite, logging without secrets (OWASP: "do not log sensitive data"): a node whose log
 * is captured at trace level handles valid, forged and expired tokens over WebSocket, polling and
 * HTTP Bearer, refreshes and messages. No log line holds a token, a token's signature, the
 * JWT secret, or the text of a message.
 */
import assert from 'node:assert/strict'
import type net from 'node:net'
import { Writable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { pino } from 'pino'
import { buildApp, type App } from '../../services/chat/src/app.ts'
import { createCluster, type Cluster } from '../../services/chat/src/cluster/cluster.ts'
import { loadConfig } from '../../services/chat/src/config.ts'
import { createMetrics } from '../../services/chat/src/metrics.ts'
import { createDb, type Db } from '../../services/chat/src/store/db.ts'
import { migrateToLatest } from '../../services/chat/src/store/migrate.ts'
import { ack, closeClients, createTestDatabase, httpJson, redisPrefix, REDIS_URL, signToken, TEST_SECRET, tryConnect } from './helpers.ts'

describe('logs carry no secrets', () => {
  const lines: string[] = []
  const database = { value: undefined as Awaited<ReturnType<typeof createTestDatabase>> | undefined }
  const redis = redisPrefix()
  let app: App
  let cluster: Cluster
  let db: Db
  let url = ''

  before(async () => {
    database.value = await createTestDatabase()
    const config = loadConfig({ JWT_SECRET: TEST_SECRET, HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'trace', DATABASE_URL: database.value.url, REDIS_URL, REDIS_PREFIX: redis.prefix })
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(...String(chunk).split('\n').filter(Boolean))
        done()
      },
    })
    const log = pino({ level: 'trace', base: { node: config.nodeId } }, sink)
    db = await createDb(config, log)
    await migrateToLatest(db, log)
    const metrics = createMetrics(config.nodeId)
    cluster = await createCluster(config, log, (client) => metrics.redisErrors.inc({ client }))
    app = await buildApp({ config, log, db, cluster, metrics })
    await app.http.listen({ port: 0, host: '127.0.0.1' })
    url = `http://127.0.0.1:${(app.http.server.address() as net.AddressInfo).port}`
  })
  after(async () => {
    closeClients()
    await app?.close()
    await cluster?.close()
    await db?.destroy()
    await database.value?.drop()
    await redis.clear()
  })

  it('no token, signature, secret or message text in any log line, at trace level', async () => {
    const valid = await signToken('log-user', { name: 'Log User' })
    const later = await signToken('log-user', { name: 'Log User' }, '2h')
    const forged = valid.slice(0, valid.lastIndexOf('.') + 1) + 'A'.repeat(43)
    const expired = await signToken('log-user', {}, Math.floor(Date.now() / 1000) - 60)
    const tokens = [valid, later, forged, expired]
    const text = 'TOP-SECRET-MESSAGE-TEXT-4711'

    for (const token of [forged, expired]) {
      for (const transports of [['websocket'], ['polling']] as const) {
        const r = await tryConnect(url, '/chat', { auth: { token }, transports: [...transports] })
        assert.equal(r.connected, false)
      }
      assert.equal((await httpJson(url, 'GET', '/api/rooms', { token })).status, 401)
    }
    const ok = await tryConnect(url, '/chat', { auth: { token: valid } })
    assert.ok(ok.connected)
    const s = ok.socket
    assert.equal((await ack(s, 'room:join', 'log-room')).status, 'ok')
    assert.equal((await ack(s, 'chat:message', { roomId: 'log-room', text })).status, 'ok')
    assert.equal((await ack(s, 'chat:message', { roomId: 'no-such-room-joined', text })).status, 'error')
    assert.equal((await ack(s, 'auth:refresh', { token: later })).status, 'ok')
    assert.equal((await ack(s, 'auth:refresh', { token: forged })).status, 'error')
    const polled = await tryConnect(url, '/chat', { transports: ['polling'], extraHeaders: { authorization: `Bearer ${valid}` } })
    assert.ok(polled.connected)
    polled.socket.disconnect()
    assert.equal((await httpJson(url, 'GET', '/api/rooms/log-room/messages', { token: valid })).status, 200)
    s.disconnect()
    await new Promise((r) => setTimeout(r, 100)) // let the disconnect lines be written

    assert.ok(lines.length > 5, `the log was captured (${lines.length} lines)`)
    const secrets = [...tokens, ...tokens.map((t) => t.split('.')[2]), TEST_SECRET, text]
    const leaks = lines.filter((line) => secrets.some((secret) => line.includes(secret)))
    assert.deepEqual(leaks.map((l) => l.slice(0, 300)), [], 'log lines holding a secret')
  })
})
