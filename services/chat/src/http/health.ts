import type { FastifyInstance } from 'fastify'
import type { ReadinessState } from '../cluster/readiness.ts'
import { HealthSchema, ReadinessSchema } from './wire-schemas.ts'

export interface HealthDeps {
  nodeId: string
  isDraining: () => boolean
  /** A fresh look at the dependencies and, when one is down, at what the peers report (cluster/readiness.ts). */
  readiness: () => Promise<ReadinessState>
  metricsText: () => Promise<string>
  metricsContentType: string
}

const names: Record<string, string> = { postgres: 'Postgres', redis: 'Redis' }

/**
 * `/healthz` (process up), `/readyz` (SPEC §6: 503 only for node-local reasons, `degraded` with
 * 200 for a fleet-wide outage, each dependency `ok`/`down`), `/metrics`.
 */
export async function healthRoutes(app: FastifyInstance, deps: HealthDeps): Promise<void> {
  app.get(
    '/healthz',
    { schema: { tags: ['health'], summary: 'Liveness: the process is up (no dependency checks)', response: { 200: HealthSchema } } },
    async () => ({ status: 'ok' as const, node: deps.nodeId }),
  )

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['health'],
        summary: 'Readiness: 503 while draining or when this node alone lost a dependency; a fleet-wide outage is 200 degraded',
        response: { 200: ReadinessSchema, 503: ReadinessSchema },
      },
    },
    async (_request, reply) => {
      if (deps.isDraining()) {
        return reply.status(503).send({ status: 'draining', error: 'UNAVAILABLE', message: 'Node is draining', node: deps.nodeId })
      }
      const s = await deps.readiness()
      const body = { node: deps.nodeId, checks: s.checks, ...(Object.keys(s.errors).length > 0 ? { errors: s.errors } : {}) }
      if (s.status === 'isolated') {
        const lost = names[s.lost!]
        return reply.status(503).send({
          status: 'unavailable',
          error: 'UNAVAILABLE',
          message: `${lost} is unreachable from this node while ${s.peers} other node(s) reach it`,
          lost: s.lost,
          peers: s.peers,
          ...body,
        })
      }
      if (s.status === 'degraded') {
        const down = Object.entries(s.checks).filter(([, v]) => v === 'down').map(([k]) => names[k] ?? k)
        return { status: 'degraded', message: `${down.join(' and ')} unreachable, and no other node reports reaching it: serving what does not need it`, ...body }
      }
      return { status: 'ready', ...body }
    },
  )

  app.get(
    '/metrics',
    { schema: { tags: ['health'], summary: 'Prometheus text exposition', produces: ['text/plain'] } },
    async (_request, reply) => reply.type(deps.metricsContentType).send(await deps.metricsText()),
  )
}
