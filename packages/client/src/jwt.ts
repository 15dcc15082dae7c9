/**
 * Reading (never verifying) a JWT's claims.
 * @packageDocumentation
 */

/** The claims the SDK reads from a token: `sub`, `name`, `roles`, `exp`. */
export interface TokenClaims {
  userId: string
  username: string
  roles: string[]
  /** Expiry, epoch seconds; undefined when the token has none. */
  exp?: number
}

function base64UrlDecode(s: string): string {
  const b64 = s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4)
  const bin = atob(b64)
  const bytes = new Uint8Array(bin.length)
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i)
  return new TextDecoder().decode(bytes)
}

/** The payload of a JWT, decoded without verification (the server verifies); null when it is not a JWT. */
export function decodeClaims(token: string): TokenClaims | null {
  const parts = token.split('.')
  if (parts.length !== 3) return null
  try {
    const p = JSON.parse(base64UrlDecode(parts[1])) as Record<string, unknown>
    if (typeof p !== 'object' || p === null || typeof p.sub !== 'string') return null
    const name = typeof p.name === 'string' && p.name.trim() ? p.name.trim() : p.sub
    const roles = Array.isArray(p.roles) ? p.roles.filter((r): r is string => typeof r === 'string') : []
    const claims: TokenClaims = { userId: p.sub, username: name, roles }
    if (typeof p.exp === 'number' && Number.isFinite(p.exp)) claims.exp = p.exp
    return claims
  } catch {
    return null
  }
}
