import type pg from 'pg'
import type { Socket } from 'socket.io-client'
import { ack, clientFrom, connected, devToken, median, sleep } from '../cluster/helpers.ts'

/**
 * The chaos suite's client: a steady user of the cluster that sends (each message with its own
 * `clientMsgId`, resent with the same id on UNAVAILABLE or timeout), edits, deletes and reacts,
 * keeps its own view of its rooms (messages by seq in their latest state, the highest `version`
 * per room) from what the server sends it, and resyncs with `chat:sync { lastSeq, version }`
 * after every reconnect (SPEC §4 Versions, §5.3, §5.4).
 */

export interface ViewMessage {
  id: string
  userId: string
  text: string
  edited: boolean
  deleted: boolean
  /** `emoji userId` pairs, sorted. */
  reactions: string[]
  version: number
}

interface RoomView {
  bySeq: Map<number, ViewMessage>
  seqById: Map<string, number>
  lastSeq: number
  version: number
}

export interface Acked {
  roomId: string
  clientMsgId: string
  messageId: string
  seq: number
  /** When the ack arrived (ms epoch). */
  at: number
}

const EMOJI = ['👍', '🎉', 'constructor']
const RETRYABLE = new Set(['UNAVAILABLE', 'RATE_LIMITED'])
/** Edits, deletes and reactions may race a delete (or repeat one that already applied): NOT_FOUND is an answer, not a fault. */
const TOLERATED_CHANGE_ERRORS = new Set(['NOT_FOUND'])

const reactionPairs = (reactions: Record<string, string[]> | undefined) =>
  Object.entries(reactions ?? {})
    .flatMap(([emoji, users]) => users.map((u) => `${emoji} ${u}`))
    .sort()

export class ChaosClient {
  readonly rooms = new Map<string, RoomView>()
  readonly acked: Acked[] = []
  /** Each reconnect: ms from the disconnect until its `chat:sync` answered. */
  readonly resyncMs: number[] = []
  /** UNAVAILABLE answers that carried `retryAfterMs` (the bounded commit queue, SPEC §5.6). */
  refusedWithRetry = 0
  unavailable = 0
  timeouts = 0
  /** Things a correct server never causes: unexpected error codes, `hasMore` in a resync, events for unknown messages. */
  readonly anomalies: string[] = []
  private sent = 0
  private stopping = false
  private loop: Promise<void> | null = null
  private resyncing = false
  private generation = 0
  private disconnectedAt = 0
  private retiring = false
  /**
   * Rooms started over: a `hasMore` in a `chat:sync` answer or a `room:history` (the server's
   * answer to a head that went back, D105). No fault of the suite may cause one (a synchronous
   * standby loses nothing, D117): each is an anomaly.
   */
  restarts = 0

  private constructor(
    readonly name: string,
    readonly userId: string,
    readonly socket: Socket,
    roomIds: string[],
  ) {
    for (const r of roomIds) this.rooms.set(r, { bySeq: new Map(), seqById: new Map(), lastSeq: 0, version: 0 })
    socket.on('room:history', (h: any) => {
      // "Start this room over from its newest page" (D93, D105): what the client held is dropped.
      if (h.hasMore && this.rooms.has(h.roomId)) this.restart(h.roomId, 'room:history')
      for (const m of h.messages ?? []) this.applyMessage(m)
      for (const m of h.updated ?? []) this.applyMessage(m)
    })
    socket.on('chat:message', (m: any) => this.applyMessage(m))
    socket.on('chat:edited', (e: any) => this.applyChange(e, (v) => ((v.text = e.text), (v.edited = true))))
    socket.on('chat:deleted', (e: any) => this.applyChange(e, (v) => ((v.deleted = true), (v.text = ''))))
    socket.on('chat:reaction', (e: any) =>
      this.applyChange(e, (v) => {
        if (e.reactions) v.reactions = reactionPairs(e.reactions)
        else {
          const pair = `${e.emoji} ${e.userId}`
          v.reactions = (e.on ? [...new Set([...v.reactions, pair])] : v.reactions.filter((p) => p !== pair)).sort()
        }
      }),
    )
    socket.on('disconnect', (reason) => {
      this.disconnectedAt ||= Date.now()
      // The server ended the session (not a crash): socket.io does not reconnect by itself then.
      if (reason === 'io server disconnect' && !this.retiring) setTimeout(() => this.socket.connect(), 200)
    })
    // Every connect after the first (a reconnect through nginx, or after a server-side disconnect) resyncs.
    socket.on('connect', () => void (this.started && this.resync()))
  }

  private started = false

  /** A user `name` on the socket from source octet `octet`, joined to `roomIds`. */
  static async start(url: string, name: string, octet: number, roomIds: string[], reconnection = true): Promise<ChaosClient> {
    const { token, userId } = await devToken(url, name)
    const c = new ChaosClient(name, userId, clientFrom(url, token, octet, { reconnection }), roomIds)
    await connected(c.socket)
    c.started = true
    for (const roomId of roomIds) {
      const r = await ack(c.socket, 'room:join', { roomId })
      if (r.status !== 'ok') throw new Error(`${name} join ${roomId}: ${r.code}`)
    }
    return c
  }

  private restart(roomId: string, where: string): void {
    this.restarts++
    this.anomalies.push(`${this.name}: ${where} hasMore for ${roomId}`)
    this.rooms.set(roomId, { bySeq: new Map(), seqById: new Map(), lastSeq: 0, version: 0 })
  }

  private applyMessage(m: any): void {
    const room = this.rooms.get(m.roomId)
    if (!room) return
    room.version = Math.max(room.version, m.version)
    room.lastSeq = Math.max(room.lastSeq, m.seq)
    const had = room.bySeq.get(m.seq)
    if (had && had.version > m.version) return
    room.bySeq.set(m.seq, {
      id: m.id,
      userId: m.userId,
      text: m.text,
      edited: m.editedAt !== undefined,
      deleted: m.deletedAt !== undefined,
      reactions: reactionPairs(m.reactions),
      version: m.version,
    })
    room.seqById.set(m.id, m.seq)
  }

  private applyChange(e: any, change: (v: ViewMessage) => void): void {
    const room = this.rooms.get(e.roomId)
    if (!room) return
    room.version = Math.max(room.version, e.version)
    const seq = room.seqById.get(e.messageId)
    const v = seq === undefined ? undefined : room.bySeq.get(seq)
    if (!v) return void this.anomalies.push(`${this.name}: change v${e.version} for a message it does not hold (${e.messageId})`)
    // Older than the state it holds: skip. Equal is applied: a recovered change arrives as
    // `chat:edited` plus a whole-map `chat:reaction`, both with the message's version (D92), and
    // applying a live event again is harmless (every change sets a state).
    if (e.version < v.version) return
    change(v)
    v.version = e.version
  }

  /** `chat:sync` with `{ lastSeq, version }` per room, retried until it answers; its answer applied in the ack callback. */
  private async resync(): Promise<void> {
    const gen = ++this.generation
    this.resyncing = true
    try {
      for (let attempt = 0; attempt < 100 && gen === this.generation; attempt++) {
        if (!this.socket.connected) return // the next connect starts again
        const point = Object.fromEntries([...this.rooms].map(([id, r]) => [id, { lastSeq: r.lastSeq, version: r.version }]))
        const ok = await new Promise<boolean>((resolve) => {
          this.socket.timeout(5000).emit('chat:sync', { rooms: point }, (err: Error | null, r: any) => {
            if (err || r?.status !== 'ok') return resolve(false)
            const restarted = new Set<string>(r.hasMore ?? [])
            for (const id of this.rooms.keys()) {
              if (restarted.has(id)) this.restart(id, 'resync')
              for (const m of r.rooms?.[id] ?? []) this.applyMessage(m)
              for (const m of r.updated?.[id] ?? []) this.applyMessage(m)
            }
            if (r.errors) this.anomalies.push(`${this.name}: resync errors ${JSON.stringify(r.errors)}`)
            this.resyncMs.push(Date.now() - this.disconnectedAt)
            this.disconnectedAt = 0
            resolve(true)
          })
        })
        if (ok) return
        await sleep(Math.min(1000, 100 * (attempt + 1)))
      }
    } finally {
      if (gen === this.generation) this.resyncing = false
    }
  }

  /** Connected and caught up: what a client waits for before it acts again. */
  get ready(): boolean {
    return this.socket.connected && !this.resyncing
  }

  private async untilReady(): Promise<void> {
    const until = Date.now() + 60_000
    while (!this.ready) {
      if (Date.now() > until) throw new Error(`${this.name} not reconnected and resynced within 60 s`)
      await sleep(50)
    }
  }

  /** Emits until the server answers something other than UNAVAILABLE / RATE_LIMITED / a timeout. */
  private async request(event: string, payload: object): Promise<any> {
    const until = Date.now() + 90_000
    for (;;) {
      if (Date.now() > until) throw new Error(`${this.name}: ${event} ${JSON.stringify(payload)} unanswered for 90 s`)
      await this.untilReady()
      let r: any
      try {
        r = await ack(this.socket, event, payload, 3000)
      } catch {
        this.timeouts++ // no answer in time: the node may be gone or stalled; send the same again
        continue
      }
      if (r.status === 'error' && RETRYABLE.has(r.code)) {
        this.unavailable++
        if (typeof r.retryAfterMs === 'number') this.refusedWithRetry++
        await sleep(Math.min(2000, r.retryAfterMs ?? 200))
        continue
      }
      return r
    }
  }

  async send(roomId: string): Promise<void> {
    const n = this.sent++
    const clientMsgId = `${this.name}-${n}`
    const r = await this.request('chat:message', { roomId, text: `${this.name} ${n}`, clientMsgId })
    if (r.status !== 'ok') return void this.anomalies.push(`${this.name}: send ${clientMsgId}: ${r.code}`)
    this.acked.push({ roomId, clientMsgId, messageId: r.messageId, seq: r.seq, at: Date.now() })
  }

  private pick<T>(xs: T[]): T | undefined {
    return xs[Math.floor(Math.random() * xs.length)]
  }

  private async change(event: string, payload: object): Promise<void> {
    const r = await this.request(event, payload)
    if (r.status !== 'ok' && !TOLERATED_CHANGE_ERRORS.has(r.code)) this.anomalies.push(`${this.name}: ${event}: ${r.code}`)
  }

  /** One action: mostly a send, else an edit or delete of an own message, or a reaction toggle. */
  private async act(): Promise<void> {
    const roomId = this.pick([...this.rooms.keys()])!
    const room = this.rooms.get(roomId)!
    const live = [...room.bySeq.values()].filter((m) => !m.deleted)
    const mine = live.filter((m) => m.userId === this.userId)
    const dice = Math.random()
    const target = dice < 0.6 ? undefined : dice < 0.95 ? this.pick(live) : this.pick(mine)
    if (!target) return this.send(roomId)
    if (dice < 0.75 && target.userId === this.userId) return this.change('chat:edit', { roomId, messageId: target.id, text: `${target.text.split(' ·')[0]} · edit ${Date.now() % 10_000}` })
    if (dice < 0.95) {
      const emoji = this.pick(EMOJI)!
      return this.change('chat:react', { roomId, messageId: target.id, emoji, on: !target.reactions.includes(`${emoji} ${this.userId}`) })
    }
    return this.change('chat:delete', { roomId, messageId: target.id })
  }

  /** Starts acting every `gapMs` (± half), one action at a time, until `stop()`. */
  startLoad(gapMs: number): void {
    this.loop = (async () => {
      while (!this.stopping) {
        await this.act()
        await sleep(gapMs / 2 + Math.random() * gapMs)
      }
    })()
  }

  /** `n` sends at once, each resent until acked (fills a node's commit queue). */
  burst(n: number): Promise<void> {
    const roomId = [...this.rooms.keys()][0]
    return Promise.all(Array.from({ length: n }, () => this.send(roomId))).then(() => undefined)
  }

  /** Stops the load after the action in progress has been answered. */
  async stopLoad(): Promise<void> {
    this.stopping = true
    await this.loop
  }

  /** Leaves for good without saying so to the rooms: the socket just goes away. */
  retire(): void {
    this.retiring = true
    this.socket.io.reconnection(false)
    this.socket.disconnect()
  }

  view(roomId: string): { messages: (ViewMessage & { seq: number })[]; version: number } {
    const room = this.rooms.get(roomId)!
    const messages = [...room.bySeq].sort(([a], [b]) => a - b).map(([seq, m]) => ({ seq, ...m, reactions: tombstoneless(m) }))
    return { messages, version: room.version }
  }
}

/**
 * A tombstone's reactions are not compared: the reactions table keeps them after a delete and
 * history/sync show them on the tombstone, but a recovered delete is only `chat:deleted` (D92),
 * so a client that missed a reaction before the delete never learns it. Reported; D111.
 */
const tombstoneless = (m: ViewMessage) => (m.deleted ? [] : m.reactions)

/** The database's truth for a room, in the shape of a client's view. */
export async function storedView(db: pg.Pool, roomId: string): Promise<{ messages: (ViewMessage & { seq: number })[]; version: number }> {
  const rows = (
    await db.query(
      `select seq, id, user_id, text, edited_at is not null as edited, deleted_at is not null as deleted, version from messages where room_id = $1 order by seq`,
      [roomId],
    )
  ).rows
  const reactions = (await db.query('select message_id, emoji, user_id from reactions where room_id = $1', [roomId])).rows
  const byMessage = new Map<string, string[]>()
  for (const r of reactions) byMessage.set(r.message_id, [...(byMessage.get(r.message_id) ?? []), `${r.emoji} ${r.user_id}`])
  const room = (await db.query('select version from rooms where id = $1', [roomId])).rows[0]
  return {
    version: Number(room?.version ?? 0),
    messages: rows.map((r) => ({
      seq: Number(r.seq),
      id: r.id,
      userId: r.user_id,
      text: r.text,
      edited: r.edited,
      deleted: r.deleted,
      reactions: r.deleted ? [] : (byMessage.get(r.id) ?? []).sort(),
      version: Number(r.version),
    })),
  }
}

/** Acked messages against the database: each acked clientMsgId stored exactly once, with the id and seq its ack named. */
export async function durability(db: pg.Pool, roomIds: string[], acked: Acked[]) {
  const rows = (await db.query('select room_id, seq, id, user_id, client_msg_id from messages where room_id = any($1)', [roomIds])).rows
  const byKey = new Map<string, any[]>()
  for (const r of rows) {
    const k = `${r.room_id}\u0000${r.client_msg_id}`
    byKey.set(k, [...(byKey.get(k) ?? []), r])
  }
  const lostAcks: Acked[] = []
  for (const a of acked) {
    const found = byKey.get(`${a.roomId}\u0000${a.clientMsgId}`) ?? []
    if (!found.some((r) => r.id === a.messageId && Number(r.seq) === a.seq)) lostAcks.push(a)
  }
  const lost = lostAcks.length
  const duplicated = [...byKey.values()].reduce((n, list) => n + list.length - 1, 0)
  const ackedKeys = new Set(acked.map((a) => `${a.roomId}\u0000${a.clientMsgId}`))
  const unacked = [...byKey.keys()].filter((k) => !ackedKeys.has(k)).length
  return { rows: rows.length, lost, lostAcks, duplicated, unacked }
}

export interface FaultRow {
  /** The Redis setup the fault ran on (classic, sharded, cluster). */
  setup: string
  fault: string
  acked: number
  lost: number
  duplicated: number
  reconnects: number
  'resync p50 ms': number | string
  'resync max ms': number | string
  'presence ms': number
  unavailable: number
  'refused w/ retryAfterMs': number
}

export function resyncStats(clients: ChaosClient[]): { n: number; p50: number | string; max: number | string } {
  const all = clients.flatMap((c) => c.resyncMs)
  return { n: all.length, p50: all.length ? median(all) : '-', max: all.length ? Math.max(...all) : '-' }
}

export function markdownTable(rows: FaultRow[]): string {
  if (rows.length === 0) return ''
  const cols = Object.keys(rows[0]) as (keyof FaultRow)[]
  const line = (cells: unknown[]) => `| ${cells.join(' | ')} |`
  return [line(cols), line(cols.map(() => '---')), ...rows.map((r) => line(cols.map((c) => r[c])))].join('\n')
}
