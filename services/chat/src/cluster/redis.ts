import { Redis } from 'ioredis'
import type { Logger } from '../logger.ts'

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
  return client
}

/**
 * QUIT, but never waiting on a Redis that does not answer: a client with an offline queue (the
 * adapter's pub/sub) would hold QUIT until Redis is back, so a node could not shut down during an
 * outage. After `ms` (or at once when not connected) the connection is simply dropped.
 */
export async function quitWithin(client: Redis, ms: number): Promise<void> {
  if (client.status === 'ready') {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([client.quit().catch(() => undefined), new Promise((r) => (timer = setTimeout(r, ms)))])
    clearTimeout(timer)
  }
  if (client.status !== 'end') client.disconnect()
}

/** Connects, but gives up waiting after `ms`: a node with Redis down still boots, unready. */
export async function connectWithin(client: Redis, ms: number): Promise<void> {
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
export function luaCommands<T>(redis: Redis, scripts: { [K in keyof T & string]: string }): T {
  const defined = redis as unknown as Record<string, unknown>
  for (const [name, lua] of Object.entries<string>(scripts)) {
    if (!defined[name]) redis.defineCommand(name, { numberOfKeys: 1, lua })
  }
  return redis as unknown as T
}
