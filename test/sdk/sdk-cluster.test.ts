import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import pg from 'pg'
import type { Manager, Socket } from 'socket.io-client'
import { SwitchboardClient, SwitchboardError, type Message, type RoomHandle, type SyncOk } from '../../packages/client/src/index.ts'
import { tcpProxy } from '../../services/chat/test/helpers.ts'
import { storedView } from '../chaos/harness.ts'
import { closeAll, eventually, FAULT_TEST_ENV, octetsByNode, sleep, startTestCluster, type TestCluster } from '../cluster/helpers.ts'
import { boundFetch, closeClients, mintToken, sdkClient, until } from './helpers.ts'

/**
 * The SDK from Node against a real 3-node cluster behind nginx (ip_hash on the source address
 * 127.0.N.1 places each client on a chosen node), Redis behind a proxy that can be cut. Every
 * case ends with each SDK client's view of the room equal to the database, nothing pending.
 */

const PREFIX = 'sbsdk:'

/** A message as the database has it (test/chaos/harness.ts storedView), from an SDK message. */
const asStored = (m: Message) => ({
  seq: m.seq,
  id: m.id,
  userId: m.userId,
  text: m.text,
  edited: m.editedAt !== undefined,
  deleted: m.deletedAt !== undefined,
  reactions: m.deletedAt ? [] : Object.keys(m.reactions ?? {}).flatMap((e) => m.reactions![e].map((u) => `${e} ${u}`)).sort(),
  version: m.version,
})

/** Where a failing case prints what its victims' sockets saw. */
let trace: string[] | undefined

/** Records a client's /chat traffic (events in and out, sync answers) into `log`, for failure reports. */
function traceWire(name: string, c: SwitchboardClient, log: string[]): void {
  const chat = (c as unknown as { chat: Socket }).chat
  const brief = (m: Message) => `${m.seq}@${m.version}`
  chat.onAny((ev: string, p: Record<string, unknown>) => {
    if (ev !== 'chat:typing') log.push(`${name} in ${ev} ${String(p?.messageId ?? '')} seq=${String(p?.seq ?? '')} v=${String(p?.version ?? '')} ${String(p?.emoji ?? '')}`)
  })
  chat.onAnyOutgoing((ev: string, p: unknown) => log.push(`${name} out ${ev} ${JSON.stringify(p).slice(0, 200)}`))
  const emitWithAck = chat.emitWithAck.bind(chat) as (ev: string, p: unknown) => Promise<SyncOk>
  ;(chat as unknown as { emitWithAck: typeof emitWithAck }).emitWithAck = async (ev, p) => {
    const res = await emitWithAck(ev, p)
    if (ev === 'chat:sync' && res) {
      const per = (o: Record<string, Message[]> | undefined) => Object.fromEntries(Object.entries(o ?? {}).map(([k, v]) => [k, v.map(brief)]))
      log.push(`${name} sync answer ${JSON.stringify({ rooms: per(res.rooms), updated: per(res.updated), hasMore: res.hasMore })}`)
    }
    return res
  }
}

const engineOf = (c: SwitchboardClient) => (c as unknown as { manager: Manager | null }).manager?.engine

describe('@switchboard/client on a 3-node cluster', () => {
  let test: TestCluster
  let db: pg.Pool
  let octets: Map<string, number[]>
  let redisPort = 0
  let redisProxy: Awaited<ReturnType<typeof tcpProxy>>
  const dir = mkdtempSync(join(tmpdir(), 'sb-sdk-'))
  const url = () => test.cluster.url
  /** The k-th source octet that nginx sends to node `i`. */
  const on = (i: number, k: number) => octets.get(test.cluster.nodes[i].id)![k]
  const figures: string[] = []

  before(async () => {
    redisProxy = await tcpProxy(() => redisPort)
    test = await startTestCluster(
      dir,
      PREFIX,
      { ...FAULT_TEST_ENV },
      3,
      (_i, env) => {
        redisPort = Number(new URL(env.REDIS_URL).port)
        return { REDIS_URL: `redis://127.0.0.1:${redisProxy.port}` }
      },
    )
    octets = await octetsByNode(
      url(),
      test.cluster.nodes.map((n) => n.id),
      4,
    )
  })

  after(async () => {
    await closeClients()
    closeAll()
    await db?.end().catch(() => undefined)
    await test?.stop()
    await redisProxy?.close()
    rmSync(dir, { recursive: true, force: true })
    if (figures.length > 0) console.log(`sdk figures:\n${figures.join('\n')}`)
  })

  const pool = () => (db ??= new pg.Pool({ connectionString: test.database.url, max: 3 }))

  /** Waits until every room handle's view equals the database (older pages loaded as needed), nothing pending. */
  async function viewsEqualDatabase(roomId: string, rooms: RoomHandle[], ms: number): Promise<number> {
    let stored = await storedView(pool(), roomId)
    await eventually(
      async () => {
        stored = await storedView(pool(), roomId)
        for (const r of rooms) {
          const s = r.state.get()
          if (s.hasOlder && !s.loadingOlder) await r.loadOlder().catch(() => undefined)
          const view = r.state.get().messages.map(asStored)
          if (r.state.get().pending.length > 0 || r.state.get().status !== 'joined') return false
          if (JSON.stringify(view) !== JSON.stringify(stored.messages)) return false
        }
        return true
      },
      ms,
      `every view of ${roomId} equal to the database`,
    ).catch((err: Error) => {
      if (trace) console.log(`wire trace:\n${trace.join('\n')}`)
      for (const r of rooms) {
        const s = r.state.get()
        const view = s.messages.map(asStored)
        const diff = view.filter((v, i) => JSON.stringify(v) !== JSON.stringify(stored.messages[i])).slice(0, 3)
        err.message += `\n  ${r.id}: status ${s.status}, pending ${s.pending.length}, ${view.length} held vs ${stored.messages.length} stored; first differences ${JSON.stringify(diff)} vs ${JSON.stringify(diff.map((d) => stored.messages.find((m) => m.seq === d.seq)))}`
      }
      throw err
    })
    for (const r of rooms) {
      const seqs = r.state.get().messages.map((m) => m.seq)
      assert.equal(new Set(seqs).size, seqs.length, 'no duplicate seq')
      assert.equal(r.state.get().version >= stored.version || stored.messages.length === 0, true, `${r.id}: version ${r.state.get().version} >= room ${stored.version}`)
    }
    return stored.messages.length
  }

  /** Each sender's messages stored once (by clientMsgId) and in the order they were sent. */
  async function storedOnceInOrder(roomId: string, sent: Map<string, string[]>): Promise<void> {
    const rows = (await pool().query('select seq, user_id, client_msg_id from messages where room_id = $1 order by seq', [roomId])).rows
    const count = new Map<string, number>()
    for (const r of rows) if (r.client_msg_id) count.set(r.client_msg_id, (count.get(r.client_msg_id) ?? 0) + 1)
    for (const [who, ids] of sent) {
      for (const id of ids) assert.equal(count.get(id), 1, `${who}: clientMsgId ${id} stored ${count.get(id) ?? 0} times`)
      const order = rows.filter((r) => ids.includes(r.client_msg_id)).map((r) => ids.indexOf(r.client_msg_id))
      assert.deepEqual(order, [...order].sort((a, b) => a - b), `${who}: stored in send order`)
    }
  }

  /** Sends `n` messages through the outbox (one every `gapMs`), recording their clientMsgIds in send order. */
  function sendSeries(r: RoomHandle, tag: string, n: number, gapMs: number, ids: string[], onAck?: (i: number, messageId: string) => void): Promise<void> {
    return (async () => {
      const all: Promise<unknown>[] = []
      for (let i = 0; i < n; i++) {
        const p = r.send(`${tag} ${i}`)
        const pend = r.state.get().pending
        ids.push(pend[pend.length - 1].clientMsgId)
        all.push(p.then((ok) => onAck?.(i, ok.messageId)))
        if (gapMs > 0) await sleep(gapMs)
      }
      await Promise.all(all)
    })()
  }

  it('close() leaves no timer and no socket running', async () => {
    const kinds = () => {
      const c = new Map<string, number>()
      for (const k of process.getActiveResourcesInfo()) c.set(k, (c.get(k) ?? 0) + 1)
      return c
    }
    await sleep(200)
    const baseline = kinds()
    const { token } = await mintToken(url(), 'sdk-closer')
    const client = new SwitchboardClient({ url: url(), token: () => token, fetch: boundFetch(null), socket: { transports: ['websocket'] } })
    client.connect()
    await until(client.connection, (s) => s.status === 'connected', 10_000, 'connected')
    const r = client.room('close-1')
    await r.join()
    await r.send('bye')
    r.typing(true)
    const during = kinds()
    assert.ok((during.get('TCPSocketWrap') ?? 0) > (baseline.get('TCPSocketWrap') ?? 0), 'the client had a socket open')
    await client.close()
    assert.equal(client.connection.get().status, 'closed')
    await eventually(
      () => {
        const now = kinds()
        return ['Timeout', 'TCPSocketWrap'].every((k) => (now.get(k) ?? 0) <= (baseline.get(k) ?? 0))
      },
      3000,
      `no timer or socket left (baseline ${JSON.stringify([...baseline])}, now ${JSON.stringify([...kinds()])})`,
    )
  })

  it('SIGKILL of the node two clients are on, mid-stream: every view equals the database afterwards, resync time measured', async () => {
    const roomId = 'kill-1'
    const v1 = await sdkClient(url(), 'sdk-v1', { octet: on(0, 0) })
    const v2 = await sdkClient(url(), 'sdk-v2', { octet: on(0, 1) })
    const s1 = await sdkClient(url(), 'sdk-s1', { octet: on(1, 0) })
    const s2 = await sdkClient(url(), 'sdk-s2', { octet: on(2, 0) })
    const all = [v1, v2, s1, s2]
    await Promise.all(all.map((c) => until(c.client.connection, (s) => s.status === 'connected', 10_000, 'connected')))
    const rooms = all.map((c) => c.client.room(roomId))
    for (const r of rooms) await r.join()
    const [rv1, rv2, rs1, rs2] = rooms
    trace = []
    traceWire('v1', v1.client, trace)
    traceWire('v2', v2.client, trace)

    // Resync time per victim: from its disconnect to its room joined again (the sync merged).
    const resync: number[] = []
    for (const r of [rv1, rv2]) {
      let down = 0
      r.state.subscribe(() => {
        const st = r.state.get().status
        if (st !== 'joined' && down === 0) down = performance.now()
        else if (st === 'joined' && down > 0) {
          resync.push(performance.now() - down)
          down = 0
        }
      })
    }

    const sent = new Map<string, string[]>([['v1', []], ['s1', []], ['s2', []]])
    const changeErrors: string[] = []
    const N = 60
    const streams = [
      sendSeries(rv1, 'v1', N, 25, sent.get('v1')!),
      // s1 edits every 4th message of its own; s2 reacts to its own and deletes every 7th.
      sendSeries(rs1, 's1', N, 25, sent.get('s1')!, (i, id) => {
        if (i % 4 === 0) rs1.edit(id, `s1 ${i} (edited)`).catch((e: SwitchboardError) => changeErrors.push(e.code))
      }),
      sendSeries(rs2, 's2', N, 25, sent.get('s2')!, (i, id) => {
        rs2.react(id, i % 2 ? '👍' : 'constructor', true).catch((e: SwitchboardError) => changeErrors.push(e.code))
        if (i % 7 === 0) rs2.remove(id).catch((e: SwitchboardError) => changeErrors.push(e.code))
      }),
    ]
    await until(rs1.state, (s) => s.messages.length >= 40, 20_000, '40 messages before the kill')
    const killedAt = performance.now()
    await test.cluster.nodes[0].proc.stop('SIGKILL')
    await Promise.all(streams)
    const total = await viewsEqualDatabase(roomId, rooms, 30_000)
    const complete = performance.now() - killedAt
    assert.equal(total, 3 * N)
    await storedOnceInOrder(roomId, sent)
    assert.equal(resync.length >= 2, true, `both victims resynced (${resync.length})`)
    // The senders are on the surviving nodes: their changes are refused only when racing a delete.
    assert.ok(changeErrors.every((c) => c === 'NOT_FOUND'), changeErrors.join())
    figures.push(
      `node SIGKILL: resync (disconnect -> room joined again, sync merged) ${resync.map((x) => `${Math.round(x)} ms`).join(', ')}; kill -> every view equal to the database (after the last send) ${Math.round(complete)} ms; changes refused ${changeErrors.length} (${[...new Set(changeErrors)].join(', ') || 'none'}: a reaction racing its message's delete)`,
    )
    trace = undefined
    await test.cluster.restartNode(0)
    await Promise.all(all.map((c) => c.client.close()))
  })

  it('Redis cut while sending: sends answer UNAVAILABLE and the outbox resends; afterwards each stored once, in per-sender order', async () => {
    const roomId = 'redis-cut-1'
    const a = await sdkClient(url(), 'sdk-ra', { octet: on(0, 2) })
    const b = await sdkClient(url(), 'sdk-rb', { octet: on(1, 2) })
    const w = await sdkClient(url(), 'sdk-rw', { octet: on(2, 2) })
    const all = [a, b, w]
    await Promise.all(all.map((c) => until(c.client.connection, (s) => s.status === 'connected', 20_000, 'connected')))
    const rooms = all.map((c) => c.client.room(roomId))
    for (const r of rooms) await r.join()
    const seenCodes = new Set<string>()
    for (const r of rooms.slice(0, 2)) r.state.subscribe(() => r.state.get().pending.forEach((p) => p.error && seenCodes.add(p.error.code)))
    const sent = new Map<string, string[]>([['a', []], ['b', []]])
    const N = 40
    const streams = [sendSeries(rooms[0], 'a', N, 40, sent.get('a')!), sendSeries(rooms[1], 'b', N, 40, sent.get('b')!)]
    await until(rooms[2].state, (s) => s.messages.length >= 10, 20_000, '10 messages before the cut')
    redisProxy.cut()
    await eventually(() => seenCodes.has('UNAVAILABLE'), 15_000, 'a send answered UNAVAILABLE')
    await sleep(1000)
    redisProxy.restore()
    await Promise.all(streams)
    await storedOnceInOrder(roomId, sent)
    assert.equal(await viewsEqualDatabase(roomId, rooms, 30_000), 2 * N)
    figures.push(`redis cut: codes seen by the outbox ${[...seenCodes].join(', ')}`)
    await Promise.all(all.map((c) => c.client.close()))
  })

  it('resend storm: many sends in flight while transports are force-closed again and again: each clientMsgId once, per-client order kept', async () => {
    const roomId = 'storm-1'
    const clients = await Promise.all([0, 1, 2, 0].map((node, k) => sdkClient(url(), `sdk-st${k}`, { octet: on(node, 3 - Math.floor(k / 3)), client: { ackTimeoutMs: 2000 } })))
    await Promise.all(clients.map((c) => until(c.client.connection, (s) => s.status === 'connected', 20_000, 'connected')))
    const rooms = clients.map((c) => c.client.room(roomId))
    for (const r of rooms) await r.join()
    // Sends cut off by a close: their entries go back to waiting with the reason, then are resent.
    const interrupted = new Set<string>()
    for (const r of rooms) r.state.subscribe(() => r.state.get().pending.forEach((p) => p.error && interrupted.add(`${p.error.code} ${p.clientMsgId}`)))
    const sent = new Map<string, string[]>()
    const N = 50
    const streams = rooms.map((r, k) => {
      const ids: string[] = []
      sent.set(`st${k}`, ids)
      return sendSeries(r, `st${k}`, N, 30, ids)
    })
    let closes = 0
    let storming = true
    const storm = (async () => {
      while (storming) {
        const c = clients[closes % clients.length].client
        engineOf(c)?.close()
        closes++
        await sleep(100 + Math.random() * 100)
      }
    })()
    await Promise.all(streams)
    storming = false
    await storm
    assert.ok(closes >= 6, `transports force-closed ${closes} times`)
    assert.ok(interrupted.size >= 1, 'at least one send was interrupted and resent')
    await storedOnceInOrder(roomId, sent)
    assert.equal(await viewsEqualDatabase(roomId, rooms, 30_000), clients.length * N)
    figures.push(`resend storm: ${clients.length} clients x ${N} sends, ${closes} forced transport closes, ${interrupted.size} sends interrupted and resent (${[...new Set([...interrupted].map((x) => x.split(' ')[0]))].join(', ')})`)
    await Promise.all(clients.map((c) => c.client.close()))
  })

  it('edits, deletions and reactions made while a client was disconnected arrive through the sync (updated)', async () => {
    const roomId = 'away-1'
    // The away client reaches nginx through a proxy of its own: cutting it keeps the client out.
    const nginxPort = Number(new URL(url()).port)
    const gate = await tcpProxy(nginxPort)
    try {
      const away = await sdkClient(`http://127.0.0.1:${gate.port}`, 'sdk-away')
      const actor = await sdkClient(url(), 'sdk-actor', { octet: on(1, 1) })
      await Promise.all([away, actor].map((c) => until(c.client.connection, (s) => s.status === 'connected', 20_000, 'connected')))
      const ra = away.client.room(roomId)
      const rb = actor.client.room(roomId)
      await ra.join()
      await rb.join()
      const ids: string[] = []
      for (let i = 0; i < 8; i++) ids.push((await rb.send(`m ${i}`)).messageId)
      await until(ra.state, (s) => s.messages.length === 8 && s.messages.every((m) => m.version > 0), 10_000, 'away has all 8')
      await ra.react(ids[0], '🎉', true)
      await until(ra.state, (s) => s.messages[0].reactions?.['🎉'] !== undefined, 10_000, 'away saw its reaction')
      const versionBefore = ra.state.get().version

      gate.cut()
      await until(away.client.connection, (s) => s.status === 'reconnecting', 10_000, 'away disconnected')
      await rb.edit(ids[1], 'm 1 (edited while away)')
      await rb.remove(ids[2])
      await rb.react(ids[3], 'constructor', true)
      await rb.react(ids[3], '__proto__', true)
      await rb.react(ids[0], '🎉', true)
      await rb.edit(ids[4], 'm 4 first edit')
      await rb.edit(ids[4], 'm 4 second edit')
      const stillOld = ra.state.get()
      assert.equal(stillOld.messages[1].text, 'm 1', 'nothing reached the away client')
      gate.restore()

      await viewsEqualDatabase(roomId, [ra, rb], 30_000)
      const s = ra.state.get()
      assert.equal(s.messages.length, 8, 'no new messages: everything came as updated')
      assert.ok(s.version > versionBefore)
      assert.equal(s.messages[1].text, 'm 1 (edited while away)')
      assert.ok(s.messages[2].deletedAt)
      assert.deepEqual(Object.keys(s.messages[3].reactions!).sort(), ['__proto__', 'constructor'])
      assert.equal(Object.getPrototypeOf(s.messages[3].reactions), null)
      assert.deepEqual([...s.messages[0].reactions!['🎉']].sort(), [actor.userId, away.userId].sort())
      assert.equal(s.messages[4].text, 'm 4 second edit')
      await Promise.all([away, actor].map((c) => c.client.close()))
    } finally {
      await gate.close()
    }
  })
})
