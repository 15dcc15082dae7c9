/**
 * The Switchboard wire protocol: every Socket.IO event of `/chat`, `/notifications` and `/admin`,
 * its payload and its ack, and the HTTP bodies a client reads. This module is the one definition
 * both sides use: the server types its namespaces with these maps (services/chat/src/realtime/
 * events.ts) and checks its TypeBox schemas against them at compile time; `@switchboard/client`
 * builds on them. It has no runtime dependency (types and a few constants), so browsers, Node and
 * the server import it alike. Reference: docs/protocol.md; machine-readable: docs/asyncapi.yaml.
 * @packageDocumentation
 */

/** Ack error codes (docs/protocol.md "Acks and error codes"). `UNAVAILABLE` is safe to retry. */
export const ERROR_CODES = ['BAD_REQUEST', 'FORBIDDEN', 'NOT_FOUND', 'RATE_LIMITED', 'TOO_LARGE', 'UNAVAILABLE', 'INTERNAL'] as const
/** One of {@link ERROR_CODES}. */
export type ErrorCode = (typeof ERROR_CODES)[number]

/** Codes of a refused handshake (`connect_error`, `err.data.code`). */
export const CONNECT_ERROR_CODES = ['AUTH_REQUIRED', 'AUTH_INVALID', 'AUTH_EXPIRED', 'FORBIDDEN', 'RATE_LIMITED'] as const
/** One of {@link CONNECT_ERROR_CODES}. */
export type ConnectErrorCode = (typeof CONNECT_ERROR_CODES)[number]

/** Longest message text after trimming. */
export const MAX_TEXT = 5000
/** Room ids: 1–128 characters of `[A-Za-z0-9:_.-]`, never `.` or `..`. */
export const ROOM_ID = /^(?!\.{1,2}$)[A-Za-z0-9:_.-]{1,128}$/
/** The same rule as a JSON Schema / HTML `pattern`. */
export const ROOM_ID_PATTERN = '^(?!\\.{1,2}$)[A-Za-z0-9:_.\\-]{1,128}$'
/** Rooms whose id starts with this are private to their two members. */
export const DM_PREFIX = 'dm:'
/** Most rooms one `chat:sync` may name. */
export const MAX_SYNC_ROOMS = 200
/** Longest reaction (emoji) string. */
export const MAX_EMOJI = 32

/** An ack that failed. `retryAfterMs` comes with `RATE_LIMITED` and with an overloaded `UNAVAILABLE`. */
export interface AckError {
  status: 'error'
  /** One of {@link ERROR_CODES}; `AUTH_EXPIRED` for an event that arrived after the token expired (the socket is then disconnected). */
  code: ErrorCode | 'AUTH_EXPIRED'
  error: string
  retryAfterMs?: number
}
/** Every ack: `{ status: "ok", ... }` or {@link AckError}. */
export type Ack<T extends object = object> = ({ status: 'ok' } & T) | AckError
/** The callback a client passes as an event's last argument. */
export type AckCallback<T extends object = object> = (res: Ack<T>) => void

/** A user as presence and events name them. */
export interface OnlineUser {
  userId: string
  username: string
}

/** A file sent with a message (`POST /api/uploads` answers the same shape). */
export interface Attachment {
  id: string
  fileName: string
  mimeType: string
  size: number
  /** `/api/attachments/<id>?room=<roomId>`: fetch it with the bearer token. */
  url: string
}

/** A message, as every event and route carries it. */
export interface Message {
  /** UUIDv7. */
  id: string
  roomId: string
  /** Rises by one per message within the room, no gaps. */
  seq: number
  /** The room's version at this message's last change (new, edited, deleted, reacted). */
  version: number
  userId: string
  username: string
  /** Empty once deleted. */
  text: string
  replyTo?: string
  attachment?: Attachment
  /** Emoji → the users who reacted with it (keys are data: `constructor` is an emoji like any other). */
  reactions?: Record<string, string[]>
  editedAt?: string
  /** Set on a tombstone. */
  deletedAt?: string
  /** ISO-8601, when it was committed. */
  timestamp: string
}

/** `chat:edited`: the edit and the room version it produced. */
export interface EditedEvent {
  roomId: string
  messageId: string
  version: number
  text: string
  editedAt: string
}

/** `chat:deleted`. */
export interface DeletedEvent {
  roomId: string
  messageId: string
  version: number
  deletedAt: string
}

/**
 * `chat:reaction`: live, the one reaction that changed; when a node recovered it from the
 * database, the message's whole current `reactions` instead.
 */
export type ReactionEvent = { roomId: string; messageId: string; version: number } & (
  | { emoji: string; userId: string; on: boolean }
  | { reactions: Record<string, string[]> }
)

/** Where a client is in a room: a bare `lastSeq` (no `updated`), or with the highest version it saw. */
export type SyncPoint = number | { lastSeq: number; version: number }

/** `room:join` takes a room id or this. `version` (with `lastSeq`) asks for `updated` in the history. */
export type JoinPayload = string | { roomId: string; lastSeq?: number; version?: number }
/** The `room:join` ack: the room, its last seq, and who of its members is online. */
export interface JoinOk {
  roomId: string
  lastSeq: number
  online: OnlineUser[]
}

/** `chat:message`, client → server. */
export interface SendPayload {
  roomId: string
  text: string
  replyTo?: string
  /** Makes the send idempotent: a resend with the same id returns the original. */
  clientMsgId?: string
  /** Your own upload to this room (`POST /api/uploads`). */
  attachmentId?: string
}
/** The `chat:message` ack: the stored message's id and seq. */
export interface SendOk {
  messageId: string
  seq: number
}

/** `chat:edit`: new text for a message of mine. */
export interface EditPayload {
  roomId: string
  messageId: string
  text: string
}
/** `chat:delete`: a message of mine becomes a tombstone. */
export interface DeletePayload {
  roomId: string
  messageId: string
}
/** `chat:react`: add (`on`) or remove my reaction. */
export interface ReactPayload {
  roomId: string
  messageId: string
  emoji: string
  on: boolean
}
/** `chat:typing`, client → server (throttled by the server per user, room and state). */
export interface TypingPayload {
  roomId: string
  isTyping: boolean
}
/** `chat:read`: my read mark, by message id or seq. */
export type ReadPayload = { roomId: string; messageId: string } | { roomId: string; seq: number }

/** `chat:sync`: where this client is in each room (at most {@link MAX_SYNC_ROOMS}). */
export interface SyncPayload {
  rooms: Record<string, SyncPoint>
}
/** The `chat:sync` ack. */
export interface SyncOk {
  /** Per room, the messages after its `lastSeq`, in seq order (at most `SYNC_MAX_MESSAGES`). */
  rooms: Record<string, Message[]>
  /** Per room, messages at or below `lastSeq` that changed after `version`: their current state. */
  updated: Record<string, Message[]>
  /** Rooms with more than one answer could hold: sync again from the last seq received. */
  hasMore: string[]
  /** Rooms that could not be synced, with the error code (`FORBIDDEN`, `UNAVAILABLE`, ...). */
  errors?: Record<string, string>
}

/** `auth:refresh`: a newer token for this connection. */
export interface RefreshPayload {
  token: string
}
/** The `auth:refresh` ack. */
export interface RefreshOk {
  /** The new token's expiry, ISO-8601; null when it has none. */
  expiresAt: string | null
}

/** `room:history`, to the joiner. */
export interface HistoryEvent {
  roomId: string
  messages: Message[]
  /** userId → the highest seq that user has read. */
  reads: Record<string, number>
  hasMore: boolean
  /** With a `version` in the join: changed messages at or below `lastSeq`. */
  updated?: Message[]
}

/** `chat:messages`: consecutive messages of one room, oldest first (handshake `auth.batches: true`). */
export interface MessagesEvent {
  roomId: string
  messages: Message[]
}

/** The handshake `auth` of every namespace. */
export interface HandshakeAuth {
  token: string
  /** Take several messages of a room as one `chat:messages` frame (fewer frames under load). */
  batches?: boolean
}

/** `room:user-joined` / `room:user-left`. */
export interface RoomUserEvent {
  userId: string
  username: string
  roomId: string
}
/** `chat:typing`, server → client: someone else is typing (or stopped). */
export interface TypingEvent extends RoomUserEvent {
  isTyping: boolean
}
/** `chat:read`, server → client: a member's read mark rose. */
export interface ReadEvent {
  userId: string
  roomId: string
  messageId: string
  seq: number
}
/** `admin:announce`, to every `/chat` socket. */
export interface AnnounceEvent {
  text: string
  from: OnlineUser
  timestamp: string
}

/** Every namespace takes `auth:refresh` before its token expires. */
export interface RefreshEvents {
  'auth:refresh': (p: RefreshPayload, ack?: AckCallback<RefreshOk>) => void
}

/** `/chat`, client → server. */
export interface ChatClientEvents extends RefreshEvents {
  'room:join': (p: JoinPayload, ack?: AckCallback<JoinOk>) => void
  'room:leave': (p: string | { roomId: string }, ack?: AckCallback) => void
  'chat:message': (p: SendPayload, ack?: AckCallback<SendOk>) => void
  'chat:edit': (p: EditPayload, ack?: AckCallback) => void
  'chat:delete': (p: DeletePayload, ack?: AckCallback) => void
  'chat:react': (p: ReactPayload, ack?: AckCallback) => void
  'chat:typing': (p: TypingPayload, ack?: AckCallback) => void
  'chat:read': (p: ReadPayload, ack?: AckCallback) => void
  'chat:sync': (p: SyncPayload, ack?: AckCallback<SyncOk>) => void
}

/** `/chat`, server → client. */
export interface ChatServerEvents {
  'room:history': (p: HistoryEvent) => void
  'room:user-joined': (p: RoomUserEvent) => void
  'room:user-left': (p: RoomUserEvent) => void
  'chat:message': (m: Message) => void
  /**
   * Several consecutive messages of one room, in seq order: each is a `chat:message`. Sent only
   * to sockets whose handshake `auth` had `batches: true`.
   */
  'chat:messages': (p: MessagesEvent) => void
  'chat:edited': (p: EditedEvent) => void
  'chat:deleted': (p: DeletedEvent) => void
  'chat:reaction': (p: ReactionEvent) => void
  'chat:typing': (p: TypingEvent) => void
  'chat:read': (p: ReadEvent) => void
  /** To a new socket: online users who share a room with it. */
  'presence:list': (users: OnlineUser[]) => void
  'presence:online': (u: OnlineUser) => void
  'presence:offline': (u: OnlineUser) => void
  /** From `/admin` `admin:announce`, to every `/chat` socket. */
  'admin:announce': (p: AnnounceEvent) => void
}

/** `/notifications` push: a mention (`@username` of a room member), a DM, or an invite. */
export interface Notification {
  type: 'mention' | 'dm' | 'invite'
  roomId: string
  messageId?: string
  from: OnlineUser
  /** The first 200 characters of the message (mentions and DMs). */
  text?: string
  timestamp: string
}

/** `/notifications`, client → server: only `auth:refresh`. */
export type NotificationsClientEvents = RefreshEvents
/** `/notifications`, server → client. */
export interface NotificationsServerEvents {
  notification: (n: Notification) => void
}

/** One node's share of `admin:stats`. */
export interface NodeStats {
  node: string
  sockets: Record<string, number>
  users: number
  rooms: number
}
/** The `admin:stats` ack: per node and in total. */
export interface StatsOk {
  nodes: NodeStats[]
  sockets: Record<'/chat' | '/notifications' | '/admin', number>
}

/** `/admin` (JWT `roles` contains `admin`), client → server. */
export interface AdminClientEvents extends RefreshEvents {
  'admin:stats': (p: unknown, ack?: AckCallback<StatsOk>) => void
  'admin:kick': (p: { userId: string }, ack?: AckCallback) => void
  'admin:announce': (p: { text: string }, ack?: AckCallback) => void
}
/** `/admin` sends nothing unasked. */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface AdminServerEvents {}

/**
 * Every event name per namespace and direction, as values: the AsyncAPI document and docs are
 * checked against these (test/docs), and the `satisfies` clauses below fail to compile when an
 * event is added to a map and not here, or the other way round.
 */
export const EVENTS = {
  '/chat': {
    client: ['room:join', 'room:leave', 'chat:message', 'chat:edit', 'chat:delete', 'chat:react', 'chat:typing', 'chat:read', 'chat:sync', 'auth:refresh'],
    server: [
      'room:history', 'room:user-joined', 'room:user-left', 'chat:message', 'chat:messages', 'chat:edited', 'chat:deleted', 'chat:reaction',
      'chat:typing', 'chat:read', 'presence:list', 'presence:online', 'presence:offline', 'admin:announce',
    ],
  },
  '/notifications': { client: ['auth:refresh'], server: ['notification'] },
  '/admin': { client: ['admin:stats', 'admin:kick', 'admin:announce', 'auth:refresh'], server: [] },
} as const

// Exact equality (an optional field on one side only counts as a difference).
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false
type Names<L extends readonly string[]> = L[number]
/** Compile-time: each list above names exactly its map's events. */
export const EVENT_LISTS_MATCH_MAPS = {
  chatClient: true as Same<Names<(typeof EVENTS)['/chat']['client']>, keyof ChatClientEvents>,
  chatServer: true as Same<Names<(typeof EVENTS)['/chat']['server']>, keyof ChatServerEvents>,
  notificationsClient: true as Same<Names<(typeof EVENTS)['/notifications']['client']>, keyof NotificationsClientEvents>,
  notificationsServer: true as Same<Names<(typeof EVENTS)['/notifications']['server']>, keyof NotificationsServerEvents>,
  adminClient: true as Same<Names<(typeof EVENTS)['/admin']['client']>, keyof AdminClientEvents>,
} satisfies Record<string, true>

/* ---------- HTTP (docs/protocol.md "HTTP"; OpenAPI at /docs/json) ---------- */

/** `POST /api/dev/token` (dev mode). */
export interface DevTokenOk {
  token: string
  /** Stable: derived from the username. */
  userId: string
  username: string
  /** The roles asked for (`["admin"]` or none). */
  roles: string[]
  /** ISO-8601. */
  expiresAt: string
}
/** `POST /api/rooms` → 201. */
export interface CreatedRoom {
  id: string
  name: string
  private: boolean
  lastSeq: number
  /** The user ids of the members, the creator included. */
  members: string[]
}
/** A room of mine as `GET /api/rooms` lists it. */
export interface RoomSummary {
  id: string
  name: string
  private: boolean
  lastSeq: number
  lastReadSeq: number
  unread: number
}
/** `POST /api/rooms` body. */
export interface CreateRoomBody {
  id?: string
  name: string
  private?: boolean
  members?: string[]
}
/** `GET /api/rooms/:id/messages?before=&limit=`: newest first. */
export interface HistoryPage {
  roomId: string
  messages: Message[]
  hasMore: boolean
}
/** Every HTTP error body. */
export interface HttpError {
  error: string
  message: string
}
