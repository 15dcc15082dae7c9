/** Least-squares line y = intercept + slope·x; NaN slope with fewer than two distinct x. */
export function linearFit(points: { x: number; y: number }[]): { slope: number; intercept: number; n: number } {
  const n = points.length
  if (n < 2) return { slope: NaN, intercept: NaN, n }
  const mx = points.reduce((s, p) => s + p.x, 0) / n
  const my = points.reduce((s, p) => s + p.y, 0) / n
  let sxx = 0
  let sxy = 0
  for (const p of points) {
    sxx += (p.x - mx) ** 2
    sxy += (p.x - mx) * (p.y - my)
  }
  if (sxx === 0) return { slope: NaN, intercept: NaN, n }
  const slope = sxy / sxx
  return { slope, intercept: my - slope * mx, n }
}

/**
 * The lowest point of each consecutive window of `windowX` (by `t`): on a garbage-collected heap
 * the troughs after collections approximate the live size, the peaks only the allocation rate.
 * A window with no point is skipped.
 */
export function windowMinima<P extends { t: number; y: number }>(points: P[], from: number, windowLen: number): P[] {
  const out: P[] = []
  let current: P | undefined
  let index = -1
  for (const p of [...points].sort((a, b) => a.t - b.t)) {
    if (p.t < from) continue
    const w = Math.floor((p.t - from) / windowLen)
    if (w !== index) {
      if (current) out.push(current)
      current = p
      index = w
    } else if (p.y < current!.y) current = p
  }
  if (current) out.push(current)
  return out
}
