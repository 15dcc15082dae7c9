import { io, type Socket } from 'socket.io-client'
import { api, ApiError } from '../api.ts'
import { uuid } from '../ids.ts'
import type { Ack, Attachment, ClientToServerEvents, JoinOk, Message, Notification, NotificationsServerEvents, ReactionEvent, RoomSummary, ServerToClientEvents, SyncOk } from '../protocol.ts'
import { MAX_TEXT, ROOM_ID } from '../protocol.ts'
import { lastRoom, type Session } from '../session.ts'
import { claimEchoes, dmPeer, firstSeqOf, lastSeqOf, mergeMessages, patchMessage, type PendingMessage } from './timeline.ts'

type ChatSocket = Socket<ServerToClientEvents, ClientToServerEvents>

/** One room as this tab knows it. */
export interface RoomView {
  id: string
  /** Stored messages, in seq order, one per seq, without gaps from the oldest shown to the newest. */
  messages: Message[]
  pending: PendingMessage[]
  /** Read mark (seq) per user id. */
  reads: ReadonlyMap<string, number>
  /** User ids known to be members (joins, authors, receipts). */
  members: ReadonlySet<string>
  /** Subscribed on the server in this session: included in `chat:sync` after a reconnect. */
  joined: boolean
  loadingOlder: boolean
  /** Who is typing: user id → name. */
  typing: ReadonlyMap<string, string>
  /**
   * The highest room version seen on the socket (live events, history, sync): sent with the last
   * seq so the server says what changed meanwhile (SPEC §4 "Versions"). HTTP pages never raise it.
   */
  version: number
}

export type Connection = 'connecting' | 'connected' | 'reconnecting'

export interface ChatState {
  me: Session
  connection: Connection
  /** Reconnect attempt number while reconnecting. */
  attempt: number
  /** Why the last connection attempt failed, if it did. */
  connectError: string | null
  error: { id: number; text: string } | null
  rooms: RoomSummary[]
  openRoomId: string | null
  /** Room ids, user ids and names come from users: every keyed collection is a Map (`constructor` is a room like any other). */
  views: ReadonlyMap<string, RoomView>
  /** Online users: user id → name. */
  online: ReadonlyMap<string, string>
  /** Every user name this tab has seen: user id → name. */
  names: ReadonlyMap<string, string>
  /** Text handed back to the composer after a send that cannot succeed as it is. */
  draft: { id: number; roomId: string; text: string } | null
  /** The newest DM or mention notification per room, until the room is opened. */
  notes: ReadonlyMap<string, Notification>
}

export interface ChatOptions {
  /** `polling` forces HTTP long-polling (`?transport=polling`). */
  transport: 'auto' | 'polling'
  /** The session is over (token expired or refused): back to sign-in with this explanation. */
  onSignOut(reason: string): void
}

type AckResults = {
  'room:join': JoinOk
  'chat:message': { messageId: string; seq: number }
  'chat:read': object
  'chat:sync': SyncOk
  'chat:edit': object
  'chat:delete': object
  'chat:react': object
}
type AckEvent = keyof AckResults
type ClientAck<T extends object> = Ack<T> | { status: 'error'; code: 'DISCONNECTED' | 'TIMEOUT'; error: string }

const ACK_MS = 10_000
const TYPING_SEND_EVERY_MS = 2000
/** Above the server's TYPING_THROTTLE_MS (1 s by default), which drops repeats of the same state. */
const TYPING_MIN_GAP_MS = 1100
const TYPING_SHOWN_MS = 3000
const ERROR_SHOWN_MS = 15_000
/** Codes after which the text can never be sent as it is: it goes back to the composer. */
const FINAL = new Set(['BAD_REQUEST', 'FORBIDDEN', 'NOT_FOUND', 'TOO_LARGE'])
export const BAD_ROOM_ID = 'Room ids are 1–128 characters: letters, digits, ":", "_", "." or "-".'

const emptyView = (id: string): RoomView => ({ id, messages: [], pending: [], reads: new Map(), members: new Set(), joined: false, loadingOlder: false, typing: new Map(), version: 0 })
/** A copy of `m` with `k` set to `v` (state is replaced, never mutated). */
const withEntry = <K, V>(m: ReadonlyMap<K, V>, k: K, v: V): ReadonlyMap<K, V> => new Map(m).set(k, v)
const withoutEntry = <K, V>(m: ReadonlyMap<K, V>, k: K): ReadonlyMap<K, V> => {
  const next = new Map(m)
  next.delete(k)
  return next
}

/**
 * Owns the /chat connection of a signed-in tab and the state the UI renders. React reads it
 * through `useSyncExternalStore` (see useChat.ts); every change replaces the state object.
 */
export class ChatStore {
  private state: ChatState
  private readonly listeners = new Set<() => void>()
  private socket: ChatSocket | null = null
  private notifySocket: Socket<NotificationsServerEvents> | null = null
  private closed = false
  /** Rooms with a `room:join` in flight (the value tells one attempt from the next). */
  private readonly joining = new Map<string, object>()
  private readonly readSent = new Map<string, number>()
  private readonly typingTimers = new Map<string, ReturnType<typeof setTimeout>>()
  /** The `isTyping: true` in force (cleared when we say we stopped). */
  private typingSent: { roomId: string; at: number } | null = null
  /** The last `isTyping: true` sent, kept across stops: the server drops a second one within its throttle. */
  private lastTypingTrue: { roomId: string; at: number } | null = null
  private typingTimer: ReturnType<typeof setTimeout> | undefined
  private readTimer: ReturnType<typeof setTimeout> | undefined
  private errorTimer: ReturnType<typeof setTimeout> | undefined
  private retryTimer: ReturnType<typeof setTimeout> | undefined
  private errorId = 0

  constructor(
    me: Session,
    private readonly opts: ChatOptions,
  ) {
    this.state = {
      me,
      connection: 'connecting',
      attempt: 0,
      connectError: null,
      error: null,
      rooms: [],
      openRoomId: null,
      views: new Map(),
      online: new Map(),
      names: new Map([[me.userId, me.username]]),
      draft: null,
      notes: new Map(),
    }
  }

  readonly getState = (): ChatState => this.state
  readonly subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  // ---------- connection ----------

  /** Connects and reopens the room that was open last time. */
  start(): void {
    const me = this.state.me
    const s: ChatSocket = io('/chat', {
      auth: (cb) => cb({ token: me.token }),
      // WebSocket first; where it cannot connect (proxies), long-polling. `?transport=polling` forces it.
      transports: this.opts.transport === 'polling' ? ['polling'] : ['websocket', 'polling'],
      tryAllTransports: true,
      forceNew: true,
    })
    this.socket = s
    s.on('connect', () => void this.onConnect())
    s.on('disconnect', (reason) => this.onDisconnect(reason))
    s.on('connect_error', (err) => this.onConnectError(err as Error & { data?: { code?: string } }))
    s.io.on('reconnect_attempt', (attempt) => this.set({ connection: 'reconnecting', attempt }))

    s.on('room:history', (h) => this.onHistory(h))
    s.on('chat:message', (m) => (this.addMessages(m.roomId, [m]), this.seen(m.roomId, m.version)))
    s.on('chat:edited', (e) => (this.patch(e.roomId, e.messageId, { text: e.text, editedAt: e.editedAt, version: e.version }), this.seen(e.roomId, e.version)))
    s.on('chat:deleted', (e) => (this.patch(e.roomId, e.messageId, { text: '', deletedAt: e.deletedAt, version: e.version }), this.seen(e.roomId, e.version)))
    s.on('chat:reaction', (e) => this.onReaction(e))
    s.on('chat:typing', (t) => this.onTyping(t.roomId, t.userId, t.username, t.isTyping))
    s.on('chat:read', (r) => this.onRead(r.roomId, r.userId, r.seq))
    s.on('presence:list', (users) => this.setOnline(users, true))
    s.on('presence:online', (u) => this.setOnline([u], true))
    s.on('presence:offline', (u) => this.setOnline([u], false))
    s.on('room:user-joined', (u) => {
      this.setOnline([u], true)
      this.updateRoom(u.roomId, (v) => ({ ...v, members: new Set(v.members).add(u.userId) }))
    })
    s.on('room:user-left', (u) => {
      this.updateRoom(u.roomId, (v) => {
        const members = new Set(v.members)
        members.delete(u.userId)
        return { ...v, members }
      })
    })

    // /notifications over the same connection (a second namespace of one Engine.IO session).
    const n: Socket<NotificationsServerEvents> = s.io.socket('/notifications', { auth: (cb) => cb({ token: me.token }) })
    this.notifySocket = n
    n.on('notification', (x) => this.onNotification(x))
    n.connect()

    document.addEventListener('visibilitychange', this.onVisibility)
    window.addEventListener('pagehide', this.onPageHide)
    const last = lastRoom.get()
    if (last && ROOM_ID.test(last)) this.openRoom(last)
  }

  /** Disconnects for good (sign-out, or the page is done with this session). */
  close(): void {
    if (this.closed) return
    this.stopTyping()
    this.closed = true
    for (const t of this.typingTimers.values()) clearTimeout(t)
    clearTimeout(this.readTimer)
    clearTimeout(this.errorTimer)
    clearTimeout(this.retryTimer)
    for (const t of this.drainTimers.values()) clearTimeout(t)
    clearTimeout(this.typingTimer)
    document.removeEventListener('visibilitychange', this.onVisibility)
    window.removeEventListener('pagehide', this.onPageHide)
    this.notifySocket?.removeAllListeners()
    this.notifySocket?.disconnect()
    this.notifySocket = null
    const s = this.socket
    this.socket = null
    s?.removeAllListeners()
    s?.io.removeAllListeners()
    s?.disconnect()
  }

  private async onConnect(): Promise<void> {
    const me = this.state.me
    this.set({ connection: 'connected', attempt: 0, connectError: null, online: new Map([[me.userId, me.username]]) })
    void this.refreshRooms()
    // After a reconnect: exactly what each joined room missed, then what we could not send.
    const joined = [...this.state.views.values()].filter((v) => v.joined)
    if (joined.length > 0) await this.sync(joined.map((v) => v.id))
    const open = this.state.openRoomId
    if (open && !this.state.views.get(open)?.joined && !this.joining.has(open)) await this.join(open)
    await this.flushPending()
  }

  private onDisconnect(reason: string): void {
    if (this.closed) return
    this.clearTypers()
    this.typingSent = null
    this.joining.clear()
    if (reason === 'io server disconnect') {
      // The server ended this session on purpose (token expiry); a drain closes the transport instead.
      this.opts.onSignOut('The server ended your session (your sign-in has probably expired). Please sign in again.')
      return
    }
    if (reason === 'io client disconnect') return
    this.set({ connection: 'reconnecting' })
  }

  private onConnectError(err: Error & { data?: { code?: string } }): void {
    if (this.closed) return
    const code = err.data?.code
    if (code?.startsWith('AUTH_')) {
      const why = code === 'AUTH_EXPIRED' ? 'Your sign-in has expired' : code === 'AUTH_REQUIRED' ? 'Please sign in' : 'Your token was refused'
      this.opts.onSignOut(`${why} (${code}). Please sign in again.`)
      return
    }
    this.set({ connection: this.state.connection === 'connecting' ? 'connecting' : 'reconnecting', connectError: err.message })
    // A refusal by a server middleware stops Socket.IO's own retries: try again ourselves.
    const s = this.socket
    if (s && !s.active) this.retryTimer = setTimeout(() => !this.closed && s.connect(), 3000)
  }

  /** The ack of `event`, or a local error when disconnected or when no ack came in time. */
  private ack<E extends AckEvent>(event: E, payload: Parameters<ClientToServerEvents[E]>[0]): Promise<ClientAck<AckResults[E]>> {
    const s = this.socket
    if (!s?.connected) return Promise.resolve({ status: 'error', code: 'DISCONNECTED', error: 'not connected' })
    const timed = s.timeout(ACK_MS) as unknown as { emitWithAck(event: string, payload: unknown): Promise<Ack<AckResults[E]>> }
    return timed.emitWithAck(event, payload).catch(() =>
      s.connected ? { status: 'error', code: 'TIMEOUT', error: 'no answer from the server' } : { status: 'error', code: 'DISCONNECTED', error: 'connection lost' },
    )
  }

  /** A DM or a mention (live, on any node): the room list learns of it at once, with a line of it. */
  private onNotification(n: Notification): void {
    if (n.type !== 'dm' && n.type !== 'mention' && n.type !== 'invite') return
    if (n.from.userId !== n.from.username && this.state.names.get(n.from.userId) !== n.from.username) {
      this.set((s) => ({ names: withEntry(s.names, n.from.userId, n.from.username) }))
    }
    const showing = this.state.openRoomId === n.roomId && !document.hidden
    if (!showing) this.set((s) => ({ notes: withEntry(s.notes, n.roomId, n) }))
    void this.refreshRooms()
  }

  // ---------- rooms ----------

  async refreshRooms(): Promise<void> {
    try {
      const { rooms } = await api.rooms(this.state.me.token)
      if (!this.closed) this.set({ rooms })
    } catch (err) {
      this.httpFailed(err)
    }
  }

  /** Shows a room, joining it on the server the first time in this session. */
  openRoom(roomId: string): void {
    if (!ROOM_ID.test(roomId)) return this.showError(BAD_ROOM_ID)
    if (this.state.openRoomId === roomId) return
    this.stopTyping()
    this.flushRead()
    this.set((s) => ({
      openRoomId: roomId,
      views: s.views.has(roomId) ? s.views : withEntry(s.views, roomId, emptyView(roomId)),
      notes: s.notes.has(roomId) ? withoutEntry(s.notes, roomId) : s.notes,
    }))
    lastRoom.set(roomId)
    const view = this.state.views.get(roomId)
    if (view?.joined) this.scheduleRead()
    else if (this.socket?.connected && !this.joining.has(roomId)) void this.join(roomId)
  }

  /** Back to the room list (narrow screens); the room stays joined. */
  closeRoom(): void {
    this.stopTyping()
    this.flushRead()
    this.set({ openRoomId: null })
    lastRoom.set(null)
  }

  openDirect(userId: string): void {
    const me = this.state.me.userId
    if (userId === me) return
    // Decisions D9: dm:<a>:<b>; sorted, so both people open the same room whoever starts.
    this.openRoom(`dm:${[me, userId].sort().join(':')}`)
  }

  /** `POST /api/rooms`, then opens the room; false when it failed (the error is shown). */
  async createRoom(input: { name: string; id?: string; private?: boolean }): Promise<boolean> {
    if (input.id && !ROOM_ID.test(input.id)) {
      this.showError(BAD_ROOM_ID)
      return false
    }
    try {
      const created = await api.createRoom(this.state.me.token, input)
      await this.refreshRooms()
      this.openRoom(created.id)
      return true
    } catch (err) {
      this.httpFailed(err, 'Could not create the room')
      return false
    }
  }

  /** Joins on the server: a fresh page of history, or (when we hold messages) what came after them. */
  private async join(roomId: string): Promise<void> {
    const lastSeq = lastSeqOf(this.state.views.get(roomId)?.messages ?? [])
    const attempt = {}
    this.joining.set(roomId, attempt)
    const version = this.state.views.get(roomId)?.version ?? 0
    const res = await this.ack('room:join', lastSeq > 0 ? { roomId, lastSeq, version } : { roomId })
    if (this.joining.get(roomId) === attempt) this.joining.delete(roomId)
    if (this.closed) return
    if (res.status === 'ok') {
      this.setOnline(res.online, true)
      this.updateRoom(roomId, (v) => {
        const members = new Set(v.members).add(this.state.me.userId)
        for (const u of res.online) members.add(u.userId)
        return { ...v, joined: true, members }
      })
      if (!this.state.rooms.some((r) => r.id === roomId)) void this.refreshRooms()
      this.scheduleRead()
      return
    }
    if (res.code === 'DISCONNECTED') return // joined again on the next connect
    this.showError(`Could not open "${roomId}": ${res.error} (${res.code})`)
    this.dropView(roomId)
  }

  private dropView(roomId: string): void {
    this.set((s) => {
      return { views: withoutEntry(s.views, roomId), openRoomId: s.openRoomId === roomId ? null : s.openRoomId }
    })
    if (lastRoom.get() === roomId) lastRoom.set(null)
  }

  /** After a reconnect: `chat:sync` with each joined room's last seq, merged without duplicates. */
  private async sync(roomIds: string[]): Promise<void> {
    // Prototype-free: a room named `__proto__` is sent like any other.
    const rooms: Record<string, { lastSeq: number; version: number }> = Object.create(null)
    for (const id of roomIds) {
      const v = this.state.views.get(id)
      rooms[id] = { lastSeq: lastSeqOf(v?.messages ?? []), version: v?.version ?? 0 }
    }
    const res = await this.ack('chat:sync', { rooms })
    if (this.closed) return
    if (res.status !== 'ok') {
      if (res.code === 'DISCONNECTED') return // the next connect syncs again
      // room:join with lastSeq gives the same catch-up (SPEC §5.4), one room at a time.
      for (const id of roomIds) {
        this.updateRoom(id, (v) => ({ ...v, joined: false }))
        await this.join(id)
      }
      return
    }
    for (const [roomId, messages] of Object.entries(res.rooms)) {
      this.addMessages(roomId, messages)
      this.applyUpdated(roomId, res.updated && Object.hasOwn(res.updated, roomId) ? res.updated[roomId] : [])
      this.seen(roomId, ...messages.map((m) => m.version))
    }
    for (const roomId of res.hasMore ?? []) {
      // More was missed than one catch-up carries: start again from the newest page.
      this.updateRoom(roomId, (v) => ({ ...v, messages: [], version: 0, joined: false }))
      await this.join(roomId)
    }
    for (const [roomId, code] of Object.entries(res.errors ?? {})) {
      this.showError(`Lost access to "${roomId}" (${code})`)
      this.dropView(roomId)
    }
  }

  // ---------- incoming ----------

  private onHistory(h: { roomId: string; messages: Message[]; reads: Record<string, number>; hasMore?: boolean; updated?: Message[] }): void {
    this.updateRoom(h.roomId, (v) => {
      const reads = new Map(v.reads)
      const members = new Set(v.members)
      for (const [userId, seq] of Object.entries(h.reads ?? {})) {
        reads.set(userId, Math.max(reads.get(userId) ?? 0, seq))
        members.add(userId)
      }
      // We join with lastSeq whenever we hold messages, so `hasMore` means either older pages
      // (a fresh join: nothing held) or a catch-up too long to splice in. Either way the page
      // replaces what we had, so the timeline never has a hole ("load older" reaches the rest).
      return h.hasMore === true ? { ...v, reads, members, messages: [], version: 0 } : { ...v, reads, members }
    })
    this.addMessages(h.roomId, h.messages)
    this.applyUpdated(h.roomId, h.updated ?? [])
    this.seen(h.roomId, ...h.messages.map((m) => m.version))
  }

  /** Messages we hold that changed while we were away, in their current state: replace them by id. */
  private applyUpdated(roomId: string, updated: readonly Message[]): void {
    if (updated.length === 0) return
    this.updateRoom(roomId, (v) => {
      let messages = v.messages
      for (const m of updated) messages = patchMessage(messages, m.id, m)
      return messages === v.messages ? v : { ...v, messages }
    })
    this.seen(roomId, ...updated.map((m) => m.version))
  }

  /** Raises the room's version to the highest of `versions` (never lowers it). */
  private seen(roomId: string, ...versions: number[]): void {
    const top = Math.max(0, ...versions.filter((x) => typeof x === 'number'))
    this.updateRoom(roomId, (v) => (top > v.version ? { ...v, version: top } : v))
  }

  /** Live, synced, historic or acked messages: merged by seq, never twice. */
  private addMessages(roomId: string, incoming: Message[]): void {
    if (incoming.length === 0) return
    const me = this.state.me.userId
    if (incoming.some((m) => this.state.names.get(m.userId) !== m.username)) {
      const names = new Map(this.state.names)
      for (const m of incoming) names.set(m.userId, m.username)
      this.set({ names })
    }
    const before = this.state.views.get(roomId)?.messages
    this.updateRoom(roomId, (v) => {
      const messages = mergeMessages(v.messages, incoming)
      if (messages === v.messages) return v
      const mine = incoming.filter((m) => m.userId === me)
      const members = new Set(v.members)
      let typing = v.typing
      for (const m of incoming) {
        members.add(m.userId)
        if (typing.has(m.userId)) typing = withoutEntry(typing, m.userId)
      }
      return { ...v, messages, members, typing, pending: mine.length > 0 ? claimEchoes(v.pending, mine) : v.pending }
    })
    const after = this.state.views.get(roomId)?.messages
    const newest = Math.max(...incoming.map((m) => m.seq))
    const showing = this.state.openRoomId === roomId && !document.hidden
    this.set((s) => ({
      rooms: s.rooms.map((r) => {
        if (r.id !== roomId || newest <= r.lastSeq) return r
        const others = incoming.filter((m) => m.seq > r.lastSeq && m.userId !== me).length
        return { ...r, lastSeq: newest, unread: showing ? r.unread : r.unread + others }
      }),
    }))
    if (showing && after !== before) this.scheduleRead()
  }

  private patch(roomId: string, messageId: string, patch: Partial<Message>): void {
    this.updateRoom(roomId, (v) => {
      const messages = patchMessage(v.messages, messageId, patch)
      return messages === v.messages ? v : { ...v, messages }
    })
  }

  private onReaction(e: ReactionEvent): void {
    this.seen(e.roomId, e.version)
    const m = this.state.views.get(e.roomId)?.messages.find((x) => x.id === e.messageId)
    if (!m) return
    // Recovered by a node that missed the live one (D92): the message's whole current reactions.
    if ('reactions' in e) return this.patch(e.roomId, e.messageId, { reactions: Object.assign(Object.create(null), e.reactions), version: e.version })
    // Emoji are user input: `constructor` must not find Object's own property.
    const users = new Set(m.reactions && Object.hasOwn(m.reactions, e.emoji) ? m.reactions[e.emoji] : [])
    if (e.on) users.add(e.userId)
    else users.delete(e.userId)
    // Own keys only, on a prototype-free copy: an emoji named `__proto__` stays a key.
    const reactions: Record<string, string[]> = Object.assign(Object.create(null), m.reactions)
    if (users.size === 0) delete reactions[e.emoji]
    else reactions[e.emoji] = [...users]
    this.patch(e.roomId, e.messageId, { reactions, version: e.version })
  }

  private onTyping(roomId: string, userId: string, username: string, isTyping: boolean): void {
    if (userId === this.state.me.userId) return
    const key = `${roomId}\n${userId}`
    clearTimeout(this.typingTimers.get(key))
    this.typingTimers.delete(key)
    const set = (on: boolean) =>
      this.updateRoom(roomId, (v) => {
        return { ...v, typing: on ? withEntry(v.typing, userId, username) : withoutEntry(v.typing, userId) }
      })
    set(isTyping)
    // Typing is volatile: without news for 3 s, the indicator goes.
    if (isTyping) this.typingTimers.set(key, setTimeout(() => (this.typingTimers.delete(key), set(false)), TYPING_SHOWN_MS))
  }

  private clearTypers(): void {
    for (const t of this.typingTimers.values()) clearTimeout(t)
    this.typingTimers.clear()
    this.set((s) => ({ views: new Map([...s.views].map(([id, v]) => [id, { ...v, typing: new Map() }])) }))
  }

  private onRead(roomId: string, userId: string, seq: number): void {
    this.updateRoom(roomId, (v) =>
      (v.reads.get(userId) ?? 0) >= seq ? v : { ...v, reads: withEntry(v.reads, userId, seq), members: new Set(v.members).add(userId) },
    )
  }

  private setOnline(users: { userId: string; username: string }[], on: boolean): void {
    if (users.length === 0) return
    this.set((s) => {
      const online = new Map(s.online)
      const names = new Map(s.names)
      for (const u of users) {
        // A DM peer who never joined is a member named by their id: keep a real name we know.
        const name = u.username === u.userId ? (names.get(u.userId) ?? u.username) : u.username
        names.set(u.userId, name)
        if (on) online.set(u.userId, name)
        else online.delete(u.userId)
      }
      return { online, names }
    })
  }

  // ---------- sending ----------

  /** Sends `text` to the open room: shown at once as pending, kept until acknowledged. */
  send(text: string, replyTo?: string): boolean {
    const roomId = this.state.openRoomId
    return roomId ? this.enqueue(roomId, text, replyTo) : false
  }

  /**
   * Uploads `file` to the open room, then sends it as a message (the text, or the file name
   * when there is none). False when the upload failed (the reason is shown).
   */
  async sendFile(file: File, text: string, replyTo?: string): Promise<boolean> {
    const roomId = this.state.openRoomId
    if (!roomId) return false
    let attachment: Attachment
    try {
      attachment = await api.upload(this.state.me.token, roomId, file)
    } catch (err) {
      this.showError(`Could not upload "${file.name}": ${err instanceof ApiError ? err.display : String(err)}`)
      return false
    }
    if (this.closed) return false
    return this.enqueue(roomId, text.trim() || [...attachment.fileName].slice(0, MAX_TEXT).join(''), replyTo, attachment)
  }

  private enqueue(roomId: string, text: string, replyTo?: string, attachment?: Attachment): boolean {
    const trimmed = text.trim()
    if (!trimmed) return false
    this.stopTyping()
    const p: PendingMessage = { clientMsgId: uuid(), roomId, text: trimmed, status: 'queued', timestamp: new Date().toISOString() }
    if (replyTo) p.replyTo = replyTo
    if (attachment) p.attachment = attachment
    this.updateRoom(roomId, (v) => ({ ...v, pending: [...v.pending, p] }))
    void this.drain(roomId)
    return true
  }

  /** Sends a failed message again, with the same clientMsgId (stored at most once), in its place in the queue. */
  retry(clientMsgId: string): void {
    const p = this.findPending(clientMsgId)
    if (!p || p.status !== 'failed') return
    this.setPending(p, { status: 'queued', error: undefined, retryAt: undefined })
    void this.drain(p.roomId)
  }

  discard(clientMsgId: string): void {
    const p = this.findPending(clientMsgId)
    if (!p) return
    this.updateRoom(p.roomId, (v) => ({ ...v, pending: v.pending.filter((x) => x.clientMsgId !== clientMsgId) }))
    void this.drain(p.roomId)
  }

  private findPending(clientMsgId: string): PendingMessage | undefined {
    for (const v of this.state.views.values()) {
      const p = v.pending.find((x) => x.clientMsgId === clientMsgId)
      if (p) return p
    }
    return undefined
  }

  private setPending(p: PendingMessage, patch: Partial<PendingMessage>): void {
    this.updateRoom(p.roomId, (v) => ({ ...v, pending: v.pending.map((x) => (x.clientMsgId === p.clientMsgId ? { ...x, ...patch } : x)) }))
  }

  private readonly draining = new Set<string>()
  private readonly drainTimers = new Map<string, ReturnType<typeof setTimeout>>()

  /**
   * Sends a room's outbox one message at a time, in order: a later message never goes before an
   * earlier one is stored. A refused send that may succeed later (RATE_LIMITED, an overloaded
   * UNAVAILABLE) waits `retryAfterMs` and goes again, holding the ones behind it; a failed one
   * holds them until it is retried or discarded.
   */
  private async drain(roomId: string): Promise<void> {
    if (this.draining.has(roomId)) return
    this.draining.add(roomId)
    clearTimeout(this.drainTimers.get(roomId))
    this.drainTimers.delete(roomId)
    try {
      for (;;) {
        if (this.closed || !this.socket?.connected) return
        const p = this.state.views.get(roomId)?.pending.find((x) => x.status !== 'sending')
        if (!p || p.status === 'failed') return
        if (p.retryAt && p.retryAt > Date.now()) {
          this.drainTimers.set(roomId, setTimeout(() => void this.drain(roomId), p.retryAt - Date.now()))
          return
        }
        if (!(await this.emitSend(p))) return
      }
    } finally {
      this.draining.delete(roomId)
    }
  }

  /** One send; true when the queue may go on to the next message. */
  private async emitSend(p: PendingMessage): Promise<boolean> {
    this.setPending(p, { status: 'sending', error: undefined, retryAt: undefined })
    const payload = {
      roomId: p.roomId,
      text: p.text,
      clientMsgId: p.clientMsgId,
      ...(p.replyTo ? { replyTo: p.replyTo } : {}),
      ...(p.attachment ? { attachmentId: p.attachment.id } : {}),
    }
    const res = await this.ack('chat:message', payload)
    if (this.closed || !this.findPending(p.clientMsgId)) return true
    if (res.status === 'ok') {
      this.acked(p, res.messageId, res.seq)
      return true
    }
    if (res.code === 'DISCONNECTED') {
      this.setPending(p, { status: 'queued' }) // resent after the reconnect
      return false
    }
    if (res.code === 'TIMEOUT' || ((res.code === 'RATE_LIMITED' || res.code === 'UNAVAILABLE') && 'retryAfterMs' in res)) {
      // Same clientMsgId again later: stored at most once whatever happened to the first try.
      const wait = 'retryAfterMs' in res && typeof res.retryAfterMs === 'number' ? res.retryAfterMs : 2000
      this.setPending(p, { status: 'waiting', retryAt: Date.now() + wait, errorCode: res.code, error: `${res.error} (${res.code})` })
      return true // drain() sees retryAt and waits
    }
    if (FINAL.has(res.code)) {
      // Cannot succeed as it is (too long, no access): the text goes back to the composer.
      this.updateRoom(p.roomId, (v) => ({ ...v, pending: v.pending.filter((x) => x.clientMsgId !== p.clientMsgId) }))
      this.set({ draft: { id: ++this.errorId, roomId: p.roomId, text: p.text } })
      this.showError(`Message not sent: ${res.error} (${res.code})`)
      return true
    }
    this.setPending(p, { status: 'failed', error: `${res.error} (${res.code})` })
    this.showError(`Message not sent: ${res.error} (${res.code})`)
    return false
  }

  /** The ack is the truth: the pending send goes, and its message shows even if the broadcast is late. */
  private acked(p: PendingMessage, messageId: string, seq: number): void {
    const me = this.state.me
    this.updateRoom(p.roomId, (v) => {
      const self = v.pending.find((x) => x.clientMsgId === p.clientMsgId)
      // Another pending send with the same text may have claimed this echo: it gets ours instead.
      const pending = v.pending
        .filter((x) => x.clientMsgId !== p.clientMsgId)
        .map((x) => (x.echoSeq === seq ? { ...x, echoSeq: self?.echoSeq } : x))
      const message: Message = { id: messageId, roomId: p.roomId, seq, version: 0, userId: me.userId, username: me.username, text: p.text, timestamp: p.timestamp }
      if (p.replyTo) message.replyTo = p.replyTo
      if (p.attachment) message.attachment = p.attachment
      return { ...v, pending, messages: mergeMessages(v.messages, [message]) }
    })
    if (this.state.openRoomId === p.roomId) this.scheduleRead()
  }

  /** After a (re)connect and sync: everything not yet acknowledged, in order, same clientMsgIds. */
  private async flushPending(): Promise<void> {
    await Promise.all([...this.state.views.keys()].map((roomId) => this.drain(roomId)))
  }

  /** `chat:edit` of my message; rejects with the server's reason. */
  async edit(roomId: string, messageId: string, text: string): Promise<void> {
    const res = await this.ack('chat:edit', { roomId, messageId, text })
    if (res.status !== 'ok') throw new Error(`${res.error} (${res.code})`)
  }

  async remove(roomId: string, messageId: string): Promise<void> {
    const res = await this.ack('chat:delete', { roomId, messageId })
    if (res.status !== 'ok') this.showError(`Could not delete the message: ${res.error} (${res.code})`)
  }

  async react(roomId: string, messageId: string, emoji: string, on: boolean): Promise<void> {
    const res = await this.ack('chat:react', { roomId, messageId, emoji, on })
    if (res.status !== 'ok') this.showError(`Could not react: ${res.error} (${res.code})`)
  }

  takeDraft(id: number): void {
    if (this.state.draft?.id === id) this.set({ draft: null })
  }

  // ---------- typing and reads ----------

  /**
   * The composer's text changed: `chat:typing` at most every 2 s while there is text. Typing
   * again right after a send waits until the server's throttle would let the event through.
   */
  typing(text: string): void {
    const roomId = this.state.openRoomId
    if (!roomId || !this.socket?.connected) return
    if (!text.trim()) return this.stopTyping()
    const now = Date.now()
    if (this.typingSent && this.typingSent.roomId === roomId && now - this.typingSent.at < TYPING_SEND_EVERY_MS) return
    if (this.typingTimer !== undefined) return
    const last = this.lastTypingTrue
    const wait = last && last.roomId === roomId ? last.at + TYPING_MIN_GAP_MS - now : 0
    const announce = () => {
      this.typingTimer = undefined
      if (this.closed || this.state.openRoomId !== roomId || !this.socket?.connected) return
      this.typingSent = this.lastTypingTrue = { roomId, at: Date.now() }
      this.socket.volatile.emit('chat:typing', { roomId, isTyping: true })
    }
    if (wait > 0) this.typingTimer = setTimeout(announce, wait)
    else announce()
  }

  stopTyping(): void {
    clearTimeout(this.typingTimer)
    this.typingTimer = undefined
    const sent = this.typingSent
    if (!sent) return
    this.typingSent = null
    if (this.socket?.connected) this.socket.volatile.emit('chat:typing', { roomId: sent.roomId, isTyping: false })
  }

  private scheduleRead(): void {
    clearTimeout(this.readTimer)
    this.readTimer = setTimeout(() => void this.sendRead(), 300)
  }

  private readonly onVisibility = () => {
    if (!document.hidden) this.scheduleRead()
  }
  private readonly onPageHide = () => this.flushRead()

  /** Sends the open room's pending read mark now (before leaving the room or the page). */
  private flushRead(): void {
    clearTimeout(this.readTimer)
    void this.sendRead()
  }

  /** Marks the open room read up to its newest message (only while the page is visible). */
  private async sendRead(): Promise<void> {
    const roomId = this.state.openRoomId
    const view = roomId ? this.state.views.get(roomId) : undefined
    if (!roomId || !view?.joined || !this.socket?.connected || document.hidden) return
    const seq = lastSeqOf(view.messages)
    if (seq <= (this.readSent.get(roomId) ?? 0)) return
    this.readSent.set(roomId, seq)
    this.onRead(roomId, this.state.me.userId, seq)
    const res = await this.ack('chat:read', { roomId, seq })
    if (res.status !== 'ok') {
      this.readSent.delete(roomId)
      return
    }
    this.set((s) => ({
      rooms: s.rooms.map((r) => {
        if (r.id !== roomId) return r
        const lastReadSeq = Math.max(r.lastReadSeq, seq)
        const lastSeq = Math.max(r.lastSeq, seq)
        return { ...r, lastSeq, lastReadSeq, unread: Math.max(0, lastSeq - lastReadSeq) }
      }),
    }))
  }

  // ---------- older history ----------

  /** `GET /api/rooms/:id/messages?before=<oldest seq>&limit=50`. */
  async loadOlder(): Promise<void> {
    const roomId = this.state.openRoomId
    const view = roomId ? this.state.views.get(roomId) : undefined
    const before = view ? firstSeqOf(view.messages) : 0
    if (!roomId || !view || view.loadingOlder || before <= 1) return
    this.updateRoom(roomId, (v) => ({ ...v, loadingOlder: true }))
    try {
      const body = await api.messagesBefore(this.state.me.token, roomId, before, 50)
      this.addMessages(roomId, body.messages)
    } catch (err) {
      this.httpFailed(err, 'Could not load older messages')
    } finally {
      this.updateRoom(roomId, (v) => ({ ...v, loadingOlder: false }))
    }
  }

  // ---------- helpers ----------

  /** A display name for a room: its name, or "@name" for a DM. */
  roomTitle(roomId: string): string {
    const peer = dmPeer(roomId, this.state.me.userId)
    if (peer !== null) return `@${this.state.names.get(peer) ?? peer}`
    return this.state.rooms.find((r) => r.id === roomId)?.name ?? roomId
  }

  showError(text: string): void {
    const id = ++this.errorId
    clearTimeout(this.errorTimer)
    this.set({ error: { id, text } })
    this.errorTimer = setTimeout(() => this.dismissError(id), ERROR_SHOWN_MS)
  }

  dismissError(id?: number): void {
    if (this.state.error && (id === undefined || this.state.error.id === id)) this.set({ error: null })
  }

  private httpFailed(err: unknown, what?: string): void {
    if (this.closed) return
    if (err instanceof ApiError && err.status === 401) return this.opts.onSignOut(`${err.message}. Please sign in again.`)
    const text = err instanceof ApiError ? err.display : String(err)
    this.showError(what ? `${what}: ${text}` : text)
  }

  private set(patch: Partial<ChatState> | ((s: ChatState) => Partial<ChatState>)): void {
    if (this.closed) return
    this.state = { ...this.state, ...(typeof patch === 'function' ? patch(this.state) : patch) }
    for (const l of this.listeners) l()
  }

  private updateRoom(roomId: string, fn: (v: RoomView) => RoomView): void {
    const v = this.state.views.get(roomId)
    if (!v) return
    const next = fn(v)
    if (next !== v) this.set((s) => ({ views: withEntry(s.views, roomId, next) }))
  }
}
