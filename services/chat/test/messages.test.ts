import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { useIsolatedNode, ack, chatClient, collect, devToken, eventually, next } from './helpers.ts'

for (const adapter of ['classic', 'sharded']) describe(`messages on one node (real Postgres and Redis, ${adapter} adapter)`, () => {
  const node = useIsolatedNode({ RATE_LIMIT_MESSAGES: '1000', REDIS_ADAPTER: adapter })

  it('join → history → message → ack → broadcast to a second client', async () => {
    const ana = await devToken(node.url, 'ana')
    const bob = await devToken(node.url, 'bob')
    const a = await chatClient(node.url, ana.token)
    const b = await chatClient(node.url, bob.token)

    const historyA = next(a, 'room:history')
    const joinA = await ack(a, 'room:join', 'lobby')
    assert.equal(joinA.status, 'ok')
    assert.equal(joinA.roomId, 'lobby')
    assert.equal(joinA.lastSeq, 0)
    assert.deepEqual((await historyA).messages, [])

    const joined = next(a, 'room:user-joined')
    const joinB = await ack(b, 'room:join', { roomId: 'lobby' })
    assert.equal(joinB.status, 'ok')
    assert.deepEqual(joinB.online.map((u: any) => u.username).sort(), ['ana', 'bob'])
    assert.deepEqual(await joined, { userId: bob.userId, username: 'bob', roomId: 'lobby' })

    const atB = next(b, 'chat:message')
    const atA = next(a, 'chat:message')
    const res = await ack(a, 'chat:message', { roomId: 'lobby', text: '  hello bob  ' })
    assert.equal(res.status, 'ok')
    assert.equal(res.seq, 1)
    assert.match(res.messageId, /^[0-9a-f-]{36}$/)
    const m = await atB
    assert.equal(m.id, res.messageId)
    assert.equal(m.text, 'hello bob')
    assert.equal(m.userId, ana.userId)
    assert.equal(m.username, 'ana')
    assert.equal(m.roomId, 'lobby')
    assert.ok(!Number.isNaN(Date.parse(m.timestamp)))
    assert.equal((await atA).id, res.messageId, 'the sender gets its own message too')

    // The ack came after the commit: the row is there.
    const row = await node.db.selectFrom('messages').selectAll().where('id', '=', res.messageId).executeTakeFirstOrThrow()
    assert.equal(Number(row.seq), 1)

    // A late joiner gets it as history.
    const carl = await chatClient(node.url, (await devToken(node.url, 'carl')).token)
    const historyC = next(carl, 'room:history')
    await ack(carl, 'room:join', 'lobby')
    assert.deepEqual((await historyC).messages.map((x: any) => x.id), [res.messageId])
  })

  it('acks each sender before its message fans out (the ack does not wait behind deliveries)', async () => {
    const senders = await Promise.all(['s1', 's2', 's3', 's4', 's5'].map(async (n) => chatClient(node.url, (await devToken(node.url, n)).token)))
    for (const s of senders) await ack(s, 'room:join', 'ack-first')
    const order = senders.map((s) => {
      const seen: string[] = []
      s.on('chat:message', (m: { id: string }) => seen.push(`message ${m.id}`))
      return seen
    })
    // All at once, so they share batches: every sender's ack must still come before its echo.
    // (An ack callback runs as its packet is read; a promise would resolve a tick later.)
    const results = await Promise.all(
      senders.map(
        (s, i) =>
          new Promise<{ status: string; messageId: string }>((resolve, reject) =>
            s.timeout(5000).emit('chat:message', { roomId: 'ack-first', text: `hi ${i}` }, (err: Error | null, r: { status: string; messageId: string }) => {
              if (err) return reject(err)
              order[i].push(`ack ${r.messageId}`)
              resolve(r)
            }),
          ),
      ),
    )
    await eventually(() => order.every((seen) => seen.length === 1 + senders.length), 5000, 'every echo arrived')
    results.forEach((r, i) => {
      assert.equal(r.status, 'ok')
      const seen = order[i]
      assert.ok(seen.indexOf(`ack ${r.messageId}`) < seen.indexOf(`message ${r.messageId}`), `sender ${i}: ${seen.join(', ')}`)
    })
  })

  it('keeps seq gap-free and in order under 20 concurrent senders', async () => {
    const room = 'busy'
    const watcher = await chatClient(node.url, (await devToken(node.url, 'watcher')).token)
    await ack(watcher, 'room:join', room)
    const seen = collect(watcher, 'chat:message')
    const senders = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const s = await chatClient(node.url, (await devToken(node.url, `sender${i}`)).token)
        await ack(s, 'room:join', room)
        return s
      }),
    )
    const perSender = 10
    const acks = (
      await Promise.all(
        senders.map(async (s, i) => {
          const out = []
          // Fire each sender's messages without waiting, so batches really mix.
          const pending = Array.from({ length: perSender }, (_, k) => ack(s, 'chat:message', { roomId: room, text: `m ${i}.${k}` }))
          for (const p of pending) out.push(await p)
          return out
        }),
      )
    ).flat()
    assert.ok(acks.every((a) => a.status === 'ok'), JSON.stringify(acks.find((a) => a.status !== 'ok')))
    const seqs = acks.map((a) => a.seq).sort((x, y) => x - y)
    assert.deepEqual(seqs, Array.from({ length: 200 }, (_, i) => i + 1))

    const rows = await node.db.selectFrom('messages').select(['id', 'seq']).where('room_id', '=', room).orderBy('seq').execute()
    assert.equal(rows.length, 200)
    const bySeq = new Map(rows.map((r) => [Number(r.seq), r.id]))
    for (const a of acks) assert.equal(bySeq.get(a.seq), a.messageId, `ack seq ${a.seq} matches the stored row`)

    await eventually(() => seen.length >= 200, 5000, '200 deliveries')
    assert.deepEqual(seen.map((m) => m.seq), Array.from({ length: 200 }, (_, i) => i + 1), 'live messages arrive in seq order')
    const batches = await node.app.metrics.dbBatchSize.get()
    const count = batches.values.find((v) => v.metricName === 'switchboard_db_batch_size_count')!.value
    assert.ok(count < 200, `group commit batched 200+ messages into ${count} transactions`)
  })

  it('a resend with the same clientMsgId returns the original and stores nothing new', async () => {
    const u = await chatClient(node.url, (await devToken(node.url, 'resender')).token)
    await ack(u, 'room:join', 'idem')
    const live = collect(u, 'chat:message')
    const first = await ack(u, 'chat:message', { roomId: 'idem', text: 'once', clientMsgId: 'c-1' })
    const again = await ack(u, 'chat:message', { roomId: 'idem', text: 'once', clientMsgId: 'c-1' })
    // Two resends racing inside one batch as well.
    const [x, y] = await Promise.all([
      ack(u, 'chat:message', { roomId: 'idem', text: 'twice', clientMsgId: 'c-2' }),
      ack(u, 'chat:message', { roomId: 'idem', text: 'twice', clientMsgId: 'c-2' }),
    ])
    assert.equal(first.status, 'ok')
    assert.deepEqual([again.messageId, again.seq], [first.messageId, first.seq])
    assert.deepEqual([x.messageId, x.seq], [y.messageId, y.seq])
    assert.equal(x.seq, first.seq + 1)
    const rows = await node.db.selectFrom('messages').select('seq').where('room_id', '=', 'idem').execute()
    assert.equal(rows.length, 2)
    await eventually(() => live.length >= 2)
    assert.equal(live.length, 2, 'a resend is not broadcast again')

    // Another user may use the same clientMsgId: it is per (room, user).
    const other = await chatClient(node.url, (await devToken(node.url, 'other')).token)
    await ack(other, 'room:join', 'idem')
    const o = await ack(other, 'chat:message', { roomId: 'idem', text: 'mine', clientMsgId: 'c-1' })
    assert.equal(o.seq, 3)
  })

  it('chat:sync and room:join with lastSeq return exactly the missed messages', async () => {
    const room = 'sync-room'
    const zed = await devToken(node.url, 'zed')
    const yan = await chatClient(node.url, (await devToken(node.url, 'yan')).token)
    await ack(yan, 'room:join', room)
    let z = await chatClient(node.url, zed.token)
    await ack(z, 'room:join', room)
    for (let i = 1; i <= 3; i++) await ack(yan, 'chat:message', { roomId: room, text: `before ${i}` })
    await eventually(async () => true)
    z.disconnect()
    const missed = []
    for (let i = 1; i <= 5; i++) missed.push(await ack(yan, 'chat:message', { roomId: room, text: `missed ${i}` }))

    z = await chatClient(node.url, zed.token)
    const live = collect(z, 'chat:message')
    const sync = await ack(z, 'chat:sync', { rooms: { [room]: 3 } })
    assert.equal(sync.status, 'ok')
    assert.deepEqual(sync.rooms[room].map((m: any) => m.seq), [4, 5, 6, 7, 8])
    assert.deepEqual(sync.rooms[room].map((m: any) => m.id), missed.map((m) => m.messageId))
    // After the sync the socket is subscribed: the next message arrives live, once.
    const after = await ack(yan, 'chat:message', { roomId: room, text: 'after' })
    await eventually(() => live.length >= 1)
    assert.deepEqual(live.map((m) => m.seq), [after.seq])

    // room:join with lastSeq: everything after it, as room:history.
    const w = await chatClient(node.url, zed.token)
    const hist = next(w, 'room:history')
    const j = await ack(w, 'room:join', { roomId: room, lastSeq: 6 })
    assert.equal(j.lastSeq, 9)
    assert.deepEqual((await hist).messages.map((m: any) => m.seq), [7, 8, 9])
  })

  it('a join racing with live traffic sees every message exactly once, in order', async () => {
    const room = 'race'
    const s = await chatClient(node.url, (await devToken(node.url, 'racer')).token)
    await ack(s, 'room:join', room)
    const sending = (async () => {
      const out = []
      for (let i = 0; i < 60; i++) out.push(ack(s, 'chat:message', { roomId: room, text: `r${i}` }))
      return Promise.all(out)
    })()
    const late = await chatClient(node.url, (await devToken(node.url, 'late')).token)
    const got: number[] = []
    late.on('room:history', (h: any) => got.push(...h.messages.map((m: any) => m.seq)))
    late.on('chat:message', (m: any) => got.push(m.seq))
    await ack(late, 'room:join', { roomId: room, lastSeq: 0 })
    await sending
    await eventually(() => got.length >= 60, 5000, 'all 60')
    assert.deepEqual(got, Array.from({ length: 60 }, (_, i) => i + 1))
  })
})
