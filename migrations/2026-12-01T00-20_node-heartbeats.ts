import { type Kysely, sql } from 'kysely'

// Frozen in time: never import app code here.
// Readiness (docs/decisions.md D80): every node upserts its row every LIVENESS_INTERVAL_MS while
// it reaches Postgres, saying whether it also reaches Redis. A node that lost Redis reads its
// peers' rows to tell "only I lost it" (unready) from "everyone lost it" (degraded, still ready).
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('node_heartbeats')
    .addColumn('node_id', 'text', (c) => c.primaryKey())
    .addColumn('redis_ok', 'boolean', (c) => c.notNull())
    .addColumn('at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('node_heartbeats').execute()
}
