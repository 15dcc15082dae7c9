import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { cpus } from 'node:os'
import { withDescendants } from './descendants.ts'

/**
 * CPU sets for `npm run bench -- --pin`: the servers (nodes, nginx, Redis, Postgres) on the first
 * half of the CPUs, the load generator (and the bench itself) on the rest. Shared, the generator
 * competes with the servers for every core; pinned, each side gets its own.
 */
export function splitCpus(count = cpus().length): { server: string; generator: string } {
  if (count < 2) throw new Error('--pin needs at least 2 CPUs')
  const half = Math.floor(count / 2)
  const range = (from: number, to: number) => (to - from === 1 ? String(from) : `${from}-${to - 1}`)
  return { server: range(0, half), generator: range(half, count) }
}

/** The CPUs a process may run on (its affinity list, as `taskset` prints it). */
export function affinity(pid: number): string {
  return execFileSync('taskset', ['-c', '-p', String(pid)], { encoding: 'utf8' }).trim().split(': ').pop()!
}

/**
 * Pins every thread of `pid` and of every process below it to `list` (`taskset -a -p -c`).
 * Processes and threads started later inherit it from their parent (Postgres backends from the
 * postmaster). A process that exits meanwhile is skipped.
 */
export function pinTree(pid: number, list: string, opts: { exceptRoot?: boolean } = {}): number[] {
  return withDescendants(pid).filter((p) => !(opts.exceptRoot && p === pid) && pin(p, list))
}

/** Pins every thread of one process to `list`; false if it is gone. */
export function pin(pid: number, list: string): boolean {
  if (!existsSync(`/proc/${pid}`)) return false // `taskset -a` on a missing pid succeeds, doing nothing
  try {
    execFileSync('taskset', ['-a', '-p', '-c', list, String(pid)], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}
