/**
 * Pure rules of a room's timeline (no socket, no timers): merging by seq and version, applying
 * edits, deletions and reactions by version, and the contiguous "last seq" a client syncs from.
 * Moved from the web client's store (services/web/src/chat/timeline.ts) and made version-aware.
 * @packageDocumentation
 */
import type { DeletedEvent, EditedEvent, Message, ReactionEvent } from './protocol.ts'

/** A prototype-free copy of a reactions map (`constructor` and `__proto__` are emoji like any other). */
export function copyReactions(r: Readonly<Record<string, readonly string[]>> | undefined): Record<string, string[]> {
  const out: Record<string, string[]> = Object.create(null)
  if (!r) return out
  for (const k of Object.keys(r)) {
    const users = r[k]
    if (Array.isArray(users) && users.length > 0) out[k] = [...users]
  }
  return out
}

/** `m` with a prototype-free `reactions` (omitted when empty): every message the SDK hands out is normalised so. */
export function normalizeMessage(m: Message): Message {
  const out: Message = { ...m }
  if (m.reactions === undefined) return out
  const r = copyReactions(m.reactions)
  if (Object.keys(r).length > 0) out.reactions = r
  else delete out.reactions
  return out
}

/**
 * `existing` plus `incoming`, in seq order, one entry per seq, each in its highest version (an
 * incoming copy replaces a held one only when its version is higher, or equal and the held one is
 * provisional). Returns `existing` itself when nothing changed.
 */
export function mergeMessages(existing: readonly Message[], incoming: readonly Message[], provisional?: ReadonlySet<number>): readonly Message[] {
  if (incoming.length === 0) return existing
  const bySeq = new Map<number, number>()
  existing.forEach((m, i) => bySeq.set(m.seq, i))
  let next: Message[] | null = null
  const fresh: Message[] = []
  const freshSeq = new Map<number, number>()
  for (const raw of incoming) {
    const i = bySeq.get(raw.seq)
    if (i !== undefined) {
      const held = (next ?? existing)[i]
      if (raw.version > held.version || (raw.version === held.version && provisional?.has(raw.seq) === true && held.id === raw.id)) {
        next ??= [...existing]
        next[i] = normalizeMessage(raw)
      }
      continue
    }
    const j = freshSeq.get(raw.seq)
    if (j !== undefined) {
      if (raw.version > fresh[j].version) fresh[j] = normalizeMessage(raw)
      continue
    }
    freshSeq.set(raw.seq, fresh.length)
    fresh.push(normalizeMessage(raw))
  }
  if (fresh.length === 0) return next ?? existing
  const base = next ?? existing
  const last = base.length > 0 ? base[base.length - 1].seq : 0
  fresh.sort((a, b) => a.seq - b.seq)
  // The common case (live messages after what we hold) needs no full sort.
  if (fresh[0].seq > last) return [...base, ...fresh]
  return [...base, ...fresh].sort((a, b) => a.seq - b.seq)
}

/** Replaces the message with `id` by `fn(message)`; the same array when absent or unchanged. */
function patchById(messages: readonly Message[], id: string, fn: (m: Message) => Message): readonly Message[] {
  const i = messages.findIndex((m) => m.id === id)
  if (i < 0) return messages
  const m = fn(messages[i])
  if (m === messages[i]) return messages
  const next = [...messages]
  next[i] = m
  return next
}

/** Applies `chat:edited` unless the message already has this version or a newer one. */
export function applyEdit(messages: readonly Message[], e: EditedEvent): readonly Message[] {
  return patchById(messages, e.messageId, (m) => (e.version <= m.version ? m : { ...m, text: e.text, editedAt: e.editedAt, version: e.version }))
}

/** Applies `chat:deleted` (a tombstone: empty text, `deletedAt`) unless older than the message's version. */
export function applyDelete(messages: readonly Message[], e: DeletedEvent): readonly Message[] {
  return patchById(messages, e.messageId, (m) => {
    if (e.version <= m.version) return m
    const next: Message = { ...m, text: '', deletedAt: e.deletedAt, version: e.version }
    delete next.reactions
    delete next.attachment
    return next
  })
}

/** Applies `chat:reaction` (one change, or the whole current map) unless older than the message's version. */
export function applyReaction(messages: readonly Message[], e: ReactionEvent): readonly Message[] {
  return patchById(messages, e.messageId, (m) => {
    if (e.version <= m.version) return m
    let reactions: Record<string, string[]>
    if ('reactions' in e) reactions = copyReactions(e.reactions)
    else {
      reactions = copyReactions(m.reactions)
      const users = new Set(Object.hasOwn(reactions, e.emoji) ? reactions[e.emoji] : [])
      if (e.on) users.add(e.userId)
      else users.delete(e.userId)
      if (users.size === 0) delete reactions[e.emoji]
      else reactions[e.emoji] = [...users]
    }
    const next: Message = { ...m, version: e.version, reactions }
    if (Object.keys(reactions).length === 0) delete next.reactions
    return next
  })
}

/** Replaces held messages by their current state (a sync's `updated`), by id, when newer. */
export function applyUpdated(messages: readonly Message[], updated: readonly Message[]): readonly Message[] {
  let next = messages
  for (const u of updated) next = patchById(next, u.id, (m) => (u.version > m.version ? normalizeMessage(u) : m))
  return next
}

/**
 * The highest seq up to which this client holds every message without a hole, from its oldest
 * held one, counting only confirmed messages (not those built from a send's ack alone): the
 * `lastSeq` of a sync. 0 when it holds none.
 */
export function contiguousLastSeq(messages: readonly Message[], provisional?: ReadonlySet<number>): number {
  let last = 0
  for (const m of messages) {
    if (provisional?.has(m.seq)) {
      // Not confirmed yet: a sync from just before it returns its stored state.
      if (last === 0) last = m.seq - 1
      break
    }
    if (last === 0 || m.seq === last + 1) last = m.seq
    else break
  }
  return last
}

/** The highest message version in `messages` (0 when empty). */
export const maxVersion = (messages: readonly Message[]): number => messages.reduce((v, m) => (m.version > v ? m.version : v), 0)

/** userIds whose read mark is at or above `seq`, other than `me`. */
export function readersOf(reads: ReadonlyMap<string, number>, seq: number, me: string | undefined): string[] {
  const out: string[] = []
  for (const [userId, s] of reads) if (userId !== me && s >= seq) out.push(userId)
  return out
}

/** DM room id for two users (`dm:<a>:<b>`, sorted, so both sides name the same room). */
export function dmRoomId(a: string, b: string): string {
  return `dm:${[a, b].sort().join(':')}`
}
