/**
 * A value that settled after its race was decided — a losing `select()` branch, work that
 * finished past its `timeout()` — reaches no caller. Tokio drops such an output, and dropping a
 * guard or a permit releases it. Here the same holds for the values that are ownership of a
 * resource: lock guards and permits, whose prototypes are marked with {@link releasedIfUnclaimed}.
 * Other disposable values (a stream, say) may well be referenced elsewhere and are left alone.
 * @module
 */

const kReleasable = Symbol('kyoto.releasedIfUnclaimed');

/** Marks a class whose instances are released (`[Symbol.dispose]()`) when nobody can claim them. */
export function releasedIfUnclaimed(proto: Disposable): void {
  Object.defineProperty(proto, kReleasable, { value: true });
}

/** Releases `value` if it is a marked guard or permit; leaves anything else alone. */
export function disposeUnclaimed(value: unknown): void {
  if (value === null || typeof value !== 'object' || (value as { [kReleasable]?: true })[kReleasable] !== true) return;
  try {
    (value as Disposable)[Symbol.dispose]();
  } catch {
    // Nobody could observe the value, so nobody could handle its release failing either.
  }
}
