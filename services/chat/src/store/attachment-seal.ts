import { aad, AtRestError, type Keyring, type Sealed } from '../crypto/at-rest.ts'

/**
 * Attachments encrypted at rest (SPEC §5.8, docs/decisions.md D85–D87). Both blob stores cut a
 * file into chunks of CHUNK_BYTES of plaintext (the last one shorter) and, with a key ring, seal
 * each chunk on its own, so a range decrypts only the chunks it covers.
 *
 * A chunk's AAD is `['attachment.chunk', attachmentId, index, '' | 'last:<size>']`: bound to its
 * attachment and its place, so a chunk copied to another file or another index fails; the last
 * chunk also carries the file's size, so dropping chunks from the end or changing
 * `attachments.size` fails too. The file name is sealed with `['attachment.file_name', id]`.
 */

export const CHUNK_BYTES = 256 * 1024
/** What sealing adds to a chunk: version byte, nonce and tag (crypto/at-rest.ts). */
export const SEAL_OVERHEAD = 1 + 12 + 16

/** The index of a file's last chunk. */
export const lastChunk = (size: number, chunkBytes = CHUNK_BYTES) => Math.max(0, Math.ceil(size / chunkBytes) - 1)

const chunkAad = (attachmentId: string, idx: number, finalSize: number | null) =>
  aad('attachment.chunk', attachmentId, String(idx), finalSize === null ? '' : `last:${finalSize}`)
const nameAad = (attachmentId: string) => aad('attachment.file_name', attachmentId)

/** A chunk as `chunked` cuts it: `last` is known when it is yielded. */
export interface Chunk {
  idx: number
  data: Buffer
  last: boolean
}

/**
 * Cuts a byte stream into chunks of exactly `chunkBytes` (the last one shorter, never empty).
 * A full chunk is held back until a byte beyond it arrives, so the one marked `last` really is.
 */
export async function* chunked(source: AsyncIterable<Uint8Array>, chunkBytes = CHUNK_BYTES): AsyncGenerator<Chunk> {
  let parts: Buffer[] = []
  let held = 0
  let idx = 0
  for await (const piece of source) {
    parts.push(Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength))
    held += piece.byteLength
    while (held > chunkBytes) {
      const all = parts.length === 1 ? parts[0] : Buffer.concat(parts, held)
      // A copy: the source may reuse its buffers, and the rest must not pin the whole piece.
      const data = Buffer.from(all.subarray(0, chunkBytes))
      const rest = all.subarray(chunkBytes)
      parts = [Buffer.from(rest)]
      held = rest.length
      yield { idx: idx++, data, last: false }
    }
  }
  if (held > 0) yield { idx, data: parts.length === 1 ? Buffer.from(parts[0]) : Buffer.concat(parts, held), last: true }
}

/** The file-name columns of an attachment row as stored. */
export interface StoredName {
  fileName: string
  keyId: string | null
  fileNameCipher: Buffer | null
}

/** Seals and opens attachment chunks and file names; without a key ring everything passes through as plaintext. */
export class AttachmentSeals {
  constructor(readonly keyring: Keyring | null) {}

  /** A chunk's stored form, or null when encryption is off (store the plaintext, key id null). */
  sealChunk(attachmentId: string, chunk: Chunk, chunkBytes = CHUNK_BYTES): Sealed | null {
    if (!this.keyring) return null
    const finalSize = chunk.last ? chunk.idx * chunkBytes + chunk.data.length : null
    return this.keyring.encrypt(chunk.data, chunkAad(attachmentId, chunk.idx, finalSize))
  }

  /**
   * The plaintext of chunk `idx` of a file of `size` bytes. `keyId` null: stored in plaintext
   * (before encryption was turned on). Throws AtRestError, never returns unauthenticated bytes.
   */
  openChunk(attachmentId: string, size: number, idx: number, keyId: string | null, data: Uint8Array, chunkBytes = CHUNK_BYTES): Buffer {
    if (keyId === null) return Buffer.from(data.buffer, data.byteOffset, data.byteLength)
    const where = `attachment ${attachmentId} chunk ${idx}`
    if (!this.keyring) throw new AtRestError(`${where} is encrypted with key "${keyId}" but ENCRYPTION_KEYS is not set`)
    const last = lastChunk(size, chunkBytes)
    let plain: Buffer
    try {
      plain = this.keyring.decrypt(keyId, data, chunkAad(attachmentId, idx, idx === last ? size : null))
    } catch (err) {
      if (err instanceof AtRestError) throw new AtRestError(`${where}: ${err.message}`)
      throw err
    }
    const expected = idx === last ? size - idx * chunkBytes : chunkBytes
    if (plain.length !== expected) throw new AtRestError(`${where}: holds ${plain.length} bytes, expected ${expected}`)
    return plain
  }

  sealName(attachmentId: string, fileName: string): StoredName {
    if (!this.keyring) return { fileName, keyId: null, fileNameCipher: null }
    const { keyId, data } = this.keyring.encrypt(fileName, nameAad(attachmentId))
    return { fileName: '', keyId, fileNameCipher: data }
  }

  openName(row: { id: string; file_name: string; key_id: string | null; file_name_cipher: Uint8Array | null }): string {
    if (row.key_id === null) return row.file_name
    const where = `attachment ${row.id} file name`
    if (row.file_name_cipher === null) throw new AtRestError(`${where} has key "${row.key_id}" but no ciphertext`)
    if (!this.keyring) throw new AtRestError(`${where} is encrypted with key "${row.key_id}" but ENCRYPTION_KEYS is not set`)
    try {
      return this.keyring.decrypt(row.key_id, row.file_name_cipher, nameAad(row.id)).toString('utf8')
    } catch (err) {
      if (err instanceof AtRestError) throw new AtRestError(`${where}: ${err.message}`)
      throw err
    }
  }
}
