import type { ChatState, RoomView } from '../chat/store.ts'
import { PresenceDot } from './PresenceDot.tsx'

/** Members of the room who are online now; anyone else can be messaged directly from here. */
export function OnlineUsers({ view, state, onDirect }: { view: RoomView; state: ChatState; onDirect(userId: string): void }) {
  const me = state.me.userId
  const here = [...state.online].filter(([userId]) => userId === me || view.members.has(userId))
  here.sort(([a, an], [b, bn]) => (a === me ? -1 : b === me ? 1 : an.localeCompare(bn)))
  return (
    <ul className="online-users" data-testid="online-users" aria-label="Online in this room">
      {here.map(([userId, username]) => (
        <li key={userId} data-user-id={userId}>
          <PresenceDot userId={userId} online />
          {userId === me ? (
            `${username} (you)`
          ) : (
            <button type="button" className="link" data-testid="dm" onClick={() => onDirect(userId)} title={`Message ${username} directly`}>
              {username}
            </button>
          )}
        </li>
      ))}
    </ul>
  )
}
