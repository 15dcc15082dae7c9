/** What a pub/sub message between nodes was for (`switchboard_cluster_messages_received_total{kind}`). */
export type ChannelKind = 'room' | 'user' | 'main'

/** The user rooms of realtime/events.ts (`userRoom`): per-user channels. */
const USER_ROOM = '@user:'

/**
 * The namespace and kind of a Socket.IO adapter channel under `key` (both adapters name them
 * `<key>#<nsp>#` for everything, `<key>#<nsp>#<room>#` for one room, and `<key>-request#…` /
 * `<key>-response#…` or `<key>#<nsp>#<adapter uid>#` for requests between nodes), or undefined
 * for a channel that is not the adapter's. `responseId(nsp)`: this node's adapter id there.
 */
export function adapterChannelKind(channel: string, key: string, responseId: (nsp: string) => string | undefined): { nsp: string; kind: ChannelKind } | undefined {
  if (!channel.startsWith(key)) return undefined
  const rest = channel.slice(key.length)
  const nspStart = rest.indexOf('#') + 1
  const nspEnd = nspStart > 0 ? rest.indexOf('#', nspStart) : -1
  if (nspEnd < 0) return undefined
  const nsp = rest.slice(nspStart, nspEnd)
  if (!rest.startsWith('#')) return { nsp, kind: 'main' } // -request / -response
  const room = rest.slice(nspEnd + 1, -1)
  if (room === '' || room === responseId(nsp)) return { nsp, kind: 'main' }
  return { nsp, kind: room.startsWith(USER_ROOM) ? 'user' : 'room' }
}
