import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import net from 'node:net'

/** A child process we started; `stop()` signals it by pid and waits for it. */
export interface Proc {
  name: string
  child: ChildProcess
  exited: Promise<number | null>
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>
}

const running = new Set<ChildProcess>()
// Last resort: never leave children behind when the launcher or a test process exits.
process.once('exit', () => {
  for (const c of running) if (c.exitCode === null && c.pid) c.kill('SIGKILL')
})

/** Spawns `cmd` with output appended to `logFile`; the returned handle stops exactly this pid. */
export function start(name: string, cmd: string, args: string[], opts: SpawnOptions & { logFile: string; onLine?: (line: string) => void }): Proc {
  const log = createWriteStream(opts.logFile, { flags: 'a' })
  // Own process group: a terminal's Ctrl-C reaches only the launcher, which stops children in order.
  const child = spawn(cmd, args, { ...opts, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  running.add(child)
  for (const stream of [child.stdout, child.stderr]) {
    let rest = ''
    stream?.on('data', (d: Buffer) => {
      log.write(d)
      if (!opts.onLine) return
      const lines = (rest + d.toString()).split('\n')
      rest = lines.pop() ?? ''
      for (const l of lines) opts.onLine(l)
    })
  }
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child)
      log.end()
      resolve(code ?? (signal ? 128 : null))
    })
    child.once('error', () => {
      running.delete(child)
      resolve(127)
    })
  })
  return {
    name,
    child,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 30_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited
      child.kill(signal)
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
      const code = await exited
      clearTimeout(timer)
      return code
    },
  }
}

/** A TCP port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as net.AddressInfo).port
  await new Promise((r) => server.close(r))
  return port
}

/** Polls `check` until it resolves true (or throws after `ms`). */
export async function waitFor(what: string, check: () => Promise<boolean>, ms = 30_000, exited?: Promise<unknown>): Promise<void> {
  const until = Date.now() + ms
  let dead = false
  void exited?.then(() => (dead = true))
  while (Date.now() < until) {
    if (dead) throw new Error(`${what}: the process exited`)
    if (await check().catch(() => false)) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`${what}: not ready within ${ms} ms`)
}

/** True when an HTTP GET of `url` answers `status`. */
export async function answers(url: string, status = 200): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) })
  await res.arrayBuffer()
  return res.status === status
}
