import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify'
import { Tokens } from './auth/tokens.ts'
import type { Cluster } from './cluster/cluster.ts'
import { EventRateLimit, Throttle } from './cluster/rate-limit.ts'
import { confirmedWithin } from './cluster/room-channels.ts'
import type { Config } from './config.ts'
import { AttachmentsService } from './domain/attachments.service.ts'
import { MessagesService } from './domain/messages.service.ts'
import { RoomsService } from './domain/rooms.service.ts'
import { apiDocs } from './http/api-docs.ts'
import { attachmentRoutes } from './http/attachments/attachments.ts'
import { authPlugin } from './http/auth.ts'
import { dashboardRoutes } from './http/dashboard.ts'
import { devTokenRoutes } from './http/dev-token.ts'
import { errorsPlugin } from './http/errors.ts'
import { healthRoutes } from './http/health.ts'
import { httpLimits } from './http/limits.ts'
import { trustProxies } from './http/proxies.ts'
import { roomRoutes } from './http/rooms/rooms.ts'
import type { Logger } from './logger.ts'
import { createMetrics, type Metrics } from './metrics.ts'
import { createReadiness } from './readiness.ts'
import { chatRouter } from './realtime/chat.handlers.ts'
import { nodeRoom, type ChatServer, type ChatSocket } from './realtime/events.ts'
import { gateWhileDraining } from './realtime/drain-gate.ts'
import { createIo, engineClients } from './realtime/io.ts'
import { adminRouter, localStats, type NodeStats } from './realtime/admin.handlers.ts'
import { createNotifier, notificationsRouter } from './realtime/notifications.ts'
import { connectionRepair } from './realtime/limits.ts'
import { presenceAnnouncer, presenceRepair, presenceTracker } from './realtime/presence.handlers.ts'
import { createRoomEvents } from './realtime/room-events.ts'
import { RoomFeed } from './realtime/room-feed.ts'
import { RoomPushes } from './realtime/room-pushes.ts'
import { createBlobStore } from './store/blob-stores.ts'
import type { Db } from './store/db.ts'
import { GroupCommit } from './store/group-commit.ts'
import { MessageTexts } from './store/message-text.ts'

export interface AppDeps {
  config: Config
  log: Logger
  db: Db
  cluster: Cluster
  /** Created before the cluster so Redis errors are counted from the first connection. */
  metrics?: Metrics
}

export interface App {
  http: FastifyInstance
  io: ChatServer
  metrics: Metrics
  commits: GroupCommit
  /** SIGTERM path: unready, refuse new connections, flush writes, move clients away, close. */
  drain(graceMs: number): Promise<void>
  /** Closes HTTP and Socket.IO; the caller owns db and cluster. */
  close(): Promise<void>
}

/** The version the OpenAPI document names: the root package.json's, from src/ or from dist/. */
const appVersion = () => {
  const file = ['../../../package.json', '../../../../package.json'].map((p) => fileURLToPath(new URL(p, import.meta.url))).find((f) => existsSync(f))
  return file ? (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version : '0.0.0'
}

/** The browser client: services/web/dist (built) or services/web/public, from src/ or from dist/. */
const webRoot = () => {
  const candidates = ['../../web/dist', '../../web/public', '../../../../services/web/dist', '../../../../services/web/public'].map((p) =>
    fileURLToPath(new URL(p, import.meta.url)),
  )
  return candidates.find((d) => existsSync(d))
}

/** Builds the node from injected dependencies: tests build it exactly as server.ts does. */
export async function buildApp({ config, log, db, cluster, metrics = createMetrics(config.nodeId) }: AppDeps): Promise<App> {
  let draining = false
  // Presence clean-up still running for closed sockets: close() waits for it before Redis goes.
  const inFlight = new Set<Promise<unknown>>()
  const track = (work: Promise<unknown>) => {
    inFlight.add(work)
    void work.finally(() => inFlight.delete(work))
  }
  const tokens = new Tokens(config)
  const commits = new GroupCommit(db, log, {
    maxBatch: config.GROUP_COMMIT_MAX_BATCH,
    maxWaitMs: config.GROUP_COMMIT_MAX_WAIT_MS,
    maxQueue: config.GROUP_COMMIT_MAX_QUEUE,
    onBatch: (size, seconds, ok) => {
      metrics.dbBatchSize.observe(size)
      metrics.dbBatchSeconds.observe({ status: ok ? 'ok' : 'error' }, seconds)
    },
    onDepth: (depth) => metrics.commitQueueDepth.set(depth),
    onRefused: () => metrics.commitQueueRefused.inc(),
  })
  metrics.commitQueueLimit.set(config.GROUP_COMMIT_MAX_QUEUE)
  // Unready only for node-local reasons; a fleet-wide outage keeps every node in service (D80).
  const readiness = createReadiness(config, db, cluster, log, metrics)
  const rooms = new RoomsService(db, cluster.presence)
  const attachments = new AttachmentsService(db, createBlobStore(config, db), rooms, {
    maxBytes: config.UPLOAD_MAX_BYTES,
    allowedTypes: config.uploadAllowedTypes,
    unreferencedTtlMs: config.UPLOAD_UNREFERENCED_TTL_SECONDS * 1000,
    encryption: config.encryption,
  })

  // Forwarding headers count only from TRUSTED_PROXIES (request.ip, the limits, the origin check).
  const trusted = trustProxies(config.trustedProxies)
  // Fastify's own request logs only from warn up, and never louder than LOG_LEVEL asks (silent stays silent).
  const httpLog = log.child({}, { level: log.levelVal >= 40 ? log.level : 'warn' }) as FastifyBaseLogger
  const http = Fastify({
    loggerInstance: httpLog,
    trustProxy: trusted,
    bodyLimit: 1_048_576,
    // A URL Fastify cannot even route (bad percent-encoding, e.g. a lone surrogate) gets our error shape too.
    frameworkErrors: (err, _request, reply) =>
      (reply as FastifyReply).status(400).send({ error: 'BAD_REQUEST', message: err.code === 'FST_ERR_BAD_URL' ? 'Malformed URL' : 'Bad request' }),
  })
  http.addHook('onRequest', async (_request, reply) => {
    reply.header('x-switchboard-node', config.nodeId)
  })

  const io = createIo(http.server, config, cluster, tokens, metrics, () => draining, { log, trusted, track })
  // New sessions go elsewhere while draining, and while this node alone is cut off from a dependency.
  gateWhileDraining(http.server, io, config.nodeId, () => draining || readiness.current.status === 'isolated')
  const chat = io.of('/chat')
  const notifier = createNotifier(io, rooms, log)
  let messages: MessagesService | undefined
  const feed = new RoomFeed(
    chat,
    {
      head: async (roomId) => (await rooms.heads([roomId])).get(roomId) ?? { lastSeq: 0, version: 0 },
      heads: (roomIds) => rooms.heads(roomIds),
      range: (roomId, after, upTo, limit) => messages!.range(roomId, after, upTo, limit),
      latest: async (roomId, upTo, limit) => (await messages!.before(roomId, upTo + 1, limit)).slice().reverse(),
      changedSince: (roomId, afterVersion, limit, maxSeq) => messages!.changedSince(roomId, afterVersion, limit, maxSeq),
      reads: async (roomId) => (await rooms.roomState(roomId)).reads,
    },
    log,
    {
      shared: cluster.shared,
      channels: cluster.channels,
      gapWaitMs: 250,
      ringSize: 256,
      reconcileMs: cluster.shared ? 10_000 : 0,
      onRoomChanged: (roomId) => messages?.cache.invalidate(roomId),
      onRecovered: (count) => metrics.feedGapFills.inc(count),
      onTracked: (count) => metrics.feedRooms.set(count),
      onRegression: (where) => metrics.feedRegressions.inc({ where }),
      resyncLimit: config.HISTORY_LIMIT,
      batchMs: config.DELIVERY_BATCH_MS,
      // Once per room and frame, as chat:message is counted once per message (not per socket).
      onMessagesFrame: () => metrics.eventsOut.inc({ event: 'chat:messages' }),
    },
  )
  const pushes = new RoomPushes(chat, cluster.channels, feed, log)
  cluster.observe?.({
    received: (kind) => metrics.clusterMessagesReceived.inc({ kind }),
    roomSubscriptions: (count) => metrics.roomSubscriptions.set(count),
  })
  // ioredis says "ready" just before it subscribes again: a change published in between is lost
  // too, so look again a moment later (one cheap query).
  cluster.onAdapterReconnect?.(() => {
    void feed.reconcile()
    setTimeout(() => void feed.reconcile(), 1000).unref()
  })
  messages = new MessagesService(db, commits, rooms, cluster.messageLimit, createRoomEvents(chat, feed, metrics, notifier), attachments, new MessageTexts(config.encryption))
  // A node hears a room's changes only while it follows the room's channel: its cached history
  // pages of a room hold only for as long (D140).
  const channels = cluster.channels
  messages.cache.onLookup = (hit) => metrics.historyPages.inc({ result: hit ? 'hit' : 'miss' })
  if (channels) {
    messages.cache.heard = (roomId) => channels.listening(roomId)
    // Redis down or slow: the page is read without being kept (the wait is cut short).
    messages.cache.hold = async (roomId) => {
      if (!channels.connected) return undefined
      const confirmed = channels.subscribe(roomId)
      const release = () => channels.unsubscribe(roomId)
      if (await confirmedWithin(confirmed, 250).catch(() => false)) return release
      // Not confirmed in time: give it back once it settles (a subscribe and an unsubscribe pair up).
      void confirmed.then(release, release)
      return undefined
    }
  }
  const p = config.REDIS_PREFIX
  const joinLimit = new EventRateLimit(cluster.redis, config.RATE_LIMIT_JOINS, config.RATE_LIMIT_JOINS_WINDOW_SECONDS, `${p}rl:join`, 'room joins')
  const syncLimit = new EventRateLimit(cluster.redis, config.RATE_LIMIT_SYNCS, config.RATE_LIMIT_SYNCS_WINDOW_SECONDS, `${p}rl:sync`, 'syncs')
  const typing = new Throttle(cluster.redis, config.TYPING_THROTTLE_MS, `${p}rl:typing`)

  // One router and one disconnect listener for every socket: an idle connection holds no
  // closures of its own (D37).
  const chatEvents = chatRouter(chat, { config, log, metrics, tokens, rooms, messages, feed, joinLimit, syncLimit, typing })
  const announce = presenceAnnouncer((roomIds, user, event) => pushes.presence(roomIds, user, event), rooms, log)
  const presenceOf = presenceTracker(cluster.presence, rooms, log, track, () => draining, {
    announce,
    onError: (op) => {
      metrics.presenceErrors.inc({ op })
      metrics.presencePendingRemovals.set(cluster.presence.pendingRemovals ?? 0)
    },
  })
  // Presence heals by itself (SPEC §4): Redis is reconciled with this node's sockets.
  const repair = cluster.shared
    ? presenceRepair(chat, cluster.presence, announce, log, {
        intervalMs: config.PRESENCE_RECONCILE_MS,
        isDraining: () => draining,
        onRun: (seconds, result) => {
          metrics.presenceReconcileSeconds.observe({ status: result ? 'ok' : 'error' }, seconds)
          metrics.presencePendingRemovals.set(cluster.presence.pendingRemovals ?? 0)
          if (!result) return
          metrics.presenceReconcileLastSuccess.set(Date.now() / 1000)
          metrics.presenceRepairs.inc({ kind: 'readded' }, result.readded)
          metrics.presenceRepairs.inc({ kind: 'removed' }, result.removed)
          metrics.presenceRepairs.inc({ kind: 'announced_online' }, result.online.length)
          metrics.presenceRepairs.inc({ kind: 'announced_offline' }, result.offline.length)
        },
        // Connection counts heal in the same pass (D95).
        alsoEachPass: connectionRepair(io, cluster.connections, log, (_seconds, result) => {
          metrics.connectionPendingReleases.set(cluster.connections.pendingReleases ?? 0)
          if (!result) return
          metrics.connectionRepairs.inc({ kind: 'readded' }, result.readded)
          metrics.connectionRepairs.inc({ kind: 'removed' }, result.removed)
        }),
      })
    : undefined
  const onChatDisconnect = function (this: ChatSocket, reason: string) {
    log.debug({ socketId: this.id, userId: this.data.identity.userId, reason }, 'socket disconnected')
    presenceOf.disconnected(this)
  }
  chat.on('connection', (socket) => {
    log.debug({ socketId: socket.id, userId: socket.data.identity.userId, transport: socket.conn.transport.name }, 'socket connected')
    // Socket.IO puts every socket in a room named by its id, and room ids may look like socket ids:
    // whoever joined a room named after someone's socket id would reach that socket (nothing here
    // addresses a socket by its id room).
    socket.leave(socket.id)
    void socket.join(nodeRoom(config.nodeId))
    socket.onAny(chatEvents.listener)
    presenceOf.connected(socket)
    socket.on('disconnect', onChatDisconnect)
  })

  const admin = io.of('/admin')
  const trackedRooms = () => feed.trackedRooms
  const adminEvents = adminRouter(io, { nodeId: config.nodeId, shared: cluster.shared, log, metrics, tokens, trackedRooms })
  admin.on('connection', (socket) => void socket.onAny(adminEvents.listener))
  const notificationEvents = notificationsRouter(log, metrics, tokens)
  io.of('/notifications').on('connection', (socket) => void socket.onAny(notificationEvents.listener))
  // Other nodes asking for this node's share of admin:stats.
  admin.on('admin:stats' as never, ((ack: (s: NodeStats) => void) => ack(localStats(io, config.nodeId, trackedRooms))) as never)

  cluster.liveness?.start({
    onReap: (_deadNodeId, offline) => {
      metrics.reaperRuns.inc()
      metrics.reapedUsers.inc(offline)
    },
    onOffline: (users, deadNodeId) => {
      log.info({ deadNodeId, users: users.length }, 'announcing users of a dead node offline')
      for (const user of users) void announce(user, 'presence:offline')
    },
    // Presence and connection counts are written back by one reconciliation pass.
    onLostRegistration: () => repair?.runNow() ?? Promise.resolve(),
  })

  // HTTP: external concerns, then our own plugins, then routes. The API docs come first: they
  // collect each route's schema as it is added.
  if (config.API_DOCS) await http.register(apiDocs, { version: appVersion() })
  await http.register(errorsPlugin)
  await http.register(httpLimits, { config, tokens, metrics, redis: cluster.redis })
  await http.register(authPlugin, { tokens })
  await http.register(healthRoutes, {
    nodeId: config.nodeId,
    isDraining: () => draining,
    readiness: () => readiness.evaluate(),
    metricsText: () => metrics.registry.metrics(),
    metricsContentType: metrics.registry.contentType,
  })
  await http.register(devTokenRoutes, {
    tokens,
    enabled: config.AUTH_DEV_TOKENS,
    limit: { max: config.RATE_LIMIT_DEV_TOKENS, windowMs: config.RATE_LIMIT_DEV_TOKENS_WINDOW_SECONDS * 1000 },
  })
  await http.register(attachmentRoutes, { attachments, maxBytes: config.UPLOAD_MAX_BYTES })
  await http.register(roomRoutes, { rooms, messages, historyLimit: config.HISTORY_LIMIT, onInvited: notifier.invited })
  if (config.ADMIN_UI_USERNAME) {
    await http.register(dashboardRoutes, { io: io as never, nodeId: config.nodeId, username: config.ADMIN_UI_USERNAME, passwordHash: config.ADMIN_UI_PASSWORD_HASH })
  }
  const root = config.WEB_DIR || webRoot()
  if (root) await http.register(fastifyStatic, { root, prefix: '/', index: ['index.html'], maxAge: '1h' })

  // Uploads no message took, on every node (D49).
  const uploadSweep = attachments.startSweeping(config.UPLOAD_SWEEP_INTERVAL_SECONDS * 1000, (r) => {
    if (r instanceof Error) log.warn({ err: r.message }, 'upload sweep failed; the next one retries')
    else if (r.unreferenced + r.orphans > 0) log.info(r, 'upload sweep removed files')
  })

  // "Starting" is before this: the node listens only once it checked its dependencies and told its peers.
  await readiness.start()
  const close = async () => {
    readiness.stop()
    feed.close()
    await uploadSweep.stop()
    await repair?.stop()
    await new Promise<void>((resolve) => io.close(() => resolve()))
    await Promise.allSettled([...inFlight])
    await http.close()
  }

  return {
    http,
    io,
    metrics,
    commits,
    close,
    async drain(graceMs) {
      draining = true
      log.info({ graceMs }, 'draining')
      await commits.flush()
      // Move clients in batches with jitter so they do not all land on one node at once. Closing
      // the transport (not `socket.disconnect()`) makes Socket.IO clients reconnect by themselves,
      // and through nginx they land on another node.
      const connections = Object.values(engineClients(io))
      const batch = 200
      const pause = Math.min(100, graceMs / 4 / Math.max(1, connections.length / batch))
      for (let i = 0; i < connections.length; i += batch) {
        for (const c of connections.slice(i, i + batch)) c.close()
        await new Promise((r) => setTimeout(r, pause * (0.5 + Math.random())))
      }
      await commits.flush()
      // Presence hand-over: whoever has not reconnected to another node after a moment is offline.
      await new Promise((r) => setTimeout(r, Math.min(2000, graceMs / 4)))
      await Promise.allSettled([...inFlight])
      await repair?.stop()
      try {
        const offline = await cluster.presence.reapNode(config.nodeId)
        await Promise.allSettled(offline.map((user) => announce(user, 'presence:offline')))
        log.info({ offline: offline.length }, 'drain: presence handed over')
        await cluster.connections.reapNode(config.nodeId)
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'drain: presence hand-over failed; survivors will reap this node')
      }
      await close()
    },
  }
}
