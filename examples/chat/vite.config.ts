import react from '@vitejs/plugin-react'
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'

// `npm run dev -w examples/chat` proxies the API and Socket.IO to a node (`npm start`, or nginx).
const backend = process.env.SWITCHBOARD_URL ?? 'http://localhost:3000'

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  plugins: [react()],
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022' },
  server: { proxy: { '/api': backend, '/socket.io': { target: backend, ws: true } } },
})
