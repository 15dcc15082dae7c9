import { aad, AtRestError, type Keyring } from '../crypto/at-rest.ts'

/**
 * A message's text as stored (D51): plaintext in `text` when encryption is off; with a key ring,
 * `text` is '' and `textCipher` holds the AES-GCM blob sealed under `keyId`. A deleted message
 * has neither.
 */
export interface StoredText {
  text: string
  keyId: string | null
  textCipher: Buffer | null
}

/** The columns of a message row that `open` reads. */
export interface TextColumns {
  room_id: string
  id: string
  text: string
  key_id: string | null
  text_cipher: Uint8Array | null
}

/** The AAD that binds a message's ciphertext to its row: room id and message id. */
const textAad = (roomId: string, messageId: string) => aad('message.text', roomId, messageId)

/** Seals and opens message text for the repository's columns; plaintext passes through without a key ring. */
export class MessageTexts {
  constructor(readonly keyring: Keyring | null) {}

  /** The stored form of `text` for message `messageId` of `roomId` (ids from JS, before the INSERT). */
  seal(roomId: string, messageId: string, text: string): StoredText {
    if (!this.keyring) return { text, keyId: null, textCipher: null }
    const { keyId, data } = this.keyring.encrypt(text, textAad(roomId, messageId))
    return { text: '', keyId, textCipher: data }
  }

  /** The plaintext of a stored row; throws (never returns garbage) when the ciphertext does not authenticate. */
  open(row: TextColumns): string {
    if (row.key_id === null) return row.text
    if (row.text_cipher === null) throw new AtRestError(`message ${row.id} in room ${row.room_id} has key "${row.key_id}" but no ciphertext`)
    if (!this.keyring) {
      throw new AtRestError(`message ${row.id} in room ${row.room_id} is encrypted with key "${row.key_id}" but ENCRYPTION_KEYS is not set`)
    }
    try {
      return this.keyring.decrypt(row.key_id, row.text_cipher, textAad(row.room_id, row.id)).toString('utf8')
    } catch (err) {
      if (err instanceof AtRestError) throw new AtRestError(`message ${row.id} in room ${row.room_id}: ${err.message}`)
      throw err
    }
  }
}
