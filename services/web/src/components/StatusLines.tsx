/** The connection as the banner and `data-connection` show it. */
export type Connection = 'connecting' | 'connected' | 'reconnecting'

/** Shown while not connected: connecting, or reconnecting after the connection was lost. */
export function ConnectionBanner({ connection, attempt, connectError }: { connection: Connection; attempt: number; connectError: string | null }) {
  if (connection === 'connected') return null
  let text = connection === 'connecting' ? 'Connecting…' : 'Disconnected — reconnecting…'
  if (connection === 'reconnecting' && attempt > 0) text = `Disconnected — reconnecting… (attempt ${attempt})`
  if (connectError) text += ` Last error: ${connectError}.`
  return (
    <p className="banner" data-testid="banner" role="status" aria-live="polite">
      {text} Messages you send now are kept and sent when the connection is back.
    </p>
  )
}

export function ErrorLine({ error, onDismiss }: { error: { id: number; text: string } | null; onDismiss(): void }) {
  if (!error) return null
  return (
    <div className="error" role="alert">
      <p data-testid="error">{error.text}</p>
      <button type="button" className="link" onClick={onDismiss} aria-label="Dismiss the error">
        Dismiss
      </button>
    </div>
  )
}
