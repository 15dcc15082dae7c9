import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'

/** A plain-text table: header row, then rows; numbers right-aligned. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map((c) => (typeof c === 'number' ? fmt(c) : c)))]
  const widths = header.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? '').length)))
  const line = (r: (string | number)[]) =>
    r.map((c, i) => (typeof rows[0]?.[i] === 'number' ? String(c).padStart(widths[i]) : String(c).padEnd(widths[i]))).join('  ')
  return [line(cells[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n')
}

export function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n)
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US')
  if (Number.isInteger(n)) return String(n)
  return n.toFixed(Math.abs(n) < 10 ? 2 : 1)
}

export function writeJson(path: string, data: unknown): void {
  mkdirSync(dirname(path), { recursive: true })
  writeFileSync(path, JSON.stringify(data, null, 2) + '\n')
}

/** A small SVG line chart of per-second p50/p99 latency (ms) and deliveries/s. */
export function latencySvg(title: string, points: { t: number; p50: number; p99: number; deliveries: number }[]): string {
  const W = 720
  const H = 300
  const pad = 40
  const maxT = Math.max(1, ...points.map((p) => p.t))
  const maxL = Math.max(1, ...points.map((p) => p.p99))
  const x = (t: number) => pad + ((W - 2 * pad) * t) / maxT
  const y = (v: number) => H - pad - ((H - 2 * pad) * v) / maxL
  const path = (key: 'p50' | 'p99') => points.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`).join(' ')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="${pad}" y="16" font-size="13">${title.replace(/[<&]/g, '')}</text>
<line x1="${pad}" y1="${H - pad}" x2="${W - pad}" y2="${H - pad}" stroke="#999"/>
<line x1="${pad}" y1="${pad}" x2="${pad}" y2="${H - pad}" stroke="#999"/>
<text x="${pad - 4}" y="${pad}" text-anchor="end">${fmt(maxL)} ms</text>
<text x="${pad - 4}" y="${H - pad}" text-anchor="end">0</text>
<text x="${W - pad}" y="${H - pad + 14}" text-anchor="end">${maxT} s</text>
<path d="${path('p99')}" fill="none" stroke="#c0392b" stroke-width="1.5"/>
<path d="${path('p50')}" fill="none" stroke="#2e86de" stroke-width="1.5"/>
<text x="${W - pad}" y="${pad}" text-anchor="end" fill="#c0392b">p99</text>
<text x="${W - pad}" y="${pad + 14}" text-anchor="end" fill="#2e86de">p50</text>
</svg>
`
}
