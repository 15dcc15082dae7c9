import type { ReactNode } from 'react'
import { CreateRoomForm } from './CreateRoomForm.tsx'
import { JoinRoomForm } from './JoinRoomForm.tsx'

export function Sidebar({
  list,
  onJoin,
  onCreate,
}: {
  list: ReactNode
  onJoin(roomId: string): void
  onCreate(input: { name: string; id?: string; private?: boolean }): Promise<boolean>
}) {
  return (
    <aside className="sidebar" aria-label="Rooms">
      <h2>Rooms</h2>
      {list}
      <section className="card" aria-label="Join or create a room">
        <JoinRoomForm onJoin={onJoin} />
        <CreateRoomForm onCreate={onCreate} />
      </section>
    </aside>
  )
}
