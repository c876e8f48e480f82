/**
 * One-shot channels (Tokio's `oneshot`): one value, sent once. Either end can be moved to another
 * worker with `share()` / `fromShared()`; if the worker holding the sender dies before sending,
 * the receiver rejects with `RecvError`.
 * @module
 */
import { abortReason, illegalConstructor, kConstruct } from '../errors';
import { InvalidStateError, RecvError, TryRecvError } from './errors';
import { RESOLVED, WaitList, Waiter, signalOf, type WaitOptions } from './internal';
import { CELL, CLOSED, EMPTY, encode, makeHandle, nwait, registerReviver, sn, track, untrack, type NCell, type SyncHandle } from './native';

class Cell<T> {
  value: T | undefined = undefined;
  has = false;
  taken = false;
  txClosed = false;
  rxClosed = false;
  rx: Waiter<T> | null = null;
  promise: Promise<T> | null = null;
  readonly closedWaiters = new WaitList<Waiter<void>>();
  /** Shared mode: the native state, and the holding keys of the ends this thread has (0: none). */
  n: NCell | undefined = undefined;
  txKey = 0;
  rxKey = 0;

  wakeClosed(): void {
    for (const w of this.closedWaiters.drain()) w.settle(undefined);
  }

  /** Moves the state into native memory (once); pending waits follow it. */
  toNative(): NCell {
    if (this.n !== undefined) return this.n;
    const [p, tag] = this.has ? encode(this.value) : [undefined, 0];
    const n = sn().syncOneshotCreate(this.has, p, tag, this.txClosed, this.rxClosed, this.taken);
    this.txKey = this.txClosed ? 0 : n.adoptEnd(CELL.OS_TX, 0);
    this.rxKey = this.rxClosed ? 0 : n.adoptEnd(CELL.OS_RX, 0);
    this.value = undefined;
    this.has = false;
    this.n = n;
    const w = this.rx;
    if (w !== null) {
      this.rx = null;
      nativeRecv<T>(this).then(w.resolve, w.reject);
    }
    for (const cw of this.closedWaiters.drain()) {
      const signal = cw.signal;
      cw.disarm();
      nwait<void>(signal, (id) => n.osClosedWait(id)).then(cw.resolve, cw.reject);
    }
    return n;
  }

  /** Releases this thread's hold on the sender end. */
  dropTx(): void {
    if (this.txKey !== 0) {
      const k = this.txKey;
      this.txKey = 0;
      this.n!.dropEnd(k);
    }
  }

  /** Releases this thread's hold on the receiver end. */
  dropRx(): void {
    if (this.rxKey !== 0) {
      const k = this.rxKey;
      this.rxKey = 0;
      this.n!.dropEnd(k);
    }
  }
}

/** Shared mode: the value (awaiting it), or `RecvError` when the sender closed unsent. */
function nativeRecv<T>(c: Cell<T>): Promise<T> {
  const n = c.n!;
  const r = n.osTryRecv();
  if (r === EMPTY) return nwait<void>(undefined, (id) => n.osRecvWait(id)).then(() => nativeRecv<T>(c));
  c.dropRx();
  if (r === CLOSED) return Promise.reject(new RecvError('closed'));
  return Promise.resolve(r as T);
}

/** Drops the sender end without sending (explicit close, or the sender object was collected). */
function closeTx<T>(c: Cell<T>): void {
  if (c.n !== undefined) {
    c.n.osCloseTx();
    c.dropTx();
    return;
  }
  if (c.txClosed) return;
  c.txClosed = true;
  const w = c.rx;
  if (w !== null) {
    c.rx = null;
    w.fail(new RecvError('closed'));
  }
}

/** Closes the receiver end (explicit close, or the receiver object was collected). */
function closeRx<T>(c: Cell<T>, drop: boolean): void {
  if (c.n !== undefined) {
    c.n.osCloseRx();
    if (drop) c.dropRx();
    return;
  }
  if (c.rxClosed) return;
  c.rxClosed = true;
  c.wakeClosed();
  // Nothing can be sent any more: a receive already waiting fails (a value sent before the close
  // would have settled it already, and stays receivable).
  const w = c.rx;
  if (w !== null) {
    c.rx = null;
    w.fail(new RecvError('closed'));
  }
}

const collectedRx = <T>(c: Cell<T>): void => closeRx(c, true);

const movedError = (): InvalidStateError => new InvalidStateError('this channel end was moved to another thread by share()');

/**
 * The sending half: `send` once. Obtained from {@link channel}; not constructed directly (`new`
 * throws `ERR_ILLEGAL_CONSTRUCTOR`).
 */
export class OneshotSender<T> {
  #c: Cell<T>;
  #moved = false;

  /** @internal */
  constructor(token: typeof kConstruct, c: Cell<T>) {
    if (token !== kConstruct) throw illegalConstructor();
    this.#c = c;
    track(this, closeTx, c);
  }

  #live(): Cell<T> {
    if (this.#moved) throw movedError();
    return this.#c;
  }

  /**
   * Sends the value; returns false (and drops it) if the receiver is closed or a value was already
   * sent / the sender closed. In shared mode the value is structured-cloned (Buffers moved).
   */
  send(value: T): boolean {
    const c = this.#live();
    const n = c.n;
    if (n !== undefined) {
      const [p, tag] = encode(value);
      const ok = n.osSend(p, tag);
      c.dropTx();
      return ok;
    }
    if (c.rxClosed || c.txClosed) return false;
    c.txClosed = true;
    c.value = value;
    c.has = true;
    const w = c.rx;
    if (w !== null) {
      c.rx = null;
      c.value = undefined;
      c.has = false;
      c.taken = true;
      w.settle(value);
    }
    return true;
  }

  /** Resolves when the receiver closes (or has received). */
  closed(options?: WaitOptions): Promise<void> {
    const signal = signalOf(options);
    const c = this.#c;
    const n = c.n;
    if (n !== undefined) {
      if (n.osRxClosed()) return RESOLVED;
      return nwait<void>(signal, (id) => n.osClosedWait(id));
    }
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

  /** Whether the receiver is closed (a `send` would fail). */
  isClosed(): boolean {
    const c = this.#c;
    return c.n !== undefined ? c.n.osRxClosed() : c.rxClosed;
  }

  /**
   * Moves the sender into shared memory and out of this object (unusable afterwards):
   * `fromShared(handle)` revives it once, in any worker.
   */
  share(): SyncHandle {
    const c = this.#live();
    const n = c.toNative();
    if (c.txKey === 0) throw new InvalidStateError('this sender was already used or closed');
    const parts = n.shareEnd(c.txKey, CELL.OS_TX);
    c.txKey = 0;
    this.#moved = true;
    untrack(this);
    return makeHandle('oneshot.Sender', parts);
  }

  /** Drops the sender without sending: the receiver rejects with `RecvError`. */
  close(): void {
    if (this.#moved) return;
    untrack(this);
    closeTx(this.#c);
  }

}

/**
 * The receiving half: await it (it is `PromiseLike<T>`), or poll with {@link tryRecv}. Rejects
 * with `RecvError` (`ERR_CHANNEL_CLOSED`) if the sender closed without sending. Obtained from
 * {@link channel}; not constructed directly (`new` throws `ERR_ILLEGAL_CONSTRUCTOR`).
 */
export class OneshotReceiver<T> implements PromiseLike<T> {
  #c: Cell<T>;
  #moved = false;

  /** @internal */
  constructor(token: typeof kConstruct, c: Cell<T>) {
    if (token !== kConstruct) throw illegalConstructor();
    this.#c = c;
    track(this, collectedRx, c);
  }

  #promise(): Promise<T> {
    if (this.#moved) return Promise.reject(movedError());
    const c = this.#c;
    if (c.promise !== null) return c.promise;
    if (c.n !== undefined) return (c.promise = nativeRecv<T>(c));
    if (c.has) {
      const v = c.value as T;
      c.value = undefined;
      c.has = false;
      c.taken = true;
      c.rxClosed = true;
      c.wakeClosed();
      return (c.promise = Promise.resolve(v));
    }
    if (c.txClosed || c.rxClosed) return (c.promise = Promise.reject(new RecvError('closed')));
    return (c.promise = new Promise<T>((resolve, reject) => {
      c.rx = new Waiter<T>(
        (v) => {
          c.rxClosed = true;
          c.wakeClosed();
          resolve(v);
        },
        reject,
      );
    }));
  }

  /** The value once sent (`PromiseLike`). */
  then<R1 = T, R2 = never>(
    onfulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    onrejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.#promise().then(onfulfilled, onrejected);
  }

  /**
   * The value now, or `TryRecvError`: `'empty'` (not sent yet) or `'closed'` (sender closed
   * unsent, or the value was already received).
   */
  tryRecv(): T {
    if (this.#moved) throw movedError();
    const c = this.#c;
    const n = c.n;
    if (n !== undefined) {
      const r = n.osTryRecv();
      if (r === EMPTY) throw new TryRecvError('empty');
      c.dropRx();
      if (r === CLOSED) throw new TryRecvError('closed');
      return r as T;
    }
    if (c.has) {
      const v = c.value as T;
      c.value = undefined;
      c.has = false;
      c.taken = true;
      c.txClosed = true;
      if (!c.rxClosed) {
        c.rxClosed = true;
        c.wakeClosed();
      }
      return v;
    }
    if (c.txClosed || c.taken || (c.rxClosed && !c.has)) throw new TryRecvError('closed');
    throw new TryRecvError('empty');
  }

  /**
   * Closes the receiver: a later `send` fails (returns false). A value sent before is still
   * received (awaiting the receiver or `tryRecv`); otherwise the receiver, awaited already or
   * later, rejects with `RecvError`.
   */
  close(): void {
    if (this.#moved) return;
    closeRx(this.#c, false);
  }


  /**
   * Moves the receiver into shared memory and out of this object (unusable afterwards):
   * `fromShared(handle)` revives it once, in any worker. Not once it has been awaited.
   */
  share(): SyncHandle {
    if (this.#moved) throw movedError();
    const c = this.#c;
    if (c.promise !== null) throw new InvalidStateError('this receiver is already being awaited');
    const n = c.toNative();
    if (c.rxKey === 0) throw new InvalidStateError('this receiver was closed');
    const parts = n.shareEnd(c.rxKey, CELL.OS_RX);
    c.rxKey = 0;
    this.#moved = true;
    untrack(this);
    return makeHandle('oneshot.Receiver', parts);
  }
}

/** A one-shot channel. */
export function channel<T>(): [OneshotSender<T>, OneshotReceiver<T>] {
  const c = new Cell<T>();
  return [new OneshotSender<T>(kConstruct, c), new OneshotReceiver<T>(kConstruct, c)];
}

export { OneshotSender as Sender, OneshotReceiver as Receiver };

function revivedCell<T>(n: NCell, tx: boolean): Cell<T> {
  const c = new Cell<T>();
  c.n = n;
  if (tx) c.txKey = n.key();
  else c.rxKey = n.key();
  return c;
}

registerReviver('oneshot.Sender', (i, g, h, l) => {
  const n = sn().syncReviveCell(CELL.OS_TX, i, g, h, l);
  return n === null ? null : new OneshotSender(kConstruct, revivedCell(n, true));
});
registerReviver('oneshot.Receiver', (i, g, h, l) => {
  const n = sn().syncReviveCell(CELL.OS_RX, i, g, h, l);
  return n === null ? null : new OneshotReceiver(kConstruct, revivedCell(n, false));
});
