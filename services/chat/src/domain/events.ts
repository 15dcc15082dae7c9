import type { DeletedEvent, EditedEvent, Message } from './types.ts'

/**
 * What the domain announces after a change is durable. The realtime layer implements it
 * (broadcast through the adapter); services never see Socket.IO.
 */
export interface RoomEvents {
  messageCommitted(message: Message): void
  messageEdited(e: EditedEvent & { userId: string }): void
  messageDeleted(e: DeletedEvent & { userId: string }): void
  reaction(e: { roomId: string; messageId: string; version: number; emoji: string; userId: string; on: boolean }): void
  read(e: { roomId: string; userId: string; messageId: string; seq: number }): void
}
