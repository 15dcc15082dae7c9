import { createContext, useContext, useEffect, useRef, useState, type ReactNode } from 'react'
import { SwitchboardClient, type ClientOptions } from '@switchboard/client'

const ClientContext = createContext<SwitchboardClient | null>(null)

/** Props of {@link SwitchboardProvider}: a client you own, or the options for one it owns. */
export type SwitchboardProviderProps =
  | {
      /** A client you created: the provider connects it (idempotent) and never closes it. */
      client: SwitchboardClient
      options?: never
      children?: ReactNode
      /** Shown until the client exists (only with `options`). */
      fallback?: ReactNode
    }
  | {
      /**
       * Options for a client the provider creates, connects and closes. Read once, when the
       * provider mounts: give the provider a `key` (the token, the user id) to start over with
       * other options.
       */
      options: ClientOptions
      client?: never
      children?: ReactNode
      /** Rendered until the client is created (the first effect), `null` by default. */
      fallback?: ReactNode
    }

/**
 * Makes a {@link SwitchboardClient} available to the hooks below it.
 *
 * With `options`, the client is created and connected in an effect and closed by its cleanup,
 * so React StrictMode (which mounts, unmounts and mounts again in development) leaves exactly one
 * client running and nothing behind after unmount. Children render once the client exists.
 *
 * @example
 * ```tsx
 * <SwitchboardProvider key={token} options={{ token }}>
 *   <Chat />
 * </SwitchboardProvider>
 * ```
 */
export function SwitchboardProvider(props: SwitchboardProviderProps) {
  const given = props.client ?? null
  const options = useRef(props.options)
  const [owned, setOwned] = useState<SwitchboardClient | null>(null)

  useEffect(() => {
    if (given) {
      given.connect()
      return
    }
    const opts = options.current
    if (!opts) return
    const c = new SwitchboardClient(opts)
    c.connect()
    setOwned(c)
    return () => {
      setOwned((cur) => (cur === c ? null : cur))
      void c.close()
    }
  }, [given])

  const client = given ?? owned
  if (!client) return <>{props.fallback ?? null}</>
  return <ClientContext.Provider value={client}>{props.children}</ClientContext.Provider>
}

/**
 * The client of the nearest {@link SwitchboardProvider}.
 * @throws Error when there is no provider above.
 */
export function useClient(): SwitchboardClient {
  const client = useContext(ClientContext)
  if (!client) throw new Error('useClient: no <SwitchboardProvider> above this component')
  return client
}
