import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SignJWT } from 'jose'
import { io } from 'socket.io-client'
import { ack, chatClient, devToken, next, TEST_SECRET, usersInRoom, useIsolatedNode } from './helpers.ts'

const adminToken = () =>
  new SignJWT({ name: 'Root', roles: ['admin'] }).setProtectedHeader({ alg: 'HS256' }).setSubject('admin-1').setExpirationTime('1h').sign(new TextEncoder().encode(TEST_SECRET))

describe('/admin and /notifications namespaces', () => {
  const node = useIsolatedNode()

  it('refuses /admin to users without the admin role', async () => {
    const { token } = await devToken(node.url, 'not-admin')
    const err = await new Promise<{ message: string; code?: string }>((resolve, reject) => {
      const s = io(`${node.url}/admin`, { auth: { token }, transports: ['websocket'], forceNew: true, reconnection: false })
      s.on('connect', () => (s.disconnect(), reject(new Error('connected'))))
      s.on('connect_error', (e: Error & { data?: { code: string } }) => (s.disconnect(), resolve({ message: e.message, code: e.data?.code })))
    })
    assert.deepEqual(err, { message: 'Forbidden', code: 'FORBIDDEN' })
  })

  it('admin:stats, admin:announce and admin:kick work for an admin', async () => {
    const admin = await chatClient(node.url, await adminToken(), { namespace: '/admin' })
    const [victim, bystander] = await usersInRoom(node.url, 'admin-room', ['victim', 'bystander'])
    const victimNotes = await chatClient(node.url, victim.token, { namespace: '/notifications' })

    const stats = await ack(admin, 'admin:stats', {})
    assert.equal(stats.status, 'ok')
    assert.equal(stats.nodes.length, 1)
    assert.equal(stats.nodes[0].node, node.config.nodeId)
    assert.ok(stats.sockets['/chat'] >= 2)
    assert.ok(stats.sockets['/admin'] >= 1)
    assert.ok(stats.nodes[0].users >= 2)

    const announced = next(bystander.socket, 'admin:announce')
    assert.equal((await ack(admin, 'admin:announce', { text: 'maintenance at noon' })).status, 'ok')
    const a = await announced
    assert.equal(a.text, 'maintenance at noon')
    assert.equal(a.from.userId, 'admin-1')
    assert.equal((await ack(admin, 'admin:announce', { text: '' })).code, 'BAD_REQUEST')

    const gone = Promise.all([next(victim.socket, 'disconnect'), next(victimNotes, 'disconnect')])
    assert.equal((await ack(admin, 'admin:kick', { userId: victim.userId })).status, 'ok')
    assert.deepEqual(await gone, ['io server disconnect', 'io server disconnect'])
    assert.ok(bystander.socket.connected, 'only the kicked user goes')
  })

  it('pushes mentions, DMs and invites to the user on /notifications', async () => {
    const [ann, bob] = await usersInRoom(node.url, 'mentions', ['ann', 'bob'])
    const bobNotes = await chatClient(node.url, bob.token, { namespace: '/notifications' })
    const annNotes = await chatClient(node.url, ann.token, { namespace: '/notifications' })

    const mention = next(bobNotes, 'notification', (n: any) => n.type === 'mention')
    const sent = await ack(ann.socket, 'chat:message', { roomId: 'mentions', text: 'hey @Bob, look' })
    const m = await mention
    assert.deepEqual([m.roomId, m.messageId, m.from.userId], ['mentions', sent.messageId, ann.userId])

    const dm = next(bobNotes, 'notification', (n: any) => n.type === 'dm')
    const room = `dm:${ann.userId}:${bob.userId}`
    await ack(ann.socket, 'room:join', room)
    await ack(ann.socket, 'chat:message', { roomId: room, text: 'just you' })
    assert.equal((await dm).roomId, room)

    const invite = next(bobNotes, 'notification', (n: any) => n.type === 'invite')
    const res = await fetch(`${node.url}/api/rooms`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ann.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Secret plans', private: true, members: [bob.userId] }),
    })
    const created = await res.json()
    assert.equal((await invite).roomId, created.id)

    let selfNotified = false
    annNotes.on('notification', () => (selfNotified = true))
    await ack(ann.socket, 'chat:message', { roomId: 'mentions', text: 'note to @ann self' })
    await new Promise((r) => setTimeout(r, 200))
    assert.equal(selfNotified, false, 'no notification for one’s own message')
  })
})
