// Summarises a V8 .cpuprofile (node --cpu-prof) by self time: top functions, then by package.
// Usage: node loadtest/tools/cpuprofile-top.mjs <file.cpuprofile> [rows]
import { readFileSync } from 'node:fs'

const p = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const rowsWanted = Number(process.argv[3] ?? 30)
const byId = new Map(p.nodes.map((n) => [n.id, n]))
const selfTime = new Map()
let total = 0
p.samples.forEach((id, i) => {
  const dt = p.timeDeltas[i] ?? 0
  selfTime.set(id, (selfTime.get(id) ?? 0) + dt)
  total += dt
})
const pct = (t) => ((t / total) * 100).toFixed(1).padStart(5) + '%'
const fn = new Map()
const pkg = new Map()
for (const [id, t] of selfTime) {
  const { functionName, url, lineNumber } = byId.get(id).callFrame
  const k = `${functionName || '(anonymous)'} ${url.split('/').slice(-3).join('/')}:${lineNumber}`
  fn.set(k, (fn.get(k) ?? 0) + t)
  const m = /node_modules\/((@[^/]+\/)?[^/]+)/.exec(url)
  const where = m ? m[1] : url.includes('/services/') ? 'app:' + url.split('/services/')[1].split('/').slice(0, 4).join('/') : url || functionName
  pkg.set(where, (pkg.get(where) ?? 0) + t)
}
for (const [k, t] of [...fn].sort((a, b) => b[1] - a[1]).slice(0, rowsWanted)) console.log(`${pct(t)}  ${k}`)
console.log('--- by package')
for (const [k, t] of [...pkg].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`${pct(t)}  ${k}`)
