import type { Tokens } from '../auth/tokens.ts'
import * as S from '../domain/schemas.ts'
import { AppError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { ChatSocket } from './events.ts'
import type { EventRouter } from './handle.ts'

const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * A socket whose token expires is disconnected at expiry unless it refreshed (SPEC §2), on
 * every namespace. The timer takes the socket as an argument rather than a closure (memory per
 * idle connection, D37).
 */
export function armExpiry(socket: ChatSocket, log: Logger): void {
  clearTimeout(socket.data.expiry)
  const exp = socket.data.identity.exp
  if (exp === undefined) return
  const ms = exp * 1000 - Date.now()
  socket.data.expiry = setTimeout(onExpiry, Math.max(0, Math.min(ms, MAX_TIMER_MS)), socket, log)
}

function onExpiry(socket: ChatSocket, log: Logger): void {
  if (expired(socket)) {
    log.info({ socketId: socket.id, namespace: socket.nsp.name, userId: socket.data.identity.userId }, 'token expired; disconnecting')
    socket.disconnect(true)
  } else armExpiry(socket, log)
}

/** True once the socket's token is past its `exp` (the timer may fire a little late). */
export function expired(socket: ChatSocket): boolean {
  return (socket.data.identity?.exp ?? Infinity) * 1000 <= Date.now()
}

/**
 * `auth:refresh {token}` → `{ expiresAt }` (SPEC §2, D13), the same on every namespace: the new
 * token must be valid and for the same user (else FORBIDDEN), and carry `role` where the
 * namespace requires one (/admin), so a refresh can never keep powers the new token lacks.
 */
export function addRefresh(router: EventRouter, tokens: Tokens, log: Logger, role?: string): EventRouter {
  return router.on('auth:refresh', S.RefreshPayload, async (socket, p) => {
    const next = await tokens.verify(p.token)
    if (next.userId !== socket.data.identity.userId) throw new AppError('FORBIDDEN', 'The new token is for another user')
    if (role && !next.roles.includes(role)) throw new AppError('FORBIDDEN', `The new token lacks the ${role} role`)
    socket.data.identity = next
    armExpiry(socket, log)
    return { expiresAt: next.exp === undefined ? null : new Date(next.exp * 1000).toISOString() }
  })
}
