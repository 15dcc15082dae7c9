import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SwitchboardError, type Message } from '../../packages/client/src/index.ts'
import { RoomHandle, type EmitResult, type RoomHost } from '../../packages/client/src/room.ts'

/**
 * A room handle against a scripted host (no server): the outbox's order and retry policy, the
 * ack/echo hand-over, gap detection, and changes that arrive before their message.
 */

type Reply = EmitResult<object>
interface Call {
  event: string
  payload: any
  at: number
  reply(r: Reply): void
}

class FakeHost implements RoomHost {
  connected = true
  closed = false
  calls: Call[] = []
  syncs = 0
  /** Answers room:join at once (after `history`, as the server does). */
  history: (room: RoomHandle) => void = () => undefined
  room!: RoomHandle
  isClosed = () => this.closed
  me = () => 'me'
  chatConnected = () => this.connected
  emit<T extends object>(event: string, payload: unknown, onAck?: (r: EmitResult<T>) => void): Promise<EmitResult<T>> {
    const answer = (r: EmitResult<T>) => (onAck?.(r), r)
    if (!this.connected) return Promise.resolve(answer({ ok: false, code: 'DISCONNECTED', error: 'not connected' }))
    if (event === 'room:join') {
      this.history(this.room)
      return Promise.resolve(answer({ ok: true, value: { roomId: this.room.id, lastSeq: 0, online: [] } as unknown as T }))
    }
    return new Promise((resolve) => this.calls.push({ event, payload, at: Date.now(), reply: (r) => resolve(answer(r as EmitResult<T>)) }))
  }
  volatileEmit = () => undefined
  http = <T>(): Promise<T> => Promise.reject(new Error('no http here'))
  requestSync = () => {
    this.syncs++
  }
  online = () => undefined
  roomMessages = () => undefined
  readAcked = () => undefined
  lastReadSeq = () => 0
  private n = 0
  uuid = () => `cm-${++this.n}`
  sends = () => this.calls.filter((c) => c.event === 'chat:message')
}

const msg = (seq: number, version: number, extra: Partial<Message> = {}): Message => ({
  id: `m${seq}`,
  roomId: 'r1',
  seq,
  version,
  userId: 'other',
  username: 'other',
  text: `t${seq}`,
  timestamp: '2026-12-01T00:00:00.000Z',
  ...extra,
})

const tick = () => new Promise((r) => setImmediate(r))
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function setup(initial: Message[] = []) {
  const host = new FakeHost()
  const room = new RoomHandle('r1', host)
  host.room = room
  host.history = (r) => r._onHistory({ roomId: 'r1', messages: initial, reads: {}, hasMore: false })
  return { host, room }
}

describe('room handle (scripted host)', () => {
  it('one send in flight per room, in order; each resend carries the same clientMsgId', async () => {
    const { host, room } = setup()
    const results: number[] = []
    const a = room.send('a').then((r) => results.push(r.seq))
    const b = room.send('b').then((r) => results.push(r.seq))
    const c = room.send('c').then((r) => results.push(r.seq))
    await tick()
    assert.equal(host.sends().length, 1, 'only the head is in flight')
    assert.deepEqual(room.state.get().pending.map((p) => p.status), ['sending', 'waiting', 'waiting'])
    host.sends()[0].reply({ ok: false, code: 'UNAVAILABLE', error: 'busy', retryAfterMs: 300 })
    await tick()
    const waiting = room.state.get().pending[0]
    assert.equal(waiting.status, 'waiting')
    assert.equal(waiting.error?.code, 'UNAVAILABLE')
    assert.ok(waiting.retryAt! - Date.now() >= 250)
    await sleep(150)
    assert.equal(host.sends().length, 1, 'held for at least retryAfterMs; b waits behind a')
    await sleep(250)
    assert.equal(host.sends().length, 2)
    assert.equal(host.sends()[1].payload.clientMsgId, host.sends()[0].payload.clientMsgId)
    host.sends()[1].reply({ ok: true, value: { messageId: 'ma', seq: 1 } })
    await tick()
    assert.equal(host.sends()[2].payload.text, 'b')
    host.sends()[2].reply({ ok: false, code: 'RATE_LIMITED', error: 'slow down', retryAfterMs: 60 })
    await sleep(100)
    assert.equal(host.sends()[3].payload.text, 'b')
    host.sends()[3].reply({ ok: true, value: { messageId: 'mb', seq: 2 } })
    await tick()
    host.sends()[4].reply({ ok: true, value: { messageId: 'mc', seq: 3 } })
    await Promise.all([a, b, c])
    assert.deepEqual(results, [1, 2, 3])
    assert.equal(room.state.get().pending.length, 0)
  })

  it('a disconnect holds the entry until the next connect pumps it; a final code rejects and the next one goes', async () => {
    const { host, room } = setup()
    const a = room.send('a')
    const b = room.send('b')
    await tick()
    host.connected = false
    host.sends()[0].reply({ ok: false, code: 'DISCONNECTED', error: 'lost' })
    await sleep(50)
    assert.equal(host.sends().length, 1)
    assert.equal(room.state.get().pending[0].status, 'waiting')
    host.connected = true
    room._pump()
    await tick()
    assert.equal(host.sends().length, 2)
    host.sends()[1].reply({ ok: false, code: 'TOO_LARGE', error: 'too long' })
    await assert.rejects(a, (e: unknown) => e instanceof SwitchboardError && e.code === 'TOO_LARGE')
    await tick()
    assert.equal(host.sends()[2].payload.text, 'b')
    host.sends()[2].reply({ ok: true, value: { messageId: 'mb', seq: 1 } })
    await b
    assert.deepEqual(room.state.get().pending.map((p) => [p.text, p.status]), [['a', 'failed']])
    room.discard(room.state.get().pending[0].clientMsgId)
    assert.equal(room.state.get().pending.length, 0)
  })

  it('after a reconnect a followed room catches up before its outbox sends: my message never shows ahead of the ones missed', async () => {
    const { host, room } = setup([msg(1, 1)])
    await room.join()
    host.connected = false
    room._disconnected()
    const sent = room.send('typed while offline')
    host.connected = true
    room._start() // the next connect: a chat:sync is requested for the room
    assert.equal(host.syncs, 1)
    room._pump()
    await tick()
    assert.equal(host.sends().length, 0, 'nothing sent while the room is syncing')
    room._applySync([msg(2, 2), msg(3, 3)], [], false, undefined)
    await tick()
    assert.equal(host.sends().length, 1, 'sent once the sync was merged')
    host.sends()[0].reply({ ok: true, value: { messageId: 'm4', seq: 4 } })
    await sent
    assert.deepEqual(room.state.get().messages.map((m) => m.seq), [1, 2, 3, 4])
  })

  it('an acked message shows at once (provisional, not in lastSeq) and its stored copy replaces it', async () => {
    const { host, room } = setup([msg(1, 1)])
    await room.join()
    const sent = room.send('mine')
    await tick()
    host.sends()[0].reply({ ok: true, value: { messageId: 'm2', seq: 2 } })
    await sent
    let s = room.state.get()
    assert.equal(s.pending.length, 0)
    assert.deepEqual(s.messages.map((m) => [m.seq, m.version]), [[1, 1], [2, 0]])
    assert.equal(s.lastSeq, 1, 'a message known only from its ack is synced again')
    room._onMessage(msg(2, 2, { userId: 'me', text: 'mine' }))
    s = room.state.get()
    assert.deepEqual(s.messages.map((m) => [m.seq, m.version]), [[1, 1], [2, 2]])
    assert.equal(s.lastSeq, 2)
  })

  it('a live gap syncs the room from the version before the gap', async () => {
    const { host, room } = setup([msg(1, 1), msg(2, 2)])
    await room.join()
    room._onMessage(msg(3, 3))
    assert.equal(host.syncs, 0)
    room._onMessage(msg(5, 7))
    assert.equal(host.syncs, 1)
    assert.equal(room.state.get().status, 'syncing')
    assert.deepEqual(room._syncPoint(), { lastSeq: 3, version: 3 })
    room._applySync([msg(4, 5), msg(5, 7)], [], false, undefined)
    assert.equal(room.state.get().status, 'joined')
    assert.deepEqual(room.state.get().messages.map((m) => m.seq), [1, 2, 3, 4, 5])
    assert.deepEqual(room._syncPoint(), { lastSeq: 5, version: 7 })
  })

  it('a change that arrives before its message (in an older version) is applied when the message comes', async () => {
    const { room } = setup([msg(1, 1)])
    await room.join()
    room._onReaction({ roomId: 'r1', messageId: 'm2', version: 9, emoji: 'constructor', userId: 'u9', on: true })
    room._onEdited({ roomId: 'r1', messageId: 'm2', version: 8, text: 'edited', editedAt: 'x' })
    room._applySync([msg(2, 4)], [], false, undefined)
    const m2 = room.state.get().messages[1]
    assert.equal(m2.version, 9)
    assert.equal(m2.text, 'edited')
    assert.deepEqual(m2.reactions?.constructor, ['u9'])
    // A change older than the copy that arrives is not applied over it.
    room._onEdited({ roomId: 'r1', messageId: 'm3', version: 10, text: 'old edit', editedAt: 'y' })
    room._applySync([msg(3, 12, { text: 'newer' })], [], false, undefined)
    assert.equal(room.state.get().messages[2].text, 'newer')
  })

  it('hasMore in a sync starts the room over with a fresh join; leave stops following', async () => {
    const { host, room } = setup([msg(1, 1)])
    await room.join()
    let joins = 0
    host.history = (r) => {
      joins++
      r._onHistory({ roomId: 'r1', messages: [msg(90, 95), msg(91, 96)], reads: {}, hasMore: true })
    }
    room._applySync([msg(50, 60)], [], true, undefined)
    await tick()
    assert.equal(joins, 1)
    const s = room.state.get()
    assert.deepEqual(s.messages.map((m) => m.seq), [90, 91], 'the newest page, no hole')
    assert.equal(s.hasOlder, true)
    assert.equal(s.version, 96)
    await room.leave()
    assert.equal(room.state.get().status, 'idle')
    room._onMessage(msg(92, 97))
    assert.equal(room.state.get().messages.length, 2, 'not followed: events ignored')
  })
})
