import { randomUUID } from 'node:crypto'
import { Readable } from 'node:stream'
import type { BlobStore, ByteRange } from './blob-store.ts'
import type { Db } from './db.ts'

export const DEFAULT_CHUNK_BYTES = 256 * 1024

/**
 * Blobs as rows of `attachment_chunks`, `chunkBytes` each (the last one shorter): an upload
 * writes one row per chunk as the bytes arrive, a download reads one row at a time, and a range
 * reads only the rows it covers. `key_id` stays null until encryption at rest encrypts each
 * chunk on its own (SPEC §5.8).
 */
export class PostgresBlobStore implements BlobStore {
  readonly kind = 'postgres'

  constructor(
    private readonly db: Db,
    private readonly chunkBytes = DEFAULT_CHUNK_BYTES,
  ) {}

  async put(source: AsyncIterable<Uint8Array>): Promise<{ key: string; size: number }> {
    const key = randomUUID()
    let idx = 0
    let size = 0
    let parts: Buffer[] = []
    let held = 0
    const flush = async (final: boolean) => {
      while (held >= this.chunkBytes || (final && held > 0)) {
        const all = parts.length === 1 ? parts[0] : Buffer.concat(parts, held)
        const data = all.subarray(0, Math.min(this.chunkBytes, held))
        const rest = all.subarray(data.length)
        await this.db.insertInto('attachment_chunks').values({ storage_key: key, idx, data, key_id: null }).execute()
        idx++
        parts = rest.length > 0 ? [Buffer.from(rest)] : []
        held = rest.length
      }
    }
    try {
      for await (const chunk of source) {
        parts.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))
        held += chunk.byteLength
        size += chunk.byteLength
        await flush(false)
      }
      await flush(true)
    } catch (err) {
      await this.delete([key]).catch(() => undefined)
      throw err
    }
    return { key, size }
  }

  get(key: string, size: number, range: ByteRange = { start: 0, end: size - 1 }): Readable {
    const { db, chunkBytes } = this
    const first = Math.floor(range.start / chunkBytes)
    const last = Math.floor(range.end / chunkBytes)
    async function* chunks() {
      for (let idx = first; idx <= last; idx++) {
        const row = await db
          .selectFrom('attachment_chunks')
          .select('data')
          .where('storage_key', '=', key)
          .where('idx', '=', idx)
          .executeTakeFirst()
        if (!row) throw new Error(`attachment chunk ${idx} of ${key} is missing`)
        const data = Buffer.from(row.data)
        const from = idx === first ? range.start - idx * chunkBytes : 0
        const to = idx === last ? range.end - idx * chunkBytes + 1 : data.length
        yield data.subarray(from, to)
      }
    }
    return Readable.from(chunks(), { objectMode: false })
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
