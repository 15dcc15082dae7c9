/**
 * The one error type the SDK rejects with.
 * @packageDocumentation
 */

/**
 * A failed operation. `code` is a server ack code ({@link ErrorCode}: `BAD_REQUEST`, `FORBIDDEN`,
 * `NOT_FOUND`, `RATE_LIMITED`, `TOO_LARGE`, `UNAVAILABLE`, `INTERNAL`), a handshake code
 * (`AUTH_*`), an HTTP error code, or one of the SDK's own: `DISCONNECTED` (not connected),
 * `TIMEOUT` (no ack in time), `DISCARDED` (an outbox entry removed by `discard`), `CLOSED`
 * (the client was closed), `NETWORK` (fetch failed).
 */
export class SwitchboardError extends Error {
  /** Machine-readable reason. */
  readonly code: string
  /** With `RATE_LIMITED` and an overloaded `UNAVAILABLE`: how long to wait before trying again. */
  readonly retryAfterMs?: number
  /** The HTTP status, for errors of HTTP calls. */
  readonly status?: number

  /** @param code - the reason; @param message - human-readable text. */
  constructor(code: string, message: string, opts: { retryAfterMs?: number; status?: number } = {}) {
    super(message)
    this.name = 'SwitchboardError'
    this.code = code
    if (opts.retryAfterMs !== undefined) this.retryAfterMs = opts.retryAfterMs
    if (opts.status !== undefined) this.status = opts.status
  }
}

/** Ack codes after which resending the same thing cannot succeed. */
export const FINAL_CODES: ReadonlySet<string> = new Set(['BAD_REQUEST', 'FORBIDDEN', 'NOT_FOUND', 'TOO_LARGE'])
