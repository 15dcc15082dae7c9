import { useState, type FormEvent } from 'react'
import { api, ApiError } from '../api.ts'
import { sessionFromToken, type Session } from '../session.ts'

/** Sign in with a display name (dev tokens) or with a pasted JWT. */
export function SignIn({ notice, onSignedIn }: { notice: string; onSignedIn(s: Session): void }) {
  const [name, setName] = useState('')
  const [token, setToken] = useState('')
  const [busy, setBusy] = useState(false)
  const [message, setMessage] = useState('')
  const [separate, setSeparate] = useState(false)
  const shown = message || notice

  async function withName(e: FormEvent) {
    e.preventDefault()
    const username = name.trim()
    if (!username) return
    setBusy(true)
    try {
      const t = await api.devToken(username)
      onSignedIn({ token: t.token, userId: t.userId, username: t.username, ...(separate ? { separate } : {}) })
    } catch (err) {
      setMessage(`Sign-in failed: ${err instanceof ApiError ? err.display : String(err)}`)
      setBusy(false)
    }
  }

  function withToken(e: FormEvent) {
    e.preventDefault()
    const s = sessionFromToken(token.trim())
    if (typeof s === 'string') return setMessage(s)
    onSignedIn(separate ? { ...s, separate } : s)
  }

  return (
    <main className="signin">
      <h2>Sign in</h2>
      {shown && (
        <p className="notice" role="status" data-testid="signin-notice">
          {shown}
        </p>
      )}
      <label className="check card" data-testid="signin-separate-label">
        <input type="checkbox" data-testid="signin-separate" checked={separate} onChange={(e) => setSeparate(e.target.checked)} aria-describedby="signin-separate-hint" />
        Keep this tab a separate user
      </label>
      <p id="signin-separate-hint" className="hint">
        The sign-in stays in this tab only, so another window can be signed in as someone else.
      </p>
      <form className="card" onSubmit={withName}>
        <label htmlFor="signin-name">Display name</label>
        <input
          id="signin-name"
          data-testid="signin-name"
          maxLength={64}
          autoComplete="nickname"
          required
          autoFocus
          value={name}
          onChange={(e) => setName(e.target.value)}
        />
        <button type="submit" data-testid="signin-submit" disabled={busy}>
          Sign in
        </button>
      </form>
      <form className="card" onSubmit={withToken}>
        <label htmlFor="token-input">Or paste a token (JWT)</label>
        <textarea
          id="token-input"
          data-testid="token-input"
          rows={3}
          spellCheck={false}
          required
          value={token}
          onChange={(e) => setToken(e.target.value)}
        />
        <button type="submit" data-testid="token-submit">
          Use token
        </button>
      </form>
    </main>
  )
}
