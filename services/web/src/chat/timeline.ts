import type { Attachment, Message } from '../protocol.ts'

/**
 * Pure rules of a room's timeline: merging by seq, matching our own echoes to pending sends,
 * and the words shown for receipts and typing. No DOM, no socket: unit-tested in node.
 */

/** A send not yet acknowledged. `echoSeq` is set once a stored message of ours with the same text was seen. */
export interface PendingMessage {
  clientMsgId: string
  roomId: string
  text: string
  replyTo?: string
  /** Uploaded already; the message carries its id. */
  attachment?: Attachment
  /** sending: emitted, waiting for the ack; queued: waits for the connection or an earlier send; waiting: until `retryAt`; failed: needs the user. */
  status: 'sending' | 'queued' | 'waiting' | 'failed'
  error?: string
  /** The code of the last refusal (RATE_LIMITED: the rate-limit notice counts down to `retryAt`). */
  errorCode?: string
  /** Epoch ms of the next attempt. */
  retryAt?: number
  echoSeq?: number
  timestamp: string
}

/** `existing` plus `incoming`, in seq order, one entry per seq; the same array when nothing is new. */
export function mergeMessages(existing: readonly Message[], incoming: readonly Message[]): Message[] {
  const known = new Set(existing.map((m) => m.seq))
  const fresh = incoming.filter((m) => {
    if (known.has(m.seq)) return false
    known.add(m.seq)
    return true
  })
  if (fresh.length === 0) return existing as Message[]
  const last = existing.length > 0 ? existing[existing.length - 1].seq : 0
  // The common case (live messages, in order, after what we have) needs no sort.
  if (fresh.every((m, i) => m.seq > (i === 0 ? last : fresh[i - 1].seq))) return [...existing, ...fresh]
  return [...existing, ...fresh].sort((a, b) => a.seq - b.seq)
}

/** Applies an edit or delete to the message with that id; the same array when it is not there. */
export function patchMessage(messages: readonly Message[], messageId: string, patch: Partial<Message>): Message[] {
  const i = messages.findIndex((m) => m.id === messageId)
  if (i < 0) return messages as Message[]
  const next = [...messages]
  next[i] = { ...messages[i], ...patch }
  return next
}

export const lastSeqOf = (messages: readonly Message[]) => (messages.length > 0 ? messages[messages.length - 1].seq : 0)
export const firstSeqOf = (messages: readonly Message[]) => (messages.length > 0 ? messages[0].seq : 0)

/**
 * Our own stored messages arrive (broadcast or sync) before or after their ack, and carry no
 * clientMsgId: each one hides the first pending send with the same text that no echo claimed
 * yet. The ack, matched by clientMsgId, is what finally removes a pending send.
 */
export function claimEchoes(pending: readonly PendingMessage[], mine: readonly Message[]): PendingMessage[] {
  let next = pending as PendingMessage[]
  for (const m of mine) {
    if (next.some((p) => p.echoSeq === m.seq)) continue
    const i = next.findIndex((p) => p.echoSeq === undefined && p.roomId === m.roomId && p.text === m.text && (p.replyTo ?? '') === (m.replyTo ?? ''))
    if (i < 0) continue
    next = [...next]
    next[i] = { ...next[i], echoSeq: m.seq }
  }
  return next
}

/** Pending sends still to show: those whose echo is not in the timeline yet. */
export function visiblePending(pending: readonly PendingMessage[], messages: readonly Message[]): PendingMessage[] {
  if (pending.length === 0) return []
  const seqs = new Set(messages.map((m) => m.seq))
  return pending.filter((p) => p.echoSeq === undefined || !seqs.has(p.echoSeq))
}

/** Who has read up to the newest message, other than me and its author. */
export function seenBy(reads: ReadonlyMap<string, number>, newest: { seq: number; userId: string } | undefined, me: string): string[] {
  if (!newest) return []
  return [...reads]
    .filter(([userId, seq]) => userId !== me && userId !== newest.userId && seq >= newest.seq)
    .map(([userId]) => userId)
}

/** "Ana", "Ana and Ben", "Ana, Ben and 2 others". */
export function nameList(names: readonly string[]): string {
  if (names.length <= 1) return names.join('')
  if (names.length === 2) return `${names[0]} and ${names[1]}`
  if (names.length === 3) return `${names[0]}, ${names[1]} and ${names[2]}`
  return `${names[0]}, ${names[1]} and ${names.length - 2} others`
}

export function typingText(names: readonly string[]): string {
  if (names.length === 0) return ''
  if (names.length > 3) return 'Several people are typing…'
  return `${nameList(names)} ${names.length === 1 ? 'is' : 'are'} typing…`
}

/** DM room id for two users (decisions D9); sorted so both sides open the same room. */
export function dmRoomId(a: string, b: string): string {
  return `dm:${[a, b].sort().join(':')}`
}

/** For `dm:<a>:<b>`: the other member when `me` is one of the two, else null. */
export function dmPeer(roomId: string, me: string): string | null {
  if (!roomId.startsWith('dm:')) return null
  const rest = roomId.slice(3)
  if (rest.startsWith(`${me}:`) && rest.length > me.length + 1) return rest.slice(me.length + 1)
  if (rest.endsWith(`:${me}`) && rest.length > me.length + 1) return rest.slice(0, -(me.length + 1))
  return null
}
