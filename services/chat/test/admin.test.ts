import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { SignJWT } from 'jose'
import { io } from 'socket.io-client'
import {
  ack,
  chatClient,
  closeClients,
  createTestDatabase,
  devToken,
  next,
  startNode,
  TEST_SECRET,
  usersInRoom,
  useIsolatedNode,
  type TestNode,
} from './helpers.ts'

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

  it('a dev token asked for with roles ["admin"] opens /admin; unknown roles are refused', async () => {
    const mint = (body: unknown) =>
      fetch(`${node.url}/api/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    const res = await mint({ username: 'operator', roles: ['admin'] })
    assert.equal(res.status, 200)
    const minted = await res.json()
    assert.deepEqual(minted.roles, ['admin'])
    const admin = await chatClient(node.url, minted.token, { namespace: '/admin' })
    const stats = await ack(admin, 'admin:stats', {})
    assert.equal(stats.status, 'ok')
    // The same user, same token kind, without the role: still a plain user.
    const plain = await (await mint({ username: 'operator' })).json()
    assert.equal(plain.userId, minted.userId)
    assert.deepEqual(plain.roles, [])

    for (const roles of [['root'], ['admin', 'root'], ['admin', 'admin'], 'admin', [1], ['__proto__']]) {
      const refused = await mint({ username: 'operator', roles })
      assert.equal(refused.status, 400, JSON.stringify(roles))
      const body = await refused.json()
      assert.equal(body.error, 'BAD_REQUEST')
      assert.match(body.message, /roles/)
    }
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

describe('the Socket.IO admin dashboard at /dashboard/', async () => {
  const bcrypt = (await import('bcryptjs')).default
  // No Redis here: the dashboard's stats timer cannot be stopped and would publish after close.
  let node: TestNode
  let database: Awaited<ReturnType<typeof createTestDatabase>>
  before(async () => {
    database = await createTestDatabase()
    node = await startNode({ DATABASE_URL: database.url, ADMIN_UI_USERNAME: 'ops', ADMIN_UI_PASSWORD_HASH: bcrypt.hashSync('s3cret-pass', 4) })
  })
  after(async () => {
    closeClients()
    await node?.close()
    await database?.drop()
  })
  const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`

  it('serves the UI from the node itself, only with credentials', async () => {
    const anonymous = await fetch(`${node.url}/dashboard/`)
    assert.equal(anonymous.status, 401)
    assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Basic/)
    assert.equal((await fetch(`${node.url}/dashboard/`, { headers: { authorization: basic('ops', 'wrong') } })).status, 401)
    const page = await fetch(`${node.url}/dashboard/`, { headers: { authorization: basic('ops', 's3cret-pass') } })
    assert.equal(page.status, 200)
    const html = await page.text()
    assert.match(html, /<div id="?app"?/)
    assert.doesNotMatch(html, /https?:\/\/(fonts\.googleapis|cdn\.jsdelivr)/, 'no third-party assets')
    const script = /src="?(js\/app\.[^" >]+)/.exec(html)![1]
    assert.equal((await fetch(`${node.url}/dashboard/${script}`)).status, 401)
    assert.equal((await fetch(`${node.url}/dashboard/${script}`, { headers: { authorization: basic('ops', 's3cret-pass') } })).status, 200)
  })

  it('its /admin-ui namespace needs the same credentials and never collides with /admin', async () => {
    const attempt = (auth: object) =>
      new Promise<string>((resolve) => {
        const s = io(`${node.url}/admin-ui`, { auth, transports: ['websocket'], forceNew: true, reconnection: false })
        s.on('connect', () => (s.disconnect(), resolve('connected')))
        s.on('connect_error', () => (s.disconnect(), resolve('refused')))
      })
    assert.equal(await attempt({ username: 'ops', password: 'nope' }), 'refused')
    assert.equal(await attempt({ username: 'ops', password: 's3cret-pass' }), 'connected')
    const { token } = await devToken(node.url, 'plain-user')
    const adminNs = await new Promise<string>((resolve) => {
      const s = io(`${node.url}/admin`, { auth: { token }, transports: ['websocket'], forceNew: true, reconnection: false })
      s.on('connect', () => (s.disconnect(), resolve('connected')))
      s.on('connect_error', (e) => (s.disconnect(), resolve(e.message)))
    })
    assert.equal(adminNs, 'Forbidden', '/admin keeps its own role check')
  })
})
