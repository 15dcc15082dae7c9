/**
 * `@switchboard/client`: the Switchboard chat SDK.
 * @packageDocumentation
 */
export * from './protocol.ts'
