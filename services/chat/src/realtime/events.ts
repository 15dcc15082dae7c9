import type { Namespace, Server, Socket } from 'socket.io'
import type { Identity, Message, OnlineUser } from '../domain/types.ts'
import type { Notification } from './notifications.ts'

/** Every ack: `{ status: "ok", ... }` or `{ status: "error", code, error }` (SPEC §4). */
export type Ack<T extends object = object> =
  | ({ status: 'ok' } & T)
  | { status: 'error'; code: string; error: string; retryAfterMs?: number }
type Cb<T extends object = object> = (res: Ack<T>) => void

export type JoinArg = string | { roomId: string; lastSeq?: number }

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
  'chat:sync': (p: { rooms: Record<string, number> }, ack?: Cb<{ rooms: Record<string, Message[]> }>) => void
  'auth:refresh': (p: { token: string }, ack?: Cb<{ expiresAt: string | null }>) => void
}

/** SPEC §4 server → client events of /chat. */
export interface ServerToClientEvents {
  'room:history': (p: { roomId: string; messages: Message[]; reads: Record<string, number>; hasMore: boolean }) => void
  'room:user-joined': (p: { userId: string; username: string; roomId: string }) => void
  'room:user-left': (p: { userId: string; username: string; roomId: string }) => void
  'chat:message': (m: Message) => void
  'chat:edited': (p: { roomId: string; messageId: string; text: string; editedAt: string }) => void
  'chat:deleted': (p: { roomId: string; messageId: string; deletedAt: string }) => void
  'chat:reaction': (p: { roomId: string; messageId: string; emoji: string; userId: string; on: boolean }) => void
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

/** Between nodes (serverSideEmit): committed messages travel in seq order to every node's feed. */
export interface InterServerEvents {
  'feed:messages': (messages: Message[]) => void
  /** An edit, delete or reaction in the room: drop cached history pages. */
  'feed:changed': (roomId: string) => void
}

export interface SocketData {
  identity: Identity
  /** Disconnects the socket when its token expires (chat.handlers.ts). */
  expiry?: NodeJS.Timeout
  /** True when the socket holds a place in the per-user connection count (limits.ts). */
  counted?: boolean
  /** Settles when this socket's presence was recorded; its removal waits for it. */
  presence?: Promise<void>
}

export type ChatServer = Server<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>
export type ChatNamespace = Namespace<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>
export type ChatSocket = Socket<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>

/** The room every socket of a user joins, for "except the actor" broadcasts and kicks. */
export const userRoom = (userId: string) => `@user:${userId}` // "@" never appears in a room id
