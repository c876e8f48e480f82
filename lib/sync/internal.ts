/**
 * Shared machinery of `kyoto/sync`: intrusive wait lists, abort-signal plumbing and the batch
 * semaphore (Tokio's `batch_semaphore`) that Semaphore, Mutex, RwLock and bounded mpsc are built on.
 * @module
 */
import { setMaxListeners } from 'node:events';
import { abortReason, invalidArgType, outOfRange, validateSignal } from '../errors';
import { AcquireError, TryAcquireError } from './errors';

/**
 * An AbortController of kyoto's own whose signal every pending wait of one object listens to,
 * so with no limit on its listeners, as every AbortSignal has from Node 22 (nodejs/node#55816).
 * On Node 20 the limit is 10: an 11th pending wait would print a MaxListenersExceededWarning,
 * though each listener goes when its wait settles.
 */
export function ownController(): AbortController {
  const ac = new AbortController();
  setMaxListeners(0, ac.signal);
  return ac;
}

/** A node of a {@link WaitList}. */
export interface WaitNode {
  prev: WaitNode | null;
  next: WaitNode | null;
  linked: boolean;
}

// Waiters are allocated on every wait that cannot complete at once. They are flat classes whose
// fields are `declare`d and set in the constructor: plain stores, where ES2022 class fields (define
// semantics) and a base-class chain cost measurably more per wait (P6).


/** An intrusive doubly-linked FIFO: O(1) push, shift, pop and removal of any node. */
export class WaitList<N extends WaitNode> {
  head: N | null = null;
  tail: N | null = null;
  size = 0;

  push(n: N): void {
    n.prev = this.tail;
    n.next = null;
    if (this.tail === null) this.head = n;
    else this.tail.next = n;
    this.tail = n;
    n.linked = true;
    this.size++;
  }

  shift(): N | null {
    const n = this.head;
    if (n !== null) this.remove(n);
    return n;
  }

  pop(): N | null {
    const n = this.tail;
    if (n !== null) this.remove(n);
    return n;
  }

  remove(n: N): void {
    if (!n.linked) return;
    if (n.prev === null) this.head = n.next as N | null;
    else n.prev.next = n.next;
    if (n.next === null) this.tail = n.prev as N | null;
    else n.next.prev = n.prev;
    n.prev = n.next = null;
    n.linked = false;
    this.size--;
  }

  /** Removes and returns every node, in order. */
  drain(): N[] {
    const out: N[] = [];
    for (let n = this.shift(); n !== null; n = this.shift()) out.push(n);
    return out;
  }
}

/** A pending wait: its resolvers and (optionally) the abort listener to remove on settle. */
export class Waiter<T> implements WaitNode {
  declare prev: WaitNode | null;
  declare next: WaitNode | null;
  declare linked: boolean;
  declare signal: AbortSignal | undefined;
  declare onAbort: (() => void) | undefined;
  declare resolve: (v: T) => void;
  declare reject: (e: unknown) => void;

  constructor(resolve: (v: T) => void, reject: (e: unknown) => void) {
    this.prev = null;
    this.next = null;
    this.linked = false;
    this.signal = undefined;
    this.onAbort = undefined;
    this.resolve = resolve;
    this.reject = reject;
  }

  /** Removes the abort listener (call on every settle so long-lived signals never accumulate listeners). */
  disarm(): void {
    if (this.onAbort !== undefined) {
      this.signal!.removeEventListener('abort', this.onAbort);
      this.onAbort = undefined;
      this.signal = undefined;
    }
  }

  arm(signal: AbortSignal, onAbort: () => void): void {
    this.signal = signal;
    this.onAbort = onAbort;
    signal.addEventListener('abort', onAbort, { once: true });
  }

  settle(v: T): void {
    this.disarm();
    this.resolve(v);
  }

  fail(e: unknown): void {
    this.disarm();
    this.reject(e);
  }
}

/** Reads `{ signal }` from an options bag (validated). */
export function signalOf(options: unknown): AbortSignal | undefined {
  if (options === undefined) return undefined;
  if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
  const signal = (options as { signal?: unknown }).signal;
  validateSignal(signal);
  return signal;
}

/** Options accepted by every wait. */
export interface WaitOptions {
  /** Aborting it cancels the wait exactly as dropping the Tokio future would. */
  signal?: AbortSignal;
}

/**
 * The largest permit count a semaphore can hold: `2^53 - 1` (`Number.MAX_SAFE_INTEGER`), so that
 * every count stays an exact JS integer. (Tokio's limit is `usize::MAX >> 3`.)
 */
export const MAX_PERMITS = Number.MAX_SAFE_INTEGER;

/** Validates a permit count `0 <= n <= MAX_PERMITS`. */
export function validatePermits(n: unknown, name = 'n'): asserts n is number {
  if (typeof n !== 'number') throw invalidArgType(name, 'of type number', n);
  if (!Number.isInteger(n) || n < 0 || n > MAX_PERMITS) throw outOfRange(name, `an integer >= 0 && <= ${MAX_PERMITS}`, n);
}

export const RESOLVED: Promise<void> = Promise.resolve();

/**
 * Declares that instances of `cls` are not thenables, on its prototype. Resolving a promise with an
 * object looks up its `then`; without this the lookup walks the whole prototype chain down to
 * `Object.prototype` (a measurable share of a contended acquire, P6). The property is a writable,
 * non-enumerable `undefined`: promise resolution, `await` and property reads behave exactly as
 * before (`'then' in permit` is the one visible difference).
 */
export function notThenable(cls: { prototype: object }): void {
  Object.defineProperty(cls.prototype, 'then', { value: undefined, writable: true, enumerable: false, configurable: true });
}

/** Builds what an acquire resolves with, at grant time (a plain function: no closure per call). */
export type Make<T, O> = (owner: O, key: number, n: number) => T;

/** A `make` that resolves with the grant key itself. */
export const KEY = (_o: unknown, key: number): number => key;

/**
 * The permit core behind Semaphore, Mutex, RwLock and bounded mpsc. A grant is a number `key`: 0
 * in JS mode (the count alone is the state), a native holding id once the object is shared.
 */
export interface SemCore {
  readonly native: boolean;
  /** Acquires `n` permits FIFO; `make(owner, key, n)` builds the resolved value at grant time. */
  acquire<T, O>(n: number, signal: AbortSignal | undefined, make: Make<T, O>, owner: O): Promise<T>;
  /** Takes `n` free permits now or throws {@link TryAcquireError}; returns the grant key. */
  tryAcquire(n: number): number;
  /** Returns `n` permits of grant `key`. */
  release(key: number, n: number): void;
  /** Drops `n` permits of grant `key` without returning them. */
  forget(key: number, n: number): void;
  /** Splits `n` permits of grant `key` into a new grant; returns its key. */
  split(key: number, n: number): number;
  /** Merges grants `a` (`na` permits) and `b` (`nb`); returns the key of the merged grant. */
  merge(a: number, na: number, b: number, nb: number): number;
  available(): number;
  addPermits(n: number): void;
  forgetPermits(n: number): number;
  close(): void;
  isClosed(): boolean;
}

const NOOP = (): void => {};

/**
 * A pending acquire: one flat object (list links, resolvers, request) — no class hierarchy, and
 * fields are plain constructor stores, which keeps the waiting path at one small allocation.
 */
class SemWaiter implements WaitNode {
  declare prev: WaitNode | null;
  declare next: WaitNode | null;
  declare linked: boolean;
  declare assigned: number;
  declare signal: AbortSignal | undefined;
  declare onAbort: (() => void) | undefined;
  declare readonly need: number;
  declare readonly make: Make<any, any>;
  declare readonly owner: unknown;
  declare resolve: (v: any) => void;
  declare reject: (e: unknown) => void;

  constructor(need: number, make: Make<any, any>, owner: unknown) {
    this.prev = null;
    this.next = null;
    this.linked = false;
    this.assigned = 0;
    this.signal = undefined;
    this.onAbort = undefined;
    this.need = need;
    this.make = make;
    this.owner = owner;
    this.resolve = NOOP;
    this.reject = NOOP;
  }

  /** Removes the abort listener (see {@link Waiter.disarm}). */
  disarm(): void {
    if (this.onAbort !== undefined) {
      this.signal!.removeEventListener('abort', this.onAbort);
      this.onAbort = undefined;
      this.signal = undefined;
    }
  }

  fail(e: unknown): void {
    this.disarm();
    this.reject(e);
  }

  /** Grants: builds the value (a throwing `make` rejects instead of escaping `release`). */
  grant(key: number): void {
    if (this.onAbort !== undefined) this.disarm();
    let v: unknown;
    try {
      v = this.make(this.owner, key, this.need);
    } catch (e) {
      this.reject(e);
      return;
    }
    this.resolve(v);
  }
}

/** The same-thread batch semaphore: FIFO with partial assignment to the head waiter. */
export class JsSem implements SemCore {
  readonly native = false;
  permits: number;
  /**
   * Permits granted and not yet returned or forgotten (Semaphore, Mutex, RwLock; a bounded
   * channel counts its slots itself). When the object is shared they become one holding of this
   * thread, so they are returned if the thread dies.
   */
  held = 0;
  closed = false;
  readonly queue = new WaitList<SemWaiter>();

  constructor(permits: number) {
    this.permits = permits;
  }

  acquire<T, O>(n: number, signal: AbortSignal | undefined, make: Make<T, O>, owner: O): Promise<T> {
    if (this.closed) return Promise.reject(new AcquireError());
    if (n === 0 || (this.queue.size === 0 && this.permits >= n)) {
      this.permits -= n;
      this.held += n;
      return Promise.resolve(make(owner, 0, n));
    }
    if (signal !== undefined && signal.aborted) return Promise.reject(abortReason(signal));
    const w = new SemWaiter(n, make, owner);
    // (TurboFan inlines this executor into the Promise constructor.)
    const p = new Promise<T>((resolve, reject) => {
      w.resolve = resolve;
      w.reject = reject;
    });
    if (this.queue.size === 0) {
      // The new head takes what is free now; the rest is assigned as permits come back.
      w.assigned = this.permits;
      this.permits = 0;
    }
    this.queue.push(w);
    if (signal !== undefined) this.#arm(w, signal);
    return p;
  }

  #arm(w: SemWaiter, signal: AbortSignal): void {
    const onAbort = (): void => {
      w.onAbort = undefined;
      w.signal = undefined;
      if (!w.linked) return;
      this.queue.remove(w);
      const back = w.assigned;
      w.assigned = 0;
      w.reject(abortReason(signal));
      // A dropped Tokio Acquire returns what it was partly assigned.
      this.give(back);
    };
    w.signal = signal;
    w.onAbort = onAbort;
    signal.addEventListener('abort', onAbort, { once: true });
  }

  tryAcquire(n: number): number {
    if (this.closed) throw new TryAcquireError('closed');
    if (this.permits >= n && (n === 0 || this.queue.size === 0)) {
      this.permits -= n;
      this.held += n;
      return 0;
    }
    throw new TryAcquireError('no_permits');
  }

  release(_key: number, n: number): void {
    this.held -= n;
    this.give(n);
  }

  /** Adds `n` permits and serves the waiters with them (not a grant being returned). */
  give(n: number): void {
    if (n <= 0) return;
    this.permits += n;
    for (let w = this.queue.head; w !== null && this.permits > 0; w = this.queue.head) {
      const take = Math.min(this.permits, w.need - w.assigned);
      w.assigned += take;
      this.permits -= take;
      if (w.assigned < w.need) break;
      this.queue.remove(w);
      this.held += w.need;
      w.grant(0);
    }
  }

  forget(_key: number, n: number): void {
    this.held -= n;
  }

  split(): number {
    return 0;
  }

  merge(): number {
    return 0;
  }

  available(): number {
    return this.permits;
  }

  addPermits(n: number): void {
    if (this.permits + n > MAX_PERMITS) throw outOfRange('n', `<= ${MAX_PERMITS - this.permits} (MAX_PERMITS - available)`, n);
    this.give(n);
  }

  forgetPermits(n: number): number {
    const removed = Math.min(n, this.permits);
    this.permits -= removed;
    return removed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.queue.drain()) {
      this.permits += w.assigned;
      w.assigned = 0;
      w.fail(new AcquireError());
    }
  }

  isClosed(): boolean {
    return this.closed;
  }

  /** Free permits plus those partly assigned to waiters (what a native copy starts with). */
  freeAndAssigned(): number {
    let n = this.permits;
    for (let w = this.queue.head; w !== null; w = w.next as SemWaiter | null) n += w.assigned;
    return n;
  }

  /** Hands every waiter over (in order) to `acquire` when the object is shared. */
  moveWaitersTo(acquire: (need: number, signal: AbortSignal | undefined) => Promise<number>): void {
    for (const w of this.queue.drain()) {
      this.permits += w.assigned;
      w.assigned = 0;
      const signal = w.signal;
      w.disarm();
      const { make, owner, need } = w;
      acquire(need, signal).then((key) => make(owner, key, need)).then(w.resolve, w.reject);
    }
  }
}

/** What a receive given to {@link RecvIterator} resolves with once the channel is closed and drained. */
export const ITER_END: unique symbol = Symbol('kyoto.sync.iterEnd');

/** The abort reason {@link RecvIterator.return} cancels its receives with (never seen by users). */
const RETURNED = Object.freeze({ kyotoIteratorReturned: true });

/**
 * A channel receiver's async iterator. Unlike an `async *` generator, whose `return()` waits for
 * the `next()` in flight (and that receive then takes the next message for an iteration nobody
 * continues), `return()` cancels the receives in flight through their signal: the pending
 * `next()` settles `{ done: true }` and a message they had not yet taken stays in the channel.
 */
export class RecvIterator<T> implements AsyncIterableIterator<T> {
  #recv: (signal: AbortSignal) => Promise<T | typeof ITER_END>;
  #ac: AbortController | undefined = undefined;
  #done = false;

  /** @param recv - one cancel-safe receive, aborted through `signal`. */
  constructor(recv: (signal: AbortSignal) => Promise<T | typeof ITER_END>) {
    this.#recv = recv;
  }

  /** The next message, or `{ done: true }` once the channel is closed and drained or `return()` was called. */
  next(): Promise<IteratorResult<T, undefined>> {
    if (this.#done) return Promise.resolve({ done: true, value: undefined });
    const ac = (this.#ac ??= ownController());
    let p: Promise<T | typeof ITER_END>;
    try {
      p = this.#recv(ac.signal);
    } catch (e) {
      this.#done = true;
      return Promise.reject(e);
    }
    return p.then(
      (v): IteratorResult<T, undefined> => {
        if (v !== ITER_END) return { done: false, value: v };
        this.#done = true;
        return { done: true, value: undefined };
      },
      (e: unknown): IteratorResult<T, undefined> => {
        if (e === RETURNED) return { done: true, value: undefined };
        // As with a generator, an error (a lag, a moved receiver) ends the iteration.
        this.#done = true;
        throw e;
      },
    );
  }

  /** Ends the iteration, cancelling the receives in flight (their `next()` settles `{ done: true }`). */
  return(): Promise<IteratorResult<T, undefined>> {
    if (!this.#done) {
      this.#done = true;
      this.#ac?.abort(RETURNED);
    }
    return Promise.resolve({ done: true, value: undefined });
  }

  /** This iterator. */
  [Symbol.asyncIterator](): this {
    return this;
  }
}
