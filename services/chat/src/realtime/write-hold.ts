import type { ChatNamespace } from './events.ts'

/** The engine.io pieces this relies on (public fields of engine.io's Socket and Transport, plus the `ws` socket of its WebSocket transport). */
interface Conn {
  transport: { name: string; writable: boolean; socket?: { _socket?: { cork(): void; uncork(): void } } }
  flush(): void
}

/**
 * Runs `fanOut` (which broadcasts several messages to `rooms`) with the WebSocket writes of this
 * node's sockets in those rooms held back, then writes each socket's frames at once: one
 * `writev` per socket for the whole batch instead of one per message. Group commit hands the
 * feed a batch of messages; without this each would cost every member a system call (and nginx
 * a wake-up), which on a loaded machine is most of a delivery's cost.
 *
 * Only sockets whose transport is idle are held (a socket mid-write buffers anyway and flushes on
 * drain); everything happens in one synchronous turn, so no other code sees a held socket.
 */
export function withWritesHeld(nsp: ChatNamespace, rooms: Iterable<string>, fanOut: () => void): void {
  const held: Conn[] = []
  for (const roomId of rooms) {
    const ids = nsp.adapter.rooms.get(roomId)
    if (!ids) continue
    for (const id of ids) {
      const conn = nsp.sockets.get(id)?.conn as unknown as Conn | undefined
      const t = conn?.transport
      if (t?.name === 'websocket' && t.writable) {
        t.writable = false
        held.push(conn!)
      }
    }
  }
  try {
    fanOut()
  } finally {
    for (const conn of held) {
      conn.transport.writable = true
      const raw = conn.transport.socket?._socket
      raw?.cork()
      conn.flush()
      raw?.uncork()
    }
  }
}

/** Rooms that occur more than once in `messages` (only their members have frames to merge; none: nothing is held). */
export function repeatedRooms(messages: readonly { roomId: string }[]): string[] {
  if (messages.length < 2) return []
  const seen = new Set<string>()
  const repeated = new Set<string>()
  for (const m of messages) (seen.has(m.roomId) ? repeated : seen).add(m.roomId)
  return [...repeated]
}
