import type { Cluster } from './cluster/cluster.ts'
import { READINESS_CHECK_TIMEOUT_MS, Readiness } from './cluster/readiness.ts'
import type { Config } from './config.ts'
import type { Logger } from './logger.ts'
import type { Metrics } from './metrics.ts'
import { pingDb, type Db } from './store/db.ts'
import { PgPeerBoard } from './store/node-heartbeats.ts'

/**
 * The node's readiness (decision D80): Postgres and, in a cluster, Redis checked every
 * LIVENESS_INTERVAL_MS, with heartbeat boards in both so a node can tell "only I lost it" from a
 * fleet-wide outage. Metrics: `switchboard_dependency_up`, `switchboard_readiness_state`.
 */
export function createReadiness(config: Config, db: Db, cluster: Cluster, log: Logger, metrics: Metrics): Readiness {
  const board = { freshMs: config.LIVENESS_TTL_MS, marginMs: READINESS_CHECK_TIMEOUT_MS }
  return new Readiness({
    checks: config.sharedRedis ? { postgres: () => pingDb(db), redis: () => cluster.ping() } : { postgres: () => pingDb(db) },
    boards: cluster.peerBoard && { inPostgres: new PgPeerBoard(db, config.nodeId, board), inRedis: cluster.peerBoard },
    intervalMs: config.LIVENESS_INTERVAL_MS,
    checkTimeoutMs: READINESS_CHECK_TIMEOUT_MS,
    log,
    onState: (s) => {
      for (const [dependency, state] of Object.entries(s.checks)) metrics.dependencyUp.set({ dependency }, state === 'ok' ? 1 : 0)
      for (const state of ['ready', 'degraded', 'isolated']) metrics.readinessState.set({ state }, s.status === state ? 1 : 0)
    },
  })
}
