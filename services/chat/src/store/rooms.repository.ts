import { sql, type Kysely } from 'kysely'
import type { Database } from './schema.ts'

type Q = Kysely<Database>

export function findRoom(db: Q, id: string) {
  return db.selectFrom('rooms').select(['id', 'name', 'is_private', 'last_seq']).where('id', '=', id).executeTakeFirst()
}

/** Last seq and version of each room (one row read, so the two are consistent). */
export function heads(db: Q, ids: string[]) {
  if (ids.length === 0) return Promise.resolve([])
  return db.selectFrom('rooms').select(['id', 'last_seq', 'version']).where('id', 'in', ids).execute()
}

/** Inserts the room unless it exists; true when this call created it. */
export async function insertRoom(
  db: Q,
  room: { id: string; name: string; isPrivate: boolean; createdBy: string },
): Promise<boolean> {
  const r = await db
    .insertInto('rooms')
    .values({ id: room.id, name: room.name, is_private: room.isPrivate, created_by: room.createdBy })
    .onConflict((oc) => oc.column('id').doNothing())
    .executeTakeFirst()
  return Number(r.numInsertedOrUpdatedRows ?? 0) > 0
}

export function isMember(db: Q, roomId: string, userId: string) {
  return db
    .selectFrom('memberships')
    .select('last_read_seq')
    .where('room_id', '=', roomId)
    .where('user_id', '=', userId)
    .executeTakeFirst()
}

export async function addMembers(db: Q, roomId: string, members: { userId: string; username: string }[]) {
  if (members.length === 0) return
  await db
    .insertInto('memberships')
    .values(members.map((m) => ({ room_id: roomId, user_id: m.userId, username: m.username })))
    .onConflict((oc) => oc.columns(['room_id', 'user_id']).doUpdateSet({ username: sql`excluded.username` }))
    .execute()
}

/** The latest display name each user has in any membership where it is not just their id. */
export async function knownUsernames(db: Q, userIds: string[]): Promise<Map<string, string>> {
  const rows = await db
    .selectFrom('memberships')
    .select(['user_id', 'username'])
    .distinctOn('user_id')
    .where('user_id', 'in', userIds)
    .whereRef('username', '<>', 'user_id')
    .orderBy('user_id')
    .orderBy('joined_at', 'desc')
    .execute()
  return new Map(rows.map((r) => [r.user_id, r.username]))
}

export function removeMember(db: Q, roomId: string, userId: string) {
  return db.deleteFrom('memberships').where('room_id', '=', roomId).where('user_id', '=', userId).executeTakeFirst()
}

/** Raises the member's read mark (never lowers it); the resulting mark, or undefined if not a member. */
export async function markRead(db: Q, roomId: string, userId: string, seq: number): Promise<number | undefined> {
  const r = await db
    .updateTable('memberships')
    .set({ last_read_seq: sql`greatest(last_read_seq, ${seq})` })
    .where('room_id', '=', roomId)
    .where('user_id', '=', userId)
    .returning('last_read_seq')
    .executeTakeFirst()
  return r === undefined ? undefined : Number(r.last_read_seq)
}

/** Unread counts stop here: a client shows "999+" beyond it, and the count stays cheap. */
export const UNREAD_CAP = 1000

/**
 * The caller's rooms with their last seq, the caller's read mark, and how many messages from
 * others came after it (one's own messages are never unread).
 */
export function roomsOfUser(db: Q, userId: string) {
  return db
    .selectFrom('memberships as m')
    .innerJoin('rooms as r', 'r.id', 'm.room_id')
    .select(['r.id', 'r.name', 'r.is_private', 'r.last_seq', 'm.last_read_seq'])
    .select(
      sql<number>`(select count(*) from (select 1 from messages x where x.room_id = m.room_id and x.seq > m.last_read_seq and x.user_id <> m.user_id limit ${UNREAD_CAP}) as unread)`.as('unread'),
    )
    .where('m.user_id', '=', userId)
    .orderBy('r.id')
    .execute()
}

export async function roomIdsOfUser(db: Q, userId: string): Promise<string[]> {
  const rows = await db.selectFrom('memberships').select('room_id').where('user_id', '=', userId).execute()
  return rows.map((r) => r.room_id)
}

/** Members of a room (read marks included), at most `limit`. */
export function membersOf(db: Q, roomId: string, limit: number) {
  return db
    .selectFrom('memberships')
    .select(['user_id', 'username', 'last_read_seq'])
    .where('room_id', '=', roomId)
    .limit(limit)
    .execute()
}

export function membersNamed(db: Q, roomId: string, lowerNames: string[]) {
  return db
    .selectFrom('memberships')
    .select('user_id')
    .where('room_id', '=', roomId)
    .where(sql<string>`lower(username)`, 'in', lowerNames)
    .execute()
}

/** Distinct users who share at least one room with `userId` (not the user), at most `limit`. */
export function roomMatesOf(db: Q, userId: string, limit: number) {
  return db
    .selectFrom('memberships as other')
    .innerJoin('memberships as mine', 'mine.room_id', 'other.room_id')
    .select(['other.user_id', sql<string>`max(other.username)`.as('username')])
    .where('mine.user_id', '=', userId)
    .where('other.user_id', '!=', userId)
    .groupBy('other.user_id')
    .limit(limit)
    .execute()
}
