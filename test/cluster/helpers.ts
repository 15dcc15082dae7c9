import http from 'node:http'
import { join } from 'node:path'
import { io, type Socket } from 'socket.io-client'
import { startCluster, type NodeLauncher, type RunningCluster } from '../../infra/cluster.ts'
import { startRedis, startRedisCluster, type LocalRedis, type LocalRedisCluster } from '../../infra/services.ts'
import { createTestDatabase } from '../../services/chat/test/helpers.ts'

export interface TestCluster {
  cluster: RunningCluster
  /** A Redis of the test's own, so it can be restarted. */
  redis: LocalRedis
  database: Awaited<ReturnType<typeof createTestDatabase>>
  stop(): Promise<void>
}

/** The same on a Redis Cluster of the test's own (startTestCluster with `{ redisCluster }`). */
export interface TestClusterOnRedisCluster extends Omit<TestCluster, 'redis'> {
  redisCluster: LocalRedisCluster
}

/** A private Redis Cluster for startTestCluster: masters (one replica each) and its cluster-node-timeout. */
export interface TestRedisCluster {
  masters?: number
  /** Short, so a killed master's replica takes over in a couple of seconds (default 1000 ms). */
  nodeTimeoutMs?: number
}

/**
 * `nodes` nodes (three by default) + nginx on a Postgres database and a Redis of this test file
 * (or, with `opts.redisCluster`, a Redis Cluster of its own: 3 masters, 3 replicas by default);
 * `stop()` removes all of it.
 */
export async function startTestCluster(
  dir: string,
  redisPrefix: string,
  env: Record<string, string>,
  nodes?: number,
  nodeEnv?: (index: number, env: Readonly<Record<string, string>>) => Record<string, string>,
  opts?: { launchNode?: NodeLauncher },
): Promise<TestCluster>
export async function startTestCluster(
  dir: string,
  redisPrefix: string,
  env: Record<string, string>,
  nodes: number | undefined,
  nodeEnv: ((index: number, env: Readonly<Record<string, string>>) => Record<string, string>) | undefined,
  opts: { redisCluster: TestRedisCluster; launchNode?: NodeLauncher },
): Promise<TestClusterOnRedisCluster>
export async function startTestCluster(
  dir: string,
  redisPrefix: string,
  env: Record<string, string>,
  nodes = 3,
  nodeEnv?: (index: number, env: Readonly<Record<string, string>>) => Record<string, string>,
  /** `redisCluster`: a Redis Cluster of the test's own; `launchNode`: how nodes start (startCluster's option; e.g. containers of the image). */
  opts: { redisCluster?: TestRedisCluster; launchNode?: NodeLauncher } = {},
): Promise<TestCluster | TestClusterOnRedisCluster> {
  const database = await createTestDatabase()
  let redis: LocalRedis | LocalRedisCluster | undefined
  try {
    const rc = opts.redisCluster
    redis = rc
      ? await startRedisCluster(join(dir, 'redis-cluster'), { masters: rc.masters ?? 3, replicasPerMaster: 1, nodeTimeoutMs: rc.nodeTimeoutMs ?? 1000 })
      : await startRedis(join(dir, 'redis'))
    const where = 'url' in redis ? { redisUrl: redis.url } : { redisCluster: redis.nodes }
    const cluster = await startCluster({ nodes, dir, databaseUrl: database.url, ...where, redisPrefix, env: { LOG_LEVEL: 'warn', ...env }, nodeEnv, launchNode: opts.launchNode })
    const r = redis
    const stop = async () => {
      await cluster.stop()
      await r.stop()
      await database.drop()
    }
    return 'url' in r ? { cluster, redis: r, database, stop } : { cluster, redisCluster: r, database, stop }
  } catch (err) {
    await redis?.stop()
    await database.drop()
    throw err
  }
}

/** Source address 127.0.<octet>.1: nginx ip_hash keys on the first three octets, so octets spread clients. */
export const sourceAddress = (octet: number) => `127.0.${octet}.1`

/**
 * Node settings for fault tests: limits out of the way of steady load, and liveness, presence and
 * timeouts short, so a crash or a cut shows (and heals) within seconds.
 */
export const FAULT_TEST_ENV: Readonly<Record<string, string>> = Object.freeze({
  RATE_LIMIT_MESSAGES: '100000',
  RATE_LIMIT_SYNCS: '100000',
  RATE_LIMIT_JOINS: '100000',
  LIVENESS_INTERVAL_MS: '1000',
  LIVENESS_TTL_MS: '3000',
  PRESENCE_TTL_MS: '3000',
  PRESENCE_RECONCILE_MS: '1000',
  DATABASE_TIMEOUT_MS: '2000',
  SHUTDOWN_GRACE_MS: '3000',
})

const agents = new Map<number, http.Agent>()
const agentFor = (octet: number) => {
  let a = agents.get(octet)
  if (!a) agents.set(octet, (a = new http.Agent({ localAddress: sourceAddress(octet), keepAlive: true })))
  return a
}

/** Which node nginx sends clients from this source address to (asked through nginx itself). */
export async function nodeFor(url: string, octet: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(`${url}/healthz`, { agent: agentFor(octet) }, (res) => {
        res.resume()
        resolve(String(res.headers['x-switchboard-node']))
      })
      .on('error', reject)
  })
}

/** Picks `perNode` source octets for each node, so tests can place clients on chosen nodes. */
export async function octetsByNode(url: string, nodeIds: string[], perNode: number): Promise<Map<string, number[]>> {
  const byNode = new Map(nodeIds.map((id) => [id, [] as number[]]))
  for (let octet = 1; octet < 250; octet++) {
    const list = byNode.get(await nodeFor(url, octet))
    if (list && list.length < perNode) list.push(octet)
    if ([...byNode.values()].every((l) => l.length >= perNode)) return byNode
  }
  throw new Error(`ip_hash did not spread 250 source addresses over ${nodeIds.length} nodes`)
}

export async function devToken(url: string, username: string): Promise<{ token: string; userId: string }> {
  const res = await fetch(`${url}/api/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username }) })
  if (!res.ok) throw new Error(`dev token ${res.status}`)
  return (await res.json()) as { token: string; userId: string }
}

const opened: Socket[] = []

/** A /chat client through nginx from source address 127.0.<octet>.1. */
export function clientFrom(
  url: string,
  token: string,
  octet: number,
  opts: { transports?: ('polling' | 'websocket')[]; reconnection?: boolean; upgrade?: boolean } = {},
): Socket {
  // `localAddress` reaches the WebSocket transport; `agent` (bound to it) the polling one.
  const s = io(`${url}/chat`, {
    ...({ localAddress: sourceAddress(octet) } as object),
    auth: { token },
    transports: opts.transports ?? ['websocket'],
    upgrade: opts.upgrade ?? true,
    agent: agentFor(octet) as unknown as string,
    reconnection: opts.reconnection ?? false,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1000,
    randomizationFactor: 0.3,
    forceNew: true,
  })
  opened.push(s)
  return s
}

export function closeAll(): void {
  for (const s of opened.splice(0)) s.disconnect()
  for (const a of agents.values()) a.destroy()
  agents.clear()
}

export const connected = (s: Socket) =>
  new Promise<void>((resolve, reject) => {
    if (s.connected) return resolve()
    s.once('connect', () => resolve())
    s.once('connect_error', reject)
  })

export const ack = <T = any>(s: Socket, event: string, payload: unknown, ms = 5000): Promise<T> =>
  s.timeout(ms).emitWithAck(event, payload) as Promise<T>

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export async function eventually(fn: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (await fn()) return
    await sleep(50)
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`)
}

/**
 * A member of one room that records every seq it sees, live or through `chat:sync` after a
 * reconnect, and how long each reconnect took until the sync answered.
 */
export class RoomMember {
  readonly seen: number[] = []
  /** Live messages (not history, not sync answers) that repeated a seq: the server owes each only once. */
  liveRepeats = 0
  /** Every arrival as `<how><seq>` (h history, l live, s sync), for failure messages. */
  readonly trace: string[] = []
  readonly syncs: { ms: number; got: number }[] = []
  private lastSeq = 0
  private disconnectedAt = 0

  constructor(
    readonly socket: Socket,
    readonly roomId: string,
  ) {
    socket.on('room:history', (h: any) => h.roomId === roomId && h.messages.forEach((m: any) => (this.trace.push(`h${m.seq}`), this.record(m.seq))))
    socket.on('chat:message', (m: any) => {
      if (m.roomId !== roomId) return
      if (m.seq <= this.lastSeq) this.liveRepeats++
      this.trace.push(`l${m.seq}`)
      this.record(m.seq)
    })
    socket.on('disconnect', (reason) => (this.trace.push(`disconnect:${reason}`), (this.disconnectedAt ||= Date.now())))
    socket.io.on('reconnect', () => void this.resync())
  }

  async join(): Promise<void> {
    await connected(this.socket)
    const r = await ack(this.socket, 'room:join', { roomId: this.roomId, lastSeq: this.lastSeq })
    if (r.status !== 'ok') throw new Error(`join: ${r.code}`)
  }

  /**
   * What a real client does: a seq it already has is a harmless repeat (a retried sync may
   * return what also came live) and is ignored; anything else is recorded in arrival order, so
   * a gap or a reordering shows in `seen`.
   */
  private record(seq: number): void {
    if (seq <= this.lastSeq) return
    this.seen.push(seq)
    this.lastSeq = seq
  }

  /**
   * chat:sync after a reconnect. The answer is handled in the ack callback itself, not in a
   * promise continuation: a continuation runs only after the live messages that arrived in the
   * same read, which would make a correct server look out of order.
   */
  private async resync(): Promise<void> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const ok = await new Promise<boolean>((resolve) => {
        this.socket.timeout(15_000).emit('chat:sync', { rooms: { [this.roomId]: this.lastSeq } }, (err: Error | null, r: any) => {
          if (err || r?.status !== 'ok') return resolve(false)
          for (const m of r.rooms[this.roomId] ?? []) (this.trace.push(`s${m.seq}`), this.record(m.seq))
          this.syncs.push({ ms: Date.now() - this.disconnectedAt, got: (r.rooms[this.roomId] ?? []).length })
          this.disconnectedAt = 0
          resolve(true)
        })
      })
      if (ok) return
      await sleep(200)
    }
  }
}

/** Sends `count` messages with clientMsgIds, retrying each until acked (effectively-once through crashes). */
export async function sendReliably(s: Socket, roomId: string, tag: string, count: number, gapMs = 20) {
  const acked: { messageId: string; seq: number; clientMsgId: string }[] = []
  for (let i = 0; i < count; i++) {
    const clientMsgId = `${tag}-${i}`
    for (let attempt = 0; ; attempt++) {
      if (attempt > 200) throw new Error(`${clientMsgId} never acked`)
      try {
        if (!s.connected) {
          await sleep(100)
          continue
        }
        const r = await ack(s, 'chat:message', { roomId, text: `${tag} ${i}`, clientMsgId }, 3000)
        if (r.status === 'ok') {
          acked.push({ messageId: r.messageId, seq: r.seq, clientMsgId })
          break
        }
      } catch {
        // no ack in time: the node may be gone; resend the same clientMsgId
      }
      await sleep(100)
    }
    await sleep(gapMs)
  }
  return acked
}

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]
}
