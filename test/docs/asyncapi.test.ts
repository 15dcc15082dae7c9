import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { DiagnosticSeverity, Parser, type AsyncAPIDocumentInterface } from '@asyncapi/parser'
import type { Socket } from 'socket.io-client'
import type { TSchema } from 'typebox'
import { Compile } from 'typebox/compile'
import { CONNECT_ERROR_CODES, ERROR_CODES, EVENTS, MAX_EMOJI, MAX_SYNC_ROOMS, ROOM_ID_PATTERN } from '../../packages/client/src/protocol.ts'
import * as payloads from '../../services/chat/src/domain/schemas.ts'
import { AnnouncePayload, KickPayload } from '../../services/chat/src/realtime/admin.handlers.ts'
import { chatClient, devToken, next, useIsolatedNode } from '../../services/chat/test/helpers.ts'

// docs/asyncapi.yaml (D170) against the protocol module and the server's TypeBox schemas: the
// same events per namespace and direction, nothing more, and the same client → server payloads.
// An event added to EVENTS (and so, at compile time, to the event maps) without the document fails here.

const root = fileURLToPath(new URL('../..', import.meta.url))
const read = (p: string) => readFileSync(`${root}/${p}`, 'utf8')

type Json = Record<string, any>
type Namespace = keyof typeof EVENTS

/** Each client → server event's TypeBox schema, as the server validates it. */
const SERVER_SCHEMAS: Record<Namespace, Record<string, TSchema>> = {
  '/chat': {
    'room:join': payloads.JoinPayload,
    'room:leave': payloads.LeavePayload,
    'chat:message': payloads.SendPayload,
    'chat:edit': payloads.EditPayload,
    'chat:delete': payloads.DeletePayload,
    'chat:react': payloads.ReactPayload,
    'chat:typing': payloads.TypingPayload,
    'chat:read': payloads.ReadPayload,
    'chat:sync': payloads.SyncPayload,
    'auth:refresh': payloads.RefreshPayload,
  },
  '/notifications': { 'auth:refresh': payloads.RefreshPayload },
  '/admin': { 'admin:kick': KickPayload, 'admin:announce': AnnouncePayload, 'auth:refresh': payloads.RefreshPayload },
}

/** A payload's object form: `room:join` also takes a bare room id (`oneOf`). */
function objectForm(schema: Json): Json {
  if (schema.type === 'object') return schema
  const object = (schema.oneOf as Json[] | undefined)?.find((s) => s.type === 'object')
  assert.ok(object, `an object form in ${JSON.stringify(schema).slice(0, 120)}`)
  return object
}

describe('docs/asyncapi.yaml', () => {
  let doc: AsyncAPIDocumentInterface
  /** namespace → direction → event name → { payload, ack } (every $ref resolved by the parser). */
  const described = new Map<string, { client: Map<string, { payload: Json; ack?: Json }>; server: Map<string, { payload: Json; ack?: Json }> }>()

  before(async () => {
    const { document, diagnostics } = await new Parser().parse(read('docs/asyncapi.yaml'))
    const problems = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error || d.severity === DiagnosticSeverity.Warning)
    assert.deepEqual(problems.map((d) => `${d.code}: ${d.message} at ${d.path.join('.')}`), [], 'no errors, no warnings')
    assert.ok(document)
    doc = document
    for (const op of doc.operations().all()) {
      const channels = op.channels().all()
      assert.equal(channels.length, 1, `${op.id()}: one channel`)
      const ns = channels[0].address()!
      if (!described.has(ns)) described.set(ns, { client: new Map(), server: new Map() })
      // The document describes the node: it receives what clients emit and sends the rest.
      const direction = op.action() === 'receive' ? 'client' : 'server'
      for (const message of op.messages().all()) {
        const name = message.name()!
        assert.ok(!described.get(ns)![direction].has(name), `${ns} ${direction} ${name} described once`)
        described.get(ns)![direction].set(name, { payload: message.payload()!.json() as Json, ack: op.extensions().get('x-ack')?.value() as Json | undefined })
      }
    }
  })

  it('is valid AsyncAPI 3.0 (@asyncapi/parser: no error, no warning)', () => {
    assert.equal(doc.version(), '3.0.0')
    assert.deepEqual(doc.channels().all().map((c) => c.address()).sort(), Object.keys(EVENTS).sort())
  })

  it('names exactly the events of EVENTS, per namespace and direction', () => {
    assert.deepEqual([...described.keys()].sort(), Object.keys(EVENTS).sort())
    for (const [ns, lists] of Object.entries(EVENTS)) {
      for (const direction of ['client', 'server'] as const) {
        assert.deepEqual([...(described.get(ns)?.[direction].keys() ?? [])].sort(), [...lists[direction]].sort(), `${ns} ${direction} → ${direction === 'client' ? 'server' : 'client'}`)
      }
    }
  })

  it('every channel message is used by an operation, every message is in its channel', () => {
    for (const channel of doc.channels().all()) {
      const ns = channel.address()!
      const inChannel = channel.messages().all().map((m) => m.name()!)
      const used = [...described.get(ns)!.client.keys(), ...described.get(ns)!.server.keys()]
      assert.deepEqual(inChannel.sort(), used.sort(), ns)
    }
  })

  it('every client → server event describes its ack: ok or AckError with the protocol error codes', () => {
    for (const [ns, { client }] of described) {
      for (const [name, { ack }] of client) {
        assert.ok(ack?.oneOf, `${ns} ${name}: x-ack`)
        const ok = (ack.oneOf as Json[]).find((s) => s.properties?.status?.const === 'ok')
        const error = (ack.oneOf as Json[]).find((s) => s.properties?.status?.const === 'error')
        assert.ok(ok && error, `${ns} ${name}: both ack forms`)
        assert.deepEqual(error.properties.code.enum, [...ERROR_CODES], `${ns} ${name}: ERROR_CODES`)
      }
    }
    for (const code of CONNECT_ERROR_CODES) assert.ok(doc.info().description()!.includes(code), `connect_error code ${code}`)
  })

  it("client → server payloads match the server's TypeBox schemas (property names, required, types, patterns)", () => {
    for (const [ns, events] of Object.entries(SERVER_SCHEMAS)) {
      const client = described.get(ns)!.client
      // admin:stats takes anything: it has no schema of its own.
      const withPayload = [...client.keys()].filter((n) => n !== 'admin:stats')
      assert.deepEqual(withPayload.sort(), Object.keys(events).sort(), `${ns}: a TypeBox schema per documented payload`)
      for (const [name, typebox] of Object.entries(events) as [string, Json][]) {
        const documented = objectForm(client.get(name)!.payload)
        const where = `${ns} ${name}`
        assert.deepEqual(Object.keys(documented.properties).sort(), Object.keys(typebox.properties).sort(), `${where}: property names`)
        assert.deepEqual([...(documented.required ?? [])].sort(), [...(typebox.required ?? [])].sort(), `${where}: required`)
        for (const [prop, server] of Object.entries(typebox.properties as Record<string, Json>)) {
          const mine = documented.properties[prop] as Json
          if (server.type) assert.equal(mine.type, server.type, `${where}.${prop}: type`)
          if (server.pattern) assert.equal(mine.pattern, server.pattern, `${where}.${prop}: pattern`)
          for (const k of ['minLength', 'maxLength', 'maxProperties'] as const) {
            if (mine[k] !== undefined) assert.equal(mine[k], server[k], `${where}.${prop}: ${k}`)
          }
        }
      }
    }
    // The protocol's limits, as the document states them.
    const schemas = doc.components().schemas()
    assert.equal((schemas.get('RoomId')!.json() as Json).pattern, ROOM_ID_PATTERN)
    assert.equal((schemas.get('ReactPayload')!.json() as Json).properties.emoji.maxLength, MAX_EMOJI)
    assert.equal((schemas.get('SyncPayload')!.json() as Json).properties.rooms.maxProperties, MAX_SYNC_ROOMS)
  })
})

/** True when `value` matches `schema` (TypeBox validates plain JSON Schema). */
const matches = (schema: Json, value: unknown) => Compile(schema as TSchema).Check(value)

/**
 * Paths in `value` that `schema` does not name (the document's objects are open, so a field the
 * node sends and the document lacks would pass validation): follows the matching `oneOf` branch,
 * array items, `properties` and `additionalProperties`.
 */
function undeclared(schema: Json, value: unknown, path = ''): string[] {
  if (schema.oneOf) {
    const branch = (schema.oneOf as Json[]).find((b) => matches(b, value))
    return branch ? undeclared(branch, value, path) : [`${path} (no branch)`]
  }
  if (Array.isArray(value)) return schema.items ? value.flatMap((v, i) => undeclared(schema.items, v, `${path}[${i}]`)) : []
  if (typeof value !== 'object' || value === null) return []
  return Object.entries(value).flatMap(([k, v]) => {
    const sub = (schema.properties as Json | undefined)?.[k] ?? (typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined)
    return sub ? undeclared(sub, v, `${path}.${k}`) : [`${path}.${k}`]
  })
}

describe('what a node sends matches docs/asyncapi.yaml', () => {
  const node = useIsolatedNode()
  let doc: AsyncAPIDocumentInterface
  /** `ns event` → its schema: `send` payloads, and the `x-ack` of `receive` operations. */
  const events = new Map<string, Json>()
  const acks = new Map<string, Json>()
  /** Everything seen: kind (`event` | `ack`), namespace, name, value. */
  const seen: { kind: 'event' | 'ack'; ns: string; name: string; value: unknown }[] = []

  before(async () => {
    doc = (await new Parser().parse(read('docs/asyncapi.yaml'))).document!
    for (const op of doc.operations().all()) {
      const ns = op.channels().all()[0].address()!
      for (const m of op.messages().all()) {
        if (op.action() === 'send') events.set(`${ns} ${m.name()}`, m.payload()!.json() as Json)
        else acks.set(`${ns} ${m.name()}`, op.extensions().get('x-ack')!.value() as Json)
      }
    }
  })

  /** A client on `ns` whose every incoming event is recorded. */
  async function client(token: string, ns: Namespace, auth?: Record<string, unknown>): Promise<Socket> {
    return chatClient(node.url, token, { namespace: ns, auth, setup: (s) => s.onAny((name: string, value: unknown) => void seen.push({ kind: 'event', ns, name, value })) })
  }
  /** Emits with an ack and records the answer. */
  async function call(socket: Socket, ns: Namespace, name: string, payload: unknown): Promise<any> {
    const value = await socket.timeout(5000).emitWithAck(name, payload)
    seen.push({ kind: 'ack', ns, name, value })
    return value
  }

  it('every event and ack of a session that uses them all', { timeout: 60_000 }, async () => {
    const ana = await devToken(node.url, 'spec-ana')
    const bob = await devToken(node.url, 'spec-bob')
    const ops = await (await fetch(`${node.url}/api/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'spec-ops', roles: ['admin'] }) })).json()
    const room = `spec-${Date.now().toString(36)}`
    // Ana's client takes `chat:messages` (as the SDK's does); bob's does not.
    const a = await client(ana.token, '/chat', { batches: true })
    const aNotes = await client(ana.token, '/notifications')
    const admin = await client(ops.token, '/admin')
    assert.equal((await call(a, '/chat', 'room:join', { roomId: room })).status, 'ok')
    let b = await client(bob.token, '/chat')
    const joined = next(a, 'room:user-joined')
    assert.equal((await call(b, '/chat', 'room:join', room)).status, 'ok')
    await joined

    const mention = next(aNotes, 'notification')
    const heard = next(a, 'chat:message')
    const sent = await call(b, '/chat', 'chat:message', { roomId: room, text: 'hi @spec-ana', clientMsgId: 'spec-1' })
    assert.equal(sent.status, 'ok')
    await Promise.all([mention, heard])
    // A burst right after: the room was written to a moment ago, so it gathers (DELIVERY_BATCH_MS)
    // and reaches ana as one chat:messages frame.
    const batch = next(a, 'chat:messages')
    for (const r of await Promise.all([1, 2, 3].map((i) => call(b, '/chat', 'chat:message', { roomId: room, text: `burst ${i}` })))) assert.equal(r.status, 'ok')
    assert.ok((await batch).messages.length >= 2)
    const mine = await call(a, '/chat', 'chat:message', { roomId: room, text: 'mine' })
    const changes = Promise.all(['chat:edited', 'chat:deleted', 'chat:reaction', 'chat:typing', 'chat:read'].map((e) => next(b, e)))
    await call(a, '/chat', 'chat:react', { roomId: room, messageId: sent.messageId, emoji: '👍', on: true })
    await call(a, '/chat', 'chat:edit', { roomId: room, messageId: mine.messageId, text: 'mine, edited' })
    await call(a, '/chat', 'chat:delete', { roomId: room, messageId: mine.messageId })
    await call(a, '/chat', 'chat:typing', { roomId: room, isTyping: true })
    await call(a, '/chat', 'chat:read', { roomId: room, seq: sent.seq })
    await changes
    const synced = await call(a, '/chat', 'chat:sync', { rooms: { [room]: { lastSeq: 0, version: 0 } } })
    assert.equal(synced.rooms[room].length, 5)
    // An error ack, validated against the same x-ack.
    assert.equal((await call(a, '/chat', 'chat:message', { roomId: room })).code, 'BAD_REQUEST')
    for (const [socket, ns] of [[a, '/chat'], [aNotes, '/notifications'], [admin, '/admin']] as const) {
      assert.equal((await call(socket, ns, 'auth:refresh', { token: ns === '/admin' ? ops.token : ana.token })).status, 'ok')
    }

    const announced = next(a, 'admin:announce')
    assert.equal((await call(admin, '/admin', 'admin:announce', { text: 'spec announcement' })).status, 'ok')
    await announced
    assert.equal((await call(admin, '/admin', 'admin:stats', {})).status, 'ok')
    assert.equal((await call(admin, '/admin', 'admin:kick', { userId: 'nobody-at-all' })).status, 'ok')

    // Presence: bob's last socket goes, then comes back (presence:list to his new socket), then leaves the room.
    const offline = next(a, 'presence:offline', (u: any) => u.userId === bob.userId, 10_000)
    b.disconnect()
    await offline
    const online = next(a, 'presence:online', (u: any) => u.userId === bob.userId, 10_000)
    let list: Promise<unknown> | undefined
    b = await chatClient(node.url, bob.token, { setup: (s) => void (list = next(s, 'presence:list')) })
    seen.push({ kind: 'event', ns: '/chat', name: 'presence:list', value: await list })
    await online
    assert.equal((await call(b, '/chat', 'room:join', room)).status, 'ok')
    const left = next(a, 'room:user-left')
    assert.equal((await call(b, '/chat', 'room:leave', { roomId: room })).status, 'ok')
    await left

    // Each thing seen is documented for its namespace and matches its schema, with no field the schema lacks.
    for (const { kind, ns, name, value } of seen) {
      const schema = (kind === 'event' ? events : acks).get(`${ns} ${name}`)
      assert.ok(schema, `${kind} ${ns} ${name} is documented`)
      assert.ok(matches(schema, value), `${kind} ${ns} ${name} matches its schema: ${JSON.stringify(value).slice(0, 300)}`)
      assert.deepEqual(undeclared(schema, value), [], `${kind} ${ns} ${name}: fields the document lacks`)
    }
    // And the session used them all: every server → client event and every ack of EVENTS.
    for (const [ns, lists] of Object.entries(EVENTS)) {
      for (const name of lists.server) assert.ok(seen.some((x) => x.kind === 'event' && x.ns === ns && x.name === name), `saw ${ns} ${name}`)
      for (const name of lists.client) assert.ok(seen.some((x) => x.kind === 'ack' && x.ns === ns && x.name === name), `acked ${ns} ${name}`)
    }
  })
})

describe('docs/protocol.md', () => {
  const text = read('docs/protocol.md')
  /** The part of the reference about one namespace: its heading up to the next `## `. */
  const section = (heading: string) => {
    const start = text.indexOf(`\n## ${heading}`)
    assert.ok(start >= 0, `section ${heading}`)
    const end = text.indexOf('\n## ', start + 4)
    return text.slice(start, end < 0 ? undefined : end)
  }

  it('names every event in its namespace section, every error code, and links the machine-readable documents', () => {
    const sections: Record<Namespace, string> = { '/chat': section('/chat events'), '/notifications': section('/notifications'), '/admin': section('/admin') }
    for (const [ns, lists] of Object.entries(EVENTS) as [Namespace, (typeof EVENTS)[Namespace]][]) {
      for (const name of [...lists.client, ...lists.server]) assert.ok(sections[ns].includes(`\`${name}\``), `${ns}: ${name}`)
    }
    for (const code of [...ERROR_CODES, ...CONNECT_ERROR_CODES]) assert.ok(text.includes(`\`${code}\``), code)
    for (const link of ['asyncapi.yaml', '../packages/client/README.md', '../packages/react']) assert.ok(text.includes(`](${link}`), link)
  })
})
