import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AppError, httpStatus, toAppError } from '../errors.ts'

/** One error shape for every route: `{ error: CODE, message }` with the code's status (SPEC §6). */
export const errorsPlugin = fp(
  async (app: FastifyInstance) => {
    app.setErrorHandler((err, request: FastifyRequest, reply) => {
      let e: AppError
      const fe = err as { validation?: unknown; statusCode?: number; code?: string; message: string }
      if (fe.validation) e = new AppError('BAD_REQUEST', fe.message)
      else if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') e = new AppError('TOO_LARGE', 'Request body too large')
      else if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) e = new AppError('BAD_REQUEST', fe.message)
      else e = toAppError(err)
      if (e.code === 'INTERNAL') request.log.error({ err }, 'request failed')
      else if (e.code === 'UNAVAILABLE') request.log.warn({ err: fe.message }, 'dependency unavailable')
      return reply.status(e.httpStatus ?? httpStatus[e.code]).send({ error: e.code, message: e.message })
    })
    app.setNotFoundHandler((request, reply) =>
      reply.status(404).send({ error: 'NOT_FOUND', message: `No route ${request.method} ${request.url.split('?')[0]}` }),
    )
  },
  { name: 'errors' },
)
