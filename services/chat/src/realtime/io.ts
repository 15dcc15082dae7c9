import type { IncomingMessage, Server as HttpServer } from 'node:http'
import { Server } from 'socket.io'
import type { Tokens } from '../auth/tokens.ts'
import type { Cluster } from '../cluster/cluster.ts'
import type { Config } from '../config.ts'
import type { Metrics } from '../metrics.ts'
import { requestedHost, type TrustProxy } from '../http/proxies.ts'
import type { Logger } from '../logger.ts'
import { authMiddleware } from './auth.middleware.ts'
import { userRoom, type ChatServer, type ChatSocket } from './events.ts'
import { AddressLimit, NAMESPACES, userLimit } from './limits.ts'
import { armExpiry } from './session.ts'

/**
 * The Socket.IO server on the node's HTTP server: adapter, CORS for polling, the origin
 * allowlist on every handshake (WebSockets ignore CORS), the node header on every Engine.IO
 * response, and authenticated namespaces.
 */
export function createIo(
  server: HttpServer,
  config: Config,
  cluster: Cluster,
  tokens: Tokens,
  metrics: Metrics,
  isDraining: () => boolean,
  opts: { log: Logger; trusted: TrustProxy; track: (work: Promise<unknown>) => void },
): ChatServer {
  const { log, trusted } = opts
  const addresses = new AddressLimit(config.MAX_CONNECTIONS_PER_IP, trusted)
  const io: ChatServer = new Server(server, {
    adapter: cluster.adapter,
    cors: { origin: config.corsOrigins.length > 0 ? [...config.corsOrigins] : false, credentials: true },
    allowRequest: (req, cb) => {
      if (isDraining()) return cb('Server is draining', false)
      if (!originAllowed(req, config.corsOrigins, trusted)) return cb(null, false)
      addresses.judge(req)
      cb(null, true)
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
  io.engine.on('connection', (raw: Parameters<AddressLimit['opened']>[0] & { request: IncomingMessage | null; bearer?: string }) => {
    addresses.opened(raw, raw.request)
    raw.bearer = raw.request?.headers.authorization
    raw.request = null
  })

  // Every namespace: the address limit, authentication (with a role on /admin), the user limit
  // (SPEC §2, §3); at connection the token's expiry; at disconnect the clean-up. One set of
  // functions for all sockets of a namespace (D37).
  const byAddress = addresses.middleware(metrics)
  const byUser = userLimit(cluster.connections, config.MAX_CONNECTIONS_PER_USER, metrics, log)
  for (const name of NAMESPACES) {
    const nsp = io.of(name)
    nsp.use(byAddress)
    nsp.use(authMiddleware(tokens, name === '/admin' ? 'admin' : undefined))
    nsp.use(byUser)
    const metered = name !== '/' // the metric's namespaces
    const gone = function (this: ChatSocket) {
      if (metered) metrics.socketsConnected.dec({ namespace: name })
      clearTimeout(this.data.expiry)
      const { userId } = this.data.identity
      opts.track(
        cluster.connections
          .release(name, userId, this.id)
          .catch((err: Error) => log.warn({ err: err.message, userId, namespace: name }, 'connection count release failed; reconciliation retries it')),
      )
    }
    nsp.on('connection', (socket) => {
      if (metered) metrics.socketsConnected.inc({ namespace: name })
      armExpiry(socket, log)
      socket.on('disconnect', gone)
    })
  }
  io.of('/notifications').on('connection', (socket) => void socket.join(userRoom(socket.data.identity.userId)))
  return io
}

/**
 * Same-origin and configured origins pass; a request without Origin is not from a browser page.
 * The host asked for is `X-Forwarded-Host` only from a trusted proxy: anyone else could send one
 * that matches their own Origin.
 */
export function originAllowed(req: IncomingMessage, allowed: readonly string[], trusted: TrustProxy): boolean {
  const origin = req.headers.origin
  if (!origin) return true
  if (allowed.includes(origin) || allowed.includes('*')) return true
  try {
    return new URL(origin).host === requestedHost(req, trusted)
  } catch {
    return false
  }
}

/** Engine.IO connections of this node by session id (typed as public; Engine.IO keeps it protected). */
export function engineClients(io: ChatServer): Record<string, { close(): void }> {
  return (io.engine as unknown as { clients: Record<string, { close(): void }> }).clients
}
