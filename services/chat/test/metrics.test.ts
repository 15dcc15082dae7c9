import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ack, devToken, usersInRoom, useIsolatedNode } from './helpers.ts'

/** The value of one series in Prometheus text (0 when absent). */
function value(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return 0
}

describe('/metrics', () => {
  const node = useIsolatedNode({ RATE_LIMIT_MESSAGES: '3', RATE_LIMIT_WINDOW_SECONDS: '60' })
  const scrape = async () => {
    const res = await fetch(`${node.url}/metrics`)
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /text\/plain/)
    return res.text()
  }

  it('exposes the named series, and they move when traffic flows', async () => {
    const before = await scrape()
    for (const series of [
      'switchboard_sockets_connected',
      'switchboard_events_in_total',
      'switchboard_ack_seconds_bucket',
      'switchboard_db_batch_size_bucket',
      'switchboard_db_batch_seconds_bucket',
      'switchboard_rate_limited_total',
      'switchboard_redis_errors_total',
      'switchboard_presence_reaped_nodes_total',
      'switchboard_nodejs_eventloop_lag_p99_seconds',
      'switchboard_process_cpu_seconds_total',
    ]) {
      assert.match(before, new RegExp(`^# TYPE ${series.replace(/_(bucket)$/, '')}`, 'm'), series)
    }
    const [{ socket }] = await usersInRoom(node.url, 'metered', ['meter'])
    for (let i = 0; i < 4; i++) await ack(socket, 'chat:message', { roomId: 'metered', text: `m${i}` })
    await devToken(node.url, 'someone') // HTTP traffic too
    const after = await scrape()

    assert.equal(value(after, 'switchboard_sockets_connected', { namespace: '/chat' }) - value(before, 'switchboard_sockets_connected', { namespace: '/chat' }), 1)
    assert.equal(value(after, 'switchboard_events_in_total', { event: 'chat:message' }) - value(before, 'switchboard_events_in_total', { event: 'chat:message' }), 4)
    assert.equal(value(after, 'switchboard_ack_seconds_count', { event: 'chat:message', status: 'ok' }), 3)
    assert.equal(value(after, 'switchboard_rate_limited_total') - value(before, 'switchboard_rate_limited_total'), 1)
    assert.equal(value(after, 'switchboard_events_out_total', { event: 'chat:message' }), 3)
    assert.ok(value(after, 'switchboard_db_batch_size_sum') >= 3, 'three messages went through the group commit')
    assert.ok(value(after, 'switchboard_db_batch_seconds_count', { status: 'ok' }) >= 1)
    assert.match(after, new RegExp(`node="${node.config.nodeId}"`), 'every series names the node')
  })
})
