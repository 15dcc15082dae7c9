import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.ts'
import { createCluster } from './cluster/cluster.ts'
import { loadConfig } from './config.ts'
import { applyGcSettings } from './gc.ts'
import { createLogger } from './logger.ts'
import { createMetrics } from './metrics.ts'
import { createDb, StoreLockedError } from './store/db.ts'
import { migrateToLatest } from './store/migrate.ts'

// Process only: config → logger → dependencies → app → listen → signals.
let config
try {
  config = loadConfig()
} catch (err) {
  console.error(`switchboard: invalid configuration: ${(err as Error).message}`)
  process.exit(78) // EX_CONFIG
}
// Before anything sizable is allocated: the old generation's growing factor (D185).
const gcFlags = applyGcSettings(config.HEAP_GROWING_PERCENT)
const log = createLogger(config.LOG_LEVEL, { node: config.nodeId })
for (const warning of config.warnings) log.warn(warning)
let db
try {
  db = await createDb(config, log)
} catch (err) {
  if (!(err instanceof StoreLockedError)) throw err
  console.error(`switchboard: ${err.message}`)
  process.exit(75) // EX_TEMPFAIL: the holder may go away
}
if (config.MIGRATE_ON_START || config.embeddedDatabase) await migrateToLatest(db, log)
const metrics = createMetrics(config.nodeId)
const cluster = await createCluster(config, log, (client) => metrics.redisErrors.inc({ client }))
const app = await buildApp({ config, log, db, cluster, metrics })

// A hard deadline: whatever is still running after SHUTDOWN_GRACE_MS is abandoned (exit code 1).
closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS, logger: log }, async ({ signal, err }) => {
  if (err) log.error({ err }, 'fatal error; shutting down')
  log.info({ signal }, 'shutting down')
  await app.drain(config.SHUTDOWN_GRACE_MS * 0.8)
  await cluster.close()
  await db.destroy()
  log.info('bye')
  log.flush()
})

await app.http.listen({ port: config.PORT, host: config.HOST })
const address = app.http.server.address()
const port = typeof address === 'object' && address ? address.port : config.PORT
log.info(
  {
    port,
    database: config.embeddedDatabase ? 'embedded' : 'postgres',
    cluster: config.redisClusterNodes.length > 0 ? 'redis-cluster' : config.REDIS_URL ? 'redis' : 'in-process',
    encryption: config.encryption ? { writes: config.encryption.writeKeyId, reads: config.encryption.keyIds } : 'off',
    v8: gcFlags,
  },
  `Switchboard listening on http://${config.HOST === '0.0.0.0' || config.HOST === '::' ? 'localhost' : config.HOST}:${port}`,
)
