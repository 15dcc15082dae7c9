/**
 * Readable, subscribable values.
 * @packageDocumentation
 */

/** A readable, subscribable value (`useSyncExternalStore`-compatible): `get()` returns the same object until it changes. */
export interface Store<T> {
  /** The current snapshot (immutable; a new object after every change, the same one otherwise). */
  get(): T
  /** Calls `fn` after every change; returns the function that unsubscribes. */
  subscribe(fn: () => void): () => void
}

/** The SDK's {@link Store} implementation: holds one immutable snapshot, notifies on replacement. */
export class ValueStore<T> implements Store<T> {
  private value: T
  private readonly listeners = new Set<() => void>()

  /** @param initial - the first snapshot. */
  constructor(initial: T) {
    this.value = initial
  }

  /** The current snapshot. */
  readonly get = (): T => this.value

  /** Subscribes `fn`; each call adds one subscription, removed by the returned function. */
  readonly subscribe = (fn: () => void): (() => void) => {
    // A wrapper per call: the same function subscribed twice needs two unsubscribes.
    const entry = () => fn()
    this.listeners.add(entry)
    return () => {
      this.listeners.delete(entry)
    }
  }

  /** Replaces the snapshot (no-op when `next` is the current object) and notifies. */
  set(next: T): void {
    if (Object.is(next, this.value)) return
    this.value = next
    for (const l of [...this.listeners]) {
      try {
        l()
      } catch (err) {
        // A listener's bug must not stop the others nor the SDK's own bookkeeping.
        queueMicrotask(() => {
          throw err
        })
      }
    }
  }

  /** Applies `fn` to the snapshot; notifies only when it returns a different object. */
  update(fn: (v: T) => T): void {
    this.set(fn(this.value))
  }

  /** Drops every subscriber (on close). */
  clear(): void {
    this.listeners.clear()
  }
}
