import { randomBytes } from 'node:crypto'
import type { Cluster as RedisCluster, Redis } from 'ioredis'

/** A message on a room's channel, from another node (this node's own are never handed back). */
export type RoomChannelHandler = (roomId: string, payload: string) => void

/**
 * Per-room channels between nodes (SPEC §7): what a node publishes for a room reaches only the
 * nodes subscribed to that room. Subscriptions are counted: `subscribe` and `unsubscribe` come in
 * pairs, and the channel stays subscribed while any holder remains — and for a linger after the
 * last one left, so join/leave churn does not flap it (a subscribe during the linger reuses it).
 */
export interface RoomChannels {
  /** Sends `payload` to the other nodes subscribed to the room (fire and forget). */
  publish(roomId: string, payload: string): void
  /** Resolves once Redis confirmed the subscription: everything published from then on arrives. */
  subscribe(roomId: string): Promise<void>
  /** Gives up one `subscribe`; the last one ends the subscription after the linger. */
  unsubscribe(roomId: string): void
  /** Where arrivals go (every handler sees every arrival). */
  onMessage(handler: RoomChannelHandler): void
  /**
   * The id of the room's current confirmed subscription (a new one on every subscribe after an
   * unsubscribe), 0 when this node does not follow the room: what it cached about the room while
   * following it holds only as long as this id stays the same.
   */
  listening(roomId: string): number
  /** Whether the subscriber connection is up (a subscribe now is confirmed within a round trip). */
  readonly connected: boolean
  /** Channels subscribed, lingering ones included (metrics). */
  readonly size: number
}

interface Entry {
  holders: number
  confirmed: Promise<void>
  /** Set when confirmed (see `listening`). */
  id: number
  linger?: NodeJS.Timeout
}

/**
 * Waits for a subscription (`RoomChannels.subscribe`) at most `ms`: true once confirmed, false when
 * the wait ran out first (it may still be confirmed later); rejects if the subscribe failed.
 */
export async function confirmedWithin(confirmed: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([confirmed.then(() => true), new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)))])
  } finally {
    clearTimeout(timer)
  }
}

/** Sender ids are this long (base64url of 6 bytes): every payload starts with its sender's. */
const SENDER_BYTES = 8

export interface RedisRoomChannelsOptions {
  /** Channel names are `<prefix>room:{<roomId>}` (a hash tag: one Redis Cluster slot per room). */
  prefix: string
  lingerMs: number
  /** A message from another node arrived (this node's own echoes are not counted). */
  onReceived?: () => void
  /** The number of subscribed channels changed (metrics). */
  onSize?: (size: number) => void
}

/**
 * `RoomChannels` over Redis 7 sharded pub/sub: `SPUBLISH` on `pub`, `SSUBSCRIBE` on `sub`, a
 * subscriber connection of its own (see D136). Written against `Redis | Cluster`: an ioredis
 * Cluster routes both by the channel's slot. ioredis subscribes again by itself after a
 * reconnect; what was published meanwhile is lost, and the feed's reconcile on reconnect reads
 * it from Postgres.
 */
export class RedisRoomChannels implements RoomChannels {
  /** Identifies this node's publications, so its own echoes are dropped unread. */
  private readonly sender = randomBytes(6).toString('base64url')
  private readonly senderBuf = Buffer.from(this.sender)
  private readonly head: string
  private readonly entries = new Map<string, Entry>()
  private readonly handlers: RoomChannelHandler[] = []
  private lastId = 0

  constructor(
    private readonly pub: Redis | RedisCluster,
    private readonly sub: Redis | RedisCluster,
    private readonly opts: RedisRoomChannelsOptions,
  ) {
    this.head = `${opts.prefix}room:{`
    sub.on('smessageBuffer', (channel: Buffer, message: Buffer) => this.arrived(channel, message))
  }

  channel(roomId: string): string {
    return `${this.head}${roomId}}`
  }

  get connected(): boolean {
    return this.sub.status === 'ready'
  }

  get size(): number {
    return this.entries.size
  }

  publish(roomId: string, payload: string): void {
    this.pub.spublish(this.channel(roomId), this.sender + payload).catch(() => {
      // Redis unreachable: the commit is in Postgres; receivers catch up from there (reconcile).
    })
  }

  subscribe(roomId: string): Promise<void> {
    const held = this.entries.get(roomId)
    if (held) {
      held.holders++
      clearTimeout(held.linger)
      held.linger = undefined
      return held.confirmed
    }
    const entry: Entry = { holders: 1, id: 0, confirmed: Promise.resolve() }
    entry.confirmed = this.sub.ssubscribe(this.channel(roomId)).then(
      () => {
        if (this.entries.get(roomId) === entry) entry.id = ++this.lastId
      },
      (err: Error) => {
        // Only when the connection is closed for good (shutdown): nothing to retry.
        if (this.entries.get(roomId) === entry) this.forget(roomId)
        throw err
      },
    )
    this.entries.set(roomId, entry)
    this.opts.onSize?.(this.entries.size)
    return entry.confirmed
  }

  unsubscribe(roomId: string): void {
    const entry = this.entries.get(roomId)
    if (!entry || --entry.holders > 0) return
    if (this.opts.lingerMs <= 0) return this.end(roomId, entry)
    entry.linger = setTimeout(() => this.end(roomId, entry), this.opts.lingerMs)
    entry.linger.unref()
  }

  onMessage(handler: RoomChannelHandler): void {
    this.handlers.push(handler)
  }

  listening(roomId: string): number {
    return this.entries.get(roomId)?.id ?? 0
  }

  /** Ends every subscription at once (the connections close next). */
  close(): void {
    for (const [roomId, entry] of this.entries) {
      clearTimeout(entry.linger)
      entry.holders = 0
      this.end(roomId, entry)
    }
  }

  private end(roomId: string, entry: Entry): void {
    if (this.entries.get(roomId) !== entry || entry.holders > 0) return
    this.forget(roomId)
    // Commands on one connection run in order: a subscribe right after this one is not undone by it.
    this.sub.sunsubscribe(this.channel(roomId)).catch(() => {
      // The connection is gone: so is the subscription (ioredis does not restore it).
    })
  }

  private forget(roomId: string): void {
    this.entries.delete(roomId)
    this.opts.onSize?.(this.entries.size)
  }

  private arrived(channel: Buffer, message: Buffer): void {
    const name = channel.toString()
    if (!name.startsWith(this.head) || !name.endsWith('}')) return // another user of the connection
    if (message.length >= SENDER_BYTES && this.senderBuf.equals(message.subarray(0, SENDER_BYTES))) return // our own
    this.opts.onReceived?.()
    const roomId = name.slice(this.head.length, -1)
    if (!this.entries.has(roomId)) return // arrived after the unsubscribe was sent
    const payload = message.toString('utf8', SENDER_BYTES)
    for (const handler of this.handlers) handler(roomId, payload)
  }
}
