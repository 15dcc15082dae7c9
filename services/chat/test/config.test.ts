import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { gcFlags } from '../src/gc.ts'
import { CONFIG_VARIABLES, loadConfig } from '../src/config.ts'

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
    assert.throws(() => loadConfig({ ROOM_CHANNEL_LINGER_MS: '-1', JWT_SECRET: secret }), { message: 'ROOM_CHANNEL_LINGER_MS must be an integer from 0 to 600000 (got "-1")' })
    assert.equal(loadConfig({ JWT_SECRET: secret }).ROOM_CHANNEL_LINGER_MS, 5000)
    assert.equal(loadConfig({ JWT_SECRET: secret }).REDIS_ADAPTER, 'sharded')
  })

  it('says what an enum variable accepts, once, with the value it got', () => {
    const message = (env: Record<string, string>) => {
      try {
        loadConfig({ JWT_SECRET: secret, ...env })
      } catch (err) {
        return (err as Error).message
      }
      return 'accepted'
    }
    assert.equal(message({ LOG_LEVEL: 'loud' }), 'LOG_LEVEL must be one of: fatal, error, warn, info, debug, trace, silent (got "loud")')
    assert.equal(message({ REDIS_ADAPTER: 'fancy' }), 'REDIS_ADAPTER must be one of: classic, sharded (got "fancy")')
    // Every union-of-literals variable, present and future: find them by what they refuse.
    let enums = 0
    for (const name of CONFIG_VARIABLES) {
      const m = message({ [name]: '\u2603 not a value' }).split('; ')[0]
      if (!m.includes('must be one of: ')) continue
      enums++
      assert.match(m, new RegExp(`^${name} must be one of: [^;]+ \\(got "\u2603 not a value"\\)$`))
      const allowed = m.slice(m.indexOf('one of: ') + 8, m.indexOf(' (got')).split(', ')
      for (const value of allowed) assert.doesNotThrow(() => loadConfig({ JWT_SECRET: secret, [name]: value }), `${name}=${value}`)
    }
    assert.ok(enums >= 2, 'LOG_LEVEL and REDIS_ADAPTER at least')
  })

  it('every schema error names the variable and what it accepts', () => {
    const cases: [Record<string, string>, string][] = [
      [{ PORT: 'abc' }, 'PORT must be an integer from 0 to 65535 (got "abc")'],
      [{ RATE_LIMIT_MESSAGES: '0' }, 'RATE_LIMIT_MESSAGES must be an integer of at least 1 (got "0")'],
      [{ MIGRATE_ON_START: 'maybe' }, 'MIGRATE_ON_START must be true or false (got "maybe")'],
      [{ MESSAGE_PARTITIONS: '0' }, 'MESSAGE_PARTITIONS must be an integer from 1 to 1024 (got "0")'],
      [{ MESSAGE_PARTITIONS: '2000' }, 'MESSAGE_PARTITIONS must be an integer from 1 to 1024 (got "2000")'],
      [{ REDIS_PREFIX: 'a b' }, 'REDIS_PREFIX must be a string matching /^[A-Za-z0-9:_.-]{1,64}$/ (got "a b")'],
      [{ PORT: 'x', LOG_LEVEL: 'y' }, 'PORT must be an integer from 0 to 65535 (got "x"); LOG_LEVEL must be one of: fatal, error, warn, info, debug, trace, silent (got "y")'],
      [{ JWT_JWKS_URL: 'not a url', JWT_SECRET: '' }, 'JWT_JWKS_URL must be an absolute URL (got "not a url")'],
      [{ REDIS_CLUSTER_NODES: '10.0.0.5:7000,redis-1' }, 'REDIS_CLUSTER_NODES must be comma-separated host:port entries (got "redis-1")'],
      [{ REDIS_CLUSTER_NODES: 'redis-1:70000' }, 'REDIS_CLUSTER_NODES must be comma-separated host:port entries (got "redis-1:70000")'],
      [{ REDIS_CLUSTER_NODES: 'redis-1:7000', REDIS_URL: 'redis://redis:6379' }, 'REDIS_CLUSTER_NODES must be unset when REDIS_URL is set (set only one of them)'],
    ]
    for (const [env, expected] of cases) assert.throws(() => loadConfig({ JWT_SECRET: secret, ...env }), { message: expected })
    // Every variable that can be wrong at all says so by name and says what it takes.
    const dir = mkdtempSync(join(tmpdir(), 'sb-config-'))
    try {
      let refused = 0
      for (const name of CONFIG_VARIABLES.filter((n) => n !== 'DATA_DIR')) {
        try {
          loadConfig({ DATA_DIR: dir, [name]: 'z'.repeat(300) })
        } catch (err) {
          refused++
          const m = (err as Error).message
          assert.match(m, new RegExp(`^(${CONFIG_VARIABLES.join('|')}) must be \\S`), name)
          assert.ok(m.includes(name), `${name}: ${m}`)
        }
      }
      assert.ok(refused > 20, `${refused} variables refuse a 300-character word`)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('REDIS_CLUSTER_NODES: host:port entries of a Redis Cluster, instead of REDIS_URL', () => {
    const c = loadConfig({ JWT_SECRET: secret, REDIS_CLUSTER_NODES: ' redis-0:6379, 10.0.0.5:7000,[fd00::5]:7001,' })
    assert.deepEqual(c.redisClusterNodes, [
      { host: 'redis-0', port: 6379 },
      { host: '10.0.0.5', port: 7000 },
      { host: 'fd00::5', port: 7001 },
    ])
    assert.equal(c.sharedRedis, true)
    assert.equal(loadConfig({ JWT_SECRET: secret, REDIS_URL: 'redis://r:6379' }).sharedRedis, true)
    const none = loadConfig({ JWT_SECRET: secret })
    assert.deepEqual(none.redisClusterNodes, [])
    assert.equal(none.sharedRedis, false)
  })

  it('warns loudly when production runs with dev tokens', () => {
    const [warning, ...rest] = loadConfig({ NODE_ENV: 'production', JWT_SECRET: secret, AUTH_DEV_TOKENS: 'true' }).warnings
    assert.equal(rest.length, 0)
    assert.match(warning, /AUTH_DEV_TOKENS=true with NODE_ENV=production: anyone .* can mint a token for any user/)
    assert.deepEqual(loadConfig({ NODE_ENV: 'production', JWT_SECRET: secret }).warnings, [])
    assert.deepEqual(loadConfig({ JWT_SECRET: secret, AUTH_DEV_TOKENS: 'true' }).warnings, [], 'dev tokens are the dev default')
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
      assert.deepEqual(gcFlags(c.HEAP_GROWING_PERCENT), ['--heap-growing-percent=10'])
      assert.deepEqual(gcFlags(loadConfig({ DATA_DIR: dir, HEAP_GROWING_PERCENT: '0' }).HEAP_GROWING_PERCENT), [], '0: V8 decides')
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
