/**
 * Attack suite, Origin (SPEC §3, OWASP CSWSH): a page on another origin must not open a socket
 * with the user's credentials, over WebSocket or long-polling, and a forged X-Forwarded-Host from
 * a client that is not a trusted proxy must not make a foreign origin look like our own.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { agentFrom, devToken, httpJson, tryConnect, useIsolatedNode } from './helpers.ts'

const ALLOWED = 'https://app.example'

describe('Origin validation on every Engine.IO handshake', () => {
  // TRUSTED_PROXIES names an address no test client uses: every client here is a direct one.
  const node = useIsolatedNode({ CORS_ORIGINS: ALLOWED, TRUSTED_PROXIES: '192.0.2.10' })

  /** 'connected' or 'refused', over the given transport, with the given request headers. */
  const attempt = async (transport: 'websocket' | 'polling', headers: Record<string, string>, localAddress?: string) => {
    const { token } = await devToken(node.url, 'origin-user')
    const r = await tryConnect(node.url, '/chat', {
      auth: { token },
      transports: [transport],
      extraHeaders: headers,
      ...(localAddress ? { localAddress, agent: agentFrom(localAddress) } : {}),
    } as never)
    if (r.connected) r.socket.disconnect()
    return r.connected ? 'connected' : 'refused'
  }

  /** A raw polling handshake: status, whether a session was opened, and the CORS header. */
  const pollingHandshake = async (headers: Record<string, string>) => {
    const res = await fetch(`${node.url}/socket.io/?EIO=4&transport=polling`, { headers })
    const body = await res.text()
    return { status: res.status, opened: body.includes('"sid"'), acao: res.headers.get('access-control-allow-origin') }
  }

  const foreign = ['https://evil.example', 'null', 'https://app.example.evil.example', 'http://app.example', 'https://app.example:8443', 'https://evil.example/https://app.example']

  it('refuses foreign and look-alike origins on WebSocket handshakes; same origin and the configured one pass', async () => {
    for (const origin of foreign) assert.equal(await attempt('websocket', { origin }), 'refused', `websocket from ${origin}`)
    assert.equal(await attempt('websocket', { origin: ALLOWED }), 'connected')
    assert.equal(await attempt('websocket', { origin: node.url }), 'connected', 'same origin')
    assert.equal(await attempt('websocket', {}), 'connected', 'no Origin: not a browser page')
  })

  it('refuses foreign origins on long-polling handshakes, without a CORS grant', async () => {
    for (const origin of foreign) {
      assert.equal(await attempt('polling', { origin }), 'refused', `polling from ${origin}`)
      const h = await pollingHandshake({ origin })
      assert.ok(h.status >= 400 && h.status < 500, `polling handshake from ${origin}: ${h.status}`)
      assert.equal(h.opened, false, `no session for ${origin}`)
      assert.ok(h.acao !== origin && h.acao !== '*', `no CORS grant for ${origin}: ${h.acao}`)
    }
    assert.equal(await attempt('polling', { origin: ALLOWED }), 'connected')
    const ok = await pollingHandshake({ origin: ALLOWED })
    assert.equal(ok.status, 200)
    assert.equal(ok.acao, ALLOWED)
  })

  it('a forged X-Forwarded-Host from a client that is not a trusted proxy does not make a foreign origin pass', async () => {
    const forged = { origin: 'https://evil.example', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https', forwarded: 'host=evil.example;proto=https' }
    assert.equal(await attempt('websocket', forged), 'refused', 'websocket')
    assert.equal(await attempt('polling', forged), 'refused', 'polling')
    // From another loopback address too (not the node's own address).
    assert.equal(await attempt('websocket', forged, '127.0.0.2'), 'refused', 'websocket from 127.0.0.2')
    const h = await pollingHandshake(forged)
    assert.equal(h.opened, false, 'no polling session')
  })

  it('the HTTP API grants no CORS to a foreign origin', async () => {
    const { token } = await devToken(node.url, 'cors-user')
    for (const origin of foreign) {
      const res = await httpJson(node.url, 'GET', '/api/rooms', { token, headers: { origin } })
      const acao = res.headers.get('access-control-allow-origin')
      assert.ok(acao !== origin && acao !== '*', `GET /api/rooms from ${origin}: ${acao}`)
    }
  })
})
