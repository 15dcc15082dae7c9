import { randomUUID } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises'
import { once } from 'node:events'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { AtRestError, KEY_ID_PATTERN } from '../crypto/at-rest.ts'
import { AttachmentSeals, CHUNK_BYTES, chunked, lastChunk, SEAL_OVERHEAD } from './attachment-seal.ts'
import { primed, type BlobRef, type BlobStore, type ByteRange } from './blob-store.ts'

const KEY = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
/** A file name in a shard: `<uuid>` (plaintext), `<uuid>.sbe` (sealed), either with `.part` while written. */
const FILE_NAME = /^([0-9a-f-]{36})(\.sbe)?(\.part)?$/

/** The sealed file format (D86): magic, key id, chunk size, then the sealed chunks back to back. */
const MAGIC = Buffer.from('SBE1', 'latin1')
const MAX_HEADER = MAGIC.length + 1 + 32 + 4

function header(keyId: string, chunkBytes: number): Buffer {
  const id = Buffer.from(keyId, 'latin1')
  const h = Buffer.alloc(MAGIC.length + 1 + id.length + 4)
  MAGIC.copy(h, 0)
  h[MAGIC.length] = id.length
  id.copy(h, MAGIC.length + 1)
  h.writeUInt32BE(chunkBytes, MAGIC.length + 1 + id.length)
  return h
}

async function readHeader(fh: FileHandle, where: string): Promise<{ keyId: string; chunkBytes: number; length: number }> {
  const buf = Buffer.alloc(MAX_HEADER)
  const { bytesRead } = await fh.read(buf, 0, MAX_HEADER, 0)
  const idLength = buf[MAGIC.length]
  const length = MAGIC.length + 1 + idLength + 4
  if (bytesRead < length || !buf.subarray(0, MAGIC.length).equals(MAGIC)) throw new AtRestError(`${where}: not a sealed attachment file`)
  const keyId = buf.toString('latin1', MAGIC.length + 1, MAGIC.length + 1 + idLength)
  const chunkBytes = buf.readUInt32BE(MAGIC.length + 1 + idLength)
  if (!KEY_ID_PATTERN.test(keyId) || chunkBytes < 1 || chunkBytes > 64 * 1024 * 1024) throw new AtRestError(`${where}: malformed header`)
  return { keyId, chunkBytes, length }
}

const isMissing = (err: unknown) => (err as { code?: string }).code === 'ENOENT'

/**
 * Blobs as files under `dir` (`<dir>/<first two hex digits>/<uuid>`). A file is written as
 * `<name>.part` and renamed when complete, so a reader never sees half a file. Several nodes
 * share the store only when they share the directory (a shared volume).
 *
 * With a key ring a file is `<uuid>.sbe` instead (D86): `SBE1`, the key id (length byte + ASCII),
 * the chunk size (u32 BE), then every CHUNK_BYTES of plaintext sealed on its own, so a range reads
 * and opens only the chunks it covers. The name, not the content, says which form a file has: a
 * plaintext upload that happens to start with `SBE1` is still plaintext. A reader looks for the
 * sealed name first, then the plaintext one, then the sealed one again: `reseal` writes the
 * sealed file before removing the plaintext one, so a reader always finds one of them.
 */
export class FsBlobStore implements BlobStore {
  readonly kind = 'fs'

  constructor(
    readonly dir: string,
    private readonly seals = new AttachmentSeals(null),
  ) {}

  /** Keys come from our own rows, but a path is built from them: accept only what put() makes. */
  private path(key: string): string {
    if (!KEY.test(key)) throw new Error('not a blob key')
    return join(this.dir, key.slice(0, 2), key)
  }

  async put(attachmentId: string, source: AsyncIterable<Uint8Array>): Promise<{ key: string; size: number }> {
    const key = randomUUID()
    await mkdir(join(this.dir, key.slice(0, 2)), { recursive: true })
    const size = await this.write(key, attachmentId, source)
    return { key, size }
  }

  /** Writes `source` as the blob `key` (sealed when there is a key ring) and returns its size. */
  private async write(key: string, attachmentId: string, source: AsyncIterable<Uint8Array>): Promise<number> {
    const { seals } = this
    const keyring = seals.keyring
    const path = keyring ? `${this.path(key)}.sbe` : this.path(key)
    let size = 0
    const out = createWriteStream(`${path}.part`, { flags: 'wx', mode: 0o600 })
    try {
      await pipeline(
        source,
        async function* (pieces: AsyncIterable<Uint8Array>) {
          if (!keyring) {
            for await (const c of pieces) {
              size += c.byteLength
              yield c
            }
            return
          }
          yield header(keyring.writeKeyId, CHUNK_BYTES)
          for await (const chunk of chunked(pieces)) {
            size += chunk.data.length
            yield seals.sealChunk(attachmentId, chunk)!.data
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
    return size
  }

  /**
   * The blob's file, open: sealed, or else plaintext. The sealed one wins (a plaintext file put
   * beside it is never served); the second look for it covers `reseal` renaming it in and
   * removing the plaintext one between our first two opens.
   */
  private async openBlob(key: string): Promise<{ fh: FileHandle; sealed: boolean }> {
    const path = this.path(key)
    const attempt = async (file: string) => {
      try {
        return await open(file, 'r')
      } catch (err) {
        if (isMissing(err)) return null
        throw err
      }
    }
    let fh = await attempt(`${path}.sbe`)
    if (fh) return { fh, sealed: true }
    fh = await attempt(path)
    if (fh) return { fh, sealed: false }
    fh = await attempt(`${path}.sbe`)
    if (fh) return { fh, sealed: true }
    throw new Error(`attachment file ${key} is missing`)
  }

  async get(blob: BlobRef, range: ByteRange = { start: 0, end: blob.size - 1 }): Promise<Readable> {
    const { fh, sealed } = await this.openBlob(blob.key)
    if (!sealed) return primed(fh.createReadStream({ start: range.start, end: range.end }))
    const { seals } = this
    const where = `attachment ${blob.attachmentId} (file ${blob.key})`
    async function* chunks() {
      try {
        const h = await readHeader(fh, where)
        const first = Math.floor(range.start / h.chunkBytes)
        const last = Math.floor(range.end / h.chunkBytes)
        const final = lastChunk(blob.size, h.chunkBytes)
        for (let idx = first; idx <= last; idx++) {
          const length = (idx === final ? blob.size - idx * h.chunkBytes : h.chunkBytes) + SEAL_OVERHEAD
          const buf = Buffer.alloc(length)
          const { bytesRead } = await fh.read(buf, 0, length, h.length + idx * (h.chunkBytes + SEAL_OVERHEAD))
          if (bytesRead < length) throw new AtRestError(`${where}: chunk ${idx} is cut short`)
          const data = seals.openChunk(blob.attachmentId, blob.size, idx, h.keyId, buf, h.chunkBytes)
          const from = idx === first ? range.start - idx * h.chunkBytes : 0
          const to = idx === last ? range.end - idx * h.chunkBytes + 1 : data.length
          yield data.subarray(from, to)
        }
      } finally {
        await fh.close()
      }
    }
    return primed(chunks())
  }

  /** The key id a blob's file is sealed under; null for a plaintext file. */
  async keyIdOf(key: string): Promise<string | null> {
    const { fh, sealed } = await this.openBlob(key)
    try {
      return sealed ? (await readHeader(fh, `file ${key}`)).keyId : null
    } finally {
      await fh.close()
    }
  }

  /**
   * Rewrites a blob under the key ring's write key (`npm run reencrypt`): the sealed file is
   * written beside it and renamed over `<uuid>.sbe`, then a plaintext original is removed. A
   * reader that already opened the old file reads it to the end.
   */
  async reseal(blob: BlobRef): Promise<void> {
    if (!this.seals.keyring) throw new Error('reseal needs a key ring')
    // Left by a run that was killed mid-file (runs hold the attachment row's lock, so never a live one).
    await rm(`${this.path(blob.key)}.sbe.part`, { force: true })
    const plain = await this.get(blob)
    const size = await this.write(blob.key, blob.attachmentId, plain)
    if (size !== blob.size) throw new Error(`attachment ${blob.attachmentId}: file holds ${size} bytes, its row says ${blob.size}`)
    await rm(this.path(blob.key), { force: true })
  }

  async delete(keys: readonly string[]): Promise<void> {
    await Promise.all(keys.flatMap((k) => [rm(this.path(k), { force: true }), rm(`${this.path(k)}.sbe`, { force: true })]))
  }

  async sweepOrphans(cutoff: Date, inUse: (keys: string[]) => Promise<Set<string>>): Promise<number> {
    let removed = 0
    const shards = await readdir(this.dir).catch(() => [] as string[])
    for (const shard of shards.filter((s) => /^[0-9a-f]{2}$/.test(s))) {
      const names = await readdir(join(this.dir, shard)).catch(() => [] as string[])
      const old: { name: string; key: string; partial: boolean }[] = []
      for (const name of names) {
        const m = FILE_NAME.exec(name)
        if (!m || !KEY.test(m[1])) continue
        const st = await stat(join(this.dir, shard, name)).catch(() => null)
        if (st && st.mtime < cutoff) old.push({ name, key: m[1], partial: m[3] !== undefined })
      }
      const used = await inUse([...new Set(old.filter((f) => !f.partial).map((f) => f.key))])
      for (const f of old) {
        if (!f.partial && used.has(f.key)) continue
        await rm(join(this.dir, shard, f.name), { force: true })
        removed++
      }
    }
    return removed
  }
}
