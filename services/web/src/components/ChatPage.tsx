import { useChat, useChatStore } from '../chat/useChat.ts'
import type { ChatStore } from '../chat/store.ts'
import type { Session } from '../session.ts'
import { ConnectionBanner, ErrorLine } from './StatusLines.tsx'
import { RoomPanel } from './RoomPanel.tsx'
import { Sidebar } from './Sidebar.tsx'

/** The signed-in app: one store (one /chat connection) per session. */
export function ChatPage({ session, onSignOut }: { session: Session; onSignOut(reason: string): void }) {
  const store = useChatStore(session, onSignOut)
  return store ? <ChatView store={store} /> : null
}

function ChatView({ store }: { store: ChatStore }) {
  const state = useChat(store)
  return (
    <>
      <ConnectionBanner connection={state.connection} attempt={state.attempt} connectError={state.connectError} />
      <ErrorLine error={state.error} onDismiss={() => store.dismissError()} />
      {/* On narrow screens one pane at a time: the room when one is open, else the room list. */}
      <main className={state.openRoomId ? 'chat chat--room-open' : 'chat'} data-testid="chat" data-connection={state.connection}>
        <Sidebar store={store} state={state} />
        <RoomPanel key={state.openRoomId ?? ''} store={store} state={state} />
      </main>
    </>
  )
}
