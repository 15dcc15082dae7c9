import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { HistoryCache } from '../src/domain/history-cache.ts'
import type { Message } from '../src/domain/types.ts'

const msgs = (n: number, roomId = 'r'): Message[] =>
  Array.from({ length: n }, (_, i) => ({ id: `m${i}`, roomId, seq: i + 1, version: i + 1, userId: 'u', username: 'u', text: `t${i}`, createdAt: '' }) as unknown as Message)

/** The cache of history pages (D119): bounded by the messages it holds, stale pages dropped at once. */
describe('history cache', () => {
  it('serves a page stored at the current generation, and drops the room’s pages on a change', () => {
    const c = new HistoryCache(1000)
    c.set('r', 'latest:50', c.generation('r'), msgs(3))
    c.set('r', '10:50', c.generation('r'), msgs(2))
    c.set('other', 'latest:50', c.generation('other'), msgs(1, 'other'))
    assert.equal(c.get('r', 'latest:50')?.length, 3)
    c.invalidate('r')
    assert.equal(c.get('r', 'latest:50'), undefined)
    assert.equal(c.get('r', '10:50'), undefined)
    assert.equal(c.size, 1, 'the stale pages are gone, not only hidden')
    assert.equal(c.get('other', 'latest:50')?.length, 1, 'other rooms keep theirs')
  })

  it('refuses a page read across a change', () => {
    const c = new HistoryCache(1000)
    const before = c.generation('r')
    c.invalidate('r') // a message arrived while the page was being read
    c.set('r', 'latest:50', before, msgs(3))
    assert.equal(c.get('r', 'latest:50'), undefined)
  })

  it('holds at most maxMessages messages, however many pages', () => {
    const c = new HistoryCache(100)
    for (let i = 0; i < 50; i++) c.set(`room-${i}`, 'latest:50', c.generation(`room-${i}`), msgs(10, `room-${i}`))
    assert.equal(c.size, 10, '10 pages of 10 messages')
    assert.equal(c.get('room-49', 'latest:50')?.length, 10, 'the newest kept')
    assert.equal(c.get('room-0', 'latest:50'), undefined, 'the oldest evicted')
  })

  it('a forgotten generation never lets a page read before a change match again', () => {
    const c = new HistoryCache(1000, 5000, 2)
    const before = c.generation('r')
    c.invalidate('r')
    // Two other rooms change: the LRU of generations (2 rooms) forgets r's.
    c.invalidate('a')
    c.invalidate('b')
    assert.notEqual(c.generation('r'), before)
    c.set('r', 'latest:50', before, msgs(3))
    assert.equal(c.get('r', 'latest:50'), undefined)
  })

  it('expires pages after the TTL (an invalidation from another node may be lost)', async () => {
    const c = new HistoryCache(1000, 30)
    c.set('r', 'latest:50', c.generation('r'), msgs(1))
    assert.ok(c.get('r', 'latest:50'))
    await new Promise((r) => setTimeout(r, 60))
    assert.equal(c.get('r', 'latest:50'), undefined)
  })
})

describe('history cache: many small pages', () => {
  it('holds at most maxPages pages (and index entries), however few messages they have', () => {
    const c = new HistoryCache(1_000_000, 5000, 20_000, 100)
    for (let i = 0; i < 1000; i++) c.set(`empty-${i}`, 'latest:50', c.generation(`empty-${i}`), [])
    assert.equal(c.size, 100)
    // The per-room index follows the evictions: invalidating an evicted room finds nothing to drop.
    c.invalidate('empty-0')
    assert.equal(c.size, 100)
    c.invalidate('empty-999')
    assert.equal(c.size, 99)
  })
})
