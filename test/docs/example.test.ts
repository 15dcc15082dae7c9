import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

// examples/chat (D174): a Vite + React app on @switchboard/react that stays small, typechecks
// against the hooks' real types and builds with vite.

const exec = promisify(execFile)
/** Runs a command; a failure says what it printed. */
const run = (cmd: string, args: string[], opts: { cwd: string }) =>
  exec(cmd, args, { ...opts, maxBuffer: 16 << 20 }).catch((err: { stdout?: string; stderr?: string; message: string }) => {
    throw new Error(`${cmd} ${args.join(' ')} failed:\n${err.stdout ?? ''}${err.stderr ?? ''}`.slice(0, 4000))
  })
const root = fileURLToPath(new URL('../..', import.meta.url))
const example = join(root, 'examples/chat')
const bin = (name: string) => join(root, 'node_modules/.bin', name)

describe('examples/chat', () => {
  const out = mkdtempSync(join(tmpdir(), 'sb-example-'))
  after(() => rmSync(out, { recursive: true, force: true }))

  it('is under 100 lines of source and uses the hooks it shows', () => {
    const files = ['index.html', ...readdirSync(join(example, 'src')).map((f) => `src/${f}`)]
    const lines = files.reduce((n, f) => n + readFileSync(join(example, f), 'utf8').trimEnd().split('\n').length, 0)
    assert.ok(lines < 100, `${lines} lines`)
    const app = readFileSync(join(example, 'src/App.tsx'), 'utf8')
    for (const hook of ['SwitchboardProvider', 'useRoom', 'useConnection', 'usePresence']) assert.match(app, new RegExp(`\\b${hook}\\b`), hook)
  })

  it("is a workspace the image build's npm ci knows (its package.json copied before npm ci)", () => {
    const workspaces = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { workspaces: string[] }).workspaces
    // `examples/*` → examples/chat, …: every folder the globs match.
    const dirs = workspaces
      .flatMap((w) => (w.endsWith('/*') ? readdirSync(join(root, w.slice(0, -2))).map((d) => `${w.slice(0, -2)}/${d}`) : [w]))
      .filter((d) => existsSync(join(root, d, 'package.json')))
    assert.ok(dirs.includes('examples/chat'))
    const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8')
    const beforeCi = dockerfile.slice(0, dockerfile.indexOf('RUN npm ci'))
    for (const dir of dirs) assert.ok(beforeCi.includes(`COPY ${dir}/package.json ./${dir}/`), `Dockerfile copies ${dir}/package.json before npm ci`)
  })

  it('typechecks against @switchboard/react and builds with vite', { timeout: 240_000 }, async () => {
    // The packages' dist/ is what the example imports, as any app outside the repository would.
    await run('npm', ['run', 'build:packages'], { cwd: root })
    await run(bin('tsc'), ['-p', join(example, 'tsconfig.json'), '--noEmit'], { cwd: root })
    await run(bin('vite'), ['build', '--config', join(example, 'vite.config.ts'), '--outDir', out, '--emptyOutDir', '--logLevel', 'warn'], { cwd: root })
    const html = readFileSync(join(out, 'index.html'), 'utf8')
    const scripts = [...html.matchAll(/src="\/(assets\/[^"]+\.js)"/g)].map((m) => m[1])
    assert.ok(scripts.length > 0, html)
    const js = scripts.map((s) => (assert.ok(existsSync(join(out, s)), s), readFileSync(join(out, s), 'utf8'))).join('\n')
    // Its own code, and the SDK under the hooks (the protocol's events) bundled in.
    assert.ok(js.includes('/api/dev/token'), 'the sign-in')
    assert.ok(js.includes('chat:sync') && js.includes('room:join'), 'the SDK')
  })
})
