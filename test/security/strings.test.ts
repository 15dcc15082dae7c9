/**
 * Attack suite, hostile strings (SPEC §4 rules, common brief "nothing unvalidated reaches SQL"):
 * SQL metacharacters, `%`, backslashes, NUL, lone surrogates, 4-byte emoji, RTL overrides and
 * prototype keys in every string field of every client event and HTTP route. Each is stored
 * VERBATIM (read back and compared) or refused with BAD_REQUEST — never INTERNAL / 500.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Socket } from 'socket.io-client'
import { ack, ackCode, chatClient, devToken, httpJson, NASTY, next, signToken, tryConnect, unstorable, useIsolatedNode } from './helpers.ts'

const show = (v: string) => JSON.stringify(v)
/** For a URL path or query: percent-encoded UTF-8, lone surrogates as the (invalid) bytes they would be. */
const pct = (v: string) =>
  [...v]
    .map((ch) => {
      const c = ch.charCodeAt(0)
      if (ch.length === 1 && c >= 0xd800 && c <= 0xdfff) return `%${(0xe0 | (c >> 12)).toString(16)}%${(0x80 | ((c >> 6) & 0x3f)).toString(16)}%${(0x80 | (c & 0x3f)).toString(16)}`.toUpperCase()
      return encodeURIComponent(ch)
    })
    .join('')

describe('hostile strings in every field', () => {
  const node = useIsolatedNode({ RATE_LIMIT_MESSAGES: '10000', TYPING_THROTTLE_MS: '0' })
  const problems: string[] = []
  /** `code` must be ok (then `verbatim()` must hold) or BAD_REQUEST, or one of `alsoOk`; never INTERNAL. */
  const judge = async (what: string, value: string, code: string, verbatim: () => Promise<boolean> | boolean, alsoOk: string[] = []) => {
    if (code === 'ok') {
      if (unstorable(value) && !alsoOk.includes('unstorable-ok')) problems.push(`${what} ${show(value)}: accepted a NUL / lone surrogate`)
      else if (!(await verbatim())) problems.push(`${what} ${show(value)}: accepted but not stored verbatim`)
    } else if (code !== 'BAD_REQUEST' && !alsoOk.includes(code)) problems.push(`${what} ${show(value)}: ${code}`)
  }
  let author: { token: string; userId: string }
  let s: Socket
  let peer: Socket

  const messageById = async (roomId: string, id: string) => {
    const h = await httpJson(node.url, 'GET', `/api/rooms/${roomId}/messages?limit=200`, { token: author.token })
    if (h.status !== 200) {
      problems.push(`history of ${roomId} after a hostile string: ${h.status} ${JSON.stringify(h.body).slice(0, 100)}`)
      return undefined
    }
    return (h.body.messages as any[]).find((m) => m.id === id)
  }

  it('over /chat events', async () => {
    author = await devToken(node.url, 'str-author')
    s = await chatClient(node.url, author.token)
    peer = await chatClient(node.url, (await devToken(node.url, 'str-peer')).token)
    assert.equal(ackCode(await ack(s, 'room:join', 'strings'), 'join'), 'ok')
    assert.equal(ackCode(await ack(peer, 'room:join', 'strings'), 'join'), 'ok')
    const target = await ack(s, 'chat:message', { roomId: 'strings', text: 'edit target' })
    // Reactions in a room of their own: a broken reaction must not hide the other results.
    assert.equal(ackCode(await ack(s, 'room:join', 'strings-react'), 'join'), 'ok')
    const reactTarget = await ack(s, 'chat:message', { roomId: 'strings-react', text: 'react target' })
    const cids = new Map<string, string>()

    for (const [label, value] of NASTY) {
      // chat:message text
      const sent = await ack(s, 'chat:message', { roomId: 'strings', text: value })
      await judge(`chat:message text (${label})`, value, ackCode(sent, 'send'), async () => (await messageById('strings', sent.messageId))?.text === value)
      // chat:message clientMsgId: idempotent on exactly this value, and on no other
      for (const cid of [value, `${value}\ufffd`.slice(0, 128)]) {
        const a = await ack(s, 'chat:message', { roomId: 'strings', text: `cid ${label}`, clientMsgId: cid })
        const code = ackCode(a, 'send cid')
        await judge(`chat:message clientMsgId (${label})`, cid, code, async () => {
          const b = await ack(s, 'chat:message', { roomId: 'strings', text: `cid ${label}`, clientMsgId: cid })
          const clash = [...cids.entries()].find(([other, id]) => id === a.messageId && other !== cid)
          if (clash) problems.push(`clientMsgId ${show(cid)} returned the message of ${show(clash[0])}`)
          cids.set(cid, a.messageId)
          return b.messageId === a.messageId
        })
      }
      // ids and room ids: never INTERNAL
      for (const [event, payload, ok] of [
        ['room:join', value, ['FORBIDDEN']],
        ['room:join', { roomId: value }, ['FORBIDDEN']],
        ['room:leave', value, []],
        ['chat:message', { roomId: value, text: 'x' }, ['FORBIDDEN', 'NOT_FOUND']],
        ['chat:message', { roomId: 'strings', text: 'x', replyTo: value }, ['NOT_FOUND']],
        ['chat:message', { roomId: 'strings', text: 'x', attachmentId: value }, ['NOT_FOUND']],
        ['chat:edit', { roomId: 'strings', messageId: value, text: 'x' }, ['NOT_FOUND']],
        ['chat:delete', { roomId: 'strings', messageId: value }, ['NOT_FOUND']],
        ['chat:react', { roomId: value, messageId: target.messageId, emoji: '👍', on: true }, ['FORBIDDEN', 'NOT_FOUND']],
        ['chat:typing', { roomId: value, isTyping: true }, ['FORBIDDEN', 'NOT_FOUND']],
        ['chat:read', { roomId: 'strings', messageId: value }, ['NOT_FOUND']],
        ['chat:read', { roomId: value, seq: 1 }, ['FORBIDDEN', 'NOT_FOUND']],
        ['chat:sync', { rooms: { [value]: 0 } }, []],
        ['auth:refresh', { token: value }, ['AUTH_INVALID', 'AUTH_REQUIRED']],
      ] as [string, unknown, string[]][]) {
        const res = await ack(s, event, payload)
        const code = ackCode(res, event, { auth: event === 'auth:refresh' })
        const roomLike = typeof payload === 'string' ? payload : (payload as { roomId?: string }).roomId
        await judge(`${event} ${JSON.stringify(payload).slice(0, 60)}`, value, code, async () => {
          if (event === 'room:join') return res.roomId === value && (await httpJson(node.url, 'GET', '/api/rooms', { token: author.token })).body.rooms.some((r: any) => r.id === value)
          if (event === 'chat:sync') return Object.prototype.hasOwnProperty.call(res.errors ?? {}, value) || Object.prototype.hasOwnProperty.call(res.rooms, value)
          if (event === 'room:leave' || event === 'chat:typing') return roomLike === value
          if (event === 'chat:message' && roomLike === value) return (await messageById(value, res.messageId))?.roomId === value
          return false // an id that matches nothing cannot be "ok"
        }, [...ok, ...(event === 'room:leave' || event === 'chat:sync' ? ['unstorable-ok'] : [])])
        assert.ok(s.connected, `${event}: socket kept`)
      }
      // chat:edit text
      const edited = await ack(s, 'chat:edit', { roomId: 'strings', messageId: target.messageId, text: value })
      await judge(`chat:edit text (${label})`, value, ackCode(edited, 'edit'), async () => (await messageById('strings', target.messageId))?.text === value)
      // chat:react emoji: the reaction's key reads back exactly
      const reacted = await ack(s, 'chat:react', { roomId: 'strings-react', messageId: reactTarget.messageId, emoji: value, on: true })
      await judge(`chat:react emoji (${label})`, value, ackCode(reacted, 'react'), async () => {
        const m = await messageById('strings-react', reactTarget.messageId)
        const ok = m?.reactions !== undefined && Object.prototype.hasOwnProperty.call(m.reactions, value) && m.reactions[value].includes(author.userId)
        await ack(s, 'chat:react', { roomId: 'strings-react', messageId: reactTarget.messageId, emoji: value, on: false })
        return ok
      })
    }
    // The typing flag and read mark of a hostile room id never reach the room; a real one does.
    const typing = next(peer, 'chat:typing', (p: any) => p.roomId === 'strings')
    s.emit('chat:typing', { roomId: 'strings', isTyping: true })
    assert.equal((await typing).roomId, 'strings')
    assert.deepEqual(problems.splice(0), [])
  })

  it('over /admin events', async () => {
    const admin = await tryConnect(node.url, '/admin', { auth: { token: await signToken('str-admin', { roles: ['admin'] }) } })
    assert.ok(admin.connected)
    for (const [label, value] of NASTY) {
      const kicked = await admin.socket.timeout(5000).emitWithAck('admin:kick', { userId: value })
      await judge(`admin:kick userId (${label})`, value, ackCode(kicked, 'kick'), () => true, ['NOT_FOUND', 'unstorable-ok'])
      const heard = next(peer, 'admin:announce', (p: any) => p.from?.userId === 'str-admin', 3000).catch(() => null)
      const announced = await admin.socket.timeout(5000).emitWithAck('admin:announce', { text: value })
      await judge(`admin:announce text (${label})`, value, ackCode(announced, 'announce'), async () => (await heard)?.text === value, ['unstorable-ok'])
    }
    admin.socket.disconnect()
    assert.deepEqual(problems.splice(0), [])
  })

  it('over HTTP routes', async () => {
    for (const [label, value] of NASTY) {
      // POST /api/rooms name
      const named = await httpJson(node.url, 'POST', '/api/rooms', { token: author.token, body: { name: value } })
      await judge(`POST /api/rooms name (${label})`, value, named.status === 201 ? 'ok' : named.body.error, async () => {
        const mine = await httpJson(node.url, 'GET', '/api/rooms', { token: author.token })
        return named.body.name === value && mine.body.rooms.some((r: any) => r.id === named.body.id && r.name === value)
      })
      // POST /api/rooms id
      const withId = await httpJson(node.url, 'POST', '/api/rooms', { token: author.token, body: { id: value, name: 'n' } })
      await judge(`POST /api/rooms id (${label})`, value, withId.status === 201 ? 'ok' : withId.body.error, async () => withId.body.id === value, ['CONFLICT'])
      // POST /api/rooms members: the member, signed in with that id, sees the room
      const withMember = await httpJson(node.url, 'POST', '/api/rooms', { token: author.token, body: { name: `m ${label}`, private: true, members: [value] } })
      await judge(`POST /api/rooms members (${label})`, value, withMember.status === 201 ? 'ok' : withMember.body.error, async () => {
        if (!withMember.body.members.includes(value)) return false
        const theirs = await httpJson(node.url, 'GET', '/api/rooms', { token: await signToken(value) })
        return theirs.status === 200 && theirs.body.rooms.some((r: any) => r.id === withMember.body.id)
      })
      // GET history: the room id in the path, before and limit in the query
      const validId = /^[A-Za-z0-9:_.-]{1,128}$/.test(value)
      const paths: [string, number[]][] = [
        [`/api/rooms/${pct(value)}/messages`, validId ? [200, 403, 404] : [400]],
        [`/api/rooms/strings/messages?before=${pct(value)}`, [400]],
        [`/api/rooms/strings/messages?limit=${pct(value)}`, [400]],
      ]
      for (const [path, allowed] of paths) {
        const h = await httpJson(node.url, 'GET', path, { token: author.token })
        if (!allowed.includes(h.status) || (h.status === 400 && h.body.error !== 'BAD_REQUEST')) {
          problems.push(`GET ${path}: ${h.status} ${JSON.stringify(h.body).slice(0, 120)}`)
        }
      }
      // POST /api/dev/token username: the name reads back on a message
      const dev = await httpJson(node.url, 'POST', '/api/dev/token', { body: { username: value } })
      await judge(`dev token username (${label})`, value, dev.status === 200 ? 'ok' : dev.body.error, async () => {
        if (dev.body.username !== value) return false
        const c = await tryConnect(node.url, '/chat', { auth: { token: dev.body.token } })
        if (!c.connected) return false
        const joined = await ack(c.socket, 'room:join', 'strings-names')
        const sent = await ack(c.socket, 'chat:message', { roomId: 'strings-names', text: 'name check' })
        c.socket.disconnect()
        return joined.status === 'ok' && sent.status === 'ok' && (await messageById('strings-names', sent.messageId))?.username === value
      })
      // POST /api/dev/token roles: a token that works, or BAD_REQUEST
      const roles = await httpJson(node.url, 'POST', '/api/dev/token', { body: { username: `roles-${label.replace(/\W/g, '')}`, roles: [value] } })
      await judge(`dev token roles (${label})`, value, roles.status === 200 ? 'ok' : roles.body.error, async () => {
        const c = await tryConnect(node.url, '/chat', { auth: { token: roles.body.token } })
        if (c.connected) c.socket.disconnect()
        return c.connected
      }, ['unstorable-ok'])
    }
    assert.equal((await httpJson(node.url, 'GET', '/healthz')).status, 200)
    assert.deepEqual(problems.splice(0), [])
  })
})
