/**
 * The JS half of the completion bridge.
 *
 * Native operations are identified by a number. Submitting one stores its resolvers here (one small
 * object per operation, no native promise or threadsafe function); the native side delivers
 * finished operations in batches: one call of {@link onBatch} per batch, with ids and statuses in
 * two typed arrays shared with native code at init and the few values that exist in one array.
 * @module
 */
import { firstCopy, native } from './native';
import { abortReason, codedError } from './errors';

// A later evaluation of this file in this env (Jest's per-file module registries, a cleared
// require.cache) takes the first one's exports: see firstCopy().
const first = firstCopy('bridge', exports);

const CAPACITY = 4096;
const ids = new Uint32Array(CAPACITY);
const statuses = new Uint8Array(CAPACITY);

/** Something operations belong to (a runtime), so they can be rejected together. */
export interface OpOwner {
  /** @internal */
  readonly _ownerTag: true;
}

class Pending {
  constructor(
    readonly resolve: (value: unknown) => void,
    readonly reject: (reason: unknown) => void,
    readonly owner: OpOwner,
    public signal: AbortSignal | undefined,
    public onAbort: (() => void) | undefined,
  ) {}

  /**
   * Removes the abort listener, then resolves (`ok`) or rejects with `value`. Never throws: it
   * runs amid a batch of other operations' completions. A signal is any object with the
   * AbortSignal methods, and if its `removeEventListener` throws, this operation rejects with that
   * error instead.
   */
  settle(ok: boolean, value: unknown): void {
    if (this.onAbort !== undefined) {
      const { signal, onAbort } = this;
      this.onAbort = undefined;
      this.signal = undefined;
      try {
        signal!.removeEventListener('abort', onAbort);
      } catch (err) {
        this.reject(err);
        return;
      }
    }
    if (ok) this.resolve(value);
    else this.reject(value);
  }
}

const pending = new Map<number, Pending>();
// Ids stay small integers (V8 Smis) and wrap; an id still pending after a wrap is skipped.
const MAX_ID = 2 ** 30 - 1;
let nextId = 0;
let wrapped = false;

function allocId(): number {
  for (;;) {
    if (nextId === MAX_ID) {
      nextId = 0;
      wrapped = true;
    }
    const id = ++nextId;
    if (!wrapped || !pending.has(id)) return id;
  }
}

let afterBatch: (() => void) | undefined;

/**
 * Registers a function called after every batch (the paused clock's auto-advance). Each copy of
 * `kyoto/time` in the env registers its own (see firstCopy()); they run in that order.
 */
export function setAfterBatch(fn: () => void): void {
  const before = afterBatch;
  afterBatch = before === undefined ? fn : (): void => {
    before();
    fn();
  };
}

function onBatch(count: number, values: unknown[] | undefined): void {
  afterBatch?.();
  let vi = 0;
  // A callback of `submitCallbacks` may throw: the batch goes on (its other operations would never
  // settle otherwise), and the first error is thrown once it is done.
  let failed: { readonly err: unknown } | undefined;
  for (let i = 0; i < count; i++) {
    const id = ids[i];
    const status = statuses[i];
    const p = pending.get(id);
    let ok = true;
    let value: unknown = undefined;
    if (status === 1) {
      value = values![vi++];
    } else if (status !== 0) {
      const code = values![vi++] as string;
      const message = values![vi++] as string;
      if (p === undefined) continue;
      ok = false;
      value = codedError(code, message);
    }
    if (p === undefined) continue;
    pending.delete(id);
    try {
      p.settle(ok, value);
    } catch (err) {
      failed ??= { err };
    }
  }
  if (failed !== undefined) throw failed.err;
}

if (first === exports) native.bridgeInit(onBatch, ids, statuses);

/**
 * Starts a native operation: `start(id)` submits it (and may throw); the returned promise settles
 * when its completion arrives.
 */
export function submit<T>(owner: OpOwner, start: (id: number) => void): Promise<T> {
  const id = allocId();
  return new Promise<T>((resolve, reject) => {
    start(id);
    pending.set(id, new Pending(resolve as (v: unknown) => void, reject, owner, undefined, undefined));
  });
}

/**
 * Like {@link submit} for an operation started as cancellable: if `signal` aborts first, the native
 * operation is cancelled and the promise rejects with the signal's reason (or an `AbortError`).
 */
export function submitCancellable<T>(
  owner: OpOwner,
  signal: AbortSignal | undefined,
  start: (id: number, cancellable: boolean) => void,
): Promise<T> {
  if (signal === undefined) return submit(owner, (id) => start(id, false));
  if (signal.aborted) return Promise.reject(abortReason(signal));
  const id = allocId();
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      const p = pending.get(id);
      if (p === undefined) return;
      pending.delete(id);
      native.cancel(id);
      p.settle(false, abortReason(signal));
    };
    // Listening comes first: a signal whose addEventListener throws fails the call before the
    // operation starts, not after (a wait it started would go on, and take what it waited for).
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      start(id, true);
    } catch (err) {
      signal.removeEventListener('abort', onAbort);
      throw err;
    }
    pending.set(id, new Pending(resolve as (v: unknown) => void, reject, owner, signal, onAbort));
  });
}

/**
 * Starts a native operation whose outcome goes to callbacks instead of a promise (one pending entry,
 * no promise): `start(id)` submits it; exactly one of `resolve` / `reject` is called unless the
 * operation is cancelled with {@link cancelOp}. Returns the operation's id.
 */
export function submitCallbacks(
  owner: OpOwner,
  start: (id: number) => void,
  resolve: (value: unknown) => void,
  reject: (reason: unknown) => void,
): number {
  const id = allocId();
  start(id);
  pending.set(id, new Pending(resolve, reject, owner, undefined, undefined));
  return id;
}

/** Cancels an operation started with {@link submitCallbacks}; its callbacks are not called. */
export function cancelOp(id: number): void {
  if (pending.delete(id)) native.cancel(id);
}

/**
 * Rejects every pending operation of `owner` with `reason()` and cancels what can be cancelled.
 * As in a batch, a callback that throws does not stop the others: the first error is thrown once
 * all are rejected.
 */
export function rejectAll(owner: OpOwner, reason: () => unknown): void {
  let failed: { readonly err: unknown } | undefined;
  for (const [id, p] of pending) {
    if (p.owner !== owner) continue;
    pending.delete(id);
    native.cancel(id);
    try {
      p.settle(false, reason());
    } catch (err) {
      failed ??= { err };
    }
  }
  if (failed !== undefined) throw failed.err;
}

/** Number of operations waiting for a completion in this thread (tests, diagnostics). */
export function pendingCount(): number {
  return pending.size;
}

/** Takes (`+1`) or releases (`-1`) a hold on the event loop for a JS-level handle. */
export function keepAlive(delta: 1 | -1): void {
  native.keepAlive(delta);
}

if (first !== exports) module.exports = first;
