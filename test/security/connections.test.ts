/**
 * Attack suite, connection floods (SPEC §3 connection limits): past MAX_CONNECTIONS_PER_IP
 * Engine.IO sessions from one address (per node), or MAX_CONNECTIONS_PER_USER sockets of one user,
 * the handshake is refused with `connect_error` `err.data.code === 'RATE_LIMITED'`; a forged
 * X-Forwarded-For from a client that is not a trusted proxy does not evade it; everyone else is served.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Socket } from 'socket.io-client'
import { ack, ackCode, agentFrom, createTestDatabase, devToken, httpJson, redisPrefix, REDIS_URL, startNode, tryConnect, useIsolatedNode, type TestNode } from './helpers.ts'

const from = (address: string) => ({ localAddress: address, agent: agentFrom(address) }) as object

describe('connection flood from one address', () => {
  const node = useIsolatedNode({ MAX_CONNECTIONS_PER_IP: '3', MAX_CONNECTIONS_PER_USER: '50', TRUSTED_PROXIES: '192.0.2.10' })

  it('refuses sessions past MAX_CONNECTIONS_PER_IP with RATE_LIMITED and serves other addresses', async () => {
    const open: Socket[] = []
    try {
      for (let i = 0; i < 3; i++) {
        const { token } = await devToken(node.url, `flood-${i}`)
        const c = await tryConnect(node.url, '/chat', { auth: { token }, ...from('127.0.0.5') })
        assert.ok(c.connected, `connection ${i + 1} of 3`)
        open.push(c.socket)
      }
      // The test means what it says: the node sees these sessions coming from 127.0.0.5.
      assert.equal(node.app.io.of('/chat').sockets.get(open[0].id!)?.handshake.address, '127.0.0.5')
      const { token } = await devToken(node.url, 'flood-extra')
      for (const [what, opts] of [
        ['websocket', {}],
        ['polling', { transports: ['polling'] }],
        ['forged X-Forwarded-For', { extraHeaders: { 'x-forwarded-for': '10.9.9.9', forwarded: 'for=10.9.9.9' } }],
      ] as [string, object][]) {
        const r = await tryConnect(node.url, '/chat', { auth: { token }, ...from('127.0.0.5'), ...opts })
        if (r.connected) r.socket.disconnect()
        assert.equal(r.connected ? 'connected' : r.code, 'RATE_LIMITED', `4th session over ${what}`)
      }
      // The open sessions still work, and another address is served.
      assert.equal(ackCode(await ack(open[0], 'room:join', 'flood-room'), 'join'), 'ok')
      const other = await tryConnect(node.url, '/chat', { auth: { token }, ...from('127.0.0.6') })
      assert.ok(other.connected, 'another address is served')
      assert.equal(ackCode(await ack(other.socket, 'room:join', 'flood-room'), 'join'), 'ok')
      other.socket.disconnect()
      assert.equal((await httpJson(node.url, 'GET', '/healthz')).status, 200)
      // A closed session frees its place.
      open.pop()!.disconnect()
      let back: Awaited<ReturnType<typeof tryConnect>> | undefined
      for (let i = 0; i < 40 && !back?.connected; i++) {
        back = await tryConnect(node.url, '/chat', { auth: { token }, ...from('127.0.0.5') })
        if (!back.connected) await new Promise((r) => setTimeout(r, 50))
      }
      assert.ok(back?.connected, 'a place freed by a disconnect is available again')
      if (back?.connected) open.push(back.socket)
    } finally {
      for (const s of open) s.disconnect()
    }
  })
})

describe('connection flood by one user', () => {
  const node = useIsolatedNode({ MAX_CONNECTIONS_PER_USER: '2', MAX_CONNECTIONS_PER_IP: '500' })

  it('refuses sockets past MAX_CONNECTIONS_PER_USER with RATE_LIMITED, from any address; other users are served', async () => {
    const { token } = await devToken(node.url, 'many-devices')
    const open: Socket[] = []
    try {
      for (const address of ['127.0.0.7', '127.0.0.8']) {
        const c = await tryConnect(node.url, '/chat', { auth: { token }, ...from(address) })
        assert.ok(c.connected, address)
        open.push(c.socket)
      }
      const third = await tryConnect(node.url, '/chat', { auth: { token }, ...from('127.0.0.9') })
      if (third.connected) third.socket.disconnect()
      assert.equal(third.connected ? 'connected' : third.code, 'RATE_LIMITED')
      const other = await devToken(node.url, 'someone-else')
      const fine = await tryConnect(node.url, '/chat', { auth: { token: other.token }, ...from('127.0.0.9') })
      assert.ok(fine.connected, 'another user is served')
      fine.socket.disconnect()
    } finally {
      for (const s of open) s.disconnect()
    }
  })
})

describe('connection flood by one user across two nodes', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>
  const redis = redisPrefix()
  const nodes: TestNode[] = []
  before(async () => {
    database = await createTestDatabase()
    const env = { DATABASE_URL: database.url, REDIS_URL, REDIS_PREFIX: redis.prefix, MAX_CONNECTIONS_PER_USER: '2' }
    nodes.push(await startNode(env), await startNode(env))
  })
  after(async () => {
    for (const n of nodes) await n.close()
    await database?.drop()
    await redis.clear()
  })

  it('the per-user limit is cluster-wide: a socket on each node, the third on either is refused', async () => {
    const { token } = await devToken(nodes[0].url, 'two-node-user')
    const open: Socket[] = []
    try {
      for (const n of nodes) {
        const c = await tryConnect(n.url, '/chat', { auth: { token } })
        assert.ok(c.connected, n.url)
        open.push(c.socket)
      }
      for (const n of nodes) {
        const third = await tryConnect(n.url, '/chat', { auth: { token } })
        if (third.connected) third.socket.disconnect()
        assert.equal(third.connected ? 'connected' : third.code, 'RATE_LIMITED', `third socket on ${n.url}`)
      }
      assert.equal(ackCode(await ack(open[1], 'room:join', 'two-node-room'), 'join'), 'ok', 'the admitted sockets work')
    } finally {
      for (const s of open) s.disconnect()
    }
  })
})
