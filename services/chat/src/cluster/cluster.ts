import { createAdapter, createShardedAdapter } from '@socket.io/redis-adapter'
import { Cluster as IORedisCluster } from 'ioredis'
import type { Namespace } from 'socket.io'
import type { Config } from '../config.ts'
import type { Logger } from '../logger.ts'
import { MemoryConnections, RedisConnections, type ConnectionRegistry } from './connections.ts'
import { NodeLiveness } from './liveness.ts'
import { READINESS_CHECK_TIMEOUT_MS, RedisPeerBoard } from './readiness.ts'
import { MemoryPresence, type PresenceStore } from './presence.ts'
import { RedisPresence } from './presence.redis.ts'
import { LeasedRedisRateLimit, leaseCap, MemoryRateLimit, type RateLimit } from './rate-limit.ts'
import { connectWithin, createRedis, createRedisCluster, quitWithin, type RedisClient } from './redis.ts'
import { adapterChannelKind, type ChannelKind } from './pubsub-meter.ts'
import { RedisRoomChannels, type RoomChannels } from './room-channels.ts'
import { LOCAL_ROOM_PREFIX } from '../realtime/events.ts'

/** What /metrics learns from the cluster's pub/sub (set by the app once it has its metrics). */
export interface PubSubHooks {
  /** A pub/sub message from another node arrived (this node's own echoes are not counted). */
  received(kind: ChannelKind): void
  /** Room channels this node is subscribed to, lingering ones included. */
  roomSubscriptions(count: number): void
}

/** What nodes share: broadcasts, presence, rate-limit counters. In-process when embedded. */
export interface Cluster {
  /** True when several nodes can share this cluster (Redis). */
  readonly shared: boolean
  readonly presence: PresenceStore
  readonly messageLimit: RateLimit
  /** Sockets per user per namespace, cluster-wide (MAX_CONNECTIONS_PER_USER). */
  readonly connections: ConnectionRegistry
  /** The command connection, for other cluster-wide counters (HTTP limits); none when embedded. */
  readonly redis?: RedisClient
  /** The Socket.IO adapter constructor, or undefined for the default in-memory one. */
  readonly adapter?: ReturnType<typeof createAdapter> | ReturnType<typeof createShardedAdapter>
  /** Per-room channels for the feed and room-wide pushes (SPEC §7); none when embedded. */
  readonly channels?: RoomChannels
  /** Called whenever a subscriber connection (the adapter's, the room channels') is ready again after a drop. */
  onAdapterReconnect?(fn: () => void): void
  /** Where pub/sub arrivals and room subscriptions are reported (metrics); Redis only. */
  observe?(hooks: PubSubHooks): void
  /** Node heartbeats and crash clean-up (Redis only). */
  readonly liveness?: NodeLiveness
  /** Where nodes say whether they reach Postgres (Redis only; readiness, D80). */
  readonly peerBoard?: RedisPeerBoard
  ping(): Promise<void>
  close(): Promise<void>
}

/** `onRedisError(client)` counts connection errors per client (metrics). */
export async function createCluster(config: Config, log: Logger, onRedisError?: (client: 'command' | 'pub' | 'sub' | 'rooms') => void): Promise<Cluster> {
  const limitPrefix = `${config.REDIS_PREFIX}rl:msg`
  if (!config.sharedRedis) {
    return {
      shared: false,
      presence: new MemoryPresence(),
      connections: new MemoryConnections(),
      messageLimit: new MemoryRateLimit(config.RATE_LIMIT_MESSAGES, config.RATE_LIMIT_WINDOW_SECONDS, limitPrefix),
      ping: async () => {},
      close: async () => {},
    }
  }
  // Room channels subscribe on a connection of their own (`rooms`): Redis counts sharded
  // subscriptions apart from the others, and ioredis takes a count of 0 for the end of subscriber
  // mode (D136). On a Redis Cluster it is a sharded subscriber like `sub` (D126).
  const { command, pub, sub, rooms: roomSub } = redisClients(config, log, onRedisError)
  await Promise.all([command, pub, sub, roomSub].map((c) => connectWithin(c, 3000)))
  for (const c of [pub, sub, roomSub]) handleFireAndForget(c, log)
  const clients: RedisClient[] = [command, pub, sub, roomSub]
  let hooks: PubSubHooks | undefined
  const channels = new RedisRoomChannels(pub, roomSub, {
    prefix: config.REDIS_PREFIX,
    lingerMs: config.ROOM_CHANNEL_LINGER_MS,
    onReceived: () => hooks?.received('room'),
    onSize: (n) => hooks?.roomSubscriptions(n),
  })
  const adapterKey = `${config.REDIS_PREFIX}socket.io`
  const sharded = config.REDIS_ADAPTER === 'sharded'
  // Each namespace's adapter id: what it publishes carries it, so its echoes are not counted.
  const adapterIds = new Map<string, { uid: string; mark: Buffer }>()
  const makeAdapter = sharded
    ? createShardedAdapter(pub, sub, { channelPrefix: adapterKey, subscriptionMode: 'dynamic' })
    : createAdapter(pub, sub, { key: adapterKey })
  // Socket.IO calls it with `new`: a function, not an arrow.
  const adapter = function (nsp: Namespace) {
    const a = (makeAdapter as (nsp: Namespace) => ReturnType<ReturnType<typeof createAdapter>>)(nsp) as unknown as { uid: string }
    adapterIds.set(nsp.name, { uid: a.uid, mark: Buffer.from(sharded ? `"uid":"${a.uid}"` : a.uid) })
    if (sharded) {
      perRoomSocketOps(a as never)
      noChannelForLocalRooms(a as never)
    }
    return a
  }
  const meter = (channel: Buffer, message: Buffer) => {
    if (!hooks) return
    const at = adapterChannelKind(channel.toString(), adapterKey, (nsp) => adapterIds.get(nsp)?.uid)
    if (!at) return
    const own = adapterIds.get(at.nsp)
    if (own && message.includes(own.mark)) return
    hooks.received(at.kind)
  }
  sub.on('smessageBuffer', meter)
  sub.on('messageBuffer', meter)
  sub.on('pmessageBuffer', (_pattern: Buffer, channel: Buffer, message: Buffer) => meter(channel, message))
  const presence = new RedisPresence(command, config.REDIS_PREFIX, config.nodeId, { ttlMs: config.PRESENCE_TTL_MS })
  // Connection counts heal as presence does, refreshed by the same reconciliation pass (D95).
  const connections = new RedisConnections(command, config.REDIS_PREFIX, config.nodeId, { ttlMs: config.PRESENCE_TTL_MS })
  const liveness = new NodeLiveness(
    command,
    presence,
    config.REDIS_PREFIX,
    config.nodeId,
    log,
    { intervalMs: config.LIVENESS_INTERVAL_MS, ttlMs: config.LIVENESS_TTL_MS },
    connections,
  )
  const peerBoard = new RedisPeerBoard(command, config.REDIS_PREFIX, config.nodeId, { freshMs: config.LIVENESS_TTL_MS, marginMs: READINESS_CHECK_TIMEOUT_MS })
  return {
    shared: true,
    presence,
    connections,
    redis: command,
    liveness,
    peerBoard,
    channels,
    onAdapterReconnect: (fn) => {
      for (const c of [sub, roomSub]) {
        let dropped = false
        c.on('close', () => (dropped = true))
        c.on('ready', () => {
          if (dropped) fn()
          dropped = false
        })
        // A Redis Cluster's sharded subscribers: after a failover (or any change of the slot map)
        // ioredis moves the subscriptions of the changed shards to their new masters, then says
        // 'subscribersReady'; messages published meanwhile on those shards were not heard (D126).
        if (c instanceof IORedisCluster) {
          let ready = false
          c.once('ready', () => (ready = true))
          c.on('subscribersReady', () => {
            if (ready) fn()
          })
        }
      }
    },
    observe: (h) => {
      hooks = h
      h.roomSubscriptions(channels.size)
    },
    messageLimit: new LeasedRedisRateLimit(command, config.RATE_LIMIT_MESSAGES, config.RATE_LIMIT_WINDOW_SECONDS, limitPrefix, {
      maxLease: leaseCap(config.RATE_LIMIT_MESSAGES, config.RATE_LIMIT_LEASE_MAX),
      storeReady: () => command.status === 'ready',
    }),
    adapter: adapter as unknown as Cluster['adapter'],
    ping: async () => {
      await command.ping()
    },
    close: async () => {
      channels.close()
      await liveness.stop()
      await peerBoard.leave()
      await Promise.all(clients.map((c) => quitWithin(c, 1000)))
    },
  }
}

/** Socket.IO's own room named after a socket id (base64url, 20 characters): never addressed here. */
const looksLikeASocketId = (room: string) => room.length === 20 && /^[\w-]+$/.test(room)

/** socket.io-adapter's message types (cluster-adapter.ts) that act on the sockets of given rooms. */
const BROADCAST = 3
const ROOM_SOCKET_OPS = new Set([BROADCAST, 4 /* SOCKETS_JOIN */, 5 /* SOCKETS_LEAVE */, 6 /* DISCONNECT_SOCKETS */])

interface ShardedAdapterInternals {
  computeChannel(message: { type: number; data?: { requestId?: string; opts?: { rooms?: string[] } } }): string
  dynamicChannel(room: string): string
  shouldUseASeparateNamespace(room: string): boolean
}

/**
 * In 'dynamic' mode the sharded adapter subscribes a channel for every room it creates. A room
 * that only this node's own broadcasts address (`LOCAL_ROOM_PREFIX`: the batch rooms, D182) never
 * hears anything on it, so it gets none: no SSUBSCRIBE / SUNSUBSCRIBE round trip per room.
 */
function noChannelForLocalRooms(adapter: ShardedAdapterInternals): void {
  if (typeof adapter.shouldUseASeparateNamespace !== 'function') return
  const original = adapter.shouldUseASeparateNamespace.bind(adapter)
  adapter.shouldUseASeparateNamespace = (room) => !room.startsWith(LOCAL_ROOM_PREFIX) && original(room)
}

/**
 * The sharded adapter in 'dynamic' mode sends a broadcast to one room on that room's channel, but
 * `socketsJoin`/`socketsLeave`/`disconnectSockets` (a leave of every device of a user, an admin
 * kick) on the main channel, to every node. They act only on sockets in the room they name, so
 * the room's channel reaches every node that has one (D142). Room ids of 20 characters that could
 * be socket ids stay on the main channel, as the adapter's own test would put them (but less
 * often: room ids with `:` or `.` and user rooms never look like socket ids).
 */
function perRoomSocketOps(adapter: ShardedAdapterInternals): void {
  if (typeof adapter.computeChannel !== 'function' || typeof adapter.dynamicChannel !== 'function') return
  const original = adapter.computeChannel.bind(adapter)
  adapter.computeChannel = (message) => {
    const rooms = message.data?.opts?.rooms
    const perRoom = ROOM_SOCKET_OPS.has(message.type) && message.data?.requestId === undefined && rooms?.length === 1 && !looksLikeASocketId(rooms[0])
    return perRoom ? adapter.dynamicChannel(rooms[0]) : original(message)
  }
}

/**
 * The command, pub and sub connections: to one Redis (REDIS_URL) or a Redis Cluster
 * (REDIS_CLUSTER_NODES, D125). On a Cluster the subscriber keeps one connection per master for
 * sharded pub/sub (D126); the classic adapter's SUBSCRIBE goes to one node and the cluster bus
 * carries PUBLISH to it.
 */
type ClientRole = 'command' | 'pub' | 'sub' | 'rooms'

function redisClients(config: Config, log: Logger, onRedisError?: (client: ClientRole) => void): Record<ClientRole, RedisClient> {
  const make = (client: ClientRole, offlineQueue: boolean) => {
    const name = `${config.nodeId}:${client === 'command' ? 'cmd' : client}`
    const onError = () => onRedisError?.(client)
    return config.redisClusterNodes.length > 0
      ? createRedisCluster(config.redisClusterNodes, name, log, offlineQueue, { sharded: client === 'sub' || client === 'rooms', onError })
      : createRedis(config.REDIS_URL, name, log, offlineQueue, onError)
  }
  return { command: make('command', false), pub: make('pub', true), sub: make('sub', true), rooms: make('rooms', true) }
}

/**
 * `@socket.io/redis-adapter` (classic and sharded) sends many commands on its two connections
 * without handling the promise: broadcasts and cluster requests (`PUBLISH`), room subscriptions
 * (`SSUBSCRIBE`/`SUNSUBSCRIBE`). If the connection is closed at that moment (shutdown, or a
 * command out of retries in an outage) the rejection is unhandled, which ends a Node 20 process.
 * Every command on these two connections gets a handler here; callers that await a command still
 * see its rejection, and the adapter subscribes again when the connection is back.
 */
const ADAPTER_COMMANDS = ['publish', 'spublish', 'subscribe', 'psubscribe', 'unsubscribe', 'punsubscribe', 'ssubscribe', 'sunsubscribe'] as const

function handleFireAndForget(client: RedisClient, log: Logger): void {
  // Per method, not in `sendCommand`: with auto-pipelining the promise a caller gets is not the
  // one `sendCommand` returns.
  for (const name of ADAPTER_COMMANDS) {
    const original = (client[name] as (...args: unknown[]) => Promise<unknown>).bind(client)
    Object.assign(client, {
      [name]: (...args: unknown[]) => {
        const p = original(...args)
        p.catch((err: Error) => log.debug({ err: err.message, command: name }, 'adapter Redis command failed'))
        return p
      },
    })
  }
}
