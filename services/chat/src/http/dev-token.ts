import type { FastifyInstance } from 'fastify'
import Type from 'typebox'
import type { Tokens } from '../auth/tokens.ts'
import { parse } from '../validation.ts'
import { addressKey } from './limits.ts'

const Body = Type.Object({ username: Type.String({ minLength: 1, maxLength: 64, pattern: '\\S' }) })

/**
 * `POST /api/dev/token {"username"}` → `{ token, userId, username, expiresAt }` (dev mode only),
 * at most `limit.max` per client address per window, cluster-wide (limits.ts).
 */
export async function devTokenRoutes(
  app: FastifyInstance,
  deps: { tokens: Tokens; enabled: boolean; limit: { max: number; windowMs: number } },
): Promise<void> {
  const rateLimit = { max: deps.limit.max, timeWindow: deps.limit.windowMs, keyGenerator: addressKey }
  app.post('/api/dev/token', { config: { rateLimit, limitKind: 'dev_token' } }, async (request, reply) => {
    if (!deps.enabled) return reply.status(404).send({ error: 'NOT_FOUND', message: 'Dev tokens are disabled' })
    const { username } = parse(Body, request.body)
    const t = await deps.tokens.devToken(username)
    return { token: t.token, userId: t.userId, username: username.trim(), expiresAt: t.expiresAt }
  })
}
