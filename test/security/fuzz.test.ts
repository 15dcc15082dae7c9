/**
 * Attack suite, property-based fuzz (fast-check): for every /chat client event, 1,000 random and
 * mutated payloads (wrong types, missing and extra fields, huge and negative numbers, NaN-ish
 * strings, unicode junk, deep nesting), sent with an ack over real sockets. Asserts: the node
 * never crashes, every ack has the SPEC §4 shape and is never INTERNAL, no socket is dropped
 * for a payload, and nothing malformed is stored (history gap-free, every row well-formed).
 * Prints a summary table at the end.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import type { Socket } from 'socket.io-client'
import { ACK_CODES, AUTH_CODES, chatClient, fullHistory, httpJson, signToken, unstorable, useIsolatedNode } from './helpers.ts'

const EVENTS = ['room:join', 'room:leave', 'chat:message', 'chat:edit', 'chat:delete', 'chat:react', 'chat:typing', 'chat:read', 'chat:sync', 'auth:refresh'] as const
type EventName = (typeof EVENTS)[number]
const RUNS = 100
const BATCH = 10 // payloads per run, sent at once: RUNS × BATCH = 1,000 per event
const ROOMS = ['fz-a', 'fz-b']

const junkChar = fc.constantFrom('\u0000', '\ud800', '\udc00', '\u202e', '\ufeff', '😀', "'", '"', '%', '\\', '\n', 'a', 'Z', '-', ':')
const junkString = fc.oneof(
  fc.string({ unit: junkChar, maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom('', ' ', 'NaN', 'Infinity', '-Infinity', '-0', '1e400', 'null', 'undefined', 'true', '[]', '{}', '__proto__', 'constructor', 'prototype', "'; drop table messages; --", '%00', 'x'.repeat(6000)),
)
/** What an error text must never show: stack frames, SQL, driver and library internals. */
const LEAKY = /\bat .+:\d+|\.ts\b|node_modules|\bselect\b.+\bfrom\b|\binsert into\b|\bviolates\b|\brelation\b|SQLSTATE|TypeError|ReferenceError|Cannot read prop|undefined is not/i
const deep = (n: number): unknown => (n === 0 ? 1 : [deep(n - 1)])
const junkValue: fc.Arbitrary<unknown> = fc.oneof(
  junkString,
  fc.integer(),
  fc.double(), // NaN and ±Infinity travel as null over JSON
  fc.constantFrom(-1, 0, 1.5, -0, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 2, 1e308, -1e308, 2 ** 31, 2 ** 53),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 5 }),
  fc.dictionary(junkString, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 5 }),
  fc.constant(deep(300)),
  fc.constant(JSON.parse('{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}}}')),
)

describe('property-based fuzz of every /chat event', () => {
  const node = useIsolatedNode({ RATE_LIMIT_MESSAGES: '1000000', RATE_LIMIT_JOINS: '1000000', RATE_LIMIT_SYNCS: '1000000', TYPING_THROTTLE_MS: '0' })
  const ids: string[] = []
  const tokens: string[] = []
  const sockets: Socket[] = []
  const stats = new Map<string, Map<string, number>>()
  let dropped = 0
  let crashes = 0
  let invalidRows = 0
  const onCrash = () => void crashes++
  /** Every fuzz socket back in the fuzz rooms (a fuzzed room:leave may have taken it out). */
  const rejoin = () => Promise.all(sockets.flatMap((s) => ROOMS.map((room) => s.timeout(5000).emitWithAck('room:join', room))))

  before(async () => {
    process.on('uncaughtException', onCrash)
    process.on('unhandledRejection', onCrash)
    for (const name of ['fz-alice', 'fz-bob']) {
      const token = await signToken(name, { name }, '2h')
      tokens.push(token)
      for (let i = 0; i < 2; i++) {
        const s = await chatClient(node.url, token)
        s.on('disconnect', () => void dropped++)
        sockets.push(s)
      }
    }
    await rejoin()
    for (const room of ROOMS) {
      for (const s of sockets) {
        for (let i = 0; i < 5; i++) ids.push((await s.timeout(5000).emitWithAck('chat:message', { roomId: room, text: `seed ${room} ${i}` })).messageId)
      }
    }
  })
  after(() => {
    process.off('uncaughtException', onCrash)
    process.off('unhandledRejection', onCrash)
  })

  const roomId = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...ROOMS) }, { weight: 1, arbitrary: fc.stringMatching(/^(dm:)?[A-Za-z0-9:_.-]{1,20}$/) })
  // Built when a test runs: the seeded message ids exist only then.
  const messageIdArb = () => fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...ids) }, { weight: 1, arbitrary: fc.uuid() })
  const seq = fc.oneof(fc.nat(20), fc.integer({ min: -5, max: 5 }))
  const text = fc.oneof(fc.string({ minLength: 1, maxLength: 60 }), junkString)

  /** A payload of the right shape (values still random) for `event`. */
  function valid(event: EventName): fc.Arbitrary<unknown> {
    const messageId = messageIdArb()
    switch (event) {
      case 'room:join':
        return fc.oneof(roomId, fc.record({ roomId, lastSeq: seq }, { requiredKeys: ['roomId'] }))
      case 'room:leave':
        return fc.oneof(roomId, fc.record({ roomId }))
      case 'chat:message':
        return fc.oneof(
          { weight: 3, arbitrary: fc.record({ roomId, text, clientMsgId: fc.string({ minLength: 1, maxLength: 20 }) }, { requiredKeys: ['roomId', 'text'] }) },
          { weight: 1, arbitrary: fc.record({ roomId, text, replyTo: messageId, attachmentId: fc.uuid() }, { requiredKeys: ['roomId', 'text'] }) },
        )
      case 'chat:edit':
        return fc.record({ roomId, messageId, text })
      case 'chat:delete':
        return fc.record({ roomId, messageId })
      case 'chat:react':
        return fc.record({ roomId, messageId, emoji: fc.oneof(fc.constantFrom('👍', '❤️', '__proto__', 'constructor'), junkString), on: fc.boolean() })
      case 'chat:typing':
        return fc.record({ roomId, isTyping: fc.boolean() })
      case 'chat:read':
        return fc.oneof(fc.record({ roomId, messageId }), fc.record({ roomId, seq }))
      case 'chat:sync':
        return fc.record({ rooms: fc.dictionary(roomId, fc.oneof(seq, fc.record({ lastSeq: seq, version: seq })), { maxKeys: 3 }) })
      case 'auth:refresh':
        return fc.record({ token: fc.oneof(fc.constantFrom(...tokens), junkString) })
    }
  }

  /** A valid payload with one mutation: a field removed, retyped or added, or the whole replaced. */
  const mutated = (event: EventName) =>
    fc.tuple(valid(event), fc.nat(), junkValue, fc.constantFrom('remove', 'retype', 'add', 'wrap', 'replace')).map(([p, pick, junk, how]) => {
      if (how === 'replace') return junk
      if (how === 'wrap') return [p, junk]
      if (p === null || typeof p !== 'object') return how === 'add' ? { roomId: p, extra: junk } : junk
      const copy: Record<string, unknown> = { ...(p as object) }
      const keys = Object.keys(copy)
      const key = keys[pick % Math.max(keys.length, 1)] ?? 'roomId'
      if (how === 'remove') delete copy[key]
      else if (how === 'retype') copy[key] = junk
      else copy[`x${pick % 7}`] = junk
      return copy
    })

  const payloads = (event: EventName) =>
    fc.array(fc.oneof({ weight: 2, arbitrary: valid(event) }, { weight: 3, arbitrary: mutated(event) }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) }), {
      minLength: BATCH,
      maxLength: BATCH,
    })

  const count = (event: string, code: string) => {
    let m = stats.get(event)
    if (!m) stats.set(event, (m = new Map()))
    m.set(code, (m.get(code) ?? 0) + 1)
  }

  for (const event of EVENTS) {
    it(`${event}: ${RUNS * BATCH} random and mutated payloads, each answered in the SPEC shape, never INTERNAL`, async () => {
      let turn = 0
      const bad: string[] = []
      await rejoin()
      await fc.assert(
        fc.asyncProperty(payloads(event), async (batch) => {
          if (event === 'room:leave' || event === 'room:join') await rejoin()
          const results = await Promise.all(
            batch.map((p) => {
              const s = sockets[turn++ % sockets.length]
              return s
                .timeout(4000)
                .emitWithAck(event, p)
                .then(
                  (r: unknown) => r,
                  () => ({ status: 'no answer' }),
                )
            }),
          )
          for (const [i, r] of results.entries()) {
            const what = `${event} ${JSON.stringify(batch[i])?.slice(0, 200)} → ${JSON.stringify(r)?.slice(0, 200)}`
            const res = r as { status?: unknown; code?: unknown; error?: unknown }
            const code = res?.status === 'ok' ? 'ok' : res?.status === 'error' ? String(res.code) : String(res?.status)
            count(event, code)
            if (res?.status === 'ok') continue
            if (res?.status !== 'error' || typeof res.error !== 'string') bad.push(`not the SPEC shape: ${what}`)
            else if (!(ACK_CODES.has(code) || (event === 'auth:refresh' && AUTH_CODES.has(code)))) bad.push(`not a SPEC code: ${what}`)
            else if (code === 'INTERNAL') bad.push(what)
            else if (LEAKY.test(res.error)) bad.push(`error text leaks internals: ${what}`)
          }
          // A dropped socket ends the run: every later payload would go unanswered.
          assert.equal(dropped, 0, 'a socket was dropped')
          assert.ok(sockets.every((s) => s.connected), 'every fuzz socket is still connected')
        }),
        { numRuns: RUNS, endOnFailure: true, includeErrorInReport: true },
      )
      // Bad answers are collected rather than thrown, so all 1,000 payloads run and the summary
      // counts them all; the first few are shown.
      assert.deepEqual(bad.slice(0, 5), [], `${bad.length} of ${RUNS * BATCH} answers broke the SPEC`)
    })
  }

  it('unknown events sent with an ack: BAD_REQUEST, never silence, never INTERNAL', async () => {
    const names = fc.sample(
      fc.oneof(
        fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'admin:kick', 'admin:announce', 'feed:messages', 'feed:changed', 'chat:Message', 'room:join ', 'notification', 'presence:list'),
        fc.string({ unit: junkChar, minLength: 1, maxLength: 30 }),
        fc.string({ minLength: 1, maxLength: 30 }),
      ),
      { numRuns: 200, seed: 16 },
    )
    const known = new Set<string>(EVENTS)
    const wrong: string[] = []
    const unknown = [...new Set(names)].filter((n) => !known.has(n))
    const answers = await Promise.all(
      unknown.map((name, i) =>
        sockets[i % sockets.length]
          .timeout(3000)
          .emitWithAck(name, { roomId: 'fz-a', text: 'x' })
          .then(
            (x: unknown) => x as { status?: string; code?: string },
            (): { status?: string; code?: string } => ({ status: 'no answer' }),
          ),
      ),
    )
    answers.forEach((r, i) => {
      const code = r.status === 'error' ? r.code : r.status
      count('(unknown event)', String(code))
      if (code !== 'BAD_REQUEST') wrong.push(`${JSON.stringify(unknown[i])} → ${code}`)
    })
    assert.ok(sockets.every((s) => s.connected))
    assert.deepEqual(wrong, [])
  })

  it('afterwards: the node is alive, history is gap-free and every stored row well-formed; summary', async () => {
    assert.equal((await httpJson(node.url, 'GET', '/healthz')).status, 200)
    const rooms = await node.db.selectFrom('messages').select('room_id').distinct().execute()
    const problems: string[] = []
    for (const { room_id } of rooms) {
      const stored = Number((await node.db.selectFrom('messages').select((eb) => eb.fn.countAll().as('n')).where('room_id', '=', room_id).executeTakeFirstOrThrow()).n)
      const history = await fullHistory(node.url, tokens[0], room_id).catch((err: Error) => {
        problems.push(err.message.split('\n')[0])
        return []
      })
      if (history.length !== stored && history.length > 0) problems.push(`${room_id}: history has ${history.length} of ${stored} rows`)
      history.forEach((m, i) => {
        const bad: string[] = []
        if (m.seq !== i + 1) bad.push(`seq ${m.seq} at ${i + 1}`)
        if (!m.deletedAt && (typeof m.text !== 'string' || [...m.text].length < 1 || [...m.text].length > 5000)) bad.push(`text length ${[...(m.text ?? '')].length}`)
        if (typeof m.text === 'string' && unstorable(m.text)) bad.push('NUL or lone surrogate in text')
        if (typeof m.text === 'string' && m.text.includes('\ufffd')) bad.push('U+FFFD in text (a lone surrogate replaced)')
        if (typeof m.text === 'string' && !m.deletedAt && m.text !== m.text.trim()) bad.push('text not trimmed')
        for (const emoji of Object.keys(m.reactions ?? {})) if (unstorable(emoji) || emoji.length === 0) bad.push(`reaction key ${JSON.stringify(emoji)}`)
        if (bad.length) {
          invalidRows++
          problems.push(`${room_id} #${m.seq}: ${bad.join(', ')}: ${JSON.stringify(m).slice(0, 160)}`)
        }
      })
    }
    const codes = [...new Set([...stats.values()].flatMap((m) => [...m.keys()]))].sort()
    const table = [...stats.entries()].map(([event, m]) => {
      const row: Record<string, number | string> = { event, tried: [...m.values()].reduce((a, b) => a + b, 0) }
      for (const c of codes) row[c] = m.get(c) ?? 0
      return row
    })
    const tried = table.reduce((a, r) => a + (r.tried as number), 0)
    console.log(`\nfuzz summary: ${tried} payloads tried, ${crashes} crashes, ${dropped} dropped sockets, ${invalidRows} invalid rows, ${rooms.length} rooms with messages`)
    console.table(table)
    assert.equal(crashes, 0, 'no uncaught exception or unhandled rejection in the node')
    assert.equal(dropped, 0, 'no socket dropped')
    assert.deepEqual(problems, [])
  })
})
