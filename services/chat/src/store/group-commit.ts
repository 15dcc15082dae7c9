import { AppError, isUnavailable } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { Db } from './db.ts'
import { commitBatch, dedupeKey, type Committed, type Draft } from './messages.repository.ts'

export interface GroupCommitOptions {
  maxBatch: number
  /** How long the first draft of a batch may wait for company; 0 = next tick. */
  maxWaitMs: number
  /**
   * Most drafts queued or in flight on this node (GROUP_COMMIT_MAX_QUEUE); past it a new draft
   * is refused with UNAVAILABLE and `retryAfterMs` instead of queueing (SPEC §5.6). Default: no bound.
   */
  maxQueue?: number
  /** Called with each batch's size and duration (metrics). */
  onBatch?: (size: number, seconds: number, ok: boolean) => void
  /** Called whenever the depth (queued + in flight) changes (metrics). */
  onDepth?: (depth: number) => void
  /** Called for each draft refused because the queue was full (metrics). */
  onRefused?: () => void
}

/** Bounds of the `retryAfterMs` a full queue suggests. */
const RETRY_MIN_MS = 250
const RETRY_MAX_MS = 10_000

interface Pending {
  draft: Draft
  resolve: (c: Committed) => void
  reject: (e: unknown) => void
  /** False while the draft's gate (its rate-limit check) is still out. */
  ready: boolean
}

/**
 * Batches drafts from every socket into few transactions, one in flight at a time, and
 * resolves each draft only after its transaction committed (SPEC §5.1). Drafts queue while a
 * batch is in flight, so batches grow with load and latency stays one commit when idle.
 *
 * A draft may come with a gate (the cluster-wide rate-limit check, a Redis round trip): it
 * queues at once and joins the first batch that starts after its gate opened; a gate that
 * fails takes the draft out, unwritten, with the gate's error. So the check overlaps the wait
 * for the batch in flight instead of adding to it. A user's drafts to a room keep their order:
 * batches take ready drafts in queue order, and a draft whose gate is still out (a rate-limit
 * check, the look-ups of a reply or an attachment) holds back the same user's later drafts to
 * that room.
 */
export class GroupCommit {
  private queue: Pending[] = []
  private readyCount = 0
  private inFlight: Promise<void> | null = null
  /** The pending start of the next batch: a timer (max wait), or an immediate (full batch, or no wait). */
  private timer: { cancel(): void } | null = null
  /** Same (room, user, clientMsgId) queued twice on this node: the second waits for the first. */
  private readonly waiting = new Map<string, Promise<Committed>>()
  private inFlightSize = 0
  private inFlightSince = 0
  /** Moving average of commit durations (ms), for `retryAfterMs`. */
  private commitMs = 10

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly opts: GroupCommitOptions,
  ) {}

  /** Drafts queued or in a transaction in flight. */
  get depth(): number {
    return this.queue.length + this.inFlightSize
  }

  /**
   * Throws UNAVAILABLE (with `retryAfterMs`) when the queue is full and `draft` would add to it
   * (a resend of a queued draft adds nothing). Call it before spending anything on the draft.
   */
  admit(draft: Draft): void {
    if (this.opts.maxQueue === undefined || this.depth < this.opts.maxQueue) return
    if (draft.clientMsgId !== null && this.waiting.has(dedupeKey(draft.roomId, draft.userId, draft.clientMsgId))) return
    this.opts.onRefused?.()
    throw new AppError('UNAVAILABLE', 'Too many messages are waiting for the database on this node; retry shortly', { retryAfterMs: this.retryAfterMs() })
  }

  /** About how long until the queue has room: the batches ahead of a new draft, each as long as commits take now. */
  private retryAfterMs(): number {
    const stalled = this.inFlightSize > 0 ? performance.now() - this.inFlightSince : 0
    const batches = Math.ceil(this.depth / this.opts.maxBatch)
    return Math.round(Math.min(RETRY_MAX_MS, Math.max(RETRY_MIN_MS, batches * Math.max(this.commitMs, stalled))))
  }

  submit(draft: Draft, gate?: Promise<unknown>): Promise<Committed> {
    const key = draft.clientMsgId === null ? null : dedupeKey(draft.roomId, draft.userId, draft.clientMsgId)
    if (key !== null) {
      const prior = this.waiting.get(key)
      if (prior) return (gate ?? Promise.resolve()).then(() => prior.then((c) => ({ ...c, duplicate: true })))
    }
    try {
      this.admit(draft)
    } catch (err) {
      gate?.catch(() => undefined)
      return Promise.reject(err)
    }
    const p = new Promise<Committed>((resolve, reject) => {
      const pending: Pending = { draft, resolve, reject, ready: gate === undefined }
      this.queue.push(pending)
      this.opts.onDepth?.(this.depth)
      if (!gate) {
        this.readyCount++
        this.schedule()
        return
      }
      gate.then(
        () => {
          pending.ready = true
          this.readyCount++
          this.schedule()
        },
        (err: unknown) => {
          const i = this.queue.indexOf(pending)
          if (i >= 0) this.queue.splice(i, 1)
          this.opts.onDepth?.(this.depth)
          reject(err)
          this.schedule() // the sender's later drafts no longer wait for this one
        },
      )
    })
    if (key !== null) {
      this.waiting.set(key, p)
      const forget = () => this.waiting.delete(key)
      p.then(forget, forget)
    }
    return p
  }

  /** Resolves when every submitted draft has been committed or failed. */
  async flush(): Promise<void> {
    while (this.queue.length > 0 || this.inFlight) {
      if (this.timer) {
        this.timer.cancel()
        this.timer = null
        this.run()
      }
      await (this.inFlight ?? new Promise((r) => setImmediate(r)))
    }
  }

  private schedule(): void {
    if (this.inFlight || this.timer || this.readyCount === 0) return
    if (this.readyCount >= this.opts.maxBatch || this.opts.maxWaitMs === 0) {
      // After this turn's I/O: drafts that arrived in the same read join, and no timer wakes the loop.
      const t = setImmediate(() => this.run())
      this.timer = { cancel: () => clearImmediate(t) }
    } else {
      const t = setTimeout(() => this.run(), this.opts.maxWaitMs)
      this.timer = { cancel: () => clearTimeout(t) }
    }
  }

  private run(): void {
    this.timer = null
    if (this.inFlight || this.readyCount === 0) return
    const batch: Pending[] = []
    const rest: Pending[] = []
    // A sender's drafts to a room go in queue order (SPEC §5.7): one whose gate is still out
    // holds back that sender's later drafts to the room, even ready ones.
    const held = new Set<string>()
    for (const p of this.queue) {
      const key = `${p.draft.roomId}\u0000${p.draft.userId}`
      if (p.ready && batch.length < this.opts.maxBatch && !held.has(key)) batch.push(p)
      else {
        if (!p.ready) held.add(key)
        rest.push(p)
      }
    }
    if (batch.length === 0) return // every ready draft waits behind its sender's earlier one
    this.queue = rest
    this.readyCount -= batch.length
    this.inFlightSize = batch.length
    this.inFlightSince = performance.now()
    this.inFlight = this.commit(batch).finally(() => {
      this.inFlight = null
      this.inFlightSize = 0
      this.opts.onDepth?.(this.depth)
      // Under load the next batch gathered while this one was in flight: it has waited long
      // enough, go at once.
      if (this.readyCount > 0) this.run()
    })
  }

  private async commit(batch: Pending[]): Promise<void> {
    const started = performance.now()
    try {
      const results = await commitBatch(this.db, batch.map((p) => p.draft), new Date())
      const ms = performance.now() - started
      this.commitMs = 0.8 * this.commitMs + 0.2 * ms
      this.opts.onBatch?.(batch.length, ms / 1000, true)
      this.settled(batch.length)
      batch.forEach((p, i) => p.resolve(results[i]))
    } catch (err) {
      this.opts.onBatch?.(batch.length, (performance.now() - started) / 1000, false)
      if (batch.length > 1 && !isUnavailable(err)) {
        // One bad draft must not fail its neighbours: retry them one by one.
        this.log.warn({ err, size: batch.length }, 'group commit failed; retrying drafts one by one')
        for (const p of batch) await this.commit([p])
        return
      }
      this.settled(batch.length)
      for (const p of batch) p.reject(err)
    }
  }

  /** Drafts leave the depth before their senders hear back, so what a sender sees next counts right. */
  private settled(n: number): void {
    this.inFlightSize = Math.max(0, this.inFlightSize - n)
    this.opts.onDepth?.(this.depth)
  }
}
