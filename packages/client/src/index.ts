/**
 * `@switchboard/client`: the Switchboard chat SDK. One connection for `/chat`, `/notifications`
 * and `/admin`, an ordered outbox per room, resync on every reconnect, immutable subscribable
 * state. Node 20+ and browsers; no framework.
 * @packageDocumentation
 */
export * from './protocol.ts'
export { SwitchboardClient, type ClientOptions, type ConnectionState, type ConnectionStatus, type NotificationsState, type PresenceState, type RoomsState } from './client.ts'
export { RoomHandle, backoffMs, initialRoomState, type PendingMessage, type RoomState } from './room.ts'
export { SwitchboardError } from './errors.ts'
export { ValueStore, type Store } from './store.ts'
export { decodeClaims, type TokenClaims } from './jwt.ts'
export { applyDelete, applyEdit, applyReaction, applyUpdated, contiguousLastSeq, copyReactions, dmRoomId, maxVersion, mergeMessages, normalizeMessage, readersOf } from './timeline.ts'
