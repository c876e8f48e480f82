/**
 * Broadcast channels (Tokio's `broadcast`): every receiver sees every value sent after it
 * subscribed, within a ring of `capacity` (rounded up to a power of two) values. A receiver that
 * falls behind gets one `RecvError` with `kind: 'lagged'` and `skipped: n`, then resumes at the
 * oldest retained value. Same-thread only for now.
 * @module
 */
import { abortReason, invalidArgType, outOfRange } from '../errors';
import { InvalidStateError, RecvError, SendError, TryRecvError } from './errors';
import { RESOLVED, WaitList, Waiter, signalOf, type WaitOptions } from './internal';

const MAX_CAPACITY = 2 ** 30;

class Shared<T> {
  readonly buf: (T | undefined)[];
  readonly mask: number;
  tail = 0;
  tx = 1;
  rxCount = 0;
  readonly waiters = new WaitList<RxWaiter<T>>();
  readonly closedWaiters = new WaitList<Waiter<void>>();
  readonly rxs = new Set<BroadcastReceiver<T>>();

  constructor(readonly cap: number) {
    this.buf = new Array<T | undefined>(cap).fill(undefined);
    this.mask = cap - 1;
  }

  get closed(): boolean {
    return this.tx === 0;
  }
}

class RxWaiter<T> extends Waiter<void> {
  constructor(
    readonly rx: BroadcastReceiver<T>,
    resolve: () => void,
    reject: (e: unknown) => void,
  ) {
    super(resolve, reject);
  }
}

const RESULT_EMPTY = 0;
const RESULT_CLOSED = 1;

/** The sending half of a broadcast channel. */
export class BroadcastSender<T> {
  #s: Shared<T>;
  #closed = false;

  /** @internal */
  constructor(s: Shared<T>) {
    this.#s = s;
  }

  /**
   * Sends `value` to every current receiver; returns how many there are. Throws `SendError` when
   * there are none (the value is not stored). A full ring overwrites its oldest value.
   */
  send(value: T): number {
    if (this.#closed) throw new InvalidStateError('this sender was closed');
    const s = this.#s;
    if (s.rxCount === 0) throw new SendError('no receivers');
    s.buf[s.tail & s.mask] = value;
    s.tail++;
    for (const w of s.waiters.drain()) w.settle(undefined);
    return s.rxCount;
  }

  /** A new receiver that sees values sent from now on. */
  subscribe(): BroadcastReceiver<T> {
    return BroadcastReceiver._new(this.#s, this.#s.tail);
  }

  /** How many receivers exist. */
  receiverCount(): number {
    return this.#s.rxCount;
  }

  /** Values not yet seen by every receiver (at most the capacity). */
  get len(): number {
    const s = this.#s;
    let min = s.tail;
    for (const r of s.rxs) min = Math.min(min, r._next());
    return Math.min(s.cap, s.tail - min);
  }

  /** Whether {@link len} is 0. */
  isEmpty(): boolean {
    return this.len === 0;
  }

  /** Another sender of the same channel. */
  clone(): BroadcastSender<T> {
    if (this.#closed) throw new InvalidStateError('this sender was closed');
    this.#s.tx++;
    return new BroadcastSender<T>(this.#s);
  }

  /** Resolves when there are no receivers (a later `subscribe` re-arms it). */
  closed(options?: WaitOptions): Promise<void> {
    const signal = signalOf(options);
    const s = this.#s;
    if (s.rxCount === 0) return RESOLVED;
    if (signal !== undefined && signal.aborted) return Promise.reject(abortReason(signal));
    return new Promise<void>((resolve, reject) => {
      const w = new Waiter<void>(resolve, reject);
      s.closedWaiters.push(w);
      if (signal !== undefined) {
        w.arm(signal, () => {
          w.onAbort = undefined;
          w.signal = undefined;
          if (!w.linked) return;
          s.closedWaiters.remove(w);
          reject(abortReason(signal));
        });
      }
    });
  }

  /**
   * Drops this sender; when the last one goes, receivers drain what is retained and then see the
   * channel closed. Closing never overwrites a value.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const s = this.#s;
    s.tx--;
    if (s.tx === 0) for (const w of s.waiters.drain()) w.settle(undefined);
  }
}

/** A receiving half of a broadcast channel. */
export class BroadcastReceiver<T> implements AsyncIterable<T> {
  #s: Shared<T>;
  #next: number;
  #closed = false;

  /** @internal */
  constructor(s: Shared<T>, next: number) {
    this.#s = s;
    this.#next = next;
  }

  /** @internal */
  static _new<T>(s: Shared<T>, next: number): BroadcastReceiver<T> {
    const r = new BroadcastReceiver<T>(s, next);
    s.rxCount++;
    s.rxs.add(r);
    return r;
  }

  /** @internal */
  _next(): number {
    return this.#next;
  }

  /** Returns a value, RESULT_EMPTY or RESULT_CLOSED; throws lagged. */
  #poll(lagged: (n: number) => Error): { v: T } | number {
    if (this.#closed) return RESULT_CLOSED;
    const s = this.#s;
    if (this.#next < s.tail) {
      const oldest = Math.max(0, s.tail - s.cap);
      if (this.#next < oldest) {
        const skipped = oldest - this.#next;
        this.#next = oldest;
        throw lagged(skipped);
      }
      const v = s.buf[this.#next & s.mask] as T;
      this.#next++;
      return { v };
    }
    return s.closed ? RESULT_CLOSED : RESULT_EMPTY;
  }

  /**
   * The next value; `undefined` once every sender is closed and everything retained was received.
   * Rejects once with `RecvError` (`kind: 'lagged'`, `skipped`) after falling behind. Cancel-safe.
   */
  async recv(options?: WaitOptions): Promise<T | undefined> {
    const signal = signalOf(options);
    for (;;) {
      const r = this.#poll((n) => new RecvError('lagged', n));
      if (typeof r === 'object') return r.v;
      if (r === RESULT_CLOSED) return undefined;
      await this.#wait(signal);
    }
  }

  #wait(signal: AbortSignal | undefined): Promise<void> {
    if (signal !== undefined && signal.aborted) return Promise.reject(abortReason(signal));
    const s = this.#s;
    return new Promise<void>((resolve, reject) => {
      const w = new RxWaiter<T>(this, resolve, reject);
      s.waiters.push(w);
      if (signal !== undefined) {
        w.arm(signal, () => {
          w.onAbort = undefined;
          w.signal = undefined;
          if (!w.linked) return;
          s.waiters.remove(w);
          reject(abortReason(signal));
        });
      }
    });
  }

  /** The next value now, or `TryRecvError` (`'empty'`, `'closed'`, `'lagged'` with `skipped`). */
  tryRecv(): T {
    const r = this.#poll((n) => new TryRecvError('lagged', n));
    if (typeof r === 'object') return r.v;
    throw new TryRecvError(r === RESULT_CLOSED ? 'closed' : 'empty');
  }

  /** A new receiver of the same channel starting at the tail (only values sent from now on). */
  resubscribe(): BroadcastReceiver<T> {
    return BroadcastReceiver._new(this.#s, this.#s.tail);
  }

  /** Values this receiver has not seen (counted from its cursor, so it can exceed the capacity before a lag is reported). */
  get len(): number {
    return this.#s.tail - this.#next;
  }

  /** Whether {@link len} is 0. */
  isEmpty(): boolean {
    return this.len === 0;
  }

  /** Whether every sender is closed. */
  isClosed(): boolean {
    return this.#s.closed;
  }

  /** Drops this receiver (its unread values count as read). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const s = this.#s;
    s.rxs.delete(this);
    s.rxCount--;
    for (let w = s.waiters.head; w !== null; ) {
      const nx = w.next as RxWaiter<T> | null;
      if (w.rx === this) {
        s.waiters.remove(w);
        w.settle(undefined);
      }
      w = nx;
    }
    if (s.rxCount === 0) for (const w of s.closedWaiters.drain()) w.settle(undefined);
  }

  /** Yields values until the channel closes (a lag throws out of the loop). */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for (;;) {
      const r = this.#poll((n) => new RecvError('lagged', n));
      if (typeof r === 'object') {
        yield r.v;
        continue;
      }
      if (r === RESULT_CLOSED) return;
      await this.#wait(undefined);
    }
  }
}

/** A broadcast channel holding `capacity` values (rounded up to a power of two; `>= 1`). */
export function channel<T>(capacity: number): [BroadcastSender<T>, BroadcastReceiver<T>] {
  if (typeof capacity !== 'number') throw invalidArgType('capacity', 'of type number', capacity);
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_CAPACITY) {
    throw outOfRange('capacity', `an integer >= 1 && <= ${MAX_CAPACITY}`, capacity);
  }
  let cap = 1;
  while (cap < capacity) cap *= 2;
  const s = new Shared<T>(cap);
  return [new BroadcastSender<T>(s), BroadcastReceiver._new(s, 0)];
}

export { BroadcastSender as Sender, BroadcastReceiver as Receiver };
