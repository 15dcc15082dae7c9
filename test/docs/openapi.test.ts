import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { validate } from '@readme/openapi-parser'
import { ack, chatClient, closeClients, devToken, startIsolatedNode, useIsolatedNode } from '../../services/chat/test/helpers.ts'
import { launchChromium } from '../../services/web/test/browser.ts'

// The OpenAPI document of the HTTP routes (@fastify/swagger, from the routes' TypeBox schemas):
// valid, complete, served with Swagger UI in dev and absent in production (D171, D172). And the
// response schemas, which Fastify serializes with (dropping what they do not name), keep every
// field a message can carry: a history page equals what chat:sync says over the socket.

type OpenApi = { openapi: string; paths: Record<string, Record<string, unknown>> }

/** Method + OpenAPI path of every route the app registered, from Fastify's own route tree. */
function appRoutes(printed: string): Set<string> {
  const out = new Set<string>()
  const prefixes: string[] = []
  for (const line of printed.split('\n')) {
    // `│   └── /:id/messages (GET, HEAD)`: a segment under the line one level up.
    const m = /^([│ ├└─]*?)[├└]── (\S*) \(([A-Z, ]+)\)$/.exec(line)
    if (!m) continue
    const depth = m[1].length / 4
    const path = (prefixes[depth - 1] ?? '') + m[2]
    prefixes[depth] = path
    prefixes.length = depth + 1
    for (const method of m[3].split(', ')) out.add(`${method} ${path.replace(/:(\w+)/g, '{$1}')}`)
  }
  return out
}

describe('OpenAPI at /docs/json (dev)', () => {
  const node = useIsolatedNode()
  let doc: OpenApi

  before(async () => {
    const res = await fetch(`${node.url}/docs/json`)
    assert.equal(res.status, 200)
    doc = (await res.json()) as OpenApi
  })

  it('is a valid OpenAPI 3 document', async () => {
    assert.match(doc.openapi, /^3\./)
    const result = await validate(structuredClone(doc) as never)
    assert.equal(result.valid, true, JSON.stringify((result as { errors?: unknown }).errors, null, 2))
  })

  it('lists every route of the app, and nothing else', () => {
    const documented = new Set<string>()
    for (const [path, item] of Object.entries(doc.paths)) for (const method of Object.keys(item)) documented.add(`${method.toUpperCase()} ${path}`)
    const routes = [...appRoutes(node.app.http.printRoutes({ commonPrefix: false }))].filter(
      // Not API: HEAD twins of GETs, Swagger UI itself, the web client's files.
      (r) => !r.startsWith('HEAD ') && !/^\w+ \/docs(\/|$)/.test(r) && r !== 'GET *',
    )
    for (const expected of ['GET /healthz', 'GET /readyz', 'GET /metrics', 'POST /api/dev/token', 'GET /api/rooms', 'POST /api/rooms', 'GET /api/rooms/{id}/messages', 'POST /api/uploads', 'GET /api/attachments/{id}']) {
      assert.ok(routes.includes(expected), `the app has ${expected} (route tree parsed)`)
    }
    assert.deepEqual([...documented].sort(), routes.sort())
  })

  it('describes request and response bodies from the TypeBox schemas', () => {
    const op = (path: string, method: string) => doc.paths[path][method] as any
    assert.deepEqual(op('/api/dev/token', 'post').requestBody.content['application/json'].schema.required, ['username'])
    assert.ok(op('/api/uploads', 'post').requestBody.content['multipart/form-data'], 'uploads are multipart')
    const page = op('/api/rooms/{id}/messages', 'get')
    assert.deepEqual(page.parameters.map((p: { in: string; name: string }) => `${p.in}:${p.name}`).sort(), ['path:id', 'query:before', 'query:limit'])
    const message = page.responses['200'].content['application/json'].schema.properties.messages.items
    assert.deepEqual(Object.keys(message.properties).sort(), ['attachment', 'deletedAt', 'editedAt', 'id', 'reactions', 'replyTo', 'roomId', 'seq', 'text', 'timestamp', 'userId', 'username', 'version'].sort())
    assert.ok(op('/api/rooms', 'get').security, 'bearer token')
  })

  it('serves Swagger UI at /docs from its own files', async () => {
    const res = await fetch(`${node.url}/docs`)
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /text\/html/)
    const html = await res.text()
    assert.match(html, /swagger-ui/i)
    // Every script, style and image is a path on this node.
    const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1])
    assert.ok(refs.length > 0)
    for (const ref of refs) assert.doesNotMatch(ref, /^(https?:)?\/\//, ref)
    const initializer = await fetch(`${node.url}/docs/static/swagger-initializer.js`)
    assert.equal(initializer.status, 200)
    assert.match(await initializer.text(), /validatorUrl":\s*null|validatorUrl: null/)
  })

  it('Swagger UI renders every operation in Chromium, loading nothing from elsewhere, with no CSP violation', { timeout: 60_000 }, async () => {
    const browser = await launchChromium()
    try {
      const page = await browser.newPage()
      const requests: string[] = []
      const problems: string[] = []
      page.on('request', (r) => void requests.push(r.url()))
      page.on('console', (m) => void (m.type() === 'error' && problems.push(m.text())))
      page.on('pageerror', (e) => void problems.push(e.message))
      await page.goto(`${node.url}/docs`)
      const operations = Object.values(doc.paths).reduce((n, item) => n + Object.keys(item).length, 0)
      await page.waitForFunction((n) => document.querySelectorAll('.opblock').length === n, operations, { timeout: 20_000 })
      assert.ok(await page.getByText('/api/rooms/{id}/messages').first().isVisible())
      assert.deepEqual(problems, [])
      assert.ok(requests.some((u) => u.endsWith('/docs/json')), 'the UI read the document')
      for (const url of requests) assert.ok(url.startsWith(`${node.url}/`) || url.startsWith('data:'), url)
    } finally {
      await browser.close()
    }
  })

  it('history pages keep every field of a message (response schemas drop nothing)', async () => {
    const { token } = await devToken(node.url, 'docs-ana')
    const socket = await chatClient(node.url, token)
    const roomId = `docs-${randomUUID().slice(0, 8)}`
    assert.equal((await ack(socket, 'room:join', roomId)).status, 'ok')
    const first = await ack(socket, 'chat:message', { roomId, text: 'first' })
    const form = new FormData()
    form.append('roomId', roomId)
    form.append('file', new Blob(['hello file'], { type: 'text/plain' }), 'note.txt')
    const uploaded = await fetch(`${node.url}/api/uploads`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: form })
    assert.equal(uploaded.status, 201)
    const attachment = (await uploaded.json()) as { id: string; fileName: string; mimeType: string; size: number; url: string }
    assert.deepEqual(Object.keys(attachment).sort(), ['fileName', 'id', 'mimeType', 'size', 'url'])
    const second = await ack(socket, 'chat:message', { roomId, text: 'second', replyTo: first.messageId, attachmentId: attachment.id })
    assert.equal(second.status, 'ok')
    assert.equal((await ack(socket, 'chat:react', { roomId, messageId: second.messageId, emoji: 'constructor', on: true })).status, 'ok')
    assert.equal((await ack(socket, 'chat:react', { roomId, messageId: second.messageId, emoji: '👍\n', on: true })).status, 'ok')
    assert.equal((await ack(socket, 'chat:edit', { roomId, messageId: second.messageId, text: 'second, edited' })).status, 'ok')
    const third = await ack(socket, 'chat:message', { roomId, text: 'third' })
    assert.equal((await ack(socket, 'chat:delete', { roomId, messageId: third.messageId })).status, 'ok')

    const synced = await ack(socket, 'chat:sync', { rooms: { [roomId]: 0 } })
    const overSocket = synced.rooms[roomId] as { seq: number }[]
    const res = await fetch(`${node.url}/api/rooms/${roomId}/messages`, { headers: { authorization: `Bearer ${token}` } })
    assert.equal(res.status, 200)
    const page = (await res.json()) as { roomId: string; messages: { seq: number }[]; hasMore: boolean }
    assert.deepEqual(Object.keys(page).sort(), ['hasMore', 'messages', 'roomId'])
    assert.deepEqual([...page.messages].reverse(), overSocket)
    const m2 = page.messages.find((m) => m.seq === 2) as any
    assert.ok(m2.replyTo && m2.attachment && m2.editedAt && m2.reactions.constructor && m2.reactions['👍\n'], JSON.stringify(m2))
    assert.ok((page.messages.find((m) => m.seq === 3) as any).deletedAt)
  })

  it('room list, created room, dev token and health answer every field they did before', async () => {
    const res = await fetch(`${node.url}/api/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'docs-ops', roles: ['admin'] }) })
    const t = (await res.json()) as Record<string, unknown>
    assert.deepEqual(Object.keys(t).sort(), ['expiresAt', 'roles', 'token', 'userId', 'username'])
    const auth = { authorization: `Bearer ${t.token as string}`, 'content-type': 'application/json' }
    const created = await fetch(`${node.url}/api/rooms`, { method: 'POST', headers: auth, body: JSON.stringify({ name: 'Docs', private: true, members: ['someone'] }) })
    assert.equal(created.status, 201)
    assert.deepEqual(Object.keys((await created.json()) as object).sort(), ['id', 'lastSeq', 'members', 'name', 'private'])
    const list = (await (await fetch(`${node.url}/api/rooms`, { headers: auth })).json()) as { rooms: object[] }
    assert.deepEqual(Object.keys(list.rooms[0]).sort(), ['id', 'lastReadSeq', 'lastSeq', 'name', 'private', 'unread'])
    assert.deepEqual(Object.keys((await (await fetch(`${node.url}/healthz`)).json()) as object).sort(), ['node', 'status'])
    const ready = (await (await fetch(`${node.url}/readyz`)).json()) as { status: string; checks: Record<string, string> }
    assert.equal(ready.status, 'ready')
    assert.deepEqual(ready.checks, { postgres: 'ok', redis: 'ok' })
    const notFound = await fetch(`${node.url}/api/rooms/nope/messages`, { headers: auth })
    assert.deepEqual(Object.keys((await notFound.json()) as object).sort(), ['error', 'message'])
  })
})

describe('OpenAPI off in production', () => {
  let node: Awaited<ReturnType<typeof startIsolatedNode>> | undefined
  before(async () => {
    node = await startIsolatedNode({ NODE_ENV: 'production' })
  })
  after(async () => {
    closeClients()
    await node?.close()
  })

  it('/docs and /docs/json are 404 while the API answers', async () => {
    assert.equal(node!.config.API_DOCS, false)
    assert.equal((await fetch(`${node!.url}/healthz`)).status, 200)
    for (const path of ['/docs', '/docs/json', '/docs/static/index.html']) {
      const res = await fetch(`${node!.url}${path}`)
      assert.equal(res.status, 404, path)
      assert.equal(((await res.json()) as { error: string }).error, 'NOT_FOUND')
    }
  })
})
