import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { dmRoomId, MAX_TEXT, SwitchboardClient, SwitchboardError } from '../../packages/client/src/index.ts'
import { eventually, tcpProxy, useIsolatedNode } from '../../services/chat/test/helpers.ts'
import { closeClients, essence, mintToken, sdkClient, storedMessages, until } from './helpers.ts'

/**
 * The SDK against one real node (in this process, its own database and Redis prefix): every part
 * of the public API once. The cluster file (sdk-cluster.test.ts) covers failures.
 */
describe('@switchboard/client against one node', () => {
  const node = useIsolatedNode({ RATE_LIMIT_MESSAGES: '100000', DEV_TOKEN_TTL_SECONDS: '60', SYNC_MAX_MESSAGES: '30', HISTORY_LIMIT: '20' })
  after(() => closeClients())

  const connected = (c: Awaited<ReturnType<typeof sdkClient>>['client']) => until(c.connection, (s) => s.status === 'connected', 10_000, 'connected')
  /** Two signed-in SDK clients, connected, both joined to `roomId`. */
  const pairInRoom = async (names: [string, string], roomId: string) => {
    const a = await sdkClient(node.url, names[0])
    const b = await sdkClient(node.url, names[1])
    await Promise.all([connected(a.client), connected(b.client)])
    const ra = a.client.room(roomId)
    const rb = b.client.room(roomId)
    await ra.join()
    await rb.join()
    return { a, b, ra, rb }
  }

  it('connects, joins, sends and receives: one message per seq, the pending entry replaced by its message, presence, rooms list', async () => {
    const a = await sdkClient(node.url, 'sdk-ana')
    const b = await sdkClient(node.url, 'sdk-ben')
    await Promise.all([connected(a.client), connected(b.client)])
    assert.deepEqual(a.client.connection.get().me, { userId: a.userId, username: 'sdk-ana', roles: [] })
    const ra = a.client.room('lobby-1')
    const rb = b.client.room('lobby-1')
    assert.equal(a.client.room('lobby-1'), ra, 'one handle per id')
    await ra.join()
    await rb.join()
    assert.equal(ra.state.get().status, 'joined')
    await until(a.client.presence, (p) => p.online.get(b.userId) === 'sdk-ben', 5000, 'ben online for ana')

    const before = ra.state.get()
    assert.equal(ra.state.get(), before, 'same snapshot while nothing changes')
    const sending = ra.send('hello 1')
    assert.equal(ra.state.get().pending.length, 1)
    const ok = await sending
    assert.equal(typeof ok.messageId, 'string')
    const sa = await until(ra.state, (s) => s.messages.some((m) => m.id === ok.messageId && m.version > 0), 5000, 'own echo')
    assert.equal(sa.pending.length, 0)
    assert.equal(sa.messages.filter((m) => m.seq === ok.seq).length, 1)
    const sb = await until(rb.state, (s) => s.messages.some((m) => m.id === ok.messageId), 5000, 'ben sees it')
    assert.equal(sb.unread, 1)
    assert.equal(sb.lastSeq, ok.seq)

    for (let i = 2; i <= 5; i++) void ra.send(`hello ${i}`)
    await until(rb.state, (s) => s.messages.length === 5, 5000, 'five messages')
    assert.deepEqual(rb.state.get().messages.map((m) => m.text), ['hello 1', 'hello 2', 'hello 3', 'hello 4', 'hello 5'])

    // The rooms list (GET /api/rooms on connect) follows live messages.
    await until(b.client.rooms, (r) => r.rooms.some((x) => x.id === 'lobby-1' && x.lastSeq === 5 && x.unread === 5), 5000, 'ben unread 5')
    await rb.markRead()
    await until(b.client.rooms, (r) => r.rooms.some((x) => x.id === 'lobby-1' && x.unread === 0), 5000, 'ben unread 0')
    assert.equal(rb.state.get().unread, 0)
    await until(ra.state, () => ra.readBy(5).includes(b.userId), 5000, 'ana sees ben read 5')
    assert.deepEqual(ra.readBy(5), [b.userId])
  })

  it('a burst comes as chat:messages frames (the SDK announces batches) and every view has it all, in order, without a repair sync', async () => {
    const { ra, rb } = await pairInRoom(['sdk-bea', 'sdk-bo'], 'burst-1')
    // One counter of the node's /metrics (labels in any order, the node's own among them).
    const counter = async (name: string, event: string) => {
      const line = (await (await fetch(`${node.url}/metrics`)).text()).split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(`event="${event}"`))
      return Number(line?.split(' ').at(-1) ?? 0)
    }
    const frames = () => counter('switchboard_events_out_total', 'chat:messages')
    const [frames0, syncs0] = [await frames(), await counter('switchboard_events_in_total', 'chat:sync')]
    const texts = Array.from({ length: 12 }, (_, i) => `burst ${i}`)
    await Promise.all(texts.map((t) => ra.send(t)))
    await until(rb.state, (s) => s.messages.length === texts.length, 5000, 'the whole burst')
    assert.deepEqual(rb.state.get().messages.map((m) => m.text), texts)
    assert.deepEqual(rb.state.get().messages.map((m) => m.seq), texts.map((_, i) => i + 1))
    assert.ok((await frames()) > frames0, 'the node sent chat:messages frames')
    assert.equal(await counter('switchboard_events_in_total', 'chat:sync'), syncs0, 'no gap made the SDK sync the room')
  })

  it('edits, deletes and reactions (emoji and room ids named like Object members) reach every view in their latest version', async () => {
    const a = await sdkClient(node.url, 'sdk-cara')
    const b = await sdkClient(node.url, 'sdk-dan')
    await Promise.all([connected(a.client), connected(b.client)])
    for (const roomId of ['constructor', '__proto__', 'toString']) {
      const ra = a.client.room(roomId)
      const rb = b.client.room(roomId)
      await ra.join()
      await rb.join()
      const m1 = await ra.send('one')
      const m2 = await ra.send('two')
      await until(rb.state, (s) => s.messages.length === 2, 5000, `${roomId}: two`)
      await ra.edit(m1.messageId, 'one, edited')
      await ra.remove(m2.messageId)
      for (const emoji of ['constructor', '__proto__', '👍']) await rb.react(m1.messageId, emoji, true)
      await ra.react(m1.messageId, '👍', true)
      await rb.react(m1.messageId, '👍', false)
      const stored = await storedMessages(node.url, (await mintToken(node.url, 'sdk-cara')).token, roomId)
      const want = stored.map(essence)
      for (const r of [ra, rb]) {
        await until(r.state, (s) => JSON.stringify(s.messages.map(essence)) === JSON.stringify(want), 5000, `${roomId}: view equals the database`)
        const first = r.state.get().messages[0]
        assert.equal(Object.getPrototypeOf(first.reactions), null, 'reactions are prototype-free')
        assert.deepEqual(Object.keys(first.reactions!).sort(), ['__proto__', 'constructor', '👍'].sort())
        assert.deepEqual(first.reactions!['👍'], [a.userId])
        assert.equal(r.state.get().messages[1].text, '')
        assert.ok(r.state.get().messages[1].deletedAt)
      }
    }
  })

  it('typing is shown to others and cleared; a DM from someone new makes the room appear in the rooms list with a notification', async () => {
    const { a, b, ra, rb } = await pairInRoom(['sdk-eve', 'sdk-fay'], 'typing-1')
    ra.typing(true)
    await until(rb.state, (s) => s.typists.some((t) => t.userId === a.userId && t.username === 'sdk-eve'), 5000, 'eve typing')
    ra.typing(true) // throttled: nothing new
    ra.typing(false)
    await until(rb.state, (s) => s.typists.length === 0, 5000, 'eve stopped')

    const dm = dmRoomId(a.userId, b.userId)
    assert.equal(b.client.rooms.get().rooms.some((r) => r.id === dm), false)
    const rdm = a.client.room(dm)
    await rdm.join()
    await rdm.send('psst')
    await until(b.client.notifications, (n) => n.items.some((x) => x.type === 'dm' && x.roomId === dm), 5000, 'dm notification')
    assert.equal(b.client.notifications.get().unseen, 1)
    b.client.notifications.markSeen()
    assert.equal(b.client.notifications.get().unseen, 0)
    await until(b.client.rooms, (r) => r.rooms.some((x) => x.id === dm && x.unread === 1), 5000, 'dm room listed with 1 unread')
  })

  it('final codes fail the entry and reject; discard removes it; later sends still go', async () => {
    const a = await sdkClient(node.url, 'sdk-gus')
    await connected(a.client)
    const r = a.client.room('final-1')
    await r.join()
    const tooLong = r.send('x'.repeat(MAX_TEXT + 1))
    const next = r.send('after the long one')
    const err = await tooLong.then(
      () => null,
      (e: unknown) => e,
    )
    assert.ok(err instanceof SwitchboardError)
    assert.ok(['BAD_REQUEST', 'TOO_LARGE'].includes(err.code), err.code)
    await next
    const s = r.state.get()
    assert.equal(s.pending.length, 1)
    assert.equal(s.pending[0].status, 'failed')
    r.discard(s.pending[0].clientMsgId)
    assert.equal(r.state.get().pending.length, 0)
    const forbidden = await a.client.room('dm:someone:else').join().then(
      () => null,
      (e: unknown) => e,
    )
    assert.ok(forbidden instanceof SwitchboardError && forbidden.code === 'FORBIDDEN', String(forbidden))
    assert.equal(a.client.room('dm:someone:else').state.get().status, 'error')
  })

  it('uploads an attachment (roomId before the file), sends it, and fetches its bytes back', async () => {
    const a = await sdkClient(node.url, 'sdk-hal')
    await connected(a.client)
    const r = a.client.room('files-1')
    await r.join()
    const bytes = new TextEncoder().encode('hello attachment\n')
    const att = await a.client.upload('files-1', new Blob([bytes], { type: 'text/plain' }), 'note.txt')
    assert.equal(att.fileName, 'note.txt')
    const ok = await r.send('see file', { attachment: att })
    const s = await until(r.state, (x) => x.messages.some((m) => m.id === ok.messageId && m.version > 0), 5000, 'stored echo')
    assert.equal(s.messages.find((m) => m.id === ok.messageId)?.attachment?.id, att.id)
    const blob = await a.client.fetchAttachment(att.url)
    assert.equal(await blob.text(), 'hello attachment\n')
  })

  it('admin: stats, announce (heard through on("announce")); a non-admin gets FORBIDDEN', async () => {
    const root = await sdkClient(node.url, 'sdk-root', { roles: ['admin'], client: { admin: true } })
    const plain = await sdkClient(node.url, 'sdk-plain')
    await Promise.all([connected(root.client), connected(plain.client)])
    await until(root.client.connection, (s) => s.me?.roles.includes('admin') === true, 1000, 'admin role')
    const heard: string[] = []
    const off = plain.client.on('announce', (e) => heard.push(e.text))
    let stats: Awaited<ReturnType<typeof root.client.admin.stats>> | undefined
    const deadline = Date.now() + 5000
    while (!stats && Date.now() < deadline) stats = await root.client.admin.stats().catch(() => undefined)
    assert.ok(stats && stats.nodes.length === 1 && stats.sockets['/chat'] >= 2, JSON.stringify(stats))
    await root.client.admin.announce('maintenance at noon')
    await eventually(() => heard.includes('maintenance at noon'), 5000, 'announce heard')
    off()
    await assert.rejects(plain.client.admin.stats(), (e: unknown) => e instanceof SwitchboardError && e.code === 'FORBIDDEN')
  })

  it('refreshes the token before it expires (auth:refresh on every namespace) and keeps working', async () => {
    // Dev tokens here live 60 s; refreshBeforeMs is capped at 90 % of the remaining life, so the
    // provider is asked again about 6 s after connect (not in a loop, though 60 s were asked for).
    const a = await sdkClient(node.url, 'sdk-ivy', { client: { refreshBeforeMs: 60_000 } })
    await connected(a.client)
    const r = a.client.room('refresh-1')
    await r.join()
    const started = Date.now()
    await eventually(() => a.tokens() >= 2, 12_000, 'a refresh')
    const after = Date.now() - started
    assert.ok(after > 3000, `refreshed after ${after} ms, not at once`)
    await new Promise((res) => setTimeout(res, 1000))
    assert.equal(a.tokens(), 2, 'one refresh per lifetime, no loop')
    assert.equal(a.client.connection.get().status, 'connected')
    assert.equal(a.client.connection.get().error, null)
    await r.send('after refresh')
  })

  it('a refused token: a provider is asked again and the client connects; a fixed refused token stays refused', async () => {
    const good = await mintToken(node.url, 'sdk-jon')
    let asked = 0
    const seen: string[] = []
    const c = new SwitchboardClient({ url: node.url, token: () => (++asked === 1 ? 'not.a.token' : good.token), socket: { transports: ['websocket'] } })
    c.connection.subscribe(() => {
      const e = c.connection.get().error
      if (e) seen.push(e.code)
    })
    const r = c.room('auth-1')
    const joined = r.join() // before connect: joins once connected
    c.connect()
    await joined
    assert.ok(asked >= 2, `provider asked ${asked} times`)
    assert.ok(seen.includes('AUTH_INVALID'), seen.join())
    assert.equal(c.connection.get().status, 'connected')
    await c.close()

    const fixed = new SwitchboardClient({ url: node.url, token: 'not.a.token', socket: { transports: ['websocket'] } })
    fixed.connect()
    await until(fixed.connection, (x) => x.error?.code === 'AUTH_INVALID', 5000, 'refused')
    await new Promise((res) => setTimeout(res, 1500))
    assert.equal(fixed.connection.get().status, 'connecting')
    await fixed.close()
  })

  it('an admin kick: the client reports SERVER_DISCONNECT, reconnects with a fresh token and resyncs its rooms', async () => {
    const root = await sdkClient(node.url, 'sdk-root2', { roles: ['admin'], client: { admin: true } })
    const user = await sdkClient(node.url, 'sdk-kicked')
    await Promise.all([connected(root.client), connected(user.client)])
    const r = user.client.room('kick-1')
    await r.join()
    const peer = root.client.room('kick-1')
    await peer.join()
    const errors: string[] = []
    user.client.connection.subscribe(() => {
      const e = user.client.connection.get().error
      if (e) errors.push(e.code)
    })
    const before = user.tokens()
    let kicked = false
    const deadline = Date.now() + 5000
    while (!kicked && Date.now() < deadline) kicked = await root.client.admin.kick(user.userId).then(() => true, () => false)
    assert.ok(kicked)
    await until(user.client.connection, (s) => s.status === 'reconnecting', 5000, 'kicked')
    await peer.send('while you were out')
    await until(r.state, (s) => s.status === 'joined' && s.messages.some((m) => m.text === 'while you were out'), 10_000, 'back and synced')
    assert.ok(errors.includes('SERVER_DISCONNECT'), errors.join())
    assert.ok(user.tokens() > before, 'a fresh token was asked for')
  })

  it('more missed than a sync carries (hasMore): the room starts over from its newest page, loadOlder reaches the rest, the view equals the database', async () => {
    // The away client reaches the node through a proxy of its own: cutting it keeps the client out.
    const gate = await tcpProxy(node.port)
    try {
      const away = await sdkClient(`http://127.0.0.1:${gate.port}`, 'sdk-far')
      const here = await sdkClient(node.url, 'sdk-near')
      await Promise.all([connected(away.client), connected(here.client)])
      const ra = away.client.room('far-1')
      const rb = here.client.room('far-1')
      await ra.join()
      await rb.join()
      const first = await rb.send('before 0')
      for (let i = 1; i < 5; i++) await rb.send(`before ${i}`)
      await until(ra.state, (s) => s.messages.length === 5, 5000, 'away has 5')
      gate.cut()
      await until(away.client.connection, (s) => s.status === 'reconnecting', 5000, 'away disconnected')
      for (let i = 0; i < 45; i++) void rb.send(`while away ${i}`)
      await until(rb.state, (s) => s.messages.length === 50 && s.pending.length === 0, 10_000, '45 sent')
      await rb.edit(first.messageId, 'before 0 (edited while away)')
      gate.restore()
      await until(ra.state, (s) => s.status === 'joined' && s.hasOlder && s.messages.at(-1)?.text === 'while away 44', 10_000, 'started over from the newest page')
      assert.equal(ra.state.get().messages.length, 20, 'the newest page (HISTORY_LIMIT)')
      while (ra.state.get().hasOlder) await ra.loadOlder()
      const want = (await storedMessages(node.url, (await mintToken(node.url, 'sdk-near')).token, 'far-1')).map(essence)
      assert.equal(want.length, 50)
      assert.deepEqual(ra.state.get().messages.map(essence), want)
      assert.equal(ra.state.get().messages[0].text, 'before 0 (edited while away)')
    } finally {
      await gate.close()
    }
  })

  it('createRoom: a private room with a member; the member is told (invite) and the room appears in their list', async () => {
    const owner = await sdkClient(node.url, 'sdk-owner')
    const member = await sdkClient(node.url, 'sdk-member')
    await Promise.all([connected(owner.client), connected(member.client)])
    await until(member.client.rooms, (r) => !r.loading, 5000, 'rooms loaded')
    const created = await owner.client.createRoom({ id: 'private-1', name: 'Private one', private: true, members: [member.userId] })
    assert.deepEqual({ id: created.id, private: created.private }, { id: 'private-1', private: true })
    await until(member.client.notifications, (n) => n.items.some((x) => x.type === 'invite' && x.roomId === 'private-1'), 5000, 'invite')
    await until(member.client.rooms, (r) => r.rooms.some((x) => x.id === 'private-1' && x.name === 'Private one'), 5000, 'listed')
    await until(owner.client.rooms, (r) => r.rooms.some((x) => x.id === 'private-1'), 5000, 'listed for the owner')
    const stranger = await sdkClient(node.url, 'sdk-stranger')
    await connected(stranger.client)
    await assert.rejects(stranger.client.room('private-1').join(), (e: unknown) => e instanceof SwitchboardError && e.code === 'FORBIDDEN')
  })

  it('a room I follow no more: its mentions notify, and each message counts once in unread (live and pushed alike)', async () => {
    const a = await sdkClient(node.url, 'sdk-lou')
    const b = await sdkClient(node.url, 'sdk-kim')
    await Promise.all([connected(a.client), connected(b.client)])
    const ra = a.client.room('mention-1')
    const rb = b.client.room('mention-1')
    await ra.join()
    await rb.join()
    await rb.leave() // stops following here; still a member
    await b.client.rooms.refresh()
    const before = b.client.rooms.get().rooms.find((r) => r.id === 'mention-1')
    assert.ok(before, 'listed')
    await ra.send('hello @sdk-kim, look')
    const n = await until(b.client.notifications, (x) => x.items.some((i) => i.type === 'mention' && i.roomId === 'mention-1'), 5000, 'mention')
    assert.equal(n.items[0].from.username, 'sdk-lou')
    await until(b.client.rooms, (r) => r.rooms.find((x) => x.id === 'mention-1')?.unread === before.unread + 1, 5000, 'unread +1')
    await ra.send('and again, no mention')
    await ra.send('@sdk-kim once more')
    await until(b.client.notifications, (x) => x.items.filter((i) => i.roomId === 'mention-1').length === 2, 5000, 'second mention')
    // The socket still hears the room (a member), so every message counts; a mention's push does not count it twice.
    await until(b.client.rooms, (r) => r.rooms.find((x) => x.id === 'mention-1')?.lastSeq === 3, 5000, 'lastSeq 3')
    assert.equal(b.client.rooms.get().rooms.find((x) => x.id === 'mention-1')?.unread, before.unread + 3, 'three messages, each counted once')
    assert.equal(rb.state.get().messages.length, 0, 'not followed: its timeline stays as it was')
  })
})
