import { useState, type FormEvent } from 'react'
import { SwitchboardProvider, useConnection, usePresence, useRoom } from '@switchboard/react'

/** Sign in with a dev token (a node in dev mode: `npm start`), then chat in one room. */
export function App() {
  const [token, setToken] = useState<string | null>(null)
  const [error, setError] = useState('')
  async function signIn(e: FormEvent<HTMLFormElement>) {
    e.preventDefault()
    const username = new FormData(e.currentTarget).get('username')
    const res = await fetch('/api/dev/token', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username }) })
    const body = await res.json()
    if (res.ok) setToken(body.token)
    else setError(body.message)
  }
  if (!token) {
    return (
      <form onSubmit={signIn}>
        <input name="username" placeholder="your name" required autoFocus /> <button>Sign in</button> {error}
      </form>
    )
  }
  // The provider creates the client, connects it and closes it on unmount (a new token: a new key).
  return (
    <SwitchboardProvider key={token} options={{ token }}>
      <Chat />
    </SwitchboardProvider>
  )
}

function Chat() {
  const connection = useConnection()
  const [roomId, setRoomId] = useState('lobby')
  return (
    <main>
      <p>
        {connection.me?.username} · {connection.status}
        {connection.error && ` · ${connection.error.code}`}
      </p>
      <label>
        room <input value={roomId} onChange={(e) => setRoomId(e.target.value)} />
      </label>
      {roomId && <Room key={roomId} roomId={roomId} />}
    </main>
  )
}

function Room({ roomId }: { roomId: string }) {
  const room = useRoom(roomId) // joins on mount, leaves on unmount; resyncs after every reconnect
  const { isOnline } = usePresence()
  const [text, setText] = useState('')
  function send(e: FormEvent) {
    e.preventDefault()
    if (!text.trim()) return
    void room.send(text).catch(() => {}) // kept in room.pending (and resent) until acked
    setText('')
  }
  return (
    <section>
      <p>{room.status}{room.error && ` · ${room.error.code}`}</p>
      <ul>
        {room.messages.map((m) => (
          <li key={m.id}>
            <b style={{ color: isOnline(m.userId) ? 'green' : 'gray' }}>{m.username}</b> {m.deletedAt ? <i>deleted</i> : m.text}
          </li>
        ))}
        {room.pending.map((p) => (
          <li key={p.clientMsgId} style={{ opacity: 0.5 }}>
            {p.text} ({p.status}{p.error && `: ${p.error.code}`})
          </li>
        ))}
      </ul>
      <form onSubmit={send}>
        <input value={text} onChange={(e) => setText(e.target.value)} placeholder="message" /> <button>Send</button>
      </form>
    </section>
  )
}
