// Builds the browser client into services/web/dist with Vite (`npm run build:web`).
// `postinstall` runs it after every install; `prestart` runs it with --if-missing, so
// `npm ci && npm start` serves the built React app. It steps aside, with a note, where it
// cannot build: an install without dev dependencies, or an image stage before the sources
// are copied (the Dockerfile runs `npm run build` later).
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'

const here = new URL('.', import.meta.url)
const has = (path) => existsSync(new URL(path, here))

if (process.argv.includes('--if-missing') && has('dist/index.html')) process.exit(0)
if (!has('index.html') || !has('vite.config.ts')) {
  console.log('web client: sources not present, not built')
  process.exit(0)
}
try {
  import.meta.resolve('vite')
} catch {
  console.warn('web client: vite is not installed (an install without dev dependencies?), not built; run `npm ci` to build it')
  process.exit(0)
}
const npm = process.env.npm_execpath
const run = npm ? spawnSync(process.execPath, [npm, 'run', 'build:web'], { stdio: 'inherit' }) : spawnSync('npm', ['run', 'build:web'], { stdio: 'inherit', shell: process.platform === 'win32' })
process.exit(run.status ?? 1)
