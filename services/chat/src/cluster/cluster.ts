import { createAdapter, createShardedAdapter } from '@socket.io/redis-adapter'
import { Cluster as IORedisCluster } from 'ioredis'
import type { Config } from '../config.ts'
import type { Logger } from '../logger.ts'
import { MemoryConnections, RedisConnections, type ConnectionRegistry } from './connections.ts'
import { NodeLiveness } from './liveness.ts'
import { READINESS_CHECK_TIMEOUT_MS, RedisPeerBoard } from './readiness.ts'
import { MemoryPresence, type PresenceStore } from './presence.ts'
import { RedisPresence } from './presence.redis.ts'
import { LeasedRedisRateLimit, leaseCap, MemoryRateLimit, type RateLimit } from './rate-limit.ts'
import { connectWithin, createRedis, createRedisCluster, quitWithin, type RedisClient } from './redis.ts'

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
  /** Called whenever the adapter's subscriber connection is ready again after a drop. */
  onAdapterReconnect?(fn: () => void): void
  /** Node heartbeats and crash clean-up (Redis only). */
  readonly liveness?: NodeLiveness
  /** Where nodes say whether they reach Postgres (Redis only; readiness, D80). */
  readonly peerBoard?: RedisPeerBoard
  ping(): Promise<void>
  close(): Promise<void>
}

/** `onRedisError(client)` counts connection errors per client (metrics). */
export async function createCluster(config: Config, log: Logger, onRedisError?: (client: 'command' | 'pub' | 'sub') => void): Promise<Cluster> {
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
  const { command, pub, sub } = redisClients(config, log, onRedisError)
  await Promise.all([command, pub, sub].map((c) => connectWithin(c, 3000)))
  for (const c of [pub, sub]) handleFireAndForget(c, log)
  const clients: RedisClient[] = [command, pub, sub]
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
    onAdapterReconnect: (fn) => {
      let dropped = false
      sub.on('close', () => (dropped = true))
      sub.on('ready', () => {
        if (dropped) fn()
        dropped = false
      })
      // A Redis Cluster's sharded subscribers: after a failover (or any change of the slot map)
      // ioredis moves the subscriptions of the changed shards to their new masters, then says
      // 'subscribersReady'; messages published meanwhile on those shards were not heard (D126).
      if (sub instanceof IORedisCluster) {
        let ready = false
        sub.once('ready', () => (ready = true))
        sub.on('subscribersReady', () => {
          if (ready) fn()
        })
      }
    },
    messageLimit: new LeasedRedisRateLimit(command, config.RATE_LIMIT_MESSAGES, config.RATE_LIMIT_WINDOW_SECONDS, limitPrefix, {
      maxLease: leaseCap(config.RATE_LIMIT_MESSAGES, config.RATE_LIMIT_LEASE_MAX),
      storeReady: () => command.status === 'ready',
    }),
    adapter:
      config.REDIS_ADAPTER === 'sharded'
        ? createShardedAdapter(pub, sub, { channelPrefix: `${config.REDIS_PREFIX}socket.io`, subscriptionMode: 'dynamic' })
        : createAdapter(pub, sub, { key: `${config.REDIS_PREFIX}socket.io` }),
    ping: async () => {
      await command.ping()
    },
    close: async () => {
      await liveness.stop()
      await peerBoard.leave()
      await Promise.all(clients.map((c) => quitWithin(c, 1000)))
    },
  }
}

/**
 * The command, pub and sub connections: to one Redis (REDIS_URL) or a Redis Cluster
 * (REDIS_CLUSTER_NODES, D125). On a Cluster the subscriber keeps one connection per master for
 * sharded pub/sub (D126); the classic adapter's SUBSCRIBE goes to one node and the cluster bus
 * carries PUBLISH to it.
 */
function redisClients(config: Config, log: Logger, onRedisError?: (client: 'command' | 'pub' | 'sub') => void): Record<'command' | 'pub' | 'sub', RedisClient> {
  const make = (client: 'command' | 'pub' | 'sub', offlineQueue: boolean) => {
    const name = `${config.nodeId}:${client === 'command' ? 'cmd' : client}`
    const onError = () => onRedisError?.(client)
    return config.redisClusterNodes.length > 0
      ? createRedisCluster(config.redisClusterNodes, name, log, offlineQueue, { sharded: client === 'sub', onError })
      : createRedis(config.REDIS_URL, name, log, offlineQueue, onError)
  }
  return { command: make('command', false), pub: make('pub', true), sub: make('sub', true) }
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
