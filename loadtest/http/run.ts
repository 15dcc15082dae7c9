import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { SignJWT } from 'jose'
import { io } from 'socket.io-client'
import { table, writeJson } from '../lib/report.ts'

export interface HttpResult {
  label: string
  url: string
  connections: number
  durationSec: number
  requests: number
  reqPerSec: number
  latencyMs: { p50: number; p90: number; p99: number; max: number }
  non2xx: number
  errors: number
}

/** Runs autocannon against one URL and returns the figures we report. */
export async function runHttp(o: { label: string; url: string; connections?: number; durationSec?: number; headers?: Record<string, string> }): Promise<HttpResult> {
  const r = await autocannon({ url: o.url, connections: o.connections ?? 50, duration: o.durationSec ?? 10, headers: o.headers, pipelining: 1 })
  return {
    label: o.label,
    url: o.url,
    connections: o.connections ?? 50,
    durationSec: o.durationSec ?? 10,
    requests: r.requests.total,
    reqPerSec: Math.round(r.requests.average),
    latencyMs: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, max: r.latency.max },
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
  }
}

export function formatHttp(results: HttpResult[]): string {
  return table(
    ['target', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'requests', 'non-2xx', 'errors'],
    results.map((r) => [r.label, r.reqPerSec, r.latencyMs.p50, r.latencyMs.p90, r.latencyMs.p99, r.latencyMs.max, r.requests, r.non2xx, r.errors]),
  )
}

/** Signs a token with the node's HS256 secret (the load test's own user). */
export async function loadToken(secret: string, sub = 'lt-http'): Promise<string> {
  return new SignJWT({ name: sub }).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime('2h').sign(new TextEncoder().encode(secret))
}

/** Creates `roomId` with `count` real messages through the socket API (for the history endpoint). */
export async function seedRoom(baseUrl: string, token: string, roomId: string, count: number): Promise<void> {
  const s = io(`${baseUrl}/chat`, { auth: { token }, transports: ['websocket'], forceNew: true, reconnection: false })
  await new Promise<void>((resolve, reject) => (s.once('connect', resolve), s.once('connect_error', reject)))
  const join = (await s.timeout(10_000).emitWithAck('room:join', roomId)) as { status: string; lastSeq: number }
  for (let i = join.lastSeq; i < count; i++) {
    const r = (await s.timeout(10_000).emitWithAck('chat:message', { roomId, text: `history message ${i} `.padEnd(128, '.') })) as { status: string; code?: string }
    if (r.status !== 'ok') throw new Error(`seed: ${r.code} (raise RATE_LIMIT_MESSAGES for the load test)`)
  }
  s.disconnect()
}

// CLI: npm run loadtest:http -- --url http://127.0.0.1:3000 [--jwt-secret S] [--baseline http://127.0.0.1:3100]
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values: a } = parseArgs({
    options: {
      url: { type: 'string', default: 'http://127.0.0.1:3000' },
      baseline: { type: 'string' },
      'jwt-secret': { type: 'string', default: process.env.JWT_SECRET },
      connections: { type: 'string', default: '50' },
      duration: { type: 'string', default: '10' },
      messages: { type: 'string', default: '200' },
      out: { type: 'string' },
    },
  })
  let token: string
  if (a['jwt-secret']) token = await loadToken(a['jwt-secret'])
  else {
    const res = await fetch(`${a.url}/api/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"username":"lt-http"}' })
    if (!res.ok) throw new Error('no --jwt-secret and dev tokens are off')
    token = ((await res.json()) as { token: string }).token
  }
  const room = 'lt-history'
  await seedRoom(a.url!, token, room, Number(a.messages))
  const opts = { connections: Number(a.connections), durationSec: Number(a.duration) }
  const results = [
    await runHttp({ label: 'switchboard /healthz', url: `${a.url}/healthz`, ...opts }),
    await runHttp({ label: `switchboard history (${room}, 50/page)`, url: `${a.url}/api/rooms/${room}/messages?limit=50`, headers: { authorization: `Bearer ${token}` }, ...opts }),
  ]
  if (a.baseline) {
    results.push(await runHttp({ label: 'bare Fastify /healthz', url: `${a.baseline}/healthz`, ...opts }))
    results.push(await runHttp({ label: 'bare Fastify static 50 messages', url: `${a.baseline}/static-history`, ...opts }))
  }
  console.log(formatHttp(results))
  const out = a.out ?? `loadtest/results/http-${new Date().toISOString().replace(/[:.]/g, '-')}.json`
  writeJson(out, results)
  console.log(`report: ${out}`)
}
