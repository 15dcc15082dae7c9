/**
 * `@switchboard/react`: React hooks over `@switchboard/client`. Wrap the app in
 * {@link SwitchboardProvider}; read state with the hooks (all `useSyncExternalStore` over the
 * SDK's stores: no state copied into React, no listener left behind).
 * @packageDocumentation
 */
export { SwitchboardProvider, useClient, type SwitchboardProviderProps } from './provider.tsx'
export { useConnection, useNotifications, usePresence, useRoom, useRooms, useStore, type UseRoom } from './hooks.ts'
export type { ConnectionState, Message, NotificationsState, PendingMessage, RoomState, RoomsState } from '@switchboard/client'
