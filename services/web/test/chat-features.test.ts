import assert from 'node:assert/strict'
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Browser, Page } from 'playwright-core'
import { io, type Socket } from 'socket.io-client'
import {
  buildClient,
  checkA11y,
  eventually,
  forwardedFor,
  joinRoom,
  launchChromium,
  message,
  octetPerNode,
  openUser,
  sendText,
  shownMessages,
  startWebCluster,
  tabTo,
  userIdOf,
  waitConnected,
  type User,
  type UserOptions,
  type WebCluster,
} from './browser.ts'

/** Messages per user per window on this file's cluster: low, so the rate-limit notice can be seen. */
const RATE = 6
const WINDOW_S = 5

/**
 * The chat features of the web client, in Chromium, on two real nodes behind nginx (each
 * browser context placed on a node by X-Forwarded-For): Markdown and mentions, edit / delete /
 * react both ways, live DMs and mentions in the room list, the unread count in the title,
 * jump-to-latest and the new-messages divider, the unknown-room dialog, a separate-tab
 * sign-in, a keyboard-only flow, and the rate-limit notice. axe-core checks every main view
 * (0 serious or critical violations); screenshots go to test-results/web/.
 */
describe('web client chat features in Chromium, two users on two nodes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sb-webfeat-'))
  chmodSync(dir, 0o755)
  let web: WebCluster
  let browser: Browser
  let octets: Map<string, number>
  const opened: User[] = []
  const sockets: Socket[] = []
  const url = () => web.cluster.url
  const nodeId = (i: number) => web.cluster.nodes[i].id
  const user = async (name: string, i: number, opts: Omit<UserOptions, 'octet'> = {}) => {
    const u = await openUser(browser, url(), name, { octet: octets.get(nodeId(i))!, ...opts })
    opened.push(u)
    return u
  }
  const devToken = async (username: string, roles?: string[]) => {
    const res = await fetch(`${url()}/api/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, ...(roles ? { roles } : {}) }) })
    return (await res.json()) as { token: string; userId: string }
  }
  /** Messages from plain socket.io clients, resent after RATE_LIMITED, in order (several writers share the load). */
  const seed = async (roomId: string, texts: string[], writers = 3) => {
    const clients: Socket[] = []
    for (let w = 0; w < writers; w++) {
      const { token } = await devToken(`writer${w}`)
      const s = io(`${url()}/chat`, { auth: { token }, transports: ['websocket'], forceNew: true, reconnection: false })
      sockets.push(s)
      await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('connect_error', reject))
      assert.equal((await s.timeout(5000).emitWithAck('room:join', roomId)).status, 'ok')
      clients.push(s)
    }
    for (const [i, text] of texts.entries()) {
      for (;;) {
        const res = (await clients[i % writers].timeout(5000).emitWithAck('chat:message', { roomId, text, clientMsgId: crypto.randomUUID() })) as { status: string; code?: string; retryAfterMs?: number }
        if (res.status === 'ok') break
        assert.equal(res.code, 'RATE_LIMITED', `seeding "${text}"`)
        await new Promise((r) => setTimeout(r, res.retryAfterMs ?? 500))
      }
    }
    for (const s of clients) s.disconnect()
  }
  const openListedRoom = async (page: Page, roomId: string) => {
    await page.locator(`[data-testid="room-item"][data-room-id="${roomId}"]`).click()
    await page.locator(`[data-testid="room"][data-room-id="${roomId}"][data-joined="true"]`).waitFor()
  }
  const roomItem = (page: Page, roomId: string) => page.locator(`[data-testid="room-item"][data-room-id="${roomId}"]`)

  before(async () => {
    await buildClient(join(dir, 'web'))
    web = await startWebCluster(dir, join(dir, 'web'), { RATE_LIMIT_MESSAGES: String(RATE), RATE_LIMIT_WINDOW_SECONDS: String(WINDOW_S) }, 2)
    browser = await launchChromium()
    octets = await octetPerNode(url(), web.cluster.nodes.map((n) => n.id))
  })

  after(async () => {
    for (const s of sockets) s.disconnect()
    for (const u of opened) await u.context.close().catch(() => undefined)
    await browser?.close()
    await web?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('sign-in page passes axe; "keep this tab a separate user" lets two tabs of one browser be two users', async () => {
    const context = await browser.newContext({ baseURL: url(), extraHTTPHeaders: { 'X-Forwarded-For': forwardedFor(octets.get(nodeId(0))!) }, viewport: { width: 1100, height: 760 } })
    opened.push({ context, page: await context.newPage(), name: 'tabs', socketNodes: [], wsForwardedFor: [], websockets: [] })
    const signIn = async (page: Page, name: string, separate: boolean) => {
      await page.goto('/')
      if (separate) await page.getByTestId('signin-separate').check()
      await page.getByTestId('signin-name').fill(name)
      await page.getByTestId('signin-submit').click()
      await page.getByTestId('me-name').filter({ hasText: name }).waitFor()
      await waitConnected(page)
    }
    const first = opened.at(-1)!.page
    await first.goto('/')
    await first.getByTestId('signin-name').waitFor()
    await checkA11y(first, 'signin')
    await signIn(first, 'sid', true)
    // A second tab of the same browser: the first one's sign-in is its own, so this one signs in as someone else.
    const second = await context.newPage()
    await second.goto('/')
    await second.getByTestId('signin-name').waitFor()
    await signIn(second, 'sam', false)
    for (const [page, name] of [[first, 'sid'], [second, 'sam']] as const) {
      await page.reload()
      await page.getByTestId('me-name').waitFor()
      assert.equal(await page.getByTestId('me-name').textContent(), name, `a reload keeps ${name} in its tab`)
      await waitConnected(page)
    }
    assert.notEqual(await userIdOf(first), await userIdOf(second), 'two users in one browser')
    // Both are connected as themselves at the same time.
    await joinRoom(first, 'tabs')
    await joinRoom(second, 'tabs')
    await sendText(first, 'from the first tab')
    const got = message(second, 'from the first tab')
    await got.waitFor()
    assert.match((await got.locator('.who').textContent()) ?? '', /sid/)
    const third = await context.newPage()
    await third.goto('/')
    await third.getByTestId('me-name').waitFor()
    assert.equal(await third.getByTestId('me-name').textContent(), 'sam', 'a new tab gets the browser-wide sign-in, not the separate one')
  })

  it('Markdown (safe subset), mentions, edit, delete and reactions both ways across nodes; an admin deletes anyone’s message', async () => {
    const ana = await user('ana', 0)
    const ben = await user('ben', 1)
    await checkA11y(ana.page, 'room-list')
    await joinRoom(ana.page, 'md')
    await joinRoom(ben.page, 'md')

    const markdown = [
      '**bold** and *italic* with `code`, a [site](https://example.com/page) and https://example.org/bare',
      '<img src=x onerror="window.__xss=1"> <script>window.__xss=2</script> [bad](javascript:window.__xss=3) snake_case __proto__',
      '- one',
      '- two',
      '',
      '```',
      'const x = "<b>not bold</b>"',
      '```',
    ].join('\n')
    await ben.page.getByTestId('composer').fill(markdown)
    await ben.page.getByTestId('composer').press('Enter')
    const md = ana.page.locator('[data-testid="message"][data-seq]').filter({ hasText: 'bold and italic' })
    await md.waitFor()
    const text = md.getByTestId('message-text')
    assert.equal(await text.locator('strong').textContent(), 'bold')
    assert.equal(await text.locator('em').textContent(), 'italic')
    assert.equal(await text.locator('p code').textContent(), 'code')
    const link = text.locator('a[href="https://example.com/page"]')
    assert.equal(await link.textContent(), 'site')
    assert.equal(await link.getAttribute('target'), '_blank')
    assert.equal(await link.getAttribute('rel'), 'noopener noreferrer nofollow')
    assert.equal(await text.locator('a[href="https://example.org/bare"]').count(), 1, 'bare URLs become links')
    assert.equal(await text.locator('a[href^="javascript"], img, script').count(), 0, 'no image, script or javascript: link')
    assert.match((await text.textContent()) ?? '', /<img src=x/, 'raw HTML is shown as text')
    assert.match((await text.textContent()) ?? '', /snake_case __proto__/, 'underscores stay as typed')
    assert.deepEqual(await text.locator('li').allTextContents(), ['one', 'two'])
    assert.equal(await text.locator('pre code').textContent(), 'const x = "<b>not bold</b>"\n')
    assert.equal(await ana.page.evaluate(() => (window as unknown as { __xss?: number }).__xss), undefined, 'nothing ran')

    // Mentions: highlighted for everyone, and distinctly for the one mentioned.
    await sendText(ben.page, 'thanks @ana, and @nobody')
    const mention = message(ana.page, 'thanks @ana, and @nobody')
    await mention.waitFor()
    assert.equal(await mention.locator('.mention--me').textContent(), '@ana')
    assert.equal(await mention.locator('.mention:not(.mention--me)').textContent(), '@nobody')
    assert.match((await mention.getAttribute('class')) ?? '', /msg--mentions-me/)
    const onBen = message(ben.page, 'thanks @ana, and @nobody')
    assert.equal(await onBen.locator('.mention--me').count(), 0, 'not "me" for the sender')
    assert.equal(await onBen.locator('.mention').count(), 2)

    // Edit both ways.
    await sendText(ana.page, 'ana’s first draft')
    await message(ben.page, 'ana’s first draft').waitFor()
    const mine = message(ana.page, 'ana’s first draft')
    assert.equal(await message(ben.page, 'ana’s first draft').getByTestId('edit').count(), 0, 'no Edit on someone else’s message')
    await mine.hover()
    await mine.getByTestId('edit').click()
    await ana.page.getByTestId('edit-input').fill('ana’s **final** text')
    await checkA11y(ana.page, 'edit-state')
    await ana.page.getByTestId('edit-input').press('Enter')
    const edited = ben.page.locator('[data-testid="message"][data-seq]').filter({ hasText: 'ana’s final text' })
    await edited.getByTestId('edited').waitFor()
    assert.equal(await edited.locator('strong').textContent(), 'final')
    await sendText(ben.page, 'ben typo')
    await message(ana.page, 'ben typo').waitFor()
    await message(ben.page, 'ben typo').getByTestId('edit').click()
    await ben.page.getByTestId('edit-input').fill('ben fixed')
    await ben.page.getByTestId('edit-save').click()
    await message(ana.page, 'ben fixed').getByTestId('edited').waitFor()

    // Reactions both ways: Ben reacts to Ana's message, Ana to Ben's and joins his on hers.
    const anaMsgOnBen = ben.page.locator('[data-testid="message"][data-seq]').filter({ hasText: 'ana’s final text' })
    await anaMsgOnBen.getByTestId('react').click()
    await anaMsgOnBen.locator('[data-testid="pick-reaction"][data-emoji="👍"]').click()
    const anaMsg = ana.page.locator('[data-testid="message"][data-seq]').filter({ hasText: 'ana’s final text' })
    const thumbs = anaMsg.locator('[data-testid="reaction"][data-emoji="👍"]')
    await thumbs.filter({ hasText: '👍 1' }).waitFor()
    assert.equal(await thumbs.getAttribute('aria-pressed'), 'false')
    await thumbs.click() // Ana adds hers to the same emoji
    await anaMsgOnBen.locator('[data-testid="reaction"][data-emoji="👍"]').filter({ hasText: '👍 2' }).waitFor()
    await thumbs.filter({ hasText: '👍 2' }).waitFor()
    assert.equal(await thumbs.getAttribute('aria-pressed'), 'true')
    await message(ana.page, 'ben fixed').getByTestId('react').click()
    await message(ana.page, 'ben fixed').locator('[data-testid="pick-reaction"][data-emoji="🎉"]').click()
    await message(ben.page, 'ben fixed').locator('[data-testid="reaction"][data-emoji="🎉"]').filter({ hasText: '🎉 1' }).waitFor()

    // Delete: my own; someone else's only as an admin.
    await sendText(ana.page, 'ana will delete this')
    await message(ben.page, 'ana will delete this').waitFor()
    assert.equal(await message(ben.page, 'ana will delete this').getByTestId('delete').count(), 0, 'no Delete on someone else’s message')
    await message(ana.page, 'ana will delete this').getByTestId('delete').click()
    await ben.page.locator('[data-testid="message"][data-seq] [data-testid="message-text"]', { hasText: 'This message was deleted.' }).first().waitFor()
    await sendText(ben.page, 'ben, to be moderated')
    const ops = await user('ops', 1, { token: (await devToken('ops', ['admin'])).token })
    await joinRoom(ops.page, 'md')
    await message(ops.page, 'ben, to be moderated').getByTestId('delete').click()
    await eventually('both tombstones on Ana’s page', async () => (await ana.page.locator('[data-testid="message-text"].deleted').count()) === 2)
    assert.equal(await message(ana.page, 'ben, to be moderated').count(), 0)
    await checkA11y(ana.page, 'room-with-messages')
  })

  it('a DM and a mention arrive live in the room list (badge and line) without a reload', async () => {
    const dora = await user('dora', 0)
    const eli = await user('eli', 1)
    await joinRoom(dora.page, 'meet')
    await joinRoom(eli.page, 'meet')
    await joinRoom(dora.page, 'elsewhere')
    await dora.page.evaluate(() => ((window as unknown as { __sameDocument: boolean }).__sameDocument = true))
    await sendText(eli.page, 'hello dora')
    await roomItem(dora.page, 'meet').getByTestId('unread').filter({ hasText: '1' }).waitFor()
    // Eli opens a DM from Dora's name in the room; Dora has never been in it.
    await openListedRoom(eli.page, 'meet')
    await message(eli.page, 'hello dora').waitFor()
    const doraId = await userIdOf(dora.page)
    const eliId = await userIdOf(eli.page)
    const dmId = `dm:${[doraId, eliId].sort().join(':')}`
    assert.equal(await roomItem(dora.page, dmId).count(), 0, 'no DM room yet')
    await eli.page.getByTestId('room-join-input').fill(dmId)
    await eli.page.getByTestId('room-join-submit').click()
    await eli.page.locator(`[data-testid="room"][data-room-id="${dmId}"][data-joined="true"]`).waitFor()
    await sendText(eli.page, 'psst, dora')
    const dm = roomItem(dora.page, dmId)
    await dm.getByTestId('unread').filter({ hasText: '1' }).waitFor()
    assert.match((await dm.getByTestId('room-note').textContent()) ?? '', /eli: psst, dora/)
    assert.match((await dm.textContent()) ?? '', /@eli/)
    // A mention in a room Dora is in but not looking at.
    await openListedRoom(eli.page, 'meet')
    await sendText(eli.page, 'see this @dora')
    const meet = roomItem(dora.page, 'meet')
    await meet.locator('[data-testid="room-note"][data-type="mention"]').filter({ hasText: 'eli mentioned you: see this @dora' }).waitFor()
    await meet.getByTestId('unread').filter({ hasText: '2' }).waitFor()
    assert.equal(await dora.page.evaluate(() => (window as unknown as { __sameDocument?: boolean }).__sameDocument), true, 'no reload happened')
    await checkA11y(dora.page, 'room-list-notifications')
    await openListedRoom(dora.page, dmId)
    await message(dora.page, 'psst, dora').waitFor()
    await dm.getByTestId('room-note').waitFor({ state: 'detached' })
  })

  it('the tab title counts unread messages: "(2) Switchboard"', async () => {
    const fay = await user('fay', 0)
    const gus = await user('gus', 1)
    await joinRoom(fay.page, 'titled')
    await joinRoom(gus.page, 'titled')
    await joinRoom(fay.page, 'quiet')
    assert.equal(await fay.page.title(), 'Switchboard')
    await sendText(gus.page, 'one for the title')
    await sendText(gus.page, 'two for the title')
    await eventually('the title counts 2', async () => (await fay.page.title()) === '(2) Switchboard')
    await openListedRoom(fay.page, 'titled')
    await eventually('the title is plain again', async () => (await fay.page.title()) === 'Switchboard')
  })

  it('opens at a "New messages" divider; scrolled up, "Jump to latest" counts what is new and brings the reader down', async () => {
    const vic = await user('vic', 1, { viewport: { width: 1000, height: 520 } })
    await seed('long', ['old 1', 'old 2', 'old 3'], 1)
    await joinRoom(vic.page, 'long')
    await message(vic.page, 'old 3').waitFor()
    await joinRoom(vic.page, 'other-room')
    await seed('long', Array.from({ length: 14 }, (_, i) => `new ${i + 1}`))
    await roomItem(vic.page, 'long').getByTestId('unread').filter({ hasText: '14' }).waitFor()
    await openListedRoom(vic.page, 'long')
    const divider = vic.page.getByTestId('new-divider')
    await divider.waitFor()
    // The divider sits right above the first unread message.
    const next = await divider.evaluate((li) => (li.nextElementSibling as HTMLElement | null)?.dataset.seq)
    assert.equal(next, '4')
    const inView = await divider.evaluate((li) => {
      const box = li.getBoundingClientRect()
      const view = li.closest('[data-testid="scroller"]')!.getBoundingClientRect()
      return box.top >= view.top - 1 && box.bottom <= view.bottom + 1
    })
    assert.ok(inView, 'opened at the divider')
    const jump = vic.page.getByTestId('jump-latest')
    await jump.waitFor()
    assert.equal(await jump.getByTestId('jump-count').textContent(), '14 new')
    await seed('long', ['newer 1', 'newer 2'], 2)
    await jump.getByTestId('jump-count').filter({ hasText: '16 new' }).waitFor()
    await jump.click()
    await jump.waitFor({ state: 'detached' })
    assert.equal(await vic.page.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'composer', 'focus goes to the composer')
    assert.ok(await message(vic.page, 'newer 2').isVisible())
    // Scrolled up by hand: the button comes back and counts only what arrives after.
    await vic.page.getByTestId('scroller').evaluate((el) => (el.scrollTop = 0))
    await jump.waitFor()
    assert.equal(await jump.getByTestId('jump-count').count(), 0, 'nothing new yet')
    await seed('long', ['latest 1', 'latest 2', 'latest 3'], 3)
    await jump.getByTestId('jump-count').filter({ hasText: '3 new' }).waitFor()
    await vic.page.getByTestId('day-separator').first().waitFor()
    assert.equal(await vic.page.getByTestId('day-separator').first().textContent(), 'Today')
  })

  it('a room loading its history shows a busy skeleton (aria-busy) until the messages are there', async () => {
    const lou = await user('lou', 1)
    await seed('load-x', ['loaded at last'], 1)
    await joinRoom(lou.page, 'load-x')
    await joinRoom(lou.page, 'load-y')
    // After a reload only load-y (the last one open) is followed again; load-x is just listed.
    await lou.page.reload()
    await waitConnected(lou.page)
    await roomItem(lou.page, 'load-x').waitFor()
    await lou.context.setOffline(true)
    await lou.page.getByTestId('banner').waitFor()
    await roomItem(lou.page, 'load-x').click()
    const loading = lou.page.getByTestId('loading')
    await loading.waitFor()
    assert.equal(await lou.page.getByTestId('scroller').getAttribute('aria-busy'), 'true')
    assert.equal(await loading.getAttribute('role'), 'status')
    await checkA11y(lou.page, 'room-loading')
    await lou.context.setOffline(false)
    await message(lou.page, 'loaded at last').waitFor()
    await loading.waitFor({ state: 'detached' })
    assert.equal(await lou.page.getByTestId('scroller').getAttribute('aria-busy'), 'false')
  })

  it('a room id that does not exist asks before it is created (an accessible dialog); an existing one opens at once', async () => {
    const hal = await user('hal', 0)
    await hal.page.getByTestId('room-join-input').fill('brand-new-room')
    await hal.page.getByTestId('room-join-submit').click()
    const dialog = hal.page.getByTestId('confirm-dialog')
    await dialog.waitFor()
    assert.equal(await hal.page.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'confirm-cancel', 'focus starts on Cancel')
    assert.equal(await dialog.getByTestId('confirm-room-id').textContent(), 'brand-new-room')
    await checkA11y(hal.page, 'confirm-dialog')
    await hal.page.keyboard.press('Escape')
    await dialog.waitFor({ state: 'detached' })
    assert.equal(await roomItem(hal.page, 'brand-new-room').count(), 0, 'Escape cancels: nothing opened')
    const missing = await fetch(`${url()}/api/rooms/brand-new-room/messages?limit=1`, { headers: { authorization: `Bearer ${(await devToken('hal')).token}` } })
    assert.equal(missing.status, 404, 'and nothing was created')
    await hal.page.getByTestId('room-join-input').fill('brand-new-room')
    await hal.page.getByTestId('room-join-submit').click()
    await dialog.getByTestId('confirm-ok').click()
    await hal.page.locator('[data-testid="room"][data-room-id="brand-new-room"][data-joined="true"]').waitFor()
    // A room that exists opens without a question.
    await seed('existing-room', ['here already'], 1)
    await joinRoom(hal.page, 'existing-room')
    await message(hal.page, 'here already').waitFor()
    assert.equal(await dialog.count(), 0, 'no dialog for an existing room')
  })

  it('keyboard only: switch room, send, reply, react, edit (Escape cancels), all with visible focus', async () => {
    const kim = await user('kim', 0)
    await joinRoom(kim.page, 'kb-one')
    await joinRoom(kim.page, 'kb-two')
    await seed('kb-one', ['a message to answer'], 1)
    await kim.page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur())
    // Switch room.
    await tabTo(kim.page, '[data-testid="room-item"][data-room-id="kb-one"]')
    await kim.page.keyboard.press('Enter')
    await kim.page.locator('[data-testid="room"][data-room-id="kb-one"][data-joined="true"]').waitFor()
    await message(kim.page, 'a message to answer').waitFor()
    // Send.
    await tabTo(kim.page, '[data-testid="composer"]')
    await kim.page.keyboard.type('typed with keys only')
    await kim.page.keyboard.press('Enter')
    await message(kim.page, 'typed with keys only').waitFor()
    // Reply: back from the composer to the message's Reply; Enter puts focus in the composer.
    const target = message(kim.page, 'a message to answer')
    const targetId = await target.getAttribute('data-id')
    await tabTo(kim.page, `[data-id="${targetId}"] [data-testid="reply"]`, { back: true })
    await kim.page.keyboard.press('Enter')
    await kim.page.getByTestId('reply-preview').waitFor()
    assert.equal(await kim.page.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'composer')
    await kim.page.keyboard.type('a keyboard reply')
    await kim.page.keyboard.press('Enter')
    const reply = message(kim.page, 'a keyboard reply')
    await reply.waitFor()
    assert.match((await reply.getByTestId('reply-quote').textContent()) ?? '', /a message to answer/)
    // React: the picker opens with focus on its first emoji.
    await tabTo(kim.page, `[data-id="${targetId}"] [data-testid="react"]`, { back: true })
    await kim.page.keyboard.press('Enter')
    await kim.page.getByTestId('reaction-picker').waitFor()
    assert.equal(await kim.page.evaluate(() => document.activeElement?.getAttribute('data-emoji')), '👍')
    await kim.page.keyboard.press('Enter')
    await target.locator('[data-testid="reaction"][data-emoji="👍"][aria-pressed="true"]').waitFor()
    assert.equal(await kim.page.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'react', 'focus is back on React')
    // Edit: Escape cancels (focus back on Edit), Enter saves.
    const mine = message(kim.page, 'typed with keys only')
    const mineId = await mine.getAttribute('data-id')
    await tabTo(kim.page, `[data-id="${mineId}"] [data-testid="edit"]`)
    await kim.page.keyboard.press('Enter')
    await kim.page.getByTestId('edit-input').waitFor()
    assert.equal(await kim.page.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'edit-input')
    await kim.page.keyboard.type(' (changed)')
    await kim.page.keyboard.press('Escape')
    await kim.page.getByTestId('edit-input').waitFor({ state: 'detached' })
    assert.equal(await kim.page.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'edit', 'focus is back on Edit')
    assert.equal(await mine.getByTestId('edited').count(), 0, 'Escape changed nothing')
    await kim.page.keyboard.press('Enter')
    await kim.page.getByTestId('edit-input').waitFor()
    await kim.page.keyboard.press('ControlOrMeta+a')
    await kim.page.keyboard.type('edited with keys only')
    await kim.page.keyboard.press('Enter')
    await message(kim.page, 'edited with keys only').getByTestId('edited').waitFor()
    // And to the other room.
    await tabTo(kim.page, '[data-testid="room-item"][data-room-id="kb-two"]', { back: true, max: 120 })
    await kim.page.keyboard.press('Enter')
    await kim.page.locator('[data-testid="room"][data-room-id="kb-two"][data-joined="true"]').waitFor()
  })

  it('rate limit: refusals collapse into one notice with a live countdown; held messages go out in their order', async () => {
    const ivy = await user('ivy', 0)
    const jon = await user('jon', 1)
    await joinRoom(ivy.page, 'burst')
    await joinRoom(jon.page, 'burst')
    // Past the window of anything ivy sent before.
    const texts = Array.from({ length: RATE + 4 }, (_, i) => `burst ${i + 1}`)
    for (const t of texts) await sendText(ivy.page, t)
    const notice = ivy.page.getByTestId('rate-limit-notice')
    await notice.waitFor()
    assert.equal(await notice.count(), 1, 'one notice')
    const countdown = notice.getByTestId('rate-limit-countdown')
    const first = Number(await countdown.textContent())
    assert.ok(first >= 1 && first <= WINDOW_S, `a countdown in seconds (${first})`)
    await eventually('the countdown goes down', async () => {
      const now = await countdown.textContent().catch(() => null)
      return now !== null && Number(now) < first
    }, 4000)
    await checkA11y(ivy.page, 'rate-limit-notice')
    assert.equal(await ivy.page.getByTestId('error').count(), 0, 'no error line per refused message')
    for (const u of [ivy, jon]) {
      await message(u.page, texts.at(-1)!).waitFor({ timeout: 30_000 })
      const shown = (await shownMessages(u.page)).filter((m) => m.text.startsWith('burst '))
      assert.deepEqual(shown.map((m) => m.text), texts, `${u.name}: every message once, in the order typed`)
      assert.deepEqual(shown.map((m) => m.seq), shown.map((_, i) => shown[0].seq + i), 'consecutive seqs')
    }
    await notice.waitFor({ state: 'detached' })
  })
})
