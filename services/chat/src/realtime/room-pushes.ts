import { randomUUID } from 'node:crypto'
import type { RoomChannels } from '../cluster/room-channels.ts'
import type { OnlineUser } from '../domain/types.ts'
import type { Logger } from '../logger.ts'
import { userRoom, type ChatNamespace } from './events.ts'
import type { FeedEvent } from './feed-events.ts'
import type { RoomFeed } from './room-feed.ts'

export type PresenceEvent = 'presence:online' | 'presence:offline'

interface PresencePush {
  /** One id for all the copies of one change (one per room of the user). */
  id: string
  event: PresenceEvent
  user: OnlineUser
}

/** What travels on a room's channel: the room's committed events (the feed), or a presence change for its members. */
type ChannelMessage = { feed: FeedEvent[] } | { presence: PresencePush }

/** How long a node remembers which of its sockets got a presence change: its copies for the user's other rooms arrive well within it. */
const PRESENCE_DEDUPE_MS = 30_000

/**
 * What goes to the members of rooms over the room channels (SPEC §7), beside the adapter: the
 * feed's committed events (handed to the feed) and presence changes. A presence change goes to
 * every room of the user at once; sent room by room, a socket in two of those rooms would get it
 * twice, and one adapter broadcast to many rooms goes to every node. So each room's channel gets
 * a copy with one id, and each node delivers it to its sockets in the room (not the user's own)
 * that did not get that id through another room yet (D141).
 */
export class RoomPushes {
  private readonly delivered = new Map<string, { at: number; sockets: Set<string> }>()

  constructor(
    private readonly nsp: ChatNamespace,
    private readonly channels: RoomChannels | undefined,
    private readonly feed: RoomFeed,
    private readonly log: Logger,
  ) {
    channels?.onMessage((roomId, payload) => this.receive(roomId, payload))
  }

  /** `user` came online or went offline: tell the sockets in `roomIds`, except the user's own, once each, on every node. */
  presence(roomIds: string[], user: OnlineUser, event: PresenceEvent): void {
    if (roomIds.length === 0) return
    if (!this.channels) {
      this.nsp.to(roomIds).except(userRoom(user.userId)).emit(event, user)
      return
    }
    this.nsp.local.to(roomIds).except(userRoom(user.userId)).emit(event, user)
    const payload = JSON.stringify({ presence: { id: randomUUID(), event, user } } satisfies ChannelMessage)
    for (const roomId of roomIds) this.channels.publish(roomId, payload)
  }

  private receive(roomId: string, payload: string): void {
    let message: ChannelMessage
    try {
      message = JSON.parse(payload) as ChannelMessage
    } catch (err) {
      this.log.warn({ err: (err as Error).message, roomId }, 'unreadable room channel message dropped')
      return
    }
    if ('feed' in message) this.feed.receiveFromPeers(message.feed)
    else if ('presence' in message) this.deliverPresence(roomId, message.presence)
  }

  private deliverPresence(roomId: string, push: PresencePush): void {
    const now = Date.now()
    for (const [id, d] of this.delivered) {
      if (now - d.at < PRESENCE_DEDUPE_MS) break // oldest first
      this.delivered.delete(id)
    }
    const members = this.nsp.adapter.rooms.get(roomId)
    if (!members) return
    let done = this.delivered.get(push.id)
    if (!done) this.delivered.set(push.id, (done = { at: now, sockets: new Set() }))
    const own = this.nsp.adapter.rooms.get(userRoom(push.user.userId))
    for (const id of members) {
      if (own?.has(id) || done.sockets.has(id)) continue
      done.sockets.add(id)
      this.nsp.sockets.get(id)?.emit(push.event, push.user)
    }
  }
}
