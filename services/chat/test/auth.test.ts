import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SignJWT, UnsecuredJWT } from 'jose'
import { Agent as HttpAgent } from 'node:http'
import { io } from 'socket.io-client'
import { useIsolatedNode, ack, chatClient, closeClients, devToken, next, startIsolatedNode, TEST_SECRET } from './helpers.ts'

const key = new TextEncoder().encode(TEST_SECRET)
const sign = (claims: Record<string, unknown>, exp: number | string = '1h', secret = key) => {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setSubject('u-auth').setIssuedAt()
  if (exp !== 0) jwt.setExpirationTime(exp)
  return jwt.sign(secret)
}

/** Connects and resolves with the connect_error (or fails if it connects). */
function refusal(url: string, auth: object, namespace = '/chat'): Promise<{ message: string; code: string }> {
  const s = io(`${url}${namespace}`, { auth, transports: ['websocket'], reconnection: false, forceNew: true })
  return new Promise((resolve, reject) => {
    s.on('connect', () => {
      s.disconnect()
      reject(new Error('connected'))
    })
    s.on('connect_error', (err: Error & { data?: { code: string } }) => {
      s.disconnect()
      resolve({ message: err.message, code: err.data?.code ?? '' })
    })
  })
}

describe('authentication (SPEC §2)', () => {
  const node = useIsolatedNode()

  it('refuses missing, garbage, wrong-secret, alg:none, expired and not-yet-valid tokens', async () => {
    const noneToken = new UnsecuredJWT({ name: 'x' }).setSubject('u-auth').setExpirationTime('1h').encode()
    const cases: [string, object, string, string][] = [
      ['missing', {}, 'Authentication required', 'AUTH_REQUIRED'],
      ['empty', { token: '' }, 'Authentication required', 'AUTH_REQUIRED'],
      ['garbage', { token: 'not.a.jwt' }, 'Invalid token', 'AUTH_INVALID'],
      ['non-string', { token: { evil: true } }, 'Invalid token', 'AUTH_INVALID'],
      ['wrong secret', { token: await sign({ name: 'x' }, '1h', new TextEncoder().encode('another-secret-another-secret-1234')) }, 'Invalid token', 'AUTH_INVALID'],
      ['alg none', { token: noneToken }, 'Invalid token', 'AUTH_INVALID'],
      ['expired', { token: await sign({ name: 'x' }, Math.floor(Date.now() / 1000) - 60) }, 'Invalid token', 'AUTH_EXPIRED'],
      ['not yet valid', { token: await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('u').setNotBefore('1h').setExpirationTime('2h').sign(key) }, 'Invalid token', 'AUTH_INVALID'],
      ['no sub', { token: await new SignJWT({ name: 'x' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(key) }, 'Invalid token', 'AUTH_INVALID'],
    ]
    for (const ns of ['/chat', '/notifications']) {
      for (const [what, auth, message, code] of cases) {
        assert.deepEqual(await refusal(node.url, auth, ns), { message, code }, `${ns} ${what}`)
      }
    }
  })

  it('accepts a valid token, in auth.token or as a Bearer header', async () => {
    const token = await sign({ name: 'Valid User', roles: ['admin'] })
    const s = await chatClient(node.url, token)
    assert.ok(s.connected)
    const viaHeader = io(`${node.url}/chat`, { transports: ['polling'], extraHeaders: { authorization: `Bearer ${token}` }, forceNew: true, reconnection: false })
    await new Promise<void>((resolve, reject) => {
      viaHeader.on('connect', () => resolve())
      viaHeader.on('connect_error', reject)
    })
    viaHeader.disconnect()
    const http = await fetch(`${node.url}/api/rooms`, { headers: { authorization: `Bearer ${token}` } })
    assert.equal(http.status, 200)
    const expired = await fetch(`${node.url}/api/rooms`, { headers: { authorization: `Bearer ${await sign({}, Math.floor(Date.now() / 1000) - 60)}` } })
    assert.equal(expired.status, 401)
    assert.equal((await expired.json()).error, 'AUTH_EXPIRED')
  })

  it('disconnects a socket at token expiry unless it refreshed', async () => {
    const soon = () => Math.floor(Date.now() / 1000) + 2
    const lapsing = await chatClient(node.url, await sign({ name: 'a' }, soon()))
    const refreshing = await chatClient(node.url, await sign({ name: 'a' }, soon()))
    const refreshed = await ack(refreshing, 'auth:refresh', { token: await sign({ name: 'a' }, '1h') })
    assert.equal(refreshed.status, 'ok')
    assert.ok(Date.parse(refreshed.expiresAt) > Date.now() + 30 * 60_000)
    const otherUser = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('someone-else').setExpirationTime('1h').sign(key)
    assert.equal((await ack(refreshing, 'auth:refresh', { token: otherUser })).code, 'FORBIDDEN')
    assert.equal((await ack(refreshing, 'auth:refresh', { token: 'junk' })).code, 'AUTH_INVALID')
    const reason = await next(lapsing, 'disconnect', () => true, 10_000)
    assert.equal(reason, 'io server disconnect')
    assert.ok(refreshing.connected, 'the refreshed socket stays')
  })

  it('/notifications and /admin: disconnected at expiry unless refreshed; an admin refresh must keep the role', async () => {
    const soon = () => Math.floor(Date.now() / 1000) + 2
    const admin = (exp: number | string, roles = ['admin']) => sign({ name: 'root', roles }, exp)
    const lapsingNotes = await chatClient(node.url, await sign({ name: 'a' }, soon()), { namespace: '/notifications' })
    const refreshingNotes = await chatClient(node.url, await sign({ name: 'a' }, soon()), { namespace: '/notifications' })
    const lapsingAdmin = await chatClient(node.url, await admin(soon()), { namespace: '/admin' })
    const demoted = await chatClient(node.url, await admin(soon()), { namespace: '/admin' })
    const refreshingAdmin = await chatClient(node.url, await admin(soon()), { namespace: '/admin' })

    const notes = await ack(refreshingNotes, 'auth:refresh', { token: await sign({ name: 'a' }, '1h') })
    assert.equal(notes.status, 'ok')
    assert.ok(Date.parse(notes.expiresAt) > Date.now() + 30 * 60_000)
    const otherUser = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('someone-else').setExpirationTime('1h').sign(key)
    assert.equal((await ack(refreshingNotes, 'auth:refresh', { token: otherUser })).code, 'FORBIDDEN')
    assert.equal((await ack(refreshingNotes, 'auth:refresh', { token: 'junk' })).code, 'AUTH_INVALID')

    const noRole = await ack(demoted, 'auth:refresh', { token: await admin('1h', []) })
    assert.deepEqual([noRole.status, noRole.code], ['error', 'FORBIDDEN'], 'a token without the admin role does not extend /admin')
    assert.equal((await ack(refreshingAdmin, 'auth:refresh', { token: await admin('1h') })).status, 'ok')
    assert.equal((await ack(lapsingAdmin, 'admin:stats', {})).status, 'ok', 'admin powers until exp')

    const reasons = await Promise.all([lapsingNotes, lapsingAdmin, demoted].map((s) => next(s, 'disconnect', () => true, 10_000)))
    assert.deepEqual(reasons, ['io server disconnect', 'io server disconnect', 'io server disconnect'])
    assert.ok(refreshingNotes.connected, 'the refreshed /notifications socket stays')
    assert.ok(refreshingAdmin.connected, 'the refreshed /admin socket stays')
    assert.equal((await ack(refreshingAdmin, 'admin:stats', {})).status, 'ok')
  })

  it('an admin event after exp is refused even before the expiry timer fires', async () => {
    const s = await chatClient(node.url, await sign({ name: 'root', roles: ['admin'] }, Math.floor(Date.now() / 1000) + 2), { namespace: '/admin' })
    // Stall the timer: what matters is that the router checks exp on each event too.
    const server = node.app.io.of('/admin').sockets.get(s.id!)!
    clearTimeout(server.data.expiry)
    await new Promise((r) => setTimeout(r, Math.min(3000, Math.max(0, server.data.identity.exp! * 1000 - Date.now()) + 50)))
    const gone = next(s, 'disconnect')
    const res = await ack(s, 'admin:kick', { userId: 'anyone' })
    assert.deepEqual([res.status, res.code], ['error', 'AUTH_EXPIRED'])
    assert.equal(await gone, 'io server disconnect')
  })

  it('X-Forwarded-Host counts only from a trusted proxy: a forged one matching an evil Origin is refused', async () => {
    const { token } = await devToken(node.url, 'origin-forger')
    const attempt = (octet: number, transport: 'websocket' | 'polling', origin: string, forwardedHost: string) => {
      const agent = new HttpAgent({ localAddress: `127.0.${octet}.1` })
      const s = io(`${node.url}/chat`, {
        auth: { token },
        transports: [transport],
        extraHeaders: { origin, 'x-forwarded-host': forwardedHost },
        reconnection: false,
        forceNew: true,
        ...({ localAddress: `127.0.${octet}.1`, agent } as object),
      })
      return new Promise<string>((resolve) => {
        s.on('connect', () => (s.disconnect(), agent.destroy(), resolve('connected')))
        s.on('connect_error', () => (s.disconnect(), agent.destroy(), resolve('refused')))
      })
    }
    for (const transport of ['websocket', 'polling'] as const) {
      // 127.0.9.1 is not in TRUSTED_PROXIES (default 127.0.0.1, ::1): its header is ignored.
      assert.equal(await attempt(9, transport, 'http://evil.example', 'evil.example'), 'refused', `direct client, ${transport}`)
      // nginx on 127.0.0.1 forwarding the host the browser asked for: honoured.
      assert.equal(await attempt(0, transport, 'http://chat.example:8080', 'chat.example:8080'), 'connected', `trusted proxy, ${transport}`)
    }
  })

  it('dev tokens: stable user id per username', async () => {
    const a = await devToken(node.url, 'Stable')
    const b = await devToken(node.url, 'stable')
    assert.equal(a.userId, b.userId)
    assert.notEqual(a.userId, (await devToken(node.url, 'other')).userId)
  })
})

describe('JWKS issuers (RS256)', () => {
  it('accepts tokens signed by a key in the JWKS and refuses HS256 ones', async () => {
    const { generateKeyPair, exportJWK } = await import('jose')
    const { createServer } = await import('node:http')
    const { privateKey, publicKey } = await generateKeyPair('RS256')
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }
    const jwks = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ keys: [jwk] }))
    })
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r))
    const port = (jwks.address() as import('node:net').AddressInfo).port
    const node = await startIsolatedNode({ JWT_SECRET: '', JWT_JWKS_URL: `http://127.0.0.1:${port}/jwks.json`, AUTH_DEV_TOKENS: 'false', JWT_ISSUER: 'https://issuer.test' })
    try {
      const good = await new SignJWT({ name: 'Rita' })
        .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
        .setSubject('rita')
        .setIssuer('https://issuer.test')
        .setExpirationTime('1h')
        .sign(privateKey)
      const s = await chatClient(node.url, good)
      assert.ok(s.connected)
      const wrongIssuer = await new SignJWT({}).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setSubject('rita').setIssuer('https://other').setExpirationTime('1h').sign(privateKey)
      assert.equal((await refusal(node.url, { token: wrongIssuer })).code, 'AUTH_INVALID')
      assert.equal((await refusal(node.url, { token: await sign({ name: 'x' }) })).code, 'AUTH_INVALID', 'HS256 is not accepted from a JWKS deployment')
      const dev = await fetch(`${node.url}/api/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"username":"x"}' })
      assert.equal(dev.status, 404, 'dev tokens off')
    } finally {
      closeClients()
      await node.close()
      jwks.close()
    }
  })
})
