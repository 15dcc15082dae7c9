import assert from 'node:assert/strict'
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { SignJWT } from 'jose'
import type { Browser } from 'playwright-core'
import { io } from 'socket.io-client'
import {
  buildClient,
  eventually,
  forwardedFor,
  joinRoom,
  launchChromium,
  message,
  octetPerNode,
  openUser,
  pageNode,
  screenshot,
  sendText,
  shownMessages,
  startWebCluster,
  userIdOf,
  waitConnected,
  type User,
  type UserOptions,
  type WebCluster,
} from './browser.ts'

/**
 * The React client built from the current sources, served by three real nodes behind real
 * nginx, in Debian's Chromium. Each browser context sends `X-Forwarded-For: 127.0.<n>.1`, which
 * nginx trusts from 127.0.0.1 (realip), so ip_hash puts each context on a node we choose.
 * Screenshots of the main views go to test-results/web/.
 */
describe('web client in Chromium, across the cluster behind nginx', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sb-web-'))
  chmodSync(dir, 0o755)
  let web: WebCluster
  let browser: Browser
  let octets: Map<string, number>
  const opened: User[] = []
  const url = () => web.cluster.url
  const nodeId = (i: number) => web.cluster.nodes[i].id
  const octetOf = (i: number) => octets.get(nodeId(i))!
  /** A signed-in browser context placed on node `i`. */
  const user = async (name: string, i: number, opts: Omit<UserOptions, 'octet'> = {}) => {
    const u = await openUser(browser, url(), name, { octet: octetOf(i), ...opts })
    opened.push(u)
    return u
  }
  const openListedRoom = async (u: User, roomId: string) => {
    await u.page.locator(`[data-testid="room-item"][data-room-id="${roomId}"]`).click()
    await u.page.locator(`[data-testid="room"][data-room-id="${roomId}"][data-joined="true"]`).waitFor()
  }
  const textOf = async (u: User, testId: string) => (await u.page.getByTestId(testId).textContent()) ?? ''

  before(async () => {
    await buildClient(join(dir, 'web'))
    web = await startWebCluster(dir, join(dir, 'web'), { RATE_LIMIT_MESSAGES: '1000' })
    browser = await launchChromium()
    octets = await octetPerNode(url(), web.cluster.nodes.map((n) => n.id))
  })

  after(async () => {
    for (const u of opened) await u.context.close().catch(() => undefined)
    await browser?.close()
    await web?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('two users on different nodes: create and join a room, messages both ways, reply, typing, receipt, DM, presence', async () => {
    const ana = await user('ana', 0)
    await screenshot(ana.page, 'rooms-empty')
    const ben = await user('ben', 1)

    // Each page is on the node we picked, for plain HTTP and for its WebSocket handshake alike.
    assert.equal(await pageNode(ana.page), nodeId(0))
    assert.equal(await pageNode(ben.page), nodeId(1))
    assert.deepEqual([...new Set(ana.socketNodes)], [nodeId(0)], 'ana’s socket is on node 1')
    assert.deepEqual([...new Set(ben.socketNodes)], [nodeId(1)], 'ben’s socket is on node 2')
    assert.ok(ana.wsForwardedFor.includes(forwardedFor(octetOf(0))), 'Chromium sends the extra X-Forwarded-For on the WebSocket handshake')
    assert.ok(ana.websockets.length > 0 && ben.websockets.length > 0, 'both use WebSocket')

    // Ana creates a public room with an id; Ben joins it by that id.
    await ana.page.getByTestId('room-create-name').fill('Team room')
    await ana.page.getByTestId('room-create-id').fill('team')
    await ana.page.getByTestId('room-create-submit').click()
    await ana.page.locator('[data-testid="room"][data-room-id="team"][data-joined="true"]').waitFor()
    assert.equal(await textOf(ana, 'room-title'), 'Team room')
    await joinRoom(ben.page, 'team')

    await sendText(ana.page, 'hello from ana')
    await message(ben.page, 'hello from ana').waitFor()
    await sendText(ben.page, 'hi ana, ben here')
    await message(ana.page, 'hi ana, ben here').waitFor()

    // Reply: the composer carries replyTo; both sides show what it answers.
    await message(ben.page, 'hello from ana').getByTestId('reply').click()
    await ben.page.getByTestId('reply-preview').waitFor()
    await ben.page.getByTestId('composer').fill('a reply')
    await ben.page.getByTestId('send').click()
    for (const u of [ana, ben]) {
      const reply = message(u.page, 'a reply')
      await reply.waitFor()
      assert.match((await reply.getByTestId('reply-quote').textContent()) ?? '', /ana: hello from ana/)
    }
    assert.equal(await ben.page.getByTestId('reply-preview').count(), 0, 'the reply target is cleared after sending')

    // Typing: shown on the other node, gone after a few seconds of silence.
    await ana.page.getByTestId('composer').fill('I am typi')
    await ben.page.getByTestId('typing').filter({ hasText: 'ana is typing…' }).waitFor()
    await ben.page.getByTestId('typing').filter({ hasText: 'typing' }).waitFor({ state: 'detached' })
    await ana.page.getByTestId('composer').fill('')

    // Read receipt: Ben has the room open, so Ana's last message shows as seen by him.
    await sendText(ana.page, 'did you see this?')
    await message(ben.page, 'did you see this?').waitFor()
    await ana.page.getByTestId('seen-by').filter({ hasText: 'Seen by ben' }).waitFor()

    // Presence: Ben is online in Ana's room, with a green dot on his messages.
    const benId = await userIdOf(ben.page)
    const benOnline = ana.page.locator(`[data-testid="online-users"] li[data-user-id="${benId}"]`)
    await benOnline.waitFor()
    await ana.page.locator(`[data-testid="messages"] [data-testid="presence-dot"][data-user-id="${benId}"][data-online="true"]`).first().waitFor()

    // Both see the same messages, once each, in seq order.
    const expected = ['hello from ana', 'hi ana, ben here', 'a reply', 'did you see this?']
    for (const u of [ana, ben]) {
      const shown = await shownMessages(u.page)
      assert.deepEqual(shown.map((m) => m.text), expected, `${u.name} sees each message once, in order`)
      assert.deepEqual(shown.map((m) => m.seq), [1, 2, 3, 4])
    }
    await screenshot(ana.page, 'room-desktop')

    // A DM: Ana picks Ben from the online list, Ben picks Ana: both land in the same dm: room.
    await benOnline.getByTestId('dm').click()
    await ana.page.locator('[data-testid="room"][data-joined="true"]').filter({ has: ana.page.locator('[data-testid="room-title"]', { hasText: '@ben' }) }).waitFor()
    const dmId = await ana.page.getByTestId('room').getAttribute('data-room-id')
    assert.match(dmId ?? '', /^dm:u_[\w-]+:u_[\w-]+$/)
    await sendText(ana.page, 'psst, ben')
    await message(ana.page, 'psst, ben').waitFor()
    // Meanwhile in the team room (joined, not open): an unread count for Ana.
    await sendText(ben.page, 'anyone here?')
    await ana.page.locator('[data-testid="room-item"][data-room-id="team"] [data-testid="unread"]').filter({ hasText: '1' }).waitFor()
    const anaId = await userIdOf(ana.page)
    await message(ben.page, 'hello from ana').getByTestId('author').click() // Ana's name on her message
    await ben.page.locator(`[data-testid="room"][data-room-id="${dmId}"][data-joined="true"]`).waitFor()
    await message(ben.page, 'psst, ben').waitFor()
    assert.ok(dmId!.includes(anaId) && dmId!.includes(benId))
    // Ben's own message, read before he switched rooms, is not unread for him.
    await ben.page.locator('[data-testid="room-item"][data-room-id="team"] [data-testid="unread"]').waitFor({ state: 'detached' })
    await screenshot(ben.page, 'direct-message')

    // Ben leaves: Ana sees him go offline (list and dots) without reloading.
    await openListedRoom(ana, 'team')
    await message(ana.page, 'anyone here?').waitFor()
    await ana.page.locator('[data-testid="room-item"][data-room-id="team"] [data-testid="unread"]').waitFor({ state: 'detached' })
    await benOnline.waitFor()
    await ben.context.close()
    await benOnline.waitFor({ state: 'detached' })
    await eventually('ben’s dots turn grey', async () =>
      (await ana.page.locator(`[data-testid="presence-dot"][data-user-id="${benId}"][data-online="true"]`).count()) === 0 &&
      (await ana.page.locator(`[data-testid="presence-dot"][data-user-id="${benId}"][data-online="false"]`).count()) > 0,
    )
  })

  it('a long-polling-only session (?transport=polling) works through nginx and stays on its node', async () => {
    const polly = await user('polly', 2, { query: '?transport=polling' })
    await joinRoom(polly.page, 'team')
    const ana = opened[0]
    await openListedRoom(ana, 'team')
    await sendText(polly.page, 'from a poller')
    await message(ana.page, 'from a poller').waitFor()
    await sendText(ana.page, 'to the poller')
    await message(polly.page, 'to the poller').waitFor()
    assert.deepEqual(polly.websockets, [], 'no WebSocket was opened')
    assert.ok(polly.socketNodes.length >= 4, 'several polling requests')
    assert.deepEqual([...new Set(polly.socketNodes)], [nodeId(2)], 'every polling request was served by the session’s node')
    assert.equal(await polly.page.getByTestId('error').count(), 0)
  })

  it('shows the server’s refusals: an over-long message (BAD_REQUEST) and a private room (FORBIDDEN)', async () => {
    const ana = opened[0]
    await openListedRoom(ana, 'team')
    const before = await shownMessages(ana.page)
    const long = 'x'.repeat(5001)
    await ana.page.getByTestId('composer').fill(long)
    await ana.page.getByTestId('composer-count').filter({ hasText: '5001 / 5000' }).waitFor()
    await ana.page.getByTestId('composer').press('Enter')
    await ana.page.getByTestId('error').filter({ hasText: 'BAD_REQUEST' }).waitFor()
    assert.match(await textOf(ana, 'error'), /Message not sent: .*5000.*\(BAD_REQUEST\)/)
    assert.equal(await ana.page.getByTestId('composer').inputValue(), long, 'the text is handed back for editing')
    assert.equal(await ana.page.locator('[data-testid="message"]:not([data-seq])').count(), 0, 'no pending row is left')
    assert.deepEqual(await shownMessages(ana.page), before, 'nothing was stored')
    await screenshot(ana.page, 'error-too-long')
    await ana.page.getByTestId('composer').fill('')

    // A private room: its creator is in, anyone else is refused.
    await ana.page.getByTestId('room-create-name').fill('Secret plans')
    await ana.page.getByTestId('room-create-id').fill('secret')
    await ana.page.getByTestId('room-create-private').check()
    await ana.page.getByTestId('room-create-submit').click()
    await ana.page.locator('[data-testid="room"][data-room-id="secret"][data-joined="true"]').waitFor()
    const eve = await user('eve', 1)
    await eve.page.getByTestId('room-join-input').fill('secret')
    await eve.page.getByTestId('room-join-submit').click()
    await eve.page.getByTestId('error').filter({ hasText: 'FORBIDDEN' }).waitFor()
    assert.equal(await textOf(eve, 'room-title'), 'Pick a room', 'the room is not opened')
    assert.equal(await eve.page.locator('[data-testid="room-item"][data-room-id="secret"]').count(), 0)
  })

  it('rooms and reactions named after Object.prototype members work like any other room and reaction', async () => {
    const ana = opened[0]
    const cy = await user('cy', 2)
    for (const roomId of ['constructor', '__proto__']) {
      await joinRoom(ana.page, roomId)
      await joinRoom(cy.page, roomId)
      await sendText(ana.page, `hello in ${roomId}`)
      await message(cy.page, `hello in ${roomId}`).waitFor()
    }
    // Someone reacts with prototype names to a message in "constructor" (from a plain client).
    const res = await fetch(`${url()}/api/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'reactor' }) })
    const { token } = (await res.json()) as { token: string }
    const s = io(`${url()}/chat`, { auth: { token }, transports: ['websocket'], forceNew: true, reconnection: false })
    try {
      await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('connect_error', reject))
      assert.equal((await s.emitWithAck('room:join', 'constructor')).status, 'ok')
      const page = (await (await fetch(`${url()}/api/rooms/constructor/messages`, { headers: { authorization: `Bearer ${token}` } })).json()) as {
        messages: { id: string; text: string }[]
      }
      const target = page.messages.find((m) => m.text === 'hello in constructor')!
      for (const emoji of ['__proto__', 'constructor', 'toString']) {
        assert.equal((await s.emitWithAck('chat:react', { roomId: 'constructor', messageId: target.id, emoji, on: true })).status, 'ok')
      }
    } finally {
      s.disconnect()
    }
    await openListedRoom(cy, 'constructor')
    const chips = message(cy.page, 'hello in constructor').locator('.chip')
    await chips.filter({ hasText: 'toString 1' }).waitFor()
    assert.deepEqual((await chips.allTextContents()).map((t) => t.trim()).sort(), ['__proto__ 1', 'constructor 1', 'toString 1'])
    // The rooms keep working for both, on their different nodes.
    await sendText(cy.page, 'still fine')
    await openListedRoom(ana, 'constructor')
    await message(ana.page, 'still fine').waitFor()
    assert.equal(await cy.page.getByTestId('error').count(), 0, 'no error shown')
    await cy.context.close()
  })

  it('history: the newest page on open, older pages on demand, each message once in seq order', async () => {
    const res = await fetch(`${url()}/api/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'archivist' }) })
    const { token } = (await res.json()) as { token: string }
    const writer = io(`${url()}/chat`, { auth: { token }, transports: ['websocket'], forceNew: true, reconnection: false })
    try {
      await new Promise<void>((resolve, reject) => (writer.once('connect', resolve), writer.once('connect_error', reject)))
      assert.equal((await writer.timeout(5000).emitWithAck('room:join', { roomId: 'archive' })).status, 'ok')
      for (let i = 1; i <= 60; i++) {
        assert.equal((await writer.timeout(5000).emitWithAck('chat:message', { roomId: 'archive', text: `old ${i}` })).status, 'ok')
      }
    } finally {
      writer.disconnect()
    }
    const ana = opened[0]
    await joinRoom(ana.page, 'archive')
    const seqs = async () => (await shownMessages(ana.page)).map((m) => m.seq)
    const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)
    await eventually('the newest 50', async () => (await seqs()).length === 50)
    assert.deepEqual(await seqs(), range(11, 60))
    await ana.page.getByTestId('load-older').click()
    await ana.page.getByTestId('load-older').waitFor({ state: 'detached' })
    const shown = await shownMessages(ana.page)
    assert.deepEqual(shown.map((m) => m.seq), range(1, 60))
    assert.deepEqual(shown.map((m) => m.text), range(1, 60).map((i) => `old ${i}`))
  })

  it('works at 360 px wide: one pane at a time, no sideways scrolling', async () => {
    const mo = await user('mo', 1, { viewport: { width: 360, height: 740 } })
    await screenshot(mo.page, 'mobile-rooms')
    assert.equal(await mo.page.getByTestId('composer').count(), 0, 'no room open: the room list fills the screen')
    await joinRoom(mo.page, 'team')
    assert.ok(await mo.page.getByTestId('composer').isVisible())
    assert.ok(!(await mo.page.getByTestId('room-list').isVisible()), 'the room list makes way for the room')
    await message(mo.page, 'hello from ana').waitFor()
    await sendText(mo.page, 'from a small screen')
    await message(mo.page, 'from a small screen').waitFor()
    const overflow = await mo.page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)
    assert.equal(overflow, 0, 'nothing wider than the screen')
    await screenshot(mo.page, 'mobile-room')
    await mo.page.getByTestId('back').click()
    assert.ok(await mo.page.getByTestId('room-list').isVisible())
  })

  it('a pasted token signs in; when it expires the server disconnects and the page asks to sign in again', async () => {
    const secret = new TextEncoder().encode(web.cluster.jwtSecret)
    const token = await new SignJWT({ name: 'tia' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('u_tia_pasted')
      .setExpirationTime(Math.floor(Date.now() / 1000) + 8)
      .sign(secret)
    const tia = await user('tia', 2, { token })
    assert.equal(await textOf(tia, 'me-name'), 'tia')
    await tia.page.getByTestId('signin-notice').filter({ hasText: 'The server ended your session' }).waitFor({ timeout: 30_000 })
    assert.ok(await tia.page.getByTestId('signin-name').isVisible())
    await screenshot(tia.page, 'signin-after-expiry')
  })

  // Kills a node: keep it last.
  it('reconnects through nginx when its node dies; messages sent meanwhile show exactly once', async () => {
    const victim = 0
    const cy = await user('cy', victim)
    const dee = await user('dee', 2)
    await joinRoom(cy.page, 'relay')
    await joinRoom(dee.page, 'relay')
    await sendText(dee.page, 'before')
    await message(cy.page, 'before').waitFor()

    await web.cluster.nodes[victim].proc.stop('SIGKILL')
    // Keep cy offline for a moment (its reconnect could otherwise beat the sends below), so
    // these messages are certainly sent while it is away.
    await cy.context.setOffline(true)
    await cy.page.getByTestId('banner').waitFor()
    for (const text of ['while away 1', 'while away 2', 'while away 3']) {
      await sendText(dee.page, text)
      await message(dee.page, text).waitFor()
    }
    // Meanwhile someone reacts to a message cy already has: the sync's `updated` brings it (SPEC §4 "Versions").
    const res = await fetch(`${url()}/api/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'fan' }) })
    const { token } = (await res.json()) as { token: string }
    const fan = io(`${url()}/chat`, { auth: { token }, transports: ['websocket'], forceNew: true, reconnection: false })
    try {
      await new Promise<void>((resolve, reject) => fan.once('connect', resolve).once('connect_error', reject))
      assert.equal((await fan.emitWithAck('room:join', 'relay')).status, 'ok')
      const page = (await (await fetch(`${url()}/api/rooms/relay/messages`, { headers: { authorization: `Bearer ${token}` } })).json()) as { messages: { id: string; text: string }[] }
      const before = page.messages.find((m) => m.text === 'before')!
      assert.equal((await fan.emitWithAck('chat:react', { roomId: 'relay', messageId: before.id, emoji: '🎉', on: true })).status, 'ok')
    } finally {
      fan.disconnect()
    }
    await sendText(cy.page, 'cy, typed while offline')
    await cy.page.locator('[data-testid="message"][data-status="queued"]').waitFor()
    await screenshot(cy.page, 'reconnecting')
    await cy.context.setOffline(false)

    await waitConnected(cy.page)
    assert.equal(await cy.page.getByTestId('banner').count(), 0, 'the banner is gone')
    const expected = ['before', 'while away 1', 'while away 2', 'while away 3', 'cy, typed while offline']
    for (const u of [cy, dee]) {
      await message(u.page, 'cy, typed while offline').waitFor()
      const shown = await shownMessages(u.page)
      assert.deepEqual(shown.map((m) => m.text), expected, `${u.name}: each message once, in order`)
      assert.deepEqual(shown.map((m) => m.seq), [1, 2, 3, 4, 5])
    }
    assert.equal(await cy.page.locator('[data-testid="message"]:not([data-seq])').count(), 0, 'no pending row is left')
    await message(cy.page, 'before').locator('.chip').filter({ hasText: '🎉 1' }).waitFor({ timeout: 5000 })
    const now = await pageNode(cy.page)
    assert.notEqual(now, nodeId(victim))
    assert.equal(cy.socketNodes.at(-1), now, 'the new socket is on a surviving node')
  })
})
