import { PresenceDot } from './PresenceDot.tsx'

/** Members of the room who are online now; anyone else can be messaged directly from here. */
export function OnlineUsers({ users, me, onDirect }: { users: readonly [userId: string, username: string][]; me: string; onDirect(userId: string): void }) {
  const here = [...users].sort(([a, an], [b, bn]) => (a === me ? -1 : b === me ? 1 : an.localeCompare(bn)))
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
