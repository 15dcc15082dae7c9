import { useEffect, useState } from 'react'

/** What the notice needs of a held send: when it goes again, and why it was held. */
export interface HeldSend {
  retryAt?: number
  code?: string
}

/**
 * Every send held by the rate limit, as ONE notice with a live countdown to the next attempt
 * (the server's retryAfterMs), instead of one error per refused message. The held messages go
 * by themselves, in their order; nothing for the user to do.
 */
export function RateLimitNotice({ held }: { held: readonly HeldSend[] }) {
  const limited = held.filter((h) => h.code === 'RATE_LIMITED' && h.retryAt !== undefined)
  const next = limited.length > 0 ? Math.min(...limited.map((h) => h.retryAt!)) : 0
  const [now, setNow] = useState(() => Date.now())
  useEffect(() => {
    if (!next) return
    setNow(Date.now())
    const t = setInterval(() => setNow(Date.now()), 250)
    return () => clearInterval(t)
  }, [next])
  if (limited.length === 0) return null
  const seconds = Math.max(0, Math.ceil((next - now) / 1000))
  const waiting = held.length
  // Only the sentence is a live region: a screen reader hears it once, not every tick of the countdown.
  return (
    <div className="rate-notice" data-testid="rate-limit-notice">
      <span role="status">
        You are sending messages faster than the server allows. {waiting === 1 ? '1 message is' : `${waiting} messages are`} waiting and will be sent in order.
      </span>{' '}
      <span className="countdown">
        {seconds > 0 ? (
          <>
            Next try in <span data-testid="rate-limit-countdown">{seconds}</span> s.
          </>
        ) : (
          'Sending…'
        )}
      </span>
    </div>
  )
}
