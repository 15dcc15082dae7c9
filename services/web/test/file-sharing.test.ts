import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { crc32, deflateSync } from 'node:zlib'
import { after, before, describe, it } from 'node:test'
import type { Browser } from 'playwright-core'
import { buildClient, joinRoom, launchChromium, message, octetPerNode, openUser, screenshot, startWebCluster, type User, type WebCluster } from './browser.ts'

/** A real w×h red PNG (so Chromium really decodes the preview). */
function redPng(w: number, h: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data])
    const len = Buffer.alloc(4)
    len.writeUInt32BE(data.length)
    const crc = Buffer.alloc(4)
    crc.writeUInt32BE(crc32(body))
    return Buffer.concat([len, body, crc])
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(w, 0)
  ihdr.writeUInt32BE(h, 4)
  ihdr.set([8, 2, 0, 0, 0], 8) // 8-bit RGB
  const row = Buffer.concat([Buffer.from([0]), Buffer.alloc(w * 3, Buffer.from([255, 0, 0]))])
  const pixels = deflateSync(Buffer.concat(Array.from({ length: h }, () => row)))
  return Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), chunk('IHDR', ihdr), chunk('IDAT', pixels), chunk('IEND', Buffer.alloc(0))])
}
const PNG = redPng(120, 80)
const NOTES = Buffer.from(`Notes for the team — ünïcödé ✓\n${randomBytes(2000).toString('hex')}\n`)
const NOTES_NAME = 'Protokoll – März "final".txt'

/**
 * File sharing in the web client, in Chromium, across two nodes behind nginx: Ana attaches
 * files on node 1, Ben sees and downloads them on node 2 (contexts placed by X-Forwarded-For).
 */
describe('web client file sharing in Chromium, across nodes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sb-webfiles-'))
  chmodSync(dir, 0o755)
  let web: WebCluster
  let browser: Browser
  let octets: Map<string, number>
  const opened: User[] = []
  const nodeId = (i: number) => web.cluster.nodes[i].id
  const user = async (name: string, i: number) => {
    const u = await openUser(browser, web.cluster.url, name, { octet: octets.get(nodeId(i))! })
    opened.push(u)
    return u
  }

  before(async () => {
    await buildClient(join(dir, 'web'))
    web = await startWebCluster(dir, join(dir, 'web'), { RATE_LIMIT_MESSAGES: '1000' }, 2)
    browser = await launchChromium()
    octets = await octetPerNode(web.cluster.url, web.cluster.nodes.map((n) => n.id))
  })

  after(async () => {
    for (const u of opened) await u.context.close().catch(() => undefined)
    await browser?.close()
    await web?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('a file sent on one node is previewed and downloaded, byte for byte, by a user on another', async () => {
    const ana = await user('ana', 0)
    const ben = await user('ben', 1)
    // Which node served each upload of Ana's page and each attachment request of Ben's.
    const anaUploadNodes: string[] = []
    const benAttachmentNodes: string[] = []
    ana.page.on('response', (res) => {
      if (res.url().endsWith('/api/uploads')) anaUploadNodes.push(res.headers()['x-switchboard-node'] ?? '')
    })
    ben.page.on('response', (res) => {
      if (res.url().includes('/api/attachments/')) benAttachmentNodes.push(res.headers()['x-switchboard-node'] ?? '')
    })

    await ana.page.getByTestId('room-create-name').fill('Files')
    await ana.page.getByTestId('room-create-id').fill('files')
    await ana.page.getByTestId('room-create-submit').click()
    await ana.page.locator('[data-testid="room"][data-room-id="files"][data-joined="true"]').waitFor()
    await joinRoom(ben.page, 'files')

    // An image with no text: the file name is the message text; both sides show a preview.
    await ana.page.getByTestId('attach-input').setInputFiles({ name: 'pixel.png', mimeType: 'image/png', buffer: PNG })
    await ana.page.getByTestId('attach-picked').filter({ hasText: 'pixel.png' }).waitFor()
    await ana.page.getByTestId('send').click()
    for (const u of [ana, ben]) {
      const img = message(u.page, 'pixel.png').getByTestId('attachment-image')
      await img.waitFor()
      await u.page.waitForFunction((el) => (el as HTMLImageElement).complete && (el as HTMLImageElement).naturalWidth === 120, await img.elementHandle())
      assert.match((await img.getAttribute('src')) ?? '', /^blob:/, `${u.name}: the preview is a blob URL fetched with the token`)
    }
    assert.equal(await ana.page.getByTestId('attach-picked').count(), 0, 'the composer is cleared after sending')

    // A text file with words: a download link, no preview.
    await ana.page.getByTestId('attach-input').setInputFiles({ name: NOTES_NAME, mimeType: 'text/plain', buffer: NOTES })
    await ana.page.getByTestId('composer').fill('the notes from today')
    await ana.page.getByTestId('send').click()
    const notes = message(ben.page, 'the notes from today')
    await notes.getByTestId('attachment-download').filter({ hasText: NOTES_NAME }).waitFor()
    assert.equal(await notes.getByTestId('attachment-image').count(), 0)
    await screenshot(ben.page, 'file-sharing')

    const [download] = await Promise.all([ben.page.waitForEvent('download'), notes.getByTestId('attachment-download').click()])
    // The exact name is shown; Chromium itself makes `"` a `_` in the name it saves under.
    assert.equal(download.suggestedFilename(), NOTES_NAME.replaceAll('"', '_'))
    assert.ok(readFileSync((await download.path())!).equals(NOTES), 'Ben gets exactly the bytes Ana sent')

    const [imageDownload] = await Promise.all([ben.page.waitForEvent('download'), message(ben.page, 'pixel.png').getByTestId('attachment-download').click()])
    assert.equal(imageDownload.suggestedFilename(), 'pixel.png')
    assert.ok(readFileSync((await imageDownload.path())!).equals(PNG))

    assert.deepEqual(anaUploadNodes, [nodeId(0), nodeId(0)], 'Ana uploaded both files to her node')
    assert.ok(benAttachmentNodes.length >= 3, 'preview and two downloads were fetched')
    assert.deepEqual([...new Set(benAttachmentNodes)], [nodeId(1)], 'Ben got the files from his own node, not the one Ana uploaded to')

    // A reload: the message comes from history, with its preview.
    await ben.page.reload()
    await ben.page.locator('[data-testid="room"][data-room-id="files"][data-joined="true"]').waitFor()
    await message(ben.page, 'pixel.png').getByTestId('attachment-image').waitFor()
  })
})
