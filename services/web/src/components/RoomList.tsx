import type { Notification } from '@switchboard/client'

export interface RoomListItem {
  id: string
  title: string
  private: boolean
  unread: number
  /** The newest DM or mention in it, not yet seen. */
  note?: Notification
}

/** My rooms with unread counts and the line of a new DM or mention; rooms opened in this session but not yet listed come last. */
export function RoomList({ items, openRoomId, onOpen, loading = false }: { items: readonly RoomListItem[]; openRoomId: string | null; onOpen(roomId: string): void; loading?: boolean }) {
  if (items.length === 0 && loading) {
    return (
      <ul className="room-list" data-testid="room-list" aria-busy="true">
        <li className="empty" data-testid="rooms-loading">
          Loading your rooms…
        </li>
      </ul>
    )
  }
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
        const current = r.id === openRoomId
        const note = !current ? r.note : undefined
        return (
          <li key={r.id}>
            <button
              type="button"
              className="room-btn"
              data-testid="room-item"
              data-room-id={r.id}
              title={r.id}
              aria-current={current ? 'true' : undefined}
              onClick={() => onOpen(r.id)}
            >
              <span className="room-line">
                <span className="room-name">{r.title}</span>
                {r.private && <span className="tag">private</span>}
                {r.unread > 0 && !current && (
                  <span className="badge" data-testid="unread" aria-label={`${r.unread} unread`}>
                    {r.unread}
                  </span>
                )}
              </span>
              {note && (
                <span className="room-note" data-testid="room-note" data-type={note.type}>
                  {note.type === 'mention' ? `${note.from.username} mentioned you: ` : note.type === 'dm' ? `${note.from.username}: ` : `${note.from.username} added you`}
                  {note.text ?? ''}
                </span>
              )}
            </button>
          </li>
        )
      })}
    </ul>
  )
}
