import type { RateLimit } from '../cluster/rate-limit.ts'
import { AppError } from '../errors.ts'
import { newMessageId } from '../ids.ts'
import type { Db } from '../store/db.ts'
import type { GroupCommit } from '../store/group-commit.ts'
import type { MessageTexts } from '../store/message-text.ts'
import * as messages from '../store/messages.repository.ts'
import * as rooms from '../store/rooms.repository.ts'
import type { RoomEvents } from './events.ts'
import { toAttachment, type AttachmentsService } from './attachments.service.ts'
import { HistoryCache } from './history-cache.ts'
import type { RoomsService } from './rooms.service.ts'
import { cleanText, readTarget, type DeleteInput, type EditInput, type ReactInput, type ReadInput, type SendInput } from './schemas.ts'
import type { Identity, Message } from './types.ts'

/**
 * Row → SPEC `Message` (with its text and its attachment's file name already opened,
 * `MessageTexts.open` and `AttachmentSeals.openName`); optional fields only when set.
 */
export function toMessage(row: messages.HistoryRow, text: string, fileName: string | null, reactions?: Record<string, string[]>): Message {
  const m: Message = {
    id: row.id,
    roomId: row.room_id,
    seq: Number(row.seq),
    version: Number(row.version),
    userId: row.user_id,
    username: row.username,
    text,
    timestamp: new Date(row.created_at).toISOString(),
  }
  if (row.reply_to) m.replyTo = row.reply_to
  // A tombstone shows no file (deleting a message also unlinks it; older rows may still point at one).
  if (row.attachment_id && fileName !== null && !row.deleted_at) {
    m.attachment = toAttachment({ id: row.attachment_id, room_id: row.room_id, mime_type: row.att_mime_type ?? 'application/octet-stream', size: row.att_size ?? 0 }, fileName)
  }
  // A tombstone carries no reactions: a node that catches a client up on a delete sends only
  // `chat:deleted` (D92), so history and sync must not show reactions the client cannot learn of.
  if (reactions && !row.deleted_at && Object.keys(reactions).length > 0) m.reactions = reactions
  if (row.edited_at) m.editedAt = new Date(row.edited_at).toISOString()
  if (row.deleted_at) m.deletedAt = new Date(row.deleted_at).toISOString()
  return m
}

/** Sending, editing, deleting, reacting, read marks and history: one code path for every transport. */
export class MessagesService {
  /** Pages of history; the realtime layer invalidates a room whenever anything in it changes. */
  readonly cache = new HistoryCache()

  constructor(
    private readonly db: Db,
    private readonly commits: GroupCommit,
    private readonly rooms: RoomsService,
    private readonly limit: RateLimit,
    private readonly events: RoomEvents,
    private readonly attachments: AttachmentsService,
    /** Message text in and out of its stored form (encrypted at rest when ENCRYPTION_KEYS is set). */
    private readonly texts: MessageTexts,
  ) {}

  /**
   * Stores a message durably and announces it. `knownMember` skips the membership query when
   * the transport already proved access (the socket joined the room).
   */
  async send(who: Identity, input: SendInput, knownMember: boolean): Promise<{ messageId: string; seq: number }> {
    const text = cleanText(input.text)
    if (text === null) throw new AppError('BAD_REQUEST', 'text must be 1–5000 characters after trimming')
    // The draft queues now, in emit order (SPEC §5.7: a later plain message must not overtake a
    // reply still being checked); its gate is the look-ups and the rate-limit check, which run
    // while it waits for its batch. A failed look-up or a refusal drops it, unwritten (D94).
    const id = newMessageId()
    const draft: messages.Draft = {
      id,
      roomId: input.roomId,
      userId: who.userId,
      username: who.username,
      ...this.texts.seal(input.roomId, id, text),
      replyTo: input.replyTo ?? null,
      clientMsgId: input.clientMsgId ?? null,
      attachmentId: input.attachmentId ?? null,
    }
    // A full commit queue refuses before the draft spends a rate-limit point (SPEC §5.6).
    this.commits.admit(draft)
    const checks = this.checkSend(who, input, knownMember)
    const c = await this.commits.submit(draft, Promise.all([checks, this.limit.consume(who.userId)]))
    const attachment = await checks
    if (!c.duplicate) {
      const m: Message = {
        id: c.id,
        roomId: draft.roomId,
        seq: c.seq,
        version: c.version,
        userId: draft.userId,
        username: draft.username,
        text,
        timestamp: c.createdAt.toISOString(),
      }
      if (draft.replyTo) m.replyTo = draft.replyTo
      if (attachment) m.attachment = attachment
      this.events.messageCommitted(m)
    }
    return { messageId: c.id, seq: c.seq }
  }

  /** What a send must pass besides the rate limit: membership, its reply target, its attachment. */
  private async checkSend(who: Identity, input: SendInput, knownMember: boolean) {
    if (!knownMember) await this.rooms.requireMember(who, input.roomId)
    if (input.replyTo && !(await messages.findMessage(this.db, input.roomId, { id: input.replyTo }))) {
      throw new AppError('NOT_FOUND', 'replyTo message not found in this room')
    }
    return input.attachmentId ? await this.attachments.forMessage(who, input.roomId, input.attachmentId) : undefined
  }

  async edit(who: Identity, input: EditInput): Promise<void> {
    const text = cleanText(input.text)
    if (text === null) throw new AppError('BAD_REQUEST', 'text must be 1–5000 characters after trimming')
    await this.rooms.requireMember(who, input.roomId)
    const row = await this.liveMessage(input.roomId, input.messageId)
    if (row.user_id !== who.userId) throw new AppError('FORBIDDEN', 'Only the author can edit a message')
    const at = new Date()
    const stamped = await messages.updateText(this.db, input.roomId, input.messageId, this.texts.seal(input.roomId, input.messageId, text), at)
    if (!stamped) throw new AppError('NOT_FOUND', 'Message not found in this room') // deleted meanwhile
    this.events.messageEdited({ roomId: input.roomId, messageId: input.messageId, version: stamped.version, text, editedAt: at.toISOString(), userId: who.userId })
  }

  async delete(who: Identity, input: DeleteInput): Promise<void> {
    await this.rooms.requireMember(who, input.roomId)
    const row = await this.liveMessage(input.roomId, input.messageId)
    if (row.user_id !== who.userId && !who.roles.includes('admin')) {
      throw new AppError('FORBIDDEN', 'Only the author or an admin can delete a message')
    }
    const at = new Date()
    const stamped = await messages.softDelete(this.db, input.roomId, input.messageId, at)
    if (!stamped) throw new AppError('NOT_FOUND', 'Message not found in this room') // deleted meanwhile
    this.events.messageDeleted({ roomId: input.roomId, messageId: input.messageId, version: stamped.version, deletedAt: at.toISOString(), userId: who.userId })
  }

  async react(who: Identity, input: ReactInput): Promise<void> {
    await this.rooms.requireMember(who, input.roomId)
    const r = await messages.setReaction(this.db, input.roomId, input.messageId, input.emoji, who.userId, input.on)
    if (!r) throw new AppError('NOT_FOUND', 'Message not found in this room')
    // A repeated reaction (or removing one that is not there) changes nothing: no version, no event.
    if (!r.changed) return
    this.events.reaction({ roomId: input.roomId, messageId: input.messageId, version: r.version, emoji: input.emoji, userId: who.userId, on: input.on })
  }

  /** Raises the caller's read mark to a message of the room and tells the room. */
  async markRead(who: Identity, input: ReadInput): Promise<void> {
    await this.rooms.requireMember(who, input.roomId)
    const by = readTarget(input)
    const row = await messages.findMessage(this.db, input.roomId, by)
    if (!row) throw new AppError('NOT_FOUND', 'Message not found in this room')
    const seq = Number(row.seq)
    await rooms.markRead(this.db, input.roomId, who.userId, seq)
    this.events.read({ roomId: input.roomId, userId: who.userId, messageId: row.id, seq })
  }

  /** Messages with afterSeq < seq <= upToSeq, oldest first, at most `limit`, with reactions. */
  async range(roomId: string, afterSeq: number, upToSeq: number, limit: number): Promise<Message[]> {
    if (upToSeq <= afterSeq) return []
    return this.withReactions(roomId, await messages.listRange(this.db, roomId, afterSeq, upToSeq, limit))
  }

  /**
   * Messages changed after `afterVersion`, in their current state (tombstones for deleted ones),
   * oldest change first, at most `limit`; with `maxSeq`, only those with seq <= maxSeq (sync's
   * `updated`: what a client holds and missed a change of).
   */
  async changedSince(roomId: string, afterVersion: number, limit: number, maxSeq?: number): Promise<Message[]> {
    return this.withReactions(roomId, await messages.listChangedSince(this.db, roomId, afterVersion, limit, maxSeq))
  }

  /** The `limit` messages below `beforeSeq` (the newest when undefined), newest first (history pages). */
  async before(roomId: string, beforeSeq: number | undefined, limit: number): Promise<Message[]> {
    const page = `${beforeSeq ?? 'latest'}:${limit}`
    const cached = this.cache.get(roomId, page)
    this.cache.onLookup?.(cached !== undefined)
    if (cached) return cached
    // A room this node does not follow (an HTTP read of it, no local socket): follow it while
    // the page is read, so the page can be kept and later reads are served from it (D183).
    const release = this.cache.listening(roomId) === 0 ? await this.cache.hold?.(roomId) : undefined
    try {
      const generation = this.cache.generation(roomId)
      const heard = this.cache.listening(roomId)
      const rows = await messages.listBefore(this.db, roomId, beforeSeq ?? Number.MAX_SAFE_INTEGER, limit)
      const result = await this.withReactions(roomId, rows)
      this.cache.set(roomId, page, generation, result, heard)
      return result
    } finally {
      release?.()
    }
  }

  private async withReactions(roomId: string, rows: messages.HistoryRow[]): Promise<Message[]> {
    const reactions = await messages.reactionsFor(this.db, roomId, rows.map((r) => r.id))
    const byMessage = new Map<string, Record<string, string[]>>()
    for (const r of reactions) {
      let m = byMessage.get(r.message_id)
      // Emoji are user input: a reaction named `constructor` or `__proto__` is a key like any other.
      if (!m) byMessage.set(r.message_id, (m = Object.create(null) as Record<string, string[]>))
      ;(m[r.emoji] ??= []).push(r.user_id)
    }
    return rows.map((r) => toMessage(r, this.texts.open(r), this.attachmentName(r), byMessage.get(r.id)))
  }

  /** The file name of a row's attachment (null: none, or a tombstone); opened only when shown. */
  private attachmentName(r: messages.HistoryRow): string | null {
    if (!r.attachment_id || r.att_file_name === null || r.deleted_at) return null
    return this.attachments.seals.openName({ id: r.attachment_id, file_name: r.att_file_name, key_id: r.att_key_id, file_name_cipher: r.att_file_name_cipher })
  }

  private async liveMessage(roomId: string, messageId: string) {
    const row = await messages.findMessage(this.db, roomId, { id: messageId })
    if (!row || row.deleted_at) throw new AppError('NOT_FOUND', 'Message not found in this room')
    return row
  }
}
