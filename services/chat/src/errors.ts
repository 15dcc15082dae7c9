/** Error codes of SPEC §2 and §4 (plus CONFLICT for HTTP creates). */
export type ErrorCode =
  | 'BAD_REQUEST'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'RATE_LIMITED'
  | 'TOO_LARGE'
  | 'UNAVAILABLE'
  | 'INTERNAL'
  | 'CONFLICT'
  | 'AUTH_REQUIRED'
  | 'AUTH_INVALID'
  | 'AUTH_EXPIRED'

/** The one table from code to HTTP status. */
export const httpStatus: Record<ErrorCode, number> = {
  BAD_REQUEST: 400,
  AUTH_REQUIRED: 401,
  AUTH_INVALID: 401,
  AUTH_EXPIRED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  TOO_LARGE: 413,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  UNAVAILABLE: 503,
}

/** The one error type the app throws on purpose; anything else is INTERNAL or UNAVAILABLE. */
export class AppError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
    /** Overrides the code's HTTP status where SPEC §6 asks for another (415 for a refused upload type). */
    readonly httpStatus?: number,
  ) {
    super(message)
    this.name = 'AppError'
  }
}

const unavailableMessages =
  /Connection terminated|connect ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|timeout exceeded|Query read timeout|Command timed out|Connection is closed|Stream isn't writeable|MaxRetriesPerRequest|enableOfflineQueue|Client has encountered a connection error|Cannot use a pool after calling end|ENOTFOUND|EAI_AGAIN/i

/**
 * Replies a Redis Cluster gives while its slots move or a master fails over: a redirect that
 * outlived ioredis' redirections (a replica still naming the dead master), no master for a slot
 * yet, a node loading or demoted. The next try lands once the cluster settles (D166).
 */
const clusterTransition = /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN|LOADING|READONLY|MASTERDOWN) /

/** True when the error means a dependency (Postgres, Redis) is unreachable: safe to retry. */
export function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false
  if (err.name === 'MaxRetriesPerRequestError') return true
  if (err.name === 'ReplyError' && clusterTransition.test(err.message)) return true
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string') {
    // SQLSTATE class 08 (connection), 57P0x (shutdown), 53 (resources); Node socket errors.
    if (/^(08|57P0|53)/.test(code) || /^E[A-Z]+$/.test(code)) return true
  }
  return unavailableMessages.test(err.message)
}

/** Maps any thrown value to the one error type; 5xx details stay in the logs. */
export function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err
  if (isUnavailable(err)) return new AppError('UNAVAILABLE', 'A dependency is unavailable; retry shortly')
  return new AppError('INTERNAL', 'Internal error')
}
