import type { FastifyInstance } from 'fastify'
import Type from 'typebox'
import { DEV_TOKEN_ROLES, type Tokens } from '../auth/tokens.ts'
import { AppError } from '../errors.ts'
import { parse } from '../validation.ts'
import { addressKey } from './limits.ts'
import { DevTokenSchema, documentedOnly, errors } from './wire-schemas.ts'

const Body = Type.Object({
  username: Type.String({ minLength: 1, maxLength: 64, pattern: '\\S' }),
  roles: Type.Optional(Type.Array(Type.Union(DEV_TOKEN_ROLES.map((r) => Type.Literal(r))), { maxItems: DEV_TOKEN_ROLES.length, uniqueItems: true })),
})

/**
 * `POST /api/dev/token {"username", "roles"?: ["admin"]}` → `{ token, userId, username, roles, expiresAt }`
 * (dev mode only). Unknown or repeated roles are BAD_REQUEST. At most `limit.max` per client address per
 * window, cluster-wide (limits.ts).
 */
export async function devTokenRoutes(
  app: FastifyInstance,
  deps: { tokens: Tokens; enabled: boolean; limit: { max: number; windowMs: number } },
): Promise<void> {
  const rateLimit = { max: deps.limit.max, timeWindow: deps.limit.windowMs, keyGenerator: addressKey }
  const schema = {
    tags: ['auth'],
    summary: 'A dev token for a username (dev mode only: 404 when AUTH_DEV_TOKENS is off)',
    body: Body,
    response: { 200: DevTokenSchema, ...errors(400, 404, 429) },
  }
  app.post('/api/dev/token', { schema, ...documentedOnly, config: { rateLimit, limitKind: 'dev_token' } }, async (request, reply) => {
    if (!deps.enabled) return reply.status(404).send({ error: 'NOT_FOUND', message: 'Dev tokens are disabled' })
    const { username, roles = [] } = parseBody(request.body)
    const t = await deps.tokens.devToken(username, roles)
    return { token: t.token, userId: t.userId, username: username.trim(), roles, expiresAt: t.expiresAt }
  })
}

function parseBody(body: unknown) {
  try {
    return parse(Body, body)
  } catch (err) {
    if (err instanceof AppError && err.message.startsWith('Invalid roles')) {
      throw new AppError('BAD_REQUEST', `Invalid roles: a list of distinct roles among: ${DEV_TOKEN_ROLES.join(', ')}`)
    }
    throw err
  }
}
