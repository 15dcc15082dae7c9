import { useEffect } from 'react'

export const APP_TITLE = 'Switchboard'

/** The tab's title carries the unread count: "(3) Switchboard"; plain again when none (and on sign-out). */
export function useUnreadTitle(unread: number): void {
  useEffect(() => {
    document.title = unread > 0 ? `(${unread}) ${APP_TITLE}` : APP_TITLE
  }, [unread])
  useEffect(() => () => void (document.title = APP_TITLE), [])
}
