/**
 * Just enough of the Prometheus text format to read a node's own view of a run: the buckets of
 * one histogram (summed over nodes, as a difference between two scrapes) and single gauges.
 */

/** `GET <node>/metrics`. */
export async function scrape(nodeUrl: string): Promise<string> {
  const res = await fetch(`${nodeUrl}/metrics`, { signal: AbortSignal.timeout(5000) })
  if (!res.ok) throw new Error(`${nodeUrl}/metrics: HTTP ${res.status}`)
  return res.text()
}

const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/
const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

/** Samples of `name` whose labels include `match`: their labels and values. */
export function samples(text: string, name: string, match: Record<string, string> = {}): { labels: Record<string, string>; value: number }[] {
  const out: { labels: Record<string, string>; value: number }[] = []
  for (const line of text.split('\n')) {
    const m = sample.exec(line)
    if (!m || m[1] !== name) continue
    const labels: Record<string, string> = {}
    for (const [, k, v] of (m[2] ?? '').matchAll(label)) labels[k] = v
    if (Object.entries(match).every(([k, v]) => labels[k] === v)) out.push({ labels, value: Number(m[3]) })
  }
  return out
}

/** Cumulative bucket counts of histogram `name` by upper bound, summed over `texts` (one per node). */
export function buckets(texts: string[], name: string, match: Record<string, string> = {}): Map<number, number> {
  const sum = new Map<number, number>()
  for (const text of texts) {
    for (const s of samples(text, `${name}_bucket`, match)) {
      const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le)
      sum.set(le, (sum.get(le) ?? 0) + s.value)
    }
  }
  return sum
}

/** `after − before`, bucket by bucket: what was observed between two scrapes. */
export function bucketDelta(after: Map<number, number>, before: Map<number, number>): Map<number, number> {
  return new Map([...after].map(([le, n]) => [le, n - (before.get(le) ?? 0)]))
}

/**
 * The q-quantile of cumulative buckets, interpolated linearly inside the bucket it falls in
 * (what PromQL's `histogram_quantile` does). NaN with no observations; the highest finite bound
 * when it falls in the +Inf bucket.
 */
export function quantile(cumulative: Map<number, number>, q: number): number {
  const bs = [...cumulative].sort((a, b) => a[0] - b[0])
  const total = bs.at(-1)?.[1] ?? 0
  if (total <= 0) return NaN
  const rank = q * total
  let prevLe = 0
  let prevCount = 0
  for (const [le, count] of bs) {
    if (count >= rank) {
      if (le === Infinity) return prevLe
      return prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(1e-12, count - prevCount)
    }
    prevLe = le
    prevCount = count
  }
  return prevLe
}
