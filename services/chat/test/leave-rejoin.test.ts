import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { ack, closeClients, next, startIsolatedNode, usersInRoom } from './helpers.ts'

/**
 * `room:leave` then `room:join` on the same socket (SPEC §4): the user is a member again, the
 * room hears `room:user-joined`, and the socket gets the room's messages. The leave of every
 * device goes through the adapter, which applies it on this node only after a Redis round trip
 * too; it used to land after the join and take the socket out of the room again (or make the
 * join look like a repeat, with no `room:user-joined`).
 */
for (const adapter of ['classic', 'sharded']) {
  describe(`leave, then join again at once (${adapter} adapter)`, () => {
    let node: Awaited<ReturnType<typeof startIsolatedNode>>
    before(async () => {
      node = await startIsolatedNode({ REDIS_ADAPTER: adapter, RATE_LIMIT_JOINS: '100000', RATE_LIMIT_MESSAGES: '100000' })
    })
    after(async () => {
      closeClients()
      await node?.close()
    })

    it('every round: announced, and the socket gets the next message', async () => {
      const room = `rejoin-${adapter}`
      const [ana, ben] = await usersInRoom(node.url, room, ['ana', 'ben'])
      for (let round = 0; round < 20; round++) {
        assert.equal((await ack(ana.socket, 'room:leave', room)).status, 'ok')
        const announced = next(ben.socket, 'room:user-joined', (u) => u.userId === ana.userId, 3000)
        assert.equal((await ack(ana.socket, 'room:join', room)).status, 'ok')
        await announced
        const text = `round ${round}`
        const heard = next(ana.socket, 'chat:message', (m) => m.text === text, 3000)
        assert.equal((await ack(ben.socket, 'chat:message', { roomId: room, text })).status, 'ok')
        await heard
      }
    })
  })
}
