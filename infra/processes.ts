import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { accessSync, constants, createWriteStream, statSync } from 'node:fs'
import net from 'node:net'
import { delimiter, isAbsolute, join } from 'node:path'

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

/** Where `cmd` would be found on `path` (an absolute path is checked as it is), or undefined. */
export function findExecutable(cmd: string, path = process.env.PATH ?? ''): string | undefined {
  const candidates = isAbsolute(cmd) ? [cmd] : path.split(delimiter).filter(Boolean).map((dir) => join(dir, cmd))
  for (const file of candidates) {
    try {
      accessSync(file, constants.X_OK)
      if (statSync(file).isFile()) return file
    } catch {
      // not here
    }
  }
  return undefined
}

/** A program the launcher needs and the Debian package that has it. */
export interface Requirement {
  binary: string
  /** Where to look (default: `binary` on PATH). */
  path?: string
  aptPackage: string
  /** What to do instead of installing it, if anything (e.g. "or set DATABASE_URL"). */
  instead?: string
}

/** Thrown before anything starts when a needed program is missing: one line, the command that fixes it. */
export class MissingProgramError extends Error {
  constructor(readonly missing: readonly Requirement[]) {
    const instead = missing.filter((r) => r.instead).map((r) => r.instead)
    super(
      `${missing.map((r) => r.binary).join(', ')} not found: apt-get install -y ${missing.map((r) => r.aptPackage).join(' ')}` +
        (instead.length ? ` (${instead.join('; ')})` : ''),
    )
    this.name = 'MissingProgramError'
  }
}

/** Throws MissingProgramError naming every requirement that is not installed. */
export function requirePrograms(requirements: readonly Requirement[], path = process.env.PATH ?? ''): void {
  const missing = requirements.filter((r) => !findExecutable(r.path ?? r.binary, path))
  if (missing.length) throw new MissingProgramError(missing)
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
