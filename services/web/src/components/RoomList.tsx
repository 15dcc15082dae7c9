import type { ChatState, ChatStore } from '../chat/store.ts'

/** My rooms with unread counts; rooms opened in this session but not yet listed come last. */
export function RoomList({ store, state }: { store: ChatStore; state: ChatState }) {
  const listed = new Set(state.rooms.map((r) => r.id))
  const extra = [...state.views.keys()].filter((id) => !listed.has(id))
  const items = [
    ...state.rooms.map((r) => ({ id: r.id, private: r.private || r.id.startsWith('dm:'), unread: r.unread })),
    ...extra.map((id) => ({ id, private: id.startsWith('dm:'), unread: 0 })),
  ]
  if (items.length === 0) {
    return (
      <ul className="room-list" data-testid="room-list">
        <li className="empty">No rooms yet. Join or create one below.</li>
      </ul>
    )
  }
  return (
    <ul className="room-list" data-testid="room-list">
      {items.map((r) => {
        const current = r.id === state.openRoomId
        return (
          <li key={r.id}>
            <button
              type="button"
              className="room-btn"
              data-testid="room-item"
              data-room-id={r.id}
              title={r.id}
              aria-current={current ? 'true' : undefined}
              onClick={() => store.openRoom(r.id)}
            >
              <span className="room-name">{store.roomTitle(r.id)}</span>
              {r.private && <span className="tag">private</span>}
              {r.unread > 0 && !current && (
                <span className="badge" data-testid="unread" aria-label={`${r.unread} unread`}>
                  {r.unread}
                </span>
              )}
            </button>
          </li>
        )
      })}
    </ul>
  )
}
