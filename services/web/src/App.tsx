import { useCallback, useState } from 'react'
import { ChatPage } from './components/ChatPage.tsx'
import { SignIn } from './components/SignIn.tsx'
import { TopBar } from './components/TopBar.tsx'
import { loadSession, saveSession, type Session } from './session.ts'

/** Signed out: the sign-in page. Signed in: the chat, connected for as long as the session lasts. */
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
      {session ? <ChatPage key={session.token} session={session} onSignOut={signOut} /> : <SignIn notice={notice} onSignedIn={signIn} />}
    </>
  )
}
