import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

// Issue 19's "done when": a newcomer `npm i`s the two packages into a fresh Vite app. This packs
// @switchboard/client and @switchboard/react as they would be published (`npm pack`), installs the
// tarballs into an app folder outside the repository (no workspace, no symlink: only what the
// packages ship), and builds examples/chat's sources there with Vite (D179).

const exec = promisify(execFile)
const run = (cmd: string, args: string[], cwd: string) =>
  exec(cmd, args, { cwd, maxBuffer: 32 << 20, env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false' } }).catch(
    (err: { stdout?: string; stderr?: string }) => {
      throw new Error(`${cmd} ${args.join(' ')} failed:\n${err.stdout ?? ''}${err.stderr ?? ''}`.slice(-4000))
    },
  )
const root = fileURLToPath(new URL('../..', import.meta.url))
const pkg = (dir: string) => JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8')) as Record<string, Record<string, string>>

describe('a fresh Vite app installs the packed SDK and hooks', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sb-newcomer-'))
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('npm install of the two tarballs, then vite build of the example app', { timeout: 300_000 }, async () => {
    // `prepack` builds each package's dist/ (what `files` ships).
    const packed = JSON.parse((await run('npm', ['pack', '--json', '-w', 'packages/client', '-w', 'packages/react', '--pack-destination', dir], root)).stdout) as {
      name: string
      filename: string
      files: { path: string }[]
    }[]
    const tarball = (name: string) => {
      const p = packed.find((x) => x.name === name)
      assert.ok(p, `${name} packed`)
      assert.ok(p.files.some((f) => f.path === 'dist/index.js') && p.files.some((f) => f.path === 'dist/index.d.ts'), `${name} ships dist/`)
      return `file:./${p.filename.replace(/^.*\//, '')}`
    }
    const example = pkg('examples/chat')
    const app = join(dir, 'app')
    mkdirSync(app)
    for (const f of ['index.html', 'src', 'tsconfig.json', 'vite.config.ts']) cpSync(join(root, 'examples/chat', f), join(app, f), { recursive: true })
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({
        name: 'newcomer-chat',
        private: true,
        type: 'module',
        dependencies: {
          '@switchboard/client': tarball('@switchboard/client').replace('./', '../'),
          '@switchboard/react': tarball('@switchboard/react').replace('./', '../'),
          react: example.dependencies.react,
          'react-dom': example.dependencies['react-dom'],
        },
        devDependencies: example.devDependencies,
      }),
    )
    // The registry is reachable (npm ci needs it too); the cache the repository's install filled
    // makes this mostly offline.
    await run('npm', ['install', '--prefer-offline', '--no-package-lock', '--ignore-scripts'], app)
    const installed = join(app, 'node_modules/@switchboard')
    for (const name of ['client', 'react']) assert.ok(existsSync(join(installed, name, 'dist/index.js')), `${name} installed from its tarball`)
    await run(join(app, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json', '--noEmit'], app)
    await run(join(app, 'node_modules/.bin/vite'), ['build', '--logLevel', 'warn'], app)
    const assets = readdirSync(join(app, 'dist/assets')).filter((f) => f.endsWith('.js'))
    const js = assets.map((f) => readFileSync(join(app, 'dist/assets', f), 'utf8')).join('\n')
    assert.ok(js.includes('chat:sync') && js.includes('room:join'), 'the SDK is bundled')
    assert.ok(js.includes('/api/dev/token'), "the example's own code is bundled")
  })
})
