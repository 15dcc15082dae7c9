import { decodeClaims } from '@switchboard/client'

/**
 * The signed-in user, kept in localStorage so a reload stays signed in — or, when the user
 * asked to keep this tab a separate user, in sessionStorage: that tab's own, so two windows of
 * one browser can be two users (a reload of the tab keeps it; a new tab gets the browser-wide one).
 */
export interface Session {
  token: string
  userId: string
  username: string
  /** Kept in sessionStorage (this tab only). */
  separate?: boolean
}

const SESSION_KEY = 'switchboard.session'
const LAST_ROOM_KEY = 'switchboard.lastRoom'

/** A session from a pasted token, or an explanation of why it is not usable. */
export function sessionFromToken(token: string): Session | string {
  const claims = decodeClaims(token)
  if (!claims || !claims.userId) return 'That does not look like a JWT with a "sub" claim.'
  if (isExpired(claims)) return 'That token has expired.'
  return { token, userId: claims.userId, username: claims.username }
}

const isExpired = (claims: { exp?: number }) => typeof claims.exp === 'number' && claims.exp * 1000 < Date.now()

/** Where this tab's session lives: sessionStorage once it holds one, else localStorage. */
const store = (): Storage => (sessionStorage.getItem(SESSION_KEY) !== null ? sessionStorage : localStorage)

/** The stored session; `expired` when there was one whose token ran out. */
export function loadSession(): { session: Session | null; expired: boolean } {
  try {
    const from = store()
    const saved = JSON.parse(from.getItem(SESSION_KEY) ?? 'null') as Session | null
    if (!saved || typeof saved.token !== 'string' || typeof saved.userId !== 'string') return { session: null, expired: false }
    const claims = decodeClaims(saved.token)
    if (claims && isExpired(claims)) {
      from.removeItem(SESSION_KEY)
      return { session: null, expired: true }
    }
    return { session: saved, expired: false }
  } catch {
    return { session: null, expired: false }
  }
}

/** Stores the session where it asks to live (a separate tab never touches the shared localStorage one). */
export function saveSession(s: Session | null): void {
  if (s) {
    const to = s.separate ? sessionStorage : localStorage
    if (s.separate) sessionStorage.removeItem(LAST_ROOM_KEY)
    to.setItem(SESSION_KEY, JSON.stringify(s))
    return
  }
  const from = store()
  from.removeItem(SESSION_KEY)
  from.removeItem(LAST_ROOM_KEY)
}

export const lastRoom = {
  get: () => store().getItem(LAST_ROOM_KEY),
  set: (roomId: string | null) => (roomId ? store().setItem(LAST_ROOM_KEY, roomId) : store().removeItem(LAST_ROOM_KEY)),
}
