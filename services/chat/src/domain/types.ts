/** The authenticated caller, from the JWT. */
export interface Identity {
  userId: string
  username: string
  roles: readonly string[]
  /** Token expiry, epoch seconds; undefined when the token has none. */
  exp?: number
}

export interface Attachment {
  id: string
  fileName: string
  mimeType: string
  size: number
  url: string
}

/** SPEC §4 `Message`. */
export interface Message {
  id: string
  roomId: string
  seq: number
  /** The room's version at this message's last change (SPEC §4 "Versions"). */
  version: number
  userId: string
  username: string
  text: string
  replyTo?: string
  attachment?: Attachment
  reactions?: Record<string, string[]>
  editedAt?: string
  deletedAt?: string
  timestamp: string
}

/** SPEC §4 `chat:edited`: the edit and the room version it produced. */
export interface EditedEvent {
  roomId: string
  messageId: string
  version: number
  text: string
  editedAt: string
}

/** SPEC §4 `chat:deleted`. */
export interface DeletedEvent {
  roomId: string
  messageId: string
  version: number
  deletedAt: string
}

/**
 * SPEC §4 `chat:reaction`: live, the one reaction that changed; recovered from the database
 * (a node that missed it, D92), the message's whole current `reactions` instead.
 */
export type ReactionEvent = { roomId: string; messageId: string; version: number } & (
  | { emoji: string; userId: string; on: boolean }
  | { reactions: Record<string, string[]> }
)

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

export interface OnlineUser {
  userId: string
  username: string
}
