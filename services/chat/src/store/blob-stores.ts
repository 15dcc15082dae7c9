import { join, resolve } from 'node:path'
import type { Config } from '../config.ts'
import { AttachmentSeals } from './attachment-seal.ts'
import type { BlobStore } from './blob-store.ts'
import { FsBlobStore } from './blob-store.fs.ts'
import { PostgresBlobStore } from './blob-store.postgres.ts'
import type { Db } from './db.ts'

/** The directory of the fs store: UPLOAD_DIR, by default DATA_DIR/uploads. */
export const uploadDir = (config: Pick<Config, 'UPLOAD_DIR' | 'DATA_DIR'>) => resolve(config.UPLOAD_DIR || join(config.DATA_DIR, 'uploads'))

/** The store UPLOAD_STORE picks: Postgres (default) or files under UPLOAD_DIR; sealed when ENCRYPTION_KEYS is set. */
export function createBlobStore(config: Config, db: Db): BlobStore {
  const seals = new AttachmentSeals(config.encryption)
  if (config.UPLOAD_STORE === 'fs') return new FsBlobStore(uploadDir(config), seals)
  return new PostgresBlobStore(db, seals)
}
