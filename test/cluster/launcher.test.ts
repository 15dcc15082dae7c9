import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { createTestDatabase } from '../../services/chat/test/helpers.ts'

/**
 * `npm run cluster` owns its children: SIGHUP (terminal closed) and SIGTERM stop everything it
 * started, as Ctrl-C does, and a lock an earlier crash left is cleaned up or named in one line.
 * Linux only (/proc tells which processes are the launcher's).
 */
const root = fileURLToPath(new URL('../..', import.meta.url))

/** A process as /proc shows it: pid and start time (so a reused pid is not mistaken for it). */
interface Seen {
  pid: number
  start: string
  comm: string
}

function stat(pid: number): { ppid: number; start: string; state: string; comm: string } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const close = text.lastIndexOf(')')
    const comm = text.slice(text.indexOf('(') + 1, close)
    const fields = text.slice(close + 2).split(' ')
    return { state: fields[0], ppid: Number(fields[1]), start: fields[19], comm }
  } catch {
    return undefined
  }
}

/** Every process descending from `pid` right now. */
function descendants(pid: number): Seen[] {
  const children = new Map<number, number[]>()
  const info = new Map<number, Seen>()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const s = stat(Number(name))
    if (!s) continue
    info.set(Number(name), { pid: Number(name), start: s.start, comm: s.comm })
    children.set(s.ppid, [...(children.get(s.ppid) ?? []), Number(name)])
  }
  const out: Seen[] = []
  const todo = [...(children.get(pid) ?? [])]
  while (todo.length) {
    const p = todo.pop()!
    out.push(info.get(p)!)
    todo.push(...(children.get(p) ?? []))
  }
  return out
}

/** Still running (a zombie waiting to be reaped has ended). */
const alive = (p: Seen) => {
  const s = stat(p.pid)
  return !!s && s.start === p.start && s.state !== 'Z'
}

interface Launcher {
  child: ChildProcess
  out: () => string
  err: () => string
  exited: Promise<number | null>
}

const launched: Launcher[] = []
const seenTrees: Seen[][] = []

function launch(dir: string, extra: { args?: string[]; env?: Record<string, string> } = {}): Launcher {
  const child = spawn(process.execPath, ['--import', 'tsx', 'infra/cluster.ts', '--dir', dir, '--nodes', '1', '--port', '0', ...(extra.args ?? [])], {
    cwd: root,
    // No DATABASE_URL / REDIS_URL: it starts Postgres, Redis, nginx and a node of its own.
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...extra.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (err += d))
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  const l = { child, out: () => out, err: () => err, exited }
  launched.push(l)
  return l
}

async function until(what: string, fn: () => boolean, ms: number, l?: Launcher): Promise<void> {
  const end = Date.now() + ms
  let ended = false
  void l?.exited.then(() => (ended = true))
  while (Date.now() < end) {
    if (fn()) return
    if (ended) throw new Error(`${what}: the launcher exited\n${l!.out()}\n${l!.err()}`)
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`${what}: not within ${ms} ms\n${l?.out() ?? ''}\n${l?.err() ?? ''}`)
}

/** Waits for the banner; remembers what the launcher started, so cleanup finds it whatever happens next. */
const up = async (l: Launcher) => {
  await until('cluster up', () => l.out().includes('Switchboard cluster is up.'), 180_000, l)
  seenTrees.push(descendants(l.child.pid!))
}

/** Signals the launcher and checks that it exits and that every process it had started is gone. */
async function stopsEverything(l: Launcher, signal: NodeJS.Signals, expectedPrograms = ['postgres', 'redis-server', 'nginx', 'node']): Promise<void> {
  const tree = descendants(l.child.pid!)
  seenTrees.push(tree)
  const names = new Set(tree.map((p) => p.comm))
  for (const expected of expectedPrograms) assert.ok(names.has(expected), `the launcher started ${expected} (saw ${[...names].join(', ')})`)
  l.child.kill(signal)
  const code = await Promise.race([l.exited, new Promise((r) => setTimeout(() => r('timeout'), 60_000))])
  assert.equal(code, 0, `the launcher exits cleanly on ${signal}\n${l.out()}\n${l.err()}`)
  await until('children gone', () => !tree.some(alive), 5000)
  assert.deepEqual(tree.filter(alive), [])
}

describe('the launcher owns its children', { skip: process.platform !== 'linux' && 'needs /proc' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'sb-launcher-'))
  chmodSync(dir, 0o755) // Postgres runs as the postgres user when we are root
  const others: ChildProcess[] = []
  after(() => {
    // Whatever a failed test left: only processes this file started (or saw its launchers start).
    for (const l of launched) {
      if (l.child.exitCode !== null || l.child.signalCode !== null) continue
      seenTrees.push(descendants(l.child.pid!))
      l.child.kill('SIGKILL')
    }
    for (const tree of seenTrees) for (const p of tree) if (alive(p)) process.kill(p.pid, 'SIGKILL')
    for (const c of others) if (c.exitCode === null) c.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })

  it('SIGHUP stops Postgres, Redis, nginx and the nodes; meanwhile a second launcher on the dir names the running Postgres in one line', async () => {
    const a = launch(dir)
    await up(a)
    const postmaster = descendants(a.child.pid!).find((p) => p.comm === 'postgres' && stat(p.pid)?.ppid === a.child.pid)
    assert.ok(postmaster, 'Postgres runs under the launcher')

    const b = launch(dir)
    const code = await Promise.race([b.exited, new Promise((r) => setTimeout(() => r('timeout'), 60_000))])
    assert.equal(code, 1)
    assert.equal(b.err(), `Postgres (pid ${postmaster.pid}) from an earlier launch is still running on ${join(dir, 'postgres', 'pgdata')}: stop it (kill ${postmaster.pid}) and start again\n`)
    assert.doesNotMatch(b.out() + b.err(), /process exited|\n\s+at /)

    await stopsEverything(a, 'SIGHUP')
    assert.equal(existsSync(join(dir, 'postgres', 'pgdata', 'postmaster.pid')), false, 'Postgres shut down cleanly')
  })

  it('a postmaster.pid whose pid now belongs to another program is removed, the launcher starts; SIGTERM stops everything', async () => {
    // What a container restart leaves: the old postmaster's pid is some other live process now.
    const other = spawn('sleep', ['300'], { stdio: 'ignore' })
    others.push(other)
    const pidFile = join(dir, 'postgres', 'pgdata', 'postmaster.pid')
    writeFileSync(pidFile, `${other.pid}\n${join(dir, 'postgres', 'pgdata')}\n1700000000\n5432\n${join(dir, 'postgres')}\n127.0.0.1\n  1234567   7654321\nready   \n`)
    const c = launch(dir)
    await up(c)
    assert.match(c.out(), /removed a stale postmaster\.pid \(Postgres pid \d+ is not running\)/)
    await stopsEverything(c, 'SIGTERM')
    assert.equal(other.exitCode, null, 'the unrelated process was left alone')
  })

  it('--redis-cluster 3: prints its masters and replicas; a second launcher names a running Redis node; a stale redis.pid is removed; SIGHUP and SIGTERM stop every redis-server', async () => {
    // The shared test Postgres (a database of this test), so the Redis Cluster is what a second launcher meets first.
    const database = await createTestDatabase()
    const rdir = join(dir, 'rc')
    const args = ['--redis-cluster', '3']
    const env = { DATABASE_URL: database.url }
    try {
      const a = launch(rdir, { args, env })
      await up(a)
      assert.equal((a.out().match(/^ {4}master {3}127\.0\.0\.1:\d+ {2}slots \d+-\d+$/gm) ?? []).length, 3, a.out())
      assert.equal((a.out().match(/^ {4}replica {2}127\.0\.0\.1:\d+ {2}of 127\.0\.0\.1:\d+$/gm) ?? []).length, 3, a.out())
      assert.equal(descendants(a.child.pid!).filter((p) => p.comm === 'redis-server').length, 6)

      const b = launch(rdir, { args, env })
      const code = await Promise.race([b.exited, new Promise((r) => setTimeout(() => r('timeout'), 60_000))])
      assert.equal(code, 1)
      assert.match(b.err(), /^Redis \(pid \d+\) from an earlier launch is still running on 127\.0\.0\.1:\d+: stop it \(kill \d+\) and start again\n$/)
      const named = Number(/pid (\d+)/.exec(b.err())![1])
      assert.ok(descendants(a.child.pid!).some((p) => p.pid === named && p.comm === 'redis-server'), 'it names one of the running Redis nodes')
      await stopsEverything(a, 'SIGHUP', ['redis-server', 'nginx', 'node'])

      // What a container restart leaves: a node folder whose redis.pid names some other live process.
      const other = spawn('sleep', ['300'], { stdio: 'ignore' })
      others.push(other)
      const folder = readdirSync(join(rdir, 'redis-cluster')).find((f) => f.startsWith('node-'))!
      writeFileSync(join(rdir, 'redis-cluster', folder, 'redis.pid'), `${other.pid}\n`)
      const c = launch(rdir, { args, env })
      await up(c)
      assert.match(c.out(), /removed a stale redis\.pid \(Redis pid \d+ is not running\)/)
      await stopsEverything(c, 'SIGTERM', ['redis-server', 'nginx', 'node'])
      assert.equal(other.exitCode, null, 'the unrelated process was left alone')
    } finally {
      await database.drop()
    }
  })
})
