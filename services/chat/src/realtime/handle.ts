import type { Static, TSchema } from 'typebox'
import { toAppError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { Metrics } from '../metrics.ts'
import { parse } from '../validation.ts'
import type { ChatSocket } from './events.ts'

/** `ack` lets a handler answer at a moment of its choosing (then its return value is not sent). */
type Handler<S extends TSchema> = (payload: Static<S>, ctx: { ack(result: object): void }) => Promise<object | void>

/**
 * Registers one client event: validate → run → ack `{status:"ok",...}` or
 * `{status:"error",code,error}`. Nothing thrown inside reaches Socket.IO, so no payload can
 * crash the node or disconnect the socket.
 */
export function handle<S extends TSchema>(
  socket: ChatSocket,
  log: Logger,
  metrics: Metrics,
  event: string,
  schema: S,
  fn: Handler<S>,
): void {
  ;(socket as unknown as { on(e: string, l: (...args: unknown[]) => void): void }).on(event, (...args) => {
    const ack = typeof args[args.length - 1] === 'function' ? (args.pop() as (res: object) => void) : undefined
    metrics.eventsIn.inc({ event })
    const started = performance.now()
    let answered = false
    const ok = (result: object | void) => {
      if (answered) return
      answered = true
      metrics.ackSeconds.observe({ event, status: 'ok' }, (performance.now() - started) / 1000)
      ack?.({ status: 'ok', ...(result ?? {}) })
    }
    const run = async () => fn(parse(schema, args[0]), { ack: ok })
    run().then(
      (result) => ok(result),
      (err: unknown) => {
        if (answered) return
        answered = true
        const e = toAppError(err)
        // No child logger per socket (memory on idle connections): name the socket on each line.
        const where = { event, socketId: socket.id, userId: socket.data.identity?.userId }
        metrics.ackSeconds.observe({ event, status: e.code }, (performance.now() - started) / 1000)
        if (e.code === 'RATE_LIMITED') metrics.rateLimited.inc()
        if (e.code === 'INTERNAL') log.error({ err, ...where }, 'handler failed')
        else if (e.code === 'UNAVAILABLE') log.warn({ err: (err as Error).message, ...where }, 'dependency unavailable')
        else log.debug({ ...where, code: e.code }, e.message)
        ack?.({ status: 'error', code: e.code, error: e.message, ...e.details })
      },
    )
  })
}
