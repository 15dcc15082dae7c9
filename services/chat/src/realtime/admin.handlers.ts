import type { Namespace } from 'socket.io'
import Type from 'typebox'
import type { Tokens } from '../auth/tokens.ts'
import type { Logger } from '../logger.ts'
import type { Metrics } from '../metrics.ts'
import { EventRouter } from './handle.ts'
import { addRefresh } from './session.ts'
import { userRoom, type ChatServer } from './events.ts'

export const KickPayload = Type.Object({ userId: Type.String({ minLength: 1, maxLength: 128 }) })
export const AnnouncePayload = Type.Object({ text: Type.String({ minLength: 1, maxLength: 2000 }) })

export type { NodeStats } from '../../../../packages/client/src/protocol.ts'
import type { NodeStats } from '../../../../packages/client/src/protocol.ts'

/** This node's live numbers (answered to other nodes' `admin:stats` too). */
export function localStats(io: ChatServer, nodeId: string, trackedRooms: () => number): NodeStats {
  const sockets: Record<string, number> = {}
  for (const name of ['/chat', '/notifications', '/admin']) sockets[name] = io.of(name).sockets.size
  const users = new Set([...io.of('/chat').sockets.values()].map((s) => s.data.identity?.userId))
  return { node: nodeId, sockets, users: users.size, rooms: trackedRooms() }
}

/**
 * /admin (SPEC §3, `roles` contains `admin`): `admin:stats` gathers every node's numbers,
 * `admin:kick {userId}` disconnects the user's sockets on every node, `admin:announce {text}`
 * reaches every /chat socket of the cluster; `auth:refresh` as on every namespace.
 */
export function adminRouter(
  io: ChatServer,
  deps: { nodeId: string; shared: boolean; log: Logger; metrics: Metrics; tokens: Tokens; trackedRooms: () => number },
): EventRouter {
  const router = new EventRouter(deps.log, deps.metrics)
  // A refresh must keep the admin role: an /admin socket never outlives its admin token.
  addRefresh(router, deps.tokens, deps.log, 'admin')

  router.on('admin:stats', Type.Any(), async () => {
    // The other nodes answer through the adapter (the embedded node has none to ask).
    const admin = io.of('/admin') as unknown as Namespace
    const others = deps.shared ? ((await admin.serverSideEmitWithAck('admin:stats').catch(() => [])) as NodeStats[]) : []
    const nodes = [localStats(io, deps.nodeId, deps.trackedRooms), ...others].sort((a, b) => a.node.localeCompare(b.node))
    const total = (ns: string) => nodes.reduce((s, n) => s + (n.sockets[ns] ?? 0), 0)
    return { nodes, sockets: { '/chat': total('/chat'), '/notifications': total('/notifications'), '/admin': total('/admin') } }
  })

  router.on('admin:kick', KickPayload, async (socket, { userId }) => {
    deps.log.warn({ by: socket.data.identity.userId, userId }, 'admin kick')
    io.of('/chat').in(userRoom(userId)).disconnectSockets(true)
    io.of('/notifications').in(userRoom(userId)).disconnectSockets(true)
  })

  router.on('admin:announce', AnnouncePayload, async (socket, { text }) => {
    const { userId, username } = socket.data.identity
    io.of('/chat').emit('admin:announce', { text, from: { userId, username }, timestamp: new Date().toISOString() })
  })
  return router
}
