import { createAdapter } from '@socket.io/redis-adapter'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { Server } from 'socket.io'

// The minimal server a team would write instead of Switchboard: bare Socket.IO with the same
// Redis adapter, no auth, no validation, no persistence, no ordering — `io.to(room).emit`.
// It speaks just enough of the protocol (room:join, chat:message with acks) for the same load
// client to drive both. Also a bare Fastify route for the HTTP baseline.

const port = Number(process.env.PORT ?? 3100)
const nodeId = process.env.NODE_ID ?? `baseline-${process.pid}`
const app = Fastify()
app.addHook('onRequest', async (_req, reply) => {
  reply.header('x-switchboard-node', nodeId)
})
const history = Array.from({ length: 50 }, (_, i) => ({
  id: `00000000-0000-7000-8000-${String(i).padStart(12, '0')}`,
  roomId: 'bench',
  seq: 50 - i,
  userId: 'u',
  username: 'user',
  text: 'x'.repeat(128),
  timestamp: new Date(0).toISOString(),
}))
app.get('/healthz', async () => ({ status: 'ok', node: nodeId }))
app.get('/readyz', async () => ({ status: 'ready', node: nodeId }))
app.get('/static-history', async () => ({ roomId: 'bench', messages: history, hasMore: true }))

const io = new Server(app.server, {
  adapter: process.env.REDIS_URL
    ? createAdapter(new Redis(process.env.REDIS_URL), new Redis(process.env.REDIS_URL), { key: `${process.env.REDIS_PREFIX ?? 'baseline:'}socket.io` })
    : undefined,
})
io.of('/chat').on('connection', (socket) => {
  socket.on('room:join', (p: { roomId: string }, ack?: (r: object) => void) => {
    void socket.join(p.roomId)
    ack?.({ status: 'ok', roomId: p.roomId })
  })
  socket.on('chat:message', (p: { roomId: string; text: string }, ack?: (r: object) => void) => {
    io.of('/chat').to(p.roomId).emit('chat:message', { roomId: p.roomId, text: p.text, userId: socket.id })
    ack?.({ status: 'ok' })
  })
})

await app.listen({ port, host: process.env.HOST ?? '127.0.0.1' })
const stop = () => io.close(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
