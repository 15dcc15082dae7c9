import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { packageOf, summarizeProfile, type CpuProfile } from '../lib/cpu-profile.ts'

const root = fileURLToPath(new URL('../..', import.meta.url))

// A profile of four frames: (root) → emit (node:events) → send (our file) → writev (native).
const frame = (id: number, functionName: string, url: string, children: number[] = []) => ({ id, callFrame: { functionName, url, lineNumber: 9 }, children })
const profile: CpuProfile = {
  nodes: [
    frame(1, '(root)', '', [2, 5]),
    frame(2, 'emit', 'node:events', [3]),
    frame(3, 'send', 'file:///work/main/services/chat/src/domain/messages.service.ts', [4]),
    frame(4, 'writev', ''),
    frame(5, '(idle)', ''),
    frame(6, 'query', 'file:///work/main/node_modules/@scope/pkg/lib/client.js'),
  ],
  startTime: 1_000,
  endTime: 2_000,
  // Samples at 2, 3, 4, 5, 6, 7 ms (µs on the clock); each stands for the 1 ms until the next.
  samples: [4, 3, 5, 4, 6, 4],
  timeDeltas: [1000, 1000, 1000, 1000, 1000, 1000],
}

describe('npm run bench:profile: summarizing a .cpuprofile', () => {
  it('names where code lives: a package (scoped too), our file, Node, V8', () => {
    assert.equal(packageOf('file:///x/node_modules/pg/lib/client.js', 'query'), 'pg')
    assert.equal(packageOf('file:///x/node_modules/a/node_modules/@socket.io/redis-adapter/dist/index.js', 'f'), '@socket.io/redis-adapter')
    assert.equal(packageOf('file:///work/main/services/chat/src/app.ts', 'f'), 'services/chat/src/app.ts')
    assert.equal(packageOf('node:internal/streams/writable', 'f'), 'node:internal/streams')
    assert.equal(packageOf('', '(garbage collector)'), '(garbage collector)')
    assert.equal(packageOf('', 'writev'), '(native)')
  })

  it('counts only the samples inside the window, idle left out, self and inclusive time', () => {
    // [2.5 ms, 6.5 ms): the samples at 3 (send), 4 (idle), 5 (writev) and 6 ms (query).
    const s = summarizeProfile([profile], 2500, 6500)
    assert.equal(s.totalMs, 3)
    const self = Object.fromEntries(s.bySelf.map((r) => [r.name, r.ms]))
    assert.deepEqual(self, { 'send services/chat/src/domain/messages.service.ts:10': 1, 'writev (native)': 1, 'query @scope/pkg:10': 1 })
    const total = Object.fromEntries(s.byTotal.map((r) => [r.name, r.ms]))
    // send is on the stack of its own sample and of writev's; emit on both; writev (no url) is not listed.
    assert.equal(total['send services/chat/src/domain/messages.service.ts:10'], 2)
    assert.equal(total['emit node:events:10'], 2)
    assert.equal(total['writev (native)'], undefined)
    assert.equal(s.byPackage.find((r) => r.name === '(native)')?.pct, 33.3)
  })

  it('refuses a bad option with one line', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'loadtest/profile.ts', '--rate', 'fast'], { cwd: root, encoding: 'utf8' })
    assert.equal(r.status, 2)
    assert.equal(r.stderr.trim(), '--rate must be a whole number ≥ 1 (got "fast")')
  })
})
