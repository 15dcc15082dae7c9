import type { IncomingMessage, Server as HttpServer } from 'node:http'
import { Server } from 'socket.io'
import type { Tokens } from '../auth/tokens.ts'
import type { Cluster } from '../cluster/cluster.ts'
import type { Config } from '../config.ts'
import type { Metrics } from '../metrics.ts'
import { authMiddleware } from './auth.middleware.ts'
import { userRoom, type ChatServer } from './events.ts'

/**
 * The Socket.IO server on the node's HTTP server: adapter, CORS for polling, the origin
 * allowlist on every handshake (WebSockets ignore CORS), the node header on every Engine.IO
 * response, and authenticated namespaces.
 */
export function createIo(server: HttpServer, config: Config, cluster: Cluster, tokens: Tokens, metrics: Metrics, isDraining: () => boolean): ChatServer {
  const io: ChatServer = new Server(server, {
    adapter: cluster.adapter,
    cors: { origin: config.corsOrigins.length > 0 ? [...config.corsOrigins] : false, credentials: true },
    allowRequest: (req, cb) => {
      if (isDraining()) return cb('Server is draining', false)
      cb(null, originAllowed(req, config.corsOrigins))
    },
    pingInterval: 25_000,
    pingTimeout: 20_000,
    maxHttpBufferSize: 1e6,
  })
  const stamp = (headers: Record<string, string>) => {
    headers['x-switchboard-node'] = config.nodeId
  }
  io.engine.on('initial_headers', stamp)
  io.engine.on('headers', stamp)
  // Memory: the handshake request (with its socket and buffers) would live as long as the
  // connection. Keep only what the auth middleware may read, then let it go.
  io.engine.on('connection', (raw: { request: IncomingMessage | null; bearer?: string }) => {
    raw.bearer = raw.request?.headers.authorization
    raw.request = null
  })

  io.use(authMiddleware(tokens))
  io.of('/chat').use(authMiddleware(tokens))
  const notifications = io.of('/notifications')
  notifications.use(authMiddleware(tokens))
  notifications.on('connection', (socket) => void socket.join(userRoom(socket.data.identity.userId)))

  io.of('/admin').use(authMiddleware(tokens, 'admin'))

  for (const name of ['/chat', '/notifications', '/admin']) {
    const nsp = io.of(name)
    const gone = () => metrics.socketsConnected.dec({ namespace: name }) // one function for all sockets
    nsp.on('connection', (socket) => {
      metrics.socketsConnected.inc({ namespace: name })
      socket.on('disconnect', gone)
    })
  }
  return io
}

/** Same-origin and configured origins pass; a request without Origin is not from a browser page. */
export function originAllowed(req: IncomingMessage, allowed: readonly string[]): boolean {
  const origin = req.headers.origin
  if (!origin) return true
  if (allowed.includes(origin) || allowed.includes('*')) return true
  try {
    const host = (req.headers['x-forwarded-host'] as string | undefined)?.split(',')[0].trim() ?? req.headers.host
    return new URL(origin).host === host
  } catch {
    return false
  }
}

/** Engine.IO connections of this node by session id (typed as public; Engine.IO keeps it protected). */
export function engineClients(io: ChatServer): Record<string, { close(): void }> {
  return (io.engine as unknown as { clients: Record<string, { close(): void }> }).clients
}
