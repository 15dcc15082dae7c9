import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../../..', import.meta.url))
const children = new Set<ChildProcess>()

interface Run {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  exited: Promise<number | null>
}

/** `node --import tsx <script>` as npm start / npm run migrate run it, with only this environment. */
function run(script: string, env: Record<string, string>): Run {
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    cwd: root,
    env: { PATH: process.env.PATH, HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.add(child)
  let out = ''
  let err = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (err += d))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => (children.delete(child), resolve(code))))
  return { child, stdout: () => out, stderr: () => err, exited }
}

/** Resolves with the node's URL once it logs its listen line; rejects if it exits first. */
function listening(r: Run): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listen line within 60 s:\n${r.stdout()}${r.stderr()}`)), 60_000)
    const check = () => {
      const m = /listening on (http:\/\/[^"\s]+)/.exec(r.stdout())
      if (m) (clearTimeout(timer), resolve(m[1]))
    }
    r.child.stdout!.on('data', check)
    void r.exited.then((code) => (clearTimeout(timer), reject(new Error(`exited ${code}:\n${r.stdout()}${r.stderr()}`))))
  })
}

/** The exit code, or a failure with the output if the process is still running after `ms`. */
function exitCode(r: Run, ms = 60_000): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still running after ${ms} ms:\n${r.stdout()}${r.stderr()}`)), ms)
  })
  return Promise.race([r.exited, late]).finally(() => clearTimeout(timer))
}

const stopped = async (r: Run) => {
  if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGTERM')
  return exitCode(r)
}

describe('one DATA_DIR, one process (the embedded store is locked)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'sb-lock-'))
  after(() => {
    for (const c of children) if (c.exitCode === null && c.pid) c.kill('SIGKILL')
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('a second node and npm run migrate refuse with one line while the first node keeps serving', { timeout: 180_000 }, async () => {
    // The first node also runs production with dev tokens on: it must say loudly what that means.
    const first = run('services/chat/src/server.ts', {
      DATA_DIR: dataDir,
      PORT: '0',
      NODE_ENV: 'production',
      AUTH_DEV_TOKENS: 'true',
      JWT_SECRET: 'a-production-secret-of-32-chars-or-more',
    })
    const url = await listening(first)
    const warning = first.stdout().split('\n').find((l) => l.includes('AUTH_DEV_TOKENS=true with NODE_ENV=production'))
    assert.ok(warning, first.stdout())
    assert.equal(JSON.parse(warning).level, 40, 'a pino warn line')
    assert.match(JSON.parse(warning).msg, /anyone .* can mint a token for any user/)

    const second = run('services/chat/src/server.ts', { DATA_DIR: dataDir, PORT: '0' })
    const code = await exitCode(second)
    assert.notEqual(code, 0)
    const lines = second.stderr().trim().split('\n')
    assert.equal(lines.length, 1, second.stderr())
    assert.match(lines[0], /^switchboard: DATA_DIR .* is in use: another process holds its embedded database/)
    assert.ok(lines[0].includes(dataDir), 'names the directory')
    assert.doesNotMatch(second.stderr() + second.stdout(), /RuntimeError|Aborted|\n\s+at /)

    const migrate = run('services/chat/src/store/migrate.ts', { DATA_DIR: dataDir, LOG_LEVEL: 'info' })
    assert.notEqual(await exitCode(migrate), 0)
    assert.match(migrate.stdout(), /migrating the embedded store \(PGlite\) under /, 'says what it would do')
    const refusal = migrate.stderr().trim().split('\n')
    assert.equal(refusal.length, 1, migrate.stderr())
    assert.match(refusal[0], /^switchboard migrate: DATA_DIR .* is in use: another process holds its embedded database/)

    // The first node never noticed.
    const health = await fetch(`${url}/healthz`)
    assert.equal(health.status, 200)
    assert.equal((await fetch(`${url}/readyz`)).status, 200)
    const minted = await fetch(`${url}/api/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'still-here' }) })
    assert.equal(minted.status, 200)

    // Once it is gone (the lock goes with it), migrate proceeds and takes the lock itself.
    assert.equal(await stopped(first), 0)
    const again = run('services/chat/src/store/migrate.ts', { DATA_DIR: dataDir, LOG_LEVEL: 'info' })
    assert.equal(await exitCode(again), 0, again.stderr())
    assert.match(again.stdout(), /database is at the latest migration/)
  })
})
