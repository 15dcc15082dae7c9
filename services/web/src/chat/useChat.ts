import { useEffect, useState, useSyncExternalStore } from 'react'
import type { Session } from '../session.ts'
import { ChatStore, type ChatState } from './store.ts'

/** `?transport=polling` forces HTTP long-polling (tests and networks that break WebSockets). */
export const transportFromUrl = (): 'auto' | 'polling' =>
  new URLSearchParams(window.location.search).get('transport') === 'polling' ? 'polling' : 'auto'

/** A connected store for this session, closed when the session ends or the component goes. */
export function useChatStore(session: Session, onSignOut: (reason: string) => void): ChatStore | null {
  const [store, setStore] = useState<ChatStore | null>(null)
  useEffect(() => {
    const s = new ChatStore(session, { transport: transportFromUrl(), onSignOut })
    s.start()
    setStore(s)
    return () => s.close()
  }, [session, onSignOut])
  return store
}

/** The store's current state; re-renders on every change. */
export function useChat(store: ChatStore): ChatState {
  return useSyncExternalStore(store.subscribe, store.getState)
}
