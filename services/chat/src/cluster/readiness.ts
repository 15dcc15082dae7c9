import type { RedisClient } from './redis.ts'
import type { Logger } from '../logger.ts'

export type Dependency = 'postgres' | 'redis'
export type DependencyState = 'ok' | 'down'

/**
 * What nodes tell each other about what they reach, kept in one dependency and read by a node
 * that lost the other one (decision D80). Times are the board's own clock, never a node's.
 */
export interface PeerBoard {
  /** Records that this node reaches the board's store, and whether it reaches the other dependency. */
  beat(otherOk: boolean): Promise<void>
  /**
   * How many other nodes said they reach the other dependency in a heartbeat newer than
   * `freshMs` and later than `sinceMs + marginMs` (`sinceMs` null: from now, so none), with the
   * board's clock now, to pass back as `sinceMs` next time.
   */
  peersReaching(sinceMs: number | null): Promise<{ nowMs: number; peers: number }>
}

/**
 * - `ready`: every dependency answers.
 * - `degraded`: some dependency is down and, as far as this node can tell, for every node: stay in
 *   service and serve what does not need it (HTTP 200).
 * - `isolated`: this node alone lost `lost`, which `peers` other nodes still reach (HTTP 503).
 */
export interface ReadinessState {
  status: 'ready' | 'degraded' | 'isolated'
  checks: Partial<Record<Dependency, DependencyState>>
  /** Why each down dependency is down. */
  errors: Partial<Record<Dependency, string>>
  lost?: Dependency
  peers?: number
}

export interface ReadinessOptions {
  /** Rejects when the dependency is unreachable; `redis` only when the node uses Redis. */
  checks: { postgres: () => Promise<void>; redis?: () => Promise<void> }
  /** The board kept in each dependency (shared clusters only): `inPostgres` tells about Redis, `inRedis` about Postgres. */
  boards?: { inPostgres: PeerBoard; inRedis: PeerBoard }
  /** Heartbeat period (LIVENESS_INTERVAL_MS). */
  intervalMs: number
  /** A check without an answer after this long counts as down. */
  checkTimeoutMs: number
  log: Logger
  /** Called with every new evaluation (metrics). */
  onState?: (state: ReadinessState) => void
}

/**
 * How long a dependency check may take before it counts as down; also the margin by which a
 * peer's heartbeat must follow this node's loss to count (its check may have run up to this long
 * before the heartbeat was written).
 */
export const READINESS_CHECK_TIMEOUT_MS = 1000

const within = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref())])

const other = (d: Dependency): Dependency => (d === 'postgres' ? 'redis' : 'postgres')

/**
 * Readiness that fails only for node-local reasons (SPEC §5.6). Every `intervalMs` the node
 * checks its dependencies and writes a heartbeat into each one it reaches, saying whether it
 * reaches the other. When exactly one dependency is down for this node, it reads the board in
 * the one it still reaches: peers that reached the lost dependency after this node lost it mean
 * the problem is here (`isolated`); no such peer means a fleet-wide outage (`degraded`). Both
 * down, or no board: it cannot tell, and stays in service (`degraded`).
 */
export class Readiness {
  private state: ReadinessState = { status: 'ready', checks: {}, errors: {} }
  /** When (board clock) this node first saw each dependency down; null while it is up. */
  private readonly downSince: Record<Dependency, number | null> = { postgres: null, redis: null }
  private pending: Promise<ReadinessState> | null = null
  private timer?: NodeJS.Timeout

  constructor(private readonly opts: ReadinessOptions) {}

  /** The last evaluation (synchronous, for the Engine.IO gate). */
  get current(): ReadinessState {
    return this.state
  }

  /** Heartbeats every `intervalMs`; resolves after the first round (at most a few check timeouts). */
  async start(): Promise<void> {
    let running = false
    const tick = async () => {
      if (running) return // a round that outlived its interval: never two at once
      running = true
      await this.evaluateOnce(true)
        .catch((err: unknown) => this.opts.log.warn({ err: (err as Error).message }, 'readiness tick failed'))
        .finally(() => (running = false))
    }
    this.timer = setInterval(() => void tick(), this.opts.intervalMs)
    this.timer.unref()
    await tick()
  }

  stop(): void {
    clearInterval(this.timer)
  }

  /** A fresh evaluation (concurrent callers share one); writes no heartbeat. */
  evaluate(): Promise<ReadinessState> {
    this.pending ??= this.evaluateOnce(false).finally(() => (this.pending = null))
    return this.pending
  }

  private async evaluateOnce(beat: boolean): Promise<ReadinessState> {
    const { checks: fns, boards, checkTimeoutMs: ms } = this.opts
    const names = Object.keys(fns) as Dependency[]
    const results = await Promise.allSettled(names.map((n) => within(fns[n]!(), ms)))
    const checks: ReadinessState['checks'] = {}
    const errors: ReadinessState['errors'] = {}
    results.forEach((r, i) => {
      checks[names[i]] = r.status === 'fulfilled' ? 'ok' : 'down'
      if (r.status === 'rejected') errors[names[i]] = (r.reason as Error).message
    })
    const down = names.filter((n) => checks[n] === 'down')
    for (const n of names) if (checks[n] === 'ok') this.downSince[n] = null

    if (beat && boards) {
      const pgOk = checks.postgres === 'ok'
      const redisOk = checks.redis === 'ok'
      const writes = await Promise.allSettled([pgOk && within(boards.inPostgres.beat(redisOk), ms), redisOk && within(boards.inRedis.beat(pgOk), ms)])
      for (const w of writes) if (w.status === 'rejected') this.opts.log.debug({ err: (w.reason as Error).message }, 'readiness heartbeat failed')
    }

    let state: ReadinessState = { status: down.length === 0 ? 'ready' : 'degraded', checks, errors }
    if (boards && down.length === 1 && names.length === 2) {
      const lost = down[0]
      const board = lost === 'postgres' ? boards.inRedis : boards.inPostgres
      try {
        const seen = await within(board.peersReaching(this.downSince[lost]), ms)
        this.downSince[lost] ??= seen.nowMs
        if (seen.peers > 0) state = { ...state, status: 'isolated', lost, peers: seen.peers }
      } catch (err) {
        // The dependency this node still reaches did not answer either: it cannot tell, stays in service.
        this.opts.log.debug({ err: (err as Error).message, via: other(lost) }, 'readiness: could not read peers')
      }
    }
    if (state.status !== this.state.status || state.lost !== this.state.lost) this.log(state)
    this.state = state
    this.opts.onState?.(state)
    return state
  }

  private log(state: ReadinessState): void {
    const { log } = this.opts
    if (state.status === 'ready') log.info('readiness: every dependency answers; ready')
    else if (state.status === 'isolated') {
      log.warn({ lost: state.lost, peers: state.peers, err: state.errors[state.lost!] }, `readiness: only this node lost ${state.lost}; unready`)
    } else log.warn({ checks: state.checks, errors: state.errors }, 'readiness: degraded (a dependency is down for every node as far as this one can tell); still serving')
  }
}

// KEYS[1] the board hash (node id -> ms when it last reached Postgres); ARGV node id, '1' when it
// reaches Postgres, '1' to sweep, sweep age ms. Times are Redis' clock (TIME).
const BEAT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f', now))
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
if ARGV[3] == '1' then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    if tonumber(all[i + 1]) < now - tonumber(ARGV[4]) then redis.call('HDEL', KEYS[1], all[i]) end
  end
end
return 1`

// KEYS[1] the board hash; ARGV node id, since ms ('' = now), fresh ms, margin ms.
const PEERS = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local since = now
if ARGV[2] ~= '' then since = tonumber(ARGV[2]) end
local floor = math.max(now - tonumber(ARGV[3]), since + tonumber(ARGV[4]))
local all = redis.call('HGETALL', KEYS[1])
local peers = 0
for i = 1, #all, 2 do
  if all[i] ~= ARGV[1] and tonumber(all[i + 1]) > floor then peers = peers + 1 end
end
return { string.format('%.0f', now), peers }`

/** Rows older than this are swept (node ids of pods long gone). */
export const BOARD_SWEEP_MS = 24 * 3600 * 1000

/**
 * The board in Redis: one hash `<prefix>nodes:postgres-ok`, node id → Redis time (ms) of its
 * last heartbeat while it reached Postgres. One key, so it stays on one slot of a Redis Cluster.
 */
export class RedisPeerBoard implements PeerBoard {
  private beats = 0

  constructor(
    private readonly redis: RedisClient,
    prefix: string,
    private readonly nodeId: string,
    private readonly opts: { freshMs: number; marginMs: number },
  ) {
    this.key = `${prefix}nodes:postgres-ok`
  }

  private readonly key: string

  async beat(postgresOk: boolean): Promise<void> {
    const sweep = this.beats++ % 100 === 0 ? '1' : '0'
    await this.redis.eval(BEAT, 1, this.key, this.nodeId, postgresOk ? '1' : '0', sweep, BOARD_SWEEP_MS)
  }

  async peersReaching(sinceMs: number | null): Promise<{ nowMs: number; peers: number }> {
    const [now, peers] = (await this.redis.eval(PEERS, 1, this.key, this.nodeId, sinceMs === null ? '' : String(sinceMs), this.opts.freshMs, this.opts.marginMs)) as [
      string,
      number,
    ]
    return { nowMs: Number(now), peers }
  }

  /** Graceful exit: peers stop counting this node at once. */
  async leave(): Promise<void> {
    await this.redis.hdel(this.key, this.nodeId).catch(() => undefined)
  }
}
