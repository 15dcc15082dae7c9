import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { inspect } from 'node:util'

/**
 * Encryption at rest (SPEC §5.8, docs/decisions.md D50): AES-256-GCM from `node:crypto`, a fresh
 * random 12-byte nonce per call, and a key ring whose first key writes while every listed key
 * still reads. Generic on purpose: message text (`store/message-text.ts`) and attachment chunks
 * and file names (`store/attachment-seal.ts`) use the same ring.
 *
 * How to use it for a new kind of row:
 * - store `keyId` in a column beside the ciphertext, and the `data` blob (bytea) itself;
 * - pass an AAD that names the row and its purpose, built with `aad()`, e.g.
 *   `aad('message.text', roomId, messageId)` or `aad('attachment.chunk', attachmentId, String(n))`.
 *   The AAD is not stored; decryption must rebuild the same one, so a ciphertext copied into
 *   another row (or another kind of column) fails authentication instead of decrypting.
 *
 * `data` is `version (1 byte, 0x01) ‖ nonce (12) ‖ ciphertext ‖ GCM tag (16)`. With random nonces,
 * one key should seal fewer than 2^32 values (NIST SP 800-38D); rotation (`npm run reencrypt`)
 * starts a new count.
 */

const FORMAT_V1 = 0x01
const NONCE_BYTES = 12
const TAG_BYTES = 16
const KEY_BYTES = 32
const HEADER_BYTES = 1 + NONCE_BYTES

/** Key ids are stored in every encrypted row: short, printable, no separators of the list syntax. */
export const KEY_ID_PATTERN = /^[A-Za-z0-9_.-]{1,32}$/

/** What a caller stores: the id of the key that sealed it, and the sealed bytes. */
export interface Sealed {
  keyId: string
  data: Buffer
}

/** Refusal to decrypt: unknown key, malformed blob, or failed authentication (tampered, swapped, wrong key). */
export class AtRestError extends Error {
  override name = 'AtRestError'
}

/** An unambiguous AAD from a purpose and the ids of the row (JSON array, so no separator can collide). */
export function aad(purpose: string, ...ids: string[]): Buffer {
  return Buffer.from(JSON.stringify([purpose, ...ids]), 'utf8')
}

const asBuffer = (v: Buffer | Uint8Array | string) => (typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength))

/**
 * The keys of one deployment. Key bytes live in a private field and never appear in
 * `JSON.stringify`, `util.inspect` or pino logs (only the ids do).
 */
export class Keyring {
  readonly #keys: ReadonlyMap<string, Buffer>
  /** The key that seals new values: the first one listed. */
  readonly writeKeyId: string
  /** Every key that opens values, in the order listed. */
  readonly keyIds: readonly string[]

  constructor(keys: readonly { id: string; key: Buffer }[]) {
    if (keys.length === 0) throw new Error('a key ring needs at least one key')
    const map = new Map<string, Buffer>()
    for (const { id, key } of keys) {
      if (!KEY_ID_PATTERN.test(id)) throw new Error(`key id must match ${KEY_ID_PATTERN}`)
      if (key.length !== KEY_BYTES) throw new Error(`key "${id}" must be ${KEY_BYTES} bytes`)
      if (map.has(id)) throw new Error(`key id "${id}" is listed twice`)
      map.set(id, Buffer.from(key))
    }
    this.#keys = map
    this.writeKeyId = keys[0].id
    this.keyIds = Object.freeze(keys.map((k) => k.id))
  }

  has(keyId: string): boolean {
    return this.#keys.has(keyId)
  }

  /** Seals `plain` with the write key, bound to `aadBytes` (see `aad()`). */
  encrypt(plain: Buffer | Uint8Array | string, aadBytes: Buffer): Sealed {
    const nonce = randomBytes(NONCE_BYTES)
    const cipher = createCipheriv('aes-256-gcm', this.#keys.get(this.writeKeyId)!, nonce, { authTagLength: TAG_BYTES })
    cipher.setAAD(aadBytes)
    const body = cipher.update(asBuffer(plain))
    const final = cipher.final()
    return { keyId: this.writeKeyId, data: Buffer.concat([Buffer.of(FORMAT_V1), nonce, body, final, cipher.getAuthTag()]) }
  }

  /** Opens what `encrypt` sealed under `keyId` with the same AAD; throws `AtRestError` rather than return anything unauthenticated. */
  decrypt(keyId: string, data: Buffer | Uint8Array, aadBytes: Buffer): Buffer {
    const key = this.#keys.get(keyId)
    if (!key) throw new AtRestError(`key "${keyId}" is not in ENCRYPTION_KEYS (listed: ${this.keyIds.join(', ')})`)
    const blob = asBuffer(data)
    if (blob.length < HEADER_BYTES + TAG_BYTES || blob[0] !== FORMAT_V1) throw new AtRestError('malformed ciphertext')
    const decipher = createDecipheriv('aes-256-gcm', key, blob.subarray(1, HEADER_BYTES), { authTagLength: TAG_BYTES })
    decipher.setAAD(aadBytes)
    decipher.setAuthTag(blob.subarray(blob.length - TAG_BYTES))
    const body = decipher.update(blob.subarray(HEADER_BYTES, blob.length - TAG_BYTES))
    try {
      return Buffer.concat([body, decipher.final()])
    } catch {
      throw new AtRestError(`ciphertext failed authentication under key "${keyId}" (tampered, moved from another row, or a different key with the same id)`)
    }
  }

  toJSON() {
    return { writeKeyId: this.writeKeyId, keyIds: this.keyIds }
  }

  [inspect.custom]() {
    return `Keyring { writes: ${this.writeKeyId}, reads: ${this.keyIds.join(', ')} }`
  }
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/

/**
 * Parses `<keyId>:<base64 of 32 bytes>[,<keyId>:<base64>…]` (the first key writes). An empty
 * value means encryption is off (null). Errors describe the entry by position and id, never by
 * its key material.
 */
export function parseKeyring(value: string): Keyring | null {
  if (value.trim() === '') return null
  const keys: { id: string; key: Buffer }[] = []
  const seen = new Set<string>()
  value.split(',').forEach((entry, i) => {
    const where = `entry ${i + 1}`
    const colon = entry.indexOf(':')
    if (colon < 0) throw new Error(`${where} is not <keyId>:<base64 key>`)
    const id = entry.slice(0, colon).trim()
    const b64 = entry.slice(colon + 1).trim()
    if (!KEY_ID_PATTERN.test(id)) throw new Error(`${where}: the key id must be 1–32 of A-Z a-z 0-9 _ . -`)
    if (seen.has(id)) throw new Error(`${where}: key id "${id}" is listed twice`)
    seen.add(id)
    const key = Buffer.from(b64, 'base64')
    if (!BASE64.test(b64) || key.toString('base64').replace(/=+$/, '') !== b64.replace(/=+$/, '')) {
      throw new Error(`${where} (key "${id}"): the key is not valid base64`)
    }
    if (key.length !== KEY_BYTES) throw new Error(`${where} (key "${id}"): the key must be ${KEY_BYTES} bytes, got ${key.length} (generate one with: openssl rand -base64 32)`)
    keys.push({ id, key })
  })
  return new Keyring(keys)
}
