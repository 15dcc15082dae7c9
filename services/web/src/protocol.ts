/**
 * The wire protocol as the browser client uses it: the protocol module shared with the server
 * and the SDK (packages/client/src/protocol.ts, D162), plus what only this UI needs.
 */
export * from '../../../packages/client/src/protocol.ts'
export type { ChatClientEvents as ClientToServerEvents, ChatServerEvents as ServerToClientEvents } from '../../../packages/client/src/protocol.ts'

/** The room id rule as an HTML `pattern` (the browser anchors it; no look-ahead needed there). */
export const ROOM_ID_FORM_PATTERN = '[A-Za-z0-9:_.\\-]{1,128}'
export const ROOM_ID_TITLE = '1–128 characters: letters, digits, : _ . -'
