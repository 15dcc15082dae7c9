import { sql } from 'kysely'
import { BOARD_SWEEP_MS, type PeerBoard } from '../cluster/readiness.ts'
import type { Db } from './db.ts'

/**
 * The board in Postgres (decision D80): `node_heartbeats`, one row per node, upserted every
 * heartbeat while the node reaches Postgres, with whether it also reaches Redis. Times are
 * Postgres' clock (`now()`).
 */
export class PgPeerBoard implements PeerBoard {
  private beats = 0

  constructor(
    private readonly db: Db,
    private readonly nodeId: string,
    private readonly opts: { freshMs: number; marginMs: number },
  ) {}

  async beat(redisOk: boolean): Promise<void> {
    await this.db
      .insertInto('node_heartbeats')
      .values({ node_id: this.nodeId, redis_ok: redisOk, at: sql`now()` })
      .onConflict((oc) => oc.column('node_id').doUpdateSet({ redis_ok: redisOk, at: sql`now()` }))
      .execute()
    if (this.beats++ % 100 === 0) {
      await this.db.deleteFrom('node_heartbeats').where('at', '<', sql<Date>`now() - make_interval(secs => ${BOARD_SWEEP_MS / 1000}::float8)`).execute()
    }
  }

  async peersReaching(sinceMs: number | null): Promise<{ nowMs: number; peers: number }> {
    const { freshMs, marginMs } = this.opts
    const since = sinceMs === null ? sql`now()` : sql`to_timestamp(${sinceMs / 1000}::float8)`
    const { rows } = await sql<{ now_ms: number; peers: number }>`
      select (extract(epoch from now()) * 1000)::float8 as now_ms,
        (count(*) filter (where node_id <> ${this.nodeId} and redis_ok
          and at > now() - make_interval(secs => ${freshMs / 1000}::float8)
          and at > ${since} + make_interval(secs => ${marginMs / 1000}::float8)))::int as peers
      from node_heartbeats`.execute(this.db)
    return { nowMs: Number(rows[0].now_ms), peers: Number(rows[0].peers) }
  }

  /** Graceful exit: peers stop counting this node at once. */
  async leave(): Promise<void> {
    await this.db.deleteFrom('node_heartbeats').where('node_id', '=', this.nodeId).execute().catch(() => undefined)
  }
}
