import type { IncomingMessage } from 'node:http'
import fastifyMultipart, { type Multipart } from '@fastify/multipart'
import contentDisposition from 'content-disposition'
import type { FastifyInstance } from 'fastify'
import type { AttachmentsService } from '../../domain/attachments.service.ts'
import { INLINE_TYPES, parseRange, undoFormDataEscapes } from '../../domain/upload-rules.ts'
import { AppError } from '../../errors.ts'
import { parse } from '../../validation.ts'
import { AttachmentSchema, documentedOnly, errors } from '../wire-schemas.ts'
import { AttachmentParams, AttachmentQuery, UploadFields, UploadForm } from './schema.ts'

/** A multipart body busboy cannot parse (or a client that went away mid-file): the client's fault. */
function malformed(err: unknown): AppError {
  const e = err as { statusCode?: number; message?: string }
  if (e.statusCode === 413) return new AppError('TOO_LARGE', e.message ?? 'Too many parts')
  return new AppError('BAD_REQUEST', `Malformed multipart body: ${e.message ?? 'cannot be parsed'}`)
}

/** The file part's bytes, with parser errors turned into BAD_REQUEST. */
async function* parsedBytes(file: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  try {
    for await (const chunk of file) yield chunk
  } catch (err) {
    throw malformed(err)
  }
}

/** Room for the multipart framing and the roomId field around the file itself. */
const MULTIPART_OVERHEAD = 64 * 1024

/**
 * After an early answer, the rest of the request body is read and dropped (nothing buffered),
 * so the client gets the answer and the connection stays usable; past `budget` more bytes (a
 * client that sends far more than the cap) the connection is cut instead.
 */
function discardRest(raw: IncomingMessage, budget: number): void {
  if (raw.readableEnded || raw.destroyed) return
  raw.unpipe()
  let seen = 0
  raw.on('data', (chunk: Buffer) => {
    seen += chunk.length
    if (seen > budget) raw.socket.destroy()
  })
  raw.resume()
}

/**
 * RFC 6266: the exact name in `filename*` (UTF-8, percent-encoded), and a plain-ASCII `filename`
 * for clients that know only that one.
 */
const disposition = (fileName: string, inline: boolean) =>
  contentDisposition(fileName, { type: inline ? 'inline' : 'attachment', fallback: fileName.replace(/[^\x20-\x7e]/g, '?') })

/** `POST /api/uploads` and `GET /api/attachments/:id` (SPEC §6). */
export async function attachmentRoutes(app: FastifyInstance, deps: { attachments: AttachmentsService; maxBytes: number }): Promise<void> {
  // One byte over the cap reaches us, so an over-cap file is told apart from one exactly at it;
  // busboy drops the rest of that file as it arrives.
  await app.register(fastifyMultipart, {
    limits: { fileSize: deps.maxBytes + 1, files: 1, fields: 4, parts: 5, fieldSize: 1024, headerPairs: 100 },
    throwFileSizeLimit: false,
  })
  app.addHook('preHandler', app.authenticate)

  const security = [{ bearer: [] }]
  const tags = ['files']
  const uploadSchema = {
    tags,
    security,
    summary: 'Upload a file to a room (members only); send it with chat:message { attachmentId }',
    consumes: ['multipart/form-data'],
    body: UploadForm,
    // 415 for a type outside UPLOAD_ALLOWED_TYPES, judged from the bytes (its code is BAD_REQUEST).
    response: { 201: AttachmentSchema, ...errors(400, 401, 403, 404, 413, 415, 429) },
  }
  app.post('/api/uploads', { schema: uploadSchema, ...documentedOnly }, async (request, reply) => {
    try {
      if (!request.isMultipart()) throw new AppError('BAD_REQUEST', 'Send multipart/form-data with the fields roomId and file')
      const declared = Number(request.headers['content-length'])
      if (declared > deps.maxBytes + MULTIPART_OVERHEAD) throw new AppError('TOO_LARGE', `The file is larger than ${deps.maxBytes} bytes`)
      let roomId: string | undefined
      const parts = request.parts()
      for (;;) {
        let step: IteratorResult<Multipart>
        try {
          step = await parts.next()
        } catch (err) {
          throw malformed(err)
        }
        if (step.done) break
        const part = step.value
        if (part.type === 'field') {
          if (part.fieldname === 'roomId') roomId = parse(UploadFields, { roomId: part.value }).roomId
          continue
        }
        if (part.fieldname !== 'file') throw new AppError('BAD_REQUEST', 'The file goes in the field "file"')
        // The room decides whether we accept a single byte, so it must come first.
        if (roomId === undefined) throw new AppError('BAD_REQUEST', 'The field roomId must come before the file')
        const attachment = await deps.attachments.upload(request.identity, {
          roomId,
          fileName: undoFormDataEscapes(part.filename),
          declaredType: part.mimetype,
          bytes: parsedBytes(part.file),
        })
        return reply.status(201).send(attachment)
      }
      throw new AppError('BAD_REQUEST', 'No file in the request (field "file")')
    } finally {
      discardRest(request.raw, 2 * (deps.maxBytes + MULTIPART_OVERHEAD))
    }
  })

  const bytes = (description: string) => ({ description, content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } })
  const attachmentSchema = {
    tags,
    security,
    summary: 'The bytes of an attachment (members of its room; before it is sent, only the uploader); single byte ranges',
    params: AttachmentParams,
    querystring: AttachmentQuery,
    response: {
      200: bytes('the file, with its own Content-Type, nosniff, Content-Security-Policy: sandbox and an RFC 6266 Content-Disposition'),
      206: bytes('the requested range'),
      ...errors(400, 401, 403, 404, 416, 429),
    },
  }
  app.get('/api/attachments/:id', { schema: attachmentSchema, ...documentedOnly }, async (request, reply) => {
    const { id } = parse(AttachmentParams, request.params)
    const { room } = parse(AttachmentQuery, request.query)
    const a = await deps.attachments.readable(request.identity, id, room)
    const etag = `"${a.id}"`
    const ifRange = request.headers['if-range']
    const range = ifRange === undefined || ifRange === etag ? parseRange(request.headers.range, a.size) : null
    reply
      .header('x-content-type-options', 'nosniff')
      .header('content-security-policy', 'sandbox')
      .header('accept-ranges', 'bytes')
      .header('etag', etag)
      .header('cache-control', 'private, max-age=86400')
    if (range === 'unsatisfiable') {
      return reply
        .status(416)
        .header('content-range', `bytes */${a.size}`)
        .send({ error: 'BAD_REQUEST', message: `Range not satisfiable: the file has ${a.size} bytes` })
    }
    // Opened before the headers: a blob that cannot be read or decrypted is a plain 500 (D85).
    const body = await deps.attachments.bytes(a, range ?? undefined)
    reply
      .header('content-disposition', disposition(a.fileName, INLINE_TYPES.has(a.mimeType)))
      .type(a.mimeType === 'text/plain' ? 'text/plain; charset=utf-8' : a.mimeType)
    if (range) {
      reply.status(206).header('content-range', `bytes ${range.start}-${range.end}/${a.size}`).header('content-length', range.end - range.start + 1)
      return reply.send(body)
    }
    return reply.header('content-length', a.size).send(body)
  })
}
