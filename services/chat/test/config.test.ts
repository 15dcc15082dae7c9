import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { loadConfig } from '../src/config.ts'

describe('config: one schema, validated at boot', () => {
  const secret = 'x'.repeat(32)

  it('names the bad variable', () => {
    assert.throws(() => loadConfig({ PORT: 'abc', JWT_SECRET: secret }), /PORT/)
    assert.throws(() => loadConfig({ RATE_LIMIT_MESSAGES: '0', JWT_SECRET: secret }), /RATE_LIMIT_MESSAGES/)
    assert.throws(() => loadConfig({ REDIS_ADAPTER: 'fancy', JWT_SECRET: secret }), /REDIS_ADAPTER/)
    assert.throws(() => loadConfig({ LOG_LEVEL: 'loud', JWT_SECRET: secret }), /LOG_LEVEL/)
    assert.throws(() => loadConfig({ JWT_SECRET: 'short' }), /JWT_SECRET/)
    assert.throws(() => loadConfig({ JWT_SECRET: secret, JWT_JWKS_URL: 'https://x/jwks' }), /only one/)
    assert.throws(() => loadConfig({ AUTH_DEV_TOKENS: 'false' }), /JWT_SECRET or JWT_JWKS_URL/)
    for (const bad of ['everyone', '10.0.0.0/33', '::1/129', '10.0.0.1/8/8', '10.0.0/8']) {
      assert.throws(() => loadConfig({ TRUSTED_PROXIES: bad, JWT_SECRET: secret }), /TRUSTED_PROXIES/, bad)
    }
    assert.throws(() => loadConfig({ MAX_CONNECTIONS_PER_USER: '0', JWT_SECRET: secret }), /MAX_CONNECTIONS_PER_USER/)
  })

  it('NODE_ENV=production only picks safer defaults', () => {
    const c = loadConfig({ NODE_ENV: 'production', JWT_SECRET: secret })
    assert.equal(c.AUTH_DEV_TOKENS, false)
    assert.equal(c.HOST, '0.0.0.0')
    assert.equal(loadConfig({ NODE_ENV: 'production', JWT_SECRET: secret, AUTH_DEV_TOKENS: 'true' }).AUTH_DEV_TOKENS, true)
  })

  it('has embedded defaults and a frozen result', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-config-'))
    try {
      const c = loadConfig({ DATA_DIR: dir })
      assert.equal(c.PORT, 3000)
      assert.equal(c.embeddedDatabase, true)
      assert.equal(c.AUTH_DEV_TOKENS, true)
      assert.equal(c.RATE_LIMIT_MESSAGES, 10)
      assert.equal(c.RATE_LIMIT_WINDOW_SECONDS, 10)
      assert.equal(c.MAX_CONNECTIONS_PER_USER, 20)
      assert.equal(c.MAX_CONNECTIONS_PER_IP, 500)
      assert.deepEqual(c.trustedProxies, ['127.0.0.1', '::1'])
      assert.deepEqual(loadConfig({ DATA_DIR: dir, TRUSTED_PROXIES: '10.0.0.0/8, fd00::/8,' }).trustedProxies, ['10.0.0.0/8', 'fd00::/8'])
      // The generated dev secret is kept and reused.
      assert.equal(readFileSync(join(dir, 'dev-jwt-secret'), 'utf8'), c.JWT_SECRET)
      assert.equal(loadConfig({ DATA_DIR: dir }).JWT_SECRET, c.JWT_SECRET)
      assert.ok(Object.isFrozen(c))
      const withList = loadConfig({ DATA_DIR: dir, CORS_ORIGINS: 'https://a.example, https://b.example', RATE_LIMIT_MESSAGES: '50' })
      assert.deepEqual(withList.corsOrigins, ['https://a.example', 'https://b.example'])
      assert.equal(withList.RATE_LIMIT_MESSAGES, 50)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
