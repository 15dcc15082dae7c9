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
  bareRoomId: boolean
}

/**
 * The most text (strings and keys, in UTF-16 units) one event may carry: a full message is
 * 5,000 characters, so this leaves room for every field while a 500 KB string answers TOO_LARGE
 * (SPEC §4). The transport's hard cap is `maxHttpBufferSize` (io.ts).
 */
export const MAX_EVENT_CHARS = 64 * 1024

const eventName = (event: unknown) => (typeof event === 'string' ? JSON.stringify(event.slice(0, 64)) : typeof event)

/**
 * A namespace's client events: validate → run → ack `{status:"ok",...}` or
 * `{status:"error",code,error}`. Nothing thrown inside reaches Socket.IO, so no payload can
 * crash the node or disconnect the socket. An event nobody handles is answered BAD_REQUEST when it asks for an ack.
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

  /** `bareRoomId`: the payload may also be a bare room id string, taken as `{ roomId }`. */
  on<S extends TSchema>(event: string, schema: S, fn: Handler<S>, opts: { bareRoomId?: boolean } = {}): this {
    this.routes.set(event, { schema, fn: fn as unknown as Handler<TSchema>, bareRoomId: opts.bareRoomId ?? false })
    return this
  }

  private dispatch(socket: ChatSocket, event: string, args: unknown[]): void {
    const ack = typeof args[args.length - 1] === 'function' ? (args.pop() as (res: object) => void) : undefined
    const route = this.routes.get(event)
    if (!route) {
      // Socket.IO ignores unknown events; a client that asked for an answer gets one (SPEC §4).
      ack?.({ status: 'error', code: 'BAD_REQUEST', error: `Unknown event ${eventName(event)}` })
      return
    }
    if (expired(socket)) {
      // The expiry timer is due (it can fire late): nothing more is done with this token.
      ack?.({ status: 'error', code: 'AUTH_EXPIRED', error: 'Token expired' })
      socket.disconnect(true)
      return
    }
    const { log, metrics } = this
    metrics.eventsIn.inc({ event })
    const started = performance.now()
    let answered = false
    const ok = (result: object | void) => {
      if (answered) return
      answered = true
      metrics.ackSeconds.observe({ event, status: 'ok' }, (performance.now() - started) / 1000)
      ack?.({ status: 'ok', ...(result ?? {}) })
    }
    const payload = route.bareRoomId && typeof args[0] === 'string' ? { roomId: args[0] } : args[0]
    const run = async () => route.fn(socket, parse(route.schema, payload, MAX_EVENT_CHARS), { ack: ok })
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
