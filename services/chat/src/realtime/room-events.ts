import type { RoomEvents } from '../domain/events.ts'
import type { Metrics } from '../metrics.ts'
import { userRoom, type ChatNamespace } from './events.ts'
import type { Notifier } from './notifications.ts'
import type { RoomFeed } from './room-feed.ts'

/** The domain's announcements: messages and changes through the ordered feed, read marks through the adapter. */
export function createRoomEvents(nsp: ChatNamespace, feed: RoomFeed, metrics: Metrics, notifier: Notifier): RoomEvents {
  return {
    messageCommitted(m) {
      metrics.eventsOut.inc({ event: 'chat:message' })
      feed.publish(m)
      void notifier.messageCommitted(m)
    },
    // Changes go through the feed too, ordered with the room's messages by version (D91).
    messageEdited({ roomId, messageId, version, text, editedAt }) {
      metrics.eventsOut.inc({ event: 'chat:edited' })
      feed.change({ kind: 'edited', event: { roomId, messageId, version, text, editedAt } })
    },
    messageDeleted({ roomId, messageId, version, deletedAt }) {
      metrics.eventsOut.inc({ event: 'chat:deleted' })
      feed.change({ kind: 'deleted', event: { roomId, messageId, version, deletedAt } })
    },
    reaction({ roomId, messageId, version, emoji, userId, on }) {
      metrics.eventsOut.inc({ event: 'chat:reaction' })
      feed.change({ kind: 'reaction', event: { roomId, messageId, version, emoji, userId, on } })
    },
    read(e) {
      metrics.eventsOut.inc({ event: 'chat:read' })
      feed.flush(e.roomId) // the messages it may refer to go first
      nsp.to(e.roomId).except(userRoom(e.userId)).emit('chat:read', e)
    },
  }
}
