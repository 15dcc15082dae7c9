import { useEffect, useId, useRef, type ReactNode } from 'react'

interface Props {
  title: string
  children: ReactNode
  confirmLabel: string
  onConfirm(): void
  onCancel(): void
  testId?: string
}

/**
 * A modal question in a native `<dialog>` opened with `showModal()`: the browser traps focus in
 * it, makes the rest inert, closes it on Escape (as Cancel) and gives focus back afterwards.
 * Focus starts on Cancel, so Enter by accident does nothing irreversible.
 */
export function ConfirmDialog({ title, children, confirmLabel, onConfirm, onCancel, testId = 'confirm-dialog' }: Props) {
  const ref = useRef<HTMLDialogElement>(null)
  const cancelRef = useRef<HTMLButtonElement>(null)
  const titleId = useId()
  const bodyId = useId()
  useEffect(() => {
    const d = ref.current
    if (!d) return
    if (!d.open) d.showModal()
    cancelRef.current?.focus()
    return () => d.close()
  }, [])
  return (
    <dialog
      ref={ref}
      className="dialog"
      data-testid={testId}
      aria-labelledby={titleId}
      aria-describedby={bodyId}
      onCancel={(e) => {
        e.preventDefault()
        onCancel()
      }}
    >
      <h2 id={titleId}>{title}</h2>
      <div id={bodyId}>{children}</div>
      <div className="dialog-actions">
        <button type="button" ref={cancelRef} className="secondary" data-testid="confirm-cancel" onClick={onCancel}>
          Cancel
        </button>
        <button type="button" data-testid="confirm-ok" onClick={onConfirm}>
          {confirmLabel}
        </button>
      </div>
    </dialog>
  )
}
