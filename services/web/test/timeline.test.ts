import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { claimEchoes, dmPeer, dmRoomId, mergeMessages, nameList, seenBy, typingText, visiblePending, type PendingMessage } from '../src/chat/timeline.ts'
import type { Message } from '../src/protocol.ts'

const msg = (seq: number, text = `m${seq}`, userId = 'u_ana'): Message => ({
  id: `00000000-0000-7000-8000-${String(seq).padStart(12, '0')}`,
  roomId: 'r',
  seq,
  version: seq,
  userId,
  username: userId.slice(2),
  text,
  timestamp: '2025-01-01T00:00:00.000Z',
})
const pend = (clientMsgId: string, text: string): PendingMessage => ({ clientMsgId, roomId: 'r', text, status: 'sending', timestamp: '' })
const seqs = (ms: Message[]) => ms.map((m) => m.seq)

describe('timeline rules (the browser client, no DOM)', () => {
  it('merges by seq: in order, each seq once, whatever the arrival order', () => {
    const a = mergeMessages([], [msg(1), msg(2)])
    assert.deepEqual(seqs(a), [1, 2])
    assert.equal(mergeMessages(a, [msg(2), msg(1)]), a, 'nothing new: the same array (no re-render)')
    assert.deepEqual(seqs(mergeMessages(a, [msg(5), msg(3), msg(3), msg(4)])), [1, 2, 3, 4, 5])
    assert.deepEqual(seqs(mergeMessages([msg(50), msg(51)], [msg(49), msg(48)])), [48, 49, 50, 51], 'older pages go on top')
  })

  it('an echo of our own message hides the first pending send with its text; each echo claims one', () => {
    const pending = [pend('a', 'hi'), pend('b', 'hi'), pend('c', 'other')]
    const claimed = claimEchoes(pending, [msg(7, 'hi')])
    assert.deepEqual(claimed.map((p) => p.echoSeq), [7, undefined, undefined])
    assert.equal(claimEchoes(claimed, [msg(7, 'hi')]), claimed, 'the same echo twice claims nothing more')
    const both = claimEchoes(claimed, [msg(8, 'hi')])
    assert.deepEqual(both.map((p) => p.echoSeq), [7, 8, undefined])
    // Hidden only while the echo is in the timeline.
    assert.deepEqual(visiblePending(both, [msg(7, 'hi')]).map((p) => p.clientMsgId), ['b', 'c'])
  })

  it('words for receipts and typing', () => {
    assert.deepEqual(seenBy(new Map(Object.entries({ u_me: 9, u_ana: 9, u_ben: 8, u_cy: 10 })), msg(9, 'x', 'u_dee'), 'u_me'), ['u_ana', 'u_cy'])
    assert.deepEqual(seenBy(new Map(Object.entries({ u_me: 9, u_ana: 9 })), msg(9, 'x', 'u_ana'), 'u_me'), [], 'not by its own author')
    assert.deepEqual(seenBy(new Map([['u_ana', 0]]), undefined, 'u_me'), [], 'nothing to have seen')
    assert.deepEqual(seenBy(new Map([['constructor', 9], ['__proto__', 9]]), msg(9, 'x', 'u_dee'), 'u_me'), ['constructor', '__proto__'], 'user ids are data')
    assert.equal(nameList(['Ana', 'Ben', 'Cy', 'Dee']), 'Ana, Ben and 2 others')
    assert.equal(typingText([]), '')
    assert.equal(typingText(['Ana']), 'Ana is typing…')
    assert.equal(typingText(['Ana', 'Ben']), 'Ana and Ben are typing…')
    assert.equal(typingText(['a', 'b', 'c', 'd']), 'Several people are typing…')
  })

  it('DM ids are the two user ids, sorted, so both people open the same room', () => {
    assert.equal(dmRoomId('u_b', 'u_a'), 'dm:u_a:u_b')
    assert.equal(dmRoomId('u_a', 'u_b'), 'dm:u_a:u_b')
    assert.equal(dmPeer('dm:u_a:u_b', 'u_b'), 'u_a')
    assert.equal(dmPeer('dm:u_a:u_b', 'u_a'), 'u_b')
    assert.equal(dmPeer('dm:u_a:u_b', 'u_c'), null)
    assert.equal(dmPeer('lobby', 'u_a'), null)
  })
})
