import { readFileSync } from 'node:fs'

const TICKS = 100 // USER_HZ on Linux

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / TICKS // utime, stime
}

/**
 * CPU seconds of a process and everything it ever started: its own time, its reaped children's
 * (cutime/cstime), and that of the children still running — stable while backends come and go.
 */
export function treeCpuSeconds(pids: number[]): number {
  let sum = 0
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      sum += (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / TICKS
    } catch {
      // exited: its time is in its parent's cutime
    }
  }
  return sum
}

/** Resident set size in bytes, from /proc/<pid>/status. */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) * 1024 : 0
}

/** Total CPU seconds of several processes (missing ones count 0). */
export function totalCpu(pids: number[]): number {
  let sum = 0
  for (const pid of pids) {
    try {
      sum += cpuSeconds(pid)
    } catch {
      // exited
    }
  }
  return sum
}
