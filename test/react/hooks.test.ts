import assert from 'node:assert/strict'
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import type { Browser, Page } from 'playwright-core'
import { io, type Socket } from 'socket.io-client'
import { eventually, launchChromium, startWebCluster, type WebCluster } from '../../services/web/test/browser.ts'

const harnessDir = fileURLToPath(new URL('./harness/', import.meta.url))
const repo = fileURLToPath(new URL('../../', import.meta.url))

interface Counts {
  created: number
  connected: number
  closed: number
  subscriptions: number
  joins: number
  leaves: number
}

/** The harness page as a development build (React StrictMode then really mounts, cleans up and mounts again). */
async function buildHarness(outDir: string): Promise<void> {
  const { build } = await import('vite')
  const react = (await import('@vitejs/plugin-react')).default
  await build({
    root: harnessDir,
    configFile: false,
    logLevel: 'warn',
    mode: 'development',
    plugins: [react()],
    define: { 'process.env.NODE_ENV': '"development"' },
    resolve: {
      alias: {
        '@switchboard/client': join(repo, 'packages/client/src/index.ts'),
        '@switchboard/react': join(repo, 'packages/react/src/index.ts'),
      },
    },
    build: { outDir, emptyOutDir: true, minify: false, sourcemap: false },
  })
}

/**
 * `@switchboard/react` in Chromium against a real node behind nginx, under React StrictMode
 * (development build): the provider leaves exactly one client running and closes it on unmount,
 * every store subscription is removed, every join is left, a room id change leaves the old room,
 * and a client given to the provider is not closed by it.
 */
describe('@switchboard/react hooks in Chromium (StrictMode, development build)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sb-react-'))
  chmodSync(dir, 0o755)
  let web: WebCluster
  let browser: Browser
  let page: Page
  const sockets: Socket[] = []
  const openSockets = new Set<object>()
  const url = () => web.cluster.url
  const token = async (username: string) => {
    const res = await fetch(`${url()}/api/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username }) })
    return ((await res.json()) as { token: string }).token
  }
  const counts = () => page.evaluate(() => (window as unknown as { harness: { counts: Counts } }).harness.counts)
  const probe = (attr: string) => page.locator('#probe').getAttribute(attr)
  /** A plain socket.io client that posts `text` in `roomId`. */
  const post = async (roomId: string, text: string) => {
    const s = io(`${url()}/chat`, { auth: { token: await token('poster') }, transports: ['websocket'], forceNew: true, reconnection: false })
    sockets.push(s)
    await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('connect_error', reject))
    assert.equal((await s.timeout(5000).emitWithAck('room:join', roomId)).status, 'ok')
    assert.equal((await s.timeout(5000).emitWithAck('chat:message', { roomId, text })).status, 'ok')
    s.disconnect()
  }

  before(async () => {
    await buildHarness(join(dir, 'harness'))
    web = await startWebCluster(dir, join(dir, 'harness'), { RATE_LIMIT_MESSAGES: '1000' }, 1)
    browser = await launchChromium()
    const context = await browser.newContext({ baseURL: url() })
    page = await context.newPage()
    page.on('pageerror', (err) => console.error(`page error: ${err.message}`))
    page.on('websocket', (ws) => {
      openSockets.add(ws)
      ws.on('close', () => openSockets.delete(ws))
    })
    await page.goto('/')
    await page.waitForFunction(() => 'harness' in window)
  })

  after(async () => {
    for (const s of sockets) s.disconnect()
    await browser?.close()
    await web?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('options=: one client survives StrictMode; the room joins, shows live messages and sends; unmount closes everything', async () => {
    const t = await token('hooky')
    await page.evaluate(([tk]) => (window as unknown as { harness: { mountOwned(t: string, r: string): void } }).harness.mountOwned(tk, 'hooks-a'), [t])
    await page.locator('#probe[data-status="connected"][data-room-status="joined"]').waitFor()
    assert.equal(await probe('data-me'), 'hooky')
    const c = await counts()
    // StrictMode: created, cleaned up (closed), created again. One left running.
    assert.equal(c.created - c.closed, 1, `one live client (${JSON.stringify(c)})`)
    assert.ok(c.created >= 2, 'StrictMode really ran the effect twice (development build)')
    await eventually('one WebSocket open', () => openSockets.size === 1, 5000)

    await post('hooks-a', 'hello hooks')
    await page.locator('#probe li', { hasText: 'hello hooks' }).waitFor()
    await page.locator('#send').click()
    await page.locator('#sent', { hasText: '2' }).waitFor()
    await page.locator('#probe li[data-seq="2"]', { hasText: 'from the hooks' }).waitFor()
    assert.ok(c.subscriptions > 0)

    await page.evaluate(() => (window as unknown as { harness: { unmount(): void } }).harness.unmount())
    await eventually('everything closed', async () => {
      const n = await counts()
      return n.closed === n.created && n.subscriptions === 0 && n.joins === n.leaves
    }, 5000)
    await eventually('no WebSocket left open', () => openSockets.size === 0, 5000)
  })

  it('a room id change leaves the old room; the rooms list still counts its new messages', async () => {
    const t = await token('switcher')
    const mount = (roomId: string) =>
      page.evaluate(([tk, r]) => (window as unknown as { harness: { mountOwned(t: string, r: string): void } }).harness.mountOwned(tk, r), [t, roomId])
    await mount('hooks-one')
    await page.locator('#probe[data-room="hooks-one"][data-room-status="joined"]').waitFor()
    await post('hooks-one', 'in one')
    await page.locator('#probe li', { hasText: 'in one' }).waitFor()
    await mount('hooks-two')
    await page.locator('#probe[data-room="hooks-two"][data-room-status="joined"]').waitFor()
    const c = await counts()
    assert.equal(c.joins - c.leaves, 1, `only the shown room stays joined (${JSON.stringify(c)})`)
    assert.equal(await page.locator('#probe li', { hasText: 'in one' }).count(), 0, 'the old room’s messages are gone from view')
    // hooks-one is no longer followed, but its new message still counts as unread in useRooms.
    await eventually('hooks-one listed', async () => /hooks-one:/.test((await probe('data-rooms')) ?? ''), 5000)
    const before = Number(/hooks-one:(\d+)/.exec((await probe('data-rooms')) ?? '')?.[1])
    await post('hooks-one', 'while away')
    await eventually('its unread rises', async () => Number(/hooks-one:(\d+)/.exec((await probe('data-rooms')) ?? '')?.[1]) === before + 1, 5000)
    await page.evaluate(() => (window as unknown as { harness: { unmount(): void } }).harness.unmount())
    await eventually('everything closed', async () => {
      const n = await counts()
      return n.closed === n.created && n.subscriptions === 0 && n.joins === n.leaves
    }, 5000)
  })

  it('client=: the provider connects the given client and never closes it', async () => {
    const t = await token('owner')
    const before = await counts()
    await page.evaluate(([tk]) => (window as unknown as { harness: { mountGiven(t: string, r: string): void } }).harness.mountGiven(tk, 'hooks-given'), [t])
    await page.locator('#probe[data-status="connected"][data-room-status="joined"]').waitFor()
    await page.evaluate(() => (window as unknown as { harness: { unmount(): void } }).harness.unmount())
    await eventually('subscriptions and joins released', async () => {
      const n = await counts()
      return n.subscriptions === 0 && n.joins === n.leaves
    }, 5000)
    const after = await counts()
    assert.equal(after.closed, before.closed, 'not closed by the provider')
    assert.equal(await page.evaluate(() => (window as unknown as { harness: { givenStatus(): string } }).harness.givenStatus()), 'connected')
    await page.evaluate(() => (window as unknown as { harness: { closeGiven(): Promise<void> } }).harness.closeGiven())
    assert.equal((await counts()).closed, before.closed + 1)
    await eventually('no WebSocket left open', () => openSockets.size === 0, 5000)
  })
})
