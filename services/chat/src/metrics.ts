import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

/**
 * How often the event-loop delay is sampled. Node's monitor records the whole interval between
 * two ticks, so `switchboard_nodejs_eventloop_lag_*` include this much on top of the real delay.
 */
export const EVENT_LOOP_RESOLUTION_MS = 20

/** Prometheus metrics, one prefix (`switchboard_`), base units. */
export function createMetrics(nodeId: string) {
  const registry = new Registry()
  registry.setDefaultLabels({ node: nodeId })
  collectDefaultMetrics({ register: registry, prefix: 'switchboard_', eventLoopMonitoringPrecision: EVENT_LOOP_RESOLUTION_MS })
  const r = [registry]
  return {
    registry,
    socketsConnected: new Gauge({ name: 'switchboard_sockets_connected', help: 'Connected sockets by namespace', labelNames: ['namespace'], registers: r }),
    eventsIn: new Counter({ name: 'switchboard_events_in_total', help: 'Client events received by name', labelNames: ['event'], registers: r }),
    eventsOut: new Counter({ name: 'switchboard_events_out_total', help: 'Server events broadcast by name', labelNames: ['event'], registers: r }),
    ackSeconds: new Histogram({
      name: 'switchboard_ack_seconds',
      help: 'Time from a client event to its ack',
      labelNames: ['event', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: r,
    }),
    dbBatchSize: new Histogram({
      name: 'switchboard_db_batch_size',
      help: 'Messages per group-commit transaction',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
      registers: r,
    }),
    dbBatchSeconds: new Histogram({
      name: 'switchboard_db_batch_seconds',
      help: 'Group-commit transaction duration',
      labelNames: ['status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: r,
    }),
    rateLimited: new Counter({
      name: 'switchboard_rate_limited_total',
      help: 'Requests refused by a rate limit, by kind (message, join, sync, typing, http, dev_token)',
      labelNames: ['kind'],
      registers: r,
    }),
    connectionsRefused: new Counter({
      name: 'switchboard_connections_refused_total',
      help: 'Socket.IO handshakes refused by a connection limit, by reason (user, address)',
      labelNames: ['reason'],
      registers: r,
    }),
    redisErrors: new Counter({ name: 'switchboard_redis_errors_total', help: 'Redis connection errors (adapter pub/sub and commands)', labelNames: ['client'], registers: r }),
    reaperRuns: new Counter({ name: 'switchboard_presence_reaped_nodes_total', help: 'Dead nodes whose presence this node reaped', registers: r }),
    reapedUsers: new Counter({ name: 'switchboard_presence_reaped_offline_total', help: 'Users announced offline after their node died', registers: r }),
    dependencyUp: new Gauge({ name: 'switchboard_dependency_up', help: 'Whether this node reached the dependency at its last readiness check (1) or not (0)', labelNames: ['dependency'], registers: r }),
    readinessState: new Gauge({
      name: 'switchboard_readiness_state',
      help: 'The node readiness (1 for the current state): ready, degraded (a dependency down for every node; still serving) or isolated (this node alone cut off; unready)',
      labelNames: ['state'],
      registers: r,
    }),
    commitQueueDepth: new Gauge({ name: 'switchboard_commit_queue_depth', help: 'Messages waiting for or in a group commit on this node', registers: r }),
    commitQueueLimit: new Gauge({ name: 'switchboard_commit_queue_limit', help: 'GROUP_COMMIT_MAX_QUEUE: past it sends answer UNAVAILABLE', registers: r }),
    commitQueueRefused: new Counter({ name: 'switchboard_commit_queue_refused_total', help: 'Sends answered UNAVAILABLE because the group-commit queue was full', registers: r }),
    presenceRepairs: new Counter({
      name: 'switchboard_presence_repairs_total',
      help: 'Presence repairs by the reconciliation: readded (Redis had lost a user of this node), removed (an entry for a user with no socket here), announced_online / announced_offline (users whose state the repair changed)',
      labelNames: ['kind'],
      registers: r,
    }),
    presenceReconcileSeconds: new Histogram({
      name: 'switchboard_presence_reconcile_seconds',
      help: 'Presence reconciliation passes (Redis against this node\'s sockets) and their duration',
      labelNames: ['status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: r,
    }),
    presenceReconcileLastSuccess: new Gauge({ name: 'switchboard_presence_reconcile_last_success_seconds', help: 'Unix time of the last presence reconciliation that succeeded', registers: r }),
    presencePendingRemovals: new Gauge({ name: 'switchboard_presence_pending_removals', help: 'Presence removals that failed (Redis unreachable) and wait for the next reconciliation', registers: r }),
    presenceErrors: new Counter({ name: 'switchboard_presence_errors_total', help: 'Presence writes that failed at connect or disconnect (repaired by the reconciliation)', labelNames: ['op'], registers: r }),
    connectionRepairs: new Counter({
      name: 'switchboard_connection_repairs_total',
      help: 'Per-user connection count repairs by the reconciliation: readded (Redis had lost or never counted a socket of this node), removed (an entry for a socket this node no longer holds)',
      labelNames: ['kind'],
      registers: r,
    }),
    connectionPendingReleases: new Gauge({ name: 'switchboard_connection_pending_releases', help: 'Connection count releases that failed (Redis unreachable) and wait for the next reconciliation', registers: r }),
    feedGapFills: new Counter({ name: 'switchboard_feed_gap_fills_total', help: 'Messages read from Postgres because pub/sub did not deliver them', registers: r }),
    historyPages: new Counter({
      name: 'switchboard_history_pages_total',
      help: 'History pages (GET /api/rooms/:id/messages, join histories) served from the cache (hit) or read from Postgres (miss)',
      labelNames: ['result'],
      registers: r,
    }),
    feedRooms: new Gauge({ name: 'switchboard_feed_rooms', help: 'Rooms this node holds feed state for: rooms with a local socket, or a join in progress', registers: r }),
    clusterMessagesReceived: new Counter({
      name: 'switchboard_cluster_messages_received_total',
      help: 'Pub/sub messages this node received from other nodes (its own echoes not counted), by channel kind: room (a room channel: committed messages, changes and room events), user (a per-user channel: notifications, kicks, leaves of every device), main (cluster-wide: announcements, admin stats, broadcasts to many rooms)',
      labelNames: ['kind'],
      registers: r,
    }),
    roomSubscriptions: new Gauge({
      name: 'switchboard_cluster_room_subscriptions',
      help: 'Room channels this node is subscribed to (rooms with a local socket, and rooms left within ROOM_CHANNEL_LINGER_MS)',
      registers: r,
    }),
    feedRegressions: new Counter({
      name: 'switchboard_feed_regressions_total',
      help: "Rooms whose head in Postgres was found below what this node delivered (a failover lost commits); each was resynced",
      labelNames: ['where'],
      registers: r,
    }),
  }
}

export type Metrics = ReturnType<typeof createMetrics>
