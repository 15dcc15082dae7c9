/**
 * Issue 17 (D105): Postgres fails over to an async replica that lacks the last commits, so a
 * room's `last_seq`/`version` go back and the next messages reuse seqs this node already
 * delivered. A real primary and a real streaming replica (`pg_basebackup -R`) from the machine's
 * binaries; the node reaches Postgres through a TCP proxy that is repointed at the promoted
 * replica, and the replica streams through a second proxy that is cut before the last commits
 * (a deterministic lag).
 */
import assert from 'node:assert/strict'
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import { pino } from 'pino'
import type { Socket } from 'socket.io-client'
import { startPostgres, type LocalPostgres } from '../../../infra/services.ts'
import { ack, chatClient, closeClients, devToken, eventually, next, REDIS_URL, redisPrefix, startNode, tcpProxy, type TestNode } from './helpers.ts'
import { portOf, postgresBin, query, startReplica, type Replica } from './replica.ts'

/** What a client shows of the room: by seq, replaced by a `room:history` with `hasMore` (as the web client does). */
function view(socket: Socket, roomId: string) {
  const bySeq = new Map<number, { id: string; seq: number; text: string }>()
  const resyncs: unknown[] = []
  socket.on('room:history', (h: { roomId: string; hasMore?: boolean; messages: { id: string; seq: number; text: string }[] }) => {
    if (h.roomId !== roomId) return
    if (h.hasMore) (bySeq.clear(), resyncs.push(h))
    for (const m of h.messages) bySeq.set(m.seq, m)
  })
  socket.on('chat:message', (m: { id: string; seq: number; text: string; roomId: string }) => {
    if (m.roomId === roomId) bySeq.set(m.seq, m)
  })
  return { bySeq, resyncs }
}

describe('failover to a replica that lagged (D105)', { skip: postgresBin === undefined ? 'no Postgres binaries (apt-get install postgresql)' : false }, () => {
  const base = mkdtempSync(join(tmpdir(), 'sb-failover-'))
  chmodSync(base, 0o755) // the postgres user walks into it
  const redis = redisPrefix()
  const logs: Record<string, unknown>[] = []
  const logStream = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line.trim()) logs.push(JSON.parse(line))
      done()
    },
  })
  let primary: LocalPostgres | undefined
  let replica: Replica | undefined
  let node: TestNode | undefined
  let target = 0
  let dbProxy: Awaited<ReturnType<typeof tcpProxy>> | undefined

  before(async () => {
    primary = await startPostgres(join(base, 'primary'))
    target = portOf(primary.url)
    dbProxy = await tcpProxy(() => target)
    replica = await startReplica(join(base, 'replica'), target)
    node = await startNode(
      { DATABASE_URL: `postgres://postgres@127.0.0.1:${dbProxy.port}/switchboard`, REDIS_URL, REDIS_PREFIX: redis.prefix, RATE_LIMIT_MESSAGES: '1000' },
      { log: pino({ level: 'warn' }, logStream) },
    )
  })

  after(async () => {
    closeClients()
    await node?.close().catch(() => undefined)
    await dbProxy?.close()
    // Only the two Postgres we started, each by its own pid.
    await replica?.stop().catch(() => undefined)
    await primary?.stop().catch(() => undefined)
    await redis.clear()
    rmSync(base, { recursive: true, force: true })
  })

  test('the regression is logged and counted, the room resyncs, and later messages reach the clients', { timeout: 30_000 }, async () => {
    const roomId = 'failover-room'
    const alice = await devToken(node!.url, 'alice')
    const bob = await devToken(node!.url, 'bob')
    const a = await chatClient(node!.url, alice.token)
    const b = await chatClient(node!.url, bob.token)
    const seen = view(b, roomId)
    assert.equal((await ack(a, 'room:join', roomId)).status, 'ok')
    assert.equal((await ack(b, 'room:join', roomId)).status, 'ok')
    let n = 0
    /** Sends until acked; `live` is bob's copy of it (only when `watch`: it may come in a resync instead). */
    const send = async (text: string, watch = true, room = roomId, watcher = b) => {
      const clientMsgId = `c-${++n}`
      const got = watch ? next<{ seq: number; text: string }>(watcher, 'chat:message', (m) => m.text === text, 15_000) : Promise.resolve({ seq: 0, text })
      // Through a failover some attempts answer UNAVAILABLE; the same clientMsgId makes retries safe.
      for (let attempt = 0; ; attempt++) {
        const res = await ack(a, 'chat:message', { roomId: room, text, clientMsgId })
        if (res.status === 'ok') return { ack: res as { seq: number; messageId: string }, live: got }
        assert.equal(res.code, 'UNAVAILABLE', JSON.stringify(res))
        assert.ok(attempt < 100, 'sends keep failing after the failover')
        await new Promise((r) => setTimeout(r, 100))
      }
    }
    for (const text of ['one', 'two', 'three']) await (await send(text)).live
    // A second room, where carol sees all five messages and comes back after the failover; dave stays.
    const rejoinRoom = 'failover-rejoin'
    const carol = await devToken(node!.url, 'carol')
    const dave = await devToken(node!.url, 'dave')
    const c = await chatClient(node!.url, carol.token)
    const d = await chatClient(node!.url, dave.token)
    const daveSees = view(d, rejoinRoom)
    for (const s of [a, c, d]) assert.equal((await ack(s, 'room:join', rejoinRoom)).status, 'ok')
    for (const text of ['r-one', 'r-two', 'r-three']) await (await send(text, true, rejoinRoom, c)).live

    // The replica has everything so far; then it is cut off and the last two commits reach only the primary.
    await replica!.caughtUp(target)
    replica!.stream.cut()
    // (Nothing the primary writes from here on can pass the cut proxy; the head check below confirms it.)
    const lost = []
    for (const text of ['four', 'five']) lost.push((await (await send(text)).live).seq)
    for (const text of ['r-four', 'r-five']) lost.push((await (await send(text, true, rejoinRoom, c)).live).seq)
    assert.deepEqual(lost, [4, 5, 4, 5])
    c.disconnect()

    // Failover: the primary goes away, the replica is promoted, the proxy points at it.
    await primary!.stop()
    await replica!.promote()
    target = replica!.port
    const [head] = await query<{ last_seq: string; version: string }>(target, 'select last_seq, version from rooms where id = $1', [roomId])
    assert.deepEqual([Number(head.last_seq), Number(head.version)], [3, 3], 'the promoted replica lacks the last two commits')

    // Carol comes back holding seqs 4 and 5, which the database no longer has: she (and dave) start the room over.
    const c2 = await chatClient(node!.url, carol.token)
    const carolSees = view(c2, rejoinRoom)
    for (let attempt = 0; ; attempt++) {
      const res = await ack(c2, 'room:join', { roomId: rejoinRoom, lastSeq: 5, version: 5 })
      if (res.status === 'ok') break
      assert.equal(res.code, 'UNAVAILABLE', JSON.stringify(res))
      assert.ok(attempt < 100, 'joins keep failing after the failover')
      await new Promise((r) => setTimeout(r, 100))
    }
    assert.equal(carolSees.resyncs.length, 1, 'carol was told to start the room over')
    assert.deepEqual([...carolSees.bySeq.values()].map((m) => m.text), ['r-one', 'r-two', 'r-three'])
    await eventually(() => daveSees.resyncs.length === 1, 5000, 'dave to resync')
    assert.deepEqual([...daveSees.bySeq.values()].map((m) => m.text), ['r-one', 'r-two', 'r-three'])
    const rejoinErrors = logs.filter((l) => l.level === 50 && l.roomId === rejoinRoom && l.where === 'join')
    assert.ok(rejoinErrors.length >= 1, `an error log names the regression seen at the join: ${JSON.stringify(logs)}`)
    const reAfter = await send('r-after', true, rejoinRoom, c2) // seq 4 again, and it reaches carol live
    assert.equal((await reAfter.live).seq, 4)

    // The next messages reuse seqs 4 and 5: the node notices, says so, and resyncs the room.
    const first = await send('after-one', false)
    assert.equal(first.ack.seq, 4)
    // Bob is told to start the room over: a room:history (hasMore) with the database's truth, after-one in it.
    await eventually(() => seen.resyncs.length >= 1 && [...seen.bySeq.values()].some((m) => m.id === first.ack.messageId), 10_000, 'bob to resync')
    const second = await send('after-two')
    assert.equal(second.ack.seq, 5)
    const live = await second.live // nothing is dropped as "already delivered"
    assert.equal(live.seq, 5)

    const errors = logs.filter((l) => l.level === 50 && l.roomId === roomId && /regression/.test(String(l.msg)))
    assert.ok(errors.length >= 1, `an error log names the regression: ${JSON.stringify(logs)}`)
    assert.deepEqual((errors[0].expected as { lastSeq: number }).lastSeq, 5)
    assert.ok(errors[0].found !== undefined)
    const metrics = await (await fetch(`${node!.url}/metrics`)).text()
    const counted = [...metrics.matchAll(/^switchboard_feed_regressions_total\{[^}]*\} (\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0)
    assert.ok(counted >= 1, `switchboard_feed_regressions_total counts it:\n${metrics.split('\n').filter((l) => l.includes('regressions')).join('\n')}`)

    // Bob ends where the database is: the same message at every seq.
    const rows = await query<{ id: string; seq: string }>(target, 'select id, seq from messages where room_id = $1 order by seq', [roomId])
    await eventually(() => seen.bySeq.size === rows.length, 5000, "bob's view to settle")
    assert.deepEqual(
      [...seen.bySeq.values()].sort((x, y) => x.seq - y.seq).map((m) => [m.seq, m.id, m.text]),
      rows.map((r) => [Number(r.seq), r.id, [...seen.bySeq.values()].find((m) => m.id === r.id)?.text]),
    )
    assert.deepEqual([...seen.bySeq.values()].sort((x, y) => x.seq - y.seq).map((m) => m.text), ['one', 'two', 'three', 'after-one', 'after-two'])
  })
})
