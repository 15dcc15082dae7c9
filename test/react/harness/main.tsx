/**
 * A page for test/react/hooks.test.ts: mounts the hooks in React StrictMode (a development build,
 * so effects really run, are cleaned up and run again) and counts, from outside the hooks, what
 * they leave running: SDK clients connected and not closed, store subscriptions not removed,
 * room joins not left.
 */
import { StrictMode, useState } from 'react'
import { createRoot, type Root } from 'react-dom/client'
import { SwitchboardClient, type Store } from '@switchboard/client'
import { SwitchboardProvider, useConnection, useNotifications, usePresence, useRoom, useRooms } from '@switchboard/react'

const counts = { created: 0, connected: 0, closed: 0, subscriptions: 0, joins: 0, leaves: 0 }
const wrapped = new WeakSet<object>()

function countSubscriptions<T>(store: Store<T>): void {
  if (wrapped.has(store)) return
  wrapped.add(store)
  const subscribe = store.subscribe.bind(store)
  ;(store as { subscribe: Store<T>['subscribe'] }).subscribe = (fn) => {
    counts.subscriptions++
    const off = subscribe(fn)
    let done = false
    return () => {
      if (!done) counts.subscriptions--
      done = true
      off()
    }
  }
}

/** Counts a client once and every subscription to its stores. */
function track(c: SwitchboardClient): void {
  if (wrapped.has(c)) return
  wrapped.add(c)
  counts.created++
  for (const s of [c.connection, c.presence, c.notifications, c.rooms]) countSubscriptions(s as Store<unknown>)
}

const proto = SwitchboardClient.prototype as unknown as Record<string, (...args: unknown[]) => unknown>
const closed = new WeakSet<object>()
const connect = proto.connect
proto.connect = function (this: SwitchboardClient, ...args: unknown[]) {
  track(this)
  if (!closed.has(this) && !(this as unknown as { __connected?: boolean }).__connected) {
    ;(this as unknown as { __connected?: boolean }).__connected = true
    counts.connected++
  }
  return connect.apply(this, args)
}
const close = proto.close
proto.close = function (this: SwitchboardClient, ...args: unknown[]) {
  if (!closed.has(this)) {
    closed.add(this)
    counts.closed++
  }
  return close.apply(this, args)
}
const room = proto.room
proto.room = function (this: SwitchboardClient, ...args: unknown[]) {
  const h = room.apply(this, args) as { state: Store<unknown>; join(): Promise<void>; leave(o?: object): Promise<void> }
  if (!wrapped.has(h)) {
    wrapped.add(h)
    countSubscriptions(h.state)
    const join = h.join.bind(h)
    const leave = h.leave.bind(h)
    h.join = () => (counts.joins++, join())
    h.leave = (o?: object) => (counts.leaves++, leave(o))
  }
  return h
}

function Probe({ roomId }: { roomId: string | null }) {
  const conn = useConnection()
  const r = useRoom(roomId)
  const presence = usePresence()
  const notes = useNotifications()
  const rooms = useRooms()
  const [sent, setSent] = useState('')
  return (
    <div
      id="probe"
      data-status={conn.status}
      data-me={conn.me?.username ?? ''}
      data-room={r.roomId}
      data-room-status={r.status}
      data-online={presence.online.size}
      data-notes={notes.items.length}
      data-rooms={rooms.rooms.map((x) => `${x.id}:${x.unread}`).join(',')}
    >
      <ol>
        {r.messages.map((m) => (
          <li key={m.seq} data-seq={m.seq}>
            {m.text}
          </li>
        ))}
      </ol>
      <p id="sent">{sent}</p>
      <button id="send" onClick={() => void r.send('from the hooks').then((ok) => setSent(String(ok.seq)))}>
        send
      </button>
    </div>
  )
}

let root: Root | null = null
let given: SwitchboardClient | null = null
const harness = {
  counts,
  /** The provider creates the client (`options=`). */
  mountOwned(token: string, roomId: string | null) {
    root ??= createRoot(document.getElementById('root')!)
    root.render(
      <StrictMode>
        <SwitchboardProvider options={{ token }}>
          <Probe roomId={roomId} />
        </SwitchboardProvider>
      </StrictMode>,
    )
  },
  /** A client of the page's own (`client=`): the provider must not close it. */
  mountGiven(token: string, roomId: string | null) {
    given ??= new SwitchboardClient({ token })
    track(given)
    root ??= createRoot(document.getElementById('root')!)
    root.render(
      <StrictMode>
        <SwitchboardProvider client={given}>
          <Probe roomId={roomId} />
        </SwitchboardProvider>
      </StrictMode>,
    )
  },
  unmount() {
    root?.unmount()
    root = null
  },
  givenStatus: () => given?.connection.get().status ?? 'none',
  async closeGiven() {
    await given?.close()
    given = null
  },
}
;(window as unknown as { harness: typeof harness }).harness = harness
