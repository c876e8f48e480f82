/**
 * Broadcast channels (Tokio's `broadcast`): every receiver sees every value sent after it
 * subscribed, within a ring of `capacity` (rounded up to a power of two) values. A receiver that
 * falls behind gets one `RecvError` with `kind: 'lagged'` and `skipped: n`, then resumes at the
 * oldest retained value. `share()` moves the channel into native memory: a sender handle carries a
 * new sender clone, a receiver handle moves that receiver (its position) to another worker; every
 * receiver then gets its own structured clone of each value.
 * @module
 */
import { abortReason, illegalConstructor, kConstruct, invalidArgType, outOfRange } from '../errors';
import { InvalidStateError, RecvError, SendError, TryRecvError } from './errors';
import { ITER_END, RESOLVED, RecvIterator, WaitList, Waiter, signalOf, type WaitOptions } from './internal';
import { CELL, CLOSED, EMPTY, encode, encodeKept, makeHandle, nwait, registerReviver, sn, track, untrack, type NCell, type SyncHandle } from './native';

const MAX_CAPACITY = 2 ** 30;

/** What a collected shared end gives back: its holding. */
const dropEnd = (n: NCell, key: number): void => n.dropEnd(key);

class Shared<T> {
  buf: (T | undefined)[];
  /**
   * Per slot, the receivers that have still to read its value (Tokio's `rem`): set to the receiver
   * count by a send, decremented by each read and by each receiver closing before reading it. At 0
   * the slot lets go of the value, so the ring does not keep alive what every receiver has read.
   * (A slot overwritten while some receiver has not read it is that receiver's lag.)
   */
  rem: number[];
  readonly mask: number;
  tail = 0;
  tx = 1;
  rxCount = 0;
  readonly waiters = new WaitList<RxWaiter<T>>();
  readonly closedWaiters = new WaitList<Waiter<void>>();
  /**
   * Same-thread mode: the receivers' positions and the senders, held weakly (a receiver or sender
   * nobody references is collected and counted out, see {@link dropJsRx} / {@link dropJsTx}).
   */
  readonly rxs = new Set<RxPos<T>>();
  readonly txs = new Set<TxRef<T>>();
  /** Shared mode: the native state. */
  n: NCell | undefined = undefined;

  constructor(readonly cap: number) {
    // The ring grows as values arrive (each send writes at `tail & mask`, which is `buf.length`
    // until the ring is full, so the array stays packed): a channel made with a huge capacity
    // costs nothing until it holds that much.
    this.buf = [];
    this.rem = [];
    this.mask = cap - 1;
  }

  /** One receiver is done with position `pos` (read it, or closed before reading it). */
  release(pos: number): void {
    const i = pos & this.mask;
    if (--this.rem[i] === 0) this.buf[i] = undefined;
  }

  get closed(): boolean {
    return this.tx === 0;
  }

  /** Moves the channel into native memory (once); every local end and wait follows. */
  toNative(): NCell {
    if (this.n !== undefined) return this.n;
    // Ends collected but not yet finalized are counted out first (their finalizers then find
    // nothing to do); deref keeps every other end alive until this job ends.
    for (const p of this.rxs) if (p.r!.deref() === undefined) dropJsRx(p);
    for (const t of this.txs) if (t.r.deref() === undefined) dropJsTx(t);
    // Serialize the retained values first: a non-cloneable one throws before anything moves.
    // Receivers that read a value already hold it (the sender may too): its bytes are copied,
    // not moved out from under them.
    const retained: [number, [unknown, number]][] = [];
    for (let pos = Math.max(0, this.tail - this.cap); pos < this.tail; pos++) retained.push([pos, encodeKept(this.buf[pos & this.mask])]);
    const n = sn().syncBcastCreate(this.cap, this.tail, this.tx);
    this.n = n; // before adopting ends: their safety net refers to it
    for (const [pos, [p, tag]] of retained) n.bcPut(pos, p, tag);
    for (const t of this.txs) t.r.deref()!._adopt(n.adoptEnd(CELL.BC_TX, 0));
    for (const p of this.rxs) {
      const [key, id] = n.newEnd(CELL.BC_RX, p.next);
      p.r!.deref()!._adopt(key, id);
    }
    this.buf = [];
    this.rem = [];
    this.txs.clear();
    this.rxs.clear();
    // Local waits were "something happened" signals: wake them to poll the native state.
    for (const w of this.waiters.drain()) w.settle(undefined);
    for (const w of this.closedWaiters.drain()) {
      const signal = w.signal;
      w.disarm();
      nwait<void>(signal, (id) => n.bcClosedWait(id)).then(w.resolve, w.reject);
    }
    return n;
  }
}

/**
 * A receiver's position, apart from the receiver so that a collected same-thread receiver can still
 * be counted out (what it had not read released). `r`: the receiver, in same-thread mode.
 */
interface RxPos<T> {
  readonly s: Shared<T>;
  next: number;
  r: WeakRef<BroadcastReceiver<T>> | null;
}

/** A same-thread sender, as its channel holds it. */
interface TxRef<T> {
  readonly s: Shared<T>;
  readonly r: WeakRef<BroadcastSender<T>>;
}

/** A same-thread receiver goes away (closed, or collected): what it had not read, it never will. */
function dropJsRx<T>(p: RxPos<T>): void {
  const s = p.s;
  if (s.n !== undefined || !s.rxs.delete(p)) return;
  s.rxCount--;
  for (let pos = Math.max(p.next, s.tail - s.cap); pos < s.tail; pos++) s.release(pos);
  if (s.rxCount === 0) for (const w of s.closedWaiters.drain()) w.settle(undefined);
}

/** A same-thread sender goes away (closed, or collected); the last one closes the channel. */
function dropJsTx<T>(t: TxRef<T>): void {
  const s = t.s;
  if (s.n !== undefined || !s.txs.delete(t)) return;
  s.tx--;
  if (s.tx === 0) for (const w of s.waiters.drain()) w.settle(undefined);
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

/**
 * After a wake-up, before taking anything: a wait woken by a send but aborted before it ran (a
 * select() branch that lost in the same tick, an iterator's return()) takes nothing, as a Tokio
 * future dropped before it is polled again.
 */
function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal !== undefined && signal.aborted) throw abortReason(signal);
}

const RESULT_EMPTY = 0;
const RESULT_CLOSED = 1;

/**
 * The sending half of a broadcast channel. Obtained from {@link channel}; not constructed directly
 * (`new` throws `ERR_ILLEGAL_CONSTRUCTOR`).
 */
export class BroadcastSender<T> {
  #s: Shared<T>;
  #closed = false;
  #key = 0;
  #ref: TxRef<T> | undefined = undefined;

  /** @internal */
  constructor(token: typeof kConstruct, s: Shared<T>, key = 0) {
    if (token !== kConstruct) throw illegalConstructor();
    this.#s = s;
    this.#key = key;
    if (s.n === undefined) {
      const t: TxRef<T> = { s, r: new WeakRef(this) };
      this.#ref = t;
      s.txs.add(t);
      track(this, dropJsTx, t);
    } else if (key !== 0) track(this, dropEnd, s.n, key);
  }

  /** @internal */
  _adopt(key: number): void {
    this.#key = key;
    track(this, dropEnd, this.#s.n!, key);
  }

  /**
   * Sends `value` to every current receiver; returns how many there are. Throws `SendError` when
   * there are none (the value is not stored). A full ring overwrites its oldest value.
   */
  send(value: T): number {
    if (this.#closed) throw new InvalidStateError('this sender was closed');
    const s = this.#s;
    const n = s.n;
    if (n !== undefined) {
      if (n.bcRxCount() === 0) throw new SendError('no receivers');
      const [p, tag] = encode(value);
      const k = n.bcSend(p, tag);
      if (k < 0) throw new SendError('no receivers');
      return k;
    }
    if (s.rxCount === 0) throw new SendError('no receivers');
    const i = s.tail & s.mask;
    s.buf[i] = value;
    s.rem[i] = s.rxCount;
    s.tail++;
    for (const w of s.waiters.drain()) w.settle(undefined);
    return s.rxCount;
  }

  /** A new receiver that sees values sent from now on. */
  subscribe(): BroadcastReceiver<T> {
    return newReceiver(this.#s, this.#s.tail);
  }

  /** How many receivers exist. */
  receiverCount(): number {
    const s = this.#s;
    return s.n !== undefined ? s.n.bcRxCount() : s.rxCount;
  }

  /** Values not yet seen by every receiver (at most the capacity). */
  get len(): number {
    const s = this.#s;
    if (s.n !== undefined) return s.n.bcLen();
    let min = s.tail;
    for (const p of s.rxs) min = Math.min(min, p.next);
    return Math.min(s.cap, s.tail - min);
  }

  /** Whether {@link len} is 0. */
  isEmpty(): boolean {
    return this.len === 0;
  }

  /** Another sender of the same channel. */
  clone(): BroadcastSender<T> {
    if (this.#closed) throw new InvalidStateError('this sender was closed');
    const s = this.#s;
    if (s.n !== undefined) return new BroadcastSender<T>(kConstruct, s, s.n.newEnd(CELL.BC_TX, 0)[0]);
    s.tx++;
    return new BroadcastSender<T>(kConstruct, s);
  }

  /** Resolves when there are no receivers (a later `subscribe` re-arms it). */
  closed(options?: WaitOptions): Promise<void> {
    const signal = signalOf(options);
    const s = this.#s;
    const n = s.n;
    if (n !== undefined) {
      if (n.bcRxCount() === 0) return RESOLVED;
      return nwait<void>(signal, (id) => n.bcClosedWait(id));
    }
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
    if (s.n !== undefined) {
      const k = this.#key;
      this.#key = 0;
      untrack(this);
      if (k !== 0) s.n.dropEnd(k);
      return;
    }
    untrack(this);
    dropJsTx(this.#ref!);
  }

  /**
   * Moves the channel into shared memory and returns a handle carrying one new sender clone:
   * `fromShared(handle)` in any worker revives it (once). The clone counts as a live sender, so
   * revive every handle you make, or drop the clone with `dropShared(handle)` if its message may
   * be lost.
   */
  share(): SyncHandle {
    if (this.#closed) throw new InvalidStateError('this sender was closed');
    return makeHandle('broadcast.Sender', this.#s.toNative().shareNew(CELL.BC_TX, 0));
  }
}

const noop = (): void => {};

/**
 * A receiving half of a broadcast channel. Obtained from {@link channel} and `subscribe()`; not
 * constructed directly (`new` throws `ERR_ILLEGAL_CONSTRUCTOR`).
 */
export class BroadcastReceiver<T> implements AsyncIterable<T> {
  #s: Shared<T>;
  #p: RxPos<T>;
  #closed = false;
  #moved = false;
  /** Shared mode: this receiver's holding key and native id. */
  #key = 0;
  #id = 0;

  /** @internal */
  constructor(token: typeof kConstruct, s: Shared<T>, next: number) {
    if (token !== kConstruct) throw illegalConstructor();
    this.#s = s;
    const p: RxPos<T> = { s, next, r: null };
    this.#p = p;
    if (s.n === undefined) {
      // Same-thread mode: one more receiver, counted out when closed or collected.
      p.r = new WeakRef(this);
      s.rxCount++;
      s.rxs.add(p);
      track(this, dropJsRx, p);
    }
  }

  /** @internal */
  _adopt(key: number, id: number): void {
    this.#key = key;
    this.#id = id;
    track(this, dropEnd, this.#s.n!, key);
  }

  /** @internal */
  _next(): number {
    return this.#p.next;
  }

  /** Returns a value, RESULT_EMPTY or RESULT_CLOSED; throws lagged. */
  #poll(lagged: (n: number) => Error): { v: T } | number {
    if (this.#moved) throw new InvalidStateError('this receiver was moved to another thread by share()');
    if (this.#closed) return RESULT_CLOSED;
    const s = this.#s;
    const n = s.n;
    if (n !== undefined) {
      const r = n.bcTryRecv(this.#id);
      if (r === EMPTY) {
        const skipped = sn().syncBcLagged();
        if (skipped > 0) throw lagged(skipped);
        return RESULT_EMPTY;
      }
      if (r === CLOSED) return RESULT_CLOSED;
      return { v: r as T };
    }
    const p = this.#p;
    if (p.next < s.tail) {
      const oldest = Math.max(0, s.tail - s.cap);
      if (p.next < oldest) {
        const skipped = oldest - p.next;
        p.next = oldest;
        throw lagged(skipped);
      }
      const v = s.buf[p.next & s.mask] as T;
      s.release(p.next);
      p.next++;
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
      throwIfAborted(signal);
    }
  }

  #wait(signal: AbortSignal | undefined): Promise<void> {
    if (signal !== undefined && signal.aborted) return Promise.reject(abortReason(signal));
    const s = this.#s;
    const n = s.n;
    if (n !== undefined) {
      const id = this.#id;
      // Settles one microtask after the wake-up, so recv() checks its signal where a shared mpsc
      // recv() does: a select() branch that the same batch settled after this wake-up has aborted
      // it by then (at the first, it had only if that branch came first).
      return nwait<void>(signal, (op) => n.bcRecvWait(op, id)).then(noop);
    }
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
    return newReceiver(this.#s, this.#s.tail);
  }

  /** Values this receiver has not seen (counted from its cursor, so it can exceed the capacity before a lag is reported). */
  get len(): number {
    if (this.#closed || this.#moved) return 0; // it will receive nothing more
    const s = this.#s;
    if (s.n !== undefined) return s.n.bcRxLen(this.#id);
    return s.tail - this.#p.next;
  }

  /** Whether {@link len} is 0. */
  isEmpty(): boolean {
    return this.len === 0;
  }

  /** Whether every sender is closed. */
  isClosed(): boolean {
    const s = this.#s;
    return s.n !== undefined ? s.n.bcIsClosed() : s.closed;
  }

  /** Drops this receiver (its unread values count as read). */
  close(): void {
    if (this.#closed || this.#moved) return;
    this.#closed = true;
    const s = this.#s;
    if (s.n !== undefined) {
      const k = this.#key;
      this.#key = 0;
      untrack(this);
      if (k !== 0) s.n.dropEnd(k);
      return;
    }
    untrack(this);
    for (let w = s.waiters.head; w !== null; ) {
      const nx = w.next as RxWaiter<T> | null;
      if (w.rx === this) {
        s.waiters.remove(w);
        w.settle(undefined);
      }
      w = nx;
    }
    dropJsRx(this.#p);
  }

  /**
   * Moves the channel into shared memory and this receiver (with its position) out of this
   * object, which is unusable afterwards: `fromShared(handle)` revives it once, in any worker.
   */
  share(): SyncHandle {
    if (this.#moved) throw new InvalidStateError('this receiver was moved to another thread by share()');
    if (this.#closed) throw new InvalidStateError('this receiver was closed');
    const n = this.#s.toNative();
    const parts = n.shareEnd(this.#key, CELL.BC_RX);
    this.#key = 0;
    this.#moved = true;
    untrack(this);
    return makeHandle('broadcast.Receiver', parts);
  }

  /**
   * Yields values until the channel closes (a lag throws out of the loop). The iterator's
   * `return()` (a `break` out of `for await`) cancels a wait in flight.
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return new RecvIterator<T>(async (signal) => {
      for (;;) {
        const r = this.#poll((n) => new RecvError('lagged', n));
        if (typeof r === 'object') return r.v;
        if (r === RESULT_CLOSED) return ITER_END;
        await this.#wait(signal);
        throwIfAborted(signal);
      }
    });
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
  return [new BroadcastSender<T>(kConstruct, s), newReceiver(s, 0)];
}

export { BroadcastSender as Sender, BroadcastReceiver as Receiver };

// Module functions rather than statics of BroadcastReceiver, so user code cannot reach them.

/** A receiver starting at `next`, counted among the channel's receivers. */
function newReceiver<T>(s: Shared<T>, next: number): BroadcastReceiver<T> {
  const r = new BroadcastReceiver<T>(kConstruct, s, next);
  if (s.n !== undefined) {
    const [key, id] = s.n.newEnd(CELL.BC_RX, -1);
    r._adopt(key, id);
  }
  return r; // (same-thread mode: the constructor counted it in)
}

/** A receiver revived by `fromShared`, owning the native end `key`/`id`. */
function revivedReceiver<T>(s: Shared<T>, key: number, id: number): BroadcastReceiver<T> {
  const r = new BroadcastReceiver<T>(kConstruct, s, 0);
  r._adopt(key, id);
  return r;
}

function revivedShared<T>(n: NCell): Shared<T> {
  const s = new Shared<T>(n.bcCap());
  s.n = n;
  return s;
}

registerReviver('broadcast.Sender', (i, g, h, l) => {
  const n = sn().syncReviveCell(CELL.BC_TX, i, g, h, l);
  return n === null ? null : new BroadcastSender(kConstruct, revivedShared(n), n.key());
});
registerReviver('broadcast.Receiver', (i, g, h, l) => {
  const n = sn().syncReviveCell(CELL.BC_RX, i, g, h, l);
  return n === null ? null : revivedReceiver(revivedShared(n), n.key(), n.aux());
});
