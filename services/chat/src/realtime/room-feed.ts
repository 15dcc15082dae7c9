import type { Message } from '../domain/types.ts'
import type { Logger } from '../logger.ts'
import type { ChatNamespace, ChatSocket } from './events.ts'
import { repeatedRooms, withWritesHeld } from './write-hold.ts'

/** Where the feed reads what it did not see live. */
export interface FeedSource {
  /** The room's last committed seq. */
  lastSeq(roomId: string): Promise<number>
  /** Last committed seqs of several rooms (absent rooms are left out). */
  lastSeqs(roomIds: string[]): Promise<Map<string, number>>
  /** afterSeq < seq <= upToSeq, oldest first. */
  range(roomId: string, afterSeq: number, upToSeq: number, limit: number): Promise<Message[]>
  /** The newest `limit` messages with seq <= upToSeq, oldest first. */
  latest(roomId: string, upToSeq: number, limit: number): Promise<Message[]>
}

/** At most this many messages are read to catch a room's feed up with a socket that is ahead of it. */
const CATCH_UP_MAX = 1000

interface RoomState {
  /** The next seq to deliver to this node's sockets; NaN until the room's head is known. */
  next: number
  ready: Promise<void>
  /** Arrivals while the head was being read. */
  early: Message[]
  /** Arrivals ahead of `next`, waiting for the gap to fill. */
  pending: Map<number, Message>
  /** The last delivered messages, ascending: joins that raced with live traffic read their tail here. */
  ring: Message[]
  /** Joins in progress: the state must outlive an empty Socket.IO room meanwhile. */
  holders: number
  gapTimer?: NodeJS.Timeout
}

export interface FeedOptions {
  /** Publish to other nodes (false on the embedded single node). */
  shared: boolean
  /** How long an out-of-order message waits for its predecessors before they are read from the database. */
  gapWaitMs: number
  ringSize: number
  /** How often rooms are checked against the database for messages that never arrived (0 = never). */
  reconcileMs: number
  /** Called for every change to any room, on whichever node it happened (cache invalidation). */
  onRoomChanged?: (roomId: string) => void
  /** Messages read from the database because pub/sub did not bring them (metrics). */
  onRecovered?: (count: number) => void
}

export interface Subscription {
  messages: Message[]
  hasMore: boolean
  lastSeq: number
  /** Replays what arrived since, then joins the room (one tick). */
  join(): void
  /** Gives up without joining. */
  cancel(): void
}

/**
 * Delivers each room's committed messages to this node's sockets in seq order, exactly once.
 *
 * Every node receives every committed message (its own directly, others' through the adapter)
 * and keeps, per room with local sockets, the next seq it owes them. Out-of-order arrivals wait
 * for their predecessors, which are read from Postgres if they do not come by (a lost pub/sub
 * message cannot leave a hole). A socket joins a room only in the same tick that its history
 * is completed up to the last delivered seq, so history and live stream neither overlap nor
 * leave a gap (SPEC §5.2, §5.4).
 */
export class RoomFeed {
  private readonly rooms = new Map<string, RoomState>()
  /** Sockets between subscribe() and join(), per room, with what was delivered meanwhile. */
  private readonly pending = new Map<string, Map<ChatSocket, Message[]>>()
  private outbox: Message[] = []
  private readonly reconcileTimer?: NodeJS.Timeout

  constructor(
    private readonly nsp: ChatNamespace,
    private readonly source: FeedSource,
    private readonly log: Logger,
    private readonly opts: FeedOptions,
  ) {
    nsp.on('feed:messages', (messages: Message[]) => {
      for (const m of messages) opts.onRoomChanged?.(m.roomId)
      this.receiveAll(messages)
    })
    nsp.on('feed:changed', (roomId: string) => opts.onRoomChanged?.(roomId))
    nsp.adapter.on('delete-room', (room: string) => {
      const st = this.rooms.get(room)
      if (st && st.holders === 0) this.drop(room, st)
    })
    if (opts.reconcileMs > 0) {
      this.reconcileTimer = setInterval(() => void this.reconcile(), opts.reconcileMs)
      this.reconcileTimer.unref()
    }
  }

  close(): void {
    clearInterval(this.reconcileTimer)
    for (const [roomId, st] of this.rooms) this.drop(roomId, st)
  }

  /**
   * Compares every room this node delivers with its last committed seq and reads what never
   * arrived (a pub/sub message lost while a Redis connection was down, with nothing after it
   * to reveal the gap). Runs periodically and whenever the adapter reconnects.
   */
  async reconcile(): Promise<void> {
    const tracked = [...this.rooms.entries()].filter(([, st]) => !Number.isNaN(st.next))
    if (tracked.length === 0) return
    try {
      const heads = await this.source.lastSeqs(tracked.map(([id]) => id))
      for (const [roomId, st] of tracked) {
        const head = heads.get(roomId)
        if (head === undefined || head < st.next || this.rooms.get(roomId) !== st) continue
        const { from, missing } = await this.deliverFromStore(roomId, st, head)
        if (missing.length > 0) this.log.warn({ roomId, from, to: head }, 'feed reconciled messages that never arrived')
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'feed reconcile failed')
    }
  }

  /**
   * A message this node committed: send it to the other nodes and deliver it locally. Both
   * happen on the next tick, for everything committed in this one: the batch's acks go out
   * first (one small write each), then one publish for the other nodes, then the local fan-out —
   * so no sender's ack waits behind a room's worth of deliveries.
   */
  publish(m: Message): void {
    this.opts.onRoomChanged?.(m.roomId) // this node's history cache: stale from the ack on
    if (this.outbox.length === 0) process.nextTick(() => this.flushOutbox())
    this.outbox.push(m)
  }

  /** Something other than a new message changed in a room (edit, delete, reaction): tell every node. */
  changed(roomId: string): void {
    this.opts.onRoomChanged?.(roomId)
    if (this.opts.shared) this.nsp.serverSideEmit('feed:changed', roomId)
  }

  /** Rooms this node is delivering (for metrics and tests). */
  get trackedRooms(): number {
    return this.rooms.size
  }

  /**
   * Prepares `socket` to follow the room: returns what it has to see first — everything after
   * `afterSeq` (the newest `limit` of it, with hasMore, when there is more), or the latest
   * `limit` messages — and `join()`. From the moment this resolves, live messages of the room
   * are buffered for the socket; `join()` replays them and joins the room in one tick. So the
   * caller delivers the history first (an event, or an ack), then calls `join()`, and the
   * socket sees every message once, in seq order. Call `cancel()` instead if it never joins.
   */
  async subscribe(socket: ChatSocket, roomId: string, afterSeq: number | undefined, limit: number): Promise<Subscription> {
    // Already in the room (a repeated join, a retried sync): step out first, at once, so the
    // answer to this request also comes before any live message that follows it.
    if (socket.rooms.has(roomId)) void socket.leave(roomId)
    const st = await this.track(roomId)
    let handedOver = false
    try {
      // The socket has seen more of the room than this node has delivered: it comes from a node
      // whose last messages have not reached this one (still in flight, or lost when it died).
      // Catch the feed up from the database first; otherwise they would reach the socket again
      // as live messages once they arrive or a gap fill reads them.
      if (afterSeq !== undefined && afterSeq >= st.next) await this.deliverFromStore(roomId, st, Math.min(afterSeq, st.next - 1 + CATCH_UP_MAX))
      let covered = st.next - 1
      let messages: Message[]
      let hasMore = false
      if (afterSeq !== undefined && covered - afterSeq <= limit) {
        messages = await this.source.range(roomId, afterSeq, covered, limit)
      } else {
        messages = await this.source.latest(roomId, covered, limit)
        hasMore = messages.length > 0 && messages[0].seq > (afterSeq ?? 0) + 1
      }
      for (;;) {
        // Live messages delivered while we read: take them from the ring, else from the database.
        const head = st.next - 1
        if (head > covered) {
          const tail = st.ring.filter((m) => m.seq > covered)
          if (tail.length === 0 || tail[0].seq !== covered + 1) {
            messages = messages.concat(await this.source.range(roomId, covered, head, head - covered))
            covered = head
            continue
          }
          messages = messages.concat(tail)
          covered = head
        }
        // No await between the head check and starting the buffer: nothing can slip in between.
        const buffer: Message[] = []
        let waiting = this.pending.get(roomId)
        if (!waiting) this.pending.set(roomId, (waiting = new Map()))
        waiting.set(socket, buffer)
        handedOver = true // the room state now stays alive until join() or cancel()
        let done = false
        const finish = (join: boolean) => {
          if (done) return
          done = true
          waiting.delete(socket)
          if (waiting.size === 0 && this.pending.get(roomId) === waiting) this.pending.delete(roomId)
          st.holders--
          if (join && socket.connected) {
            for (const m of buffer) socket.emit('chat:message', m)
            void socket.join(roomId)
          }
        }
        return { messages, hasMore, lastSeq: covered, join: () => finish(true), cancel: () => finish(false) }
      }
    } finally {
      if (!handedOver) st.holders--
    }
  }

  private async track(roomId: string): Promise<RoomState> {
    let st = this.rooms.get(roomId)
    if (!st) {
      const state: RoomState = { next: NaN, ready: Promise.resolve(), early: [], pending: new Map(), ring: [], holders: 0 }
      state.ready = this.source.lastSeq(roomId).then(
        (last) => {
          state.next = last + 1
          const early = state.early.sort((a, b) => a.seq - b.seq)
          state.early = []
          for (const m of early) this.accept(roomId, state, m)
        },
        (err) => {
          if (this.rooms.get(roomId) === state) this.rooms.delete(roomId)
          throw err
        },
      )
      this.rooms.set(roomId, (st = state))
    }
    st.holders++
    try {
      await st.ready
    } catch (err) {
      st.holders--
      throw err
    }
    return st
  }

  /**
   * Reads from the database what this node has not delivered of the room, up to `upTo`, and
   * delivers it to the room's current members (gap fill, reconcile, catch-up). Returns where the
   * read started and what it found.
   */
  private async deliverFromStore(roomId: string, st: RoomState, upTo: number): Promise<{ from: number; missing: Message[] }> {
    const missing = await this.source.range(roomId, st.next - 1, upTo, upTo - st.next + 1)
    const from = st.next
    if (missing.length > 0) this.opts.onRecovered?.(missing.length)
    for (const m of missing) this.accept(roomId, st, m)
    return { from, missing }
  }

  /** A committed message (its room's cache already invalidated): deliver it if this node follows the room. */
  private receive(m: Message): void {
    const st = this.rooms.get(m.roomId)
    if (!st) return // no local socket in this room
    if (Number.isNaN(st.next)) st.early.push(m)
    else this.accept(m.roomId, st, m)
  }

  private accept(roomId: string, st: RoomState, m: Message): void {
    if (m.seq < st.next) return // already delivered
    if (m.seq > st.next) {
      st.pending.set(m.seq, m)
      st.gapTimer ??= setTimeout(() => void this.fillGap(roomId, st), this.opts.gapWaitMs)
      return
    }
    this.deliver(st, m)
    let next: Message | undefined
    while ((next = st.pending.get(st.next))) {
      st.pending.delete(next.seq)
      this.deliver(st, next)
    }
    if (st.pending.size === 0 && st.gapTimer) {
      clearTimeout(st.gapTimer)
      st.gapTimer = undefined
    }
  }

  private deliver(st: RoomState, m: Message): void {
    st.next = m.seq + 1
    st.ring.push(m)
    if (st.ring.length > this.opts.ringSize) st.ring.splice(0, st.ring.length - this.opts.ringSize)
    this.nsp.local.to(m.roomId).emit('chat:message', m)
    const waiting = this.pending.get(m.roomId)
    if (waiting) for (const buffer of waiting.values()) buffer.push(m)
  }

  /** Predecessors of a pending message did not arrive in time: read them from the database. */
  private async fillGap(roomId: string, st: RoomState): Promise<void> {
    st.gapTimer = undefined
    if (this.rooms.get(roomId) !== st || st.pending.size === 0) return
    const first = Math.min(...st.pending.keys())
    try {
      const { from, missing } = await this.deliverFromStore(roomId, st, first - 1)
      this.log.info({ roomId, from, to: first - 1, found: missing.length }, 'feed gap filled from the database')
      if (missing.length === 0 && st.next < first) {
        this.log.error({ roomId, from: st.next, to: first - 1 }, 'feed gap not in the database; skipping it')
        const m = st.pending.get(first)!
        st.pending.delete(first)
        st.next = first
        this.accept(roomId, st, m)
      }
    } catch (err) {
      this.log.warn({ err, roomId }, 'feed gap fill failed; retrying')
    }
    if (st.pending.size > 0) st.gapTimer ??= setTimeout(() => void this.fillGap(roomId, st), this.opts.gapWaitMs)
  }

  private drop(roomId: string, st: RoomState): void {
    if (st.gapTimer) clearTimeout(st.gapTimer)
    this.rooms.delete(roomId)
  }

  private flushOutbox(): void {
    const batch = this.outbox
    this.outbox = []
    if (this.opts.shared) this.nsp.serverSideEmit('feed:messages', batch)
    this.receiveAll(batch)
  }

  /** A batch of committed messages: each member's frames go out in one write (see `withWritesHeld`). */
  private receiveAll(batch: Message[]): void {
    withWritesHeld(this.nsp, repeatedRooms(batch), () => {
      for (const m of batch) this.receive(m)
    })
  }
}
