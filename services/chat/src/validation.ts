import type { Static, TSchema } from 'typebox'
import { Compile, type Validator } from 'typebox/compile'
import { AppError } from './errors.ts'

const cache = new Map<TSchema, Validator>()

/** Validates `value` against `schema` (compiled once) or throws BAD_REQUEST naming the first bad field. */
export function parse<S extends TSchema>(schema: S, value: unknown): Static<S> {
  let v = cache.get(schema)
  if (!v) cache.set(schema, (v = Compile(schema)))
  if (v.Check(value)) return value as Static<S>
  const [first] = v.Errors(value)
  const where = first?.instancePath ? first.instancePath.slice(1).replaceAll('/', '.') : 'payload'
  throw new AppError('BAD_REQUEST', `Invalid ${where}: ${first?.message ?? 'does not match the schema'}`)
}
