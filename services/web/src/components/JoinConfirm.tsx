import { useCallback, useState, type ReactNode } from 'react'
import { ROOM_ID } from '@switchboard/client'
import { ConfirmDialog } from './ConfirmDialog.tsx'

export const BAD_ROOM_ID = 'Room ids are 1–128 characters: letters, digits, ":", "_", "." or "-".'

interface Options {
  /** Rooms I know already (listed or open) open at once. */
  isKnown(roomId: string): boolean
  exists(roomId: string): Promise<'exists' | 'missing' | 'forbidden'>
  open(roomId: string): void
  showError(text: string): void
}

/**
 * "Join by id" that asks first when the room does not exist yet (a join would create it): a
 * typo should not leave a new empty room behind. DM ids and known rooms open at once; a room
 * that exists (or is private: the join explains the refusal) opens without a question.
 */
export function useJoinWithConfirm({ isKnown, exists, open, showError }: Options): [join: (roomId: string) => void, dialog: ReactNode] {
  const [asking, setAsking] = useState<string | null>(null)
  const join = useCallback(
    (roomId: string) => {
      if (!ROOM_ID.test(roomId)) return showError(BAD_ROOM_ID)
      if (isKnown(roomId) || roomId.startsWith('dm:')) return open(roomId)
      exists(roomId).then(
        (found) => (found === 'missing' ? setAsking(roomId) : open(roomId)),
        (err: unknown) => showError(`Could not look up "${roomId}": ${err instanceof Error ? err.message : String(err)}`),
      )
    },
    [isKnown, exists, open, showError],
  )
  const dialog = asking ? (
    <ConfirmDialog
      title="Create a new room?"
      confirmLabel="Create and join"
      onConfirm={() => {
        setAsking(null)
        open(asking)
      }}
      onCancel={() => setAsking(null)}
    >
      <p>
        There is no room <strong data-testid="confirm-room-id">{asking}</strong> yet. Joining it creates a new public room that anyone can join.
      </p>
    </ConfirmDialog>
  ) : null
  return [join, dialog]
}
