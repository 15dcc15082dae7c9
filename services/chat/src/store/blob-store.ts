import type { Readable } from 'node:stream'

/** Inclusive byte range of a blob, as in `Range: bytes=start-end`. */
export interface ByteRange {
  start: number
  end: number
}

/**
 * Where attachment bytes live. Keys are opaque strings the store makes; the attachments table
 * holds them. Every operation is safe to repeat (a sweep on several nodes may delete a key twice).
 */
export interface BlobStore {
  readonly kind: 'postgres' | 'fs'
  /**
   * Stores everything `source` yields. When `source` throws (too large, wrong type, client gone),
   * whatever was written is removed and the error is rethrown.
   */
  put(source: AsyncIterable<Uint8Array>): Promise<{ key: string; size: number }>
  /** The bytes of `key` (of `range` only, when given); `size` is the blob's full size. */
  get(key: string, size: number, range?: ByteRange): Readable
  delete(keys: readonly string[]): Promise<void>
  /**
   * Removes blobs written before `cutoff` that no attachment row names (uploads cut off by a
   * crash between the bytes and the row). `inUse` tells which keys rows still name.
   */
  sweepOrphans(cutoff: Date, inUse: (keys: string[]) => Promise<Set<string>>): Promise<number>
}
