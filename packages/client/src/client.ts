/**
 * The client: one Socket.IO Manager for /chat, /notifications and /admin, tokens, HTTP.
 * @packageDocumentation
 */
import { Manager, type ManagerOptions, type Socket } from 'socket.io-client'
import { SwitchboardError } from './errors.ts'
import { decodeClaims, type TokenClaims } from './jwt.ts'
import {
  MAX_SYNC_ROOMS,
  ROOM_ID,
  type AdminClientEvents,
  type AdminServerEvents,
  type AnnounceEvent,
  type Attachment,
  type ChatClientEvents,
  type ChatServerEvents,
  type CreateRoomBody,
  type CreatedRoom,
  type Message,
  type Notification,
  type NotificationsClientEvents,
  type NotificationsServerEvents,
  type OnlineUser,
  type RoomSummary,
  type StatsOk,
  type SyncOk,
  type HandshakeAuth,
} from './protocol.ts'
import { backoffMs, RoomHandle, type EmitResult, type RoomHost } from './room.ts'
import { ValueStore, type Store } from './store.ts'

/** Options of {@link SwitchboardClient}. */
export interface ClientOptions {
  /** Base URL of the cluster (nginx), e.g. `http://127.0.0.1:8080`. Default: the page's origin (browser). */
  url?: string
  /** A token, or a provider called at connect, on AUTH_EXPIRED, on an HTTP 401 and before expiry (refresh). */
  token: string | (() => string | Promise<string>)
  /** Send `auth:refresh` (on every open namespace) this long before the JWT's exp (at most 90 % of its remaining life). Default 60_000. */
  refreshBeforeMs?: number
  /** Open /notifications (default true). */
  notifications?: boolean
  /** Open /admin (default false: only for admins). */
  admin?: boolean
  /** Passed to socket.io-client's Manager (transports, `localAddress`/`agent` in Node, extraHeaders...). */
  socket?: Partial<ManagerOptions>
  /** Ack timeout per emit. Default 10_000. */
  ackTimeoutMs?: number
  /** fetch to use (Node tests bind source addresses). Default `globalThis.fetch`. */
  fetch?: typeof fetch
}

/** `idle` before connect(); `connecting` until the first connect; `reconnecting` after a drop; `closed` after close(). */
export type ConnectionStatus = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed'

/** The /chat connection's state. */
export interface ConnectionState {
  status: ConnectionStatus
  /** Reconnect attempt while reconnecting. */
  attempt: number
  /** The last connect_error (`AUTH_*`, `RATE_LIMITED`...), cleared on connect. */
  error: { code: string; message: string } | null
  /** From the token's claims (not verified here: the server does). */
  me: { userId: string; username: string; roles: string[] } | null
}

/** Online users who share a room with me (and me, while connected). */
export interface PresenceState {
  online: ReadonlyMap<string, string>
}

/** Pushes of /notifications, newest first (at most 200). */
export interface NotificationsState {
  items: readonly Notification[]
  /** Received since the last `markSeen()`. */
  unseen: number
}

/** My rooms (`GET /api/rooms`), unread counts kept live. */
export interface RoomsState {
  rooms: readonly RoomSummary[]
  loading: boolean
  /** The last refresh's failure, cleared by a successful one. */
  error: { code: string; message: string } | null
}

type ChatSocket = Socket<ChatServerEvents, ChatClientEvents>
type NotificationsSocket = Socket<NotificationsServerEvents, NotificationsClientEvents>
type AdminSocket = Socket<AdminServerEvents, AdminClientEvents>
/** Any of the three namespaces, for what they share (connect, errors, acks). */
type AnySocket = Socket
/** `emit` with an ack under `timeout()`, untyped: the SDK narrows the answer itself. */
type TimedEmitter = { emit(event: string, payload: unknown, ack: (err: unknown, res: unknown) => void): void }

const MAX_NOTIFICATIONS = 200
/** `crypto.randomUUID`, or (outside a secure context, where browsers leave it out) a v4 UUID from getRandomValues. */
export function uuid(): string {
  const c = globalThis.crypto
  if (typeof c?.randomUUID === 'function') return c.randomUUID()
  const b = c.getRandomValues(new Uint8Array(16))
  b[6] = (b[6] & 0x0f) | 0x40
  b[8] = (b[8] & 0x3f) | 0x80
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

/**
 * A Switchboard client: one connection (a Socket.IO `Manager`) multiplexing `/chat`,
 * `/notifications` and (with `admin: true`) `/admin`, with immutable, subscribable state.
 *
 * Guarantees: after every reconnect each joined room is brought up to date with one `chat:sync`
 * (`{ lastSeq, version }`), merged by seq and version (no duplicate, never an older version over a
 * newer one); a live seq gap triggers a sync of that room; each room's outbox delivers its
 * messages once each (clientMsgId) and in send order; `close()` leaves no timer or socket.
 */
export class SwitchboardClient {
  private readonly opts: ClientOptions
  private readonly baseUrl: string
  private readonly fetchFn: typeof fetch
  private readonly refreshBeforeMs: number
  private manager: Manager | null = null
  private chat: ChatSocket | null = null
  private notif: NotificationsSocket | null = null
  private adminSocket: AdminSocket | null = null
  private isClosed = false
  private readonly handles = new Map<string, RoomHandle>()
  private readonly announceListeners = new Set<(e: AnnounceEvent) => void>()
  private tokenValue: string | null = null
  private tokenPromise: Promise<string> | null = null
  private claims: TokenClaims | null = null
  private refreshTimer?: ReturnType<typeof setTimeout>
  private roomsTimer?: ReturnType<typeof setTimeout>
  /** Message ids already counted in the rooms list's unread (live or pushed), oldest first. */
  private readonly counted = new Set<string>()
  private syncTimer?: ReturnType<typeof setTimeout>
  private readonly syncQueue = new Set<RoomHandle>()
  private syncAttempt = 0
  private readonly retryTimers = new Map<AnySocket, ReturnType<typeof setTimeout>>()
  private readonly retryAttempts = new Map<AnySocket, number>()
  private readonly connectionStore: ValueStore<ConnectionState>
  private readonly presenceStore = new ValueStore<PresenceState>({ online: new Map() })
  private readonly notificationsStore = new ValueStore<NotificationsState>({ items: [], unseen: 0 })
  private readonly roomsStore = new ValueStore<RoomsState>({ rooms: [], loading: false, error: null })

  /** The /chat connection. */
  readonly connection: Store<ConnectionState>
  /** Who is online. */
  readonly presence: Store<PresenceState>
  /** /notifications pushes; `markSeen()` zeroes `unseen`. */
  readonly notifications: Store<NotificationsState> & { markSeen(): void }
  /** My rooms; `refresh()` reloads `GET /api/rooms`. */
  readonly rooms: Store<RoomsState> & { refresh(): Promise<void> }
  /** /admin calls (`admin: true` and a token with the `admin` role). */
  readonly admin: { stats(): Promise<StatsOk>; kick(userId: string): Promise<void>; announce(text: string): Promise<void> }

  /** Creates the client; nothing connects until {@link SwitchboardClient.connect}. */
  constructor(opts: ClientOptions) {
    if (typeof opts.token !== 'string' && typeof opts.token !== 'function') throw new TypeError('`token` must be a string or a function')
    this.opts = opts
    const origin = (globalThis as { location?: { origin?: string } }).location?.origin
    const url = opts.url ?? origin
    if (!url) throw new TypeError('`url` must be given outside a browser')
    this.baseUrl = url.replace(/\/+$/, '')
    const f = opts.fetch ?? globalThis.fetch
    if (typeof f !== 'function') throw new TypeError('`fetch` must be given where globalThis.fetch is missing')
    this.fetchFn = opts.fetch ?? ((input, init) => globalThis.fetch(input, init))
    this.refreshBeforeMs = opts.refreshBeforeMs ?? 60_000
    if (typeof opts.token === 'string') this.setToken(opts.token)
    this.connectionStore = new ValueStore<ConnectionState>({ status: 'idle', attempt: 0, error: null, me: this.meOf(this.claims) })
    this.connection = { get: this.connectionStore.get, subscribe: this.connectionStore.subscribe }
    this.presence = { get: this.presenceStore.get, subscribe: this.presenceStore.subscribe }
    this.notifications = {
      get: this.notificationsStore.get,
      subscribe: this.notificationsStore.subscribe,
      markSeen: () => this.notificationsStore.update((s) => (s.unseen === 0 ? s : { ...s, unseen: 0 })),
    }
    this.rooms = { get: this.roomsStore.get, subscribe: this.roomsStore.subscribe, refresh: () => this.refreshRooms() }
    this.admin = {
      stats: () => this.adminCall<StatsOk>('admin:stats', {}).then(({ nodes, sockets }) => ({ nodes, sockets })),
      kick: (userId) => this.adminCall('admin:kick', { userId }).then(() => undefined),
      announce: (text) => this.adminCall('admin:announce', { text }).then(() => undefined),
    }
  }

  // ---------- tokens ----------

  private meOf(c: TokenClaims | null): ConnectionState['me'] {
    return c ? { userId: c.userId, username: c.username, roles: [...c.roles] } : null
  }

  private setToken(token: string): void {
    const previous = this.tokenValue
    this.tokenValue = token
    this.claims = decodeClaims(token)
    if (this.connectionStore) {
      const me = this.meOf(this.claims)
      const cur = this.connectionStore.get().me
      if (JSON.stringify(cur) !== JSON.stringify(me)) this.setConnection({ me })
      if (me) for (const h of this.handles.values()) h._setMyName(me.username)
    }
    this.scheduleRefresh()
    if (previous !== null && previous !== token) this.sendRefresh(token)
  }

  /** The token to use: cached unless `force` (or near its expiry); a provider is asked otherwise. */
  private getToken(force = false): Promise<string> {
    const t = this.opts.token
    if (typeof t === 'string') return Promise.resolve(t)
    const exp = this.claims?.exp
    const stale = exp !== undefined && exp * 1000 < Date.now() + 5000
    if (!force && !stale && this.tokenValue !== null) return Promise.resolve(this.tokenValue)
    if (this.tokenPromise) return this.tokenPromise
    const p = Promise.resolve()
      .then(() => t())
      .then(
        (token) => {
          if (typeof token !== 'string' || token === '') throw new SwitchboardError('AUTH_REQUIRED', 'The token provider returned no token')
          if (this.tokenPromise === p) this.tokenPromise = null
          if (!this.isClosed) this.setToken(token)
          return token
        },
        (err: unknown) => {
          if (this.tokenPromise === p) this.tokenPromise = null
          throw err
        },
      )
    this.tokenPromise = p
    return p
  }

  private scheduleRefresh(): void {
    clearTimeout(this.refreshTimer)
    this.refreshTimer = undefined
    const exp = this.claims?.exp
    if (this.isClosed || typeof this.opts.token !== 'function' || exp === undefined || !this.manager) return
    // Never more than 90 % of the token's remaining life early: a token shorter-lived than
    // refreshBeforeMs is refreshed once per lifetime, not in a loop.
    const left = exp * 1000 - Date.now()
    const wait = Math.max(1000, left - Math.min(this.refreshBeforeMs, 0.9 * left))
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined
      this.getToken(true).catch(() => {
        // The provider failed: try again shortly (the old token still works until exp).
        if (!this.isClosed) this.refreshTimer = setTimeout(() => this.scheduleRefresh(), 5000)
      })
    }, Math.min(wait, 2 ** 31 - 1))
  }

  /** `auth:refresh` on every connected namespace. */
  private sendRefresh(token: string): void {
    for (const s of [this.chat, this.notif, this.adminSocket] as (AnySocket | null)[]) {
      if (!s?.connected) continue
      void this.emitOn<{ expiresAt: string | null }>(s, 'auth:refresh', { token }).then((res) => {
        if (!res.ok && res.code !== 'DISCONNECTED' && !this.isClosed) this.setConnection({ error: { code: res.code, message: res.error } })
      })
    }
  }

  // ---------- connection ----------

  /** Opens the connection (idempotent). */
  connect(): void {
    if (this.manager || this.isClosed) return
    const m = new Manager(this.baseUrl, {
      autoConnect: false,
      reconnectionDelay: 500,
      reconnectionDelayMax: 5000,
      randomizationFactor: 0.5,
      ...this.opts.socket,
    })
    this.manager = m
    this.setConnection({ status: 'connecting' })
    const auth = (cb: (data: object) => void) => {
      this.getToken().then(
        // `batches`: a room's messages may come several to a frame (`chat:messages`).
        (token) => cb({ token, batches: true } satisfies HandshakeAuth),
        (err: unknown) => {
          this.setConnection({ error: { code: 'AUTH_REQUIRED', message: `The token provider failed: ${String(err)}` } })
          cb({})
        },
      )
    }
    m.on('reconnect_attempt', (attempt) => {
      if (!this.chat?.connected) this.setConnection({ status: 'reconnecting', attempt })
    })

    const chat: ChatSocket = m.socket('/chat', { auth })
    this.chat = chat
    this.wire(chat as unknown as AnySocket, () => this.onChatConnect(), (reason) => this.onChatDisconnect(reason))
    chat.on('room:history', (h) => this.handles.get(h.roomId)?._onHistory(h))
    chat.on('chat:message', (msg) => this.onLiveMessage(msg))
    chat.on('chat:messages', (p) => {
      for (const msg of p.messages) this.onLiveMessage(msg)
    })
    chat.on('chat:edited', (e) => this.handles.get(e.roomId)?._onEdited(e))
    chat.on('chat:deleted', (e) => this.handles.get(e.roomId)?._onDeleted(e))
    chat.on('chat:reaction', (e) => this.handles.get(e.roomId)?._onReaction(e))
    chat.on('chat:typing', (t) => this.handles.get(t.roomId)?._onTyping(t))
    chat.on('chat:read', (r) => {
      this.handles.get(r.roomId)?._onRead(r)
      if (r.userId === this.claims?.userId) this.readAcked(r.roomId, r.seq)
    })
    chat.on('presence:list', (users) => this.setOnline(users, true))
    chat.on('presence:online', (u) => this.setOnline([u], true))
    chat.on('presence:offline', (u) => this.setOnline([u], false))
    chat.on('room:user-joined', (u) => this.setOnline([u], true))
    chat.on('admin:announce', (e) => {
      for (const fn of [...this.announceListeners]) fn(e)
    })
    chat.connect()

    if (this.opts.notifications !== false) {
      const n: NotificationsSocket = m.socket('/notifications', { auth })
      this.notif = n
      this.wire(n as unknown as AnySocket)
      n.on('notification', (x) => this.onNotification(x))
      n.connect()
    }
    if (this.opts.admin === true) {
      const a: AdminSocket = m.socket('/admin', { auth })
      this.adminSocket = a
      this.wire(a as unknown as AnySocket)
      a.connect()
    }
    this.scheduleRefresh()
  }

  /** connect_error and server disconnects: Socket.IO does not retry these itself, so the SDK does. */
  private wire(s: AnySocket, onConnect?: () => void, onDisconnect?: (reason: string) => void): void {
    s.on('connect', () => {
      this.retryAttempts.delete(s)
      onConnect?.()
    })
    s.on('disconnect', (reason) => {
      onDisconnect?.(reason)
      if (this.isClosed || reason === 'io client disconnect') return
      // The server ended the session (token expiry, an admin's kick): said in `error`, then
      // again after a backoff, with a fresh token from a provider (an expired fixed one is
      // refused with AUTH_EXPIRED, which ends the retries).
      if (reason === 'io server disconnect') {
        if (s === this.chat) this.setConnection({ error: { code: 'SERVER_DISCONNECT', message: 'The server ended the session' } })
        this.retry(s, true)
      }
    })
    s.on('connect_error', (err: Error & { data?: { code?: string } }) => {
      if (this.isClosed) return
      const code = err.data?.code ?? 'CONNECT_ERROR'
      if (s === this.chat) this.setConnection({ error: { code, message: err.message } })
      if (s.active) return // a transport failure: the Manager reconnects
      // Refused by the server: a provider is asked again; a fixed token that is refused stays refused.
      const fixed = typeof this.opts.token === 'string'
      if (code.startsWith('AUTH_') && fixed) return
      if (code === 'FORBIDDEN') return
      this.retry(s, code.startsWith('AUTH_'))
    })
  }

  private retry(s: AnySocket, newToken: boolean): void {
    clearTimeout(this.retryTimers.get(s))
    const n = this.retryAttempts.get(s) ?? 0
    this.retryAttempts.set(s, n + 1)
    const timer = setTimeout(
      () => {
        this.retryTimers.delete(s)
        if (this.isClosed) return
        const go = () => !this.isClosed && !s.connected && s.connect()
        if (newToken && typeof this.opts.token === 'function') this.getToken(true).then(go, go)
        else go()
      },
      backoffMs(n + 1),
    )
    this.retryTimers.set(s, timer)
  }

  private setConnection(patch: Partial<ConnectionState>): void {
    if (this.isClosed && patch.status !== 'closed') return
    const cur = this.connectionStore.get()
    if ((Object.keys(patch) as (keyof ConnectionState)[]).every((k) => Object.is(patch[k], cur[k]))) return
    this.connectionStore.set({ ...cur, ...patch })
  }

  private onChatConnect(): void {
    const me = this.claims
    this.setConnection({ status: 'connected', attempt: 0, error: null })
    this.presenceStore.set({ online: me ? new Map([[me.userId, me.username]]) : new Map() })
    void this.refreshRooms().catch(() => undefined)
    // Every followed room: a sync (batched) when it was joined before, else a join; then the outboxes.
    for (const h of this.handles.values()) h._start()
    for (const h of this.handles.values()) h._pump()
  }

  private onChatDisconnect(reason: string): void {
    if (this.isClosed) return
    for (const h of this.handles.values()) h._disconnected()
    clearTimeout(this.syncTimer)
    this.syncTimer = undefined
    this.syncQueue.clear()
    if (reason !== 'io client disconnect') this.setConnection({ status: 'reconnecting' })
  }

  /** Closes every socket and timer; waiting sends and joins reject with `CLOSED`. */
  async close(): Promise<void> {
    if (this.isClosed) return
    this.isClosed = true
    clearTimeout(this.refreshTimer)
    clearTimeout(this.roomsTimer)
    clearTimeout(this.syncTimer)
    for (const t of this.retryTimers.values()) clearTimeout(t)
    this.retryTimers.clear()
    for (const h of this.handles.values()) h._close()
    const m = this.manager
    this.manager = null
    const sockets = [this.chat, this.notif, this.adminSocket].filter((s): s is NonNullable<typeof s> => s !== null)
    this.chat = this.notif = this.adminSocket = null
    if (m) {
      m.reconnection(false)
      const engine = (m as unknown as { engine?: { readyState?: string; once(ev: string, fn: () => void): void } }).engine
      const closedEngine =
        engine && engine.readyState !== 'closed'
          ? new Promise<void>((resolve) => {
              const t = setTimeout(resolve, 1000)
              engine.once('close', () => (clearTimeout(t), resolve()))
            })
          : Promise.resolve()
      for (const s of sockets) {
        s.disconnect()
        s.removeAllListeners()
      }
      ;(m as unknown as { _close?: () => void })._close?.()
      m.removeAllListeners()
      await closedEngine
    }
    this.setConnection({ status: 'closed' })
  }

  // ---------- emits ----------

  /**
   * Emits with an ack and a timeout. The answer is handed to `onAck` synchronously, when its
   * packet is read, before any event that follows it on the wire is dispatched (a promise's
   * continuation would run only after those): what a sync or join answers is merged first.
   */
  private emitOn<T extends object>(
    s: { connected: boolean; timeout(ms: number): unknown } | null,
    event: string,
    payload: unknown,
    onAck?: (r: EmitResult<T>) => void,
  ): Promise<EmitResult<T>> {
    const settle = (r: EmitResult<T>): EmitResult<T> => {
      onAck?.(r)
      return r
    }
    if (!s?.connected) return Promise.resolve(settle({ ok: false, code: 'DISCONNECTED', error: 'Not connected' }))
    const timed = s.timeout(this.opts.ackTimeoutMs ?? 10_000) as unknown as TimedEmitter
    return new Promise((resolve) => {
      timed.emit(event, payload, (err: unknown, res: unknown) => {
        let out: EmitResult<T>
        if (err) out = s.connected ? { ok: false, code: 'TIMEOUT', error: 'No answer from the server in time' } : { ok: false, code: 'DISCONNECTED', error: 'Connection lost' }
        else {
          const r = res as { status?: string; code?: string; error?: string; retryAfterMs?: number } | null
          if (r && r.status === 'ok') out = { ok: true, value: r as T }
          else {
            out = { ok: false, code: typeof r?.code === 'string' ? r.code : 'INTERNAL', error: typeof r?.error === 'string' ? r.error : 'Malformed ack' }
            if (typeof r?.retryAfterMs === 'number') out.retryAfterMs = r.retryAfterMs
          }
        }
        try {
          settle(out)
        } finally {
          resolve(out)
        }
      })
    })
  }

  private async adminCall<T extends object>(event: string, payload: unknown): Promise<T> {
    if (!this.adminSocket) throw new SwitchboardError('FORBIDDEN', 'Create the client with `admin: true` for /admin')
    const res = await this.emitOn<T>(this.adminSocket, event, payload)
    if (!res.ok) throw new SwitchboardError(res.code, res.error, { retryAfterMs: res.retryAfterMs })
    return res.value
  }

  // ---------- rooms ----------

  /**
   * The handle of room `roomId` (the same one for the same id); it is not joined until `join()`.
   * Throws a {@link SwitchboardError} `BAD_REQUEST` for an id outside {@link ROOM_ID}.
   */
  room(roomId: string): RoomHandle {
    if (typeof roomId !== 'string' || !ROOM_ID.test(roomId)) throw new SwitchboardError('BAD_REQUEST', 'Room ids are 1–128 characters of letters, digits, ":", "_", "." or "-"')
    let h = this.handles.get(roomId)
    if (!h) this.handles.set(roomId, (h = new RoomHandle(roomId, this.host)))
    return h
  }

  private readonly host: RoomHost = {
    isClosed: () => this.isClosed,
    me: () => this.claims?.userId,
    chatConnected: () => this.chat?.connected === true,
    emit: (event, payload, onAck) => this.emitOn(this.chat, event, payload, onAck),
    volatileEmit: (event, payload) => {
      ;(this.chat?.volatile as unknown as { emit(e: string, p: unknown): void } | undefined)?.emit(event, payload)
    },
    http: (path) => this.http(path),
    requestSync: (room) => this.queueSync(room),
    online: (users) => this.setOnline(users, true),
    roomMessages: (roomId, messages) => this.countLive(roomId, messages),
    readAcked: (roomId, seq) => this.readAcked(roomId, seq),
    lastReadSeq: (roomId) => this.roomsStore.get().rooms.find((r) => r.id === roomId)?.lastReadSeq ?? 0,
    uuid,
  }

  private queueSync(room: RoomHandle): void {
    this.syncQueue.add(room)
    room._syncing()
    if (this.syncTimer === undefined) this.syncTimer = setTimeout(() => void this.runSync(), 0)
  }

  /** One `chat:sync` for the queued rooms (at most MAX_SYNC_ROOMS each). */
  private async runSync(): Promise<void> {
    this.syncTimer = undefined
    const rooms = [...this.syncQueue].filter((h) => h.following)
    this.syncQueue.clear()
    for (let i = 0; i < rooms.length; i += MAX_SYNC_ROOMS) {
      const batch = rooms.slice(i, i + MAX_SYNC_ROOMS)
      const points: Record<string, { lastSeq: number; version: number }> = Object.create(null)
      for (const h of batch) points[h.id] = h._syncPoint()
      // Merged in the ack callback: before any live event that follows the answer.
      const res = await this.emitOn<SyncOk>(this.chat, 'chat:sync', { rooms: points }, (r) => {
        if (!r.ok || this.isClosed) return
        this.syncAttempt = 0
        const { rooms: got, updated, hasMore, errors } = r.value
        const more = new Set(Array.isArray(hasMore) ? hasMore : [])
        for (const h of batch) {
          const own = <T>(o: Record<string, T> | undefined): T | undefined => (o && Object.hasOwn(o, h.id) ? o[h.id] : undefined)
          h._applySync(own(got) ?? [], own(updated) ?? [], more.has(h.id), own(errors))
        }
      })
      if (this.isClosed) return
      if (!res.ok) {
        if (res.code === 'DISCONNECTED') return // the next connect syncs again
        if (res.code === 'BAD_REQUEST' || res.code === 'FORBIDDEN') {
          for (const h of batch) h._syncFailed()
          continue
        }
        const wait = res.code === 'RATE_LIMITED' ? (res.retryAfterMs ?? 1000) : backoffMs(this.syncAttempt++, res.retryAfterMs ?? 0)
        for (const h of batch) this.syncQueue.add(h)
        clearTimeout(this.syncTimer)
        this.syncTimer = setTimeout(() => void this.runSync(), wait)
      }
    }
  }

  private onLiveMessage(m: Message): void {
    const h = this.handles.get(m.roomId)
    // A room no longer followed (its view unmounted: leave() without membership) still counts in the rooms list.
    if (h?.following) h._onMessage(m)
    else this.countLive(m.roomId, [m])
  }

  /** The rooms list follows live messages: lastSeq and unread (others' messages after my read mark). */
  private countLive(roomId: string, messages: readonly Message[]): void {
    const me = this.claims?.userId
    const s = this.roomsStore.get()
    const i = s.rooms.findIndex((r) => r.id === roomId)
    if (i < 0) {
      if (!s.loading) this.scheduleRoomsRefresh()
      return
    }
    const r = s.rooms[i]
    let { lastSeq, unread } = r
    for (const m of messages) {
      if (m.seq <= lastSeq) continue
      lastSeq = m.seq
      // A mention or DM push may have counted this message already (the two namespaces' events
      // arrive in either order): each message counts once.
      if (m.userId !== me && m.seq > r.lastReadSeq && this.countOnce(m.id)) unread++
    }
    if (lastSeq === r.lastSeq && unread === r.unread) return
    const rooms = [...s.rooms]
    rooms[i] = { ...r, lastSeq, unread }
    this.roomsStore.set({ ...s, rooms })
  }

  /** True the first time a message id is counted as unread (a bounded memory of the last ids). */
  private countOnce(messageId: string): boolean {
    if (this.counted.has(messageId)) return false
    this.counted.add(messageId)
    if (this.counted.size > 2000) this.counted.delete(this.counted.values().next().value as string)
    return true
  }

  private readAcked(roomId: string, seq: number): void {
    const s = this.roomsStore.get()
    const i = s.rooms.findIndex((r) => r.id === roomId)
    if (i < 0 || s.rooms[i].lastReadSeq >= seq) return
    const r = s.rooms[i]
    const rooms = [...s.rooms]
    rooms[i] = { ...r, lastReadSeq: seq, lastSeq: Math.max(r.lastSeq, seq), unread: seq >= r.lastSeq ? 0 : Math.min(r.unread, r.lastSeq - seq) }
    this.roomsStore.set({ ...s, rooms })
    this.handles.get(roomId)?._recount()
  }

  private scheduleRoomsRefresh(): void {
    if (this.roomsTimer !== undefined || this.isClosed) return
    this.roomsTimer = setTimeout(() => {
      this.roomsTimer = undefined
      void this.refreshRooms().catch(() => undefined)
    }, 250)
  }

  private async refreshRooms(): Promise<void> {
    if (this.isClosed) return
    this.roomsStore.update((s) => (s.loading ? s : { ...s, loading: true }))
    try {
      const body = await this.http<{ rooms: RoomSummary[] }>('/api/rooms')
      if (this.isClosed) return
      this.roomsStore.set({ rooms: body.rooms, loading: false, error: null })
      for (const h of this.handles.values()) h._recount()
    } catch (err) {
      if (this.isClosed) return
      const e = err instanceof SwitchboardError ? err : new SwitchboardError('NETWORK', String(err))
      this.roomsStore.update((s) => ({ ...s, loading: false, error: { code: e.code, message: e.message } }))
      throw e
    }
  }

  private onNotification(n: Notification): void {
    this.notificationsStore.update((s) => ({ items: [n, ...s.items].slice(0, MAX_NOTIFICATIONS), unseen: s.unseen + 1 }))
    const s = this.roomsStore.get()
    const i = s.rooms.findIndex((r) => r.id === n.roomId)
    // A room I am not in yet (a DM from someone new, an invite): the list reloads to show it.
    if (i < 0) return this.scheduleRoomsRefresh()
    // Rooms followed here count from their live messages; the others from the pushes.
    if (this.handles.get(n.roomId)?.following || n.type === 'invite') return
    if (n.messageId !== undefined && !this.countOnce(n.messageId)) return
    const rooms = [...s.rooms]
    rooms[i] = { ...s.rooms[i], unread: s.rooms[i].unread + 1 }
    this.roomsStore.set({ ...s, rooms })
  }

  private setOnline(users: readonly OnlineUser[], on: boolean): void {
    if (users.length === 0) return
    const cur = this.presenceStore.get().online
    let next: Map<string, string> | null = null
    for (const u of users) {
      const has = cur.get(u.userId)
      if (on ? has === u.username : has === undefined) continue
      if (!on && u.userId === this.claims?.userId && this.chat?.connected) continue
      next ??= new Map(cur)
      if (on) next.set(u.userId, u.username)
      else next.delete(u.userId)
    }
    if (next) this.presenceStore.set({ online: next })
  }

  // ---------- HTTP ----------

  private async request(path: string, init: { method?: string; json?: unknown; form?: FormData } = {}): Promise<Response> {
    const url = /^https?:\/\//i.test(path) ? path : `${this.baseUrl}${path.startsWith('/') ? '' : '/'}${path}`
    for (let attempt = 0; ; attempt++) {
      const token = await this.getToken(attempt > 0)
      const headers: Record<string, string> = { authorization: `Bearer ${token}` }
      if (init.json !== undefined) headers['content-type'] = 'application/json'
      let res: Response
      try {
        res = await this.fetchFn(url, { method: init.method ?? 'GET', headers, body: init.form ?? (init.json === undefined ? undefined : JSON.stringify(init.json)) })
      } catch (err) {
        throw new SwitchboardError('NETWORK', `The server cannot be reached: ${String(err)}`)
      }
      if (res.status === 401 && attempt === 0 && typeof this.opts.token === 'function') {
        await res.body?.cancel().catch(() => undefined)
        continue
      }
      if (!res.ok) {
        const body = (await res.json().catch(() => ({}))) as { error?: string; message?: string }
        throw new SwitchboardError(typeof body.error === 'string' ? body.error : `HTTP_${res.status}`, typeof body.message === 'string' ? body.message : res.statusText, { status: res.status })
      }
      return res
    }
  }

  private async http<T>(path: string, init: { method?: string; json?: unknown; form?: FormData } = {}): Promise<T> {
    const res = await this.request(path, init)
    return (await res.json()) as T
  }

  /** `POST /api/rooms`; the rooms list refreshes after it. */
  async createRoom(body: CreateRoomBody): Promise<CreatedRoom> {
    const created = await this.http<CreatedRoom>('/api/rooms', { method: 'POST', json: body })
    void this.refreshRooms().catch(() => undefined)
    return created
  }

  /** `POST /api/uploads` (multipart; `roomId` before the file, as the server requires); send the result with `room.send(text, { attachment })`. */
  upload(roomId: string, file: Blob, fileName: string): Promise<Attachment> {
    const form = new FormData()
    form.append('roomId', roomId)
    form.append('file', file, fileName)
    return this.http<Attachment>('/api/uploads', { method: 'POST', form })
  }

  /** An attachment's bytes (`Attachment.url`, fetched with the bearer token). */
  async fetchAttachment(url: string): Promise<Blob> {
    const res = await this.request(url)
    return res.blob()
  }

  /** Listens to `admin:announce` broadcasts; returns the function that stops listening. */
  on(event: 'announce', fn: (e: AnnounceEvent) => void): () => void {
    if (event !== 'announce') throw new TypeError(`unknown event ${String(event)}`)
    const entry = (e: AnnounceEvent) => fn(e)
    this.announceListeners.add(entry)
    return () => {
      this.announceListeners.delete(entry)
    }
  }
}
