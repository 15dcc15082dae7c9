import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import contentDisposition from 'content-disposition'
import { gzipSync } from 'node:zlib'
import { sql } from 'kysely'
import { MAX_FILE_NAME, parseRange, sanitizeFileName } from '../src/domain/upload-rules.ts'
import {
  ack,
  chatClient,
  closeClients,
  createTestDatabase,
  devToken,
  eventually,
  getJson,
  next,
  REDIS_URL,
  redisPrefix,
  startIsolatedNode,
  startNode,
  type TestNode,
} from './helpers.ts'

// A real 1×1 PNG; bytes after IEND are ignored by decoders, so padding makes a big, valid image.
const PNG_1PX = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64')
const bigPng = (bytes: number) => Buffer.concat([PNG_1PX, randomBytes(bytes - PNG_1PX.length)])
const MAX = 1024 * 1024

interface UploadFile {
  name: string
  type: string
  bytes: Uint8Array
}

async function upload(url: string, token: string, roomId: string | undefined, file: UploadFile, roomFirst = true) {
  const form = new FormData()
  const blob = new Blob([new Uint8Array(file.bytes)], { type: file.type })
  if (roomFirst && roomId !== undefined) form.append('roomId', roomId)
  form.append('file', blob, file.name)
  if (!roomFirst && roomId !== undefined) form.append('roomId', roomId)
  const res = await fetch(`${url}/api/uploads`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: form })
  return { status: res.status, body: (await res.json()) as any }
}

/**
 * A multipart body built by hand, for file names FormData would escape (it writes `"` and
 * newlines as %22 / %0D%0A): here the name travels RFC 5987-encoded in `filename*`.
 */
async function uploadNamed(url: string, token: string, roomId: string, fileName: string, bytes: Buffer) {
  const boundary = 'sb' + randomUUID()
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="roomId"\r\n\r\n${roomId}\r\n`),
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename*=UTF-8''${encodeURIComponent(fileName)}\r\nContent-Type: text/plain\r\n\r\n`),
    bytes,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ])
  const res = await fetch(`${url}/api/uploads`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': `multipart/form-data; boundary=${boundary}` },
    body,
  })
  return { status: res.status, body: (await res.json()) as any }
}

async function download(url: string, token: string, id: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/api/attachments/${id}`, { headers: { authorization: `Bearer ${token}`, ...headers } })
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) }
}

async function createRoom(url: string, token: string, body: object) {
  const res = await fetch(`${url}/api/rooms`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  assert.equal(res.status, 201, await res.clone().text())
  return res.json()
}

/** Everything the blob store holds: chunk rows (postgres) or files (fs). */
async function storedBlobs(node: TestNode, store: string, dir: string): Promise<number> {
  if (store === 'postgres') {
    const { rows } = await sql<{ n: number }>`select count(distinct storage_key)::int as n from attachment_chunks`.execute(node.db)
    return rows[0].n
  }
  let n = 0
  for (const shard of readdirSync(dir)) n += readdirSync(join(dir, shard)).length
  return n
}

const attachmentRows = async (node: TestNode) =>
  (await sql<{ n: number }>`select count(*)::int as n from attachments`.execute(node.db)).rows[0].n

describe('upload rules (pure)', () => {
  it('sanitises file names: no paths, controls, NUL, bidi overrides or lone surrogates; long names keep their extension', () => {
    assert.equal(sanitizeFileName('C:\\Users\\me\\report.pdf'), 'report.pdf')
    assert.equal(sanitizeFileName('/etc/passwd'), 'passwd')
    assert.equal(sanitizeFileName('a\u0000b\nc\u202Ed\u009F.txt'), 'abcd.txt')
    assert.equal(sanitizeFileName('x\uD800y\uDC00z.txt'), 'xyz.txt')
    assert.equal(sanitizeFileName('ok \uD83D\uDE00.txt'), 'ok \uD83D\uDE00.txt', 'a paired surrogate (emoji) stays')
    assert.equal(sanitizeFileName('..'), 'file')
    assert.equal(sanitizeFileName('  \u0001 '), 'file')
    const long = sanitizeFileName('é'.repeat(500) + '.jpeg')
    assert.equal([...long].length, MAX_FILE_NAME)
    assert.ok(long.endsWith('é.jpeg'))
    assert.equal(sanitizeFileName('naïve "quote" 日本.txt'), 'naïve "quote" 日本.txt', 'the rest is verbatim')
  })

  it('parses one byte range', () => {
    assert.deepEqual(parseRange('bytes=0-9', 100), { start: 0, end: 9 })
    assert.deepEqual(parseRange('bytes=90-', 100), { start: 90, end: 99 })
    assert.deepEqual(parseRange('bytes=-10', 100), { start: 90, end: 99 })
    assert.deepEqual(parseRange('bytes=-1000', 100), { start: 0, end: 99 })
    assert.deepEqual(parseRange('bytes=95-1000', 100), { start: 95, end: 99 })
    assert.equal(parseRange('bytes=100-', 100), 'unsatisfiable')
    assert.equal(parseRange('bytes=-0', 100), 'unsatisfiable')
    assert.equal(parseRange('bytes=9-1', 100), null)
    assert.equal(parseRange('bytes=0-1,3-4', 100), null)
    assert.equal(parseRange('items=0-1', 100), null)
    assert.equal(parseRange(undefined, 100), null)
  })
})

for (const store of ['postgres', 'fs'] as const) {
  describe(`file sharing (${store} store, two nodes on one database)`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-uploads-'))
    const database = { url: '', drop: async () => {} }
    const redis = redisPrefix()
    let a: TestNode
    let b: TestNode
    let ana: { token: string; userId: string }
    let ben: { token: string; userId: string }
    let cy: { token: string; userId: string }
    const room = `files-${store}`

    before(async () => {
      Object.assign(database, await createTestDatabase())
      const env = {
        DATABASE_URL: database.url,
        REDIS_URL,
        REDIS_PREFIX: redis.prefix,
        UPLOAD_STORE: store,
        UPLOAD_DIR: dir,
        UPLOAD_MAX_BYTES: String(MAX),
      }
      a = await startNode(env)
      b = await startNode(env)
      ;[ana, ben, cy] = await Promise.all(['ana', 'ben', 'cy'].map((n) => devToken(a.url, n)))
      for (const u of [ana, ben]) {
        const s = await chatClient(a.url, u.token)
        assert.equal((await ack(s, 'room:join', room)).status, 'ok')
        s.disconnect()
      }
    })

    after(async () => {
      closeClients()
      await a?.close()
      await b?.close()
      await database.drop()
      await redis.clear()
      rmSync(dir, { recursive: true, force: true })
    })

    it('round trip: a multi-chunk PNG and a UTF-8 text file, served by the other node', async () => {
      const png = bigPng(600 * 1024) // three 256 KiB chunks in Postgres
      const up = await upload(a.url, ana.token, room, { name: 'cat.png', type: 'image/png', bytes: png })
      assert.equal(up.status, 201, JSON.stringify(up.body))
      assert.deepEqual(Object.keys(up.body).sort(), ['fileName', 'id', 'mimeType', 'size', 'url'])
      assert.equal(up.body.mimeType, 'image/png')
      assert.equal(up.body.size, png.length)
      // The url names the room, so the download reads one partition (D121); the bare id works too.
      assert.equal(up.body.url, `/api/attachments/${up.body.id}?room=${encodeURIComponent(room)}`)
      const viaUrl = await fetch(`${b.url}${up.body.url}`, { headers: { authorization: `Bearer ${ana.token}` } })
      assert.equal(viaUrl.status, 200)
      assert.ok(Buffer.from(await viaUrl.arrayBuffer()).equals(png), 'the url serves the bytes')
      const elsewhere = await fetch(`${b.url}/api/attachments/${up.body.id}?room=${encodeURIComponent(`${room}-other`)}`, {
        headers: { authorization: `Bearer ${ana.token}` },
      })
      assert.equal(elsewhere.status, 404, 'another room in the url: not found')
      const badRoom = await fetch(`${b.url}/api/attachments/${up.body.id}?room=${encodeURIComponent('no spaces')}`, {
        headers: { authorization: `Bearer ${ana.token}` },
      })
      assert.equal(badRoom.status, 400, 'a malformed room id: BAD_REQUEST')
      const got = await download(b.url, ana.token, up.body.id)
      assert.equal(got.status, 200)
      assert.ok(got.bytes.equals(png), 'the same bytes come back')
      assert.equal(got.headers.get('content-type'), 'image/png')
      assert.equal(got.headers.get('content-length'), String(png.length))
      assert.match(got.headers.get('content-disposition') ?? '', /^inline; filename="cat.png"$/)

      const text = Buffer.from('Grüße aus Köln 👋\nline two\ttabbed\r\n'.repeat(300)) // > one sniff sample
      const t = await upload(a.url, ana.token, room, { name: 'notes.txt', type: 'text/plain', bytes: text })
      assert.equal(t.status, 201, JSON.stringify(t.body))
      assert.equal(t.body.mimeType, 'text/plain')
      const gotText = await download(b.url, ana.token, t.body.id)
      assert.ok(gotText.bytes.equals(text))
      assert.equal(gotText.headers.get('content-type'), 'text/plain; charset=utf-8')
      assert.match(gotText.headers.get('content-disposition') ?? '', /^attachment; /)
    })

    it('judges the type from the bytes: lies about the type are 415 and store nothing', async () => {
      const before = await storedBlobs(a, store, dir)
      const rowsBefore = await attachmentRows(a)
      const html = Buffer.from('<!doctype html><html><body><script>alert(document.cookie)</script></body></html>')
      const exe = Buffer.concat([Buffer.from('MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff', 'latin1'), randomBytes(4096)])
      const textThenNul = Buffer.concat([Buffer.from('a'.repeat(600_000)), Buffer.from([0]), Buffer.from('tail')])
      const badUtf8 = Buffer.concat([Buffer.from('ok so far '.repeat(500)), Buffer.from([0xc3, 0x28])])
      for (const [what, file] of [
        ['HTML declared as PNG', { name: 'cat.png', type: 'image/png', bytes: html }],
        ['an executable declared as PNG', { name: 'cat.png', type: 'image/png', bytes: exe }],
        ['an executable declared as text', { name: 'a.txt', type: 'text/plain', bytes: exe }],
        ['text with a NUL past the sniffed head', { name: 'a.txt', type: 'text/plain', bytes: textThenNul }],
        ['invalid UTF-8', { name: 'a.txt', type: 'text/plain', bytes: badUtf8 }],
        ['gzip, a type not allowed', { name: 'x.txt', type: 'text/plain', bytes: gzipSync('hello '.repeat(1000)) }],
      ] as const) {
        const res = await upload(a.url, ana.token, room, file)
        assert.equal(res.status, 415, `${what}: ${JSON.stringify(res.body)}`)
        assert.equal(res.body.error, 'BAD_REQUEST', what)
      }
      assert.equal(await storedBlobs(a, store, dir), before, 'no bytes left behind')
      assert.equal(await attachmentRows(a), rowsBefore, 'no rows')
    })

    it('over the cap: 413 while the body is still arriving, nothing stored, the node keeps serving', async () => {
      const blobsBefore = await storedBlobs(a, store, dir)
      const rowsBefore = await attachmentRows(a)
      // A chunked body (no Content-Length) that we never finish: only a server that enforces the
      // cap while streaming can answer before the end.
      const boundary = 'sb' + randomUUID()
      const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpRequest(`${a.url}/api/uploads`, {
          method: 'POST',
          headers: { authorization: `Bearer ${ana.token}`, 'content-type': `multipart/form-data; boundary=${boundary}`, 'transfer-encoding': 'chunked' },
        })
        req.on('error', reject)
        req.on('response', (r) => {
          let body = ''
          r.on('data', (c) => (body += c))
          r.on('end', () => {
            req.destroy()
            resolve({ status: r.statusCode ?? 0, body })
          })
        })
        req.write(`--${boundary}\r\nContent-Disposition: form-data; name="roomId"\r\n\r\n${room}\r\n`)
        req.write(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\nContent-Type: image/png\r\n\r\n`)
        req.write(PNG_1PX)
        let sent = 0
        const pump = () => {
          // Up to three times the cap, then wait (the answer must come before we would end).
          while (sent < 3 * MAX && !req.destroyed) {
            sent += 64 * 1024
            if (!req.write(randomBytes(64 * 1024))) return void req.once('drain', pump)
          }
        }
        pump()
      })
      assert.equal(res.status, 413, res.body)
      assert.equal(JSON.parse(res.body).error, 'TOO_LARGE')
      const health = await fetch(`${a.url}/healthz`)
      assert.equal(health.status, 200)
      await eventually(async () => (await storedBlobs(a, store, dir)) === blobsBefore, 5000, 'partial upload removed')
      assert.equal(await attachmentRows(a), rowsBefore)

      // A client that gives up halfway, once bytes were stored, leaves nothing behind either.
      const half = httpRequest(`${a.url}/api/uploads`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ana.token}`, 'content-type': `multipart/form-data; boundary=${boundary}`, 'transfer-encoding': 'chunked' },
      })
      half.on('error', () => undefined)
      half.write(`--${boundary}\r\nContent-Disposition: form-data; name="roomId"\r\n\r\n${room}\r\n`)
      half.write(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="half.png"\r\nContent-Type: image/png\r\n\r\n`)
      half.write(bigPng(600 * 1024))
      await eventually(async () => (await storedBlobs(a, store, dir)) > blobsBefore, 5000, 'the first bytes stored')
      half.destroy()
      await eventually(async () => (await storedBlobs(a, store, dir)) === blobsBefore, 5000, 'the abandoned upload removed')
      assert.equal(await attachmentRows(a), rowsBefore)
      assert.equal((await fetch(`${a.url}/healthz`)).status, 200)

      // With a Content-Length over the cap the answer needs no bytes at all.
      const declared = await upload(a.url, ana.token, room, { name: 'big.png', type: 'image/png', bytes: bigPng(MAX + 200 * 1024) })
      assert.equal(declared.status, 413)
      // Exactly at the cap is fine.
      const atCap = await upload(a.url, ana.token, room, { name: 'max.png', type: 'image/png', bytes: bigPng(MAX) })
      assert.equal(atCap.status, 201, JSON.stringify(atCap.body))
      assert.equal(atCap.body.size, MAX)
    })

    it('bad forms: no roomId, roomId after the file, a bad room id, an empty file, no token', async () => {
      const file = { name: 'a.txt', type: 'text/plain', bytes: Buffer.from('hello') }
      assert.equal((await upload(a.url, ana.token, undefined, file)).status, 400)
      assert.equal((await upload(a.url, ana.token, room, file, false)).status, 400)
      const bad = await upload(a.url, ana.token, 'no spaces allowed', file)
      assert.equal(bad.status, 400)
      assert.equal(bad.body.error, 'BAD_REQUEST')
      assert.equal((await upload(a.url, ana.token, room, { ...file, bytes: Buffer.alloc(0) })).status, 400)
      const anon = await fetch(`${a.url}/api/uploads`, { method: 'POST', body: new FormData() })
      assert.equal(anon.status, 401)
      const json = await fetch(`${a.url}/api/uploads`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ana.token}`, 'content-type': 'application/json' },
        body: '{}',
      })
      assert.equal(json.status, 400)
      const post = (contentType: string, body: string) =>
        fetch(`${a.url}/api/uploads`, { method: 'POST', headers: { authorization: `Bearer ${ana.token}`, 'content-type': contentType }, body })
      for (const [what, res] of [
        ['garbage', await post('multipart/form-data; boundary=b', 'garbage')],
        ['no boundary', await post('multipart/form-data', 'x')],
        ['a file cut short', await post('multipart/form-data; boundary=b', `--b\r\nContent-Disposition: form-data; name="roomId"\r\n\r\n${room}\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nabc`)],
      ] as const) {
        assert.equal(res.status, 400, what)
        assert.equal(((await res.json()) as any).error, 'BAD_REQUEST', what)
      }
    })

    it('members only: private rooms refuse outsiders to upload and to download, without telling what exists', async () => {
      const secret = `secret-${store}`
      await createRoom(a.url, ana.token, { id: secret, name: 'Secret', private: true })
      const file = { name: 'plan.txt', type: 'text/plain', bytes: Buffer.from('the plan') }
      const outsider = await upload(a.url, cy.token, secret, file)
      assert.equal(outsider.status, 403)
      assert.equal(outsider.body.error, 'FORBIDDEN')
      const mine = await upload(a.url, ana.token, secret, file)
      assert.equal(mine.status, 201)
      const peek = await download(b.url, cy.token, mine.body.id)
      const unknown = await download(b.url, cy.token, randomUUID())
      assert.equal(peek.status, 404)
      assert.equal(unknown.status, 404)
      assert.deepEqual(JSON.parse(peek.bytes.toString()), JSON.parse(unknown.bytes.toString()), 'the same answer as for nothing')
      // A public room: joining first is the rule.
      assert.equal((await upload(a.url, cy.token, room, file)).status, 403)
      assert.equal((await upload(a.url, cy.token, 'never-created', file)).status, 404)
      // Not yet sent: only the uploader sees it, even inside the room.
      const draft = await upload(a.url, ana.token, room, file)
      assert.equal((await download(b.url, ben.token, draft.body.id)).status, 404)
      assert.equal((await download(b.url, ana.token, draft.body.id)).status, 200)
      assert.equal((await download(a.url, ana.token, 'not-a-uuid')).status, 400)
    })

    it('headers: nosniff, CSP sandbox, a Content-Disposition that survives quotes, controls and UTF-8', async () => {
      const raw = '../../etc/naïve "quote";\tX\u0007-Injected: yes;\u202Egnp.exe 日本\u0000.txt'
      const up = await uploadNamed(a.url, ana.token, room, raw, Buffer.from('harmless'))
      assert.equal(up.status, 201, JSON.stringify(up.body))
      assert.equal(up.body.fileName, 'naïve "quote";X-Injected: yes;gnp.exe 日本.txt')
      const got = await download(a.url, ana.token, up.body.id)
      assert.equal(got.headers.get('x-content-type-options'), 'nosniff')
      assert.equal(got.headers.get('content-security-policy'), 'sandbox')
      const cd = got.headers.get('content-disposition') ?? ''
      assert.match(cd, /^attachment; filename="[\x20-\x7e]*"; filename\*=UTF-8''[\x21-\x7e]+$/)
      assert.equal(contentDisposition.parse(cd).parameters.filename, up.body.fileName, 'filename* carries the exact name')
      assert.equal(contentDisposition.parse(cd).type, 'attachment')
      // FormData (like a browser) writes a quote as %22: it arrives as the quote it was.
      const viaForm = await upload(a.url, ana.token, room, { name: 'März "final".txt', type: 'text/plain', bytes: Buffer.from('x') })
      assert.equal(viaForm.body.fileName, 'März "final".txt')
      // A name with a line break never gets as far as a file (busboy drops such parts): a clear 400.
      const rowsBefore = await attachmentRows(a)
      const broken = await uploadNamed(a.url, ana.token, room, 'evil\r\nX-Injected: yes.txt', Buffer.from('x'))
      assert.equal(broken.status, 400)
      assert.equal(await attachmentRows(a), rowsBefore)
    })

    it('range requests read only what is asked, across chunk boundaries', async () => {
      const png = bigPng(700 * 1024)
      const up = await upload(a.url, ana.token, room, { name: 'r.png', type: 'image/png', bytes: png })
      const ranged = async (range: string) => download(b.url, ana.token, up.body.id, { range })
      const edge = 256 * 1024
      const across = await ranged(`bytes=${edge - 10}-${edge + 9}`)
      assert.equal(across.status, 206)
      assert.equal(across.headers.get('content-range'), `bytes ${edge - 10}-${edge + 9}/${png.length}`)
      assert.equal(across.headers.get('content-length'), '20')
      assert.equal(across.headers.get('accept-ranges'), 'bytes')
      assert.ok(across.bytes.equals(png.subarray(edge - 10, edge + 10)))
      const first = await ranged('bytes=0-0')
      assert.ok(first.bytes.equals(png.subarray(0, 1)))
      const suffix = await ranged('bytes=-100')
      assert.equal(suffix.headers.get('content-range'), `bytes ${png.length - 100}-${png.length - 1}/${png.length}`)
      assert.ok(suffix.bytes.equals(png.subarray(-100)))
      const open = await ranged(`bytes=${2 * edge + 5}-`)
      assert.ok(open.bytes.equals(png.subarray(2 * edge + 5)))
      const clamped = await ranged(`bytes=${png.length - 3}-${png.length + 1000}`)
      assert.ok(clamped.bytes.equals(png.subarray(-3)))
      const beyond = await ranged(`bytes=${png.length}-`)
      assert.equal(beyond.status, 416)
      assert.equal(beyond.headers.get('content-range'), `bytes */${png.length}`)
      const multi = await ranged('bytes=0-1,5-6')
      assert.equal(multi.status, 200, 'several ranges: the whole file')
      assert.ok(multi.bytes.equals(png))
      const stale = await download(b.url, ana.token, up.body.id, { range: 'bytes=0-9', 'if-range': '"something-else"' })
      assert.equal(stale.status, 200, 'If-Range that does not match: the whole file')
      if (store === 'postgres') {
        // Take the first chunk away: a range in the third one still works, so it was never read.
        await sql`delete from attachment_chunks where idx = 0 and storage_key = (select storage_key from attachments where id = ${up.body.id})`.execute(a.db)
        const third = await ranged(`bytes=${2 * edge}-${2 * edge + 99}`)
        assert.equal(third.status, 206)
        assert.ok(third.bytes.equals(png.subarray(2 * edge, 2 * edge + 100)))
      }
    })

    it('a message with the attachment: live on the other node, in history, in chat:sync; only own uploads of the room', async () => {
      const png = bigPng(300 * 1024)
      const up = await upload(a.url, ana.token, room, { name: 'photo.png', type: 'image/png', bytes: png })
      const anaSocket = await chatClient(a.url, ana.token)
      await ack(anaSocket, 'room:join', room)
      const benSocket = await chatClient(b.url, ben.token)
      const joined = await ack(benSocket, 'room:join', room)
      const live = next(benSocket, 'chat:message', (m: any) => m.attachment?.id === up.body.id)
      const sent = await ack(anaSocket, 'chat:message', { roomId: room, text: 'photo.png', attachmentId: up.body.id })
      assert.equal(sent.status, 'ok', JSON.stringify(sent))
      const m = await live
      assert.deepEqual(m.attachment, up.body, 'the live message on node B carries the attachment')

      const history = await getJson(b.url, ben.token, `/api/rooms/${room}/messages`)
      assert.deepEqual(history.body.messages.find((x: any) => x.id === sent.messageId).attachment, up.body)
      const sync = await ack(benSocket, 'chat:sync', { rooms: { [room]: joined.lastSeq } })
      assert.deepEqual(sync.rooms[room].find((x: any) => x.id === sent.messageId).attachment, up.body)
      const rejoin = await chatClient(b.url, ben.token)
      const hist = next(rejoin, 'room:history')
      await ack(rejoin, 'room:join', room)
      assert.deepEqual((await hist).messages.find((x: any) => x.id === sent.messageId).attachment, up.body)
      // Now that it is sent, the room sees it.
      const got = await download(b.url, ben.token, up.body.id)
      assert.equal(got.status, 200)
      assert.ok(got.bytes.equals(png))

      // Someone else's upload, or one of another room, cannot be attached.
      const bens = await upload(a.url, ben.token, room, { name: 'b.txt', type: 'text/plain', bytes: Buffer.from('ben') })
      const notMine = await ack(anaSocket, 'chat:message', { roomId: room, text: 'x', attachmentId: bens.body.id })
      assert.equal(notMine.code, 'NOT_FOUND')
      const other = `elsewhere-${store}`
      await ack(anaSocket, 'room:join', other)
      const wrongRoom = await ack(anaSocket, 'chat:message', { roomId: other, text: 'x', attachmentId: up.body.id })
      assert.equal(wrongRoom.code, 'NOT_FOUND')
      const missing = await ack(anaSocket, 'chat:message', { roomId: room, text: 'x', attachmentId: randomUUID() })
      assert.equal(missing.code, 'NOT_FOUND')
    })
  })

  describe(`upload sweep (${store} store)`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-sweep-'))
    let node: Awaited<ReturnType<typeof startIsolatedNode>>
    before(async () => {
      node = await startIsolatedNode({ UPLOAD_STORE: store, UPLOAD_DIR: dir, UPLOAD_UNREFERENCED_TTL_SECONDS: '2', UPLOAD_SWEEP_INTERVAL_SECONDS: '1' })
    })
    after(async () => {
      closeClients()
      await node?.close()
      rmSync(dir, { recursive: true, force: true })
    })

    it('removes uploads no message references (and those of deleted messages), keeps the rest, and clears orphans', async () => {
      const room = 'sweep'
      const ana = await devToken(node.url, 'ana')
      const s = await chatClient(node.url, ana.token)
      await ack(s, 'room:join', room)
      const file = (name: string) => ({ name, type: 'text/plain', bytes: Buffer.from(`contents of ${name}`) })
      const kept = await upload(node.url, ana.token, room, file('kept.txt'))
      const deleted = await upload(node.url, ana.token, room, file('deleted.txt'))
      const keptMsg = await ack(s, 'chat:message', { roomId: room, text: 'kept', attachmentId: kept.body.id })
      const deletedMsg = await ack(s, 'chat:message', { roomId: room, text: 'gone', attachmentId: deleted.body.id })
      assert.equal(keptMsg.status, 'ok')
      assert.equal(deletedMsg.status, 'ok')
      const unsent = await upload(node.url, ana.token, room, file('unsent.txt'))
      // Blobs a crash left without a row, written long ago.
      const orphanKey = randomUUID()
      if (store === 'postgres') {
        await sql`insert into attachment_chunks (storage_key, idx, data, created_at) values (${orphanKey}, 0, ${Buffer.from('x')}, now() - interval '2 hours')`.execute(node.db)
      } else {
        mkdirSync(join(dir, orphanKey.slice(0, 2)), { recursive: true })
        writeFileSync(join(dir, orphanKey.slice(0, 2), orphanKey), 'x')
        utimesSync(join(dir, orphanKey.slice(0, 2), orphanKey), new Date(Date.now() - 7200_000), new Date(Date.now() - 7200_000))
      }
      assert.equal((await ack(s, 'chat:delete', { roomId: room, messageId: deletedMsg.messageId })).status, 'ok')

      const exists = async (id: string) => (await sql<{ n: number }>`select count(*)::int as n from attachments where id = ${id}`.execute(node.db)).rows[0].n === 1
      await eventually(async () => !(await exists(unsent.body.id)) && !(await exists(deleted.body.id)), 10_000, 'the sweep')
      assert.equal((await download(node.url, ana.token, unsent.body.id)).status, 404)
      assert.ok(await exists(kept.body.id), 'a referenced upload stays')
      const got = await download(node.url, ana.token, kept.body.id)
      assert.equal(got.bytes.toString(), 'contents of kept.txt')
      await eventually(async () => (await storedBlobs(node, store, dir)) === 1, 5000, 'only the kept blob is left')
      const history = await getJson(node.url, ana.token, `/api/rooms/${room}/messages`)
      assert.equal(history.body.messages.find((m: any) => m.id === deletedMsg.messageId).attachment, undefined)
    })
  })
}
