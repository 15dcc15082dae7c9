import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { ack, closeClients, createTestDatabase, eventually, getJson, redisPrefix, REDIS_URL, startNode, usersInRoom, type TestNode } from './helpers.ts'

// A room that no socket of a node is in: the node hears of its changes only while it follows the
// room's channel (D140), so an HTTP history read follows it while the page is read; the
// subscription lingers, and reads within the linger are served from the cache (D183).
describe('history of a room no socket of this node is in', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>
  let redis: ReturnType<typeof redisPrefix>
  let writer: TestNode
  let reader: TestNode
  before(async () => {
    database = await createTestDatabase()
    redis = redisPrefix()
    const env = { DATABASE_URL: database.url, REDIS_URL, REDIS_PREFIX: redis.prefix, ROOM_CHANNEL_LINGER_MS: '60000' }
    writer = await startNode({ ...env, NODE_ID: 'hf-writer' })
    reader = await startNode({ ...env, NODE_ID: 'hf-reader' })
  })
  after(async () => {
    closeClients()
    await reader?.close()
    await writer?.close()
    await database?.drop()
    await redis?.clear()
  })

  const pages = async (node: TestNode) => {
    const values = (await node.app.metrics.historyPages.get()).values
    const of = (result: string) => values.find((v) => v.labels.result === result)?.value ?? 0
    return { hit: of('hit'), miss: of('miss') }
  }
  const subscriptions = async (node: TestNode) => (await node.app.metrics.roomSubscriptions.get()).values[0]?.value ?? 0

  it('the first read follows the room, the next ones are cache hits, and a message sent on another node shows on the next read', async () => {
    const [ana] = await usersInRoom(writer.url, 'hf-1', ['hf-ana'])
    for (const text of ['one', 'two', 'three']) assert.equal((await ack(ana.socket, 'chat:message', { roomId: 'hf-1', text })).status, 'ok')
    const texts = async () => {
      const r = await getJson(reader.url, ana.token, '/api/rooms/hf-1/messages')
      assert.equal(r.status, 200)
      return r.body.messages.map((m: { text: string }) => m.text)
    }
    const start = await pages(reader)
    assert.deepEqual(await texts(), ['three', 'two', 'one'])
    assert.equal(await subscriptions(reader), 1, 'the reader follows the room after the read')
    assert.deepEqual(await pages(reader), { hit: start.hit, miss: start.miss + 1 })
    assert.deepEqual(await texts(), ['three', 'two', 'one'])
    assert.deepEqual(await texts(), ['three', 'two', 'one'])
    assert.deepEqual(await pages(reader), { hit: start.hit + 2, miss: start.miss + 1 }, 'served from the cache')

    // Committed on the writer: the reader hears it on the room's channel and drops its page.
    assert.equal((await ack(ana.socket, 'chat:message', { roomId: 'hf-1', text: 'four' })).status, 'ok')
    await eventually(async () => (await texts())[0] === 'four', 5000, 'the new message on the reader')
    assert.deepEqual(await texts(), ['four', 'three', 'two', 'one'])
  })
})
