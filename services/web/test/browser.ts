import { mkdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { startTestCluster, type TestCluster } from '../../../test/cluster/helpers.ts'

/**
 * Browser tests: the built client, served by real nodes behind real nginx, driven in Debian's
 * Chromium through playwright-core (never a downloaded browser).
 */

const webDir = fileURLToPath(new URL('..', import.meta.url))
const repoRoot = fileURLToPath(new URL('../../..', import.meta.url))
export const resultsDir = join(repoRoot, 'test-results', 'web')

/** Builds the client from the current sources into `outDir` (the nodes serve it via WEB_DIR). */
export async function buildClient(outDir: string): Promise<void> {
  const { build } = await import('vite')
  await build({ configFile: join(webDir, 'vite.config.ts'), logLevel: 'warn', build: { outDir, emptyOutDir: true, sourcemap: false } })
}

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  })
}

export type WebCluster = TestCluster

/** Three nodes (or `nodes`) + nginx on a database and Redis of this test file, serving the client from `webRoot`. */
export function startWebCluster(dir: string, webRoot: string, env: Record<string, string> = {}, nodes = 3): Promise<WebCluster> {
  return startTestCluster(
    dir,
    'sbweb:',
    {
      WEB_DIR: webRoot,
      LIVENESS_INTERVAL_MS: '1000',
      LIVENESS_TTL_MS: '3000',
      SHUTDOWN_GRACE_MS: '5000',
      ...env,
    },
    nodes,
  )
}

/** `X-Forwarded-For` value that nginx (realip from 127.0.0.1) uses as the client address for ip_hash. */
export const forwardedFor = (octet: number) => `127.0.${octet}.1`

/** Which node nginx picks for a client claiming address 127.0.<octet>.1 (asked through nginx). */
export async function nodeForOctet(url: string, octet: number): Promise<string> {
  const res = await fetch(`${url}/healthz`, { headers: { 'x-forwarded-for': forwardedFor(octet) } })
  await res.arrayBuffer()
  return String(res.headers.get('x-switchboard-node'))
}

/** One octet per node, so each browser context can be placed on a node of our choosing. */
export async function octetPerNode(url: string, nodeIds: string[]): Promise<Map<string, number>> {
  const found = new Map<string, number>()
  for (let octet = 1; octet < 250 && found.size < nodeIds.length; octet++) {
    const node = await nodeForOctet(url, octet)
    if (nodeIds.includes(node) && !found.has(node)) found.set(node, octet)
  }
  if (found.size < nodeIds.length) throw new Error(`ip_hash did not spread 250 forwarded addresses over ${nodeIds.length} nodes`)
  return found
}

export interface User {
  context: BrowserContext
  page: Page
  name: string
  /** Nodes that answered this page's Socket.IO requests (WebSocket handshakes and polling), in order. */
  socketNodes: string[]
  /** X-Forwarded-For values Chromium sent on WebSocket handshakes. */
  wsForwardedFor: string[]
  /** URLs of the WebSockets the page opened. */
  websockets: string[]
}

export interface UserOptions {
  /** The context claims to be 127.0.<octet>.1 on every request, the WebSocket handshake included. */
  octet: number
  /** Sign in with this token (the paste box) instead of a dev token for the name. */
  token?: string
  /** Appended to the page URL, e.g. `?transport=polling`. */
  query?: string
  viewport?: { width: number; height: number }
}

/** A browser context of its own (own storage, so own session) with the client open and signed in as `name`. */
export async function openUser(browser: Browser, url: string, name: string, opts: UserOptions): Promise<User> {
  const context = await browser.newContext({
    baseURL: url,
    extraHTTPHeaders: { 'X-Forwarded-For': forwardedFor(opts.octet) },
    viewport: opts.viewport ?? { width: 1100, height: 760 },
  })
  const page = await context.newPage()
  const user: User = { context, page, name, socketNodes: [], wsForwardedFor: [], websockets: [] }
  // What Chromium really sent and got on the WebSocket handshake (Playwright does not show it).
  const cdp = await context.newCDPSession(page)
  await cdp.send('Network.enable')
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
    const response = e.response as { headers: Record<string, string>; requestHeaders?: Record<string, string> }
    const node = headerValue(response.headers, 'x-switchboard-node')
    if (node) user.socketNodes.push(node)
    const xff = response.requestHeaders ? headerValue(response.requestHeaders, 'x-forwarded-for') : undefined
    if (xff) user.wsForwardedFor.push(xff)
  })
  page.on('websocket', (ws) => user.websockets.push(ws.url()))
  page.on('response', (res) => {
    if (!res.url().includes('/socket.io/')) return
    const node = res.headers()['x-switchboard-node']
    if (node) user.socketNodes.push(node)
  })
  page.on('pageerror', (err) => console.error(`[${name}] page error: ${err.message}`))
  await page.goto(`/${opts.query ?? ''}`)
  if (opts.token) {
    await page.getByTestId('token-input').fill(opts.token)
    await page.getByTestId('token-submit').click()
  } else {
    await page.getByTestId('signin-name').fill(name)
    await page.getByTestId('signin-submit').click()
  }
  await page.getByTestId('me-name').waitFor()
  await waitConnected(page)
  return user
}

const headerValue = (headers: Record<string, string>, name: string) =>
  Object.entries(headers).find(([k]) => k.toLowerCase() === name)?.[1]

/** The /chat socket is connected (and so the connection banner is gone). */
export async function waitConnected(page: Page): Promise<void> {
  await page.locator('[data-testid="chat"][data-connection="connected"]').waitFor()
}

/** The node that serves this page's HTTP requests (through nginx, with its X-Forwarded-For). */
export async function pageNode(page: Page): Promise<string> {
  return page.evaluate(async () => (await fetch('/healthz')).headers.get('x-switchboard-node') ?? '')
}

/** Seq and text of every stored message shown, in display order. */
export async function shownMessages(page: Page): Promise<{ seq: number; text: string }[]> {
  return page.locator('[data-testid="message"][data-seq]').evaluateAll((items) =>
    items.map((li) => ({ seq: Number((li as HTMLElement).dataset.seq), text: li.querySelector('[data-testid="message-text"]')?.textContent ?? '' })),
  )
}

/** Polls `fn` until it is true; for conditions a locator cannot express. */
export async function eventually(what: string, fn: () => Promise<boolean> | boolean, ms = 15_000): Promise<void> {
  const until = Date.now() + ms
  for (;;) {
    if (await fn()) return
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(resultsDir, { recursive: true })
  await page.screenshot({ path: join(resultsDir, `${name}.png`), fullPage: true })
}

/**
 * Opens a room by id through the sidebar form, and waits for its history. A room that does not
 * exist yet is created: the page asks first (the confirm dialog), and this says yes.
 */
export async function joinRoom(page: Page, roomId: string): Promise<void> {
  await page.getByTestId('room-join-input').fill(roomId)
  await page.getByTestId('room-join-submit').click()
  const current = page.locator(`[data-testid="room-item"][data-room-id="${roomId}"][aria-current="true"]`)
  const dialog = page.getByTestId('confirm-dialog')
  await page.locator(`[data-testid="confirm-dialog"], [data-testid="room-item"][data-room-id="${roomId}"][aria-current="true"]`).first().waitFor({ state: 'attached' })
  if ((await dialog.count()) > 0) {
    await dialog.getByTestId('confirm-ok').click()
    await dialog.waitFor({ state: 'detached' })
  }
  await current.waitFor({ state: 'attached' })
  await page.locator('[data-testid="room"][data-joined="true"]').waitFor()
}

/** The stored message (not a pending one) whose text is exactly `text`. */
export const message = (page: Page, text: string) =>
  page
    .locator('[data-testid="message"][data-seq]')
    .filter({ has: page.locator('[data-testid="message-text"]', { hasText: new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }) })

/** The signed-in user's id, from the stored session (this tab's own, or the shared one). */
export const userIdOf = (page: Page) =>
  page.evaluate(() => (JSON.parse(sessionStorage.getItem('switchboard.session') ?? localStorage.getItem('switchboard.session') ?? '{}') as { userId: string }).userId)

/** Types and sends with Enter. */
export async function sendText(page: Page, text: string): Promise<void> {
  await page.getByTestId('composer').fill(text)
  await page.getByTestId('composer').press('Enter')
}

const require = createRequire(import.meta.url)
/** axe-core's browser bundle (injected into the page; axe-core is a devDependency). */
const axeSource = (): string => (require('axe-core') as { source: string }).source

interface AxeViolation {
  id: string
  impact: string | null
  help: string
  nodes: { target: unknown[]; failureSummary?: string }[]
}

/**
 * Runs axe-core on the page as it is now and saves a screenshot named `name`. Fails on any
 * violation of impact serious or critical, printing every violation (minor ones included).
 */
export async function checkA11y(page: Page, name: string): Promise<void> {
  await screenshot(page, name)
  if (!(await page.evaluate(() => 'axe' in window))) await page.addScriptTag({ content: axeSource() })
  const violations = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run(ctx: Document, opts: object): Promise<{ violations: AxeViolation[] }> } }).axe
    const res = await axe.run(document, { resultTypes: ['violations'] })
    return res.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => ({ target: n.target, failureSummary: n.failureSummary })) }))
  })
  const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
  if (violations.length > 0) {
    const lines = violations.map((v) => `  [${v.impact}] ${v.id}: ${v.help}\n${v.nodes.map((n) => `      ${JSON.stringify(n.target)} ${n.failureSummary?.replace(/\n/g, ' ') ?? ''}`).join('\n')}`)
    ;(bad.length > 0 ? console.error : console.log)(`axe on "${name}": ${violations.length} violation(s)\n${lines.join('\n')}`)
  }
  if (bad.length > 0) throw new Error(`axe on "${name}": ${bad.length} serious or critical violation(s): ${bad.map((v) => v.id).join(', ')}`)
}

/**
 * Presses Tab (Shift+Tab with `back`) until the focused element matches `selector`: proves the
 * keyboard reaches it. Also checks that the focused element shows a focus outline.
 */
export async function tabTo(page: Page, selector: string, opts: { back?: boolean; max?: number } = {}): Promise<void> {
  const max = opts.max ?? 80
  for (let i = 0; i < max; i++) {
    await page.keyboard.press(opts.back ? 'Shift+Tab' : 'Tab')
    if (await page.evaluate((sel) => document.activeElement?.matches(sel) ?? false, selector)) {
      const outline = await page.evaluate(() => {
        const el = document.activeElement as HTMLElement
        const cs = getComputedStyle(el)
        return { matches: el.matches(':focus-visible'), style: cs.outlineStyle, width: parseFloat(cs.outlineWidth) }
      })
      if (!outline.matches || outline.style === 'none' || outline.width < 2) throw new Error(`focus on ${selector} is not visible: ${JSON.stringify(outline)}`)
      return
    }
  }
  throw new Error(`${max} presses of ${opts.back ? 'Shift+Tab' : 'Tab'} did not reach ${selector}`)
}
