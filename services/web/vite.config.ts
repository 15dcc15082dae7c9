import react from '@vitejs/plugin-react'
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'

const root = fileURLToPath(new URL('.', import.meta.url))
const pkg = (path: string) => fileURLToPath(new URL(`../../packages/${path}`, import.meta.url))
// `npm run dev:web` proxies the API and Socket.IO to a node started with `npm start`.
const backend = process.env.SWITCHBOARD_URL ?? 'http://localhost:3000'

/** The browser client: services/web → services/web/dist, which the node serves at `/`. */
export default defineConfig({
  root,
  plugins: [react()],
  // The workspace packages from their sources: a build never picks up a stale packages/*/dist.
  resolve: {
    alias: {
      '@switchboard/client': pkg('client/src/index.ts'),
      '@switchboard/react': pkg('react/src/index.ts'),
    },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
  },
  server: {
    proxy: {
      '/api': backend,
      '/socket.io': { target: backend, ws: true },
      '/healthz': backend,
    },
  },
})
