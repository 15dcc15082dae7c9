import { table } from './report.ts'

/** V8's `.cpuprofile` (what `node --cpu-prof` writes), the fields read here. */
export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }[]
  /** µs, on the monotonic clock `process.hrtime` reads. */
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}

export interface ProfileRow {
  name: string
  ms: number
  pct: number
}

export interface ProfileSummary {
  /** CPU time sampled in the window, idle excluded (ms, all profiles together). */
  totalMs: number
  /** Self time by package (`node_modules/<pkg>`), by our own file, or by V8/Node category. */
  byPackage: ProfileRow[]
  /** Self time by function. */
  bySelf: ProfileRow[]
  /** Inclusive time of our own functions and of the packages' entry points they call. */
  byTotal: ProfileRow[]
}

/** Where a frame's code lives: a package, one of our files, Node's internals or V8's own. */
export function packageOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)'
  const nm = url.lastIndexOf('node_modules/')
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/')
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
  }
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/')
  const src = url.indexOf('/services/')
  if (src >= 0) return url.slice(src + 1)
  const pk = url.indexOf('/packages/')
  return pk >= 0 ? url.slice(pk + 1) : url.replace(/^file:\/\//, '')
}

const label = (f: CpuProfile['nodes'][number]['callFrame']) => {
  const pkg = packageOf(f.url, f.functionName)
  return `${f.functionName || '(anonymous)'} ${pkg}${f.url ? `:${f.lineNumber + 1}` : ''}`
}

/** Self and inclusive time of the samples taken in [fromUs, toUs) (monotonic µs). */
export function summarizeProfile(profiles: CpuProfile[], fromUs: number, toUs: number): ProfileSummary {
  const self = new Map<string, number>()
  const pkgs = new Map<string, number>()
  const total = new Map<string, number>()
  let totalUs = 0
  for (const p of profiles) {
    const byId = new Map(p.nodes.map((n) => [n.id, n]))
    const parent = new Map<number, number>()
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
    let t = p.startTime
    for (let i = 0; i < p.samples.length; i++) {
      t += p.timeDeltas[i]
      // A sample stands for the time until the next one.
      const w = i + 1 < p.timeDeltas.length ? p.timeDeltas[i + 1] : 0
      if (t < fromUs || t >= toUs || w <= 0) continue
      const node = byId.get(p.samples[i])
      if (!node || node.callFrame.functionName === '(idle)') continue
      totalUs += w
      const key = label(node.callFrame)
      self.set(key, (self.get(key) ?? 0) + w)
      const pkg = packageOf(node.callFrame.url, node.callFrame.functionName)
      pkgs.set(pkg, (pkgs.get(pkg) ?? 0) + w)
      const seen = new Set<string>()
      for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
        const f = byId.get(id)!.callFrame
        if (!f.url) continue
        const k = label(f)
        if (seen.has(k)) continue
        seen.add(k)
        total.set(k, (total.get(k) ?? 0) + w)
      }
    }
  }
  const rows = (m: Map<string, number>) =>
    [...m.entries()].sort((x, y) => y[1] - x[1]).map(([name, us]) => ({ name, ms: Math.round(us / 100) / 10, pct: Math.round((us / totalUs) * 1000) / 10 }))
  return { totalMs: Math.round(totalUs / 1000), byPackage: rows(pkgs), bySelf: rows(self), byTotal: rows(total) }
}

export function formatProfile(s: ProfileSummary, top: number): string {
  const t = (title: string, r: ProfileRow[]) => `${title}\n${table(['', 'ms', '%'], r.slice(0, top).map((x) => [x.name, x.ms, x.pct]))}`
  return [t('self time by package or file', s.byPackage), t('self time by function', s.bySelf), t('inclusive time by function', s.byTotal)].join('\n\n')
}
