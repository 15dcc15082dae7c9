import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect, promisify } from 'node:util'
import { after, before, describe, it } from 'node:test'
import { Kysely, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import { loadConfig } from '../src/config.ts'
import { aad, AtRestError, parseKeyring } from '../src/crypto/at-rest.ts'
import { MessageTexts } from '../src/store/message-text.ts'
import { newMessageId } from '../src/ids.ts'
import { commitBatch, commitBatchCarefully, type Draft } from '../src/store/messages.repository.ts'
import { reencrypt } from '../src/store/reencrypt.ts'
import { insertRoom } from '../src/store/rooms.repository.ts'
import type { Database } from '../src/store/schema.ts'
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
  runReencrypt,
  startNode,
  TEST_SECRET,
  usersInRoom,
  type TestNode,
} from './helpers.ts'

const run = promisify(execFile)
const key = () => randomBytes(32).toString('base64')
const K1 = `k1:${key()}`
const K2 = `k2:${key()}`
/** Distinctive strings that must never show up in a dump of the database. */
const canary = (what: string) => `${what}-canary-${randomBytes(6).toString('hex')}`

async function pgDump(url: string): Promise<string> {
  const { stdout } = await run('/usr/bin/pg_dump', ['--format=plain', '--no-owner', '--dbname', url], { maxBuffer: 64 * 1024 * 1024 })
  return stdout
}

/** The plaintext neither as text nor as the hex a bytea column would show. */
function assertNotIn(dump: string, plain: string) {
  assert.ok(!dump.includes(plain), `the dump contains "${plain}"`)
  assert.ok(!dump.includes(Buffer.from(plain).toString('hex')), `the dump contains "${plain}" as hex`)
}

/** A private database and Redis prefix that outlive the nodes started on them (restarts with other keys). */
function useDeployment() {
  let database: Awaited<ReturnType<typeof createTestDatabase>>
  const redis = redisPrefix()
  const nodes = new Set<TestNode>()
  let raw: Kysely<Database>
  before(async () => {
    database = await createTestDatabase()
    raw = new Kysely<Database>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: database.url, max: 3 }) }) })
  })
  after(async () => {
    closeClients()
    for (const n of nodes) await n.close()
    await raw?.destroy()
    await database?.drop()
    await redis.clear()
  })
  return {
    get url() {
      return database.url
    },
    get raw() {
      return raw
    },
    async start(keys: string | null): Promise<TestNode> {
      const env: Record<string, string> = { DATABASE_URL: database.url, REDIS_URL, REDIS_PREFIX: redis.prefix, RATE_LIMIT_MESSAGES: '1000' }
      if (keys !== null) env.ENCRYPTION_KEYS = keys
      const n = await startNode(env)
      nodes.add(n)
      return n
    },
    async stop(n: TestNode) {
      closeClients()
      nodes.delete(n)
      await n.close()
    },
  }
}

const historyTexts = async (n: TestNode, token: string, roomId: string, limit = 100) => {
  const res = await getJson(n.url, token, `/api/rooms/${roomId}/messages?limit=${limit}`)
  assert.equal(res.status, 200, JSON.stringify(res.body))
  return (res.body.messages as { id: string; text: string }[]).map((m) => m.text).reverse()
}

const send = async (socket: Awaited<ReturnType<typeof chatClient>>, roomId: string, text: string) => {
  const r = await ack(socket, 'chat:message', { roomId, text })
  assert.equal(r.status, 'ok', JSON.stringify(r))
  return r as { messageId: string; seq: number }
}

describe('at-rest primitive (AES-256-GCM key ring)', () => {
  const ring = parseKeyring(`${K2},${K1}`)!

  it('seals with the first key, opens with any listed key, binds to the AAD', () => {
    const a = aad('test', 'row-1')
    const sealed = ring.encrypt('hello', a)
    assert.equal(sealed.keyId, 'k2')
    assert.equal(ring.decrypt('k2', sealed.data, a).toString(), 'hello')
    assert.notDeepEqual(ring.encrypt('hello', a).data, sealed.data, 'a fresh nonce each time')
    const old = parseKeyring(K1)!.encrypt(Buffer.from([0, 1, 2]), a)
    assert.deepEqual([...ring.decrypt('k1', old.data, a)], [0, 1, 2])
    assert.throws(() => ring.decrypt('k2', sealed.data, aad('test', 'row-2')), AtRestError)
    const flipped = Buffer.from(sealed.data)
    flipped[14] ^= 1
    assert.throws(() => ring.decrypt('k2', flipped, a), /failed authentication/)
    assert.throws(() => ring.decrypt('k1', sealed.data, a), /failed authentication/)
    assert.throws(() => ring.decrypt('k3', sealed.data, a), /"k3" is not in ENCRYPTION_KEYS/)
    assert.throws(() => ring.decrypt('k2', sealed.data.subarray(0, 20), a), /malformed/)
  })

  it('never shows key material in logs, JSON or inspect', () => {
    const c = loadConfig({ JWT_SECRET: TEST_SECRET, ENCRYPTION_KEYS: `${K2},${K1}` })
    const secrets = [K1.slice(3), K2.slice(3)]
    for (const shown of [JSON.stringify(c), inspect(c, { depth: 5, showHidden: true })]) {
      for (const s of secrets) assert.ok(!shown.includes(s), 'a key shows')
      assert.match(shown, /k2/)
    }
    assert.equal(c.encryption?.writeKeyId, 'k2')
    assert.deepEqual(c.encryption?.keyIds, ['k2', 'k1'])
    assert.equal(loadConfig({ JWT_SECRET: TEST_SECRET }).encryption, null, 'unset: off')
  })

  it('refuses a malformed ENCRYPTION_KEYS at boot, naming the variable and not the key', () => {
    const short = randomBytes(31).toString('base64')
    const cases = [
      'k1',
      `:${key()}`,
      `bad id:${key()}`,
      `k1:${short}`,
      `k1:not*base64*at*all*not*base64*at*all*00000`,
      `${K1},k1:${key()}`,
      `${K1},`,
      `k1:${randomBytes(33).toString('base64')}`,
    ]
    for (const value of cases) {
      assert.throws(
        () => loadConfig({ JWT_SECRET: TEST_SECRET, ENCRYPTION_KEYS: value }),
        (err: Error) => err.message.startsWith('ENCRYPTION_KEYS') && !err.message.includes(short) && !err.message.includes(K1.slice(3)),
        value,
      )
    }
    assert.throws(() => loadConfig({ JWT_SECRET: TEST_SECRET, ENCRYPTION_KEYS: `${K1},k1:${key()}` }), /listed twice/)
    assert.throws(() => loadConfig({ JWT_SECRET: TEST_SECRET, ENCRYPTION_KEYS: `k1:${short}` }), /32 bytes/)
  })
})

describe('message text encrypted at rest (real sockets, real Postgres, pg_dump)', () => {
  const deployment = useDeployment()
  let node: TestNode
  const room = 'vault'
  const plain = { first: canary('first'), mention: canary('mention'), original: canary('original'), edited: canary('edited'), deleted: canary('deleted') }
  let ana: { token: string; userId: string; socket: Awaited<ReturnType<typeof chatClient>> }
  const ids: Record<string, string> = {}

  before(async () => {
    node = await deployment.start(K1)
    ;[ana] = await usersInRoom(node.url, room, ['ana', 'bob'])
  })

  it('stores ciphertext only: sends, a mention, an edit and a delete leave no plaintext in a dump', async () => {
    const bob = await devToken(node.url, 'bob')
    const bobNotes = await chatClient(node.url, bob.token, { namespace: '/notifications' })
    ids.first = (await send(ana.socket, room, plain.first)).messageId
    const mentioned = next(bobNotes, 'notification', (n: any) => n.type === 'mention')
    ids.mention = (await send(ana.socket, room, `hey @bob ${plain.mention}`)).messageId
    // Mentions are worked out from the plaintext in memory.
    assert.match((await mentioned).text, new RegExp(plain.mention))
    ids.edited = (await send(ana.socket, room, plain.original)).messageId
    const edited = next(ana.socket, 'chat:edited')
    assert.equal((await ack(ana.socket, 'chat:edit', { roomId: room, messageId: ids.edited, text: plain.edited })).status, 'ok')
    assert.equal((await edited).text, plain.edited, 'the live event carries plaintext')
    ids.deleted = (await send(ana.socket, room, plain.deleted)).messageId
    assert.equal((await ack(ana.socket, 'chat:delete', { roomId: room, messageId: ids.deleted })).status, 'ok')

    const rows = await deployment.raw.selectFrom('messages').selectAll().where('room_id', '=', room).orderBy('seq').execute()
    assert.equal(rows.length, 4)
    for (const r of rows.filter((r) => r.id !== ids.deleted)) {
      assert.deepEqual([r.text, r.key_id], ['', 'k1'])
      assert.ok(r.text_cipher && r.text_cipher.length > 28)
    }
    const gone = rows.find((r) => r.id === ids.deleted)!
    assert.deepEqual([gone.text, gone.key_id, gone.text_cipher], ['', null, null], 'a delete clears both')

    const dump = await pgDump(deployment.url)
    assert.ok(dump.includes(ids.first), 'the dump holds the messages table') // the check below can fail
    for (const p of Object.values(plain)) assertNotIn(dump, p)
  })

  it('reads back through history and sync, also after a restart (nothing from memory)', async () => {
    const expected = [plain.first, `hey @bob ${plain.mention}`, plain.edited, '']
    assert.deepEqual(await historyTexts(node, ana.token, room), expected)
    await deployment.stop(node)
    node = await deployment.start(K1)
    ana.token = (await devToken(node.url, 'ana')).token
    assert.deepEqual(await historyTexts(node, ana.token, room), expected)
    const s = await chatClient(node.url, ana.token)
    const sync = await ack(s, 'chat:sync', { rooms: { [room]: 0 } })
    assert.equal(sync.status, 'ok')
    assert.deepEqual(sync.rooms[room].map((m: any) => m.text), expected)
    ana.socket = s
  })

  it('refuses tampered ciphertext (a flipped byte, a row swapped for another) instead of returning garbage', async () => {
    const texts = new MessageTexts(parseKeyring(K1))
    const rows = await deployment.raw.selectFrom('messages').selectAll().where('room_id', '=', room).where('key_id', 'is not', null).orderBy('seq').execute()
    const [a, b] = rows
    const setCipher = (id: string, data: Uint8Array) => deployment.raw.updateTable('messages').set({ text_cipher: Buffer.from(data) }).where('room_id', '=', room).where('id', '=', id).execute()
    const flipped = Buffer.from(a.text_cipher!)
    flipped[20] ^= 0x40
    await setCipher(a.id, flipped)
    const row = await deployment.raw.selectFrom('messages').selectAll().where('id', '=', a.id).executeTakeFirstOrThrow()
    assert.throws(() => texts.open(row), (err: Error) => err instanceof AtRestError && err.message.includes(a.id))
    // A limit not asked before, so the page comes from Postgres and not the history cache.
    let res = await getJson(node.url, ana.token, `/api/rooms/${room}/messages?limit=41`)
    assert.equal(res.status, 500)
    assert.equal(res.body.error, 'INTERNAL')

    // Both ciphertexts valid under the key, but each bound to its own row.
    await setCipher(a.id, b.text_cipher!)
    await setCipher(b.id, a.text_cipher!)
    res = await getJson(node.url, ana.token, `/api/rooms/${room}/messages?limit=42`)
    assert.equal(res.status, 500)
    const swapped = await deployment.raw.selectFrom('messages').selectAll().where('id', '=', b.id).executeTakeFirstOrThrow()
    assert.throws(() => texts.open(swapped), /failed authentication/)

    await setCipher(a.id, a.text_cipher!)
    await setCipher(b.id, b.text_cipher!)
    assert.deepEqual((await historyTexts(node, ana.token, room, 43)).slice(0, 2), [plain.first, `hey @bob ${plain.mention}`])
  })

  it('a node without the key refuses encrypted rows loudly', async () => {
    await deployment.stop(node)
    node = await deployment.start(null)
    ana.token = (await devToken(node.url, 'ana')).token
    const res = await getJson(node.url, ana.token, `/api/rooms/${room}/messages`)
    assert.equal(res.status, 500)
  })

  it('both commit paths (one statement, and the multi-statement fallback) store sealed drafts', async () => {
    const texts = new MessageTexts(parseKeyring(K1))
    await insertRoom(deployment.raw, { id: 'direct', name: 'direct', isPrivate: false, createdBy: 'u' })
    const draft = (text: string): Draft => {
      const id = newMessageId()
      return { id, roomId: 'direct', userId: 'u', username: 'u', ...texts.seal('direct', id, text), replyTo: null, clientMsgId: null, attachmentId: null }
    }
    const one = [canary('one-statement'), canary('one-statement')]
    const careful = [canary('careful'), canary('careful')]
    await commitBatch(deployment.raw, one.map(draft), new Date())
    await commitBatchCarefully(deployment.raw, careful.map(draft), new Date())
    const rows = await deployment.raw.selectFrom('messages').selectAll().where('room_id', '=', 'direct').orderBy('seq').execute()
    assert.deepEqual(rows.map((r) => [r.text, r.key_id]), [...one, ...careful].map(() => ['', 'k1']))
    assert.deepEqual(rows.map((r) => texts.open(r)), [...one, ...careful])
  })

  it('reencrypt stops at a row it cannot open, naming it, and leaves the batch as it was', async () => {
    const before = await deployment.raw.selectFrom('messages').select(['id', 'key_id', 'text_cipher']).orderBy('seq').execute()
    await assert.rejects(reencrypt(deployment.raw, parseKeyring(`k3:${key()}`)!, { batchSize: 10 }), /key "k1" is not in ENCRYPTION_KEYS/)
    assert.deepEqual(await deployment.raw.selectFrom('messages').select(['id', 'key_id', 'text_cipher']).orderBy('seq').execute(), before)
  })
})

describe('key rotation and npm run reencrypt', () => {
  const deployment = useDeployment()
  const room = 'rotate'
  const written: string[] = []

  async function writeSome(n: TestNode, label: string, count: number) {
    const { token } = await devToken(n.url, 'rita')
    const s = await chatClient(n.url, token)
    assert.equal((await ack(s, 'room:join', room)).status, 'ok')
    for (let i = 0; i < count; i++) {
      const text = canary(`${label}${i}`)
      await send(s, room, text)
      written.push(text)
    }
    return { token, socket: s }
  }
  const keysInUse = async () =>
    (await sql<{ key_id: string | null; n: number }>`select key_id, count(*)::int as n from messages group by key_id order by key_id`.execute(deployment.raw)).rows

  it('plaintext → k1 → k2,k1 → reencrypt (stopped, resumed, beside a concurrent edit) → k2 alone reads everything', async () => {
    // Plaintext mode, as before this feature: the dump shows the text (so the later checks can fail).
    let node = await deployment.start(null)
    await writeSome(node, 'plain', 2)
    assert.ok((await pgDump(deployment.url)).includes(written[0]))
    await deployment.stop(node)

    node = await deployment.start(K1)
    await writeSome(node, 'one', 2)
    await deployment.stop(node)

    node = await deployment.start(`${K2},${K1}`)
    const rita = await writeSome(node, 'two', 1)
    assert.deepEqual(await historyTexts(node, rita.token, room), written, 'every key and plaintext still read')
    assert.deepEqual(await keysInUse(), [{ key_id: 'k1', n: 2 }, { key_id: 'k2', n: 1 }, { key_id: null, n: 2 }])

    // Stopped after two batches of one row: two moved, the rest left as it was.
    const ring = parseKeyring(`${K2},${K1}`)!
    const seen: number[] = []
    const partial = await reencrypt(deployment.raw, ring, { batchSize: 1, maxBatches: 2, onProgress: (p) => seen.push(p.remaining) })
    assert.deepEqual([partial.done, partial.remaining, seen], [2, 2, [3, 2]])
    assert.deepEqual(await keysInUse(), [{ key_id: 'k1', n: 2 }, { key_id: 'k2', n: 3 }])

    // An edit in progress holds its row: the re-encryption waits for it and keeps the edit.
    const target = (await deployment.raw.selectFrom('messages').select(['id', 'seq']).where('key_id', '=', 'k1').orderBy('seq').executeTakeFirstOrThrow())
    const editedText = canary('concurrent-edit')
    const editorPool = new pg.Pool({ connectionString: deployment.url, max: 1 })
    const editor = await editorPool.connect()
    const blocked = new Kysely<Database>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: deployment.url, max: 1, application_name: 'reencrypt-under-test' }) }) })
    try {
      await editor.query('begin')
      const stored = new MessageTexts(ring).seal(room, target.id, editedText)
      // What MessagesService.edit writes (updateText), left uncommitted.
      await editor.query('update messages set text = $1, key_id = $2, text_cipher = $3, edited_at = now() where room_id = $4 and id = $5', [
        stored.text,
        stored.keyId,
        stored.textCipher,
        room,
        target.id,
      ])
      const resumed = reencrypt(blocked, ring, { batchSize: 10, maxBatches: 1 })
      await eventually(
        async () =>
          (await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity where application_name = 'reencrypt-under-test' and wait_event_type = 'Lock'`.execute(deployment.raw)).rows[0].n === 1,
        10_000,
        'the re-encryption to wait for the edit',
      )
      await editor.query('commit')
      await resumed
    } finally {
      editor.release()
      await editorPool.end()
      await blocked.destroy()
    }
    written[Number(target.seq) - 1] = editedText // one sender, one room: seq n is written[n - 1]

    // The real script finishes the rest (already done here, so it reports 0 and succeeds).
    const cli = await runReencrypt({ DATABASE_URL: deployment.url, ENCRYPTION_KEYS: `${K2},${K1}` }, ['--batch-size', '2'], true)
    assert.equal(cli.code, 0, cli.out)
    assert.match(cli.out, /0 remaining/)
    assert.deepEqual(await keysInUse(), [{ key_id: 'k2', n: 5 }])
    await deployment.stop(node)

    node = await deployment.start(K2)
    const { token } = await devToken(node.url, 'rita')
    assert.deepEqual(await historyTexts(node, token, room), written, 'k1 dropped: still everything, the concurrent edit included')
    const dump = await pgDump(deployment.url)
    for (const p of written) assertNotIn(dump, p) // the plaintext rows of the start included
    await deployment.stop(node)
  })

  it('the script resumes where a stopped run left off, printing progress', async () => {
    // A node not yet rolled (k1 still first) writes three rows under k1.
    const node = await deployment.start(`${K1},${K2}`)
    await writeSome(node, 'back', 3)
    await deployment.stop(node)
    const env = { DATABASE_URL: deployment.url, ENCRYPTION_KEYS: `${K2},${K1}` }
    const first = await runReencrypt(env, ['--batch-size', '1', '--max-batches', '2'], false)
    assert.equal(first.code, 0, first.out)
    assert.match(first.out, /batch 1: 1 done, 2 remaining/)
    assert.match(first.out, /batch 2: 2 done, 1 remaining/)
    assert.doesNotMatch(first.out, /batch 3/)
    assert.deepEqual(await keysInUse(), [{ key_id: 'k1', n: 1 }, { key_id: 'k2', n: 7 }])
    const rest = await runReencrypt(env, ['--batch-size', '1'], true)
    assert.equal(rest.code, 0, rest.out)
    assert.match(rest.out, /batch 1: 1 done, 0 remaining/)
    assert.deepEqual(await keysInUse(), [{ key_id: 'k2', n: 8 }])
  })

  it('the script refuses clearly without DATABASE_URL or ENCRYPTION_KEYS', async () => {
    const [noDb, noKeys, badKeys] = await Promise.all([
      runReencrypt({ ENCRYPTION_KEYS: K1 }, [], false),
      runReencrypt({ DATABASE_URL: deployment.url }, [], false),
      runReencrypt({ DATABASE_URL: deployment.url, ENCRYPTION_KEYS: 'k1:abc' }, [], false),
    ])
    assert.equal(noDb.code, 78)
    assert.match(noDb.out, /DATABASE_URL is not set/)
    assert.equal(noKeys.code, 78)
    assert.match(noKeys.out, /ENCRYPTION_KEYS is not set/)
    assert.equal(badKeys.code, 78)
    assert.match(badKeys.out, /ENCRYPTION_KEYS must be .*: entry 1/)
  })
})

describe('embedded PGlite with ENCRYPTION_KEYS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sb-enc-'))
  after(() => rmSync(dir, { recursive: true, force: true }))
  /** Every byte PGlite wrote under DATA_DIR (heap, WAL, ...). */
  const filesUnder = (d: string): Buffer =>
    Buffer.concat((readdirSync(d, { recursive: true }) as string[]).map((f) => join(d, f)).filter((f) => statSync(f).isFile()).map((f) => readFileSync(f)))

  it('seals and opens on the embedded database too (message text and an attachment); its files hold no plaintext', async () => {
    const secret = canary('embedded')
    const open = canary('embedded-plain')
    const fileName = `${canary('embedded-file')}.txt`
    const fileBody = `${canary('embedded-file-body')}\n`.repeat(20)
    const start = (keys: string | null) => startNode({ DATA_DIR: dir, ...(keys ? { ENCRYPTION_KEYS: keys } : {}) })
    let n = await start(null)
    let { token } = await devToken(n.url, 'eve')
    let s = await chatClient(n.url, token)
    await ack(s, 'room:join', 'local')
    await send(s, 'local', open)
    closeClients()
    await n.close()
    assert.ok(filesUnder(dir).includes(open), 'plaintext mode: the text is in the files') // so the check below can fail

    n = await start(K1)
    try {
      ;({ token } = await devToken(n.url, 'eve'))
      s = await chatClient(n.url, token)
      await ack(s, 'room:join', 'local')
      const { messageId } = await send(s, 'local', secret)
      const row = await n.db.selectFrom('messages').selectAll().where('id', '=', messageId).executeTakeFirstOrThrow()
      assert.deepEqual([row.text, row.key_id], ['', 'k1'])
      assert.deepEqual(await historyTexts(n, token, 'local'), [open, secret])
      // An attachment in the embedded store's chunks: sealed too.
      const form = new FormData()
      form.append('roomId', 'local')
      form.append('file', new Blob([Buffer.from(fileBody)], { type: 'text/plain' }), fileName)
      const up = await fetch(`${n.url}/api/uploads`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: form })
      assert.equal(up.status, 201)
      const { id } = (await up.json()) as { id: string }
      const got = await fetch(`${n.url}/api/attachments/${id}`, { headers: { authorization: `Bearer ${token}` } })
      assert.equal(await got.text(), fileBody)
      assert.match(got.headers.get('content-disposition') ?? '', new RegExp(fileName))
      const chunk = await n.db.selectFrom('attachment_chunks').select('key_id').executeTakeFirstOrThrow()
      assert.equal(chunk.key_id, 'k1')
    } finally {
      closeClients()
      await n.close()
    }
    const bytes = filesUnder(dir)
    assert.ok(!bytes.includes(secret) && !bytes.includes(Buffer.from(secret).toString('hex')), 'the sealed text is nowhere in the files')
    for (const p of [fileName, fileBody.slice(0, 40)]) assert.ok(!bytes.includes(p) && !bytes.includes(Buffer.from(p).toString('hex')), 'the attachment is nowhere in the files')
  })
})
