import { fileTypeFromBuffer } from 'file-type'
import { AppError } from '../errors.ts'

/** How many leading bytes the type is judged from (file-type's own sample size). */
export const SNIFF_BYTES = 4100
export const MAX_FILE_NAME = 200

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g
// C0 and C1 controls (newlines included), DEL, and the bidi overrides that make "gpj.exe" look
// like "exe.jpg".
const JUNK = /[\u0000-\u001F\u007F-\u009F\u200E\u200F\u202A-\u202E\u2066-\u2069]/g

/**
 * The file name as stored and shown: no directories, no control characters, NUL or unpaired
 * surrogates (Postgres cannot store those), at most MAX_FILE_NAME characters with the extension
 * kept; anything else verbatim. Never empty.
 */
export function sanitizeFileName(raw: string): string {
  const base = raw.replace(LONE_SURROGATE, '').split(/[\\/]/).pop() ?? ''
  let name = base.replace(JUNK, '').trim()
  if (name === '' || name === '.' || name === '..') return 'file'
  const chars = [...name]
  if (chars.length > MAX_FILE_NAME) {
    const dot = name.lastIndexOf('.')
    const ext = dot > 0 ? [...name.slice(dot)] : []
    const keep = ext.length > 0 && ext.length <= 16 ? ext : []
    name = chars.slice(0, MAX_FILE_NAME - keep.length).join('') + keep.join('')
  }
  return name
}

/**
 * Browsers (and undici's FormData) write `"`, CR and LF in a multipart file name as %22, %0D and
 * %0A (WHATWG HTML, multipart/form-data encoding) and leave `%` itself alone; busboy hands the
 * name over as written. Undo that, so "a \"b\".txt" arrives as it was named (a name that really
 * contained "%22" loses those three characters to a quote: rare, and harmless).
 */
export function undoFormDataEscapes(name: string): string {
  return name.replace(/%22/g, '"').replace(/%0D|%0A/gi, '')
}

/** Types a browser may show inline (everything else downloads as an attachment). */
export const INLINE_TYPES: ReadonlySet<string> = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp'])

const unsupported = (what: string) => new AppError('BAD_REQUEST', `Unsupported file type: ${what}`, undefined, 415)

/**
 * The file's type from its first bytes, never from what the client declared. Bytes file-type
 * does not recognise count as text/plain candidates, but only when the client did not claim a
 * binary type for them (HTML declared as image/png is a lie, not a text file); whether they
 * really are text is checked on every byte by `textChecker`.
 */
export async function judgeType(head: Uint8Array, declared: string, allowed: readonly string[]): Promise<string> {
  const found = await fileTypeFromBuffer(head)
  if (found) {
    if (!allowed.includes(found.mime)) throw unsupported(found.mime)
    return found.mime
  }
  const claimed = declared.split(';')[0].trim().toLowerCase()
  const mayBeText = claimed === '' || claimed === 'application/octet-stream' || claimed.startsWith('text/')
  if (!mayBeText || !allowed.includes('text/plain')) throw unsupported(`not a recognised ${claimed || 'file'}`)
  return 'text/plain'
}

// Controls other than tab, line feed, form feed and carriage return (C1 included) are not text.
const CONTROL = /[\u0000-\u0008\u000B\u000E-\u001F\u007F-\u009F]/

/**
 * A streaming check that bytes are UTF-8 text: valid sequences across chunk boundaries, no NUL
 * or control junk. `push` throws 415 on the first bad chunk, `end` on a truncated sequence.
 */
export function textChecker() {
  const decoder = new TextDecoder('utf-8', { fatal: true })
  const check = (fn: () => string) => {
    let text: string
    try {
      text = fn()
    } catch {
      throw unsupported('not UTF-8 text')
    }
    if (CONTROL.test(text)) throw unsupported('text with control characters')
  }
  return {
    push: (chunk: Uint8Array) => check(() => decoder.decode(chunk, { stream: true })),
    end: () => check(() => decoder.decode()),
  }
}

/** `Range: bytes=a-b` (one range) against a blob of `size` bytes (RFC 9110 §14). */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | null {
  if (!header) return null
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header)
  // Several ranges, or other units: allowed to be ignored, so the whole file is sent.
  if (!m || (m[1] === '' && m[2] === '')) return null
  if (m[1] === '') {
    const suffix = Number(m[2])
    if (suffix === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(m[1])
  const end = m[2] === '' ? size - 1 : Number(m[2])
  if (start >= size) return 'unsatisfiable'
  if (end < start) return null // an invalid range-spec: ignored
  return { start, end: Math.min(end, size - 1) }
}
