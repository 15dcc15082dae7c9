import { useState, type FormEvent } from 'react'
import { ROOM_ID_FORM_PATTERN, ROOM_ID_TITLE } from './room-id.ts'

export function JoinRoomForm({ onJoin }: { onJoin(roomId: string): void }) {
  const [id, setId] = useState('')
  function submit(e: FormEvent) {
    e.preventDefault()
    const roomId = id.trim()
    if (!roomId) return
    onJoin(roomId)
    setId('')
  }
  return (
    <form onSubmit={submit}>
      <label htmlFor="room-join-input">Join room by id</label>
      <div className="inline">
        <input
          id="room-join-input"
          data-testid="room-join-input"
          maxLength={128}
          pattern={ROOM_ID_FORM_PATTERN}
          title={ROOM_ID_TITLE}
          required
          value={id}
          onChange={(e) => setId(e.target.value)}
        />
        <button type="submit" data-testid="room-join-submit">
          Join
        </button>
      </div>
    </form>
  )
}
