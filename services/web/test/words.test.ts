import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { dmRoomId } from '@switchboard/client'
import { dayLabel, sameDay } from '../src/chat/days.ts'
import { dmPeer, nameList, seenBy, typingText } from '../src/chat/words.ts'

/** The web client's own pure rules (merging, echoes and the outbox are the SDK's: test/sdk/timeline.test.ts). */
describe('web client words and days (no DOM)', () => {
  it('words for receipts and typing', () => {
    const msg = (seq: number, userId: string) => ({ seq, userId })
    assert.deepEqual(seenBy(new Map(Object.entries({ u_me: 9, u_ana: 9, u_ben: 8, u_cy: 10 })), msg(9, 'u_dee'), 'u_me'), ['u_ana', 'u_cy'])
    assert.deepEqual(seenBy(new Map(Object.entries({ u_me: 9, u_ana: 9 })), msg(9, 'u_ana'), 'u_me'), [], 'not by its own author')
    assert.deepEqual(seenBy(new Map([['u_ana', 0]]), undefined, 'u_me'), [], 'nothing to have seen')
    assert.deepEqual(seenBy(new Map([['constructor', 9], ['__proto__', 9]]), msg(9, 'u_dee'), 'u_me'), ['constructor', '__proto__'], 'user ids are data')
    assert.equal(nameList(['Ana', 'Ben', 'Cy', 'Dee']), 'Ana, Ben and 2 others')
    assert.equal(typingText([]), '')
    assert.equal(typingText(['Ana']), 'Ana is typing…')
    assert.equal(typingText(['Ana', 'Ben']), 'Ana and Ben are typing…')
    assert.equal(typingText(['a', 'b', 'c', 'd']), 'Several people are typing…')
  })

  it('DM ids are the two user ids, sorted (the SDK builds them); the peer is the other one', () => {
    assert.equal(dmRoomId('u_b', 'u_a'), 'dm:u_a:u_b')
    assert.equal(dmPeer(dmRoomId('u_a', 'u_b'), 'u_b'), 'u_a')
    assert.equal(dmPeer('dm:u_a:u_b', 'u_a'), 'u_b')
    assert.equal(dmPeer('dm:u_a:u_b', 'u_c'), null)
    assert.equal(dmPeer('lobby', 'u_a'), null)
  })

  it('day separators: today, yesterday, else the date, in local time', () => {
    const now = new Date(2026, 11, 1, 12, 0)
    assert.equal(dayLabel(new Date(2026, 11, 1, 0, 5).toISOString(), now), 'Today')
    assert.equal(dayLabel(new Date(2026, 10, 30, 23, 59).toISOString(), now), 'Yesterday')
    assert.match(dayLabel(new Date(2026, 10, 28, 10).toISOString(), now), /2026/)
    assert.equal(dayLabel('not a date', now), '')
    assert.ok(sameDay(new Date(2026, 11, 1, 0, 1).toISOString(), new Date(2026, 11, 1, 23, 59).toISOString()))
    assert.ok(!sameDay(new Date(2026, 11, 1, 0, 1).toISOString(), new Date(2026, 10, 30, 23, 59).toISOString()))
  })
})
