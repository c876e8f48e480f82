/**
 * A value that settled after its race was decided — a losing `select()` branch, work that
 * finished past its `timeout()` — reaches no caller. Tokio drops such an output, and dropping a
 * guard or a permit releases it, as dropping a socket closes it. Here the same holds for the
 * values that are ownership of a resource nobody else can hold:
 * - lock guards and permits, whose prototypes are marked with {@link releasedIfUnclaimed};
 * - a socket made by the very call a branch returned (an accepted or connected stream, a bound
 *   listener or datagram socket): each such call marks what it returns with {@link freshResource},
 *   and the mark counts only when the branch's own call (run in {@link inClaimWindow}) made it and
 *   returned it as is. A stream obtained any other way (awaited inside an `async` branch, made
 *   before the `select()`) may well be referenced elsewhere and is left alone.
 * @module
 */

const kReleasable = Symbol('kyoto.releasedIfUnclaimed');

/** Marks a class whose instances are released (`[Symbol.dispose]()`) when nobody can claim them. */
export function releasedIfUnclaimed(proto: Disposable): void {
  Object.defineProperty(proto, kReleasable, { value: true });
}

/** What a marked call made: the claim window it was made in, and how its value is released. */
interface Fresh {
  window: number;
  release: (value: never) => void;
}

/** The promises (or values) that calls made in a claim window returned, with their release. */
const fresh = new WeakMap<object, Fresh>();
/** The claim window a branch's call is running in (0: none). */
let current = 0;
let windows = 0;

/**
 * Calls `fn` (a `select()` branch, `timeout()`'s work) in a claim window of its own: what a
 * {@link freshResource} call made during it is tied to that window. Returns `fn`'s result and the
 * window's number (for {@link disposeUnclaimed}); what `fn` throws propagates.
 */
export function inClaimWindow<T>(fn: () => T): [T, number] {
  const prev = current;
  const window = (current = ++windows);
  try {
    return [fn(), window];
  } finally {
    current = prev;
  }
}

/**
 * Marks `made` — the promise a call returns, or the object it returns at once — as holding a
 * resource that only this call's caller can reach: if it is a losing branch's output, `release`
 * gets its value (the promise's fulfilment, or `made` itself). Only for calls that create the
 * resource and hand it to nobody else. Does nothing outside a claim window. Returns `made`.
 */
export function freshResource<T extends object>(made: T, release: (value: Awaited<T>) => void): T {
  if (current !== 0) fresh.set(made, { window: current, release: release as (value: never) => void });
  return made;
}

/**
 * Releases `value`, the output nobody can claim, if it is a marked guard or permit, or the value
 * of `from` (what the branch's call in claim window `window` returned) when a call marked `from`
 * in that window; leaves anything else alone.
 */
export function disposeUnclaimed(value: unknown, from?: unknown, window?: number): void {
  let release: ((value: never) => void) | undefined;
  if (value !== null && typeof value === 'object' && (value as { [kReleasable]?: true })[kReleasable] === true) {
    release = () => (value as Disposable)[Symbol.dispose]();
  } else if (from !== null && typeof from === 'object' && window !== undefined) {
    const f = fresh.get(from);
    if (f !== undefined && f.window === window) {
      fresh.delete(from);
      release = f.release;
    }
  }
  if (release === undefined) return;
  try {
    release(value as never);
  } catch {
    // Nobody could observe the value, so nobody could handle its release failing either.
  }
}
