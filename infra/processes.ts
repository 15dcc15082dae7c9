import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { accessSync, closeSync, constants, createWriteStream, existsSync, openSync, readSync, statSync } from 'node:fs'
import net from 'node:net'
import { delimiter, isAbsolute, join } from 'node:path'

/** A child process we started; `stop()` signals it by pid and waits for it. */
export interface Proc {
  name: string
  child: ChildProcess
  exited: Promise<number | null>
  /** Where its output goes, and how long the file was before it started (its own lines follow). */
  logFile: string
  logOffset: number
  /** Stops it with `signal` (default: the signal it was started with as `stopSignal`, else SIGTERM), SIGKILL after `timeoutMs`. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>
}

/** Every child still running, in start order. */
const running = new Map<ChildProcess, Proc>()
let refusing = false
// Last resort: never leave children behind when the launcher or a test process exits.
process.once('exit', () => {
  for (const c of running.keys()) if (c.exitCode === null && c.pid) c.kill('SIGKILL')
})

/**
 * Stops every child this process started and still runs, newest first, each with its own stop
 * signal, and refuses to start new ones from then on: what a launcher does on SIGINT, SIGTERM or
 * SIGHUP while it is still starting things.
 */
export async function stopAll(timeoutMs = 10_000): Promise<void> {
  refusing = true
  await Promise.all([...running.values()].reverse().map((p) => p.stop(undefined, timeoutMs)))
}

/** Spawns `cmd` with output appended to `logFile`; the returned handle stops exactly this pid. */
export function start(
  name: string,
  cmd: string,
  args: string[],
  opts: SpawnOptions & { logFile: string; onLine?: (line: string) => void; stopSignal?: NodeJS.Signals },
): Proc {
  if (refusing) throw new Error(`not starting ${name}: shutting down`)
  const logOffset = existsSync(opts.logFile) ? statSync(opts.logFile).size : 0
  const log = createWriteStream(opts.logFile, { flags: 'a' })
  log.on('error', () => undefined) // a log we cannot write must not end the launcher
  const stopSignal = opts.stopSignal ?? 'SIGTERM'
  // Own process group: a terminal's Ctrl-C reaches only the launcher, which stops children in order.
  const child = spawn(cmd, args, { ...opts, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  // The log ends once the pipes are drained (after 'exit', output may still be arriving).
  child.once('close', () => log.end())
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
      resolve(code ?? (signal ? 128 : null))
    })
    child.once('error', () => {
      running.delete(child)
      log.end()
      resolve(127)
    })
  })
  const proc: Proc = {
    name,
    child,
    exited,
    logFile: opts.logFile,
    logOffset,
    async stop(signal: NodeJS.Signals = stopSignal, timeoutMs = 30_000) {
      if (child.exitCode !== null || child.signalCode !== null || !running.has(child)) return exited
      child.kill(signal)
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
      const code = await exited
      clearTimeout(timer)
      return code
    },
  }
  running.set(child, proc)
  return proc
}

/**
 * Why a process ended, from what it wrote since it started: the last line that reads like an
 * error (Postgres `FATAL:`, nginx `[emerg]`, a pino error line, …), else its last line.
 */
export function exitCause(proc: Pick<Proc, 'logFile' | 'logOffset'>): string | undefined {
  let text = ''
  try {
    const size = statSync(proc.logFile).size
    const from = Math.max(proc.logOffset, size - 16_384)
    const buf = Buffer.alloc(size - from)
    const fd = openSync(proc.logFile, 'r')
    try {
      readSync(fd, buf, 0, buf.length, from)
    } finally {
      closeSync(fd)
    }
    text = buf.toString('utf8')
  } catch {
    return undefined
  }
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean).map(readable)
  const cause = lines.findLast((l) => /\b(FATAL|PANIC|ERROR|emerg|alert|crit|error|Error|Failed|failed)\b/.test(l)) ?? lines.at(-1)
  return cause && (cause.length > 300 ? `${cause.slice(0, 300)}…` : cause)
}

/** A pino JSON line as its message (and error message); other lines as they are. */
function readable(line: string): string {
  if (!line.startsWith('{')) return line
  try {
    const j = JSON.parse(line) as { msg?: string; err?: { message?: string } | string; level?: number }
    const err = typeof j.err === 'string' ? j.err : j.err?.message
    if (j.msg) return err ? `${j.msg}: ${err}` : j.msg
  } catch {
    // not JSON after all
  }
  return line
}

/** The one line a launcher prints when `proc` ended while we waited for it. */
export function exitedError(what: string, proc: Pick<Proc, 'logFile' | 'logOffset' | 'child'>): Error {
  const code = proc.child.exitCode ?? proc.child.signalCode
  const cause = exitCause(proc)
  return new Error(`${what} exited${code === null ? '' : ` (${code})`}${cause ? `: ${cause}` : ''} (log: ${proc.logFile})`)
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

/**
 * Polls `check` until it resolves true (or throws after `ms`). Given the process (or its `exited`
 * promise), stops as soon as it ends; with the process, the error names the cause from its log.
 */
export async function waitFor(what: string, check: () => Promise<boolean>, ms = 30_000, exited?: Promise<unknown> | Proc): Promise<void> {
  const until = Date.now() + ms
  let dead = false
  const proc = exited && 'child' in exited ? exited : undefined
  const ended = proc ? proc.exited : (exited as Promise<unknown> | undefined)
  void ended?.then(() => (dead = true))
  while (Date.now() < until) {
    if (dead) {
      // Let the last output reach the log file first.
      await new Promise((r) => setTimeout(r, 100))
      throw proc ? exitedError(what, proc) : new Error(`${what}: the process exited`)
    }
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
