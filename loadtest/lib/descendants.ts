import { readdirSync } from 'node:fs'
import { statFields } from './proc.ts'

/** `pid` and every process below it (nginx workers, Postgres backends), from /proc. */
export function withDescendants(pid: number): number[] {
  const parent = new Map<number, number>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      parent.set(Number(entry), Number(statFields(Number(entry))[1]))
    } catch {
      // gone
    }
  }
  const out = [pid]
  for (let i = 0; i < out.length; i++) for (const [child, p] of parent) if (p === out[i]) out.push(child)
  return out
}
