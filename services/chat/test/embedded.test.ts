import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { ack, chatClient, closeClients, devToken, next } from './helpers.ts'

const root = fileURLToPath(new URL('../../..', import.meta.url))
const children = new Set<ChildProcess>()

/** Starts `npm start`'s command with no environment but PATH, DATA_DIR and a free port. */
async function startEmbedded(dataDir: string): Promise<{ url: string; child: ChildProcess; out: () => string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'services/chat/src/server.ts'], {
    cwd: root,
    env: { PATH: process.env.PATH, DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.add(child)
  child.on('exit', () => children.delete(child))
  let out = ''
  child.stderr!.on('data', (d) => (out += d))
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listen line within 60 s:\n${out}`)), 60_000)
    child.stdout!.on('data', (d: Buffer) => {
      out += d
      const m = /listening on (http:\/\/[^"\s]+)/.exec(out)
      if (m) {
        clearTimeout(timer)
        resolve(m[1])
      }
    })
    child.on('exit', (code) => reject(new Error(`exited ${code}:\n${out}`)))
  })
  return { url, child, out: () => out }
}

async function stop(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  child.kill('SIGTERM')
  return exited
}

describe('embedded default (PGlite, in-process cluster)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'sb-embedded-'))
  after(async () => {
    closeClients()
    for (const c of children) c.kill('SIGKILL')
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('starts with no environment, serves /healthz and the web client, keeps messages across a restart', async () => {
    let { url, child, out } = await startEmbedded(dataDir)
    // The start-up line says which V8 settings the node applied: HEAP_GROWING_PERCENT's default (D185).
    const started = JSON.parse(out().split('\n').find((l) => l.includes('listening on'))!) as { v8?: string[] }
    assert.deepEqual(started.v8, ['--heap-growing-percent=10'])
    const health = await fetch(`${url}/healthz`)
    assert.equal(health.status, 200)
    const body = await health.json()
    assert.equal(body.status, 'ok')
    assert.equal(health.headers.get('x-switchboard-node'), body.node)
    assert.equal((await fetch(`${url}/readyz`)).status, 200)
    const page = await fetch(`${url}/`)
    assert.equal(page.status, 200)
    assert.match(page.headers.get('content-type') ?? '', /text\/html/)

    const { token } = await devToken(url, 'persistent')
    let s = await chatClient(url, token)
    await ack(s, 'room:join', 'kept')
    const sent = await ack(s, 'chat:message', { roomId: 'kept', text: 'survives restarts' })
    assert.equal(sent.status, 'ok')
    s.disconnect()
    assert.equal(await stop(child), 0, 'SIGTERM exits cleanly')

    ;({ url, child } = await startEmbedded(dataDir))
    // The dev secret is kept under DATA_DIR too: the old token still works.
    s = await chatClient(url, token)
    const history = next(s, 'room:history')
    const join = await ack(s, 'room:join', 'kept')
    assert.equal(join.lastSeq, 1)
    const h = await history
    assert.deepEqual(h.messages.map((m: any) => [m.id, m.text]), [[sent.messageId, 'survives restarts']])
    const next2 = await ack(s, 'chat:message', { roomId: 'kept', text: 'and counts on' })
    assert.equal(next2.seq, 2)
    s.disconnect()
    assert.equal(await stop(child), 0)
  })
})
