import { confirmedWithin, type RoomChannels } from '../cluster/room-channels.ts'
import type { Message, RoomChange, RoomHead } from '../domain/types.ts'
import { AppError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import { batchRoom, type ChatNamespace, type ChatSocket } from './events.ts'
import { encodeFeed, recoveredChanges, roomOf, sendEvent, versionOf, type FeedEvent } from './feed-events.ts'
import { repeatedRooms, withWritesHeld } from './write-hold.ts'

/** Where the feed reads what it did not see live. */
export interface FeedSource {
  /** The room's last committed seq and version ({0, 0} for a room that does not exist). */
  head(roomId: string): Promise<RoomHead>
  /** Heads of several rooms (absent rooms are left out). */
  heads(roomIds: string[]): Promise<Map<string, RoomHead>>
  /** afterSeq < seq <= upToSeq, oldest first. */
  range(roomId: string, afterSeq: number, upToSeq: number, limit: number): Promise<Message[]>
  /** The newest `limit` messages with seq <= upToSeq, oldest first. */
  latest(roomId: string, upToSeq: number, limit: number): Promise<Message[]>
  /** Messages with version > afterVersion (and seq <= maxSeq), current state, oldest change first. */
  changedSince(roomId: string, afterVersion: number, limit: number, maxSeq?: number): Promise<Message[]>
  /** Read marks of the room, for the `room:history` a resync sends (D105); `{}` without it. */
  reads?(roomId: string): Promise<Record<string, number>>
}

/** What a room's feed had delivered at one moment: the next seq and the last version. */
interface Delivered {
  next: number
  version: number
}

const delivered = (st: { next: number; version: number }): Delivered => ({ next: st.next, version: st.version })

/** Where a regression of the database's head was noticed (the metric's `where` label, D105). */
export type RegressionSite = 'live' | 'reconcile' | 'catch-up' | 'join'

/** Rows per read when the feed catches a room up from the database. */
const CATCH_UP_PAGE = 1000

interface RoomState {
  /** The next seq to deliver to this node's sockets; NaN until the room's head is known. */
  next: number
  /** The last version delivered: every change up to it reached this node's sockets (D91). */
  version: number
  ready: Promise<void>
  /** Arrivals while the head was being read. */
  early: FeedEvent[]
  /** Arrivals ahead of `version + 1`, by version, waiting for the gap to fill. */
  pending: Map<number, FeedEvent>
  /** The last delivered messages, ascending: joins that raced with live traffic read their tail here. */
  ring: Message[]
  /** The last delivered changes, by version: joins replay those their answer does not reflect. */
  changes: RoomChange[]
  /** The ring of changes holds every change above this version. */
  changesFrom: number
  /** Joins in progress: the state must outlive an empty Socket.IO room meanwhile. */
  holders: number
  gapTimer?: NodeJS.Timeout
  /** A head check is in flight (a stale event raised doubt, D105). */
  verifying?: boolean
  /** This state holds a subscription to the room's channel (given up when it is dropped). */
  subscribed?: boolean
  /** Delivered to the feed, not yet written to the room's sockets: they go out together (`batchMs`). */
  outgoing: FeedEvent[]
  flushTimer?: NodeJS.Timeout | NodeJS.Immediate
  /** When the room's sockets were last written to (performance.now(); batchMs). */
  flushedAt: number
}

export interface FeedOptions {
  /** Publish to other nodes (false on the embedded single node). */
  shared: boolean
  /**
   * Where the room's committed events travel between nodes (SPEC §7); required when shared. The
   * feed subscribes to a room's channel while it holds the room's state and publishes what this
   * node commits there; arrivals come in through `receiveFromPeers`.
   */
  channels?: RoomChannels
  /** How long a new room waits for its channel subscription to be confirmed before reading its head anyway (Redis slow or down). */
  subscribeWaitMs?: number
  /** How long an out-of-order event waits for its predecessors before they are read from the database. */
  gapWaitMs: number
  ringSize: number
  /** How often rooms are checked against the database for events that never arrived (0 = never). */
  reconcileMs: number
  /** Called for every change to any room, on whichever node it happened (cache invalidation). */
  onRoomChanged?: (roomId: string) => void
  /** Messages read from the database because pub/sub did not bring them (metrics). */
  onRecovered?: (count: number) => void
  /** The number of rooms this node holds feed state for, whenever it changes (metrics). */
  onTracked?: (rooms: number) => void
  /** The database's head went below what this node delivered (a failover lost commits, D105). */
  onRegression?: (where: RegressionSite) => void
  /** How many messages the `room:history` of a resync holds (default 50). */
  resyncLimit?: number
  /**
   * A room's sockets are written to at most once per this many ms (0: every event at once). The
   * first event after a quiet spell goes out at once (in the same turn's batch); those that come
   * sooner gather until the interval is over, then go out in one write per socket, several
   * messages as one `chat:messages` frame to the sockets that take it (D182).
   */
  batchMs?: number
  /** A `chat:messages` frame went to a room's sockets on this node (metrics). */
  onMessagesFrame?: () => void
}

export interface Subscription {
  messages: Message[]
  /** With a version: messages up to the socket's seq that changed after it, current state. */
  updated?: Message[]
  hasMore: boolean
  lastSeq: number
  /** Replays what arrived since, then joins the room (one tick). */
  join(): void
  /** Gives up without joining. */
  cancel(): void
}

/**
 * Delivers each room's committed messages and changes to this node's sockets exactly once, in
 * version order (so messages in seq order, SPEC §5.2).
 *
 * A node follows the rooms it has local sockets in: it subscribes to each one's channel (SPEC §7)
 * before it reads the room's head, so every commit after that head reaches it (its own directly,
 * others' on the channel), and keeps the last version it delivered. Out-of-order
 * arrivals wait for their predecessors; a gap that does not fill, or a room whose version in
 * Postgres is ahead (reconcile, adapter reconnect), is caught up from Postgres: what changed since
 * the last delivered version, in its current state (D91, D92). A socket joins a room only in the
 * same tick that its history is completed up to what was delivered, so history and live stream
 * neither overlap nor leave a gap (SPEC §5.2, §5.4).
 */
export class RoomFeed {
  private readonly rooms = new Map<string, RoomState>()
  /** Sockets between subscribe() and join(), per room, with what was delivered meanwhile. */
  private readonly joining = new Map<string, Map<ChatSocket, FeedEvent[]>>()
  private outbox: FeedEvent[] = []
  private readonly reconcileTimer?: NodeJS.Timeout
  private closed = false

  constructor(
    private readonly nsp: ChatNamespace,
    private readonly source: FeedSource,
    private readonly log: Logger,
    private readonly opts: FeedOptions,
  ) {
    if (opts.shared && !opts.channels) throw new Error('a shared feed needs room channels')
    nsp.adapter.on('delete-room', (room: string) => {
      const st = this.rooms.get(room)
      if (st) this.release(room, st)
    })
    // A socket that takes `chat:messages` is also in the room's batch room, wherever it joins or
    // leaves the room (and on disconnect): the adapter announces every join and leave (D182).
    // Not the room Socket.IO names after the socket itself (app.ts takes every socket out of it).
    nsp.adapter.on('join-room', (room: string, id: string) => {
      if (!room.startsWith('@') && room !== id && nsp.sockets.get(id)?.data.batches) void nsp.adapter.addAll(id, new Set([batchRoom(room)]))
    })
    nsp.adapter.on('leave-room', (room: string, id: string) => {
      if (!room.startsWith('@') && nsp.adapter.rooms.get(batchRoom(room))?.has(id)) void nsp.adapter.del(id, batchRoom(room))
    })
    if (opts.reconcileMs > 0) {
      this.reconcileTimer = setInterval(() => void this.reconcile(), opts.reconcileMs)
      this.reconcileTimer.unref()
    }
  }

  close(): void {
    this.closed = true
    clearInterval(this.reconcileTimer)
    for (const [roomId, st] of this.rooms) {
      this.flush(roomId) // what was gathered still reaches the sockets still here
      this.drop(roomId, st)
    }
  }

  /**
   * Writes what the room's feed has gathered now: whatever else is about to reach the room's
   * sockets (a read receipt) then comes after the messages it may refer to.
   */
  flush(roomId: string): void {
    const st = this.rooms.get(roomId)
    if (!st) return
    this.cancelFlush(st)
    if (st.outgoing.length === 0) return
    st.flushedAt = performance.now()
    const events = st.outgoing
    st.outgoing = []
    this.write(roomId, events)
  }

  /**
   * Compares every room this node delivers with its version in the database and catches up what
   * never arrived (pub/sub messages lost while a Redis connection was down, with nothing after
   * them to reveal the gap). Runs periodically and whenever the adapter reconnects.
   */
  async reconcile(): Promise<void> {
    const tracked = [...this.rooms.entries()].filter(([, st]) => !Number.isNaN(st.next))
    if (tracked.length === 0) return
    // What each room had delivered before its head was read: catching one room up takes awaits,
    // and meanwhile live events move the others past the heads read here (D161).
    const before = new Map(tracked.map(([id, st]) => [id, delivered(st)]))
    try {
      const heads = await this.source.heads(tracked.map(([id]) => id))
      for (const [roomId, st] of tracked) {
        const head = heads.get(roomId)
        if (head === undefined || this.rooms.get(roomId) !== st) continue
        if (this.regressedBelow(roomId, st, head, 'reconcile', before.get(roomId)!)) continue
        if (head.version <= st.version) continue
        const from = st.version
        const found = await this.catchUp(roomId, st)
        if (found > 0) this.log.warn({ roomId, from, to: st.version, found }, 'feed reconciled changes that never arrived')
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
    this.enqueue({ kind: 'message', message: m })
  }

  /** An edit, delete or reaction this node committed: ordered with the room's messages by its version. */
  change(c: RoomChange): void {
    this.opts.onRoomChanged?.(c.event.roomId)
    this.enqueue(c)
  }

  /**
   * Committed events of one room from another node, from the room's channel. This node's history
   * cache of the room is stale from now on (also when it no longer follows the room: a lingering
   * subscription still invalidates).
   */
  receiveFromPeers(batch: FeedEvent[]): void {
    this.receiveAll(batch, true)
  }

  /** Rooms this node is delivering (for metrics and tests). */
  get trackedRooms(): number {
    return this.rooms.size
  }

  /**
   * Prepares `socket` to follow the room: returns what it has to see first — everything after
   * `afterSeq` (the newest `limit` of it, with hasMore, when there is more), or the latest
   * `limit` messages; with `afterVersion`, also `updated` — and `join()`. From the moment this
   * resolves, live events of the room are buffered for the socket; `join()` replays them and
   * joins the room in one tick. So the caller delivers the history first (an event, or an ack),
   * then calls `join()`, and the socket sees every message and change once, in order. Call
   * `cancel()` instead if it never joins.
   */
  async subscribe(socket: ChatSocket, roomId: string, afterSeq: number | undefined, limit: number, afterVersion?: number, restart = false): Promise<Subscription> {
    // Already in the room (a repeated join, a retried sync): step out first, at once, so the
    // answer to this request also comes before any live event that follows it.
    if (socket.rooms.has(roomId)) void socket.leave(roomId)
    for (;;) {
      const fresh = !this.rooms.has(roomId)
      const st = await this.track(roomId)
      let handedOver = false
      try {
        // A reconnecting socket on a room this node already follows: one look at the database's
        // head (a primary-key read) tells whether it went back since (failover, D105) before
        // anything is answered from the node's state. Resynced: answer from the rebuilt state.
        if (afterSeq !== undefined && !fresh && !restart) {
          const before = delivered(st)
          const head = await this.source.head(roomId)
          if (this.rooms.get(roomId) === st) this.regressedBelow(roomId, st, head, 'join', before)
          if (this.rooms.get(roomId) !== st) continue
        }
        const sub = await this.answer(socket, roomId, st, afterSeq, limit, afterVersion, restart)
        if (sub) {
          handedOver = true // the room state now stays alive until join() or cancel()
          return sub
        }
        // The state was dropped while we read: a resync after a regression (D105), or the feed
        // closing (track() then refuses). Start the room over on the rebuilt state (D100).
        afterSeq = afterVersion = undefined
        restart = true
      } finally {
        if (!handedOver) this.unhold(roomId, st)
      }
    }
  }

  /**
   * The subscription on `st`, or undefined if `st` stopped being the room's state during one of
   * the reads (its deliveries and ring are then no longer what this node's sockets see, D100).
   * `restart`: the socket starts the room over (the answer says hasMore).
   */
  private async answer(
    socket: ChatSocket,
    roomId: string,
    st: RoomState,
    afterSeq: number | undefined,
    limit: number,
    afterVersion: number | undefined,
    restart: boolean,
  ): Promise<Subscription | undefined> {
    const current = () => this.rooms.get(roomId) === st
    // The socket has seen more of the room than this node has delivered: it comes from a node
    // whose last messages have not reached this one (still in flight, or lost when it died).
    // Catch the feed up from the database first (D41); otherwise they would reach the socket
    // again as live messages once they arrive or a gap fill reads them.
    if ((afterSeq !== undefined && afterSeq >= st.next) || (afterVersion !== undefined && afterVersion > st.version)) await this.catchUp(roomId, st)
    if (!current()) return undefined
    // Still ahead after reading the database: the database lost what the socket saw (a failover
    // to a replica that lagged). Its seqs are being reused: it starts the room over from the
    // newest page (hasMore), like a resync (D105).
    if ((afterSeq !== undefined && afterSeq > st.next - 1) || (afterVersion !== undefined && afterVersion > st.version)) {
      this.regression(roomId, 'join', { expected: { lastSeq: afterSeq, version: afterVersion }, found: { lastSeq: st.next - 1, version: st.version }, socket: socket.id })
      afterSeq = afterVersion = undefined
      restart = true
    }
    for (let attempt = 0; ; attempt++) {
      if (!current()) return undefined
      const answer = await this.read(roomId, st, afterSeq, limit, afterVersion)
      if (!current()) return undefined
      // The answer shows changes this node has not delivered yet (their pub/sub copies are in
      // flight): deliver them to the room first, or they would reach the socket a second time.
      if (answer.newest > st.version) await this.catchUp(roomId, st)
      if (!current()) return undefined
      await this.completeTail(roomId, st, answer)
      if (!current()) return undefined
      if (answer.newest > st.version && attempt < 3) continue
      // Changes delivered while we read that the answer may not show: replay them after it. The
      // ring must reach back to where the read started; else read again (a storm of changes).
      if (answer.versionAtStart < st.changesFrom && attempt < 3) continue
      // No await from here on: nothing can slip in between the checks and the buffer.
      const shown = new Map<string, number>()
      for (const m of answer.messages) shown.set(m.id, m.version)
      for (const m of answer.updated ?? []) shown.set(m.id, m.version)
      const buffer: FeedEvent[] = st.changes.filter((c) => c.event.version > answer.versionAtStart && (shown.get(c.event.messageId) ?? -1) < c.event.version)
      let waiting = this.joining.get(roomId)
      if (!waiting) this.joining.set(roomId, (waiting = new Map()))
      waiting.set(socket, buffer)
      let done = false
      const finish = (join: boolean) => {
        if (done) return
        done = true
        if (waiting.get(socket) === buffer) waiting.delete(socket) // a resync may have subscribed it again
        if (waiting.size === 0 && this.joining.get(roomId) === waiting) this.joining.delete(roomId)
        // A socket that disconnected meanwhile never joins: Socket.IO would keep it in the room.
        // A resync (D105) that dropped this state answers and joins the socket itself.
        let joined: Promise<void> | void = undefined
        if (join && socket.connected && current()) {
          // The room's members get what was gathered first; the buffer holds what of it came
          // after the answer (the answer holds the rest), so the socket sees each event once.
          this.flush(roomId)
          for (const e of buffer) sendEvent(socket, e)
          joined = socket.join(roomId)
        }
        // The room has its local socket once the adapter has it (at once for the in-memory and
        // Redis adapters); until then the join still holds the state.
        if (joined instanceof Promise) void joined.finally(() => this.unhold(roomId, st))
        else this.unhold(roomId, st)
      }
      const { messages, updated, covered } = answer
      const hasMore = answer.hasMore || restart
      return { messages, updated, hasMore, lastSeq: covered, join: () => finish(true), cancel: () => finish(false) }
    }
  }

  /** History up to what this node delivered, and (with a version) what changed of the rest. */
  private async read(roomId: string, st: RoomState, afterSeq: number | undefined, limit: number, afterVersion: number | undefined) {
    const versionAtStart = st.version
    const covered = st.next - 1
    let messages: Message[]
    let hasMore = false
    if (afterSeq !== undefined && covered - afterSeq <= limit) {
      messages = await this.source.range(roomId, afterSeq, covered, limit)
    } else {
      messages = await this.source.latest(roomId, covered, limit)
      hasMore = messages.length > 0 && messages[0].seq > (afterSeq ?? 0) + 1
    }
    // A version asks for `updated`, empty when the client starts over anyway (hasMore).
    let updated: Message[] | undefined = afterVersion !== undefined && afterSeq !== undefined ? [] : undefined
    if (updated && !hasMore) {
      // One more than fits tells "too many changes": the client starts over (hasMore), D93.
      updated = await this.source.changedSince(roomId, afterVersion!, limit + 1, Math.min(afterSeq!, covered))
      if (updated.length > limit) {
        updated = updated.slice(0, limit)
        hasMore = true
      }
    }
    const newest = Math.max(0, ...messages.map((m) => m.version), ...(updated ?? []).map((m) => m.version))
    return { messages, updated, hasMore, covered, versionAtStart, newest }
  }

  /** Messages delivered while the answer was read: take them from the ring, else from the database. */
  private async completeTail(roomId: string, st: RoomState, answer: { messages: Message[]; covered: number; newest: number }): Promise<void> {
    for (;;) {
      const head = st.next - 1
      if (head <= answer.covered) return
      let tail = st.ring.filter((m) => m.seq > answer.covered)
      if (tail.length === 0 || tail[0].seq !== answer.covered + 1) {
        tail = await this.source.range(roomId, answer.covered, head, head - answer.covered)
        if (this.rooms.get(roomId) !== st) return // dropped meanwhile: the caller starts over
      }
      answer.messages = answer.messages.concat(tail)
      answer.covered = Math.max(answer.covered, ...tail.map((m) => m.seq))
      answer.newest = Math.max(answer.newest, ...tail.map((m) => m.version))
      if (tail.length === 0) return
    }
  }

  private async track(roomId: string): Promise<RoomState> {
    if (this.closed) throw new AppError('UNAVAILABLE', 'Node shutting down')
    let st = this.rooms.get(roomId)
    if (!st) {
      const state: RoomState = { next: NaN, version: NaN, ready: Promise.resolve(), early: [], pending: new Map(), ring: [], changes: [], changesFrom: NaN, holders: 0, outgoing: [], flushedAt: -Infinity }
      // The head is read only once the channel delivers: whatever is committed after it arrives.
      state.ready = this.listen(roomId, state).then(() => (this.rooms.get(roomId) === state ? this.source.head(roomId) : { lastSeq: 0, version: 0 })).then(
        (head) => {
          if (this.rooms.get(roomId) !== state) return // dropped meanwhile (the feed closed)
          state.next = head.lastSeq + 1
          state.version = state.changesFrom = head.version
          const early = state.early.sort((a, b) => versionOf(a) - versionOf(b))
          state.early = []
          for (const e of early) this.accept(roomId, state, e)
        },
        (err) => {
          if (this.rooms.get(roomId) === state) this.drop(roomId, state)
          throw err
        },
      )
      this.rooms.set(roomId, (st = state))
      this.opts.onTracked?.(this.rooms.size)
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
   * Subscribes the new state `st` to the room's channel and waits until Redis confirmed it (a
   * subscription lingering from a moment ago is confirmed already). Redis down or slow: the wait
   * is cut short, and once the subscription is confirmed after all, the room is checked against
   * the database for what was committed in between (the reconcile on reconnect also does).
   */
  private async listen(roomId: string, st: RoomState): Promise<void> {
    const channels = this.opts.channels
    if (!channels) return
    st.subscribed = true
    const confirmed = channels.subscribe(roomId)
    let waited: boolean
    const wait = channels.connected ? (this.opts.subscribeWaitMs ?? 2000) : 0
    try {
      waited = await confirmedWithin(confirmed, wait)
    } catch (err) {
      this.log.warn({ err: (err as Error).message, roomId }, 'room channel subscribe failed; the room is reconciled from the database')
      return
    }
    if (waited) return
    this.log.info({ roomId, waitedMs: wait }, 'room channel subscription not confirmed yet; reading the room head anyway')
    const ifStillHere = () => (this.rooms.get(roomId) === st && !Number.isNaN(st.next) ? this.catchUpIfBehind(roomId, st) : undefined)
    confirmed.then(
      () => st.ready.then(ifStillHere, () => undefined),
      () => undefined,
    )
  }

  /** Reads the room's head and catches up if the database is ahead of what was delivered. */
  private async catchUpIfBehind(roomId: string, st: RoomState): Promise<void> {
    try {
      const before = delivered(st)
      const head = await this.source.head(roomId)
      if (this.rooms.get(roomId) !== st || this.regressedBelow(roomId, st, head, 'reconcile', before)) return
      if (head.version > st.version) await this.catchUp(roomId, st)
    } catch (err) {
      this.log.warn({ err: (err as Error).message, roomId }, 'feed catch-up after a late subscription failed; reconcile retries it')
    }
  }

  /** A subscribe on `st` is over (answered and joined, cancelled, or failed). */
  private unhold(roomId: string, st: RoomState): void {
    st.holders--
    this.release(roomId, st)
  }

  /**
   * Drops the room's state once nothing on this node needs it: no local socket in the room and
   * no subscribe in progress (D100). Called whenever either may have become true.
   */
  private release(roomId: string, st: RoomState): void {
    if (this.rooms.get(roomId) !== st || st.holders > 0) return
    if ((this.nsp.adapter.rooms.get(roomId)?.size ?? 0) > 0) return
    this.drop(roomId, st)
  }

  /**
   * Reads from the database everything of the room after the last version this node delivered,
   * in its current state, and delivers it to the room's current members (gap fill, reconcile,
   * catch-up, D91): first the changes to messages they hold, in version order, then the new
   * messages, in seq order. Returns how many messages it read.
   */
  private async catchUp(roomId: string, st: RoomState): Promise<number> {
    const byId = new Map<string, Message>()
    for (let after = st.version; ; ) {
      const page = await this.source.changedSince(roomId, after, CATCH_UP_PAGE)
      for (const m of page) byId.set(m.id, m) // a later page has the newer state
      if (page.length < CATCH_UP_PAGE) break
      after = page[page.length - 1].version
    }
    if (this.rooms.get(roomId) !== st || byId.size === 0) return 0
    // A row at a seq this node delivered as another message: that seq was reused (D105).
    for (const m of byId.values()) {
      const held = m.seq < st.next ? st.ring.find((r) => r.seq === m.seq) : undefined
      if (held && held.id !== m.id) {
        this.regressed(roomId, st, 'catch-up', { seq: m.seq, delivered: held.id, found: m.id })
        return 0
      }
    }
    this.opts.onRoomChanged?.(roomId) // what pub/sub lost also never invalidated this node's cache
    this.opts.onRecovered?.(byId.size)
    const rows = [...byId.values()]
    // Filtered now, not when read: live events or another catch-up may have delivered some meanwhile.
    const older = rows.filter((m) => m.seq < st.next && m.version > st.version).sort((a, b) => a.version - b.version)
    const newer = rows.filter((m) => m.seq >= st.next).sort((a, b) => a.seq - b.seq)
    const top = Math.max(...rows.map((m) => m.version))
    withWritesHeld(this.nsp, [roomId], () => {
      for (const m of older) for (const c of recoveredChanges(m)) this.deliverChange(st, c)
      for (const m of newer) {
        if (m.seq !== st.next) this.log.error({ roomId, from: st.next, to: m.seq - 1 }, 'feed gap not in the database; skipping it')
        this.deliverMessage(st, m)
      }
      st.version = Math.max(st.version, top)
      this.drainPending(roomId, st)
    })
    return byId.size
  }

  /** A committed event (its room's cache already invalidated): deliver it if this node follows the room. */
  private receive(e: FeedEvent): void {
    const roomId = roomOf(e)
    const st = this.rooms.get(roomId)
    if (!st) return // no local socket in this room
    if (Number.isNaN(st.next)) st.early.push(e)
    else this.accept(roomId, st, e)
  }

  private accept(roomId: string, st: RoomState, e: FeedEvent): void {
    const v = versionOf(e)
    if (v <= st.version) return this.stale(roomId, st, e) // already delivered, caught up in a newer state — or reused (D105)
    if (v > st.version + 1) {
      st.pending.set(v, e)
      st.gapTimer ??= setTimeout(() => void this.fillGap(roomId, st), this.opts.gapWaitMs)
      return
    }
    this.deliver(st, e)
    this.drainPending(roomId, st)
  }

  /** Delivers the pending events that are next in line, drops those already covered. */
  private drainPending(_roomId: string, st: RoomState): void {
    for (const v of st.pending.keys()) if (v <= st.version) st.pending.delete(v)
    let next: FeedEvent | undefined
    while ((next = st.pending.get(st.version + 1))) {
      st.pending.delete(st.version + 1)
      this.deliver(st, next)
    }
    if (st.pending.size === 0 && st.gapTimer) {
      clearTimeout(st.gapTimer)
      st.gapTimer = undefined
    }
  }

  private deliver(st: RoomState, e: FeedEvent): void {
    if (e.kind !== 'message') return this.deliverChange(st, e)
    // Versions are contiguous, so seqs are too; a message below `next` came in a catch-up already.
    if (e.message.seq < st.next) {
      const held = st.ring.find((m) => m.seq === e.message.seq)
      if (held && held.id !== e.message.id) return this.regressed(e.message.roomId, st, 'live', { seq: e.message.seq, delivered: held.id, found: e.message.id })
      st.version = Math.max(st.version, e.message.version)
    }
    else this.deliverMessage(st, e.message)
  }

  private deliverMessage(st: RoomState, m: Message): void {
    st.next = m.seq + 1
    st.version = Math.max(st.version, m.version)
    st.ring.push(m)
    if (st.ring.length > this.opts.ringSize) st.ring.splice(0, st.ring.length - this.opts.ringSize)
    this.fanOut(st, m.roomId, { kind: 'message', message: m })
  }

  private deliverChange(st: RoomState, c: RoomChange): void {
    st.version = Math.max(st.version, c.event.version)
    st.changes.push(c)
    if (st.changes.length > this.opts.ringSize) st.changesFrom = st.changes.splice(0, st.changes.length - this.opts.ringSize).at(-1)!.event.version
    this.fanOut(st, c.event.roomId, c)
  }

  /** An event delivered in order: to the room's sockets now, or with the next ones (`batchMs`). */
  private fanOut(st: RoomState, roomId: string, e: FeedEvent): void {
    const waiting = this.joining.get(roomId)
    if (waiting) for (const buffer of waiting.values()) buffer.push(e)
    const interval = this.opts.batchMs ?? 0
    if (interval <= 0) return sendEvent(this.nsp.local.to(roomId), e)
    st.outgoing.push(e)
    if (st.flushTimer) return
    const wait = st.flushedAt + interval - performance.now()
    // Quiet until now: out at once, with whatever else this turn delivers to the room.
    st.flushTimer = wait <= 0 ? setImmediate(() => this.flush(roomId)) : setTimeout(() => this.flush(roomId), wait)
  }

  private cancelFlush(st: RoomState): void {
    const t = st.flushTimer
    if (!t) return
    st.flushTimer = undefined
    if ('refresh' in t) clearTimeout(t)
    else clearImmediate(t as NodeJS.Immediate)
  }

  /**
   * Writes a room's events, in order, to its sockets on this node, each socket's in one write.
   * Sockets that take `chat:messages` (SPEC addition, D182) get each run of consecutive
   * messages as one frame, encoded once for all of them; the others get one frame per event.
   */
  private write(roomId: string, events: FeedEvent[]): void {
    const room = this.nsp.local.to(roomId)
    if (events.length === 1) return sendEvent(room, events[0])
    const members = this.nsp.adapter.rooms.get(roomId)?.size ?? 0
    if (members === 0) return
    const batching = this.nsp.adapter.rooms.get(batchRoom(roomId))?.size ?? 0
    withWritesHeld(this.nsp, [roomId], () => {
      if (batching < members) {
        const plain = batching > 0 ? room.except(batchRoom(roomId)) : room
        for (const e of events) sendEvent(plain, e)
      }
      if (batching === 0) return
      const to = batching < members ? this.nsp.local.to(batchRoom(roomId)) : room
      for (let i = 0; i < events.length; ) {
        let j = i
        while (j < events.length && events[j].kind === 'message') j++
        if (j - i >= 2) {
          to.emit('chat:messages', { roomId, messages: events.slice(i, j).map((e) => (e as { message: Message }).message) })
          this.opts.onMessagesFrame?.()
          i = j
        } else {
          sendEvent(to, events[i])
          i++
        }
      }
    })
  }

  /** Predecessors of a pending event did not arrive in time: read what changed from the database. */
  private async fillGap(roomId: string, st: RoomState): Promise<void> {
    st.gapTimer = undefined
    if (this.rooms.get(roomId) !== st || st.pending.size === 0) return
    const first = Math.min(...st.pending.keys())
    try {
      const from = st.version
      const found = await this.catchUp(roomId, st)
      // Dropped (and perhaps made anew) while we read: its pending events are not ours to deliver (D100).
      if (this.rooms.get(roomId) !== st) return
      this.log.info({ roomId, from, to: first - 1, found }, 'feed gap filled from the database')
      if (st.pending.size > 0 && st.version < first - 1 && Math.min(...st.pending.keys()) === first) {
        this.log.error({ roomId, from: st.version + 1, to: first - 1 }, 'feed version gap not in the database; skipping it')
        st.version = first - 1
        this.drainPending(roomId, st)
      }
    } catch (err) {
      this.log.warn({ err, roomId }, 'feed gap fill failed; retrying')
    }
    if (this.rooms.get(roomId) !== st) return
    if (st.pending.size > 0) st.gapTimer ??= setTimeout(() => void this.fillGap(roomId, st), this.opts.gapWaitMs)
  }

  /**
   * An event at or below the delivered version: normally a copy of something a catch-up already
   * delivered. When this node delivered another message at its seq or version, the seq/version
   * was reused: the database went back (failover). When it cannot tell, it asks the database's
   * head once (D105).
   */
  private stale(roomId: string, st: RoomState, e: FeedEvent): void {
    const v = versionOf(e)
    const about = e.kind === 'message' ? e.message.id : e.event.messageId
    const held =
      (e.kind === 'message' ? st.ring.find((m) => m.seq === e.message.seq) : undefined) ??
      st.ring.find((m) => m.version === v) ??
      st.changes.find((c) => c.event.version === v)
    const heldId = held === undefined ? undefined : 'event' in held ? held.event.messageId : held.id
    if (heldId !== undefined && heldId !== about) {
      return this.regressed(roomId, st, 'live', { version: v, seq: e.kind === 'message' ? e.message.seq : undefined, delivered: heldId, found: about })
    }
    void this.verifyHead(roomId, st)
  }

  /** Reads the room's head and resyncs it when the database is behind what was delivered. */
  private async verifyHead(roomId: string, st: RoomState): Promise<void> {
    if (st.verifying) return
    st.verifying = true
    try {
      const before = delivered(st)
      const head = await this.source.head(roomId)
      if (this.rooms.get(roomId) === st) this.regressedBelow(roomId, st, head, 'live', before)
    } catch (err) {
      this.log.warn({ err: (err as Error).message, roomId }, 'feed head check failed')
    } finally {
      st.verifying = false
    }
  }

  /**
   * True (and the room resynced) when `head` is below what this node had delivered when the read
   * of `head` started (`before`): what was delivered while it was read says nothing of the
   * database going back.
   */
  private regressedBelow(roomId: string, st: RoomState, head: RoomHead, where: RegressionSite, before: Delivered): boolean {
    if (head.lastSeq >= before.next - 1 && head.version >= before.version) return false
    this.regressed(roomId, st, where, { expected: { lastSeq: before.next - 1, version: before.version }, found: head })
    return true
  }

  private regression(roomId: string, where: RegressionSite, details: Record<string, unknown>): void {
    this.opts.onRegression?.(where)
    this.log.error({ roomId, where, ...details }, 'feed regression: the database is behind what this node delivered (failover?); resyncing the room')
  }

  /**
   * The database went back below what this node delivered: log and count it, forget the room's
   * feed state, and resync every local socket of the room — each leaves the room and gets a fresh
   * `room:history` of the database's truth with `hasMore: true` (clients start the room over from
   * it), then joins again with the feed rebuilt from the database's head (D105).
   */
  private regressed(roomId: string, st: RoomState, where: RegressionSite, details: Record<string, unknown>): void {
    if (this.rooms.get(roomId) !== st) return // already resynced
    this.regression(roomId, where, { expected: { lastSeq: st.next - 1, version: st.version }, ...details })
    this.drop(roomId, st)
    const sockets: ChatSocket[] = []
    for (const id of this.nsp.adapter.rooms.get(roomId) ?? []) {
      const socket = this.nsp.sockets.get(id)
      if (socket) sockets.push(socket)
    }
    // Joins in progress answer from the old state: they start over too once joined.
    for (const socket of this.joining.get(roomId)?.keys() ?? []) if (!sockets.includes(socket)) sockets.push(socket)
    for (const socket of sockets) void socket.leave(roomId)
    void this.resync(roomId, sockets)
  }

  private async resync(roomId: string, sockets: ChatSocket[]): Promise<void> {
    try {
      const reads = (await this.source.reads?.(roomId)) ?? {}
      await Promise.all(
        sockets.map(async (socket) => {
          if (!socket.connected) return
          const sub = await this.subscribe(socket, roomId, undefined, this.opts.resyncLimit ?? 50)
          socket.emit('room:history', { roomId, messages: sub.messages, reads, hasMore: true })
          sub.join()
        }),
      )
    } catch (err) {
      // The sockets are out of the room: they get nothing wrong, and their next sync or join heals them.
      this.log.error({ err: (err as Error).message, roomId }, 'feed resync failed; its sockets must join again')
    }
  }

  private drop(roomId: string, st: RoomState): void {
    if (st.gapTimer) clearTimeout(st.gapTimer)
    st.gapTimer = undefined
    // Gathered for sockets that are gone, or that a resync answers from the database (D105).
    this.cancelFlush(st)
    st.outgoing = []
    st.pending.clear()
    if (st.subscribed) {
      st.subscribed = false
      this.opts.channels?.unsubscribe(roomId) // after the linger: a join meanwhile keeps it
    }
    if (this.rooms.get(roomId) === st) this.rooms.delete(roomId)
    this.opts.onTracked?.(this.rooms.size)
  }

  private enqueue(e: FeedEvent): void {
    if (this.outbox.length === 0) process.nextTick(() => this.flushOutbox())
    this.outbox.push(e)
  }

  private flushOutbox(): void {
    const batch = this.outbox
    this.outbox = []
    const channels = this.opts.channels
    if (this.opts.shared && channels) {
      // One publication per room, its events in commit order, on the room's channel: only the
      // nodes that follow the room receive it (SPEC §7).
      const byRoom = new Map<string, FeedEvent[]>()
      for (const e of batch) {
        const roomId = roomOf(e)
        const list = byRoom.get(roomId)
        if (list) list.push(e)
        else byRoom.set(roomId, [e])
      }
      for (const [roomId, events] of byRoom) channels.publish(roomId, encodeFeed(events))
    }
    this.receiveAll(batch)
  }

  /** A batch of committed events: each member's frames go out in one write (see `withWritesHeld`). */
  private receiveAll(batch: FeedEvent[], fromPeers = false): void {
    if (fromPeers) for (const e of batch) this.opts.onRoomChanged?.(roomOf(e))
    // Gathered per room (batchMs): nothing is written in this turn.
    if ((this.opts.batchMs ?? 0) > 0) {
      for (const e of batch) this.receive(e)
      return
    }
    withWritesHeld(this.nsp, repeatedRooms(batch.map((e) => ({ roomId: roomOf(e) }))), () => {
      for (const e of batch) this.receive(e)
    })
  }
}
