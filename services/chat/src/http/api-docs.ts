import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

/**
 * The OpenAPI document of the HTTP routes, generated from their TypeBox schemas
 * (`@fastify/swagger`), at `/docs/json` (and `/docs/yaml`), and Swagger UI at `/docs`, served
 * from the package's own files: no script, style, font or image from anywhere else, no online
 * validator (D171). Registered before every route, whose schemas it collects as they are added.
 */
export const apiDocs = fp(
  async (app: FastifyInstance, opts: { version: string }) => {
    await app.register(fastifySwagger, {
      openapi: {
        openapi: '3.0.3',
        info: {
          title: 'Switchboard HTTP API',
          version: opts.version,
          description:
            'The HTTP routes of a Switchboard node. The Socket.IO events are in docs/asyncapi.yaml, everything together in docs/protocol.md. ' +
            'Every answer carries `x-switchboard-node`; errors are `{ error, message }`.',
        },
        components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
        tags: [
          { name: 'health', description: 'liveness, readiness, metrics' },
          { name: 'auth', description: 'dev tokens' },
          { name: 'rooms', description: 'rooms and history' },
          { name: 'files', description: 'uploads and attachments' },
        ],
      },
    })
    await app.register(fastifySwaggerUi, {
      routePrefix: '/docs',
      // No "valid" badge fetched from validator.swagger.io; the document is checked in test/docs.
      // Scripts only from this node; Swagger UI sets inline styles, so those are allowed (styles only).
      uiConfig: { validatorUrl: null, deepLinking: false },
      staticCSP:
        "default-src 'self'; base-uri 'self'; font-src 'self' data:; frame-ancestors 'self'; img-src 'self' data:; object-src 'none'; script-src 'self'; script-src-attr 'none'; style-src 'self' 'unsafe-inline'",
    })
  },
  { name: 'api-docs' },
)
