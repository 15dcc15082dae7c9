import rateLimit, { normalizeIP } from '@fastify/rate-limit'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { RedisClient } from '../cluster/redis.ts'
import type { Tokens } from '../auth/tokens.ts'
import type { Config } from '../config.ts'
import { AppError } from '../errors.ts'
import type { Metrics } from '../metrics.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The `kind` label of refusals on this route (default `http`). */
    limitKind?: string
  }
}

const isApi = (request: FastifyRequest) => request.url.startsWith('/api/')

/** The client's address (request.ip: the real one behind TRUSTED_PROXIES), IPv6 by /64. */
export const addressKey = (request: FastifyRequest) => `ip:${normalizeIP(request.ip)}`

/**
 * HTTP rate limits (D57) with @fastify/rate-limit, in Redis when there is one (its store on the
 * cluster's command connection), so every node shares the counters. Only `/api/` routes are
 * limited (never `/healthz`, `/readyz`, `/metrics`, nor the web client's files):
 * RATE_LIMIT_HTTP per RATE_LIMIT_HTTP_WINDOW_SECONDS per user (a valid bearer token), or per
 * client address without one. A route can set its own (`config.rateLimit`: dev tokens). Over
 * the limit: 429 `{ error: "RATE_LIMITED", message }` with `Retry-After`. Redis unreachable:
 * requests pass (SPEC §5.6).
 */
export const httpLimits = fp(
  async (app: FastifyInstance, opts: { config: Config; tokens: Tokens; metrics: Metrics; redis?: RedisClient }) => {
    const { config, tokens, metrics } = opts
    await app.register(rateLimit, {
      global: true,
      max: config.RATE_LIMIT_HTTP,
      timeWindow: config.RATE_LIMIT_HTTP_WINDOW_SECONDS * 1000,
      redis: opts.redis,
      nameSpace: `${config.REDIS_PREFIX}rl:http:`,
      skipOnError: true,
      allowList: (request) => !isApi(request),
      keyGenerator: async (request) => {
        if (!isApi(request)) return 'exempt'
        const header = request.headers.authorization
        if (header?.startsWith('Bearer ')) {
          // Verified (and cached by Tokens): a forged `sub` cannot spend someone else's requests.
          const identity = await tokens.verify(header.slice(7)).catch(() => undefined)
          if (identity) return `user:${identity.userId}`
        }
        return addressKey(request)
      },
      errorResponseBuilder: (_request, context) =>
        new AppError('RATE_LIMITED', `Too many requests; retry in ${context.after}`, { retryAfterMs: context.ttl }),
      onExceeded: (request) => metrics.rateLimited.inc({ kind: request.routeOptions.config.limitKind ?? 'http' }),
    })
  },
  { name: 'limits', dependencies: ['errors'] },
)
