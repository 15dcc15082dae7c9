/**
 * The words the room shows for receipts and typing, and reading DM ids. No DOM, no socket:
 * unit-tested in node (test/timeline.test.ts). Merging, echoes and the outbox are the SDK's.
 */

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

/** For `dm:<a>:<b>`: the other member when `me` is one of the two, else null. */
export function dmPeer(roomId: string, me: string): string | null {
  if (!roomId.startsWith('dm:')) return null
  const rest = roomId.slice(3)
  if (rest.startsWith(`${me}:`) && rest.length > me.length + 1) return rest.slice(me.length + 1)
  if (rest.endsWith(`:${me}`) && rest.length > me.length + 1) return rest.slice(0, -(me.length + 1))
  return null
}
