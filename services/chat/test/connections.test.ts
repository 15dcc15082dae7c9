import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { ack, chatClient, closeClients, devToken, eventually, startIsolatedNode } from './helpers.ts'

/**
 * Memory per idle connection (decision D37): every /chat socket shares one event router and one
 * disconnect listener; nothing per socket but its data and its expiry timer. A handler
 * registered per socket again (a closure and an `_events` entry per event) fails here.
 */
describe('idle connections carry no handlers of their own', () => {
  let node: Awaited<ReturnType<typeof startIsolatedNode>>
  before(async () => {
    node = await startIsolatedNode({ RATE_LIMIT_MESSAGES: '1000' })
  })
  after(async () => {
    closeClients()
    await node?.close()
  })

  it('sockets of different users share the same listener functions, and still work', async () => {
    const users = await Promise.all(['ida', 'ivo', 'ina'].map((u) => devToken(node.url, u)))
    const clients = await Promise.all(users.map((u) => chatClient(node.url, u.token)))
    const server = [...node.app.io.of('/chat').sockets.values()]
    assert.equal(server.length, 3)
    for (const s of server) {
      // 'error': Socket.IO's own shared no-op on every socket.
      assert.deepEqual(s.eventNames(), ['error', 'disconnect'], 'no per-socket event listeners')
      assert.equal(s.listenersAny().length, 1)
      assert.ok(s.data.expiry, 'the token expiry timer is armed')
    }
    const [first, ...rest] = server
    for (const s of rest) {
      assert.equal(s.listenersAny()[0], first.listenersAny()[0], 'one router for every socket')
      assert.deepEqual(s.listeners('disconnect'), first.listeners('disconnect'), 'the same disconnect listeners')
    }

    // The shared router dispatches per socket: each ack and echo goes to its own sender.
    await Promise.all(clients.map((c) => ack(c, 'room:join', 'idle-room')))
    const res = await Promise.all(clients.map((c, i) => ack(c, 'chat:message', { roomId: 'idle-room', text: `from ${i}` })))
    assert.deepEqual(res.map((r) => r.status), ['ok', 'ok', 'ok'])
    assert.deepEqual(new Set(res.map((r) => r.seq)), new Set([1, 2, 3]))
    const rows = await node.db.selectFrom('messages').select(['user_id', 'text']).where('room_id', '=', 'idle-room').execute()
    assert.deepEqual(
      rows.map((r) => [r.user_id, r.text]).sort(),
      users.map((u, i) => [u.userId, `from ${i}`]).sort(),
    )

    // The shared disconnect listener clears the socket's timer and its presence.
    clients[0].disconnect()
    await eventually(async () => node.app.io.of('/chat').sockets.size === 2, 5000, 'socket gone')
    assert.equal((first.data.expiry as unknown as { _destroyed: boolean })._destroyed, true, 'expiry timer cleared')
  })
})
