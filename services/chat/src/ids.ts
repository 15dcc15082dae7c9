import { createHash } from 'node:crypto'
import { v7 as uuidv7 } from 'uuid'

/** Time-ordered message ids (UUIDv7). */
export const newMessageId = (): string => uuidv7()

/** The stable dev-token user id for a username: case-insensitive, so "Ana" and "ana" are one user. */
export function devUserId(username: string): string {
  return 'u_' + createHash('sha256').update(username.trim().toLowerCase()).digest('base64url').slice(0, 20)
}
