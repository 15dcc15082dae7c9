import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { CONFIG_VARIABLES } from '../../services/chat/src/config.ts'

const root = fileURLToPath(new URL('../..', import.meta.url))
const read = (p: string) => readFileSync(join(root, p), 'utf8')

describe('docker-compose.yml and Dockerfile stay consistent with the code', () => {
  const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, { environment?: Record<string, string>; command?: string[] }> }

  it('sets only variables the node reads, and .env.example documents every one', () => {
    for (const [name, svc] of Object.entries(compose.services)) {
      if (!svc.environment || name === 'postgres') continue
      for (const key of Object.keys(svc.environment)) assert.ok(CONFIG_VARIABLES.includes(key), `${name}: ${key} is not a config variable`)
    }
    const example = read('.env.example')
    for (const v of CONFIG_VARIABLES) assert.match(example, new RegExp(`^${v}=`, 'm'), `.env.example documents ${v}`)
  })

  it('fills every placeholder of the nginx template, with the same three nodes', () => {
    const template = read('nginx/switchboard.conf.template')
    const placeholders = new Set([...template.matchAll(/\{\{([A-Z_]+)\}\}/g)].map((m) => m[1]))
    const command = compose.services.nginx.command!.join(' ')
    for (const p of placeholders) assert.ok(command.includes(`{{${p}}}`), `compose fills {{${p}}}`)
    for (const n of ['node-1', 'node-2', 'node-3']) {
      assert.ok(compose.services[n], `${n} service`)
      assert.ok(command.includes(`server ${n}:3000`), `${n} upstream`)
    }
  })

  it('runs the built server and migrator the build produces', () => {
    const dockerfile = read('Dockerfile')
    assert.match(dockerfile, /CMD \["node", "dist\/services\/chat\/src\/server\.js"\]/)
    assert.deepEqual(compose.services.migrate.command, ['node', 'dist/services/chat/src/store/migrate.js'])
    const build = JSON.parse(read('tsconfig.build.json')) as { compilerOptions: { outDir: string }; include: string[] }
    assert.equal(build.compilerOptions.outDir, 'dist')
    assert.ok(build.include.includes('services/chat/src/**/*.ts') && build.include.includes('migrations/**/*.ts'))
  })
})
