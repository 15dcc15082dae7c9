import hdr from 'hdr-histogram-js'

/** Latency histogram in microseconds (1 µs … 120 s, 3 significant digits), mergeable across processes. */
export type Histogram = ReturnType<typeof hdr.build>

export const newHistogram = (): Histogram =>
  hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 })

export const encode = (h: Histogram): string => hdr.encodeIntoCompressedBase64(h)
export const decode = (s: string): Histogram => hdr.decodeFromCompressedBase64(s) as Histogram

/** Records a duration given in milliseconds. */
export function recordMs(h: Histogram, ms: number): void {
  h.recordValue(Math.max(1, Math.min(120_000_000, Math.round(ms * 1000))))
}

export interface LatencySummary {
  count: number
  p50: number
  p95: number
  p99: number
  max: number
  mean: number
}

/** Percentiles in milliseconds. */
export function summarize(h: Histogram): LatencySummary {
  const ms = (us: number) => Math.round(us / 10) / 100
  if (h.totalCount === 0) return { count: 0, p50: 0, p95: 0, p99: 0, max: 0, mean: 0 }
  return {
    count: h.totalCount,
    p50: ms(h.getValueAtPercentile(50)),
    p95: ms(h.getValueAtPercentile(95)),
    p99: ms(h.getValueAtPercentile(99)),
    max: ms(h.maxValue),
    mean: ms(h.mean),
  }
}

export function merge(hs: Histogram[]): Histogram {
  const out = newHistogram()
  for (const h of hs) out.add(h)
  return out
}
