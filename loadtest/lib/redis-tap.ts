import { createRequire } from 'node:module'
import net from 'node:net'

// A counting TCP proxy in front of Redis, one per node: everything the node sends and receives
// on its Redis connections goes through it, parsed (not changed) with the RESP parser ioredis
// itself uses. It counts, per channel, the PUBLISH/SPUBLISH commands the node sent and the
// pub/sub messages Redis delivered to it (`message`, `pmessage`, `smessage`). Works on any code
// (classic or sharded adapter, with or without per-room channels) and on the baseline alike,
// because it looks at the wire, not at the node (decision D150).

interface RespParser {
  execute(data: Buffer): void
}
type ParserCtor = new (o: { returnReply: (r: unknown) => void; returnError: (e: Error) => void; returnFatalError?: (e: Error) => void; returnBuffers?: boolean }) => RespParser
const Parser = createRequire(import.meta.url)('redis-parser') as ParserCtor

export interface TapCounts {
  /** Pub/sub messages Redis delivered to this node, by channel. */
  delivered: Map<string, number>
  /** Bytes of those messages' payloads. */
  deliveredBytes: number
  /** PUBLISH / SPUBLISH commands this node sent, by channel. */
  published: Map<string, number>
}

export interface TapSnapshot {
  delivered: Record<string, number>
  deliveredBytes: number
  published: Record<string, number>
}

export interface RedisTap {
  port: number
  url: string
  /** The counts so far (copies). */
  snapshot(): TapSnapshot
  close(): Promise<void>
}

const PUSH = new Set(['message', 'pmessage', 'smessage'])
const PUBLISH = new Set(['publish', 'spublish'])

/** A proxy on a free loopback port to Redis at `targetPort`, counting as above. */
export async function startRedisTap(targetPort: number, targetHost = '127.0.0.1'): Promise<RedisTap> {
  const counts: TapCounts = { delivered: new Map(), deliveredBytes: 0, published: new Map() }
  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1)
  const live = new Set<net.Socket>()
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, targetHost)
    live.add(client).add(upstream)
    const done = () => {
      client.destroy()
      upstream.destroy()
      live.delete(client)
      live.delete(upstream)
    }
    // Each direction is parsed on its own; a parse error stops counting that connection, not the traffic.
    let countUp = true
    let countDown = true
    const up = new Parser({
      returnBuffers: true,
      returnReply: (cmd) => {
        if (!Array.isArray(cmd) || cmd.length < 2) return
        if (PUBLISH.has(String(cmd[0]).toLowerCase())) bump(counts.published, String(cmd[1]))
      },
      returnError: () => undefined,
      returnFatalError: () => (countUp = false),
    })
    const down = new Parser({
      returnBuffers: true,
      returnReply: (reply) => {
        if (!Array.isArray(reply) || reply.length < 3) return
        const kind = String(reply[0])
        if (!PUSH.has(kind)) return
        // pmessage: [kind, pattern, channel, payload]; message / smessage: [kind, channel, payload]
        const [channel, payload] = kind === 'pmessage' ? [reply[2], reply[3]] : [reply[1], reply[2]]
        bump(counts.delivered, String(channel))
        counts.deliveredBytes += Buffer.isBuffer(payload) ? payload.length : 0
      },
      returnError: () => undefined,
      returnFatalError: () => (countDown = false),
    })
    client.on('data', (d: Buffer) => countUp && up.execute(d))
    upstream.on('data', (d: Buffer) => countDown && down.execute(d))
    client.on('error', done).on('close', done)
    upstream.on('error', done).on('close', done)
    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as net.AddressInfo).port
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    snapshot: () => ({ delivered: Object.fromEntries(counts.delivered), deliveredBytes: counts.deliveredBytes, published: Object.fromEntries(counts.published) }),
    async close() {
      for (const s of live) s.destroy()
      live.clear()
      await new Promise((r) => server.close(r))
    },
  }
}

/**
 * What a node received from other nodes between two snapshots: per channel, the deliveries
 * beyond its own publishes there (Redis hands a publisher's own message back to its subscriber
 * connection when it is subscribed to the channel; subscriptions are steady while a step runs,
 * so per channel min(delivered, own publishes) of the deliveries are its own echo).
 */
export function fromOthers(before: TapSnapshot, after: TapSnapshot): { delivered: number; own: number; fromOthers: number; bytes: number } {
  let delivered = 0
  let own = 0
  for (const [channel, n] of Object.entries(after.delivered)) {
    const d = n - (before.delivered[channel] ?? 0)
    const p = (after.published[channel] ?? 0) - (before.published[channel] ?? 0)
    delivered += d
    own += Math.min(d, p)
  }
  return { delivered, own, fromOthers: delivered - own, bytes: after.deliveredBytes - before.deliveredBytes }
}
