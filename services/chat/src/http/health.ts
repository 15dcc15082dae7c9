import type { FastifyInstance } from 'fastify'

export interface HealthDeps {
  nodeId: string
  isDraining: () => boolean
  /** Named dependency checks; each rejects when its dependency is unreachable. */
  checks: Record<string, () => Promise<void>>
  metricsText: () => Promise<string>
  metricsContentType: string
}

const within = (p: Promise<void>, ms: number) =>
  Promise.race([p, new Promise<void>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref())])

/** `/healthz` (process up), `/readyz` (dependencies reachable, not draining), `/metrics`. */
export async function healthRoutes(app: FastifyInstance, deps: HealthDeps): Promise<void> {
  app.get('/healthz', async () => ({ status: 'ok', node: deps.nodeId }))

  app.get('/readyz', async (_request, reply) => {
    if (deps.isDraining()) {
      return reply.status(503).send({ status: 'draining', error: 'UNAVAILABLE', message: 'Node is draining', node: deps.nodeId })
    }
    const names = Object.keys(deps.checks)
    const results = await Promise.allSettled(names.map((n) => within(deps.checks[n](), 1000)))
    const checks: Record<string, string> = {}
    const failed: string[] = []
    results.forEach((r, i) => {
      checks[names[i]] = r.status === 'fulfilled' ? 'ok' : `down: ${(r.reason as Error).message}`
      if (r.status === 'rejected') failed.push(names[i])
    })
    if (failed.length > 0) {
      return reply
        .status(503)
        .send({ status: 'unavailable', error: 'UNAVAILABLE', message: `Unreachable: ${failed.join(', ')}`, node: deps.nodeId, checks })
    }
    return { status: 'ready', node: deps.nodeId, checks }
  })

  app.get('/metrics', async (_request, reply) => reply.type(deps.metricsContentType).send(await deps.metricsText()))
}
