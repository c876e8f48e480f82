/**
 * Watch channels (Tokio's `watch`): one current value, observed by many receivers. The initial
 * value counts as seen; `changed()` resolves after a later send and fails only when the channel is
 * closed and the current value is seen. Intermediate values are coalesced. Same-thread only for now.
 * @module
 */
import { abortReason, invalidArgType } from '../errors';
import { InvalidStateError, RecvError, SendError } from './errors';
import { RESOLVED, WaitList, Waiter, signalOf, type WaitOptions } from './internal';

class Shared<T> {
  version = 0;
  tx = 1;
  rxCount = 0;
  readonly waiters = new WaitList<Waiter<void>>();
  readonly closedWaiters = new WaitList<Waiter<void>>();
  constructor(public value: T) {}

  get closed(): boolean {
    return this.tx === 0;
  }

  notify(): void {
    this.version++;
    for (const w of this.waiters.drain()) w.settle(undefined);
  }
}

function waitOn(list: WaitList<Waiter<void>>, signal: AbortSignal | undefined): Promise<void> {
  if (signal !== undefined && signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise<void>((resolve, reject) => {
    const w = new Waiter<void>(resolve, reject);
    list.push(w);
    if (signal !== undefined) {
      w.arm(signal, () => {
        w.onAbort = undefined;
        w.signal = undefined;
        if (!w.linked) return;
        list.remove(w);
        reject(abortReason(signal));
      });
    }
  });
}

/** The sending half of a watch channel. */
export class WatchSender<T> {
  #s: Shared<T>;
  #closed = false;

  /** @internal */
  constructor(s: Shared<T>) {
    this.#s = s;
  }

  #live(): Shared<T> {
    if (this.#closed) throw new InvalidStateError('this sender was closed');
    return this.#s;
  }

  /** Stores `value` and notifies receivers; throws `SendError` (value not stored) with no receivers. */
  send(value: T): void {
    const s = this.#live();
    if (s.rxCount === 0) throw new SendError('no receivers');
    s.value = value;
    s.notify();
  }

  /**
   * Modifies the value in place with `fn(value)` (its return value, if not `undefined`, replaces
   * it), then notifies — always, even with no receivers. If `fn` throws, its partial changes stay
   * and nobody is notified.
   */
  sendModify(fn: (value: T) => T | void): void {
    if (typeof fn !== 'function') throw invalidArgType('fn', 'of type function', fn);
    const s = this.#live();
    const r = fn(s.value);
    if (r !== undefined) s.value = r as T;
    s.notify();
  }

  /** Like {@link sendModify}, but notifies only when `fn` returns true. Returns what `fn` returned. */
  sendIfModified(fn: (value: T) => boolean): boolean {
    if (typeof fn !== 'function') throw invalidArgType('fn', 'of type function', fn);
    const s = this.#live();
    const modified = fn(s.value) === true;
    if (modified) s.notify();
    return modified;
  }

  /** Stores `value` (always, even with no receivers), notifies, and returns the previous value. */
  sendReplace(value: T): T {
    const s = this.#live();
    const old = s.value;
    s.value = value;
    s.notify();
    return old;
  }

  /** The current value. */
  borrow(): T {
    return this.#s.value;
  }

  /** A new receiver; the current value counts as seen by it. */
  subscribe(): WatchReceiver<T> {
    return WatchReceiver._new(this.#s, this.#s.version);
  }

  /** How many receivers exist. */
  receiverCount(): number {
    return this.#s.rxCount;
  }

  /** Whether there are no receivers. */
  isClosed(): boolean {
    return this.#s.rxCount === 0;
  }

  /** Resolves when there are no receivers. */
  closed(options?: WaitOptions): Promise<void> {
    const signal = signalOf(options);
    if (this.#s.rxCount === 0) return RESOLVED;
    return waitOn(this.#s.closedWaiters, signal);
  }

  /** Another sender of the same channel. */
  clone(): WatchSender<T> {
    this.#live().tx++;
    return new WatchSender<T>(this.#s);
  }

  /** Drops this sender; the last one closes the channel for receivers. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const s = this.#s;
    s.tx--;
    if (s.tx === 0) for (const w of s.waiters.drain()) w.settle(undefined);
  }
}

/** A receiving half of a watch channel. */
export class WatchReceiver<T> {
  #s: Shared<T>;
  #seen: number;
  #closed = false;

  /** @internal */
  constructor(s: Shared<T>, seen: number) {
    this.#s = s;
    this.#seen = seen;
  }

  /** @internal */
  static _new<T>(s: Shared<T>, seen: number): WatchReceiver<T> {
    s.rxCount++;
    return new WatchReceiver<T>(s, seen);
  }

  /** The current value (does not mark it seen). */
  borrow(): T {
    return this.#s.value;
  }

  /** The current value, marking it seen. */
  borrowAndUpdate(): T {
    this.#seen = this.#s.version;
    return this.#s.value;
  }

  /** Whether the current value is unseen; throws `RecvError` whenever the channel is closed. */
  hasChanged(): boolean {
    if (this.#s.closed) throw new RecvError('closed');
    return this.#seen !== this.#s.version;
  }

  /** Marks the current value unseen. */
  markChanged(): void {
    this.#seen = -1;
  }

  /** Marks the current value seen. */
  markUnchanged(): void {
    this.#seen = this.#s.version;
  }

  /**
   * Resolves (marking the value seen) once the value is unseen — at once if it already is, even on
   * a closed channel. Rejects with `RecvError` only when the channel is closed and the value seen.
   */
  async changed(options?: WaitOptions): Promise<void> {
    const signal = signalOf(options);
    const s = this.#s;
    for (;;) {
      if (this.#closed) throw new RecvError('closed');
      if (this.#seen !== s.version) {
        this.#seen = s.version;
        return;
      }
      if (s.closed) throw new RecvError('closed');
      await waitOn(s.waiters, signal);
    }
  }

  /**
   * Resolves with the first value (starting with the current one, even if seen) for which `pred`
   * is true, marking it seen. Rejects with `RecvError` if the channel closes first.
   */
  async waitFor(pred: (value: T) => boolean, options?: WaitOptions): Promise<T> {
    if (typeof pred !== 'function') throw invalidArgType('pred', 'of type function', pred);
    const signal = signalOf(options);
    const s = this.#s;
    for (;;) {
      if (this.#closed) throw new RecvError('closed');
      this.#seen = s.version;
      const v = s.value;
      if (pred(v)) return v;
      if (s.closed) throw new RecvError('closed');
      await waitOn(s.waiters, signal);
    }
  }

  /** Another receiver with the same seen state. */
  clone(): WatchReceiver<T> {
    if (this.#closed) throw new InvalidStateError('this receiver was closed');
    return WatchReceiver._new(this.#s, this.#seen);
  }

  /** Drops this receiver. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const s = this.#s;
    s.rxCount--;
    if (s.rxCount === 0) for (const w of s.closedWaiters.drain()) w.settle(undefined);
  }
}

/** A watch channel holding `init`. */
export function channel<T>(init: T): [WatchSender<T>, WatchReceiver<T>] {
  const s = new Shared<T>(init);
  return [new WatchSender<T>(s), WatchReceiver._new(s, 0)];
}

export { WatchSender as Sender, WatchReceiver as Receiver };
