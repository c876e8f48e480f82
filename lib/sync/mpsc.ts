/**
 * Multi-producer, single-consumer channels (Tokio's `mpsc`), bounded and unbounded.
 *
 * Capacity is counted in permits: `send`/`reserve` takes one and it returns only when the
 * receiver takes the message, going to the oldest waiting sender (a racing `trySend` fails
 * `'full'`). After `close()` outstanding permits can still send and `recv()` yields `undefined`
 * only once nothing is buffered, no permit is outstanding and no send that succeeded is still on
 * its way (shared mode: a send racing the close; "Closing" in `chan.rs`).
 *
 * Order, as in Tokio: one sender's messages arrive in the order sent, and a send that completes
 * before another starts (on any thread, through any synchronization) arrives first. Shared mode
 * keeps it with one send counter per channel whose numbers the receiver merges by (`chan.rs`).
 * @module
 */
import { releasedIfUnclaimed } from '../runtime/unclaimed';
import { abortReason, illegalConstructor, kConstruct, invalidArgType, outOfRange, validateInteger } from '../errors';
import { InvalidStateError, SendError, TryAcquireError, TryRecvError, TrySendError } from './errors';
import { ITER_END, JsSem, MAX_PERMITS, RESOLVED, RecvIterator, type Make, WaitList, Waiter, notThenable, signalOf, validatePermits, type WaitOptions } from './internal';
import {
  BATCH,
  BATCH_MAX,
  chanKick,
  makeHandle,
  mapSendError,
  nwait,
  payload,
  registerReviver,
  sn,
  tagOf,
  track,
  untrack,
  type NChan,
  type SyncHandle,
} from './native';

const END: unique symbol = Symbol('kyoto.sync.end');
type End = typeof END;
const RESOLVED_UNDEFINED: Promise<undefined> = Promise.resolve(undefined);
const RESOLVED_EMPTY_ARRAY = (): Promise<never[]> => Promise.resolve([]);

/** Slots of a sender ring (must match `RING_N` and the layout in `crates/kyoto-node/src/sync/ring.rs`). */
const RING_N = 1024;
const R_HEAD = 0;
const R_TAIL = 1;
const R_RXW = 3;

/**
 * JS view of a sender's lock-free ring in native memory: simple values (numbers, booleans, `null`,
 * `undefined`) are published by writing a slot and `Atomics.store`-ing the tail, with no native
 * call. The receiver (any thread) takes them under the channel lock. Each slot also records the
 * send's number from the channel's counter (`seq`), which the receiver merges every sender's
 * entries by, so sends ordered across threads arrive in that order (see `chan.rs`).
 */
class RingView {
  readonly ctrl: Int32Array;
  readonly kinds: Uint8Array;
  readonly nums: Float64Array;
  readonly seqs: Int32Array;
  /**
   * The channel's send counter (one word, shared by every sender of the channel): bit 0 is set
   * once the receiver closed, the rest counts sends. A send adds 2 and gets its number (the old
   * value `>>> 1`) and the closed flag at once.
   */
  readonly seq: Int32Array;
  /** The tail (owned by this thread: the only producer). */
  tail = 0;
  /** The last head seen (refreshed when the ring looks full). */
  head = 0;

  constructor(ab: ArrayBuffer, seq: ArrayBuffer) {
    this.ctrl = new Int32Array(ab, 0, 4);
    this.kinds = new Uint8Array(ab, 16, RING_N);
    this.nums = new Float64Array(ab, 16 + RING_N, RING_N);
    this.seqs = new Int32Array(ab, 16 + 9 * RING_N, RING_N);
    this.seq = new Int32Array(seq, 0, 1);
    this.tail = Atomics.load(this.ctrl, R_TAIL);
    this.head = Atomics.load(this.ctrl, R_HEAD);
  }
}

/** The ring kind of a simple value, or -1 (it goes through native code). */
function ringKind(v: unknown): number {
  if (typeof v === 'number') return 0;
  if (v === undefined) return 1;
  if (v === null) return 2;
  if (v === false) return 3;
  if (v === true) return 4;
  return -1;
}

/** Whether the ring has a free slot (only this thread publishes, so it stays free). */
function ringRoom(r: RingView): boolean {
  const t = r.tail;
  if (((t - r.head) | 0) < RING_N) return true;
  r.head = Atomics.load(r.ctrl, R_HEAD);
  return ((t - r.head) | 0) < RING_N;
}

/** Bit 62 of the capacity semaphore's word: senders are queued (see `sem.rs`). */
const SEM_WAITERS = 1n << 62n;

/**
 * Sends a value of ring kind `kind` through the ring (which has room): on a bounded channel
 * (`c` given) first takes one slot of capacity with a compare-and-swap on the semaphore word —
 * only while a slot is free and no sender is queued (the word then reads `0 < w < SEM_WAITERS`;
 * the closed bit makes it negative) — then takes the send's number from the channel's counter and
 * publishes `v` under it (capacity, number, publish: in that order); wakes a waiting receiver.
 * Returns 0 (sent), 1 (bounded: no slot taken that way, nothing taken) or 2 (unbounded: the
 * receiver closed; the number taken is never published, which the receiver expects).
 *
 * The number is taken before the tail store publishes it, so a send that starts after this one
 * returned gets a larger number (order across threads: `chan.rs`). From the number to the tail
 * store the code is straight-line — no call, no loop — because V8 stops a script (a Worker's
 * `terminate()`, a stack overflow) only at its stack checks, on function entries and loop back
 * edges: a number taken before the receiver closed is always published, and a closed receiver
 * waits for every such number ("Closing" in `chan.rs`). The same holds from the slot's CAS on
 * (the loop repeats only while the slot is not taken), so no Worker dies holding a slot nobody
 * will give back. After the publish, the receiver's wake-up is a direct native call
 * ({@link chanKick}), not a JS function whose entry check could stop the script between a
 * published value and the kick its waiting receiver needs.
 */
function ringSend(r: RingView, n: NChan, kind: number, v: unknown, c: Chan<unknown> | null): number {
  let w = 0n;
  if (c !== null) {
    const sw = c.sw!;
    // Start from the value this thread last left in the word (usually still there: one Atomics
    // call per send); a failed CAS returns the current value to retry with.
    w = c.swSeen;
    if (w <= 0n || w >= SEM_WAITERS) w = Atomics.load(sw, 0);
    for (;;) {
      if (w <= 0n || w >= SEM_WAITERS) return 1;
      const prev = Atomics.compareExchange(sw, 0, w, w - 1n);
      if (prev === w) break;
      w = prev;
    }
  }
  const s = Atomics.add(r.seq, 0, 2);
  // A bounded send's slot is ours even if the receiver closed meanwhile (Tokio's permits outlive
  // a close), so there the closed flag does not matter.
  if ((s & 1) !== 0 && c === null) return 2;
  const t = r.tail;
  const i = t & (RING_N - 1);
  r.kinds[i] = kind;
  if (kind === 0) r.nums[i] = v as number;
  r.seqs[i] = s >>> 1;
  r.tail = (t + 1) | 0;
  Atomics.store(r.ctrl, R_TAIL, r.tail);
  if (c !== null) c.swSeen = w - 1n;
  if (Atomics.load(r.ctrl, R_RXW) !== 0) chanKick(n.kickLid);
  return 0;
}

/**
 * Unbounded shared send: publishes `v` into the ring if it is a simple value and there is room
 * (true), throws `SendError` if the receiver closed, or returns false (the caller then sends
 * through native code, which first moves the ring's entries to the queue and checks closed
 * itself). Taking the send's number also reads the closed flag: one atomic operation for both.
 */
function ringPut(r: RingView, n: NChan, v: unknown): boolean {
  const kind = ringKind(v);
  if (kind < 0) {
    // A closed channel throws before the value is serialized (it may not even be cloneable).
    if ((Atomics.load(r.seq, 0) & 1) !== 0) throw new SendError();
    return false;
  }
  if (!ringRoom(r)) return false;
  if (ringSend(r, n, kind, v, null) !== 0) throw new SendError();
  return true;
}

/**
 * Shared bounded channel, no native call: a simple value goes through this wrapper's ring if a
 * slot can be taken with a CAS (see {@link ringSend}). False (nothing taken) when the value is not
 * simple, the ring is full, or no slot can be taken that way: the caller goes through native
 * code, which answers full / closed / waits exactly as before.
 */
function boundedRingPut(c: Chan<unknown>, n: NChan, v: unknown): boolean {
  const r = c.ring === undefined ? c.senderRing(n) : c.ring;
  const sw = c.sw;
  if (r === null || sw === null || sw === undefined) return false;
  const kind = ringKind(v);
  if (kind < 0 || !ringRoom(r)) return false;
  return ringSend(r, n, kind, v, c) === 0;
}

const KIND_SENDER = 4;
const KIND_RECEIVER = 5;
const KIND_USENDER = 6;
const KIND_URECEIVER = 7;

/** The state shared by every end of one channel (JS mode), or the route to native state. */
class Chan<T> {
  q: (T | undefined)[] = [];
  head = 0;
  tx = 1;
  rxClosed = false;
  readonly rxWaiters = new WaitList<Waiter<T | End>>();
  readonly closedWaiters = new WaitList<Waiter<void>>();
  readonly sem: JsSem | null;
  n: NChan | undefined = undefined;
  /** Shared mode, sending: this wrapper's ring (null: none available; undefined: not made yet). */
  ring: RingView | null | undefined = undefined;
  /** Shared bounded mode, sending: the capacity semaphore's word (made with the ring). */
  sw: BigInt64Array | null | undefined = undefined;
  /** The word's value after this thread's last CAS on it (a guess for the next one). */
  swSeen = 0n;
  /** Shared mode, receiving: messages already taken from native memory, not yet handed out. */
  rbuf: T[] = [];
  rhead = 0;
  /**
   * Shared mode: the holdings of this thread that the objects from before sharing use in place of
   * key 0 — their reserved slots, their sender clones, the receiver (0: none). See `NChan.adopt`.
   */
  slotKey = 0;
  txKey = 0;
  rxKey = 0;
  /**
   * Shared mode: receives of this thread waiting in native code (each pulls into {@link rbuf} when
   * woken, so the receiver must not move while one is pending: see `Receiver.share`).
   */
  rxPending = 0;
  /** The receiver was moved out of this thread's objects by `share()`: nothing may pull here. */
  rxMoved = false;

  constructor(readonly cap: number) {
    this.sem = cap > 0 ? new JsSem(cap) : null;
  }

  get len(): number {
    return this.q.length - this.head;
  }

  /** Messages in {@link rbuf}. */
  get blen(): number {
    return this.rbuf.length - this.rhead;
  }

  /** The next message of {@link rbuf} (non-empty). */
  bshift(): T {
    const v = this.rbuf[this.rhead];
    this.rbuf[this.rhead] = undefined as T;
    if (++this.rhead === this.rbuf.length) {
      this.rbuf.length = 0;
      this.rhead = 0;
    }
    return v;
  }

  /** Up to `limit` messages of {@link rbuf}. */
  btake(limit: number): T[] {
    const k = Math.min(limit, this.blen);
    const out = this.rbuf.slice(this.rhead, this.rhead + k);
    this.rhead += k;
    if (this.rhead === this.rbuf.length) {
      this.rbuf.length = 0;
      this.rhead = 0;
    } else this.rbuf.fill(undefined as T, this.rhead - k, this.rhead);
    return out;
  }

  /**
   * Shared mode: takes up to `limit` messages from native memory into {@link rbuf} in one call.
   * Returns how many, 0 (none yet) or -1 (closed and drained). Only unbounded channels take more
   * than the caller consumes at once (a bounded channel's slot must free only when its message is
   * handed out).
   */
  pull(n: NChan, limit: number): number {
    let k: number;
    try {
      k = n.recvBatch(Math.min(limit, BATCH_MAX));
    } catch (e) {
      BATCH.others.length = 0;
      throw e;
    }
    if (k <= 0) return k;
    const { kinds, nums, others } = BATCH;
    const buf = this.rbuf;
    let j = 0;
    for (let i = 0; i < k; i++) {
      const kind = kinds[i];
      buf.push((kind === 0 ? nums[i] : kind === 5 ? others[j++] : kind === 1 ? undefined : kind === 2 ? null : kind === 4) as T);
    }
    if (j > 0) others.length = 0;
    return k;
  }

  /** The sending wrapper's ring (made on first use; with the semaphore word, when bounded). */
  senderRing(n: NChan): RingView | null {
    if (this.ring === undefined) {
      const ab = n.senderRing();
      const seq = ab === null ? null : n.seqWord();
      this.ring = ab === null || seq === null ? null : new RingView(ab, seq);
      const sw = this.cap === 0 ? null : n.semWord();
      this.sw = sw === null ? null : new BigInt64Array(sw);
    }
    return this.ring;
  }

  closed(): boolean {
    return this.rxClosed || this.tx === 0;
  }

  /** No capacity permit outstanding (always true for unbounded). */
  idle(): boolean {
    return this.sem === null || this.sem.permits >= this.cap;
  }

  returnPermits(k: number): void {
    const s = this.sem;
    if (s === null || k === 0) return;
    if (s.queue.size === 0) s.permits += k;
    else s.give(k);
  }

  take(): T {
    const v = this.q[this.head] as T;
    this.q[this.head] = undefined;
    this.head++;
    if (this.head === this.q.length) {
      this.q.length = 0;
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.q.length) {
      this.q = this.q.slice(this.head);
      this.head = 0;
    }
    this.returnPermits(1);
    return v;
  }

  takeMany(limit: number): T[] {
    const k = Math.min(limit, this.len);
    const out = this.q.slice(this.head, this.head + k) as T[];
    if (this.head + k === this.q.length) {
      this.q.length = 0;
      this.head = 0;
    } else {
      this.q.fill(undefined, this.head, this.head + k);
      this.head += k;
      if (this.head >= 1024 && this.head * 2 >= this.q.length) {
        this.q = this.q.slice(this.head);
        this.head = 0;
      }
    }
    this.returnPermits(k);
    return out;
  }

  /** A message enters (its capacity, if any, already taken). */
  deliver(v: T): void {
    const w = this.rxWaiters.shift();
    if (w !== null) {
      this.returnPermits(1);
      w.settle(v);
      // A closed channel's last permit may just have come back: other receives waiting end now.
      if (this.rxClosed || this.tx === 0) this.checkEnd();
      return;
    }
    this.q.push(v);
  }

  /** Wakes waiting receivers with the end if the channel is closed, drained and idle. */
  checkEnd(): void {
    if (this.rxWaiters.size === 0 || this.len !== 0 || !this.closed() || !this.idle()) return;
    for (const w of this.rxWaiters.drain()) w.settle(END);
  }

  permitSend(key: number, v: T): void {
    const n = this.n;
    if (n !== undefined) {
      const tag = tagOf(v);
      n.permitSend(key === 0 ? this.slotKey : key, payload(v, tag), tag);
    } else this.deliver(v);
  }

  permitRelease(key: number, k: number): void {
    const n = this.n;
    if (n !== undefined) n.permitRelease(key === 0 ? this.slotKey : key, k);
    else {
      this.returnPermits(k);
      if (this.rxClosed || this.tx === 0) this.checkEnd();
    }
  }

  closeRx(): void {
    if (this.n !== undefined) {
      this.n.closeRx();
      return;
    }
    if (this.rxClosed) return;
    this.rxClosed = true;
    this.sem?.close();
    for (const w of this.closedWaiters.drain()) w.settle(undefined);
    this.checkEnd();
  }

  dropSender(key: number): void {
    if (this.n !== undefined) {
      this.n.dropSender(key === 0 ? this.txKey : key);
      return;
    }
    this.tx--;
    if (this.tx === 0) this.checkEnd();
  }

  /** Waits for the next message or the end. */
  next(signal: AbortSignal | undefined): Promise<T | End> {
    if (this.n !== undefined) return nativeNext(this, signal);
    if (this.len > 0) return Promise.resolve(this.take());
    if (this.closed() && this.idle()) return Promise.resolve(END);
    if (signal !== undefined && signal.aborted) return Promise.reject(abortReason(signal));
    return new Promise<T | End>((resolve, reject) => {
      const w = new Waiter<T | End>(resolve, reject);
      this.rxWaiters.push(w);
      if (signal !== undefined) {
        w.arm(signal, () => {
          w.onAbort = undefined;
          w.signal = undefined;
          if (!w.linked) return;
          this.rxWaiters.remove(w);
          reject(abortReason(signal));
        });
      }
    });
  }

  /** Moves the state into native memory (once). */
  toNative(): NChan {
    if (this.n !== undefined) return this.n;
    // Serialize every buffered value first, so a non-cloneable one throws before anything moves.
    const buffered: [unknown, number][] = [];
    for (let i = this.head; i < this.q.length; i++) {
      const tag = tagOf(this.q[i]);
      buffered.push([payload(this.q[i], tag), tag]);
    }
    const sem = this.sem;
    const free = sem === null ? 0 : sem.freeAndAssigned();
    // Slots neither free, partly assigned nor taken by a buffered message are reserved by permits.
    const reserved = sem === null ? 0 : Math.max(0, this.cap - free - this.len);
    const n = sn().syncChanCreate(this.cap, free, this.tx, this.rxClosed);
    // What this thread's objects hold becomes its holdings (given back if it dies). The receiver
    // is still here: it moves only through its own share(), which comes through here first.
    [this.slotKey, this.txKey, this.rxKey] = n.adopt(reserved, this.tx, true);
    for (const [p, tag] of buffered) n.pushInit(p, tag);
    this.q = [];
    this.head = 0;
    this.n = n;
    if (sem !== null) {
      sem.moveWaitersTo((need, signal) => nwait<number>(signal, (id) => n.reserveWait(id, need)));
      sem.permits = 0;
    }
    for (const w of this.rxWaiters.drain()) {
      const signal = w.signal;
      w.disarm();
      nativeNext<T>(this, signal).then(w.resolve, w.reject);
    }
    for (const w of this.closedWaiters.drain()) {
      const signal = w.signal;
      w.disarm();
      nativeClosed(n, signal).then(w.resolve, w.reject);
    }
    return n;
  }
}

function nativeNext<T>(c: Chan<T>, signal: AbortSignal | undefined): Promise<T | End> {
  if (c.rxMoved) return Promise.reject(rxMovedError());
  if (c.blen > 0) return Promise.resolve(c.bshift());
  const n = c.n!;
  const k = c.pull(n, c.cap === 0 ? BATCH_MAX : 1);
  if (k > 0) return Promise.resolve(c.bshift());
  if (k < 0) return Promise.resolve(END);
  return nativeRecvWait(c, n, signal).then(() => {
    // Woken but aborted before pulling (a select() branch that lost in the same batch): the
    // message stays in the channel, as for a Tokio recv() dropped before it is polled again.
    if (signal !== undefined && signal.aborted) throw abortReason(signal);
    return nativeNext<T>(c, signal);
  });
}

/** Waits for the native channel to have something for the receiver, counted in `rxPending`. */
function nativeRecvWait<T>(c: Chan<T>, n: NChan, signal: AbortSignal | undefined): Promise<void> {
  c.rxPending++;
  return nwait<void>(signal, (id) => n.recvWait(id)).then(
    () => {
      c.rxPending--;
    },
    (e: unknown) => {
      c.rxPending--;
      throw e;
    },
  );
}

const rxMovedError = (): InvalidStateError => new InvalidStateError('this receiver was moved to another thread by share()');

function nativeClosed(n: NChan, signal: AbortSignal | undefined): Promise<void> {
  if (n.rxClosed()) return RESOLVED;
  return nwait<void>(signal, (id) => n.closedWait(id));
}

// What collected channel objects give back (see `track`): a sender drops its clone, a receiver
// drops the receiving end (closing the channel), a permit returns its unused slots.
const dropSender = (c: Chan<unknown>, key: number): void => c.dropSender(key);
const dropReceiver = (c: Chan<unknown>, key: number): void => {
  if (c.n !== undefined) c.n.dropReceiver(key === 0 ? c.rxKey : key);
  else c.closeRx();
};
const releasePermit = (c: Chan<unknown>, key: number): void => c.permitRelease(key, MAX_PERMITS);

function sendersClosed(): Promise<never> {
  return Promise.reject(new InvalidStateError('this sender was closed'));
}

/** Common sender methods. */
abstract class SenderBase<T> {
  /** @internal */
  protected readonly _c: Chan<T>;
  /** @internal */
  protected _key: number;
  /** @internal */
  protected _dropped = false;

  /** @internal */
  constructor(token: typeof kConstruct, c: Chan<T>, key: number) {
    if (token !== kConstruct) throw illegalConstructor();
    this._c = c;
    this._key = key;
    track(this, dropSender, c as Chan<unknown>, key);
  }

  /** Resolves when the receiver closes the channel (or is gone). */
  closed(options?: WaitOptions): Promise<void> {
    const signal = signalOf(options);
    const c = this._c;
    if (c.n !== undefined) return nativeClosed(c.n, signal);
    if (c.rxClosed) return RESOLVED;
    if (signal !== undefined && signal.aborted) return Promise.reject(abortReason(signal));
    return new Promise<void>((resolve, reject) => {
      const w = new Waiter<void>(resolve, reject);
      c.closedWaiters.push(w);
      if (signal !== undefined) {
        w.arm(signal, () => {
          w.onAbort = undefined;
          w.signal = undefined;
          if (!w.linked) return;
          c.closedWaiters.remove(w);
          reject(abortReason(signal));
        });
      }
    });
  }

  /** Whether the receiver closed the channel: every send fails from now on. */
  isClosed(): boolean {
    const c = this._c;
    return c.n !== undefined ? c.n.rxClosed() : c.rxClosed;
  }

  /**
   * Drops this sender (idempotent). The channel closes for the receiver once every clone is
   * closed. (JS has no destructors: a sender that is never closed keeps the channel open.)
   */
  close(): void {
    if (this._dropped) return;
    this._dropped = true;
    untrack(this);
    this._c.dropSender(this._key);
  }

  /** @internal */
  protected _cloneKey(): number {
    if (this._dropped) throw new InvalidStateError('this sender was closed');
    const c = this._c;
    if (c.n !== undefined) return c.n.addSender();
    c.tx++;
    return 0;
  }

  /** @internal */
  protected _shareParts(): number[] {
    if (this._dropped) throw new InvalidStateError('this sender was closed');
    return this._c.toNative().shareSender();
  }
}

/**
 * A reservation of channel capacity made by `reserve()`/`reserveMany(n)`: each `send(v)` uses one
 * slot and cannot fail; `release()` (or `using`) returns the unused ones. Obtained from
 * `reserve()` / `reserveMany()`; not constructed directly (`new` throws
 * `ERR_ILLEGAL_CONSTRUCTOR`).
 */
export class Permit<T> implements Disposable {
  #c: Chan<T>;
  #key: number;
  #n: number;

  /** @internal */
  constructor(token: typeof kConstruct, c: Chan<T>, key: number, n: number) {
    if (token !== kConstruct) throw illegalConstructor();
    this.#c = c;
    this.#key = key;
    this.#n = n;
    if (key !== 0) track(this, releasePermit, c as Chan<unknown>, key);
  }

  /** Unused slots left. */
  get remaining(): number {
    return this.#n;
  }

  /** Sends through one reserved slot. Never fails (even after the receiver closed). */
  send(value: T): void {
    if (this.#n === 0) throw new InvalidStateError('the permit was used up or released');
    this.#n--;
    if (this.#n === 0 && this.#key !== 0) untrack(this);
    this.#c.permitSend(this.#key, value);
  }

  /** Returns the unused slots (idempotent). */
  release(): void {
    const n = this.#n;
    if (n === 0) return;
    if (this.#key !== 0) untrack(this);
    this.#n = 0;
    this.#c.permitRelease(this.#key, n);
  }

  /** Same as {@link release}. */
  [Symbol.dispose](): void {
    this.release();
  }
}
releasedIfUnclaimed(Permit.prototype); // capacity a lost select() branch reserved goes back

/**
 * The sending half of a bounded channel. Clone it for more producers. Obtained from {@link
 * channel} and `clone()`; not constructed directly (`new` throws `ERR_ILLEGAL_CONSTRUCTOR`).
 */
export class Sender<T> extends SenderBase<T> {
  /**
   * Sends `value`, waiting (FIFO) for capacity. Rejects with `SendError` (`ERR_CHANNEL_CLOSED`)
   * when the receiver closed. Aborting the wait drops the value (it is never sent). Shared mode:
   * rejects with `TypeError` (`ERR_DATA_CLONE`) when the value cannot be structured-cloned.
   */
  send(value: T, options?: WaitOptions): Promise<void> {
    const signal = options === undefined ? undefined : signalOf(options);
    if (this._dropped) return sendersClosed();
    const c = this._c;
    const n = c.n;
    if (n !== undefined) {
      if (boundedRingPut(c as Chan<unknown>, n, value)) return RESOLVED;
      try {
        return nativeSend(n, value, signal);
      } catch (e) {
        return Promise.reject(e); // the value could not be cloned (a Promise API does not throw)
      }
    }
    const s = c.sem!;
    if (c.rxClosed) return Promise.reject(new SendError());
    if (s.queue.size === 0 && s.permits > 0) {
      s.permits--;
      c.deliver(value);
      return RESOLVED;
    }
    return s.acquire(1, signal, (o: Chan<T>, key) => o.permitSend(key, value), c).catch(mapSendError);
  }

  /** Sends now or throws `TrySendError` (`kind: 'full'` or `'closed'`). */
  trySend(value: T): void {
    if (this._dropped) throw new InvalidStateError('this sender was closed');
    const c = this._c;
    const n = c.n;
    if (n !== undefined) {
      if (boundedRingPut(c as Chan<unknown>, n, value)) return;
      const tag = tagOf(value);
      const r = n.trySend(payload(value, tag), tag);
      if (r === 0) return;
      throw new TrySendError(r === 1 ? 'full' : 'closed');
    }
    const s = c.sem!;
    if (c.rxClosed) throw new TrySendError('closed');
    if (s.queue.size === 0 && s.permits > 0) {
      s.permits--;
      c.deliver(value);
      return;
    }
    throw new TrySendError('full');
  }

  /** Waits for one slot of capacity. */
  reserve(options?: WaitOptions): Promise<Permit<T>> {
    return this.reserveMany(1, options);
  }

  /**
   * Waits for `n` slots at once. `n` above the channel's capacity rejects at once with
   * `SendError`; `n = 0` succeeds at once unless the channel is closed.
   */
  reserveMany(n: number, options?: WaitOptions): Promise<Permit<T>> {
    validatePermits(n);
    const signal = signalOf(options);
    if (this._dropped) return sendersClosed();
    const c = this._c;
    if (n > c.cap) return Promise.reject(new SendError('requested more slots than the channel capacity'));
    const nc = c.n;
    if (nc !== undefined) {
      const k = nc.tryReserve(n);
      if (k >= 0) return Promise.resolve(new Permit<T>(kConstruct, c, k, n));
      if (k === -2) return Promise.reject(new SendError());
      return nwait<number>(signal, (id) => nc.reserveWait(id, n)).then((key) => new Permit<T>(kConstruct, c, key, n), mapSendError);
    }
    if (c.rxClosed) return Promise.reject(new SendError());
    return c.sem!.acquire(n, signal, makePermit as Make<Permit<T>, Chan<T>>, c).catch(mapSendError);
  }

  /** One slot now, or `TrySendError` (`'full'` / `'closed'`). */
  tryReserve(): Permit<T> {
    return this.tryReserveMany(1);
  }

  /** `n` slots now, or `TrySendError` (`'full'` / `'closed'`; `'full'` also when `n` > capacity). */
  tryReserveMany(n: number): Permit<T> {
    validatePermits(n);
    if (this._dropped) throw new InvalidStateError('this sender was closed');
    const c = this._c;
    if (c.n !== undefined) {
      const k = n > c.cap ? -1 : c.n.tryReserve(n);
      if (k >= 0) return new Permit<T>(kConstruct, c, k, n);
      throw new TrySendError(k === -2 ? 'closed' : 'full');
    }
    if (c.rxClosed) throw new TrySendError('closed');
    try {
      return new Permit<T>(kConstruct, c, c.sem!.tryAcquire(n), n);
    } catch (e) {
      if (e instanceof TryAcquireError) throw new TrySendError(e.kind === 'closed' ? 'closed' : 'full');
      throw e;
    }
  }

  /** Free capacity right now. */
  capacity(): number {
    const c = this._c;
    return c.n !== undefined ? c.n.capacity() : c.sem!.permits;
  }

  /** The capacity the channel was created with. */
  maxCapacity(): number {
    return this._c.cap;
  }

  /** Another sender of the same channel. */
  clone(): Sender<T> {
    return new Sender<T>(kConstruct, this._c, this._cloneKey());
  }

  /**
   * Moves the channel into shared memory and returns a handle carrying one new sender clone:
   * `fromShared(handle)` in any worker revives it (once). The clone counts as a live sender from
   * now on, so revive every handle you make (or the channel never closes for the receiver), or
   * drop the clone with `dropShared(handle)` if its message may be lost (a worker terminated
   * before handling it).
   */
  share(): SyncHandle {
    return makeHandle('mpsc.Sender', this._shareParts());
  }
}

function nativeSend<T>(n: NChan, value: T, signal: AbortSignal | undefined): Promise<void> {
  const tag = tagOf(value);
  const p = payload(value, tag);
  const r = n.trySend(p, tag);
  if (r === 0) return RESOLVED;
  if (r === 2) return Promise.reject(new SendError());
  return nwait<number>(signal, (id) => n.reserveWait(id, 1))
    .then(same, mapSendError)
    .then((key) => {
      // Given its slot but aborted before sending (a select() branch that the same batch settled,
      // before or after the slot, has aborted it by this second microtask): the slot goes back
      // and the value is dropped, as Tokio's send() guarantees when another branch completes.
      if (signal !== undefined && signal.aborted) {
        n.permitRelease(key, 1);
        throw abortReason(signal);
      }
      n.permitSend(key, p, tag);
    });
}

const same = (key: number): number => key;

/**
 * The sending half of an unbounded channel: `send` never waits. Obtained from {@link
 * unboundedChannel} and `clone()`; not constructed directly (`new` throws
 * `ERR_ILLEGAL_CONSTRUCTOR`).
 */
export class UnboundedSender<T> extends SenderBase<T> {
  /** Sends `value` now; throws `SendError` (`ERR_CHANNEL_CLOSED`) when the receiver closed. */
  send(value: T): void {
    if (this._dropped) throw new InvalidStateError('this sender was closed');
    const c = this._c;
    const n = c.n;
    if (n !== undefined) {
      const r = c.ring === undefined ? c.senderRing(n) : c.ring;
      if (r !== null && ringPut(r, n, value)) return;
      const tag = tagOf(value);
      if (n.trySend(payload(value, tag), tag) !== 0) throw new SendError();
      return;
    }
    if (c.rxClosed) throw new SendError();
    c.deliver(value);
  }

  /** Another sender of the same channel. */
  clone(): UnboundedSender<T> {
    return new UnboundedSender<T>(kConstruct, this._c, this._cloneKey());
  }

  /** Like {@link Sender.share}. */
  share(): SyncHandle {
    return makeHandle('mpsc.UnboundedSender', this._shareParts());
  }
}

/**
 * The receiving half of a channel (bounded or unbounded). Obtained from {@link channel} / {@link
 * unboundedChannel}; not constructed directly (`new` throws `ERR_ILLEGAL_CONSTRUCTOR`).
 */
export class Receiver<T> implements AsyncIterable<T> {
  #c: Chan<T>;
  #key: number;
  #moved = false;

  /** @internal */
  constructor(token: typeof kConstruct, c: Chan<T>, key: number) {
    if (token !== kConstruct) throw illegalConstructor();
    this.#c = c;
    this.#key = key;
    track(this, dropReceiver, c as Chan<unknown>, key);
  }

  #live(): Chan<T> {
    if (this.#moved) throw rxMovedError();
    return this.#c;
  }

  /**
   * The next message; `undefined` once the channel is closed, drained and no permit is
   * outstanding. Cancel-safe: aborting loses no message.
   */
  recv(options?: WaitOptions): Promise<T | undefined> {
    const signal = options === undefined ? undefined : signalOf(options);
    let c: Chan<T>;
    try {
      c = this.#live();
    } catch (e) {
      return Promise.reject(e);
    }
    if (c.n === undefined) {
      if (c.len > 0) return Promise.resolve(c.take());
      if (c.closed() && c.idle()) return RESOLVED_UNDEFINED;
    } else if (c.blen > 0) return Promise.resolve(c.bshift());
    return c.next(signal).then(unEnd);
  }

  /**
   * Up to `limit` messages at once (at least one unless the channel is closed and drained, then
   * `[]`). `limit = 0` resolves `[]` at once.
   */
  recvMany(limit: number, options?: WaitOptions): Promise<T[]> {
    validateInteger(limit, 'limit', 0, 0xffffffff);
    const signal = signalOf(options);
    let c: Chan<T>;
    try {
      c = this.#live();
    } catch (e) {
      return Promise.reject(e);
    }
    if (limit === 0) return RESOLVED_EMPTY_ARRAY();
    if (c.n !== undefined) return nativeMany<T>(c, limit, signal);
    if (c.len > 0) return Promise.resolve(c.takeMany(limit));
    return c.next(signal).then((v) => {
      if (v === END) return [];
      const out = [v];
      if (limit > 1 && c.n === undefined && c.len > 0) for (const x of c.takeMany(limit - 1)) out.push(x);
      return out;
    });
  }

  /**
   * The next message now, or `TryRecvError`: `kind: 'empty'` (nothing buffered, or a permit is
   * still outstanding) or `'disconnected'` (closed and drained).
   */
  tryRecv(): T {
    const c = this.#live();
    const n = c.n;
    if (n !== undefined) {
      if (c.blen > 0) return c.bshift();
      const k = c.pull(n, c.cap === 0 ? BATCH_MAX : 1);
      if (k > 0) return c.bshift();
      throw new TryRecvError(k < 0 ? 'disconnected' : 'empty');
    }
    if (c.len > 0) return c.take();
    if (c.closed() && c.idle()) throw new TryRecvError('disconnected');
    throw new TryRecvError('empty');
  }

  /**
   * Closes the channel from the receiving side: every later send fails, waiting senders are
   * rejected, but buffered messages and outstanding permits can still be received.
   */
  close(): void {
    this.#live().closeRx();
  }

  /** Buffered messages. */
  get len(): number {
    const c = this.#live();
    return c.n !== undefined ? c.blen + c.n.len() : c.len;
  }

  /** Whether nothing is buffered. */
  isEmpty(): boolean {
    return this.len === 0;
  }

  /** Whether the channel is closed (receiver closed it, or every sender is gone). */
  isClosed(): boolean {
    const c = this.#live();
    return c.n !== undefined ? c.n.isClosed() : c.closed();
  }

  /** @internal Puts messages taken into the JS buffer back into native memory (before moving). */
  #unpull(c: Chan<T>, n: NChan): void {
    // Serialize first so a non-cloneable value throws before anything moves.
    const items: [unknown, number][] = [];
    for (let i = c.rbuf.length - 1; i >= c.rhead; i--) {
      const tag = tagOf(c.rbuf[i]);
      items.push([payload(c.rbuf[i], tag), tag]);
    }
    for (const [p, tag] of items) n.pushFront(p, tag);
    c.rbuf = [];
    c.rhead = 0;
  }

  /** The channel's capacity (0 for unbounded). */
  maxCapacity(): number {
    return this.#c.cap;
  }

  /**
   * Moves the receiving end into shared memory and out of this object (which is unusable
   * afterwards): `fromShared(handle)` revives it once, in any worker. Throws `ERR_INVALID_STATE`
   * while a receive (`recv`, `recvMany`, an iterator's `next`) is pending: it would go on
   * receiving here, taking messages from the moved receiver. (An aborted receive counts until its
   * promise has settled.)
   */
  share(): SyncHandle {
    const c = this.#live();
    if (c.rxWaiters.size > 0 || c.rxPending > 0) throw new InvalidStateError('a receive is pending on this receiver');
    const n = c.toNative();
    if (c.blen > 0) this.#unpull(c, n);
    const parts = n.shareReceiver(this.#key === 0 ? c.rxKey : this.#key);
    this.#moved = true;
    c.rxMoved = true;
    untrack(this);
    return makeHandle(c.cap === 0 ? 'mpsc.UnboundedReceiver' : 'mpsc.Receiver', parts);
  }

  /**
   * Yields every message until the channel is closed and drained. The iterator's `return()` (a
   * `break` out of `for await`) cancels a receive in flight: no message is taken for it.
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return new RecvIterator<T>((signal) => this.#live().next(signal).then(iterEnd));
  }
}

notThenable(Permit); // what reserve() resolves with (see notThenable)

function makePermit(c: Chan<unknown>, key: number, n: number): Permit<unknown> {
  return new Permit(kConstruct, c, key, n);
}

function iterEnd<T>(v: T | End): T | typeof ITER_END {
  return v === END ? ITER_END : v;
}

function unEnd<T>(v: T | End): T | undefined {
  return v === END ? undefined : v;
}

function nativeMany<T>(c: Chan<T>, limit: number, signal: AbortSignal | undefined): Promise<T[]> {
  if (c.rxMoved) return Promise.reject(rxMovedError());
  if (c.blen > 0) return Promise.resolve(c.btake(limit));
  const n = c.n!;
  const k = c.pull(n, limit);
  if (k > 0) return Promise.resolve(c.btake(limit));
  if (k < 0) return RESOLVED_EMPTY_ARRAY();
  return nativeRecvWait(c, n, signal).then(() => {
    if (signal !== undefined && signal.aborted) throw abortReason(signal); // (as in nativeNext)
    return nativeMany<T>(c, limit, signal);
  });
}

/**
 * A bounded channel of `capacity` slots (an integer `1..MAX_PERMITS`; 0 throws `RangeError`).
 */
export function channel<T>(capacity: number): [Sender<T>, Receiver<T>] {
  if (typeof capacity !== 'number') throw invalidArgType('capacity', 'of type number', capacity);
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_PERMITS) {
    throw outOfRange('capacity', `an integer >= 1 && <= ${MAX_PERMITS}`, capacity);
  }
  const c = new Chan<T>(capacity);
  return [new Sender<T>(kConstruct, c, 0), new Receiver<T>(kConstruct, c, 0)];
}

/** An unbounded channel: sends never wait (memory is the limit). */
export function unboundedChannel<T>(): [UnboundedSender<T>, Receiver<T>] {
  const c = new Chan<T>(0);
  return [new UnboundedSender<T>(kConstruct, c, 0), new Receiver<T>(kConstruct, c, 0)];
}

function revived<T>(n: NChan): Chan<T> {
  const c = new Chan<T>(n.maxCapacity());
  c.n = n;
  return c;
}

registerReviver('mpsc.Sender', (i, g, h, l) => {
  const n = sn().syncReviveChan(KIND_SENDER, i, g, h, l);
  return n === null ? null : new Sender(kConstruct, revived(n), n.endKey());
});
registerReviver('mpsc.UnboundedSender', (i, g, h, l) => {
  const n = sn().syncReviveChan(KIND_USENDER, i, g, h, l);
  return n === null ? null : new UnboundedSender(kConstruct, revived(n), n.endKey());
});
registerReviver('mpsc.Receiver', (i, g, h, l) => {
  const n = sn().syncReviveChan(KIND_RECEIVER, i, g, h, l);
  return n === null ? null : new Receiver(kConstruct, revived(n), n.endKey());
});
registerReviver('mpsc.UnboundedReceiver', (i, g, h, l) => {
  const n = sn().syncReviveChan(KIND_URECEIVER, i, g, h, l);
  return n === null ? null : new Receiver(kConstruct, revived(n), n.endKey());
});

