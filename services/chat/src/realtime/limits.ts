import type { IncomingMessage } from 'node:http'
import { normalizeIP } from '@fastify/rate-limit'
import type { Socket } from 'socket.io'
import type { ConnectionRegistry, ConnectionRepair, CountedSocket } from '../cluster/connections.ts'
import { clientAddress, type TrustProxy } from '../http/proxies.ts'
import type { Logger } from '../logger.ts'
import type { Metrics } from '../metrics.ts'
import { refusal, type ExtendedError } from './auth.middleware.ts'
import type { ChatServer } from './events.ts'

/** Every namespace: each has the address limit, authentication and the user limit (io.ts). */
export const NAMESPACES = ['/', '/chat', '/notifications', '/admin'] as const

/** What `judge()` decided of a handshake, kept beside its request until the session opens. */
interface Verdict {
  clientAddress: string
  overAddressLimit: boolean
}
/** What the limits keep on the Engine.IO connection. */
interface Marked {
  clientAddress?: string
  /** Over MAX_CONNECTIONS_PER_IP when it arrived: refused at its first namespace, closed soon. */
  overAddressLimit?: boolean
}
type EngineConnection = Marked & { readyState: string; close(): void; on(event: 'close', fn: () => void): void }

/** How long a session over the address limit lives: enough to deliver the refusal (D55). */
const REFUSED_SESSION_MS = 2000

/**
 * MAX_CONNECTIONS_PER_IP (SPEC §3): Engine.IO sessions per client address on this node, the
 * address being the real client's behind trusted proxies. A handshake over the limit is let
 * through Engine.IO only so that its namespace can refuse it with `RATE_LIMITED` (Engine.IO's own
 * refusal carries no code), is not counted, and is closed after `REFUSED_SESSION_MS`.
 */
export class AddressLimit {
  private readonly counts = new Map<string, number>()
  /**
   * Each handshake's verdict, from `allowRequest` to Engine.IO's `connection`, beside the request
   * rather than on it: Engine.IO keeps the upgrade request as long as the WebSocket lives, and two
   * more properties on an IncomingMessage turn it into a dictionary of 1.6 KB (D185).
   */
  private readonly verdicts = new WeakMap<IncomingMessage, Verdict>()
  /** One listener for every connection (D37): Engine.IO calls it with the connection as `this`. */
  private readonly closed: (this: EngineConnection) => void

  constructor(
    private readonly max: number,
    private readonly trusted: TrustProxy,
  ) {
    const counts = this.counts
    this.closed = function (this: EngineConnection) {
      const a = this.clientAddress!
      const n = (counts.get(a) ?? 1) - 1
      if (n > 0) counts.set(a, n)
      else counts.delete(a)
    }
  }

  /** From `allowRequest`: a new session's handshake. */
  judge(req: IncomingMessage): void {
    // IPv6 by /64 (what one subscriber usually gets), as the HTTP limits count it.
    const address = normalizeIP(clientAddress(req, this.trusted))
    this.verdicts.set(req, { clientAddress: address, overAddressLimit: (this.counts.get(address) ?? 0) >= this.max })
  }

  /** From Engine.IO's `connection`, before the request is dropped. */
  opened(conn: EngineConnection, req: IncomingMessage | null): void {
    const m = req && this.verdicts.get(req)
    if (!m) return
    this.verdicts.delete(req)
    if (m.overAddressLimit) {
      conn.overAddressLimit = true
      setTimeout(closeConnection, REFUSED_SESSION_MS, conn).unref()
      return
    }
    conn.clientAddress = m.clientAddress
    this.counts.set(m.clientAddress, (this.counts.get(m.clientAddress) ?? 0) + 1)
    conn.on('close', this.closed) // emitted once; `on` adds no wrapper closure
  }

  /** Sessions counted for `address` on this node. */
  count(address: string): number {
    return this.counts.get(address) ?? 0
  }

  /** Namespace middleware, before authentication: refuses sessions judged over the limit. */
  middleware(metrics: Metrics) {
    return (socket: Socket, next: (err?: ExtendedError) => void) => {
      if (!(socket.conn as unknown as Marked).overAddressLimit) return next()
      metrics.connectionsRefused.inc({ reason: 'address' })
      next(refusal('Too many connections from this address', 'RATE_LIMITED'))
    }
  }
}

function closeConnection(conn: EngineConnection): void {
  if (conn.readyState !== 'closed') conn.close()
}

/**
 * MAX_CONNECTIONS_PER_USER (SPEC §3), per namespace, across the cluster: namespace middleware
 * after authentication. When the registry cannot answer (Redis down), the socket is let in
 * uncounted: connections must keep working in an outage (SPEC §5.6); the next reconciliation
 * (`connectionRepair`) counts it. Every socket is released at disconnect (io.ts): the registry
 * knows which ones it counts.
 */
export function userLimit(registry: ConnectionRegistry, max: number, metrics: Metrics, log: Logger) {
  return (socket: Socket, next: (err?: ExtendedError) => void) => {
    const namespace = socket.nsp.name
    const { userId } = socket.data.identity
    registry.acquire(namespace, userId, socket.id, max).then(
      (ok) => {
        if (!ok) {
          metrics.connectionsRefused.inc({ reason: 'user' })
          return next(refusal('Too many connections for this user', 'RATE_LIMITED'))
        }
        if (socket.conn.readyState !== 'open') {
          // Gone while we asked: Socket.IO drops it without a disconnect event; give the place back.
          registry.release(namespace, userId, socket.id).catch(() => undefined)
          return next()
        }
        next()
      },
      (err: unknown) => {
        log.warn({ err: (err as Error).message, userId, namespace }, 'connection count unavailable; socket let in uncounted')
        next()
      },
    )
  }
}

/**
 * One reconciliation of the connection counts (D95): the registry is made to match this node's
 * sockets in every namespace. Run by the presence reconciliation loop, in the same pass
 * (`presenceRepair`'s `alsoEachPass`); never throws (a failure is retried at the next pass).
 */
export function connectionRepair(
  io: ChatServer,
  registry: ConnectionRegistry,
  log: Logger,
  onRun?: (seconds: number, repair: ConnectionRepair | undefined) => void,
): () => Promise<void> {
  const live = function* (): Generator<CountedSocket> {
    for (const namespace of NAMESPACES) {
      for (const socket of io.of(namespace).sockets.values()) yield { namespace, userId: socket.data.identity.userId, socketId: socket.id }
    }
  }
  return async () => {
    const started = performance.now()
    try {
      const repair = await registry.reconcile(live())
      onRun?.((performance.now() - started) / 1000, repair)
      if (repair.readded + repair.removed > 0) log.warn(repair, 'connection counts repaired')
    } catch (err) {
      onRun?.((performance.now() - started) / 1000, undefined)
      log.warn({ err: (err as Error).message }, 'connection count reconciliation failed; retrying at the next pass')
    }
  }
}
