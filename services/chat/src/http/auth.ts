import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Tokens } from '../auth/tokens.ts'
import type { Identity } from '../domain/types.ts'

declare module 'fastify' {
  interface FastifyRequest {
    identity: Identity
  }
  interface FastifyInstance {
    /** preHandler: `Authorization: Bearer <jwt>` → request.identity, or 401 with the SPEC §2 code. */
    authenticate: (request: FastifyRequest) => Promise<void>
  }
}

export const authPlugin = fp(
  async (app: FastifyInstance, opts: { tokens: Tokens }) => {
    app.decorateRequest('identity', null as unknown as Identity)
    app.decorate('authenticate', async (request: FastifyRequest) => {
      const header = request.headers.authorization
      const token = header?.startsWith('Bearer ') ? header.slice(7) : undefined
      request.identity = await opts.tokens.verify(token)
    })
  },
  { name: 'auth', dependencies: ['errors'] },
)
