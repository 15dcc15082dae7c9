import type { Readable } from 'node:stream'
import type { Keyring } from '../crypto/at-rest.ts'
import { AppError } from '../errors.ts'
import { newMessageId } from '../ids.ts'
import { AttachmentSeals } from '../store/attachment-seal.ts'
import * as attachments from '../store/attachments.repository.ts'
import type { BlobStore, ByteRange } from '../store/blob-store.ts'
import type { Db } from '../store/db.ts'
import type { AttachmentRow } from '../store/schema.ts'
import type { RoomsService } from './rooms.service.ts'
import type { Attachment, Identity } from './types.ts'
import { judgeType, sanitizeFileName, SNIFF_BYTES, textChecker } from './upload-rules.ts'

export interface AttachmentsOptions {
  maxBytes: number
  allowedTypes: readonly string[]
  /** An upload no message references is removed after this long. */
  unreferencedTtlMs: number
  /** ENCRYPTION_KEYS: file names are sealed with it (the blob store seals the bytes). */
  encryption?: Keyring | null
}

export interface UploadInput {
  roomId: string
  /** As the client sent it; sanitised here. */
  fileName: string
  /** What the client claimed; only consulted for bytes without a magic number. */
  declaredType: string
  bytes: AsyncIterable<Uint8Array>
}

/** A blob that vanished from under its row is found by the sweep's orphan pass at the latest after this. */
const ORPHAN_GRACE_MS = 10 * 60_000
const SWEEP_BATCH = 100

/**
 * `GET /api/attachments/:id?room=<roomId>`: the room lets the download read one partition of
 * attachments (D121); the bare `/api/attachments/:id` keeps working.
 */
export const attachmentUrl = (id: string, roomId: string) => `/api/attachments/${id}?room=${encodeURIComponent(roomId)}`

/** Row (and its opened file name, `AttachmentSeals.openName`) → SPEC `Message.attachment`. */
export function toAttachment(row: Pick<AttachmentRow, 'id' | 'room_id' | 'mime_type' | 'size'>, fileName: string): Attachment {
  return { id: row.id, fileName, mimeType: row.mime_type, size: Number(row.size), url: attachmentUrl(row.id, row.room_id) }
}

/** Uploads, downloads, the attachment a message may carry, and the sweep of uploads never sent. */
export class AttachmentsService {
  /** File names in and out of their stored form. */
  readonly seals: AttachmentSeals

  constructor(
    private readonly db: Db,
    private readonly blobs: BlobStore,
    private readonly rooms: RoomsService,
    private readonly opts: AttachmentsOptions,
  ) {
    this.seals = new AttachmentSeals(opts.encryption ?? null)
  }

  /**
   * Stores a file for a room the caller is a member of. The bytes stream into the blob store;
   * past `maxBytes` (TOO_LARGE) or once they turn out not to be an allowed type (415), what was
   * stored is removed and nothing is recorded.
   */
  async upload(who: Identity, input: UploadInput): Promise<Attachment> {
    await this.rooms.requireMember(who, input.roomId)
    const judged = { mimeType: '' }
    // The id comes first: encrypted chunks are bound to it.
    const id = newMessageId()
    const { key, size } = await this.blobs.put(id, this.inspect(input, judged))
    const row = { id, room_id: input.roomId, mime_type: judged.mimeType, size }
    const fileName = sanitizeFileName(input.fileName)
    try {
      await attachments.insertAttachment(this.db, {
        id,
        roomId: input.roomId,
        userId: who.userId,
        name: this.seals.sealName(id, fileName),
        mimeType: row.mime_type,
        size,
        storageKey: key,
      })
    } catch (err) {
      await this.blobs.delete([key]).catch(() => undefined)
      throw err
    }
    return toAttachment(row, fileName)
  }

  /** The bytes as they come, held back only until the type is judged from the first SNIFF_BYTES. */
  private async *inspect(input: UploadInput, judged: { mimeType: string }): AsyncGenerator<Uint8Array> {
    const { maxBytes, allowedTypes } = this.opts
    let total = 0
    let head: Uint8Array[] | null = []
    let headBytes = 0
    const checker: { text: ReturnType<typeof textChecker> | null } = { text: null }
    const judge = async () => {
      const sample = Buffer.concat(head!, headBytes)
      judged.mimeType = await judgeType(sample.subarray(0, SNIFF_BYTES), input.declaredType, allowedTypes)
      if (judged.mimeType === 'text/plain') checker.text = textChecker()
      head = null
      checker.text?.push(sample)
      return sample
    }
    for await (const chunk of input.bytes) {
      total += chunk.byteLength
      if (total > maxBytes) throw new AppError('TOO_LARGE', `The file is larger than ${maxBytes} bytes`)
      if (head) {
        head.push(chunk)
        headBytes += chunk.byteLength
        if (headBytes >= SNIFF_BYTES) yield await judge()
        continue
      }
      checker.text?.push(chunk)
      yield chunk
    }
    if (total === 0) throw new AppError('BAD_REQUEST', 'The file is empty')
    if (head) yield await judge()
    checker.text?.end()
  }

  /**
   * An attachment the caller may download: they are a member of its room, and it is shown in a
   * message or it is their own upload. Anything else is NOT_FOUND, so nobody learns which
   * attachments or private rooms exist. `roomId` (the URL's `room`) narrows the look-up to that
   * room: an attachment of another room is NOT_FOUND.
   */
  async readable(who: Identity, id: string, roomId?: string): Promise<Attachment & { storageKey: string }> {
    const row = await attachments.findWithReference(this.db, id, roomId)
    const notFound = new AppError('NOT_FOUND', 'Attachment not found')
    if (!row) throw notFound
    try {
      await this.rooms.requireMember(who, row.room_id)
    } catch (err) {
      if (err instanceof AppError && (err.code === 'FORBIDDEN' || err.code === 'NOT_FOUND')) throw notFound
      throw err
    }
    if (!row.referenced && row.user_id !== who.userId) throw notFound
    return { ...toAttachment(row, this.seals.openName(row)), storageKey: row.storage_key }
  }

  /**
   * The bytes of an attachment `readable` returned (of `range` only, when given); rejects
   * (INTERNAL) before any byte when the start cannot be read or opened (D85).
   */
  bytes(a: { id: string; storageKey: string; size: number }, range?: ByteRange): Promise<Readable> {
    return this.blobs.get({ key: a.storageKey, attachmentId: a.id, size: a.size }, range)
  }

  /**
   * The attachment a new message of `who` in `roomId` may carry: their own upload to that room,
   * already shown in a message or young enough that the sweep will not take it while the
   * message commits.
   */
  async forMessage(who: Identity, roomId: string, id: string): Promise<Attachment> {
    const row = await attachments.findWithReference(this.db, id, roomId)
    if (!row || row.room_id !== roomId || row.user_id !== who.userId) throw new AppError('NOT_FOUND', 'Attachment not found')
    const margin = Math.min(60_000, this.opts.unreferencedTtlMs / 2)
    if (!row.referenced && Date.now() - new Date(row.created_at).getTime() > this.opts.unreferencedTtlMs - margin) {
      throw new AppError('NOT_FOUND', 'Attachment expired: upload it again')
    }
    return toAttachment(row, this.seals.openName(row))
  }

  /**
   * Removes uploads older than the TTL that no message references, then blobs no row names
   * (left by a crash between the bytes and the row). Safe on several nodes at once.
   */
  async sweep(now = Date.now()): Promise<{ unreferenced: number; orphans: number }> {
    const cutoff = new Date(now - this.opts.unreferencedTtlMs)
    let unreferenced = 0
    for (;;) {
      const keys = await attachments.deleteUnreferenced(this.db, cutoff, SWEEP_BATCH)
      await this.blobs.delete(keys)
      unreferenced += keys.length
      if (keys.length < SWEEP_BATCH) break
    }
    const orphanCutoff = new Date(now - Math.max(this.opts.unreferencedTtlMs, ORPHAN_GRACE_MS))
    const orphans = await this.blobs.sweepOrphans(orphanCutoff, (keys) => attachments.keysInUse(this.db, keys))
    return { unreferenced, orphans }
  }

  /** Runs `sweep` every `everyMs` (never two at once on this node); `stop()` on shutdown. */
  startSweeping(everyMs: number, onResult: (r: { unreferenced: number; orphans: number } | Error) => void): { stop(): Promise<void> } {
    let running: Promise<void> | null = null
    const timer = setInterval(() => {
      if (running) return
      running = this.sweep()
        .then(onResult, (err: unknown) => onResult(err as Error))
        .finally(() => (running = null))
    }, everyMs)
    timer.unref()
    return {
      async stop() {
        clearInterval(timer)
        await running
      },
    }
  }
}
