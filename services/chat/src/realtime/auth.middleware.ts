import type { Socket } from 'socket.io'
export type ExtendedError = Error & { data?: unknown }
import type { Tokens } from '../auth/tokens.ts'
import { toAppError } from '../errors.ts'

/** Reads the token from `auth.token`, or an `Authorization: Bearer` handshake header. */
export function handshakeToken(socket: Socket): unknown {
  const auth = socket.handshake.auth as { token?: unknown } | undefined
  if (auth?.token !== undefined) return auth.token
  // The handshake request is dropped at connection (io.ts); its Authorization header is kept on the engine socket.
  const header = (socket.conn as unknown as { bearer?: string }).bearer ?? socket.handshake.headers.authorization
  return header?.startsWith('Bearer ') ? header.slice(7) : undefined
}

/**
 * Namespace middleware (SPEC §2): refuses with `err.message` "Authentication required" or
 * "Invalid token" and `err.data.code` AUTH_REQUIRED / AUTH_INVALID / AUTH_EXPIRED; with
 * `role`, also FORBIDDEN for callers without it.
 */
export function authMiddleware(tokens: Tokens, role?: string) {
  return (socket: Socket, next: (err?: ExtendedError) => void) => {
    tokens.verify(handshakeToken(socket)).then(
      (identity) => {
        if (role && !identity.roles.includes(role)) return next(refusal('Forbidden', 'FORBIDDEN'))
        socket.data.identity = identity
        if ((socket.handshake.auth as { batches?: unknown } | undefined)?.batches === true) socket.data.batches = true
        next()
      },
      (err: unknown) => {
        const e = toAppError(err)
        next(refusal(e.code === 'AUTH_REQUIRED' ? 'Authentication required' : 'Invalid token', e.code))
      },
    )
  }
}

/** A handshake refusal: `connect_error` with `err.message` and `err.data.code`. */
export function refusal(message: string, code: string): ExtendedError {
  const err = new Error(message) as ExtendedError
  err.data = { code }
  return err
}
