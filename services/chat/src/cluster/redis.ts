import { Cluster, Redis } from 'ioredis'
import type { Logger } from '../logger.ts'

/** One Redis or a Redis Cluster (REDIS_CLUSTER_NODES): every module takes either (D125). */
export type RedisClient = Redis | Cluster

/**
 * How long a command on a fail-fast client may wait for its reply. ioredis keeps the commands in
 * flight when a connection drops and only resends them after a reconnect (rejecting none, even
 * with `maxRetriesPerRequest`), so without a deadline a command sent just before an outage would
 * wait for Redis to come back (D118).
 */
export const REDIS_COMMAND_TIMEOUT_MS = 2000

/**
 * An ioredis client that reconnects forever with capped backoff. Commands fail fast while
 * disconnected (`offlineQueue: false`) so callers answer UNAVAILABLE instead of hanging, and fail
 * after REDIS_COMMAND_TIMEOUT_MS when the connection dropped under them; the adapter's pub/sub
 * clients keep the queue so subscriptions are restored on reconnect.
 */
export function createRedis(url: string, name: string, log: Logger, offlineQueue: boolean, onError?: () => void): Redis {
  const client = new Redis(url, {
    connectionName: name,
    lazyConnect: true,
    enableOfflineQueue: offlineQueue,
    // Commands issued in the same tick (rate-limit checks of many sockets) share one write.
    enableAutoPipelining: true,
    maxRetriesPerRequest: offlineQueue ? null : 1,
    ...(offlineQueue ? {} : { commandTimeout: REDIS_COMMAND_TIMEOUT_MS }),
    connectTimeout: 2000,
    retryStrategy: (attempt) => Math.min(100 * 2 ** attempt, 2000),
  })
  watch(client, name, log, onError)
  return client
}

/**
 * An ioredis Cluster client (D125) with the same behaviour as createRedis: commands fail within
 * a few seconds while their slot's master is unreachable (a failover), instead of hanging; the
 * adapter's pub/sub clients queue. `sharded` (the subscriber): one sharded subscriber per master,
 * so SSUBSCRIBE reaches the shard that owns each channel and is restored on the new master after
 * a failover (ioredis 5.9+, `shardedSubscribers`, D126).
 */
/** How often a Cluster subscriber re-reads the slot map (D130). */
export const SUBSCRIBER_SLOTS_REFRESH_MS = 2000

export function createRedisCluster(
  nodes: readonly { host: string; port: number }[],
  name: string,
  log: Logger,
  offlineQueue: boolean,
  opts: { sharded?: boolean; onError?: () => void } = {},
): Cluster {
  const client = new Cluster(
    nodes.map((n) => ({ ...n })),
    {
      lazyConnect: true,
      enableOfflineQueue: offlineQueue,
      enableAutoPipelining: true,
      scaleReads: 'master',
      shardedSubscribers: opts.sharded ?? false,
      // A command on a master that just died is retried on the slot's new owner: 16 tries,
      // 200 ms apart at most (a failover takes about cluster-node-timeout + 1 s), then it fails.
      retryDelayOnFailover: 200,
      retryDelayOnClusterDown: 200,
      retryDelayOnTryAgain: 100,
      maxRedirections: 16,
      slotsRefreshTimeout: 2000,
      // The subscriber reads the slot map every 2 s: a slot moved by a reshard (no node down)
      // ends its channels' subscriptions with a SUNSUBSCRIBE from the old owner, which ioredis
      // 5.11 does not act on, and a subscriber gets no MOVED to notice otherwise. A changed map
      // makes ioredis subscribe those channels on their new master (D130).
      ...(opts.sharded ? { slotsRefreshInterval: SUBSCRIBER_SLOTS_REFRESH_MS } : {}),
      clusterRetryStrategy: (attempt) => Math.min(100 * 2 ** attempt, 2000),
      redisOptions: {
        connectionName: name,
        connectTimeout: 2000,
        maxRetriesPerRequest: offlineQueue ? null : 1,
        // As on one Redis: a command in flight when its node's connection drops gets a deadline (D118).
        ...(offlineQueue ? {} : { commandTimeout: REDIS_COMMAND_TIMEOUT_MS }),
      },
    },
  )
  watch(client, name, log, opts.onError)
  // A node of the cluster failing (a master died) is an error of this client too, counted so:
  // 'node error' from command connections, 'nodeError' from the sharded subscribers.
  client.on('node error', () => opts.onError?.())
  client.on('nodeError', () => opts.onError?.())
  return client
}

function watch(client: RedisClient, name: string, log: Logger, onError?: () => void): void {
  let down = false
  client.on('error', (err) => {
    onError?.()
    if (!down) log.warn({ err: err.message, client: name }, 'redis connection error')
    down = true
  })
  client.on('ready', () => {
    if (down) log.info({ client: name }, 'redis connection restored')
    down = false
  })
}

/**
 * QUIT, but never waiting on a Redis that does not answer: a client with an offline queue (the
 * adapter's pub/sub) would hold QUIT until Redis is back, so a node could not shut down during an
 * outage. After `ms` (or at once when not connected) the connection is simply dropped.
 */
export async function quitWithin(client: RedisClient, ms: number): Promise<void> {
  if (client.status === 'ready') {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([client.quit().catch(() => undefined), new Promise((r) => (timer = setTimeout(r, ms)))])
    clearTimeout(timer)
  }
  if (client.status !== 'end') client.disconnect()
}

/** Connects, but gives up waiting after `ms`: a node with Redis down still boots, unready. */
export async function connectWithin(client: RedisClient, ms: number): Promise<void> {
  await Promise.race([client.connect().catch(() => undefined), new Promise((r) => setTimeout(r, ms))])
}

/**
 * Lua prelude of the self-healing registries (presence, connection counts): `now` in ms of
 * Redis server time, so deadlines never depend on a node's clock. Scripts that call TIME are
 * replicated by effects (Redis 5+), so replicas agree.
 */
export const LUA_NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`

/**
 * Single-key Lua scripts as ioredis commands (EVALSHA; ioredis reloads a script Redis lost after a
 * restart), defined once per client.
 */
export function luaCommands<T>(redis: RedisClient, scripts: { [K in keyof T & string]: string }): T {
  const defined = redis as unknown as Record<string, unknown>
  for (const [name, lua] of Object.entries<string>(scripts)) {
    if (!defined[name]) redis.defineCommand(name, { numberOfKeys: 1, lua })
  }
  return redis as unknown as T
}
