import { randomUUID } from 'node:crypto'
import type { Readable } from 'node:stream'
import { AttachmentSeals, CHUNK_BYTES, chunked, lastChunk } from './attachment-seal.ts'
import { primed, type BlobRef, type BlobStore, type ByteRange } from './blob-store.ts'
import type { Db } from './db.ts'

/**
 * Blobs as rows of `attachment_chunks`, CHUNK_BYTES of plaintext each (the last one shorter): an
 * upload writes one row per chunk as the bytes arrive, a download reads one row at a time, and a
 * range reads only the rows it covers. With a key ring each row holds its chunk sealed on its
 * own and the key id in `key_id` (D85); `key_id` null is a plaintext chunk.
 */
export class PostgresBlobStore implements BlobStore {
  readonly kind = 'postgres'

  constructor(
    private readonly db: Db,
    private readonly seals = new AttachmentSeals(null),
  ) {}

  async put(attachmentId: string, source: AsyncIterable<Uint8Array>): Promise<{ key: string; size: number }> {
    const key = randomUUID()
    let size = 0
    try {
      for await (const chunk of chunked(source)) {
        size += chunk.data.length
        const sealed = this.seals.sealChunk(attachmentId, chunk)
        await this.db
          .insertInto('attachment_chunks')
          .values({ storage_key: key, idx: chunk.idx, data: sealed?.data ?? chunk.data, key_id: sealed?.keyId ?? null })
          .execute()
      }
    } catch (err) {
      await this.delete([key]).catch(() => undefined)
      throw err
    }
    return { key, size }
  }

  get(blob: BlobRef, range: ByteRange = { start: 0, end: blob.size - 1 }): Promise<Readable> {
    const { db, seals } = this
    const first = Math.floor(range.start / CHUNK_BYTES)
    const last = Math.min(Math.floor(range.end / CHUNK_BYTES), lastChunk(blob.size))
    async function* chunks() {
      for (let idx = first; idx <= last; idx++) {
        const row = await db
          .selectFrom('attachment_chunks')
          .select(['data', 'key_id'])
          .where('storage_key', '=', blob.key)
          .where('idx', '=', idx)
          .executeTakeFirst()
        if (!row) throw new Error(`attachment chunk ${idx} of ${blob.key} is missing`)
        const data = seals.openChunk(blob.attachmentId, blob.size, idx, row.key_id, row.data)
        const from = idx === first ? range.start - idx * CHUNK_BYTES : 0
        const to = idx === last ? range.end - idx * CHUNK_BYTES + 1 : data.length
        yield data.subarray(from, to)
      }
    }
    return primed(chunks())
  }

  async delete(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return
    await this.db.deleteFrom('attachment_chunks').where('storage_key', 'in', [...keys]).execute()
  }

  async sweepOrphans(cutoff: Date, inUse: (keys: string[]) => Promise<Set<string>>): Promise<number> {
    const old = await this.db
      .selectFrom('attachment_chunks')
      .select('storage_key')
      .where('idx', '=', 0)
      .where('created_at', '<', cutoff)
      .limit(500)
      .execute()
    const used = await inUse(old.map((r) => r.storage_key))
    const orphans = old.map((r) => r.storage_key).filter((k) => !used.has(k))
    await this.delete(orphans)
    return orphans.length
  }
}
