import http from 'node:http'
import { SwitchboardClient, type ClientOptions, type Message, type Store } from '../../packages/client/src/index.ts'
import { sourceAddress } from '../cluster/helpers.ts'

/** A dev token for `username` (optionally with roles), straight from `url`. */
export async function mintToken(url: string, username: string, roles: string[] = []): Promise<{ token: string; userId: string }> {
  const res = await fetch(`${url}/api/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(roles.length ? { username, roles } : { username }) })
  if (!res.ok) throw new Error(`dev token ${res.status}: ${await res.text()}`)
  return (await res.json()) as { token: string; userId: string }
}

const agents = new Map<number, http.Agent>()
/** keep-alive agent bound to 127.0.<octet>.1 (nginx ip_hash keys on the source address). */
export function agentFor(octet: number): http.Agent {
  let a = agents.get(octet)
  if (!a) agents.set(octet, (a = new http.Agent({ localAddress: sourceAddress(octet), keepAlive: true })))
  return a
}

/**
 * A `fetch` whose connections leave from 127.0.<octet>.1 (Node's own fetch cannot bind a source
 * address without undici's Agent): node:http underneath, bodies (JSON, FormData) serialised by
 * the platform's Request. `null`: no source address and no keep-alive (each socket closes after
 * its answer).
 */
export function boundFetch(octet: number | null): typeof fetch {
  return async (input, init) => {
    const req = new Request(input, init)
    const body = req.body ? Buffer.from(await req.arrayBuffer()) : undefined
    const headers: Record<string, string> = {}
    req.headers.forEach((v, k) => (headers[k] = v))
    if (body) headers['content-length'] = String(body.length)
    return new Promise<Response>((resolve, reject) => {
      const r = http.request(req.url, { method: req.method, headers, agent: octet === null ? false : agentFor(octet) }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const h = new Headers()
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h.set(k, v)
          const status = res.statusCode ?? 500
          resolve(new Response(status === 204 || status === 304 ? null : Buffer.concat(chunks), { status, headers: h }))
        })
        res.on('error', reject)
      })
      r.on('error', reject)
      r.end(body)
    })
  }
}

export function destroyAgents(): void {
  for (const a of agents.values()) a.destroy()
  agents.clear()
}

const made: SwitchboardClient[] = []

/**
 * An SDK client for `username` whose token provider mints a new dev token each time it is asked;
 * with `octet`, every connection (WebSocket, polling, fetch) leaves from 127.0.<octet>.1.
 */
export async function sdkClient(
  url: string,
  username: string,
  opts: { octet?: number; roles?: string[]; client?: Partial<ClientOptions>; connect?: boolean } = {},
): Promise<{ client: SwitchboardClient; userId: string; tokens: () => number }> {
  const first = await mintToken(url, username, opts.roles)
  let minted = 0
  const socket: ClientOptions['socket'] = {
    transports: ['websocket'],
    reconnectionDelay: 100,
    reconnectionDelayMax: 1000,
    ...(opts.octet !== undefined ? ({ localAddress: sourceAddress(opts.octet), agent: agentFor(opts.octet) } as object) : {}),
    ...opts.client?.socket,
  }
  const client = new SwitchboardClient({
    url,
    token: async () => {
      minted++
      return minted === 1 ? first.token : (await mintToken(url, username, opts.roles)).token
    },
    ...(opts.octet !== undefined ? { fetch: boundFetch(opts.octet) } : {}),
    ...opts.client,
    socket,
  })
  made.push(client)
  if (opts.connect !== false) client.connect()
  return { client, userId: first.userId, tokens: () => minted }
}

export async function closeClients(): Promise<void> {
  await Promise.all(made.splice(0).map((c) => c.close()))
  destroyAgents()
}

/** Resolves with the store's value once `pred` holds (checked on every change), else rejects after `ms`. */
export function until<T>(store: Store<T>, pred: (v: T) => boolean, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    if (pred(store.get())) return resolve(store.get())
    const timer = setTimeout(() => {
      off()
      reject(new Error(`timed out after ${ms} ms waiting for ${what}; last: ${JSON.stringify(store.get(), replacer).slice(0, 1500)}`))
    }, ms)
    const off = store.subscribe(() => {
      if (!pred(store.get())) return
      clearTimeout(timer)
      off()
      resolve(store.get())
    })
  })
}

const replacer = (_k: string, v: unknown) => (v instanceof Map ? Object.fromEntries(v) : v)

/** What a message is, for comparing views: every stored field that the SDK must reproduce. */
export function essence(m: Message) {
  const reactions: Record<string, string[]> = {}
  for (const k of Object.keys(m.reactions ?? {}).sort()) reactions[k] = [...m.reactions![k]].sort()
  return { id: m.id, seq: m.seq, version: m.version, userId: m.userId, text: m.text, editedAt: m.editedAt ?? null, deletedAt: m.deletedAt ?? null, reactions }
}

/** Every message of a room as the server's database has it (`GET /api/rooms/:id/messages`, paged), in seq order. */
export async function storedMessages(url: string, token: string, roomId: string, f: typeof fetch = fetch): Promise<Message[]> {
  const out: Message[] = []
  let before: number | undefined
  for (;;) {
    const q = before ? `?before=${before}&limit=200` : '?limit=200'
    const res = await f(`${url}/api/rooms/${encodeURIComponent(roomId)}/messages${q}`, { headers: { authorization: `Bearer ${token}` } })
    if (!res.ok) throw new Error(`history ${res.status}: ${await res.text()}`)
    const page = (await res.json()) as { messages: Message[]; hasMore: boolean }
    out.push(...page.messages)
    if (!page.hasMore || page.messages.length === 0) break
    before = page.messages[page.messages.length - 1].seq
  }
  return out.sort((a, b) => a.seq - b.seq)
}
