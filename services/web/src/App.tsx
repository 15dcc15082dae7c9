import { useCallback, useState } from 'react'
import type { ClientOptions } from '@switchboard/client'
import { SwitchboardProvider } from '@switchboard/react'
import { ChatPage } from './components/ChatPage.tsx'
import { SignIn } from './components/SignIn.tsx'
import { TopBar } from './components/TopBar.tsx'
import { loadSession, saveSession, type Session } from './session.ts'

/** `?transport=polling` forces HTTP long-polling (tests and networks that break WebSockets). */
function clientOptions(token: string): ClientOptions {
  const polling = new URLSearchParams(window.location.search).get('transport') === 'polling'
  // WebSocket first; where it cannot connect (proxies), long-polling.
  return { token, socket: polling ? { transports: ['polling'] } : { transports: ['websocket', 'polling'], tryAllTransports: true } }
}

/** Signed out: the sign-in page. Signed in: the chat, on one SDK client for as long as the session lasts. */
export function App() {
  const [initial] = useState(loadSession)
  const [session, setSession] = useState<Session | null>(initial.session)
  const [notice, setNotice] = useState(initial.expired ? 'Your sign-in has expired. Please sign in again.' : '')

  const signOut = useCallback((reason: string) => {
    saveSession(null)
    setSession(null)
    setNotice(reason)
  }, [])
  const signIn = useCallback((s: Session) => {
    saveSession(s)
    setNotice('')
    setSession(s)
  }, [])

  return (
    <>
      <TopBar session={session} onSignOut={() => signOut('You are signed out.')} />
      {session ? (
        // A new session is a new client (the key): the provider closes the old one.
        <SwitchboardProvider key={session.token} options={clientOptions(session.token)}>
          <ChatPage session={session} onSignOut={signOut} />
        </SwitchboardProvider>
      ) : (
        <SignIn notice={notice} onSignedIn={signIn} />
      )}
    </>
  )
}
