import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { renderTemplate } from '../../infra/cluster.ts'
import { startPostgres, startRedis } from '../../infra/services.ts'

const root = fileURLToPath(new URL('../..', import.meta.url))
const template = readFileSync(join(root, 'nginx/switchboard.conf.template'), 'utf8')

describe('local cluster building blocks', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sb-infra-'))
  chmodSync(dir, 0o755) // Postgres runs as the postgres user when we are root
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('renders the nginx template into a config nginx accepts', () => {
    assert.throws(() => renderTemplate('{{NOPE}}', {}), /NOPE/)
    const prefix = join(dir, 'nginx')
    mkdirSync(prefix, { recursive: true })
    const conf = renderTemplate(template, {
      PREFIX: prefix,
      LISTEN: '127.0.0.1:18080',
      CLIENT_MAX_BODY_SIZE: '1m',
      REAL_IP_FROM: '127.0.0.1',
      UPSTREAM_SERVERS: '    server 127.0.0.1:13001;\n    server 127.0.0.1:13002;',
    })
    assert.doesNotMatch(conf, /\{\{/)
    const socketIo = conf.slice(conf.indexOf('location /socket.io/'), conf.indexOf('location /api/'))
    for (const header of ['Host $http_host', 'X-Forwarded-Host', 'X-Forwarded-For', 'Upgrade $http_upgrade', 'Connection $connection_upgrade']) {
      assert.ok(socketIo.includes(`proxy_set_header ${header}`), `the /socket.io/ location sets ${header} itself (no inheritance once it sets any)`)
    }
    for (const needle of ['ip_hash;', 'set_real_ip_from 127.0.0.1;', 'real_ip_header X-Forwarded-For;', 'proxy_set_header Upgrade $http_upgrade;', 'proxy_read_timeout 75s;', 'X-Forwarded-For', 'proxy_next_upstream error timeout http_502 http_503;']) {
      assert.ok(conf.includes(needle), needle)
    }
    writeFileSync(join(prefix, 'nginx.conf'), conf)
    const out = execFileSync('nginx', ['-t', '-p', prefix, '-c', join(prefix, 'nginx.conf'), '-e', join(prefix, 'error.log')], { stdio: 'pipe', encoding: 'utf8' })
    assert.equal(typeof out, 'string') // nginx -t exits non-zero (throws) on a bad config
  })

  it('starts a private Postgres from the machine binaries and a private Redis, and stops them', async () => {
    const postgres = await startPostgres(join(dir, 'pg'))
    try {
      const c = new pg.Client({ connectionString: postgres.url })
      await c.connect()
      assert.equal((await c.query('select current_database() as db')).rows[0].db, 'switchboard')
      await c.end()
    } finally {
      await postgres.stop()
    }
    assert.notEqual(postgres.proc.child.exitCode ?? postgres.proc.child.signalCode, null, 'postgres stopped')
    const redis = await startRedis(join(dir, 'redis'))
    await redis.restart(100)
    await redis.stop()
    assert.notEqual(redis.proc.child.exitCode ?? redis.proc.child.signalCode, null, 'redis stopped')
  })
})
