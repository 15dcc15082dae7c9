import type { Namespace, Server, Socket } from 'socket.io'
import type { DeletedEvent, EditedEvent, Identity, Message, OnlineUser, ReactionEvent } from '../domain/types.ts'
import type { Notification } from './notifications.ts'

/** Every ack: `{ status: "ok", ... }` or `{ status: "error", code, error }` (SPEC §4). */
export type Ack<T extends object = object> =
  | ({ status: 'ok' } & T)
  | { status: 'error'; code: string; error: string; retryAfterMs?: number }
type Cb<T extends object = object> = (res: Ack<T>) => void

export type JoinArg = string | { roomId: string; lastSeq?: number; version?: number }
/** Where a client is in a room for `chat:sync`: a bare lastSeq (no `updated`), or with its version. */
export type SyncPoint = number | { lastSeq: number; version: number }

/** SPEC §4 client → server events of /chat. */
export interface ClientToServerEvents {
  'room:join': (p: JoinArg, ack?: Cb<{ roomId: string; lastSeq: number; online: OnlineUser[] }>) => void
  'room:leave': (p: string | { roomId: string }, ack?: Cb) => void
  'chat:message': (
    p: { roomId: string; text: string; replyTo?: string; clientMsgId?: string; attachmentId?: string },
    ack?: Cb<{ messageId: string; seq: number }>,
  ) => void
  'chat:edit': (p: { roomId: string; messageId: string; text: string }, ack?: Cb) => void
  'chat:delete': (p: { roomId: string; messageId: string }, ack?: Cb) => void
  'chat:react': (p: { roomId: string; messageId: string; emoji: string; on: boolean }, ack?: Cb) => void
  'chat:typing': (p: { roomId: string; isTyping: boolean }, ack?: Cb) => void
  'chat:read': (p: { roomId: string; messageId: string } | { roomId: string; seq: number }, ack?: Cb) => void
  'chat:sync': (
    p: { rooms: Record<string, SyncPoint> },
    ack?: Cb<{ rooms: Record<string, Message[]>; updated: Record<string, Message[]>; hasMore: string[]; errors?: Record<string, string> }>,
  ) => void
  'auth:refresh': (p: { token: string }, ack?: Cb<{ expiresAt: string | null }>) => void
}

/** SPEC §4 server → client events of /chat. */
export interface ServerToClientEvents {
  'room:history': (p: { roomId: string; messages: Message[]; reads: Record<string, number>; hasMore: boolean; updated?: Message[] }) => void
  'room:user-joined': (p: { userId: string; username: string; roomId: string }) => void
  'room:user-left': (p: { userId: string; username: string; roomId: string }) => void
  'chat:message': (m: Message) => void
  'chat:edited': (p: EditedEvent) => void
  'chat:deleted': (p: DeletedEvent) => void
  'chat:reaction': (p: ReactionEvent) => void
  'chat:typing': (p: { userId: string; username: string; roomId: string; isTyping: boolean }) => void
  'chat:read': (p: { userId: string; roomId: string; messageId: string; seq: number }) => void
  'presence:list': (users: OnlineUser[]) => void
  'presence:online': (u: OnlineUser) => void
  'presence:offline': (u: OnlineUser) => void
  /** /notifications: a mention, a DM or an invite for this user. */
  notification: (n: Notification) => void
  /** From /admin `admin:announce`, to every /chat socket. */
  'admin:announce': (p: { text: string; from: OnlineUser; timestamp: string }) => void
}

/**
 * Between nodes through the adapter (serverSideEmit): nothing on /chat. Committed messages and
 * changes travel on per-room channels (room-channels.ts, room-feed.ts), not to every node.
 */
export type InterServerEvents = Record<string, never>

export interface SocketData {
  identity: Identity
  /** Disconnects the socket when its token expires (chat.handlers.ts). */
  expiry?: NodeJS.Timeout
  /** Settles when this socket's presence was recorded; its removal waits for it. */
  presence?: Promise<void>
}

export type ChatServer = Server<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>
export type ChatNamespace = Namespace<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>
export type ChatSocket = Socket<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>

/** The room every socket of a user joins, for "except the actor" broadcasts and kicks. */
export const userRoom = (userId: string) => `@user:${userId}` // "@" never appears in a room id
/** Every /chat socket of this node: a cross-node operation can leave this node's sockets out. */
export const nodeRoom = (nodeId: string) => `@node:${nodeId}`
