import type { Static, TSchema } from 'typebox'
import { Compile, type Validator } from 'typebox/compile'
import { AppError } from './errors.ts'

const cache = new Map<TSchema, Validator>()

/** How deep a payload may nest; ours are at most three levels (`chat:sync` rooms). */
export const MAX_DEPTH = 16

/**
 * Validates `value` against `schema` (compiled once) or throws BAD_REQUEST naming the first bad
 * field and what it accepts. Every string in the value (keys included) must also be storable
 * in Postgres: no U+0000 and no unpaired surrogate (SPEC §4), which the schema alone cannot say.
 */
export function parse<S extends TSchema>(schema: S, value: unknown, maxChars = Infinity): Static<S> {
  let v = cache.get(schema)
  if (!v) cache.set(schema, (v = Compile(schema)))
  const bad = inspect(value, maxChars)
  if (bad === TOO_LARGE) throw new AppError('TOO_LARGE', `Payload too large: at most ${maxChars} characters of text per event`)
  if (bad) throw new AppError('BAD_REQUEST', `Invalid ${bad.where}: ${bad.why}`)
  if (v.Check(value)) return value as Static<S>
  throw new AppError('BAD_REQUEST', describeError(schema, [...v.Errors(value)]))
}

/** True when Postgres can store `s` as text: well-formed UTF-16 without U+0000. */
export function storable(s: string): boolean {
  return s.isWellFormed() && !s.includes('\u0000')
}

const TOO_LARGE = Symbol('too large')

/**
 * The first string (or key) in `value` that Postgres would refuse, a structure nested past
 * MAX_DEPTH, or TOO_LARGE once its strings and keys add up to more than `maxChars`.
 * Iterative, so a payload nested 10,000 deep cannot overflow the stack.
 */
function inspect(value: unknown, maxChars: number): { where: string; why: string } | typeof TOO_LARGE | null {
  const stack: { v: unknown; path: string; depth: number }[] = [{ v: value, path: '', depth: 0 }]
  let chars = 0
  while (stack.length > 0) {
    const { v, path, depth } = stack.pop()!
    if (typeof v === 'string') {
      if ((chars += v.length) > maxChars) return TOO_LARGE
      if (!storable(v)) return { where: path || 'payload', why: 'must not contain U+0000 or unpaired surrogates' }
    } else if (typeof v === 'object' && v !== null) {
      if (depth >= MAX_DEPTH) return { where: path || 'payload', why: `nested more than ${MAX_DEPTH} levels deep` }
      for (const k in v) {
        if (!Object.hasOwn(v, k)) continue
        if ((chars += k.length) > maxChars) return TOO_LARGE
        const at = path ? `${path}.${fieldName(k)}` : fieldName(k)
        if (!storable(k)) return { where: `key ${at}`, why: 'must not contain U+0000 or unpaired surrogates' }
        stack.push({ v: (v as Record<string, unknown>)[k], path: at, depth: depth + 1 })
      }
    }
  }
  return null
}

/** A key as it may appear in an error text: plain names as they are, anything else quoted and cut. */
function fieldName(key: string): string {
  if (/^[A-Za-z0-9_]{1,40}$/.test(key)) return key
  return JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}…` : key)
}

interface SchemaError {
  keyword: string
  schemaPath: string
  instancePath: string
  params: Record<string, unknown>
  message: string
}

/** `#/properties/a/anyOf/0` → that subschema of `root` (undefined when the path leaves it). */
function schemaAt(root: TSchema, pointer: string): Record<string, unknown> | undefined {
  let node: unknown = root
  for (const part of pointer.replace(/^#\/?/, '').split('/').filter(Boolean)) {
    const key = part.replaceAll('~1', '/').replaceAll('~0', '~')
    if (typeof node !== 'object' || node === null || !Object.hasOwn(node, key)) return undefined
    node = (node as Record<string, unknown>)[key]
  }
  return node as Record<string, unknown>
}

/** What a schema accepts, in words: its description, the literals of a union, or its type. */
function accepts(s: Record<string, unknown> | undefined): string | undefined {
  if (!s) return undefined
  if (typeof s.description === 'string') return s.description
  const variants = s.anyOf as Record<string, unknown>[] | undefined
  if (variants?.every((x) => 'const' in x)) return `one of: ${variants.map((x) => JSON.stringify(x.const)).join(', ')}`
  if (typeof s.type === 'string') return s.type === 'object' ? 'an object' : `a${/^[aeiou]/.test(s.type) ? 'n' : ''} ${s.type}`
  return undefined
}

/** One sentence for the first problem: the field by its dotted path, and what it accepts. */
function describeError(root: TSchema, errors: SchemaError[]): string {
  if (errors.length === 0) return 'Invalid payload: does not match the schema'
  const first = errors[0]
  const path = (p: string) =>
    p
      .split('/')
      .slice(1)
      .map((k) => fieldName(k.replaceAll('~1', '/').replaceAll('~0', '~')))
      .join('.') || 'payload'
  if (first.keyword === 'required') {
    const missing = (first.params.requiredProperties as string[] | undefined) ?? []
    const where = first.instancePath ? `${path(first.instancePath)}.` : ''
    return `Missing ${missing.map((m) => where + m).join(', ')}`
  }
  if (first.keyword === 'additionalProperties') return `Invalid ${path(first.instancePath)}: unexpected keys`
  // A union reports each variant, then itself: speak of the union as a whole.
  const union = errors.find((e) => e.keyword === 'anyOf' && e.instancePath === first.instancePath)
  const err = union ?? first
  const where = path(err.instancePath)
  if (err.keyword === 'boolean') {
    // A key the record does not allow (e.g. a bad room id in `chat:sync` rooms).
    const record = schemaAt(root, err.schemaPath.replace(/\/additionalProperties$/, ''))
    return `Invalid key ${where}: the keys must be ${typeof record?.keyDescription === 'string' ? record.keyDescription : 'allowed keys'}`
  }
  const wanted = accepts(schemaAt(root, err.schemaPath))
  return wanted ? `Invalid ${where}: expected ${wanted} (${err.message})` : `Invalid ${where}: ${err.message}`
}
