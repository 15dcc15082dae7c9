import { useState, type FormEvent } from 'react'
import { ROOM_ID_FORM_PATTERN, ROOM_ID_TITLE } from './room-id.ts'

/** `POST /api/rooms`: a name, an optional id, public or private. */
export function CreateRoomForm({ onCreate }: { onCreate(input: { name: string; id?: string; private?: boolean }): Promise<boolean> }) {
  const [name, setName] = useState('')
  const [id, setId] = useState('')
  const [isPrivate, setPrivate] = useState(false)
  const [busy, setBusy] = useState(false)

  async function submit(e: FormEvent) {
    e.preventDefault()
    if (!name.trim()) return
    setBusy(true)
    const ok = await onCreate({ name: name.trim(), ...(id.trim() ? { id: id.trim() } : {}), ...(isPrivate ? { private: true } : {}) })
    setBusy(false)
    if (ok) {
      setName('')
      setId('')
      setPrivate(false)
    }
  }

  return (
    <form onSubmit={submit} className="create-form">
      <label htmlFor="room-create-name">New room name</label>
      <input id="room-create-name" data-testid="room-create-name" maxLength={100} required value={name} onChange={(e) => setName(e.target.value)} />
      <label htmlFor="room-create-id">Room id (optional)</label>
      <input
        id="room-create-id"
        data-testid="room-create-id"
        maxLength={128}
        pattern={ROOM_ID_FORM_PATTERN}
        title={ROOM_ID_TITLE}
        value={id}
        onChange={(e) => setId(e.target.value)}
      />
      <label className="check">
        <input type="checkbox" data-testid="room-create-private" checked={isPrivate} onChange={(e) => setPrivate(e.target.checked)} /> Private
      </label>
      <button type="submit" data-testid="room-create-submit" disabled={busy}>
        Create room
      </button>
    </form>
  )
}
