/** A small Map-based cache with a per-entry deadline and LRU eviction past `max` entries. */
export class TtlCache<V> {
  private readonly map = new Map<string, { value: V; until: number }>()

  constructor(private readonly max: number) {}

  get(key: string): V | undefined {
    const e = this.map.get(key)
    if (!e) return undefined
    if (e.until <= Date.now()) {
      this.map.delete(key)
      return undefined
    }
    return e.value
  }

  set(key: string, value: V, ttlMs: number): void {
    this.map.delete(key)
    this.map.set(key, { value, until: Date.now() + ttlMs })
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value!)
  }

  delete(key: string): void {
    this.map.delete(key)
  }
}
