#!/usr/bin/env node
// Prints the SDK's size as a browser bundle (ESM, minified, gzip -9): with socket.io-client
// bundled in, and with it left external (an app that already ships it). Uses esbuild, which the
// repository has as vite's dependency. Usage: node packages/client/scripts/size.mjs
import { build } from 'esbuild'
import { gzipSync } from 'node:zlib'
import { fileURLToPath } from 'node:url'

const entry = fileURLToPath(new URL('../src/index.ts', import.meta.url))

async function size(external) {
  const out = await build({
    entryPoints: [entry],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    external,
    legalComments: 'none',
  })
  const bytes = out.outputFiles[0].contents
  return { min: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length }
}

const kb = (n) => `${(n / 1024).toFixed(1)} KiB`
const rows = [
  ['with socket.io-client', await size([])],
  ['without socket.io-client (external)', await size(['socket.io-client'])],
]
for (const [name, s] of rows) console.log(`${name.padEnd(38)} min ${kb(s.min).padStart(9)}   min+gzip ${kb(s.gzip).padStart(8)}`)
