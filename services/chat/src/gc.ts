import { setFlagsFromString } from 'node:v8'

/**
 * The V8 flags HEAP_GROWING_PERCENT asks for (D185); none for 0 (V8's own heuristics).
 * `--heap-growing-percent` is read each time V8 sizes the next old-generation limit, so setting
 * it at start-up, before the node has allocated much, governs the whole run.
 */
export function gcFlags(heapGrowingPercent: number): string[] {
  return heapGrowingPercent > 0 ? [`--heap-growing-percent=${heapGrowingPercent}`] : []
}

/** Applies `gcFlags` to this process; returns them (for the start-up log). */
export function applyGcSettings(heapGrowingPercent: number): string[] {
  const flags = gcFlags(heapGrowingPercent)
  for (const f of flags) setFlagsFromString(f)
  return flags
}
