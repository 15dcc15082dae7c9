import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { build } from 'esbuild'
import type { Browser } from 'playwright-core'
import { useIsolatedNode } from '../../services/chat/test/helpers.ts'
import { launchChromium } from '../../services/web/test/browser.ts'
import { closeClients, mintToken, sdkClient, until } from './helpers.ts'

/**
 * The SDK in Chromium: bundled for the browser (esbuild, socket.io-client inside, as an app
 * would ship it), served by a real node (WEB_DIR), used with its defaults (the page's origin,
 * the browser's fetch, FormData and Blob), talking with an SDK client in Node.
 */
describe('@switchboard/client in a browser', () => {
  const webRoot = mkdtempSync(join(tmpdir(), 'sb-sdk-web-'))
  const node = useIsolatedNode({ WEB_DIR: webRoot, RATE_LIMIT_MESSAGES: '100000' })
  let browser: Browser

  before(async () => {
    await build({
      entryPoints: [fileURLToPath(new URL('../../packages/client/src/index.ts', import.meta.url))],
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      outfile: join(webRoot, 'sdk.js'),
      logLevel: 'warning',
    })
    writeFileSync(join(webRoot, 'page.js'), "import * as sdk from './sdk.js'\nwindow.sdk = sdk\nwindow.sdkReady = true\n")
    writeFileSync(join(webRoot, 'index.html'), '<!doctype html><meta charset="utf-8"><title>sdk</title><script type="module" src="/page.js"></script>\n')
    browser = await launchChromium()
  })

  after(async () => {
    await browser?.close()
    await closeClients()
    rmSync(webRoot, { recursive: true, force: true })
  })

  it('joins, sends, receives, reacts, uploads and fetches an attachment from a page; close() leaves the page without sockets', async () => {
    const page = await browser.newPage()
    const errors: string[] = []
    page.on('pageerror', (e) => errors.push(e.message))
    // tsx names the functions it compiles (esbuild keepNames); page.evaluate sends them as source.
    await page.addInitScript('window.__name = (f) => f')
    await page.goto(`${node.url}/`)
    await page.waitForFunction(() => (window as unknown as { sdkReady?: boolean }).sdkReady === true, undefined, { timeout: 10_000 })
    const { token, userId: browserUser } = await mintToken(node.url, 'sdk-browser')
    const peer = await sdkClient(node.url, 'sdk-node-peer')
    const peerRoom = peer.client.room('browser-1')
    await until(peer.client.connection, (s) => s.status === 'connected', 10_000, 'peer connected')
    await peerRoom.join()

    const running = page.evaluate(async (tok) => {
      type Sdk = typeof import('../../packages/client/src/index.ts')
      const { SwitchboardClient } = (window as unknown as { sdk: Sdk }).sdk
      const client = new SwitchboardClient({ token: tok }) // url: the page's origin; fetch: the browser's
      ;(window as unknown as { client: unknown }).client = client
      client.connect()
      const room = client.room('browser-1')
      await room.join()
      const sent = await room.send('hello from the browser')
      const file = new Blob(['browser bytes'], { type: 'text/plain' })
      const att = await client.upload('browser-1', file, 'b.txt')
      await room.send('with a file', { attachment: att })
      const back = await (await client.fetchAttachment(att.url)).text()
      const wait = (pred: () => boolean) =>
        new Promise<void>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error('timeout: ' + JSON.stringify(room.state.get().messages.map((m) => m.text)))), 10_000)
          const check = () => pred() && (clearTimeout(t), off(), resolve())
          const off = room.state.subscribe(check)
          check()
        })
      await wait(() => room.state.get().messages.some((m) => m.text === 'hello from node'))
      const fromNode = room.state.get().messages.find((m) => m.text === 'hello from node')!
      await room.react(fromNode.id, 'constructor', true)
      await wait(() => room.state.get().messages.find((m) => m.id === fromNode.id)?.reactions?.constructor?.length === 1)
      return { sentSeq: sent.seq, back, status: client.connection.get().status, me: client.connection.get().me?.username }
    }, token)
    await until(peerRoom.state, (x) => x.messages.some((m) => m.text === 'with a file'), 10_000, 'the browser\'s messages')
    await peerRoom.send('hello from node')
    const out = await running
    assert.equal(out.back, 'browser bytes')
    assert.equal(out.status, 'connected')
    assert.equal(out.me, 'sdk-browser')
    const s = await until(peerRoom.state, (x) => x.messages.some((m) => m.text === 'hello from node' && m.reactions?.constructor !== undefined), 10_000, 'reaction from the browser')
    assert.deepEqual(
      s.messages.map((m) => m.text),
      ['hello from the browser', 'with a file', 'hello from node'],
    )
    assert.ok(s.messages[1].attachment?.fileName === 'b.txt')
    assert.equal(peer.client.presence.get().online.get(browserUser), 'sdk-browser')

    const closed = await page.evaluate(async () => {
      const client = (window as unknown as { client: { close(): Promise<void>; connection: { get(): { status: string } } } }).client
      await client.close()
      return client.connection.get().status
    })
    assert.equal(closed, 'closed')
    // The page's socket really closed: the peer sees the browser user go offline.
    await until(peer.client.presence, (p) => !p.online.has(browserUser), 10_000, 'browser user offline')
    assert.deepEqual(errors, [])
    await page.close()
  })
})
