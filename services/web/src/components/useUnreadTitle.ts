import { useEffect, useSyncExternalStore } from 'react'

export const APP_TITLE = 'Switchboard'

const onVisibility = (fn: () => void) => {
  document.addEventListener('visibilitychange', fn)
  return () => document.removeEventListener('visibilitychange', fn)
}
/** `document.hidden`, re-rendering when it changes. */
export const useDocumentHidden = (): boolean => useSyncExternalStore(onVisibility, () => document.hidden)

/** The tab's title carries the unread count: "(3) Switchboard"; plain again when none (and on sign-out). */
export function useUnreadTitle(unread: number): void {
  useEffect(() => {
    document.title = unread > 0 ? `(${unread}) ${APP_TITLE}` : APP_TITLE
  }, [unread])
  useEffect(() => () => void (document.title = APP_TITLE), [])
}
