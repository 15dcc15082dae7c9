import type { Message, RoomChange } from '../domain/types.ts'
import type { ChatNamespace, ChatSocket } from './events.ts'

/** What a room feed orders by version (D91): a new message, or a change to an existing one. */
export type FeedEvent = { kind: 'message'; message: Message } | RoomChange

export const versionOf = (e: FeedEvent): number => (e.kind === 'message' ? e.message.version : e.event.version)
export const roomOf = (e: FeedEvent): string => (e.kind === 'message' ? e.message.roomId : e.event.roomId)
/** A room's committed events as they travel on its channel (room-channels.ts), in commit order. */
export const encodeFeed = (events: FeedEvent[]): string => JSON.stringify({ feed: events })

export const messageIdOf = (e: FeedEvent): string => (e.kind === 'message' ? e.message.id : e.event.messageId)

/**
 * A message's current state (read from the database) as the SPEC events that bring a client
 * holding an older state up to it (D92): a tombstone is a `chat:deleted`; otherwise a
 * `chat:edited` when it was ever edited, and a `chat:reaction` with the whole `reactions` map.
 * All carry the message's version; the database does not say which of them changed last.
 */
export function recoveredChanges(m: Message): RoomChange[] {
  const base = { roomId: m.roomId, messageId: m.id, version: m.version }
  if (m.deletedAt) return [{ kind: 'deleted', event: { ...base, deletedAt: m.deletedAt } }]
  const out: RoomChange[] = []
  if (m.editedAt) out.push({ kind: 'edited', event: { ...base, text: m.text, editedAt: m.editedAt } })
  // Emoji are keys from users: a prototype-free map, like the one history carries.
  out.push({ kind: 'reaction', event: { ...base, reactions: m.reactions ?? Object.create(null) } })
  return out
}

type Target = ChatSocket | ReturnType<ChatNamespace['to']>

/** Sends a feed event to one socket or to a room, as its SPEC event. */
export function sendEvent(to: Target, e: FeedEvent): void {
  // One emit per branch: the event name fixes the payload's type.
  const t = to as ChatSocket
  if (e.kind === 'message') t.emit('chat:message', e.message)
  else if (e.kind === 'edited') t.emit('chat:edited', e.event)
  else if (e.kind === 'deleted') t.emit('chat:deleted', e.event)
  else t.emit('chat:reaction', e.event)
}
