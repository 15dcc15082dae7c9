/** The authenticated caller, from the JWT. */
export interface Identity {
  userId: string
  username: string
  roles: readonly string[]
  /** Token expiry, epoch seconds; undefined when the token has none. */
  exp?: number
}

// The wire types are the protocol module's (shared with the client SDK, D162).
export type { Attachment, DeletedEvent, EditedEvent, Message, OnlineUser, ReactionEvent } from '../../../../packages/client/src/protocol.ts'
import type { DeletedEvent, EditedEvent, ReactionEvent } from '../../../../packages/client/src/protocol.ts'

/** A change to an existing message, as the room feed orders and delivers it (by `version`). */
export type RoomChange =
  | { kind: 'edited'; event: EditedEvent }
  | { kind: 'deleted'; event: DeletedEvent }
  | { kind: 'reaction'; event: ReactionEvent }

export interface Room {
  id: string
  name: string
  isPrivate: boolean
  lastSeq: number
}

/** Where a room is: its last seq and its version. */
export interface RoomHead {
  lastSeq: number
  version: number
}
