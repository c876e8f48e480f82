/**
 * One-shot channels (Tokio's `oneshot`): one value, sent once. Same-thread only for now.
 * @module
 */
import { abortReason } from '../errors';
import { RecvError, TryRecvError } from './errors';
import { RESOLVED, WaitList, Waiter, signalOf, type WaitOptions } from './internal';

class Cell<T> {
  value: T | undefined = undefined;
  has = false;
  taken = false;
  txClosed = false;
  rxClosed = false;
  rx: Waiter<T> | null = null;
  promise: Promise<T> | null = null;
  readonly closedWaiters = new WaitList<Waiter<void>>();

  wakeClosed(): void {
    for (const w of this.closedWaiters.drain()) w.settle(undefined);
  }
}

/** The sending half: `send` once. */
export class OneshotSender<T> {
  #c: Cell<T>;

  /** @internal */
  constructor(c: Cell<T>) {
    this.#c = c;
  }

  /**
   * Sends the value; returns false (and drops it) if the receiver is closed or a value was already
   * sent / the sender closed.
   */
  send(value: T): boolean {
    const c = this.#c;
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
    return this.#c.rxClosed;
  }

  /** Drops the sender without sending: the receiver rejects with `RecvError`. */
  close(): void {
    const c = this.#c;
    if (c.txClosed) return;
    c.txClosed = true;
    const w = c.rx;
    if (w !== null) {
      c.rx = null;
      w.fail(new RecvError('closed'));
    }
  }
}

/**
 * The receiving half: await it (it is `PromiseLike<T>`), or poll with {@link tryRecv}. Rejects
 * with `RecvError` (`ERR_CHANNEL_CLOSED`) if the sender closed without sending.
 */
export class OneshotReceiver<T> implements PromiseLike<T> {
  #c: Cell<T>;

  /** @internal */
  constructor(c: Cell<T>) {
    this.#c = c;
  }

  #promise(): Promise<T> {
    const c = this.#c;
    if (c.promise !== null) return c.promise;
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
    const c = this.#c;
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
   * returned by `tryRecv`.
   */
  close(): void {
    const c = this.#c;
    if (c.rxClosed) return;
    c.rxClosed = true;
    c.wakeClosed();
  }
}

/** A one-shot channel. */
export function channel<T>(): [OneshotSender<T>, OneshotReceiver<T>] {
  const c = new Cell<T>();
  return [new OneshotSender<T>(c), new OneshotReceiver<T>(c)];
}

export { OneshotSender as Sender, OneshotReceiver as Receiver };
