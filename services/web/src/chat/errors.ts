import { SwitchboardError } from '@switchboard/client'

/** "message (CODE)" for an SDK error, the text of anything else: for the error line. */
export function errorText(err: unknown): string {
  if (err instanceof SwitchboardError) return `${err.message} (${err.code})`
  return err instanceof Error ? err.message : String(err)
}
