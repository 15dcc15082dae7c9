import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { ChatServer } from './events.ts'
import { engineClients } from './io.ts'

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void
type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void

/**
 * While the node drains (or is cut off from a dependency its peers reach: `isDraining` covers
 * both, app.ts), Engine.IO requests that would start a session here (handshakes, and
 * requests for sessions this node does not hold) get 503 before Engine.IO sees them, so nginx
 * (`proxy_next_upstream … http_503`) retries them on another node at once. Sessions still open
 * here are served until the drain closes them.
 */
export function gateWhileDraining(server: HttpServer, io: ChatServer, nodeId: string, isDraining: () => boolean): void {
  const path = io.path()
  const refuse = (req: IncomingMessage): boolean => {
    if (!isDraining() || !req.url?.startsWith(path)) return false
    const sid = new URL(req.url, 'http://x').searchParams.get('sid')
    return sid === null || !(sid in engineClients(io))
  }
  const requestListeners = server.listeners('request') as RequestListener[]
  server.removeAllListeners('request')
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (refuse(req)) {
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1', 'x-switchboard-node': nodeId, connection: 'close' })
      res.end(JSON.stringify({ error: 'UNAVAILABLE', message: 'Node is draining or unready; retry on another node' }))
      return
    }
    for (const l of requestListeners) l.call(server, req, res)
  })
  const upgradeListeners = server.listeners('upgrade') as UpgradeListener[]
  server.removeAllListeners('upgrade')
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (refuse(req)) {
      socket.end(`HTTP/1.1 503 Service Unavailable\r\nx-switchboard-node: ${nodeId}\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`)
      return
    }
    for (const l of upgradeListeners) l.call(server, req, socket, head)
  })
}
