import type { Static, TSchema } from 'typebox'
import { toAppError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { Metrics } from '../metrics.ts'
import { parse } from '../validation.ts'
import type { ChatSocket } from './events.ts'
import { expired } from './session.ts'

/** `ack` lets a handler answer at a moment of its choosing (then its return value is not sent). */
export type Handler<S extends TSchema> = (socket: ChatSocket, payload: Static<S>, ctx: { ack(result: object): void }) => Promise<object | void>

interface Route {
  schema: TSchema
  fn: Handler<TSchema>
}

/**
 * A namespace's client events: validate → run → ack `{status:"ok",...}` or
 * `{status:"error",code,error}`. Nothing thrown inside reaches Socket.IO, so no payload can
 * crash the node or disconnect the socket. Events nobody handles are ignored, as Socket.IO does.
 *
 * Built once per namespace; every socket gets the same `listener` through `socket.onAny`, so an
 * idle connection carries no handler closures of its own (decision D37: memory per connection).
 */
export class EventRouter {
  private readonly routes = new Map<string, Route>()
  /** For `socket.onAny`: Socket.IO calls it with the socket as `this`. */
  readonly listener: (this: ChatSocket, event: string, ...args: unknown[]) => void

  constructor(
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {
    const router = this
    this.listener = function (this: ChatSocket, event: string, ...args: unknown[]) {
      router.dispatch(this, event, args)
    }
  }

  on<S extends TSchema>(event: string, schema: S, fn: Handler<S>): this {
    this.routes.set(event, { schema, fn: fn as unknown as Handler<TSchema> })
    return this
  }

  private dispatch(socket: ChatSocket, event: string, args: unknown[]): void {
    const route = this.routes.get(event)
    if (!route) return
    const { log, metrics } = this
    const ack = typeof args[args.length - 1] === 'function' ? (args.pop() as (res: object) => void) : undefined
    if (expired(socket)) {
      // The expiry timer is due (it can fire late): nothing more is done with this token.
      ack?.({ status: 'error', code: 'AUTH_EXPIRED', error: 'Token expired' })
      socket.disconnect(true)
      return
    }
    metrics.eventsIn.inc({ event })
    const started = performance.now()
    let answered = false
    const ok = (result: object | void) => {
      if (answered) return
      answered = true
      metrics.ackSeconds.observe({ event, status: 'ok' }, (performance.now() - started) / 1000)
      ack?.({ status: 'ok', ...(result ?? {}) })
    }
    const run = async () => route.fn(socket, parse(route.schema, args[0]), { ack: ok })
    run().then(
      (result) => ok(result),
      (err: unknown) => {
        if (answered) return
        answered = true
        const e = toAppError(err)
        // No child logger per socket (memory on idle connections): name the socket on each line.
        const where = { event, socketId: socket.id, userId: socket.data.identity?.userId }
        metrics.ackSeconds.observe({ event, status: e.code }, (performance.now() - started) / 1000)
        if (e.code === 'RATE_LIMITED') metrics.rateLimited.inc({ kind: event.slice(event.indexOf(':') + 1) }) // chat:message → message
        if (e.code === 'INTERNAL') log.error({ err, ...where }, 'handler failed')
        else if (e.code === 'UNAVAILABLE') log.warn({ err: (err as Error).message, ...where }, 'dependency unavailable')
        else log.debug({ ...where, code: e.code }, e.message)
        ack?.({ status: 'error', code: e.code, error: e.message, ...e.details })
      },
    )
  }
}
