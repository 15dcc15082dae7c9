import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { envSchema } from 'env-schema'
import Type, { type Static } from 'typebox'
import { parseKeyring, type Keyring } from './crypto/at-rest.ts'

/**
 * Every environment variable the node reads; `.env.example` documents each one. NODE_ENV only
 * picks safer defaults (bind all interfaces, no dev tokens).
 */
const configSchema = (production: boolean) => Type.Object({
  PORT: Type.Integer({ default: 3000, minimum: 0, maximum: 65535 }),
  HOST: Type.String({ default: production ? '0.0.0.0' : 'localhost' }),
  NODE_ID: Type.String({ default: '', maxLength: 128 }),
  DATA_DIR: Type.String({ default: './data' }),
  LOG_LEVEL: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)), { default: 'info' }),

  DATABASE_URL: Type.String({ default: '' }),
  DATABASE_POOL_MAX: Type.Integer({ default: 10, minimum: 1, maximum: 500 }),
  DATABASE_TIMEOUT_MS: Type.Integer({ default: 5000, minimum: 100 }),
  MIGRATE_ON_START: Type.Boolean({ default: true }),
  /** Hash partitions of messages, reactions and attachments, read by their partitioning migration (D120). */
  MESSAGE_PARTITIONS: Type.Integer({ default: 16, minimum: 1, maximum: 1024 }),
  /** `<keyId>:<base64 of 32 bytes>`, comma-separated; the first writes. Empty: message text stored in plaintext. */
  ENCRYPTION_KEYS: Type.String({ default: '' }),

  REDIS_URL: Type.String({ default: '' }),
  /** A Redis Cluster instead of one Redis: comma-separated `host:port` of some of its nodes. */
  REDIS_CLUSTER_NODES: Type.String({ default: '' }),
  REDIS_PREFIX: Type.String({ default: 'sb:', pattern: '^[A-Za-z0-9:_.-]{1,64}$' }),
  REDIS_ADAPTER: Type.Union([Type.Literal('classic'), Type.Literal('sharded')], { default: 'sharded' }),
  /** How long a node stays subscribed to a room's channel after its last local socket left (D139). */
  ROOM_CHANNEL_LINGER_MS: Type.Integer({ default: 5000, minimum: 0, maximum: 600_000 }),
  LIVENESS_INTERVAL_MS: Type.Integer({ default: 5000, minimum: 100 }),
  LIVENESS_TTL_MS: Type.Integer({ default: 15000, minimum: 300 }),
  PRESENCE_TTL_MS: Type.Integer({ default: 20000, minimum: 300 }),
  PRESENCE_RECONCILE_MS: Type.Integer({ default: 5000, minimum: 100 }),

  JWT_SECRET: Type.String({ default: '' }),
  JWT_JWKS_URL: Type.String({ default: '' }),
  JWT_ISSUER: Type.String({ default: '' }),
  JWT_AUDIENCE: Type.String({ default: '' }),
  AUTH_DEV_TOKENS: Type.Boolean({ default: !production }),
  /** The OpenAPI document at `/docs/json` and Swagger UI at `/docs` (D171). */
  API_DOCS: Type.Boolean({ default: !production }),
  DEV_TOKEN_TTL_SECONDS: Type.Integer({ default: 86400, minimum: 60 }),
  CORS_ORIGINS: Type.String({ default: '' }),

  RATE_LIMIT_MESSAGES: Type.Integer({ default: 10, minimum: 1 }),
  RATE_LIMIT_WINDOW_SECONDS: Type.Integer({ default: 10, minimum: 1 }),
  RATE_LIMIT_LEASE_MAX: Type.Integer({ default: 100, minimum: 1, maximum: 10000 }),
  TYPING_THROTTLE_MS: Type.Integer({ default: 1000, minimum: 0 }),
  RATE_LIMIT_JOINS: Type.Integer({ default: 100, minimum: 1 }),
  RATE_LIMIT_JOINS_WINDOW_SECONDS: Type.Integer({ default: 10, minimum: 1 }),
  RATE_LIMIT_SYNCS: Type.Integer({ default: 30, minimum: 1 }),
  RATE_LIMIT_SYNCS_WINDOW_SECONDS: Type.Integer({ default: 10, minimum: 1 }),
  RATE_LIMIT_HTTP: Type.Integer({ default: 600, minimum: 1 }),
  RATE_LIMIT_HTTP_WINDOW_SECONDS: Type.Integer({ default: 60, minimum: 1 }),
  RATE_LIMIT_DEV_TOKENS: Type.Integer({ default: 100, minimum: 1 }),
  RATE_LIMIT_DEV_TOKENS_WINDOW_SECONDS: Type.Integer({ default: 60, minimum: 1 }),
  MAX_CONNECTIONS_PER_USER: Type.Integer({ default: 20, minimum: 1 }),
  MAX_CONNECTIONS_PER_IP: Type.Integer({ default: 500, minimum: 1 }),
  TRUSTED_PROXIES: Type.String({ default: '127.0.0.1,::1' }),

  GROUP_COMMIT_MAX_BATCH: Type.Integer({ default: 256, minimum: 1, maximum: 5000 }),
  GROUP_COMMIT_MAX_WAIT_MS: Type.Integer({ default: 0, minimum: 0, maximum: 1000 }),
  /** How long a room's deliveries gather on a node before they are written to its sockets (D182). */
  DELIVERY_BATCH_MS: Type.Integer({ default: 100, minimum: 0, maximum: 1000 }),
  /** Drafts queued or in flight per node before sends answer UNAVAILABLE (8 batches of the default size). */
  GROUP_COMMIT_MAX_QUEUE: Type.Integer({ default: 2048, minimum: 1, maximum: 1_000_000 }),
  /**
   * V8's old-generation growing factor, 1 + this / 100 (D185): how far the heap may grow past
   * what the last full GC kept before the next one. 0 leaves V8's own (adaptive, up to 4×).
   */
  HEAP_GROWING_PERCENT: Type.Integer({ default: 10, minimum: 0, maximum: 300 }),
  HISTORY_LIMIT: Type.Integer({ default: 50, minimum: 1, maximum: 500 }),
  SYNC_MAX_MESSAGES: Type.Integer({ default: 1000, minimum: 1, maximum: 100000 }),

  UPLOAD_MAX_BYTES: Type.Integer({ default: 10 * 1024 * 1024, minimum: 1, maximum: 2 ** 31 - 1 }),
  UPLOAD_ALLOWED_TYPES: Type.String({ default: 'image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain' }),
  UPLOAD_STORE: Type.Union([Type.Literal('postgres'), Type.Literal('fs')], { default: 'postgres' }),
  UPLOAD_DIR: Type.String({ default: '' }),
  UPLOAD_UNREFERENCED_TTL_SECONDS: Type.Integer({ default: 3600, minimum: 1 }),
  UPLOAD_SWEEP_INTERVAL_SECONDS: Type.Integer({ default: 60, minimum: 1 }),

  SHUTDOWN_GRACE_MS: Type.Integer({ default: 25000, minimum: 0 }),
  WEB_DIR: Type.String({ default: '' }),
  ADMIN_UI_USERNAME: Type.String({ default: '' }),
  ADMIN_UI_PASSWORD_HASH: Type.String({ default: '' }),
})

type RawConfig = Static<ReturnType<typeof configSchema>>

/** The names of every environment variable the node reads (for docs and deployment checks). */
export const CONFIG_VARIABLES: readonly string[] = Object.freeze(Object.keys(configSchema(false).properties))

export type Config = Readonly<
  Omit<RawConfig, 'ENCRYPTION_KEYS'> & {
    /** ENCRYPTION_KEYS parsed (null: off). The raw value is not kept, so logging the config shows only key ids. */
    encryption: Keyring | null
    /** True when no DATABASE_URL is set: PGlite under DATA_DIR. */
    embeddedDatabase: boolean
    /** REDIS_CLUSTER_NODES parsed (empty: no Redis Cluster). */
    redisClusterNodes: readonly { host: string; port: number }[]
    /** REDIS_URL or REDIS_CLUSTER_NODES is set: nodes share Redis, several can form a cluster. */
    sharedRedis: boolean
    corsOrigins: readonly string[]
    /** UPLOAD_ALLOWED_TYPES as a list of lower-case MIME types. */
    uploadAllowedTypes: readonly string[]
    /** TRUSTED_PROXIES parsed: the addresses and CIDRs whose forwarding headers count. */
    trustedProxies: readonly string[]
    nodeId: string
    /** Valid but dangerous settings, logged at warn level at boot (server.ts). */
    warnings: readonly string[]
  }
>

interface SchemaErrorLike {
  instancePath: string
}
type PropertySchema = Record<string, unknown> & { anyOf?: { const?: unknown }[]; enum?: unknown[] }

/** What a variable's schema accepts, in words: "one of: a, b", "an integer from 1 to 500", … */
export function acceptedValues(schema: PropertySchema): string {
  const literals = schema.enum ?? (schema.anyOf?.every((s) => 'const' in s) ? schema.anyOf.map((s) => s.const) : undefined)
  if (literals) return `one of: ${literals.join(', ')}`
  if (schema.type === 'boolean') return 'true or false'
  if (schema.type === 'integer' || schema.type === 'number') {
    const kind = schema.type === 'integer' ? 'an integer' : 'a number'
    const { minimum: min, maximum: max } = schema as { minimum?: number; maximum?: number }
    if (min !== undefined && max !== undefined) return `${kind} from ${min} to ${max}`
    if (min !== undefined) return `${kind} of at least ${min}`
    if (max !== undefined) return `${kind} of at most ${max}`
    return kind
  }
  const parts: string[] = []
  if (typeof schema.pattern === 'string') parts.push(`matching /${schema.pattern}/`)
  if (typeof schema.maxLength === 'number') parts.push(`of at most ${schema.maxLength} characters`)
  return parts.length ? `a string ${parts.join(' and ')}` : 'a string'
}

/** A value quoted for an error message, cut at 40 characters. */
function shown(value: string | undefined): string {
  const v = value ?? ''
  return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)
}

/** One sentence per bad variable: its name, what it accepts and what it got (ajv's own words repeat per union branch). */
function describeSchemaErrors(errors: readonly SchemaErrorLike[], properties: Record<string, PropertySchema>, env: NodeJS.ProcessEnv): string {
  const names = [...new Set(errors.map((e) => e.instancePath.split('/')[1]).filter((n): n is string => !!n && Object.hasOwn(properties, n)))]
  return names
    .map((name) => {
      return `${name} must be ${acceptedValues(properties[name])} (got ${shown(env[name])})`
    })
    .join('; ')
}

/**
 * Parses and validates the environment once. A bad value throws an error naming the variable.
 * With dev tokens on and no secret configured, a random HS256 secret is kept under DATA_DIR
 * so dev tokens survive restarts.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const production = env.NODE_ENV === 'production'
  const schema = configSchema(production)
  let raw: RawConfig
  try {
    raw = envSchema<RawConfig>({ schema: schema as object, data: env, dotenv: false })
  } catch (err) {
    const errors = (err as { errors?: SchemaErrorLike[] }).errors
    const described = errors && describeSchemaErrors(errors, schema.properties as unknown as Record<string, PropertySchema>, env)
    throw described ? new Error(described) : err
  }
  if (raw.JWT_SECRET && raw.JWT_JWKS_URL) {
    throw new Error('JWT_JWKS_URL must be unset when JWT_SECRET is set (set only one of them)')
  }
  if (raw.JWT_SECRET && raw.JWT_SECRET.length < 32) {
    throw new Error('JWT_SECRET must be at least 32 characters')
  }
  let secret = raw.JWT_SECRET
  if (!secret && !raw.JWT_JWKS_URL) {
    if (!raw.AUTH_DEV_TOKENS) throw new Error('JWT_SECRET or JWT_JWKS_URL is required when AUTH_DEV_TOKENS is off')
    secret = devSecret(raw.DATA_DIR)
  }
  const redisClusterNodes = parseClusterNodes(raw.REDIS_CLUSTER_NODES)
  if (redisClusterNodes.length > 0 && raw.REDIS_URL) {
    throw new Error('REDIS_CLUSTER_NODES must be unset when REDIS_URL is set (set only one of them)')
  }
  if (raw.LIVENESS_TTL_MS < 2 * raw.LIVENESS_INTERVAL_MS) {
    throw new Error('LIVENESS_TTL_MS must be at least twice LIVENESS_INTERVAL_MS')
  }
  if (raw.PRESENCE_TTL_MS < 2 * raw.PRESENCE_RECONCILE_MS) {
    throw new Error('PRESENCE_TTL_MS must be at least twice PRESENCE_RECONCILE_MS')
  }
  if (raw.ADMIN_UI_USERNAME && !/^\$2[aby]\$\d\d\$.{53}$/.test(raw.ADMIN_UI_PASSWORD_HASH)) {
    throw new Error('ADMIN_UI_PASSWORD_HASH must be a bcrypt hash when ADMIN_UI_USERNAME is set')
  }
  if (raw.JWT_JWKS_URL && !URL.canParse(raw.JWT_JWKS_URL)) throw new Error(`JWT_JWKS_URL must be an absolute URL (got ${shown(raw.JWT_JWKS_URL)})`)
  const warnings: string[] = []
  if (production && raw.AUTH_DEV_TOKENS) {
    warnings.push(
      'AUTH_DEV_TOKENS=true with NODE_ENV=production: anyone who can reach POST /api/dev/token can mint a token for any user, admins included. Unset AUTH_DEV_TOKENS unless this deployment is a throwaway.',
    )
  }
  const uploadAllowedTypes = raw.UPLOAD_ALLOWED_TYPES.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean)
  const badType = uploadAllowedTypes.find((t) => !/^[a-z0-9.+-]+\/[a-z0-9.+-]+$/.test(t))
  if (badType !== undefined) throw new Error(`UPLOAD_ALLOWED_TYPES must be comma-separated MIME types (got ${shown(badType)})`)
  const trustedProxies = raw.TRUSTED_PROXIES.split(',').map((p) => p.trim()).filter(Boolean)
  for (const p of trustedProxies) {
    if (!isAddressOrCidr(p)) throw new Error(`TRUSTED_PROXIES must be comma-separated IP addresses or CIDRs (got ${shown(p)})`)
  }
  if (raw.PRESENCE_TTL_MS > 30_000) {
    warnings.push(`PRESENCE_TTL_MS=${raw.PRESENCE_TTL_MS}: a user of a node that stops refreshing presence may look online for longer than 30 s.`)
  }
  const { ENCRYPTION_KEYS, ...rest } = raw
  return Object.freeze({
    ...rest,
    encryption: parseEncryptionKeys(ENCRYPTION_KEYS),
    JWT_SECRET: secret,
    embeddedDatabase: raw.DATABASE_URL === '',
    redisClusterNodes: Object.freeze(redisClusterNodes),
    sharedRedis: raw.REDIS_URL !== '' || redisClusterNodes.length > 0,
    uploadAllowedTypes: Object.freeze(uploadAllowedTypes),
    corsOrigins: Object.freeze(raw.CORS_ORIGINS.split(',').map((o) => o.trim()).filter(Boolean)),
    trustedProxies: Object.freeze(trustedProxies),
    nodeId: raw.NODE_ID || `${hostname()}-${process.pid}-${randomBytes(2).toString('hex')}`,
    warnings: Object.freeze(warnings),
  })
}

/** ENCRYPTION_KEYS → key ring; the error names the variable, never the key material. */
export function parseEncryptionKeys(value: string): Keyring | null {
  try {
    return parseKeyring(value)
  } catch (err) {
    throw new Error(`ENCRYPTION_KEYS must be comma-separated <keyId>:<base64 of 32 bytes> entries: ${(err as Error).message}`)
  }
}

/** REDIS_CLUSTER_NODES → `{ host, port }`s (`redis-1:6379`, `10.0.0.5:7000`, `[fd00::5]:7000`). */
export function parseClusterNodes(value: string): { host: string; port: number }[] {
  const entries = value.split(',').map((e) => e.trim()).filter(Boolean)
  return entries.map((entry) => {
    const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(entry)
    const port = m ? Number(m[3]) : 0
    if (!m || port < 1 || port > 65535 || (m[1] !== undefined && isIP(m[1]) !== 6)) {
      throw new Error(`REDIS_CLUSTER_NODES must be comma-separated host:port entries (got ${shown(entry)})`)
    }
    return { host: m[1] ?? m[2], port }
  })
}

/** `10.0.0.0/8`, `127.0.0.1`, `fd00::/8`, `::1`. */
function isAddressOrCidr(entry: string): boolean {
  const [address, bits, ...rest] = entry.split('/')
  const family = isIP(address)
  if (family === 0 || rest.length > 0) return false
  if (bits === undefined) return true
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128)
}

function devSecret(dataDir: string): string {
  const file = join(resolve(dataDir), 'dev-jwt-secret')
  try {
    return readFileSync(file, 'utf8').trim()
  } catch {
    mkdirSync(resolve(dataDir), { recursive: true })
    const secret = randomBytes(32).toString('base64url')
    writeFileSync(file, secret, { mode: 0o600 })
    return secret
  }
}
