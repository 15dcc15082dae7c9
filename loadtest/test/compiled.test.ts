import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { startTestCluster } from '../../test/cluster/helpers.ts'
import { compiledLauncher } from '../lib/bench-node.ts'

// `npm run bench -- --compiled`: Switchboard's nodes from the compiled build, as the image runs.
describe('npm run bench --compiled: nodes from dist/', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sb-compiled-'))
  let stop: (() => Promise<void>) | undefined
  after(async () => {
    await stop?.()
    rmSync(dir, { recursive: true, force: true })
  })

  it('builds the server, starts a node from dist/services/chat/src/server.js without tsx, and it serves', async () => {
    // Its own Redis and database (startTestCluster), so the prefix needs no clean-up.
    const t = await startTestCluster(dir, 'compiled:', {}, 1, undefined, { launchNode: compiledLauncher() })
    stop = t.stop
    const node = t.cluster.nodes[0]
    const argv = readFileSync(`/proc/${node.proc.child.pid}/cmdline`, 'utf8').split('\0')
    assert.deepEqual(argv.slice(1).filter(Boolean), ['dist/services/chat/src/server.js'], 'no --import tsx')
    const ready = await fetch(`${t.cluster.url}/readyz`)
    assert.equal(ready.status, 200)
    assert.equal(((await ready.json()) as { status: string }).status, 'ready')
  })
})
