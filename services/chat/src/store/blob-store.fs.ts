import { randomUUID } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises'
import { once } from 'node:events'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { BlobStore, ByteRange } from './blob-store.ts'

const KEY = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/**
 * Blobs as files under `dir` (`<dir>/<first two hex digits>/<uuid>`). A file is written as
 * `<uuid>.part` and renamed when complete, so a reader never sees half a file. Several nodes
 * share the store only when they share the directory (a shared volume).
 */
export class FsBlobStore implements BlobStore {
  readonly kind = 'fs'

  constructor(private readonly dir: string) {}

  /** Keys come from our own rows, but a path is built from them: accept only what put() makes. */
  private path(key: string): string {
    if (!KEY.test(key)) throw new Error('not a blob key')
    return join(this.dir, key.slice(0, 2), key)
  }

  async put(source: AsyncIterable<Uint8Array>): Promise<{ key: string; size: number }> {
    const key = randomUUID()
    const path = this.path(key)
    await mkdir(join(this.dir, key.slice(0, 2)), { recursive: true })
    let size = 0
    const out = createWriteStream(`${path}.part`, { flags: 'wx', mode: 0o600 })
    try {
      await pipeline(
        source,
        async function* (chunks: AsyncIterable<Uint8Array>) {
          for await (const c of chunks) {
            size += c.byteLength
            yield c
          }
        },
        out,
      )
      await rename(`${path}.part`, path)
    } catch (err) {
      // The file may still be opening when the source fails: remove it only once it is closed.
      if (!out.closed) await once(out, 'close').catch(() => undefined)
      await rm(`${path}.part`, { force: true })
      throw err
    }
    return { key, size }
  }

  get(key: string, size: number, range: ByteRange = { start: 0, end: size - 1 }): Readable {
    return createReadStream(this.path(key), { start: range.start, end: range.end })
  }

  async delete(keys: readonly string[]): Promise<void> {
    await Promise.all(keys.map((k) => rm(this.path(k), { force: true })))
  }

  async sweepOrphans(cutoff: Date, inUse: (keys: string[]) => Promise<Set<string>>): Promise<number> {
    let removed = 0
    const shards = await readdir(this.dir).catch(() => [] as string[])
    for (const shard of shards.filter((s) => /^[0-9a-f]{2}$/.test(s))) {
      const names = await readdir(join(this.dir, shard)).catch(() => [] as string[])
      const old: string[] = []
      for (const name of names) {
        const key = name.endsWith('.part') ? name.slice(0, -5) : name
        if (!KEY.test(key)) continue
        const st = await stat(join(this.dir, shard, name)).catch(() => null)
        if (st && st.mtime < cutoff) old.push(name)
      }
      const used = await inUse(old.filter((n) => !n.endsWith('.part')))
      for (const name of old) {
        if (used.has(name)) continue
        await rm(join(this.dir, shard, name), { force: true })
        removed++
      }
    }
    return removed
  }
}
