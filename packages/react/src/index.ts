/**
 * `@switchboard/react`: React hooks over `@switchboard/client`.
 * @packageDocumentation
 */
export type { Message } from '@switchboard/client'
