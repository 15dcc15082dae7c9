import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ack, usersInRoom, useIsolatedNode } from './helpers.ts'

describe('per-sender order (SPEC §5.7): a reply is not overtaken by the plain message emitted after it', () => {
  const node = useIsolatedNode({ RATE_LIMIT_MESSAGES: '1000' })

  it('a reply followed at once by a plain message from the same socket always gets the lower seq', async () => {
    const [ana] = await usersInRoom(node.url, 'order', ['order-ana'])
    const target = await ack(ana.socket, 'chat:message', { roomId: 'order', text: 'the one replied to' })
    for (let i = 0; i < 40; i++) {
      // Both emitted in the same tick: the reply needs a look-up (its target), the plain one none.
      const [reply, plain] = await Promise.all([
        ack(ana.socket, 'chat:message', { roomId: 'order', text: `reply ${i}`, replyTo: target.messageId }),
        ack(ana.socket, 'chat:message', { roomId: 'order', text: `plain ${i}` }),
      ])
      assert.equal(reply.status, 'ok')
      assert.equal(plain.status, 'ok')
      assert.ok(reply.seq < plain.seq, `round ${i}: reply ${reply.seq} before plain ${plain.seq}`)
    }
  })

  it('a failed look-up drops only that draft, with its error; the next one is stored', async () => {
    const [bob] = await usersInRoom(node.url, 'order-bad', ['order-bob'])
    const [bad, good] = await Promise.all([
      ack(bob.socket, 'chat:message', { roomId: 'order-bad', text: 'to nowhere', replyTo: '01900000-0000-7000-8000-000000000000' }),
      ack(bob.socket, 'chat:message', { roomId: 'order-bad', text: 'fine' }),
    ])
    assert.equal(bad.code, 'NOT_FOUND')
    assert.equal(good.status, 'ok')
    assert.equal(good.seq, 1, 'nothing was written for the failed one')
  })
})
