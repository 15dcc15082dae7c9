/**
 * One room: its timeline, outbox, receipts and typing.
 * @packageDocumentation
 */
import { FINAL_CODES, SwitchboardError } from './errors.ts'
import type {
  Attachment,
  DeletedEvent,
  EditedEvent,
  HistoryEvent,
  HistoryPage,
  JoinOk,
  Message,
  OnlineUser,
  ReactionEvent,
  ReadEvent,
  SendOk,
  SendPayload,
  TypingEvent,
} from './protocol.ts'
import { ValueStore, type Store } from './store.ts'
import { applyDelete, applyEdit, applyReaction, applyUpdated, contiguousLastSeq, maxVersion, mergeMessages, normalizeMessage, readersOf } from './timeline.ts'

/** A send in the outbox: shown until its ack arrives (then it is a {@link Message} of the timeline). */
export interface PendingMessage {
  /** The idempotency key: every resend carries it, so the server stores the message once. */
  clientMsgId: string
  roomId: string
  text: string
  replyTo?: string
  attachment?: Attachment
  /** `sending`: emitted, ack awaited; `waiting`: held for a retry (`retryAt`), for the connection, or behind an earlier one; `failed`: needs the user (retry or discard). */
  status: 'sending' | 'waiting' | 'failed'
  /** Why the last attempt did not succeed. */
  error?: { code: string; message: string }
  /** Epoch ms of the next attempt, while held for a retry. */
  retryAt?: number
  /** Epoch ms when `send` was called. */
  createdAt: number
}

/** Where a room stands, as one immutable snapshot. */
export interface RoomState {
  roomId: string
  /** `idle`: not followed; `joining`: room:join in flight; `joined`: live and complete; `syncing`: catching up after a reconnect or a gap; `error`: see `error`. */
  status: 'idle' | 'joining' | 'joined' | 'syncing' | 'error'
  error: { code: string; message: string } | null
  /** Seq order, one entry per seq, each in its latest known version. */
  messages: readonly Message[]
  /** The outbox of this room, in send order. */
  pending: readonly PendingMessage[]
  /** The highest seq this client holds without a hole (sent in `chat:sync`). */
  lastSeq: number
  /** The highest room version seen on the connection (sent in `chat:sync`). */
  version: number
  /** Older messages exist than the oldest held (`loadOlder`). */
  hasOlder: boolean
  loadingOlder: boolean
  /** userId → the highest seq that user has read. */
  reads: ReadonlyMap<string, number>
  /** Others typing now. */
  typists: readonly OnlineUser[]
  /** Held messages of others after my read mark. */
  unread: number
}

/** @internal What a room needs from its client. */
export interface RoomHost {
  /** The client was closed. */
  isClosed(): boolean
  /** My userId (from the token), if known. */
  me(): string | undefined
  /** /chat is connected now. */
  chatConnected(): boolean
  /** `onAck` runs synchronously when the answer is read, before the events after it. */
  emit<T extends object>(event: string, payload: unknown, onAck?: (r: EmitResult<T>) => void): Promise<EmitResult<T>>
  /** Emits without ack, dropped when not connected (typing). */
  volatileEmit(event: string, payload: unknown): void
  /** GET with the bearer token, JSON answer. */
  http<T>(path: string): Promise<T>
  /** Queues a `chat:sync` of this room (batched with others). */
  requestSync(room: RoomHandle): void
  /** These users are online (join answers). */
  online(users: readonly OnlineUser[]): void
  /** Messages reached the room's timeline (the rooms list counts unread from them). */
  roomMessages(roomId: string, messages: readonly Message[]): void
  /** My read mark rose to `seq`. */
  readAcked(roomId: string, seq: number): void
  /** My read mark as the rooms list knows it. */
  lastReadSeq(roomId: string): number
  /** A new clientMsgId. */
  uuid(): string
}

/** @internal The outcome of an emit with ack. */
export type EmitResult<T> = { ok: true; value: T } | { ok: false; code: string; error: string; retryAfterMs?: number }

/** A live change of one message. */
type Change = { kind: 'edit'; e: EditedEvent } | { kind: 'delete'; e: DeletedEvent } | { kind: 'reaction'; e: ReactionEvent }
const MAX_ORPHANS = 2000

function applyChange(messages: readonly Message[], c: Change): readonly Message[] {
  if (c.kind === 'edit') return applyEdit(messages, c.e)
  if (c.kind === 'delete') return applyDelete(messages, c.e)
  return applyReaction(messages, c.e)
}

interface OutboxEntry {
  p: PendingMessage
  payload: SendPayload
  resolve: (ok: SendOk) => void
  reject: (err: SwitchboardError) => void
  attempt: number
  timer?: ReturnType<typeof setTimeout>
}

/** Our `chat:typing: true` at most this often while typing continues. */
const TYPING_SEND_EVERY_MS = 2000
/** Above the server's TYPING_THROTTLE_MS (1 s), which drops a repeat of the same state. */
const TYPING_MIN_GAP_MS = 1100
/** Another user's indicator goes after this long without news. */
const TYPING_SHOWN_MS = 3000
const OLDER_PAGE = 50

/** Exponential backoff with jitter (50–100 % of 300 ms · 2^attempt, at most 10 s), never below `floorMs`. */
export function backoffMs(attempt: number, floorMs = 0): number {
  const base = Math.min(10_000, 300 * 2 ** Math.min(attempt, 10))
  return Math.max(floorMs, Math.round(base * (0.5 + Math.random() * 0.5)))
}

/** The state of a room nothing is known of yet (not followed, nothing held). */
export const initialRoomState = (roomId: string): RoomState => ({
  roomId,
  status: 'idle',
  error: null,
  messages: [],
  pending: [],
  lastSeq: 0,
  version: 0,
  hasOlder: false,
  loadingOlder: false,
  reads: new Map(),
  typists: [],
  unread: 0,
})

/**
 * A room of a {@link SwitchboardClient} (`client.room(id)`: one handle per id). Joined with
 * {@link RoomHandle.join} (ref-counted); while joined it rejoins and syncs after every reconnect,
 * and its outbox resends until each message is acknowledged.
 */
export class RoomHandle {
  /** The room id. */
  readonly id: string
  private readonly store: ValueStore<RoomState>
  /** The room's snapshot. */
  readonly state: Store<RoomState>
  private refs = 0
  /** A join or sync succeeded once: after a reconnect, `chat:sync` (not a fresh join) brings it up to date. */
  private everJoined = false
  /** Joined on the current connection (its live events reach us and are complete). */
  private live = false
  private joinAttempt: object | null = null
  private joinMode: 'fresh' | 'catchup' = 'fresh'
  private joinWaiters: { resolve: () => void; reject: (e: SwitchboardError) => void }[] = []
  private joinRetry?: ReturnType<typeof setTimeout>
  private joinAttempts = 0
  /** Seqs held only from a send's ack (not yet seen stored): not counted in lastSeq. */
  private readonly provisional = new Set<number>()
  /** After a live gap: the version from before it, sent in the sync (the gap may hide changes). */
  private versionCap: number | null = null
  private syncAgain = 0
  private readonly outbox: OutboxEntry[] = []
  private inflight = false
  private readonly typers = new Map<string, { username: string; timer: ReturnType<typeof setTimeout> }>()
  private typingSentAt = 0
  private typingOn = false
  private lastTrueAt = 0
  private typingTimer?: ReturnType<typeof setTimeout>
  private readSent = 0
  /**
   * Changes of messages not held yet, by message id: the server may deliver a change before the
   * answer that carries its message, in an older version (seen after a node kill); applied when
   * the message arrives, if newer than it.
   */
  private readonly orphans = new Map<string, Change[]>()
  private orphanCount = 0

  /** @internal Use `client.room(id)`. */
  constructor(
    id: string,
    private readonly host: RoomHost,
  ) {
    this.id = id
    this.store = new ValueStore(initialRoomState(id))
    this.state = { get: this.store.get, subscribe: this.store.subscribe }
  }

  // ---------- state ----------

  private get s(): RoomState {
    return this.store.get()
  }

  /** Replaces the snapshot with `patch` applied, recomputing lastSeq and unread. */
  private set(patch: Partial<RoomState>): void {
    const cur = this.s
    let changed = false
    for (const k of Object.keys(patch) as (keyof RoomState)[]) if (!Object.is(patch[k], cur[k])) changed = true
    if (!changed) return
    const next: RoomState = { ...cur, ...patch }
    if (patch.messages !== undefined || patch.reads !== undefined) {
      next.lastSeq = contiguousLastSeq(next.messages, this.provisional)
      next.unread = this.countUnread(next)
    }
    this.store.set(next)
  }

  private countUnread(st: RoomState): number {
    const me = this.host.me()
    const mark = Math.max(me ? (st.reads.get(me) ?? 0) : 0, this.host.lastReadSeq(this.id))
    let n = 0
    for (let i = st.messages.length - 1; i >= 0; i--) {
      const m = st.messages[i]
      if (m.seq <= mark) break
      if (m.userId !== me && !m.deletedAt) n++
    }
    return n
  }

  /** @internal The read mark of the rooms list changed: recount. */
  _recount(): void {
    const unread = this.countUnread(this.s)
    if (unread !== this.s.unread) this.store.set({ ...this.s, unread })
  }

  private raiseVersion(...versions: number[]): Partial<RoomState> {
    const top = Math.max(this.s.version, ...versions)
    return top > this.s.version ? { version: top } : {}
  }

  /** Followed (joined at least once more than left). */
  get following(): boolean {
    return this.refs > 0
  }

  // ---------- join / leave ----------

  /**
   * Follows the room: `room:join` now (or at the next connect), then live events; after every
   * reconnect a `chat:sync` from `{ lastSeq, version }`. Ref-counted: n joins need n leaves.
   * Resolves once joined; rejects with the server's code (`FORBIDDEN`, `BAD_REQUEST`, ...).
   */
  join(): Promise<void> {
    if (this.host.isClosed()) return Promise.reject(new SwitchboardError('CLOSED', 'The client is closed'))
    this.refs++
    if (this.refs === 1 && this.s.status === 'error') this.set({ status: 'idle', error: null })
    if (this.live && (this.s.status === 'joined' || this.s.status === 'syncing')) return Promise.resolve()
    const done = new Promise<void>((resolve, reject) => this.joinWaiters.push({ resolve, reject }))
    if (this.refs === 1 || this.joinAttempt === null) this._start()
    return done
  }

  /**
   * Stops following when the last join is left: no more syncs; live events are ignored (a later
   * join catches up from what is held). With `{ membership: true }` it also leaves the room on
   * the server (`room:leave`: the membership ends for every device of the user).
   */
  async leave(opts: { membership?: boolean } = {}): Promise<void> {
    if (this.refs > 0) this.refs--
    if (this.refs > 0 && !opts.membership) return
    this.refs = 0
    this.stopTyping()
    this.joinAttempt = null
    clearTimeout(this.joinRetry)
    this.live = false
    this.rejectJoin(new SwitchboardError('DISCARDED', 'Left before the join completed'))
    this.clearTypers()
    this.set({ status: 'idle', error: null })
    if (opts.membership) {
      const res = await this.host.emit('room:leave', { roomId: this.id })
      if (!res.ok) throw new SwitchboardError(res.code, res.error, { retryAfterMs: res.retryAfterMs })
    }
  }

  private resolveJoin(): void {
    for (const w of this.joinWaiters.splice(0)) w.resolve()
  }

  private rejectJoin(err: SwitchboardError): void {
    for (const w of this.joinWaiters.splice(0)) w.reject(err)
  }

  /** @internal (Re)connected or asked to join: a room that was joined before syncs (the client batches that into one chat:sync); else room:join. */
  _start(): void {
    if (!this.following || this.host.isClosed() || !this.host.chatConnected()) return
    if (this.everJoined) this.host.requestSync(this)
    else void this.doJoin()
  }

  /** @internal The connection dropped: nothing is live until the next connect's sync. */
  _disconnected(): void {
    this.live = false
    this.joinAttempt = null
    clearTimeout(this.joinRetry)
    this.typingOn = false
    clearTimeout(this.typingTimer)
    this.typingTimer = undefined
    this.clearTypers()
    if (this.following && this.s.status !== 'error') this.set({ status: this.everJoined ? 'syncing' : 'joining' })
  }

  /** room:join: with `{ lastSeq, version }` when messages are held (history then carries what was missed). */
  private async doJoin(): Promise<void> {
    const attempt = {}
    this.joinAttempt = attempt
    clearTimeout(this.joinRetry)
    const lastSeq = this.s.lastSeq
    this.joinMode = lastSeq > 0 ? 'catchup' : 'fresh'
    this.set({ status: this.everJoined ? 'syncing' : 'joining', error: null })
    const payload = lastSeq > 0 ? { roomId: this.id, lastSeq, version: this.versionCap ?? this.s.version } : { roomId: this.id }
    const res = await this.host.emit<JoinOk>('room:join', payload, (r) => {
      // In the ack callback: live from here on, before the events that follow the answer.
      if (!r.ok || this.joinAttempt !== attempt || this.host.isClosed()) return
      this.joinAttempt = null
      this.joinAttempts = 0
      this.host.online(r.value.online)
      this.joined()
    })
    if (res.ok || this.joinAttempt !== attempt || this.host.isClosed()) return
    this.joinAttempt = null
    if (res.code === 'DISCONNECTED') return // joined again on the next connect
    if (FINAL_CODES.has(res.code)) {
      this.refs = 0
      this.set({ status: 'error', error: { code: res.code, message: res.error } })
      this.rejectJoin(new SwitchboardError(res.code, res.error))
      this.pump() // sends waiting for the join get the server's own answer
      return
    }
    // UNAVAILABLE, RATE_LIMITED, TIMEOUT, INTERNAL: again, later.
    const wait = backoffMs(this.joinAttempts++, res.retryAfterMs ?? 0)
    this.joinRetry = setTimeout(() => this._start(), wait)
  }

  /** Joined (room:join ack, or the sync answer was merged). */
  private joined(): void {
    this.everJoined = true
    this.live = true
    this.versionCap = null
    this.set({ status: 'joined', error: null })
    this.resolveJoin()
    this.checkHoles()
    this.pump()
  }

  /** A hole between held messages (a live gap while syncing): sync again, a few times, then start over. */
  private checkHoles(): void {
    const held = this.s.messages.filter((m) => !this.provisional.has(m.seq))
    const top = held.length > 0 ? held[held.length - 1].seq : 0
    if (top <= this.s.lastSeq) {
      this.syncAgain = 0
      return
    }
    if (this.syncAgain++ >= 3) {
      this.syncAgain = 0
      return this._restart()
    }
    this.versionCap ??= this.s.version
    this.set({ status: 'syncing' })
    this.host.requestSync(this)
  }

  /** @internal Start over from the newest page (a sync said `hasMore`): drop the timeline, fresh room:join. */
  _restart(): void {
    this.provisional.clear()
    this.versionCap = null
    this.set({ messages: [], version: 0, hasOlder: true })
    void this.doJoin()
  }

  /** @internal The sync point this client sends. */
  _syncPoint(): { lastSeq: number; version: number } {
    return { lastSeq: this.s.lastSeq, version: this.versionCap ?? this.s.version }
  }

  /** @internal Marks the room as syncing (a chat:sync naming it is in flight). */
  _syncing(): void {
    this.joinAttempt = null
    this.set({ status: 'syncing' })
  }

  /** @internal This room's share of a chat:sync answer. */
  _applySync(messages: readonly Message[], updated: readonly Message[], hasMore: boolean, error: string | undefined): void {
    if (!this.following) return
    if (error !== undefined) {
      if (error === 'UNAVAILABLE' || error === 'INTERNAL' || error === 'RATE_LIMITED') {
        this.joinRetry = setTimeout(() => this._start(), backoffMs(this.joinAttempts++))
        return
      }
      this.refs = 0
      this.live = false
      this.set({ status: 'error', error: { code: error, message: `The room could not be synced (${error})` } })
      this.rejectJoin(new SwitchboardError(error, `The room could not be synced (${error})`))
      this.pump()
      return
    }
    if (hasMore) return this._restart()
    this.joinAttempts = 0
    this.mergeIn(messages, updated, true)
    this.joined()
  }

  /** @internal A sync of this room failed for good (not a disconnect): a fresh join tells why. */
  _syncFailed(): void {
    if (this.following) void this.doJoin()
  }

  // ---------- incoming ----------

  /** Merges messages (and `updated`) from the connection, raising the version. */
  private mergeIn(messages: readonly Message[], updated: readonly Message[], fromSocket: boolean): void {
    let next = mergeMessages(this.s.messages, messages, this.provisional)
    next = applyUpdated(next, updated)
    next = this.adoptOrphans(next, [...messages, ...updated])
    for (const m of messages) this.provisional.delete(m.seq)
    const patch: Partial<RoomState> = { messages: next }
    if (fromSocket) Object.assign(patch, this.raiseVersion(maxVersion(messages), maxVersion(updated)))
    if (messages.length > 0) this.dropTypers(messages)
    this.set(patch)
    if (messages.length > 0) this.host.roomMessages(this.id, messages)
  }

  /** Applies the changes kept for `arrived` messages (those newer than the copy that arrived). */
  private adoptOrphans(messages: readonly Message[], arrived: readonly Message[]): readonly Message[] {
    if (this.orphanCount === 0) return messages
    let next = messages
    for (const m of arrived) {
      const list = this.orphans.get(m.id)
      if (!list) continue
      this.orphans.delete(m.id)
      this.orphanCount -= list.length
      for (const c of list.sort((a, b) => a.e.version - b.e.version)) next = applyChange(next, c)
    }
    return next
  }

  /** @internal `room:history`. */
  _onHistory(h: HistoryEvent): void {
    if (!this.following) return
    const reads = new Map(this.s.reads)
    for (const userId of Object.keys(h.reads ?? {})) {
      const seq = h.reads[userId]
      if (typeof seq === 'number') reads.set(userId, Math.max(reads.get(userId) ?? 0, seq))
    }
    this.set({ reads })
    if (this.joinMode === 'catchup' && h.hasMore) {
      // More was missed than one answer carries: the newest page replaces the timeline (no hole).
      this.provisional.clear()
      this.versionCap = null
      this.set({ messages: [], version: 0, hasOlder: true })
      this.mergeIn(h.messages, [], true)
      return
    }
    if (this.joinMode === 'fresh') this.set({ hasOlder: h.hasMore || (h.messages.length > 0 && h.messages[0].seq > 1) })
    this.mergeIn(h.messages, h.updated ?? [], true)
  }

  /** @internal A live `chat:message`. */
  _onMessage(m: Message): void {
    if (!this.following) return
    const gap = this.live && this.s.status === 'joined' && m.seq > this.s.lastSeq + 1 && !this.s.messages.some((x) => x.seq === m.seq - 1 && !this.provisional.has(x.seq))
    if (gap) this.versionCap ??= this.s.version
    this.mergeIn([m], [], true)
    if (gap) {
      this.set({ status: 'syncing' })
      this.host.requestSync(this)
    }
  }

  /** A live change: applied by version, or kept until its message arrives. */
  private onChange(c: Change): void {
    if (!this.following) return
    if (!this.s.messages.some((m) => m.id === c.e.messageId)) {
      const list = this.orphans.get(c.e.messageId)
      if (list) list.push(c)
      else this.orphans.set(c.e.messageId, [c])
      this.orphanCount++
      // Bounded: changes of messages older than the held page never find theirs.
      while (this.orphanCount > MAX_ORPHANS) {
        const [id, oldest] = this.orphans.entries().next().value as [string, Change[]]
        this.orphans.delete(id)
        this.orphanCount -= oldest.length
      }
    }
    this.set({ messages: applyChange(this.s.messages, c), ...this.raiseVersion(c.e.version) })
  }

  /** @internal `chat:edited`. */
  _onEdited(e: EditedEvent): void {
    this.onChange({ kind: 'edit', e })
  }

  /** @internal `chat:deleted`. */
  _onDeleted(e: DeletedEvent): void {
    this.onChange({ kind: 'delete', e })
  }

  /** @internal `chat:reaction`. */
  _onReaction(e: ReactionEvent): void {
    this.onChange({ kind: 'reaction', e })
  }

  /** @internal `chat:read`. */
  _onRead(r: ReadEvent): void {
    if ((this.s.reads.get(r.userId) ?? 0) >= r.seq) return
    this.set({ reads: new Map(this.s.reads).set(r.userId, r.seq) })
  }

  /** @internal `chat:typing` of someone else. */
  _onTyping(t: TypingEvent): void {
    if (!this.following || t.userId === this.host.me()) return
    const had = this.typers.get(t.userId)
    if (had) clearTimeout(had.timer)
    if (!t.isTyping) {
      if (had) {
        this.typers.delete(t.userId)
        this.publishTypers()
      }
      return
    }
    const timer = setTimeout(() => {
      this.typers.delete(t.userId)
      this.publishTypers()
    }, TYPING_SHOWN_MS)
    this.typers.set(t.userId, { username: t.username, timer })
    if (!had || had.username !== t.username) this.publishTypers()
  }

  private dropTypers(messages: readonly Message[]): void {
    let changed = false
    for (const m of messages) {
      const t = this.typers.get(m.userId)
      if (!t) continue
      clearTimeout(t.timer)
      this.typers.delete(m.userId)
      changed = true
    }
    if (changed) this.publishTypers()
  }

  private clearTypers(): void {
    for (const t of this.typers.values()) clearTimeout(t.timer)
    const had = this.typers.size > 0
    this.typers.clear()
    if (had) this.publishTypers()
  }

  private publishTypers(): void {
    this.set({ typists: [...this.typers].map(([userId, t]) => ({ userId, username: t.username })) })
  }

  // ---------- outbox ----------

  /**
   * Sends `text` through the outbox: shown at once in `pending`, emitted with a clientMsgId
   * (stored at most once however often it is resent), strictly one in flight per room so a later
   * send never commits before an earlier one. Resent on UNAVAILABLE, INTERNAL, an ack timeout or a
   * disconnect with exponential backoff + jitter (never sooner than `retryAfterMs`); RATE_LIMITED
   * waits `retryAfterMs`. Rejects on BAD_REQUEST, FORBIDDEN, NOT_FOUND, TOO_LARGE (the entry stays,
   * `failed`, until `retry` or `discard`), on `discard` (`DISCARDED`) and on close (`CLOSED`).
   */
  send(text: string, opts: { replyTo?: string; attachmentId?: string; attachment?: Attachment } = {}): Promise<SendOk> {
    if (this.host.isClosed()) return Promise.reject(new SwitchboardError('CLOSED', 'The client is closed'))
    const p: PendingMessage = { clientMsgId: this.host.uuid(), roomId: this.id, text, status: 'waiting', createdAt: Date.now() }
    const payload: SendPayload = { roomId: this.id, text, clientMsgId: p.clientMsgId }
    if (opts.replyTo) p.replyTo = payload.replyTo = opts.replyTo
    if (opts.attachment) p.attachment = opts.attachment
    const attachmentId = opts.attachmentId ?? opts.attachment?.id
    if (attachmentId) payload.attachmentId = attachmentId
    this.stopTyping()
    return new Promise<SendOk>((resolve, reject) => {
      this.outbox.push({ p, payload, resolve, reject, attempt: 0 })
      this.publishPending()
      this.pump()
    })
  }

  /** Sends a failed (or waiting) entry again now, with the same clientMsgId; a failed one goes to the end of the queue. */
  retry(clientMsgId: string): void {
    const i = this.outbox.findIndex((e) => e.p.clientMsgId === clientMsgId)
    if (i < 0) return
    const e = this.outbox[i]
    clearTimeout(e.timer)
    e.timer = undefined
    e.attempt = 0
    if (e.p.status === 'failed') {
      this.outbox.splice(i, 1)
      this.outbox.push(e)
    }
    e.p = { ...e.p, status: 'waiting', retryAt: undefined }
    this.publishPending()
    this.pump()
  }

  /** Removes an entry from the outbox; its `send` rejects with `DISCARDED` (one already in flight may still be stored). */
  discard(clientMsgId: string): void {
    const i = this.outbox.findIndex((e) => e.p.clientMsgId === clientMsgId)
    if (i < 0) return
    const [e] = this.outbox.splice(i, 1)
    clearTimeout(e.timer)
    e.reject(new SwitchboardError('DISCARDED', 'Discarded'))
    this.publishPending()
    this.pump()
  }

  private publishPending(): void {
    this.set({ pending: this.outbox.map((e) => e.p) })
  }

  private update(e: OutboxEntry, patch: Partial<PendingMessage>): void {
    e.p = { ...e.p, ...patch }
    for (const k of Object.keys(patch) as (keyof PendingMessage)[]) if (patch[k] === undefined) delete e.p[k]
    this.publishPending()
  }

  /** @internal Sends the head of the outbox when nothing is in flight and the connection is up. */
  _pump(): void {
    this.pump()
  }

  private pump(): void {
    if (this.inflight || this.host.isClosed() || !this.host.chatConnected()) return
    // A followed room catches up first after a (re)connect (join or sync merged, `joined()` pumps):
    // an ack then never shows my message ahead of the ones I missed meanwhile.
    if (this.following && !this.live) return
    const e = this.outbox.find((x) => x.p.status !== 'failed')
    if (!e || e.timer !== undefined) return // the head waits for its retry time: so does the rest
    void this.attempt(e)
  }

  private async attempt(e: OutboxEntry): Promise<void> {
    this.inflight = true
    this.update(e, { status: 'sending', retryAt: undefined })
    const res = await this.host.emit<SendOk>('chat:message', e.payload)
    this.inflight = false
    if (this.host.isClosed()) return
    if (!this.outbox.includes(e)) return this.pump() // discarded meanwhile
    if (res.ok) {
      this.outbox.splice(this.outbox.indexOf(e), 1)
      this.committed(e, res.value)
      e.resolve({ messageId: res.value.messageId, seq: res.value.seq })
      return this.pump()
    }
    const error = { code: res.code, message: res.error }
    if (FINAL_CODES.has(res.code)) {
      this.update(e, { status: 'failed', error })
      e.reject(new SwitchboardError(res.code, res.error, { retryAfterMs: res.retryAfterMs }))
      return this.pump()
    }
    if (res.code === 'DISCONNECTED') {
      this.update(e, { status: 'waiting', error })
      return // the next connect pumps again
    }
    const wait = res.code === 'RATE_LIMITED' ? Math.max(res.retryAfterMs ?? 1000, 50) : backoffMs(e.attempt++, res.retryAfterMs ?? 0)
    this.update(e, { status: 'waiting', error, retryAt: Date.now() + wait })
    e.timer = setTimeout(() => {
      e.timer = undefined
      this.pump()
    }, wait)
  }

  /** The ack is the truth: the pending entry goes and its message shows (provisional until seen stored). */
  private committed(e: OutboxEntry, ok: SendOk): void {
    const me = this.host.me() ?? ''
    const held = this.s.messages.some((m) => m.seq === ok.seq)
    if (held) return this.publishPending()
    const m: Message = {
      id: ok.messageId,
      roomId: this.id,
      seq: ok.seq,
      version: 0,
      userId: me,
      username: '',
      text: e.p.text,
      timestamp: new Date(e.p.createdAt).toISOString(),
    }
    if (e.p.replyTo) m.replyTo = e.p.replyTo
    if (e.p.attachment) m.attachment = e.p.attachment
    this.provisional.add(ok.seq)
    this.set({ pending: this.outbox.map((x) => x.p), messages: mergeMessages(this.s.messages, [normalizeMessage(m)]) })
  }

  /** @internal The username to show on messages built from acks. */
  _setMyName(username: string): void {
    const me = this.host.me()
    if (!this.s.messages.some((m) => this.provisional.has(m.seq) && m.username !== username)) return
    this.set({ messages: this.s.messages.map((m) => (this.provisional.has(m.seq) && m.userId === me ? { ...m, username } : m)) })
  }

  // ---------- changes ----------

  private async call(event: string, payload: unknown): Promise<void> {
    const res = await this.host.emit(event, payload)
    if (!res.ok) throw new SwitchboardError(res.code, res.error, { retryAfterMs: res.retryAfterMs })
  }

  /** Edits a message of mine (`chat:edit`); the change arrives as `chat:edited`. Rejects with the ack's code. */
  edit(messageId: string, text: string): Promise<void> {
    return this.call('chat:edit', { roomId: this.id, messageId, text })
  }

  /** Deletes a message of mine (`chat:delete`): it becomes a tombstone. */
  remove(messageId: string): Promise<void> {
    return this.call('chat:delete', { roomId: this.id, messageId })
  }

  /** Adds (`on`) or removes my reaction `emoji` (`chat:react`). */
  react(messageId: string, emoji: string, on: boolean): Promise<void> {
    return this.call('chat:react', { roomId: this.id, messageId, emoji, on })
  }

  /**
   * I am typing (or stopped): `chat:typing: true` at most every 2 s while typing goes on, and
   * never within 1.1 s of the last one (the server drops repeats within its 1 s throttle);
   * `false` only after a `true` was sent. Volatile: dropped when not connected.
   */
  typing(isTyping: boolean): void {
    if (!isTyping) return this.stopTyping()
    if (!this.live || !this.host.chatConnected()) return
    const now = Date.now()
    if (this.typingOn && now - this.typingSentAt < TYPING_SEND_EVERY_MS) return
    if (this.typingTimer !== undefined) return
    const announce = () => {
      this.typingTimer = undefined
      if (this.host.isClosed() || !this.live || !this.host.chatConnected()) return
      this.typingOn = true
      this.typingSentAt = this.lastTrueAt = Date.now()
      this.host.volatileEmit('chat:typing', { roomId: this.id, isTyping: true })
    }
    const wait = this.lastTrueAt + TYPING_MIN_GAP_MS - now
    if (wait > 0) this.typingTimer = setTimeout(announce, wait)
    else announce()
  }

  private stopTyping(): void {
    clearTimeout(this.typingTimer)
    this.typingTimer = undefined
    if (!this.typingOn) return
    this.typingOn = false
    if (this.host.chatConnected()) this.host.volatileEmit('chat:typing', { roomId: this.id, isTyping: false })
  }

  /** Marks the room read up to `seq` (default: the newest held message) with `chat:read`. */
  async markRead(seq?: number): Promise<void> {
    const msgs = this.s.messages
    const target = seq ?? (msgs.length > 0 ? msgs[msgs.length - 1].seq : 0)
    if (target <= 0 || target <= this.readSent) return
    const me = this.host.me()
    const before = this.readSent
    this.readSent = target
    if (me) this._onRead({ userId: me, roomId: this.id, messageId: '', seq: target })
    const res = await this.host.emit('chat:read', { roomId: this.id, seq: target })
    if (!res.ok) {
      if (this.readSent === target) this.readSent = before
      throw new SwitchboardError(res.code, res.error, { retryAfterMs: res.retryAfterMs })
    }
    this.host.readAcked(this.id, target)
  }

  /** userIds (not mine) whose read mark is at or above `seq`. */
  readBy(seq: number): string[] {
    return readersOf(this.s.reads, seq, this.host.me())
  }

  /** The page before the oldest held message (`GET /api/rooms/:id/messages?before=`); sets `hasOlder`. */
  async loadOlder(): Promise<void> {
    const st = this.s
    const before = st.messages.length > 0 ? st.messages[0].seq : 0
    if (st.loadingOlder || !st.hasOlder || before === 1) return
    this.set({ loadingOlder: true })
    try {
      const q = before > 0 ? `before=${before}&limit=${OLDER_PAGE}` : `limit=${OLDER_PAGE}`
      const page = await this.host.http<HistoryPage>(`/api/rooms/${encodeURIComponent(this.id)}/messages?${q}`)
      // Pages are current state but do not raise the version (only the connection's order does).
      this.set({ messages: this.adoptOrphans(mergeMessages(this.s.messages, page.messages, this.provisional), page.messages), hasOlder: page.hasMore })
    } finally {
      this.set({ loadingOlder: false })
    }
  }

  /** @internal Close: timers stop, waiting sends and joins reject with CLOSED. */
  _close(): void {
    clearTimeout(this.joinRetry)
    clearTimeout(this.typingTimer)
    for (const t of this.typers.values()) clearTimeout(t.timer)
    this.typers.clear()
    const err = new SwitchboardError('CLOSED', 'The client is closed')
    for (const e of this.outbox.splice(0)) {
      clearTimeout(e.timer)
      e.reject(err)
    }
    this.rejectJoin(err)
    this.live = false
  }
}
