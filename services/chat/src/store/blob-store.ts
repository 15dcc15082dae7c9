import { Readable } from 'node:stream'

/** Inclusive byte range of a blob, as in `Range: bytes=start-end`. */
export interface ByteRange {
  start: number
  end: number
}

/** What a store needs to find and open a blob: its key, and the attachment it belongs to (the chunks' AAD). */
export interface BlobRef {
  key: string
  attachmentId: string
  /** The file's full size (attachments.size). */
  size: number
}

/**
 * Where attachment bytes live. Keys are opaque strings the store makes; the attachments table
 * holds them. Every operation is safe to repeat (a sweep on several nodes may delete a key twice).
 * With ENCRYPTION_KEYS both stores seal every 256 KiB chunk on its own (`attachment-seal.ts`).
 */
export interface BlobStore {
  readonly kind: 'postgres' | 'fs'
  /**
   * Stores everything `source` yields. When `source` throws (too large, wrong type, client gone),
   * whatever was written is removed and the error is rethrown.
   */
  put(attachmentId: string, source: AsyncIterable<Uint8Array>): Promise<{ key: string; size: number }>
  /**
   * The bytes of a blob (of `range` only, when given). Resolves once the first piece is read
   * and opened, so a blob that cannot be read (missing, tampered, key not listed) rejects
   * before a response starts; a later chunk that fails errors the stream.
   */
  get(blob: BlobRef, range?: ByteRange): Promise<Readable>
  delete(keys: readonly string[]): Promise<void>
  /**
   * Removes blobs written before `cutoff` that no attachment row names (uploads cut off by a
   * crash between the bytes and the row). `inUse` tells which keys rows still name.
   */
  sweepOrphans(cutoff: Date, inUse: (keys: string[]) => Promise<Set<string>>): Promise<number>
}

/**
 * A stream of `source` that has already read its first piece: errors opening or reading the
 * start reject here. Destroying the stream ends `source` (its `finally` blocks run).
 */
export async function primed(source: AsyncIterable<Buffer>): Promise<Readable> {
  const it = source[Symbol.asyncIterator]()
  const first = await it.next()
  async function* rest() {
    try {
      if (!first.done) yield first.value
      for (;;) {
        const step = await it.next()
        if (step.done) return
        yield step.value
      }
    } finally {
      await it.return?.()
    }
  }
  return Readable.from(rest(), { objectMode: false })
}
