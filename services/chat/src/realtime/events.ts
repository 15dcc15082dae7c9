import type { Namespace, Server, Socket } from 'socket.io'
import type { Identity } from '../domain/types.ts'

import type {
  Ack as WireAck,
  AdminClientEvents,
  AdminServerEvents,
  ChatClientEvents,
  ChatServerEvents,
  JoinPayload,
  NotificationsClientEvents,
  NotificationsServerEvents,
  SyncPoint as WireSyncPoint,
} from '../../../../packages/client/src/protocol.ts'

// The wire protocol is one module shared with the client SDK (packages/client/src/protocol.ts,
// D162): the server types its namespaces with those maps, so neither side can drift.
export type Ack<T extends object = object> = WireAck<T>
export type JoinArg = JoinPayload
export type SyncPoint = WireSyncPoint

/** /chat, /notifications and /admin client → server events: one Server carries them all. */
export interface ClientToServerEvents extends ChatClientEvents, Omit<AdminClientEvents, keyof ChatClientEvents> {}
/** Every server → client event of the three namespaces. */
export interface ServerToClientEvents extends ChatServerEvents, NotificationsServerEvents, AdminServerEvents {}
export type { NotificationsClientEvents }

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
  /** The handshake's `auth.batches`: several messages of a room may come as one `chat:messages` (D182). */
  batches?: boolean
}

export type ChatServer = Server<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>
export type ChatNamespace = Namespace<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>
export type ChatSocket = Socket<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>

/** The room every socket of a user joins, for "except the actor" broadcasts and kicks. */
export const userRoom = (userId: string) => `@user:${userId}` // "@" never appears in a room id
/** Names of rooms that only this node's own broadcasts address: no other node needs to hear of them. */
export const LOCAL_ROOM_PREFIX = '@batch:'
/** A room's sockets on this node that take `chat:messages` (room-feed.ts, D182). */
export const batchRoom = (roomId: string) => `${LOCAL_ROOM_PREFIX}${roomId}`
/** Every /chat socket of this node: a cross-node operation can leave this node's sockets out. */
export const nodeRoom = (nodeId: string) => `@node:${nodeId}`
