import type { RoomEvents } from '../domain/events.ts'
import type { Metrics } from '../metrics.ts'
import { userRoom, type ChatNamespace } from './events.ts'
import type { Notifier } from './notifications.ts'
import type { RoomFeed } from './room-feed.ts'

/** The domain's announcements, broadcast through the adapter (messages through the ordered feed). */
export function createRoomEvents(nsp: ChatNamespace, feed: RoomFeed, metrics: Metrics, notifier: Notifier): RoomEvents {
  return {
    messageCommitted(m) {
      metrics.eventsOut.inc({ event: 'chat:message' })
      feed.publish(m)
      void notifier.messageCommitted(m)
    },
    messageEdited({ roomId, messageId, text, editedAt }) {
      metrics.eventsOut.inc({ event: 'chat:edited' })
      feed.changed(roomId)
      nsp.to(roomId).emit('chat:edited', { roomId, messageId, text, editedAt })
    },
    messageDeleted({ roomId, messageId, deletedAt }) {
      metrics.eventsOut.inc({ event: 'chat:deleted' })
      feed.changed(roomId)
      nsp.to(roomId).emit('chat:deleted', { roomId, messageId, deletedAt })
    },
    reaction(e) {
      metrics.eventsOut.inc({ event: 'chat:reaction' })
      feed.changed(e.roomId)
      nsp.to(e.roomId).emit('chat:reaction', e)
    },
    read(e) {
      metrics.eventsOut.inc({ event: 'chat:read' })
      nsp.to(e.roomId).except(userRoom(e.userId)).emit('chat:read', e)
    },
  }
}
