import type { Session } from '../session.ts'

export function TopBar({ session, onSignOut }: { session: Session | null; onSignOut(): void }) {
  return (
    <header className="topbar">
      <h1>Switchboard</h1>
      {session && (
        <div className="whoami">
          <span>
            Signed in as <strong data-testid="me-name">{session.username}</strong>
          </span>
          <button type="button" className="link" data-testid="signout" onClick={onSignOut}>
            Sign out
          </button>
        </div>
      )}
    </header>
  )
}
