/** Day separators in the timeline: calendar days of the reader's time zone. */

const dayKey = (d: Date) => `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`

export function sameDay(a: string, b: string): boolean {
  return dayKey(new Date(a)) === dayKey(new Date(b))
}

/** "Today", "Yesterday", or the date ("Monday, 30 November 2026" in the reader's locale). */
export function dayLabel(ts: string, now = new Date()): string {
  const d = new Date(ts)
  if (Number.isNaN(d.getTime())) return ''
  if (dayKey(d) === dayKey(now)) return 'Today'
  const y = new Date(now)
  y.setDate(y.getDate() - 1)
  if (dayKey(d) === dayKey(y)) return 'Yesterday'
  return d.toLocaleDateString([], { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' })
}
