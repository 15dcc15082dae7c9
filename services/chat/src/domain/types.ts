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

export interface Room {
  id: string
  name: string
  isPrivate: boolean
  lastSeq: number
}

export interface OnlineUser {
  userId: string
  username: string
}
