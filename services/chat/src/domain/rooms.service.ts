import { LRUCache } from 'lru-cache'
import type { Db } from '../store/db.ts'
import * as rooms from '../store/rooms.repository.ts'
import { AppError, isUnavailable } from '../errors.ts'
import type { Identity, OnlineUser, Room, RoomHead } from './types.ts'
import type { PresenceStore } from '../cluster/presence.ts'

const MAX_LISTED_MEMBERS = 1000
/** How long a node trusts what it read about a room's privacy and a reader's membership (HTTP history). */
const ACCESS_TTL_MS = 5000

/** For `dm:<a>:<b>`: the other member when `me` is one of the two, else null. */
export function dmPeer(roomId: string, me: string): string | null {
  if (!roomId.startsWith('dm:')) return null
  const rest = roomId.slice(3)
  if (rest.startsWith(me + ':') && rest.length > me.length + 1) return rest.slice(me.length + 1)
  if (rest.endsWith(':' + me) && rest.length > me.length + 1) return rest.slice(0, -(me.length + 1))
  return null
}

/** Room rules: who may see a room, implicit creation of public and DM rooms, membership. */
export class RoomsService {
  private readonly readable = new LRUCache<string, true>({ max: 50_000 })

  constructor(
    private readonly db: Db,
    private readonly presence: PresenceStore,
  ) {}

  /**
   * Access for `room:join`: a missing public room is created, a DM room is created for its two
   * members; private rooms need a membership. The caller becomes (or stays) a member.
   */
  async join(who: Identity, roomId: string): Promise<Room> {
    let row = await rooms.findRoom(this.db, roomId)
    if (!row) {
      if (roomId.startsWith('dm:')) {
        const peer = dmPeer(roomId, who.userId)
        if (peer === null) throw new AppError('FORBIDDEN', 'Not a member of this room')
        await this.db.transaction().execute(async (trx) => {
          await rooms.insertRoom(trx, { id: roomId, name: roomId, isPrivate: true, createdBy: who.userId })
          await rooms.addMembers(trx, roomId, peer === who.userId ? [] : [{ userId: peer, username: peer }])
          await rooms.addMembers(trx, roomId, [{ userId: who.userId, username: who.username }])
        })
      } else {
        await rooms.insertRoom(this.db, { id: roomId, name: roomId, isPrivate: false, createdBy: who.userId })
      }
      row = await rooms.findRoom(this.db, roomId)
      if (!row) throw new AppError('INTERNAL', 'Room creation failed')
    }
    if (row.is_private) {
      if (!(await rooms.isMember(this.db, roomId, who.userId))) throw new AppError('FORBIDDEN', 'Not a member of this room')
    }
    await rooms.addMembers(this.db, roomId, [{ userId: who.userId, username: who.username }])
    return { id: row.id, name: row.name, isPrivate: row.is_private, lastSeq: Number(row.last_seq) }
  }

  /** Access for posting, reading and syncing: NOT_FOUND for a missing room, FORBIDDEN for a non-member. */
  async requireMember(who: Identity, roomId: string): Promise<Room & { lastReadSeq: number }> {
    const row = await rooms.findRoom(this.db, roomId)
    if (!row) throw new AppError('NOT_FOUND', 'Room not found')
    const m = await rooms.isMember(this.db, roomId, who.userId)
    if (!m) throw new AppError('FORBIDDEN', row.is_private ? 'Not a member of this room' : 'Join the room first')
    return { id: row.id, name: row.name, isPrivate: row.is_private, lastSeq: Number(row.last_seq), lastReadSeq: Number(m.last_read_seq) }
  }

  /**
   * Access for reading history over HTTP: public rooms are readable by anyone signed in,
   * private ones by members. A granted access is remembered for a few seconds per node (a
   * member who leaves elsewhere may read for up to ACCESS_TTL_MS more).
   */
  async requireReadable(who: Identity, roomId: string): Promise<void> {
    const key = `${roomId}\u0000${who.userId}`
    if (this.readable.get(key)) return
    const row = await rooms.findRoom(this.db, roomId)
    if (!row) throw new AppError('NOT_FOUND', 'Room not found')
    if (row.is_private && !(await rooms.isMember(this.db, roomId, who.userId))) {
      throw new AppError('FORBIDDEN', 'Not a member of this room')
    }
    this.readable.set(key, true, { ttl: ACCESS_TTL_MS })
  }

  /**
   * Ends the caller's membership. A stranger learns nothing and tells nobody anything: a room
   * that does not exist is NOT_FOUND, someone else's private room FORBIDDEN, and a public room
   * the caller was not in answers false (nothing to announce).
   */
  async leave(who: Identity, roomId: string): Promise<boolean> {
    const row = await rooms.findRoom(this.db, roomId)
    if (!row) throw new AppError('NOT_FOUND', 'Room not found')
    const removed = await rooms.removeMember(this.db, roomId, who.userId)
    this.readable.delete(`${roomId}\u0000${who.userId}`)
    if (removed.numDeletedRows > 0n) return true
    if (row.is_private) throw new AppError('FORBIDDEN', 'Not a member of this room')
    return false
  }

  /** `POST /api/rooms`: creates a room with the caller and `members` in it. */
  async create(who: Identity, input: { id?: string; name: string; private?: boolean; members?: string[] }): Promise<Room & { members: string[] }> {
    const id = input.id ?? `r-${crypto.randomUUID()}`
    const isPrivate = id.startsWith('dm:') || input.private === true
    const members = [...new Set([who.userId, ...(input.members ?? [])])]
    if (id.startsWith('dm:')) {
      const peer = dmPeer(id, who.userId)
      if (peer === null) throw new AppError('BAD_REQUEST', 'A dm: room id must be dm:<yourId>:<peerId>')
      if (!members.includes(peer)) members.push(peer)
      if (members.length > 2) throw new AppError('BAD_REQUEST', 'A dm: room has exactly two members')
    }
    const created = await this.db.transaction().execute(async (trx) => {
      if (!(await rooms.insertRoom(trx, { id, name: input.name, isPrivate, createdBy: who.userId }))) return false
      await rooms.addMembers(trx, id, members.map((m) => ({ userId: m, username: m === who.userId ? who.username : m })))
      return true
    })
    if (!created) throw new AppError('CONFLICT', 'A room with this id already exists')
    return { id, name: input.name, isPrivate, lastSeq: 0, members }
  }

  /** The caller's rooms with unread counts (SPEC §6 `GET /api/rooms`). */
  async listMine(who: Identity) {
    const rows = await rooms.roomsOfUser(this.db, who.userId)
    return rows.map((r) => ({
      id: r.id,
      name: r.name,
      private: r.is_private,
      lastSeq: Number(r.last_seq),
      lastReadSeq: Number(r.last_read_seq),
      unread: Number(r.unread),
    }))
  }

  /** Online members of a room and every member's read mark. */
  async roomState(roomId: string): Promise<{ online: OnlineUser[]; reads: Record<string, number> }> {
    const members = await rooms.membersOf(this.db, roomId, MAX_LISTED_MEMBERS)
    const online = await this.onlineIfKnown(members.map((m) => m.user_id))
    // User ids are keys from users (JWT sub): a prototype-free map.
    const reads: Record<string, number> = Object.create(null)
    for (const m of members) reads[m.user_id] = Number(m.last_read_seq)
    const here = members.filter((m) => online.has(m.user_id))
    // A DM peer who never opened the room was added under their id: use the name they go by elsewhere.
    const unnamed = here.filter((m) => m.username === m.user_id).map((m) => m.user_id)
    const names = unnamed.length > 0 ? await rooms.knownUsernames(this.db, unnamed) : new Map<string, string>()
    return {
      online: here.map((m) => ({ userId: m.user_id, username: names.get(m.user_id) ?? m.username })),
      reads,
    }
  }

  /** Online users who share a room with `userId` (for `presence:list`). */
  async onlineRoomMates(userId: string): Promise<OnlineUser[]> {
    const mates = await rooms.roomMatesOf(this.db, userId, MAX_LISTED_MEMBERS)
    const online = await this.onlineIfKnown(mates.map((m) => m.user_id))
    return mates.filter((m) => online.has(m.user_id)).map((m) => ({ userId: m.user_id, username: m.username }))
  }

  /**
   * Who is online, or nobody while the presence store (Redis) is unreachable: joins, history and
   * sync need only Postgres and keep working through a Redis outage (SPEC §5.6).
   */
  private async onlineIfKnown(userIds: string[]): Promise<Set<string>> {
    try {
      return await this.presence.online(userIds)
    } catch (err) {
      if (isUnavailable(err)) return new Set()
      throw err
    }
  }

  /** Where each room is: its last seq and its version (absent rooms are left out). */
  async heads(roomIds: string[]): Promise<Map<string, RoomHead>> {
    const rows = await rooms.heads(this.db, roomIds)
    return new Map(rows.map((r) => [r.id, { lastSeq: Number(r.last_seq), version: Number(r.version) }]))
  }

  /** Members of a room whose (lower-cased) username is one of `names`. */
  async membersNamed(roomId: string, names: string[]): Promise<string[]> {
    const rows = await rooms.membersNamed(this.db, roomId, names)
    return rows.map((r) => r.user_id)
  }

  roomIdsOf(userId: string): Promise<string[]> {
    return rooms.roomIdsOfUser(this.db, userId)
  }
}
