/**
 * Shared pieces of the attack suite (issue 16): real nodes built in-process (services/chat/test/helpers.ts),
 * real socket.io-client, raw HTTP and raw WebSocket frames where a client library would refuse to
 * send the attack.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import { SignJWT } from 'jose'
import { io, type Socket } from 'socket.io-client'
import WebSocket from 'ws'
import { TEST_SECRET } from '../../services/chat/test/helpers.ts'

export * from '../../services/chat/test/helpers.ts'

/** SPEC §4 ack codes; §2's AUTH_* codes are allowed only where a token is checked (auth:refresh). */
export const ACK_CODES = new Set(['BAD_REQUEST', 'FORBIDDEN', 'NOT_FOUND', 'RATE_LIMITED', 'TOO_LARGE', 'UNAVAILABLE', 'INTERNAL'])
export const AUTH_CODES = new Set(['AUTH_REQUIRED', 'AUTH_INVALID', 'AUTH_EXPIRED'])

/** Asserts the SPEC §4 ack shape and returns `'ok'` or the error code. */
export function ackCode(res: unknown, what: string, opts: { auth?: boolean } = {}): string {
  assert.ok(res !== null && typeof res === 'object' && !Array.isArray(res), `${what}: ack is not an object: ${JSON.stringify(res)}`)
  const r = res as { status?: unknown; code?: unknown; error?: unknown }
  if (r.status === 'ok') return 'ok'
  assert.equal(r.status, 'error', `${what}: status must be ok or error: ${JSON.stringify(res)}`)
  assert.equal(typeof r.code, 'string', `${what}: error without code`)
  assert.equal(typeof r.error, 'string', `${what}: error without error text`)
  const code = r.code as string
  assert.ok(ACK_CODES.has(code) || (opts.auth === true && AUTH_CODES.has(code)), `${what}: code ${code} is not a SPEC code`)
  return code
}

/** The strings every string field is attacked with (SPEC §4: verbatim, or BAD_REQUEST). */
export const NASTY: readonly [string, string][] = [
  ['sql', "'; drop table messages; --"],
  ['percent', '100% _like_ %'],
  ['backslash', 'back\\slash \\\\ \\x00 \\u0000'],
  ['nul', 'nul\u0000byte'],
  ['lone high surrogate', 'high\ud800'],
  ['lone low surrogate', '\udc00low'],
  ['4-byte emoji', '😀🧑‍🚀𝄞'],
  ['rtl override', 'abc\u202Eevil.exe'],
  ['proto', '__proto__'],
  ['constructor', 'constructor'],
]

/** True when `s` holds U+0000 or an unpaired surrogate (which Postgres cannot store). */
export const unstorable = (s: string) => s.includes('\u0000') || LONE_SURROGATE.test(s)
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

export const secretKey = new TextEncoder().encode(TEST_SECRET)

/** An HS256 token with the test secret (sub, name and expiry as given). */
export function signToken(sub: string | undefined, claims: Record<string, unknown> = {}, exp: string | number = '1h'): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime(exp)
  if (sub !== undefined) jwt.setSubject(sub)
  return jwt.sign(secretKey)
}

export type Outcome = { connected: true; socket: Socket } | { connected: false; message: string; code: string }

/** Opens a real socket.io-client connection and reports whether the namespace let it in. */
export function tryConnect(url: string, namespace: string, opts: Parameters<typeof io>[1] = {}): Promise<Outcome> {
  const s = io(`${url}${namespace}`, { transports: ['websocket'], reconnection: false, forceNew: true, timeout: 5000, ...opts })
  return new Promise((resolve) => {
    s.once('connect', () => resolve({ connected: true, socket: s }))
    s.once('connect_error', (err: Error & { data?: { code?: string } }) => {
      s.disconnect()
      resolve({ connected: false, message: err.message, code: err.data?.code ?? '' })
    })
  })
}

/** A connection that must be refused: its `{message, code}`. */
export async function refused(url: string, namespace: string, opts: Parameters<typeof io>[1] = {}): Promise<{ message: string; code: string }> {
  const r = await tryConnect(url, namespace, opts)
  if (r.connected) {
    r.socket.disconnect()
    return { message: 'connected', code: 'connected' }
  }
  return { message: r.message, code: r.code }
}

/** Plain HTTP with a JSON body (string bodies are sent as they are); never throws on status. */
export async function httpJson(
  url: string,
  method: string,
  path: string,
  opts: { token?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const headers: Record<string, string> = { ...opts.headers }
  if (opts.token) headers.authorization = `Bearer ${opts.token}`
  let body: string | undefined
  if (opts.body !== undefined) {
    headers['content-type'] ??= 'application/json'
    body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body)
  }
  const res = await fetch(`${url}${path}`, { method, headers, body })
  const text = await res.text()
  let parsed: unknown = text
  try {
    parsed = JSON.parse(text)
  } catch {
    /* not JSON */
  }
  return { status: res.status, body: parsed, headers: res.headers }
}

/** Every message of a room through the HTTP history route (pages of 200), oldest first. */
export async function fullHistory(url: string, token: string, roomId: string): Promise<any[]> {
  const out: any[] = []
  let before: number | undefined
  for (;;) {
    const q = before === undefined ? '?limit=200' : `?limit=200&before=${before}`
    const res = await httpJson(url, 'GET', `/api/rooms/${encodeURIComponent(roomId)}/messages${q}`, { token })
    assert.equal(res.status, 200, `history of ${roomId}: ${JSON.stringify(res.body)}`)
    const page = res.body.messages as any[]
    out.push(...page)
    if (page.length === 0 || !res.body.hasMore) break
    before = page[page.length - 1].seq
  }
  return out.reverse()
}

/** Own property names of the built-in prototypes, to compare before and after an attack. */
export function prototypeSnapshot(): Record<string, string[]> {
  const protos: Record<string, object> = {
    Object: Object.prototype,
    Array: Array.prototype,
    Function: Function.prototype,
    String: String.prototype,
    Number: Number.prototype,
    Boolean: Boolean.prototype,
    Map: Map.prototype,
    Set: Set.prototype,
    Promise: Promise.prototype,
    Error: Error.prototype,
  }
  const out: Record<string, string[]> = Object.create(null)
  for (const [name, p] of Object.entries(protos)) out[name] = Reflect.ownKeys(p).map(String).sort()
  return out
}

/**
 * A raw Engine.IO/Socket.IO v4 client over `ws`: sends frames exactly as given (socket.io-client
 * would serialise, and refuse some, of what an attacker sends). Answers pings.
 */
export class RawSocket {
  private nextId = 1
  private readonly waiters = new Map<number, (args: unknown[]) => void>()
  readonly frames: string[] = []
  closed = false
  closeCode: number | undefined

  private constructor(
    readonly ws: WebSocket,
    readonly namespace: string,
  ) {
    ws.on('message', (data) => this.onFrame(String(data)))
    ws.on('close', (code) => {
      this.closed = true
      this.closeCode = code
    })
    ws.on('error', () => {})
  }

  /** Connects to `namespace` with `auth`; resolves once the CONNECT is answered. */
  static async open(url: string, namespace: string, auth: object, headers: Record<string, string> = {}): Promise<RawSocket> {
    const ws = new WebSocket(`${url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`, { headers })
    const raw = new RawSocket(ws, namespace)
    await new Promise<void>((resolve, reject) => {
      ws.once('error', reject)
      ws.once('message', () => resolve()) // the Engine.IO open packet
    })
    const connected = raw.waitFrame((f) => f.startsWith(`40${namespace},`) || f.startsWith(`44${namespace},`))
    ws.send(`40${namespace},${JSON.stringify(auth)}`)
    const f = await connected
    if (f.startsWith('44')) throw new Error(`refused: ${f}`)
    return raw
  }

  private readonly frameWaiters: { test: (f: string) => boolean; resolve: (f: string) => void }[] = []

  waitFrame(test: (f: string) => boolean, ms = 5000): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no matching frame')), ms)
      this.frameWaiters.push({ test, resolve: (f) => (clearTimeout(timer), resolve(f)) })
    })
  }

  private onFrame(f: string): void {
    if (f === '2') return void this.ws.send('3')
    this.frames.push(f)
    for (const [i, w] of this.frameWaiters.entries()) {
      if (w.test(f)) {
        this.frameWaiters.splice(i, 1)
        w.resolve(f)
        break
      }
    }
    const prefix = `43${this.namespace},`
    if (f.startsWith(prefix)) {
      const m = /^(\d+)(.*)$/s.exec(f.slice(prefix.length))
      if (m) {
        const w = this.waiters.get(Number(m[1]))
        this.waiters.delete(Number(m[1]))
        w?.(JSON.parse(m[2]) as unknown[])
      }
    }
  }

  /** Sends `42<nsp>,<id><argsJson>` with `argsJson` verbatim and resolves with the ack's first argument. */
  emitRaw(argsJson: string, ms = 5000): Promise<unknown> {
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ack for ${argsJson.slice(0, 80)}`)), ms)
      this.waiters.set(id, (args) => (clearTimeout(timer), resolve(args[0])))
      this.ws.send(`42${this.namespace},${id}${argsJson}`)
    })
  }

  close(): void {
    this.ws.close()
  }
}

/** An http.Agent whose connections leave from `localAddress` (another loopback address is another client). */
export const agentFrom = (localAddress: string) => new http.Agent({ localAddress })
