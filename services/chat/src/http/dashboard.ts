import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import fastifyStatic from '@fastify/static'
import { instrument } from '@socket.io/admin-ui'
import bcrypt from 'bcryptjs'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Server } from 'socket.io'

const uiDist = join(dirname(createRequire(import.meta.url).resolve('@socket.io/admin-ui/package.json')), 'ui', 'dist')

/**
 * The Socket.IO admin dashboard (SPEC §6): its UI files served by the node itself under
 * /dashboard/, its namespace `/admin-ui` (never `/admin`), both behind the same HTTP Basic
 * credentials (a bcrypt hash in ADMIN_UI_PASSWORD_HASH). Off when no credentials are configured.
 */
export async function dashboardRoutes(app: FastifyInstance, opts: { io: Server; nodeId: string; username: string; passwordHash: string }) {
  instrument(opts.io, {
    auth: { type: 'basic', username: opts.username, password: opts.passwordHash },
    namespaceName: '/admin-ui',
    mode: 'production',
    serverId: opts.nodeId,
  })
  // The packaged page pulls fonts and icons from third-party CDNs: serve it without them.
  const index = readFileSync(join(uiDist, 'index.html'), 'utf8').replace(/<link[^>]+href="https?:\/\/[^"]+"[^>]*>/g, '')
  const granted = new Set<string>() // Authorization headers already checked (bcrypt is slow on purpose)

  const requireCredentials = async (request: FastifyRequest, reply: FastifyReply) => {
    const header = request.headers.authorization ?? ''
    if (granted.has(header)) return
    const [user, ...rest] = header.startsWith('Basic ') ? Buffer.from(header.slice(6), 'base64').toString('utf8').split(':') : []
    if (user === opts.username && (await bcrypt.compare(rest.join(':'), opts.passwordHash))) {
      if (granted.size < 100) granted.add(header)
      return
    }
    return reply
      .status(401)
      .header('www-authenticate', 'Basic realm="Switchboard dashboard", charset="UTF-8"')
      .send({ error: 'AUTH_REQUIRED', message: 'Dashboard credentials required' })
  }

  await app.register(async (scope) => {
    scope.addHook('onRequest', requireCredentials)
    scope.get('/dashboard', (_req, reply) => reply.redirect('/dashboard/'))
    scope.get('/dashboard/', (_req, reply) => reply.type('text/html; charset=utf-8').send(index))
    await scope.register(fastifyStatic, { root: uiDist, prefix: '/dashboard/', decorateReply: false, index: false, wildcard: true })
  })
}
