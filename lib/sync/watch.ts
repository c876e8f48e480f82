/**
 * Watch channels (Tokio's `watch`): one current value, observed by many receivers. The initial
 * value counts as seen; `changed()` resolves after a later send and fails only when the channel is
 * closed and the current value is seen. Intermediate values are coalesced. `share()` on either end
 * moves the channel into native memory and returns a handle carrying a new clone of that end
 * (a receiver clone keeps the sharer's seen version); values are then structured-cloned, and every
 * write holds the channel's write lock, so a `sendModify` is atomic across threads.
 * @module
 */
import { abortReason, illegalConstructor, kConstruct, invalidArgType } from '../errors';
import { InvalidStateError, RecvError, SendError } from './errors';
import { RESOLVED, WaitList, Waiter, ownController, signalOf, type WaitOptions } from './internal';
import { CELL, encode, encodeKept, makeHandle, nwait, registerReviver, sn, track, untrack, type NCell, type SyncHandle } from './native';

/** What a collected shared end gives back: its holding. */
const dropEnd = (n: NCell, key: number): void => n.dropEnd(key);

class Shared<T> {
  version = 0;
  tx = 1;
  rxCount = 0;
  readonly waiters = new WaitList<Waiter<void>>();
  readonly closedWaiters = new WaitList<Waiter<void>>();
  /**
   * Same-thread mode: the ends, held weakly (one nobody references is collected and counted out,
   * see {@link dropJsEnd}).
   */
  readonly txs = new Set<EndRef<T, WatchSender<T>>>();
  readonly rxs = new Set<EndRef<T, WatchReceiver<T>>>();
  /** Shared mode: the native state. */
  n: NCell | undefined = undefined;
  constructor(public value: T) {}

  get closed(): boolean {
    return this.tx === 0;
  }

  notify(): void {
    this.version++;
    for (const w of this.waiters.drain()) w.settle(undefined);
  }

  /** Moves the channel into native memory (once); every local end and wait follows. */
  toNative(): NCell {
    if (this.n !== undefined) return this.n;
    // Ends collected but not yet finalized are counted out first (their finalizers then find
    // nothing to do); deref keeps every other end alive until this job ends.
    for (const e of this.txs) if (e.r.deref() === undefined) dropJsEnd(e);
    for (const e of this.rxs) if (e.r.deref() === undefined) dropJsEnd(e);
    const [p, tag] = encodeKept(this.value); // may throw before anything moves; borrowers keep theirs
    const n = sn().syncWatchCreate(p, tag, this.version, this.tx);
    this.n = n; // before adopting ends: their safety net refers to it
    for (const e of this.txs) e.r.deref()!._adopt(n.adoptEnd(CELL.W_TX, 0));
    for (const e of this.rxs) {
      const rx = e.r.deref()!;
      rx._adopt(n.newEnd(CELL.W_RX, rx._seen())[0]);
    }
    this.value = undefined as T;
    this.txs.clear();
    this.rxs.clear();
    // Local waits were "something happened" signals: wake them to poll the native state.
    for (const w of this.waiters.drain()) w.settle(undefined);
    for (const w of this.closedWaiters.drain()) {
      const signal = w.signal;
      w.disarm();
      nwait<void>(signal, (id) => n.wClosedWait(id)).then(w.resolve, w.reject);
    }
    return n;
  }
}

/** A same-thread end, as its channel holds it. */
interface EndRef<T, E extends object> {
  readonly s: Shared<T>;
  readonly r: WeakRef<E>;
  readonly tx: boolean;
}

/**
 * A same-thread end goes away (closed, or collected): the last sender closes the channel (waiting
 * receivers wake to see it), the last receiver resolves the senders' `closed()`.
 */
function dropJsEnd<T>(e: EndRef<T, object>): void {
  const s = e.s;
  if (s.n !== undefined) return;
  if (e.tx) {
    if (!s.txs.delete(e as EndRef<T, WatchSender<T>>)) return;
    s.tx--;
    if (s.tx === 0) for (const w of s.waiters.drain()) w.settle(undefined);
  } else {
    if (!s.rxs.delete(e as EndRef<T, WatchReceiver<T>>)) return;
    s.rxCount--;
    if (s.rxCount === 0) for (const w of s.closedWaiters.drain()) w.settle(undefined);
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

/** Shared mode: runs `fn` on a copy of the value under the write lock, then stores it back. */
function nativeModify<T>(n: NCell, fn: (v: T) => unknown, always: boolean): unknown {
  const [v, key] = n.wModifyBegin() as [T, number];
  let r: unknown;
  try {
    r = fn(v);
  } catch (e) {
    // Partial changes stay; nobody is notified.
    let enc: [unknown, number] | undefined;
    try {
      enc = encode(v);
    } catch {
      enc = undefined;
    }
    if (enc === undefined) n.wModifyEnd(key, false, undefined, 0, false);
    else n.wModifyEnd(key, true, enc[0], enc[1], false);
    throw e;
  }
  const nv = always && r !== undefined ? r : v;
  let enc: [unknown, number];
  try {
    enc = encode(nv);
  } catch (e) {
    n.wModifyEnd(key, false, undefined, 0, false);
    throw e;
  }
  n.wModifyEnd(key, true, enc[0], enc[1], always || r === true);
  return r;
}

/**
 * The sending half of a watch channel. Obtained from {@link channel}; not constructed directly
 * (`new` throws `ERR_ILLEGAL_CONSTRUCTOR`).
 */
export class WatchSender<T> {
  #s: Shared<T>;
  #closed = false;
  #key = 0;
  #ref: EndRef<T, WatchSender<T>> | undefined = undefined;

  /** @internal */
  constructor(token: typeof kConstruct, s: Shared<T>, key = 0) {
    if (token !== kConstruct) throw illegalConstructor();
    this.#s = s;
    this.#key = key;
    if (s.n === undefined) {
      const e: EndRef<T, WatchSender<T>> = { s, r: new WeakRef(this), tx: true };
      this.#ref = e;
      s.txs.add(e);
      track(this, dropJsEnd, e);
    } else if (key !== 0) track(this, dropEnd, s.n, key);
  }

  /** @internal */
  _adopt(key: number): void {
    this.#key = key;
    track(this, dropEnd, this.#s.n!, key);
  }

  #live(): Shared<T> {
    if (this.#closed) throw new InvalidStateError('this sender was closed');
    return this.#s;
  }

  /** Stores `value` and notifies receivers; throws `SendError` (value not stored) with no receivers. */
  send(value: T): void {
    const s = this.#live();
    const n = s.n;
    if (n !== undefined) {
      if (n.wRxCount() === 0) throw new SendError('no receivers');
      const [p, tag] = encode(value);
      if (n.wSend(p, tag, true) !== 0) throw new SendError('no receivers');
      return;
    }
    if (s.rxCount === 0) throw new SendError('no receivers');
    s.value = value;
    s.notify();
  }

  /**
   * Modifies the value in place with `fn(value)` (its return value, if not `undefined`, replaces
   * it), then notifies — always, even with no receivers. If `fn` throws, its partial changes stay
   * and nobody is notified. In shared mode `fn` gets a copy and runs under the channel's write
   * lock (other threads' writes wait; a write from inside `fn` throws).
   */
  sendModify(fn: (value: T) => T | void): void {
    if (typeof fn !== 'function') throw invalidArgType('fn', 'of type function', fn);
    const s = this.#live();
    if (s.n !== undefined) {
      nativeModify(s.n, fn, true);
      return;
    }
    const r = fn(s.value);
    if (r !== undefined) s.value = r as T;
    s.notify();
  }

  /** Like {@link sendModify}, but notifies only when `fn` returns true. Returns what `fn` returned. */
  sendIfModified(fn: (value: T) => boolean): boolean {
    if (typeof fn !== 'function') throw invalidArgType('fn', 'of type function', fn);
    const s = this.#live();
    if (s.n !== undefined) return nativeModify(s.n, fn, false) === true;
    const modified = fn(s.value) === true;
    if (modified) s.notify();
    return modified;
  }

  /** Stores `value` (always, even with no receivers), notifies, and returns the previous value. */
  sendReplace(value: T): T {
    const s = this.#live();
    if (s.n !== undefined) {
      const [p, tag] = encode(value);
      return s.n.wReplace(p, tag) as T;
    }
    const old = s.value;
    s.value = value;
    s.notify();
    return old;
  }

  /** The current value (in shared mode, a copy). */
  borrow(): T {
    const s = this.#s;
    return s.n !== undefined ? (s.n.wBorrow()[0] as T) : s.value;
  }

  /** A new receiver; the current value counts as seen by it. */
  subscribe(): WatchReceiver<T> {
    const s = this.#s;
    if (s.n !== undefined) {
      const seen = s.n.wVersion();
      return new WatchReceiver<T>(kConstruct, s, seen, s.n.newEnd(CELL.W_RX, seen)[0]);
    }
    return newReceiver(s, s.version);
  }

  /** How many receivers exist. */
  receiverCount(): number {
    const s = this.#s;
    return s.n !== undefined ? s.n.wRxCount() : s.rxCount;
  }

  /** Whether there are no receivers. */
  isClosed(): boolean {
    return this.receiverCount() === 0;
  }

  /** Resolves when there are no receivers. */
  closed(options?: WaitOptions): Promise<void> {
    const signal = signalOf(options);
    const n = this.#s.n;
    if (n !== undefined) {
      if (n.wRxCount() === 0) return RESOLVED;
      return nwait<void>(signal, (id) => n.wClosedWait(id));
    }
    if (this.#s.rxCount === 0) return RESOLVED;
    return waitOn(this.#s.closedWaiters, signal);
  }

  /** Another sender of the same channel. */
  clone(): WatchSender<T> {
    const s = this.#live();
    if (s.n !== undefined) return new WatchSender<T>(kConstruct, s, s.n.newEnd(CELL.W_TX, 0)[0]);
    s.tx++;
    return new WatchSender<T>(kConstruct, s);
  }

  /** Drops this sender; the last one closes the channel for receivers. */
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
    dropJsEnd(this.#ref!);
  }

  /**
   * Moves the channel into shared memory and returns a handle carrying a new sender clone:
   * `fromShared(handle)` in any worker revives it (once). Revive every handle you make.
   */
  share(): SyncHandle {
    const s = this.#live();
    return makeHandle('watch.Sender', s.toNative().shareNew(CELL.W_TX, 0));
  }
}

/**
 * A receiving half of a watch channel. Obtained from {@link channel} and `subscribe()`; not
 * constructed directly (`new` throws `ERR_ILLEGAL_CONSTRUCTOR`).
 */
export class WatchReceiver<T> {
  #s: Shared<T>;
  #seen: number;
  #closed = false;
  #key = 0;
  /**
   * Aborted by {@link close} to end this receiver's pending waits (made on the first wait): the
   * wait lists are the channel's, not this receiver's, so closing cannot find them otherwise.
   */
  #ac: AbortController | undefined = undefined;
  #ref: EndRef<T, WatchReceiver<T>> | undefined = undefined;

  /** @internal */
  constructor(token: typeof kConstruct, s: Shared<T>, seen: number, key = 0) {
    if (token !== kConstruct) throw illegalConstructor();
    this.#s = s;
    this.#seen = seen;
    this.#key = key;
    if (s.n === undefined) {
      // Same-thread mode: one more receiver, counted out when closed or collected.
      const e: EndRef<T, WatchReceiver<T>> = { s, r: new WeakRef(this), tx: false };
      this.#ref = e;
      s.rxCount++;
      s.rxs.add(e);
      track(this, dropJsEnd, e);
    } else if (key !== 0) track(this, dropEnd, s.n, key);
  }

  /** @internal */
  _adopt(key: number): void {
    this.#key = key;
    track(this, dropEnd, this.#s.n!, key);
  }

  /** @internal */
  _seen(): number {
    return this.#seen;
  }

  #version(): number {
    const s = this.#s;
    return s.n !== undefined ? s.n.wVersion() : s.version;
  }

  #isClosed(): boolean {
    const s = this.#s;
    return s.n !== undefined ? s.n.wIsClosed() : s.closed;
  }

  #wait(seen: number, user: AbortSignal | undefined): Promise<void> {
    const own = (this.#ac ??= ownController()).signal;
    if (user === undefined) return this.#waitOn(seen, own);
    // Either signal ends the wait. Not AbortSignal.any: on Node 20 every signal it makes stays
    // reachable from its sources until they abort (over 1 KiB per wait on a long-lived signal).
    if (user.aborted) return Promise.reject(abortReason(user));
    const ac = new AbortController();
    const onUser = (): void => ac.abort(abortReason(user));
    const onOwn = (): void => ac.abort(own.reason);
    user.addEventListener('abort', onUser, { once: true });
    own.addEventListener('abort', onOwn, { once: true });
    const off = (): void => {
      user.removeEventListener('abort', onUser);
      own.removeEventListener('abort', onOwn);
    };
    return this.#waitOn(seen, ac.signal).then(off, (e: unknown) => {
      off();
      throw e;
    });
  }

  #waitOn(seen: number, signal: AbortSignal): Promise<void> {
    const n = this.#s.n;
    if (n === undefined) return waitOn(this.#s.waiters, signal);
    return nwait<void>(signal, (id) => n.wChangedWait(id, seen));
  }

  /** The current value (does not mark it seen; in shared mode, a copy). */
  borrow(): T {
    const s = this.#s;
    return s.n !== undefined ? (s.n.wBorrow()[0] as T) : s.value;
  }

  /** The current value, marking it seen. */
  borrowAndUpdate(): T {
    const s = this.#s;
    if (s.n !== undefined) {
      const [v, ver] = s.n.wBorrow();
      this.#seen = ver;
      return v as T;
    }
    this.#seen = s.version;
    return s.value;
  }

  /** Whether the current value is unseen; throws `RecvError` whenever the channel is closed. */
  hasChanged(): boolean {
    if (this.#isClosed()) throw new RecvError('closed');
    return this.#seen !== this.#version();
  }

  /** Marks the current value unseen. */
  markChanged(): void {
    this.#seen = -1;
  }

  /** Marks the current value seen. */
  markUnchanged(): void {
    this.#seen = this.#version();
  }

  /**
   * Resolves (marking the value seen) once the value is unseen — at once if it already is, even on
   * a closed channel. Rejects with `RecvError` only when the channel is closed and the value seen.
   */
  async changed(options?: WaitOptions): Promise<void> {
    const signal = signalOf(options);
    for (;;) {
      if (this.#closed) throw new RecvError('closed');
      const ver = this.#version();
      if (this.#seen !== ver) {
        this.#seen = ver;
        return;
      }
      if (this.#isClosed()) throw new RecvError('closed');
      await this.#wait(ver, signal);
      // Woken by a send but aborted before running (a select() branch that lost in the same
      // tick): the change stays unseen, as for a Tokio future dropped before it is polled again.
      if (signal !== undefined && signal.aborted) throw abortReason(signal);
    }
  }

  /**
   * Resolves with the first value (starting with the current one, even if seen) for which `pred`
   * is true, marking it seen. Rejects with `RecvError` if the channel closes first.
   */
  async waitFor(pred: (value: T) => boolean, options?: WaitOptions): Promise<T> {
    if (typeof pred !== 'function') throw invalidArgType('pred', 'of type function', pred);
    const signal = signalOf(options);
    for (;;) {
      if (this.#closed) throw new RecvError('closed');
      const v = this.borrowAndUpdate();
      if (pred(v)) return v;
      if (this.#isClosed()) throw new RecvError('closed');
      await this.#wait(this.#seen, signal);
      if (signal !== undefined && signal.aborted) throw abortReason(signal); // (as in changed())
    }
  }

  /** Another receiver with the same seen state. */
  clone(): WatchReceiver<T> {
    if (this.#closed) throw new InvalidStateError('this receiver was closed');
    const s = this.#s;
    if (s.n !== undefined) return new WatchReceiver<T>(kConstruct, s, this.#seen, s.n.newEnd(CELL.W_RX, this.#seen)[0]);
    return newReceiver(s, this.#seen);
  }

  /** Drops this receiver; its pending `changed()` / `waitFor()` reject with `RecvError`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Tokio's equivalent is dropping the receiver, which drops its futures; a pending wait here
    // must not stay pending forever (nor keep a shared wait, which holds the event loop, alive).
    this.#ac?.abort(new RecvError('closed'));
    const s = this.#s;
    if (s.n !== undefined) {
      const k = this.#key;
      this.#key = 0;
      untrack(this);
      if (k !== 0) s.n.dropEnd(k);
      return;
    }
    untrack(this);
    dropJsEnd(this.#ref!);
  }

  /**
   * Moves the channel into shared memory and returns a handle carrying a new receiver clone with
   * this receiver's seen state: `fromShared(handle)` in any worker revives it (once).
   */
  share(): SyncHandle {
    if (this.#closed) throw new InvalidStateError('this receiver was closed');
    return makeHandle('watch.Receiver', this.#s.toNative().shareNew(CELL.W_RX, this.#seen));
  }
}

/** A watch channel holding `init`. */
export function channel<T>(init: T): [WatchSender<T>, WatchReceiver<T>] {
  const s = new Shared<T>(init);
  return [new WatchSender<T>(kConstruct, s), newReceiver(s, 0)];
}

export { WatchSender as Sender, WatchReceiver as Receiver };

/**
 * A receiver that has seen version `seen`, counted among the channel's receivers (a module
 * function rather than a static of WatchReceiver, so user code cannot reach it).
 */
function newReceiver<T>(s: Shared<T>, seen: number): WatchReceiver<T> {
  return new WatchReceiver<T>(kConstruct, s, seen); // (the constructor counts it in)
}

function revivedShared<T>(n: NCell): Shared<T> {
  const s = new Shared<T>(undefined as T);
  s.n = n;
  return s;
}

registerReviver('watch.Sender', (i, g, h, l) => {
  const n = sn().syncReviveCell(CELL.W_TX, i, g, h, l);
  return n === null ? null : new WatchSender(kConstruct, revivedShared(n), n.key());
});
registerReviver('watch.Receiver', (i, g, h, l) => {
  const n = sn().syncReviveCell(CELL.W_RX, i, g, h, l);
  return n === null ? null : new WatchReceiver(kConstruct, revivedShared(n), n.aux(), n.key());
});
