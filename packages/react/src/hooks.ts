import { useCallback, useEffect, useMemo, useSyncExternalStore } from 'react'
import type {
  Attachment,
  ConnectionState,
  NotificationsState,
  RoomHandle,
  RoomsState,
  RoomState,
  SendOk,
  Store,
} from '@switchboard/client'
import { initialRoomState } from '@switchboard/client'
import { useClient } from './provider.tsx'

/**
 * The current value of an SDK {@link Store}, re-rendering when it changes. Built on
 * `useSyncExternalStore`: the store's snapshot is the state (nothing is copied into React state),
 * and the subscription is removed when the component goes or the store changes.
 */
export function useStore<T>(store: Store<T>): T {
  const subscribe = useCallback((onChange: () => void) => store.subscribe(onChange), [store])
  const get = useCallback(() => store.get(), [store])
  return useSyncExternalStore(subscribe, get, get)
}

/** The connection: status (`connecting`, `connected`, `reconnecting`…), reconnect attempt, last error, and who I am. */
export function useConnection(): ConnectionState {
  return useStore(useClient().connection)
}

/**
 * What {@link useRoom} returns: the room's state and what can be done in it. Who types now is the
 * state's `typists`; `typing(isTyping)` says that I type (D177).
 */
export interface UseRoom extends RoomState {
  send(text: string, opts?: { replyTo?: string; attachmentId?: string; attachment?: Attachment }): Promise<SendOk>
  edit(messageId: string, text: string): Promise<void>
  remove(messageId: string): Promise<void>
  react(messageId: string, emoji: string, on: boolean): Promise<void>
  /** I am typing (or stopped); throttled by the SDK. */
  typing(isTyping: boolean): void
  markRead(seq?: number): Promise<void>
  readBy(seq: number): string[]
  loadOlder(): Promise<void>
  retry(clientMsgId: string): void
  discard(clientMsgId: string): void
}

const idleRoom: RoomState = Object.freeze(initialRoomState(''))
const idleStore: Store<RoomState> = { get: () => idleRoom, subscribe: () => () => undefined }
const noRoom = () => Promise.reject(new Error('useRoom: no room (roomId is null)'))

/**
 * A room, joined while the component is mounted: `join()` on mount, `leave()` on unmount or
 * when `roomId` changes (joins are ref-counted in the SDK, so two components showing one room
 * keep it joined until both are gone). `null` joins nothing and returns an idle, empty room.
 *
 * The state is the SDK's snapshot (messages in seq order, the pending outbox, reads, typists,
 * unread); the functions act on this room. Join errors show in `status` / `error`.
 */
export function useRoom(roomId: string | null): UseRoom {
  const client = useClient()
  const handle: RoomHandle | null = useMemo(() => (roomId === null ? null : client.room(roomId)), [client, roomId])
  useEffect(() => {
    if (!handle) return
    // A refused join is in the room's state (status 'error'); nothing to throw here.
    handle.join().catch(() => undefined)
    return () => void handle.leave().catch(() => undefined)
  }, [handle])
  const state = useStore(handle ? handle.state : idleStore)
  return useMemo<UseRoom>(() => {
    if (!handle) {
      return {
        ...state,
        send: noRoom,
        edit: noRoom,
        remove: noRoom,
        react: noRoom,
        typing: () => undefined,
        markRead: noRoom,
        readBy: () => [],
        loadOlder: noRoom,
        retry: () => undefined,
        discard: () => undefined,
      }
    }
    return {
      ...state,
      send: (text, opts) => handle.send(text, opts),
      edit: (id, text) => handle.edit(id, text),
      remove: (id) => handle.remove(id),
      react: (id, emoji, on) => handle.react(id, emoji, on),
      typing: (on) => handle.typing(on),
      markRead: (seq) => handle.markRead(seq),
      readBy: (seq) => handle.readBy(seq),
      loadOlder: () => handle.loadOlder(),
      retry: (id) => handle.retry(id),
      discard: (id) => handle.discard(id),
    }
  }, [state, handle])
}

/** Who is online (user id → name) among the people I share a room with, cluster-wide. */
export function usePresence(): { online: ReadonlyMap<string, string>; isOnline(userId: string): boolean } {
  const state = useStore(useClient().presence)
  return useMemo(() => ({ online: state.online, isOnline: (userId: string) => state.online.has(userId) }), [state])
}

/** Live pushes from `/notifications` (mentions, DMs, invites), with how many are unseen. */
export function useNotifications(): NotificationsState & { markSeen(): void } {
  const client = useClient()
  const state = useStore(client.notifications)
  return useMemo(() => ({ ...state, markSeen: () => client.notifications.markSeen() }), [state, client])
}

/** My rooms (`GET /api/rooms`), unread counts kept live; a new DM room appears without a reload. */
export function useRooms(): RoomsState & { refresh(): Promise<void> } {
  const client = useClient()
  const state = useStore(client.rooms)
  return useMemo(() => ({ ...state, refresh: () => client.rooms.refresh() }), [state, client])
}
