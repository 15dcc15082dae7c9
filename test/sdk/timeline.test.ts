import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import {
  applyDelete,
  applyEdit,
  applyReaction,
  applyUpdated,
  backoffMs,
  contiguousLastSeq,
  decodeClaims,
  mergeMessages,
  ValueStore,
  type Message,
} from '../../packages/client/src/index.ts'

/** The SDK's pure rules, without a server. */
const msg = (seq: number, version = seq, extra: Partial<Message> = {}): Message => ({
  id: `m${seq}`,
  roomId: 'r',
  seq,
  version,
  userId: 'u1',
  username: 'u1',
  text: `t${seq}`,
  timestamp: '2026-12-01T00:00:00.000Z',
  ...extra,
})

describe('timeline rules', () => {
  it('merge: seq order, one per seq, the highest version wins, same array when nothing changes', () => {
    const a = mergeMessages([], [msg(2), msg(1), msg(3)])
    assert.deepEqual(a.map((m) => m.seq), [1, 2, 3])
    assert.equal(mergeMessages(a, [msg(2)]), a, 'a duplicate changes nothing')
    assert.equal(mergeMessages(a, [msg(2, 1, { text: 'older' })]), a, 'an older version never replaces a newer one')
    const b = mergeMessages(a, [msg(2, 9, { text: 'newer' })])
    assert.equal(b[1].text, 'newer')
    assert.equal(b.length, 3)
  })

  it('merge is order-independent: any interleaving of copies gives the same timeline', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 5 })), { maxLength: 60 }), (pairs) => {
        const copies = pairs.map(([seq, v]) => msg(seq, seq * 10 + v, { text: `v${v}` }))
        let one: readonly Message[] = []
        for (const c of copies) one = mergeMessages(one, [c])
        const all = mergeMessages([], [...copies].reverse())
        assert.deepEqual(one, all)
        const seqs = one.map((m) => m.seq)
        assert.deepEqual(seqs, [...new Set(seqs)].sort((x, y) => x - y))
        for (const m of one) assert.equal(m.version, Math.max(...copies.filter((c) => c.seq === m.seq).map((c) => c.version)))
      }),
    )
  })

  it('edits, deletes and reactions apply by version: an older change is ignored', () => {
    let ms: readonly Message[] = [msg(1, 5)]
    ms = applyEdit(ms, { roomId: 'r', messageId: 'm1', version: 7, text: 'edited', editedAt: 'x' })
    assert.equal(ms[0].text, 'edited')
    const same = applyEdit(ms, { roomId: 'r', messageId: 'm1', version: 6, text: 'stale', editedAt: 'y' })
    assert.equal(same, ms)
    ms = applyReaction(ms, { roomId: 'r', messageId: 'm1', version: 8, emoji: '__proto__', userId: 'u2', on: true })
    ms = applyReaction(ms, { roomId: 'r', messageId: 'm1', version: 9, emoji: 'constructor', userId: 'u2', on: true })
    assert.equal(Object.getPrototypeOf(ms[0].reactions), null)
    assert.deepEqual(Object.keys(ms[0].reactions!).sort(), ['__proto__', 'constructor'])
    assert.equal(applyReaction(ms, { roomId: 'r', messageId: 'm1', version: 8, emoji: 'x', userId: 'u2', on: true }), ms)
    ms = applyReaction(ms, { roomId: 'r', messageId: 'm1', version: 10, reactions: JSON.parse('{"👍":["u3"]}') })
    assert.deepEqual(Object.keys(ms[0].reactions!), ['👍'])
    ms = applyDelete(ms, { roomId: 'r', messageId: 'm1', version: 11, deletedAt: 'z' })
    assert.equal(ms[0].text, '')
    assert.equal(ms[0].reactions, undefined)
    assert.equal(applyEdit(ms, { roomId: 'r', messageId: 'm1', version: 10, text: 'late', editedAt: 'w' }), ms)
    const up = applyUpdated(ms, [msg(1, 12, { text: 'current' }), msg(1, 3, { text: 'old' })])
    assert.equal(up[0].text, 'current')
  })

  it('contiguous lastSeq: stops at the first hole and before a message known only from its ack', () => {
    assert.equal(contiguousLastSeq([]), 0)
    assert.equal(contiguousLastSeq([msg(4), msg(5), msg(7)]), 5)
    assert.equal(contiguousLastSeq([msg(4), msg(5), msg(6)], new Set([6])), 5)
    assert.equal(contiguousLastSeq([msg(4), msg(5)], new Set([4])), 3)
  })

  it('backoff grows with jitter, is capped, and honours retryAfterMs', () => {
    for (let i = 0; i < 50; i++) {
      const b0 = backoffMs(0)
      assert.ok(b0 >= 150 && b0 <= 300, String(b0))
      assert.ok(backoffMs(20) <= 10_000)
      assert.ok(backoffMs(0, 4000) >= 4000)
    }
  })

  it('claims are read from a JWT without verification; garbage is null', () => {
    const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url')
    const token = `${part({ alg: 'HS256' })}.${part({ sub: 'u_1', name: 'Ána', roles: ['admin', 3], exp: 123 })}.sig`
    assert.deepEqual(decodeClaims(token), { userId: 'u_1', username: 'Ána', roles: ['admin'], exp: 123 })
    assert.equal(decodeClaims('nope'), null)
    assert.equal(decodeClaims('a.b.c'), null)
  })

  it('stores hand out the same snapshot until it changes; each subscribe has its own unsubscribe', () => {
    const s = new ValueStore({ n: 1 })
    let calls = 0
    const fn = () => calls++
    const off1 = s.subscribe(fn)
    const off2 = s.subscribe(fn)
    const v = s.get()
    s.set(v)
    assert.equal(calls, 0)
    s.set({ n: 2 })
    assert.equal(calls, 2)
    off1()
    s.set({ n: 3 })
    assert.equal(calls, 3)
    off2()
    s.set({ n: 4 })
    assert.equal(calls, 3)
  })
})
