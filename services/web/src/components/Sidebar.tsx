import type { ChatState, ChatStore } from '../chat/store.ts'
import { CreateRoomForm } from './CreateRoomForm.tsx'
import { JoinRoomForm } from './JoinRoomForm.tsx'
import { RoomList } from './RoomList.tsx'

export function Sidebar({ store, state }: { store: ChatStore; state: ChatState }) {
  return (
    <aside className="sidebar" aria-label="Rooms">
      <h2>Rooms</h2>
      <RoomList store={store} state={state} />
      <section className="card" aria-label="Join or create a room">
        <JoinRoomForm onJoin={(id) => store.openRoom(id)} />
        <CreateRoomForm onCreate={(input) => store.createRoom(input)} />
      </section>
    </aside>
  )
}
