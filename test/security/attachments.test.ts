/**
 * Attack suite, attachments (SPEC §6 `POST /api/uploads`, `GET /api/attachments/:id`): a
 * non-member cannot fetch, upload to, or re-use a private room's attachment; a disguised file is
 * judged by its bytes; a hostile file name cannot inject headers; served bytes are sandboxed.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ack, ackCode, chatClient, devToken, httpJson, useIsolatedNode } from './helpers.ts'

/** A 1×1 PNG. */
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64')

async function upload(url: string, token: string | undefined, roomId: string, bytes: Buffer, fileName: string, type: string) {
  const form = new FormData()
  form.append('roomId', roomId)
  form.append('file', new Blob([new Uint8Array(bytes)], { type }), fileName)
  const res = await fetch(`${url}/api/uploads`, { method: 'POST', headers: token ? { authorization: `Bearer ${token}` } : {}, body: form })
  const text = await res.text()
  let body: any = text
  try {
    body = JSON.parse(text)
  } catch {
    /* not JSON */
  }
  return { status: res.status, body }
}

describe('attachments of a private room', () => {
  const node = useIsolatedNode()

  it('a non-member cannot fetch, upload to, or attach a private room\'s file', async () => {
    const owner = await devToken(node.url, 'att-owner')
    const friend = await devToken(node.url, 'att-friend')
    const stranger = await devToken(node.url, 'att-stranger')
    assert.equal((await httpJson(node.url, 'POST', '/api/rooms', { token: owner.token, body: { id: 'att-secret', name: 'S', private: true, members: [friend.userId] } })).status, 201)

    const up = await upload(node.url, owner.token, 'att-secret', PNG, 'dot.png', 'image/png')
    assert.equal(up.status, 201, JSON.stringify(up.body))
    assert.equal(up.body.mimeType, 'image/png')
    assert.equal(up.body.size, PNG.length)
    const path = up.body.url as string
    assert.equal(path, `/api/attachments/${up.body.id}?room=att-secret`)

    // Sent in a message of the room, it is the members' to read (D48: before that, the uploader's only).
    const friendEarly = await fetch(`${node.url}${path}`, { headers: { authorization: `Bearer ${friend.token}` } })
    assert.ok(friendEarly.status === 403 || friendEarly.status === 404, `not yet sent: ${friendEarly.status}`)
    const o = await chatClient(node.url, owner.token)
    assert.equal(ackCode(await ack(o, 'room:join', 'att-secret'), 'owner join'), 'ok')
    assert.equal(ackCode(await ack(o, 'chat:message', { roomId: 'att-secret', text: 'a dot', attachmentId: up.body.id }), 'owner send'), 'ok')
    for (const [who, token] of [['owner', owner.token], ['friend', friend.token]] as const) {
      const res = await fetch(`${node.url}${path}`, { headers: { authorization: `Bearer ${token}` } })
      assert.equal(res.status, 200, who)
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), PNG)
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff')
      assert.match(res.headers.get('content-security-policy') ?? '', /sandbox/)
    }
    const theirs = await fetch(`${node.url}${path}`, { headers: { authorization: `Bearer ${stranger.token}` } })
    assert.ok(theirs.status === 403 || theirs.status === 404, `stranger: ${theirs.status}`)
    assert.ok(!Buffer.from(await theirs.arrayBuffer()).includes(PNG.subarray(0, 16)), 'no bytes for the stranger')
    assert.equal((await fetch(`${node.url}${path}`)).status, 401, 'no token')
    // Naming a room of one's own in the url (D121) finds nothing of another room.
    const viaOwnRoom = await fetch(`${node.url}/api/attachments/${up.body.id}?room=att-public`, { headers: { authorization: `Bearer ${stranger.token}` } })
    assert.equal(viaOwnRoom.status, 404, `stranger naming their own room: ${viaOwnRoom.status}`)

    const intruder = await upload(node.url, stranger.token, 'att-secret', PNG, 'x.png', 'image/png')
    assert.ok(intruder.status === 403 || intruder.status === 404, `stranger upload: ${intruder.status}`)
    assert.equal((await upload(node.url, undefined, 'att-secret', PNG, 'x.png', 'image/png')).status, 401)

    // Re-using the id in a room the stranger may post in does not publish it.
    const s = await chatClient(node.url, stranger.token)
    await ack(s, 'room:join', 'att-public')
    const reuse = await ack(s, 'chat:message', { roomId: 'att-public', text: 'look', attachmentId: up.body.id })
    assert.ok(['NOT_FOUND', 'FORBIDDEN'].includes(ackCode(reuse, 'reuse')), `re-use: ${reuse.code}`)
    const posted = await ack(s, 'chat:message', { roomId: 'att-secret', text: 'look', attachmentId: up.body.id })
    assert.ok(['NOT_FOUND', 'FORBIDDEN'].includes(ackCode(posted, 'post')), `post in the private room: ${posted.code}`)

    for (const bad of ['..%2F..%2Fetc%2Fpasswd', '%00', "'%20or%201=1--", 'x'.repeat(300)]) {
      const res = await fetch(`${node.url}/api/attachments/${bad}`, { headers: { authorization: `Bearer ${owner.token}` } })
      assert.ok(res.status === 400 || res.status === 404, `GET /api/attachments/${bad.slice(0, 20)}: ${res.status}`)
    }
  })

  it('judges the type from the bytes, and a hostile file name cannot inject headers', async () => {
    const owner = await devToken(node.url, 'att-typer')
    const s = await chatClient(node.url, owner.token)
    await ack(s, 'room:join', 'att-types')
    const html = Buffer.from('<!doctype html><script>alert(document.cookie)</script>')
    const disguised = await upload(node.url, owner.token, 'att-types', html, 'cute.png', 'image/png')
    assert.equal(disguised.status, 415, `HTML declared as PNG: ${disguised.status}`)
    assert.equal(disguised.body.error, 'BAD_REQUEST')

    const name = '../../etc/passwd"\r\nX-Evil: 1;\u202Egnp.txt'
    const up = await upload(node.url, owner.token, 'att-types', Buffer.from('just text\n'), name, 'text/plain')
    assert.ok(up.status === 201 || up.status === 400, `hostile name: ${up.status}`)
    if (up.status === 201) {
      const res = await fetch(`${node.url}${up.body.url}`, { headers: { authorization: `Bearer ${owner.token}` } })
      assert.equal(res.status, 200)
      assert.equal(res.headers.get('x-evil'), null)
      const disposition = res.headers.get('content-disposition') ?? ''
      assert.match(disposition, /^attachment/, 'non-images are downloads')
      assert.ok(!/[\r\n]/.test(disposition) && !disposition.includes('../'), disposition)
    }
  })
})
