import { LRUCache } from 'lru-cache'
import { createRemoteJWKSet, errors, jwtVerify, SignJWT, type JWTVerifyGetKey } from 'jose'
import type { Config } from '../config.ts'
import type { Identity } from '../domain/types.ts'
import { AppError } from '../errors.ts'
import { devUserId } from '../ids.ts'
import { storable } from '../validation.ts'

/** The roles a dev token may carry (`POST /api/dev/token {"roles"}`). */
export const DEV_TOKEN_ROLES = ['admin'] as const
export type DevTokenRole = (typeof DEV_TOKEN_ROLES)[number]

/**
 * Verifies bearer JWTs (HS256 shared secret, or RS256/ES256/EdDSA through a JWKS URL) and,
 * when dev tokens are on, signs them. `alg: none` and every algorithm not listed is refused.
 */
export class Tokens {
  private readonly key: Uint8Array | JWTVerifyGetKey
  private readonly algorithms: string[]
  /** Verified tokens until their expiry (HTTP clients send the same token on every request). */
  private readonly verified = new LRUCache<string, Identity>({ max: 10_000 })

  constructor(private readonly config: Config) {
    if (config.JWT_JWKS_URL) {
      this.key = createRemoteJWKSet(new URL(config.JWT_JWKS_URL))
      this.algorithms = ['RS256', 'ES256', 'EdDSA']
    } else {
      this.key = new TextEncoder().encode(config.JWT_SECRET)
      this.algorithms = ['HS256']
    }
  }

  /** The identity in `token`, or AppError AUTH_REQUIRED / AUTH_INVALID / AUTH_EXPIRED. */
  async verify(token: unknown): Promise<Identity> {
    if (token === undefined || token === null || token === '') {
      throw new AppError('AUTH_REQUIRED', 'Authentication required')
    }
    if (typeof token !== 'string' || token.length > 8192) throw new AppError('AUTH_INVALID', 'Invalid token')
    const known = this.verified.get(token)
    if (known) return known
    try {
      const { payload } = await jwtVerify(token, this.key as Uint8Array, {
        algorithms: this.algorithms,
        issuer: this.config.JWT_ISSUER || undefined,
        audience: this.config.JWT_AUDIENCE || undefined,
        clockTolerance: 5,
      })
      const sub = payload.sub
      // Refused, never rewritten: Postgres would turn a lone surrogate into U+FFFD and merge two users.
      if (typeof sub !== 'string' || sub.length === 0 || sub.length > 128 || !storable(sub)) throw new AppError('AUTH_INVALID', 'Invalid token')
      if (payload.name !== undefined && (typeof payload.name !== 'string' || !storable(payload.name))) throw new AppError('AUTH_INVALID', 'Invalid token')
      const name = payload.name?.trim() ? [...payload.name.trim()].slice(0, 64).join('') : sub
      const roles = Array.isArray(payload.roles) ? payload.roles.filter((r): r is string => typeof r === 'string' && storable(r)) : []
      const identity: Identity = { userId: sub, username: name, roles, exp: payload.exp }
      // Remembered until expiry (capped), never past it: an expired token is verified again and refused.
      // (lru-cache reads a ttl of 0 as "forever": a token within clockTolerance of its expiry is not kept.)
      const ttl = payload.exp === undefined ? 0 : Math.min(payload.exp * 1000 - Date.now(), 3_600_000)
      if (ttl > 0) this.verified.set(token, identity, { ttl })
      return identity
    } catch (err) {
      if (err instanceof AppError) throw err
      if (err instanceof errors.JWTExpired) throw new AppError('AUTH_EXPIRED', 'Invalid token')
      throw new AppError('AUTH_INVALID', 'Invalid token')
    }
  }

  /** A dev token for `username`, with `roles` (only when AUTH_DEV_TOKENS is on and the secret is local). */
  async devToken(username: string, roles: readonly DevTokenRole[] = []): Promise<{ token: string; userId: string; expiresAt: string }> {
    if (!this.config.AUTH_DEV_TOKENS || !(this.key instanceof Uint8Array)) {
      throw new AppError('NOT_FOUND', 'Dev tokens are disabled')
    }
    const userId = devUserId(username)
    const exp = Math.floor(Date.now() / 1000) + this.config.DEV_TOKEN_TTL_SECONDS
    const token = await new SignJWT(roles.length ? { name: username.trim(), roles: [...roles] } : { name: username.trim() })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(userId)
      .setIssuedAt()
      .setExpirationTime(exp)
      .setIssuer(this.config.JWT_ISSUER || 'switchboard-dev')
      .setAudience(this.config.JWT_AUDIENCE || 'switchboard')
      .sign(this.key)
    return { token, userId, expiresAt: new Date(exp * 1000).toISOString() }
  }
}
