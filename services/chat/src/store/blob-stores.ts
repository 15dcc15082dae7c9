import { join, resolve } from 'node:path'
import type { Config } from '../config.ts'
import type { BlobStore } from './blob-store.ts'
import { FsBlobStore } from './blob-store.fs.ts'
import { PostgresBlobStore } from './blob-store.postgres.ts'
import type { Db } from './db.ts'

/** The store UPLOAD_STORE picks: Postgres (default) or files under UPLOAD_DIR (default DATA_DIR/uploads). */
export function createBlobStore(config: Config, db: Db): BlobStore {
  if (config.UPLOAD_STORE === 'fs') return new FsBlobStore(resolve(config.UPLOAD_DIR || join(config.DATA_DIR, 'uploads')))
  return new PostgresBlobStore(db)
}
