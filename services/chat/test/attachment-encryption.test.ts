import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { promisify } from 'node:util'
import { after, before, describe, it } from 'node:test'
import { sql } from 'kysely'
import { pino } from 'pino'
import { parseKeyring } from '../src/crypto/at-rest.ts'
import { AttachmentSeals, chunked } from '../src/store/attachment-seal.ts'
import { ack, chatClient, closeClients, createTestDatabase, devToken, getJson, REDIS_URL, redisPrefix, runReencrypt, startNode, type TestNode } from './helpers.ts'

const run = promisify(execFile)
const key = () => randomBytes(32).toString('base64')
const K1 = `k1:${key()}`
const K2 = `k2:${key()}`
const CHUNK = 256 * 1024
const canary = (what: string) => `${what}-canary-${randomBytes(6).toString('hex')}`
const PNG_1PX = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64')

async function pgDump(url: string): Promise<string> {
  const { stdout } = await run('/usr/bin/pg_dump', ['--format=plain', '--no-owner', '--dbname', url], { maxBuffer: 64 * 1024 * 1024 })
  return stdout
}

/** Neither the bytes as they are nor as the hex a bytea column shows (for long files: three 48-byte windows of them). */
function assertNotIn(haystack: string | Buffer, plain: Buffer | string, what: string) {
  const bytes = Buffer.from(plain)
  const windows = [0, 1000, 300_000].filter((o) => o + 48 <= bytes.length).map((o) => bytes.subarray(o, o + 48))
  for (const w of windows.length > 0 ? windows : [bytes]) {
    assert.ok(!(typeof haystack === 'string' ? haystack.includes(w.toString()) : haystack.includes(w)), `${what}: plaintext found`)
    assert.ok(!haystack.includes(w.toString('hex')), `${what}: plaintext found as hex`)
  }
}

async function upload(url: string, token: string, roomId: string, name: string, type: string, bytes: Buffer) {
  const form = new FormData()
  form.append('roomId', roomId)
  form.append('file', new Blob([new Uint8Array(bytes)], { type }), name)
  const res = await fetch(`${url}/api/uploads`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: form })
  const body = (await res.json()) as any
  assert.equal(res.status, 201, JSON.stringify(body))
  return body as { id: string; fileName: string; size: number }
}

async function download(url: string, token: string, id: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/api/attachments/${id}`, { headers: { authorization: `Bearer ${token}`, ...headers } })
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) }
}

/** Every byte of every file under `d`. */
const filesUnder = (d: string): Buffer =>
  Buffer.concat((readdirSync(d, { recursive: true }) as string[]).map((f) => join(d, f)).filter((f) => statSync(f).isFile()).map((f) => readFileSync(f)))

describe('chunking (pure)', () => {
  const cut = async (pieces: number[]) => {
    async function* source() {
      for (const n of pieces) yield randomBytes(n)
    }
    const out: [number, number, boolean][] = []
    for await (const c of chunked(source())) out.push([c.idx, c.data.length, c.last])
    return out
  }
  it('cuts exact 256 KiB chunks from pieces of any size, and marks only the real last one', async () => {
    assert.deepEqual(await cut([CHUNK, CHUNK]), [[0, CHUNK, false], [1, CHUNK, true]], 'an exact multiple: the last full chunk is the last')
    assert.deepEqual(await cut([100, 2 * CHUNK - 100, 1]), [[0, CHUNK, false], [1, CHUNK, false], [2, 1, true]])
    assert.deepEqual(await cut([7, 0, 9]), [[0, 16, true]])
    assert.deepEqual(await cut([]), [])
  })
  it('a chunk in the wrong place, or a last chunk with another size, does not open', () => {
    const seals = new AttachmentSeals(parseKeyring(K1))
    const data = randomBytes(CHUNK)
    const sealed = seals.sealChunk('a1', { idx: 1, data, last: false })!
    assert.ok(seals.openChunk('a1', 3 * CHUNK, 1, 'k1', sealed.data).equals(data))
    assert.throws(() => seals.openChunk('a1', 3 * CHUNK, 0, 'k1', sealed.data), /failed authentication/)
    assert.throws(() => seals.openChunk('a2', 3 * CHUNK, 1, 'k1', sealed.data), /failed authentication/)
    assert.throws(() => seals.openChunk('a1', 2 * CHUNK, 1, 'k1', sealed.data), /failed authentication/, 'now the last chunk: bound to the size')
    assert.throws(() => new AttachmentSeals(null).openChunk('a1', 3 * CHUNK, 1, 'k1', sealed.data), /ENCRYPTION_KEYS is not set/)
  })
})

for (const store of ['postgres', 'fs'] as const) {
  describe(`attachments encrypted at rest (${store} store, real Postgres, pg_dump)`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-attcrypto-'))
    let database: Awaited<ReturnType<typeof createTestDatabase>>
    const redis = redisPrefix()
    let node: TestNode | undefined
    /** Error lines the node logged. */
    const errors: string[] = []
    const logStream = new Writable({
      write(line, _enc, done) {
        errors.push(String(line))
        done()
      },
    })
    const room = `vault-${store}`
    let token = ''

    const start = async (keys: string | null) => {
      closeClients()
      await node?.close()
      const env: Record<string, string> = { DATABASE_URL: database.url, REDIS_URL, REDIS_PREFIX: redis.prefix, UPLOAD_STORE: store, UPLOAD_DIR: dir }
      if (keys !== null) env.ENCRYPTION_KEYS = keys
      node = await startNode(env, { log: pino({ level: 'error' }, logStream) })
      token = (await devToken(node.url, 'ana')).token
      return node
    }
    /** Uploads a file and shows it in a message, so the room (and history) see it. */
    const share = async (name: string, type: string, bytes: Buffer) => {
      const s = await chatClient(node!.url, token)
      assert.equal((await ack(s, 'room:join', room)).status, 'ok')
      const up = await upload(node!.url, token, room, name, type, bytes)
      assert.equal((await ack(s, 'chat:message', { roomId: room, text: 'file', attachmentId: up.id })).status, 'ok')
      return up
    }
    const storageKey = async (id: string) => (await sql<{ k: string }>`select storage_key as k from attachments where id = ${id}`.execute(node!.db)).rows[0].k
    const sealedPath = (k: string) => join(dir, k.slice(0, 2), `${k}.sbe`)

    // The files, their names and their contents must never be readable at rest.
    const legacy = { name: `${canary('legacy')}.txt`, bytes: Buffer.from(`${canary('legacy-body')}\n`.repeat(50)) }
    const png = { name: `${canary('holiday')}.png`, bytes: Buffer.concat([PNG_1PX, randomBytes(600 * 1024 - PNG_1PX.length)]) } // three chunks
    const text = { name: `${canary('minutes')}.txt`, bytes: Buffer.from(`${canary('minutes-body')} Grüße\n`.repeat(12_000)) } // two chunks
    const later = { name: `${canary('later')}.txt`, bytes: Buffer.from(`${canary('later-body')}\n`.repeat(10)) }
    const ids: Record<string, string> = {}

    before(async () => {
      database = await createTestDatabase()
    })
    after(async () => {
      closeClients()
      await node?.close()
      await database?.drop()
      await redis.clear()
      rmSync(dir, { recursive: true, force: true })
    })

    it('plaintext mode stores plaintext, as before (so the checks below can fail)', async () => {
      await start(null)
      ids.legacy = (await share(legacy.name, 'text/plain', legacy.bytes)).id
      const dump = await pgDump(database.url)
      assert.ok(dump.includes(legacy.name), 'the name is in the dump')
      const row = await node!.db.selectFrom('attachments').selectAll().where('id', '=', ids.legacy).executeTakeFirstOrThrow()
      assert.deepEqual([row.file_name, row.key_id, row.file_name_cipher], [legacy.name, null, null])
      if (store === 'postgres') assert.ok(dump.includes(legacy.bytes.subarray(0, 48).toString('hex')), 'the bytes are in the dump (as bytea hex)')
      else assert.ok(filesUnder(dir).includes(legacy.bytes.subarray(0, 48)), 'the bytes are on disk')
    })

    it('with ENCRYPTION_KEYS: every chunk and name sealed, nothing readable in a dump or on disk; downloads, ranges and history exact', async () => {
      await start(K1)
      ids.png = (await share(png.name, 'image/png', png.bytes)).id
      ids.text = (await share(text.name, 'text/plain', text.bytes)).id

      const rows = await node!.db.selectFrom('attachments').selectAll().where('id', 'in', [ids.png, ids.text]).execute()
      for (const r of rows) {
        assert.deepEqual([r.file_name, r.key_id], ['', 'k1'])
        assert.ok(r.file_name_cipher && r.file_name_cipher.length > 29)
      }
      if (store === 'postgres') {
        const chunks = await sql<{ idx: number; key_id: string; n: number }>`
          select c.idx, c.key_id, length(c.data) as n from attachment_chunks c join attachments a on a.storage_key = c.storage_key
          where a.id = ${ids.png} order by c.idx`.execute(node!.db)
        assert.deepEqual(chunks.rows, [
          { idx: 0, key_id: 'k1', n: CHUNK + 29 },
          { idx: 1, key_id: 'k1', n: CHUNK + 29 },
          { idx: 2, key_id: 'k1', n: png.bytes.length - 2 * CHUNK + 29 },
        ])
      } else {
        const k = await storageKey(ids.png)
        assert.ok(existsSync(sealedPath(k)) && !existsSync(join(dir, k.slice(0, 2), k)), 'a sealed file, no plaintext one')
        const file = readFileSync(sealedPath(k))
        assert.equal(file.subarray(0, 4).toString(), 'SBE1')
        assert.equal(file.length, 4 + 1 + 2 + 4 + png.bytes.length + 3 * 29)
        const disk = filesUnder(dir)
        for (const f of [png, text]) assertNotIn(disk, f.bytes, `${f.name} on disk`)
      }

      const dump = await pgDump(database.url)
      assert.ok(dump.includes(ids.png), 'the dump holds the attachments table')
      for (const f of [png, text]) {
        assertNotIn(dump, f.name, `${f.name} in the dump`)
        assertNotIn(dump, f.bytes, `${f.name} bytes in the dump`)
      }

      for (const [id, f] of [[ids.legacy, legacy], [ids.png, png], [ids.text, text]] as const) {
        const got = await download(node!.url, token, id)
        assert.equal(got.status, 200)
        assert.ok(got.bytes.equals(f.bytes), `${f.name} round trip`)
        assert.match(got.headers.get('content-disposition') ?? '', new RegExp(f.name.replace('.', '\\.')))
      }
      const ranged = async (range: string) => download(node!.url, token, ids.png, { range })
      for (const [start, end] of [[CHUNK - 10, CHUNK + 9], [0, 0], [2 * CHUNK + 5, png.bytes.length - 1], [png.bytes.length - 100, png.bytes.length - 1]]) {
        const r = await ranged(`bytes=${start}-${end}`)
        assert.equal(r.status, 206)
        assert.equal(r.headers.get('content-range'), `bytes ${start}-${end}/${png.bytes.length}`)
        assert.ok(r.bytes.equals(png.bytes.subarray(start, end + 1)), `range ${start}-${end}`)
      }
      if (store === 'postgres') {
        // A range in the last chunk reads only that one: the others may be gone.
        const saved = await sql<{ idx: number; data: Buffer }>`select idx, data from attachment_chunks where storage_key = ${await storageKey(ids.png)} and idx < 2`.execute(node!.db)
        await sql`delete from attachment_chunks where storage_key = ${await storageKey(ids.png)} and idx < 2`.execute(node!.db)
        const r = await ranged(`bytes=${2 * CHUNK}-${2 * CHUNK + 99}`)
        assert.ok(r.bytes.equals(png.bytes.subarray(2 * CHUNK, 2 * CHUNK + 100)))
        for (const s of saved.rows) {
          await sql`insert into attachment_chunks (storage_key, idx, data, key_id) values (${await storageKey(ids.png)}, ${s.idx}, ${s.data}, 'k1')`.execute(node!.db)
        }
      }

      const history = await getJson(node!.url, token, `/api/rooms/${room}/messages`)
      assert.equal(history.status, 200)
      assert.deepEqual(
        history.body.messages.map((m: any) => m.attachment?.fileName).reverse(),
        [legacy.name, png.name, text.name],
        'names opened in history',
      )
    })

    it('a flipped byte, swapped chunks or a changed size: 500 and an error log, never garbage', async () => {
      const k = await storageKey(ids.png)
      const refused = async (what: string, headers: Record<string, string> = {}) => {
        errors.length = 0
        const got = await download(node!.url, token, ids.png, headers)
        assert.equal(got.status, 500, what)
        assert.equal(JSON.parse(got.bytes.toString()).error, 'INTERNAL', what)
        assert.ok(errors.some((l) => l.includes('AtRestError') && l.includes(ids.png)), `${what}: logged`)
      }
      if (store === 'postgres') {
        const chunk = (idx: number) => sql<{ data: Buffer }>`select data from attachment_chunks where storage_key = ${k} and idx = ${idx}`.execute(node!.db).then((r) => r.rows[0].data)
        const setChunk = (idx: number, data: Buffer) => sql`update attachment_chunks set data = ${data} where storage_key = ${k} and idx = ${idx}`.execute(node!.db)
        const [c0, c1] = [await chunk(0), await chunk(1)]
        const flipped = Buffer.from(c0)
        flipped[5000] ^= 0x01
        await setChunk(0, flipped)
        await refused('a flipped byte in chunk 0')
        await setChunk(0, c1)
        await setChunk(1, c0)
        await refused('chunks 0 and 1 swapped')
        await refused('chunk 1 as a range', { range: `bytes=${CHUNK}-${CHUNK + 9}` })
        await setChunk(0, c0)
        await setChunk(1, c1)
        // Another attachment's chunk in this one's place.
        const other = await sql<{ data: Buffer }>`select data from attachment_chunks where storage_key = ${await storageKey(ids.text)} and idx = 0`.execute(node!.db)
        await setChunk(0, other.rows[0].data)
        await refused("another file's chunk")
        await setChunk(0, c0)
        // A bad chunk after the first: the response has started, so it is cut off, never completed with garbage.
        const c2 = await chunk(2)
        const bad = Buffer.from(c2)
        bad[100] ^= 0x01
        await setChunk(2, bad)
        await assert.rejects(download(node!.url, token, ids.png), 'the transfer is aborted')
        await setChunk(2, c2)
      } else {
        const path = sealedPath(k)
        const original = readFileSync(path)
        const flipped = Buffer.from(original)
        flipped[20_000] ^= 0x01
        writeFileSync(path, flipped)
        await refused('a flipped byte in chunk 0')
        // Chunks 0 and 1 swapped in the file.
        const h = 4 + 1 + 2 + 4
        const sealed = CHUNK + 29
        writeFileSync(path, Buffer.concat([original.subarray(0, h), original.subarray(h + sealed, h + 2 * sealed), original.subarray(h, h + sealed), original.subarray(h + 2 * sealed)]))
        await refused('chunks 0 and 1 swapped')
        await refused('chunk 1 as a range', { range: `bytes=${CHUNK}-${CHUNK + 9}` })
        const late = Buffer.from(original)
        late[h + 2 * sealed + 100] ^= 0x01
        writeFileSync(path, late)
        await assert.rejects(download(node!.url, token, ids.png), 'a bad chunk after the first: the transfer is aborted')
        copyFileSync(sealedPath(await storageKey(ids.text)), path)
        await refused("another file's bytes")
        writeFileSync(path, original)
        // A plaintext file planted beside the sealed one is not served.
        const planted = join(dir, k.slice(0, 2), k)
        writeFileSync(planted, randomBytes(png.bytes.length))
        assert.ok((await download(node!.url, token, ids.png)).bytes.equals(png.bytes), 'the sealed file wins')
        rmSync(planted)
      }
      // The last chunk carries the size: a smaller size (or chunks dropped from the end) is refused.
      await sql`update attachments set size = size - ${CHUNK} where id = ${ids.png}`.execute(node!.db)
      await refused('a size that drops the last chunk', { range: `bytes=${CHUNK}-${CHUNK + 9}` })
      await sql`update attachments set size = size + ${CHUNK} where id = ${ids.png}`.execute(node!.db)
      // Restored: readable again (the refusals were not cached or sticky).
      assert.ok((await download(node!.url, token, ids.png)).bytes.equals(png.bytes))
    })

    it('a node without the key refuses loudly', async () => {
      await start(K2)
      errors.length = 0
      const got = await download(node!.url, token, ids.png)
      assert.equal(got.status, 500)
      assert.ok(errors.some((l) => l.includes('key \\"k1\\" is not in ENCRYPTION_KEYS') || l.includes('key "k1" is not in ENCRYPTION_KEYS')), errors.join('\n'))
      assert.equal((await getJson(node!.url, token, `/api/rooms/${room}/messages`)).status, 500, 'history with a sealed name it cannot open')
      await start(null)
      assert.equal((await download(node!.url, token, ids.text)).status, 500, 'encrypted, and no keys at all')
      assert.ok((await download(node!.url, token, ids.legacy)).bytes.equals(legacy.bytes), 'plaintext rows still read')
    })

    it('rotation: k2,k1 + npm run reencrypt (stopped, resumed) → k2 alone reads every file; no plaintext left', async () => {
      await start(`${K2},${K1}`)
      ids.later = (await share(later.name, 'text/plain', later.bytes)).id
      const lost = randomUUID()
      if (store === 'fs') {
        // A row whose file is gone (a bad restore): said and skipped, the rest still moves.
        await sql`insert into attachments (id, room_id, user_id, file_name, mime_type, size, storage_key)
          values (${lost}, ${room}, 'u', 'lost.txt', 'text/plain', 10, ${randomUUID()})`.execute(node!.db)
      }
      await node!.close()
      node = undefined
      const env: Record<string, string> = { DATABASE_URL: database.url, ENCRYPTION_KEYS: `${K2},${K1}` }
      if (store === 'fs') Object.assign(env, { UPLOAD_STORE: 'fs', UPLOAD_DIR: dir })
      const first = await runReencrypt(env, ['--batch-size', '1', '--max-batches', '2'])
      assert.equal(first.code, 0, first.out)
      assert.match(first.out, /batch 2: 2 done/)
      assert.doesNotMatch(first.out, /batch 3/)
      const rest = await runReencrypt(env, ['--batch-size', '2'])
      assert.equal(rest.code, 0, rest.out)
      assert.match(rest.out, /finished: .* 0 remaining/)
      assert.match(rest.out, store === 'fs' ? /\(attachment files\)/ : /\(attachment chunks\)/)
      if (store === 'fs') assert.match(rest.out, new RegExp(`warning: attachment ${lost}: its file .* is missing`))

      await start(K2)
      const names = await node!.db.selectFrom('attachments').select(['key_id', 'file_name']).execute()
      assert.deepEqual(names.map((n) => [n.key_id, n.file_name]), names.map(() => ['k2', '']), 'every name on k2, the plaintext one too')
      if (store === 'postgres') {
        const keys = await sql<{ key_id: string | null }>`select distinct key_id from attachment_chunks`.execute(node!.db)
        assert.deepEqual(keys.rows, [{ key_id: 'k2' }])
      } else {
        for (const id of Object.values(ids)) {
          const k = await storageKey(id)
          assert.ok(!existsSync(join(dir, k.slice(0, 2), k)), 'no plaintext file left')
          const file = readFileSync(sealedPath(k))
          assert.equal(file.subarray(4, 7).toString('latin1'), '\x02k2')
        }
        const disk = filesUnder(dir)
        for (const f of [legacy, png, text, later]) assertNotIn(disk, f.bytes, `${f.name} on disk`)
      }
      for (const [id, f] of [[ids.legacy, legacy], [ids.png, png], [ids.text, text], [ids.later, later]] as const) {
        const got = await download(node!.url, token, id)
        assert.equal(got.status, 200)
        assert.ok(got.bytes.equals(f.bytes), `${f.name} after rotation`)
      }
      const dump = await pgDump(database.url)
      for (const f of [legacy, png, text, later]) {
        assertNotIn(dump, f.name, `${f.name} in the dump`)
        assertNotIn(dump, f.bytes, `${f.name} bytes in the dump`)
      }
    })
  })
}
