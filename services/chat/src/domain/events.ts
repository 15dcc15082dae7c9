import type { Message } from './types.ts'

/**
 * What the domain announces after a change is durable. The realtime layer implements it
 * (broadcast through the adapter); services never see Socket.IO.
 */
export interface RoomEvents {
  messageCommitted(message: Message): void
  messageEdited(e: { roomId: string; messageId: string; text: string; editedAt: string; userId: string }): void
  messageDeleted(e: { roomId: string; messageId: string; deletedAt: string; userId: string }): void
  reaction(e: { roomId: string; messageId: string; emoji: string; userId: string; on: boolean }): void
  read(e: { roomId: string; userId: string; messageId: string; seq: number }): void
}
