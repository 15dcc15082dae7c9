import { readFileSync } from 'node:fs'

const TICKS = 100 // USER_HZ on Linux

/**
 * The fields of /proc/<pid>/stat after the command name (which may contain spaces, so they
 * start after the last ')'): [0] state, [1] ppid, … [11] utime, [12] stime, [13] cutime, [14] cstime.
 */
export function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
}

/** Σ over `pids` of `of(fields)`; a process that has exited counts 0. */
function sumOver(pids: number[], of: (f: string[]) => number): number {
  let sum = 0
  for (const pid of pids) {
    try {
      sum += of(statFields(pid))
    } catch {
      // exited
    }
  }
  return sum
}

/**
 * CPU seconds of processes and everything they ever started: their own time, their reaped
 * children's (cutime/cstime), and, listed separately, the children still running — stable while
 * backends come and go (an exited one's time is in its parent's cutime).
 */
export function treeCpuSeconds(pids: number[]): number {
  return sumOver(pids, (f) => (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / TICKS)
}

/** Resident set size in bytes, from /proc/<pid>/status. */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) * 1024 : 0
}

/** Total CPU seconds (user + system) of several processes (missing ones count 0). */
export function totalCpu(pids: number[]): number {
  return sumOver(pids, (f) => (Number(f[11]) + Number(f[12])) / TICKS)
}

/** Jiffies from /proc/stat, busy (everything but idle and iowait) and total: [0] all CPUs, then cpu0, cpu1, … */
export function machineCpuTicks(): { busy: number; total: number }[] {
  return readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .filter((line) => /^cpu\d* /.test(line))
    .map((line) => {
      const f = line.trim().split(/\s+/).slice(1, 9).map(Number)
      const total = f.reduce((a, b) => a + b, 0)
      return { busy: total - f[3] - f[4], total }
    })
}

/** Share of CPU time that was busy since `from`, in percent: [0] the whole machine (all cores), then each CPU. */
export function machineBusyPct(from: { busy: number; total: number }[]): number[] {
  return machineCpuTicks().map((now, i) => {
    const total = now.total - from[i].total
    return total > 0 ? Math.round(((now.busy - from[i].busy) / total) * 1000) / 10 : 0
  })
}
