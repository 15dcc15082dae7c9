import type { Message } from './types.ts'

interface Entry {
  generation: number
  /** The subscription it was read under (see `heard`). */
  heard: number
  at: number
  messages: Message[]
}

/**
 * Recently read history pages per room, shared by joins and `GET /api/rooms/:id/messages`.
 * Every change to a room (a new message, an edit, a delete, a reaction — on any node) bumps the
 * room's generation, which retires its pages; a short TTL bounds staleness should an
 * invalidation from another node be lost. LRU-bounded.
 */
export class HistoryCache {
  private readonly generations = new Map<string, number>()
  private readonly pages = new Map<string, Entry>()

  constructor(
    private readonly maxPages = 5000,
    private readonly ttlMs = 5000,
  ) {}

  /**
   * Set when this node hears a room's changes only while it follows the room (per-room channels,
   * SPEC §7): the id of its current subscription to the room, 0 when it does not follow it. A page
   * is kept only when read under a subscription, and served only under that same one (D140).
   */
  heard?: (roomId: string) => number

  /** What a page read from now on is stamped with (pass it to `set`). */
  generation(roomId: string): number {
    return this.generations.get(roomId) ?? 0
  }

  /** The subscription a read starting now happens under (see `heard`); 1 when every change is heard. */
  listening(roomId: string): number {
    return this.heard ? this.heard(roomId) : 1
  }

  invalidate(roomId: string): void {
    this.generations.set(roomId, this.generation(roomId) + 1)
  }

  get(roomId: string, page: string): Message[] | undefined {
    const key = `${roomId}\u0000${page}`
    const e = this.pages.get(key)
    if (!e) return undefined
    if (e.generation !== this.generation(roomId) || e.heard !== this.listening(roomId) || Date.now() - e.at > this.ttlMs) {
      this.pages.delete(key)
      return undefined
    }
    // Refresh LRU position.
    this.pages.delete(key)
    this.pages.set(key, e)
    return e.messages
  }

  /** Stores a page read while the room was at `generation` (a page read across a change is dropped). */
  set(roomId: string, page: string, generation: number, messages: Message[], heard = this.listening(roomId)): void {
    if (generation !== this.generation(roomId) || heard === 0 || heard !== this.listening(roomId)) return
    this.pages.set(`${roomId}\u0000${page}`, { generation, heard, at: Date.now(), messages })
    if (this.pages.size > this.maxPages) this.pages.delete(this.pages.keys().next().value!)
    if (this.generations.size > this.maxPages * 4) this.generations.clear() // bounded; a cleared room just starts over
  }
}
