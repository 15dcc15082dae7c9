import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))

/** Relative link targets of a Markdown file (`[text](target)`), without #anchors; external URLs left out. */
function relativeLinks(markdown: string): string[] {
  return [...markdown.matchAll(/\]\(([^)\s]+)\)/g)]
    .map((m) => m[1])
    .filter((t) => !/^[a-z][a-z0-9+.-]*:/i.test(t) && !t.startsWith('#'))
    .map((t) => t.split('#')[0])
}

describe('documentation a clone can follow', () => {
  const markdownIn = (dir: string) => readdirSync(join(root, dir)).filter((f) => f.endsWith('.md')).map((f) => `${dir}/${f}`)
  // The bench's results and their history too: README.md and docs/capacity.md link them.
  const files = ['README.md', ...markdownIn('docs'), 'loadtest/RESULTS.md', ...markdownIn('loadtest/history')]

  it('links only files that exist inside the repository', () => {
    for (const file of files) {
      for (const target of relativeLinks(readFileSync(join(root, file), 'utf8'))) {
        const path = resolve(dirname(join(root, file)), target)
        assert.ok(!relative(root, path).startsWith('..'), `${file} links ${target}, outside the repository`)
        assert.ok(existsSync(path), `${file} links ${target}, which does not exist`)
      }
    }
  })

  it('carries its own protocol reference, and the README points there', () => {
    assert.ok(relativeLinks(readFileSync(join(root, 'README.md'), 'utf8')).includes('docs/protocol.md'))
    const protocol = readFileSync(join(root, 'docs/protocol.md'), 'utf8')
    for (const event of ['room:join', 'chat:message', 'chat:sync', 'auth:refresh', 'presence:offline', 'notification', 'admin:stats']) {
      assert.ok(protocol.includes(`\`${event}\``), event)
    }
    for (const code of ['BAD_REQUEST', 'FORBIDDEN', 'NOT_FOUND', 'RATE_LIMITED', 'TOO_LARGE', 'UNAVAILABLE', 'INTERNAL', 'AUTH_REQUIRED', 'AUTH_INVALID', 'AUTH_EXPIRED']) {
      assert.ok(protocol.includes(code), code)
    }
    for (const route of ['/healthz', '/readyz', '/metrics', '/api/dev/token', '/api/rooms', '/api/uploads']) assert.ok(protocol.includes(route), route)
  })
})
