/**
 * Attack suite, JWT (SPEC §2): forged, confused, expired and malformed tokens on the handshake of
 * every namespace and on HTTP Bearer; identity comes from the verified token only.
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, UnsecuredJWT } from 'jose'
import {
  ack,
  ackCode,
  chatClient,
  closeClients,
  httpJson,
  refused,
  secretKey,
  signToken,
  startIsolatedNode,
  tryConnect,
  useIsolatedNode,
} from './helpers.ts'

const NAMESPACES = ['/chat', '/notifications', '/admin']
const now = () => Math.floor(Date.now() / 1000)

/** Every namespace refuses `token` with `code`, and HTTP Bearer answers 401 with the same code. */
async function refusedEverywhere(url: string, what: string, token: unknown, code: string) {
  for (const ns of NAMESPACES) {
    const r = await refused(url, ns, { auth: { token } })
    assert.deepEqual(r, { message: code === 'AUTH_REQUIRED' ? 'Authentication required' : 'Invalid token', code }, `${ns}: ${what}`)
  }
  // Over long-polling too (the handshake travels in a different request).
  const polled = await refused(url, '/chat', { auth: { token }, transports: ['polling'] })
  assert.equal(polled.code, code, `/chat over polling: ${what}`)
  if (typeof token === 'string') {
    const res = await httpJson(url, 'GET', '/api/rooms', { token })
    assert.equal(res.status, 401, `HTTP Bearer: ${what}`)
    assert.equal(res.body.error, code, `HTTP Bearer: ${what}`)
  }
}

describe('JWT attacks on an HS256 node', () => {
  const node = useIsolatedNode()

  it('refuses alg:none, RS256 on an HS256 node, HS512, a wrong secret, expired and not-yet-valid tokens', async () => {
    const rsa = await generateKeyPair('RS256')
    const cases: [string, string, string][] = [
      ['alg none', new UnsecuredJWT({ name: 'x', roles: ['admin'] }).setSubject('mallory').setExpirationTime('1h').encode(), 'AUTH_INVALID'],
      ['alg none, signature kept', (await signToken('mallory', { roles: ['admin'] })).replace(/^[^.]+/, Buffer.from('{"alg":"none"}').toString('base64url')), 'AUTH_INVALID'],
      ['RS256-signed', await new SignJWT({ roles: ['admin'] }).setProtectedHeader({ alg: 'RS256' }).setSubject('mallory').setExpirationTime('1h').sign(rsa.privateKey), 'AUTH_INVALID'],
      ['HS512 with the right secret', await new SignJWT({}).setProtectedHeader({ alg: 'HS512' }).setSubject('mallory').setExpirationTime('1h').sign(new Uint8Array(64).fill(1)), 'AUTH_INVALID'],
      ['wrong secret', await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('mallory').setExpirationTime('1h').sign(new TextEncoder().encode('not-the-secret-not-the-secret-0000')), 'AUTH_INVALID'],
      ['tampered payload', (await signToken('alice')).replace(/\.[^.]+\./, `.${Buffer.from(JSON.stringify({ sub: 'mallory', exp: now() + 3600 })).toString('base64url')}.`), 'AUTH_INVALID'],
      ['expired', await signToken('mallory', {}, now() - 120), 'AUTH_EXPIRED'],
      ['not yet valid (nbf)', await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('mallory').setNotBefore(now() + 3600).setExpirationTime('2h').sign(secretKey), 'AUTH_INVALID'],
      ['garbage', 'a.b.c', 'AUTH_INVALID'],
      ['missing', '', 'AUTH_REQUIRED'],
    ]
    for (const [what, token, code] of cases) await refusedEverywhere(node.url, what, token, code)
    for (const token of [42, { token: 'x' }, ['a.b.c'], null]) {
      for (const ns of NAMESPACES) {
        const r = await refused(node.url, ns, { auth: { token } })
        assert.ok(r.code === 'AUTH_INVALID' || r.code === 'AUTH_REQUIRED', `${ns}: token ${JSON.stringify(token)} → ${r.code}`)
      }
    }
  })

  it('malformed Authorization headers on HTTP: 401 with a SPEC code, never 500', async () => {
    const valid = await signToken('bearer-user')
    const headers = [`bearer ${valid}`, `Bearer  ${valid}`, 'Bearer', 'Bearer ', `Basic ${Buffer.from('a:b').toString('base64')}`, `Bearer ${valid}, Bearer ${valid}`, `Bearer ${'x'.repeat(9000)}`, `Token ${valid}`]
    for (const authorization of headers) {
      const res = await httpJson(node.url, 'GET', '/api/rooms', { headers: { authorization } })
      if (res.status === 200) continue // a lenient but correct reading of the same valid token
      assert.equal(res.status, 401, `${authorization.slice(0, 30)}: ${res.status}`)
      assert.ok(['AUTH_REQUIRED', 'AUTH_INVALID'].includes(res.body.error), `${authorization.slice(0, 30)}: ${JSON.stringify(res.body)}`)
    }
  })

  it('refuses a missing, empty, non-string, over-long, NUL or lone-surrogate sub', async () => {
    const subs: [string, unknown][] = [
      ['missing', undefined],
      ['empty', ''],
      ['number', 12345],
      ['object', { id: 'x' }],
      ['129 chars', 'a'.repeat(129)],
      ['10,000 chars', 'a'.repeat(10_000)],
      ['NUL', 'vic\u0000tim'],
      ['lone high surrogate', 'victim\ud800'],
      ['lone low surrogate', '\udc00victim'],
    ]
    for (const [what, sub] of subs) {
      const claims: Record<string, unknown> = { name: 'x' }
      if (sub !== undefined) claims.sub = sub
      const token = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(secretKey)
      await refusedEverywhere(node.url, `sub ${what}`, token, 'AUTH_INVALID')
    }
  })

  it('extra handshake fields beside a valid token never change the identity or the roles', async () => {
    const token = await signToken('alice', { name: 'Alice' })
    const forged = { token, sub: 'victim', userId: 'victim', username: 'victim', name: 'victim', roles: ['admin'], identity: { userId: 'victim', roles: ['admin'] } }
    const s = await chatClient(node.url, undefined, { setup: (sock) => void (sock.auth = forged) })
    assert.equal(ackCode(await ack(s, 'room:join', 'jwt-forge'), 'join'), 'ok')
    const sent = await ack(s, 'chat:message', { roomId: 'jwt-forge', text: 'who am I', userId: 'victim', username: 'victim' })
    assert.equal(ackCode(sent, 'send'), 'ok')
    // Forged query and headers do not either.
    const q = await tryConnect(node.url, '/chat', { auth: forged, query: { userId: 'victim', sub: 'victim' }, extraHeaders: { 'x-user-id': 'victim' } })
    assert.ok(q.connected)
    assert.equal(ackCode(await ack(q.socket, 'chat:message', { roomId: 'jwt-forge', text: 'again' }), 'send 2'), 'ok')
    q.socket.disconnect()
    const res = await httpJson(node.url, 'GET', '/api/rooms/jwt-forge/messages', { token })
    assert.deepEqual(
      res.body.messages.map((m: any) => [m.userId, m.username]),
      [['alice', 'Alice'], ['alice', 'Alice']],
    )
    // /admin needs the role in the verified token, not in the handshake.
    for (const auth of [forged, { token, roles: ['admin'] }]) {
      const r = await refused(node.url, '/admin', { auth })
      assert.equal(r.code, 'FORBIDDEN', '/admin with a forged role')
    }
    const admin = await signToken('root', { roles: ['admin'] })
    const ok = await tryConnect(node.url, '/admin', { auth: { token: admin } })
    assert.ok(ok.connected, 'a real admin token opens /admin')
    ok.socket.disconnect()
    // HTTP: headers beside the Bearer token do not change who creates the room.
    const created = await httpJson(node.url, 'POST', '/api/rooms', {
      token,
      headers: { 'x-user-id': 'victim', 'x-forwarded-user': 'victim' },
      body: { name: 'mine', private: true },
    })
    assert.equal(created.status, 201)
    assert.deepEqual(created.body.members, ['alice'])
  })

  it('auth:refresh on every namespace refuses forged, expired and other users\' tokens and keeps the identity', async () => {
    const admin = await signToken('root', { roles: ['admin'] })
    const forgedNone = new UnsecuredJWT({ roles: ['admin'] }).setSubject('root').setExpirationTime('1h').encode()
    for (const ns of NAMESPACES) {
      const c = await tryConnect(node.url, ns, { auth: { token: admin } })
      assert.ok(c.connected, ns)
      const s = c.socket
      const answers: [string, unknown, string][] = [
        ['alg none', forgedNone, 'AUTH_INVALID'],
        ['expired', await signToken('root', { roles: ['admin'] }, now() - 120), 'AUTH_EXPIRED'],
        ['another user', await signToken('victim', { roles: ['admin'] }), 'FORBIDDEN'],
      ]
      for (const [what, token, code] of answers) {
        const res = await s.timeout(3000).emitWithAck('auth:refresh', { token }).catch((err: Error) => ({ status: 'no ack', error: err.message }))
        assert.equal(ackCode(res, `${ns} refresh ${what}`, { auth: true }), code, `${ns} refresh ${what}`)
        assert.ok(s.connected, `${ns} still connected after ${what}`)
      }
      const fine = await s.timeout(3000).emitWithAck('auth:refresh', { token: await signToken('root', { roles: ['admin'] }, '2h') })
      assert.equal(ackCode(fine, `${ns} refresh valid`), 'ok')
      s.disconnect()
    }
  })

  it('auth:refresh refuses a validly signed token whose sub is NUL-bearing or a lone surrogate', async () => {
    const s = await chatClient(node.url, await signToken('root'))
    for (const sub of ['ro\u0000ot', 'root\ud800']) {
      const res = await ack(s, 'auth:refresh', { token: await signToken(sub) })
      assert.equal(ackCode(res, `refresh sub ${JSON.stringify(sub)}`, { auth: true }), 'AUTH_INVALID', `refresh sub ${JSON.stringify(sub)}`)
    }
  })
})

describe('JWT issuer and audience (JWT_ISSUER, JWT_AUDIENCE)', () => {
  const node = useIsolatedNode({ JWT_ISSUER: 'https://issuer.test', JWT_AUDIENCE: 'switchboard-test' })
  const make = (iss: string | undefined, aud: string | undefined) => {
    const jwt = new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('ivan').setExpirationTime('1h')
    if (iss) jwt.setIssuer(iss)
    if (aud) jwt.setAudience(aud)
    return jwt.sign(secretKey)
  }

  it('refuses a wrong or missing issuer or audience; the right pair passes', async () => {
    await refusedEverywhere(node.url, 'wrong issuer', await make('https://evil.test', 'switchboard-test'), 'AUTH_INVALID')
    await refusedEverywhere(node.url, 'wrong audience', await make('https://issuer.test', 'other-app'), 'AUTH_INVALID')
    await refusedEverywhere(node.url, 'no issuer', await make(undefined, 'switchboard-test'), 'AUTH_INVALID')
    await refusedEverywhere(node.url, 'no audience', await make('https://issuer.test', undefined), 'AUTH_INVALID')
    const good = await make('https://issuer.test', 'switchboard-test')
    const c = await tryConnect(node.url, '/chat', { auth: { token: good } })
    assert.ok(c.connected)
    c.socket.disconnect()
    assert.equal((await httpJson(node.url, 'GET', '/api/rooms', { token: good })).status, 200)
  })
})

describe('JWT key confusion on a JWKS (RS256) node', () => {
  let node: Awaited<ReturnType<typeof startIsolatedNode>>
  let jwks: ReturnType<typeof createServer>
  let keys: Awaited<ReturnType<typeof generateKeyPair>>
  let jwk: Record<string, unknown>

  before(async () => {
    keys = await generateKeyPair('RS256', { extractable: true })
    jwk = { ...(await exportJWK(keys.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }
    jwks = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ keys: [jwk] }))
    })
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r))
    const port = (jwks.address() as AddressInfo).port
    node = await startIsolatedNode({ JWT_SECRET: '', JWT_JWKS_URL: `http://127.0.0.1:${port}/jwks.json`, AUTH_DEV_TOKENS: 'false', JWT_ISSUER: 'https://issuer.test' })
  })
  after(async () => {
    closeClients()
    await node?.close()
    jwks?.close()
  })

  it('refuses HS256 tokens signed with the public key (PEM, JWK, modulus) as the secret, and alg:none', async () => {
    const pem = await exportSPKI(keys.publicKey)
    const secrets: [string, Uint8Array][] = [
      ['PEM', new TextEncoder().encode(pem)],
      ['PEM without newline', new TextEncoder().encode(pem.trim())],
      ['JWK JSON', new TextEncoder().encode(JSON.stringify(jwk))],
      ['modulus', Buffer.from(jwk.n as string, 'base64url')],
    ]
    for (const [what, secret] of secrets) {
      const token = await new SignJWT({ roles: ['admin'] }).setProtectedHeader({ alg: 'HS256', kid: 'k1' }).setSubject('rita').setIssuer('https://issuer.test').setExpirationTime('1h').sign(secret)
      await refusedEverywhere(node.url, `HS256 signed with the ${what}`, token, 'AUTH_INVALID')
    }
    await refusedEverywhere(node.url, 'alg none', new UnsecuredJWT({}).setSubject('rita').setIssuer('https://issuer.test').setExpirationTime('1h').encode(), 'AUTH_INVALID')
    const other = await generateKeyPair('RS256')
    const foreign = await new SignJWT({}).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setSubject('rita').setIssuer('https://issuer.test').setExpirationTime('1h').sign(other.privateKey)
    await refusedEverywhere(node.url, 'RS256 by a key not in the JWKS', foreign, 'AUTH_INVALID')
    const good = await new SignJWT({ roles: ['admin'] }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setSubject('rita').setIssuer('https://issuer.test').setExpirationTime('1h').sign(keys.privateKey)
    for (const ns of NAMESPACES) {
      const c = await tryConnect(node.url, ns, { auth: { token: good } })
      assert.ok(c.connected, `${ns}: the real RS256 token passes`)
      c.socket.disconnect()
    }
  })
})
