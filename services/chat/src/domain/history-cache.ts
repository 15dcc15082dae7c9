import { LRUCache } from 'lru-cache'
import type { Message } from './types.ts'

interface Page {
  roomId: string
  /** The subscription it was read under (see `heard`). */
  heard: number
  messages: Message[]
}

/**
 * Recently read history pages per room, shared by joins and `GET /api/rooms/:id/messages`.
 * Every change to a room (a new message, an edit, a delete, a reaction — on any node) drops the
 * room's pages at once and moves its generation on, so a page read across the change is not
 * stored; a short TTL bounds staleness should an invalidation from another node be lost.
 *
 * Bounded by the messages it holds (`maxMessages`) as well as by pages: a page is up to a
 * history limit of messages, and stale pages used to stay until evicted (the soak's heap growth,
 * D119).
 * Both maps are `lru-cache`s; a room's generation that the LRU forgets is replaced by `floor`,
 * the highest generation ever forgotten, so it can only move forward (a page read before a
 * forgotten change can never match again).
 */
export class HistoryCache {
  /** Generations come from one clock: a room's is the clock at its last change. */
  private clock = 0
  private floor = 0
  private readonly generations: LRUCache<string, number>
  private readonly pages: LRUCache<string, Page>
  /** Page keys per room, so a change drops them together. */
  private readonly byRoom = new Map<string, Set<string>>()

  constructor(maxMessages = 50_000, ttlMs = 5000, maxRooms = 20_000, maxPages = 5000) {
    this.generations = new LRUCache<string, number>({
      max: maxRooms,
      dispose: (generation) => {
        if (generation > this.floor) this.floor = generation
      },
    })
    this.pages = new LRUCache<string, Page>({
      // Pages too: an empty room's page weighs 1 message but costs its key and index entry.
      max: maxPages,
      maxSize: maxMessages,
      sizeCalculation: (p) => Math.max(1, p.messages.length),
      ttl: ttlMs,
      dispose: (p, key) => {
        const keys = this.byRoom.get(p.roomId)
        if (keys?.delete(key) && keys.size === 0) this.byRoom.delete(p.roomId)
      },
    })
  }

  /**
   * Set when this node hears a room's changes only while it follows the room (per-room channels,
   * SPEC §7): the id of its current subscription to the room, 0 when it does not follow it. A page
   * is kept only when read under a subscription, and served only under that same one (D140).
   */
  heard?: (roomId: string) => number

  /**
   * Set with `heard`: follows the room's changes while a page of it is read from the database
   * (resolves once they are heard; undefined when that cannot be had soon), and returns the
   * release. The subscription outlives the release by ROOM_CHANNEL_LINGER_MS, so the pages read
   * under it are served for that long (D183).
   */
  hold?: (roomId: string) => Promise<(() => void) | undefined>

  /** Called for every page asked for: served from the cache or not (metrics). */
  onLookup?: (hit: boolean) => void

  /** What a page read from now on is stamped with (pass it to `set`). */
  generation(roomId: string): number {
    return this.generations.get(roomId) ?? this.floor
  }

  /** The subscription a read starting now happens under (see `heard`); 1 when every change is heard. */
  listening(roomId: string): number {
    return this.heard ? this.heard(roomId) : 1
  }

  invalidate(roomId: string): void {
    this.generations.set(roomId, ++this.clock)
    const keys = this.byRoom.get(roomId)
    if (keys) for (const key of [...keys]) this.pages.delete(key)
  }

  get(roomId: string, page: string): Message[] | undefined {
    const key = `${roomId}\u0000${page}`
    const p = this.pages.get(key)
    if (!p) return undefined
    if (p.heard !== this.listening(roomId)) {
      this.pages.delete(key)
      return undefined
    }
    return p.messages
  }

  /** Stores a page read while the room was at `generation` (a page read across a change is dropped). */
  set(roomId: string, page: string, generation: number, messages: Message[], heard = this.listening(roomId)): void {
    if (generation !== this.generation(roomId) || heard === 0 || heard !== this.listening(roomId)) return
    const key = `${roomId}\u0000${page}`
    this.pages.set(key, { roomId, heard, messages })
    // Not stored when larger than the whole cache (lru-cache refuses it).
    if (!this.pages.has(key)) return
    let keys = this.byRoom.get(roomId)
    if (!keys) this.byRoom.set(roomId, (keys = new Set()))
    keys.add(key)
  }

  /** Pages held (metrics and tests). */
  get size(): number {
    return this.pages.size
  }
}
