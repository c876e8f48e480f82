/**
 * Notify, Barrier and OnceCell.
 * @module
 */
import { abortReason, invalidArgType, validateInteger } from '../errors';
import { SetError } from './errors';
import { JsSem, KEY, RESOLVED, WaitList, Waiter, signalOf, type WaitOptions } from './internal';
import {
  CELL,
  EMPTY,
  encodeKept,
  makeHandle,
  nwait,
  nwaitAbandoned,
  registerReviver,
  sn,
  type NBarrier,
  type NCell,
  type NNotify,
  type SyncHandle,
} from './native';

// How `fromShared` builds each class over revived native state. Assigned in the classes' static
// blocks, which can set #private fields, rather than being statics: user code must not be able to
// make an instance bound to arbitrary state.
let reviveNotify: (n: NNotify) => Notify;
let reviveBarrier: (nb: NBarrier) => Barrier;
let reviveOnceCell: (n: NCell) => OnceCell<unknown>;

/**
 * Wakes tasks (Tokio's `Notify`). `notifyOne()` wakes the oldest waiter or, with none, stores a
 * single permit (repeated calls still store one) that the next `notified()` consumes at once;
 * `notifyLast()` wakes the newest waiter; `notifyWaiters()` wakes every current waiter and stores
 * nothing. A waiter counts from the moment `notified()` is called. In shared mode, a waiter that
 * is aborted after `notifyOne` picked it (before it saw the wake-up) passes the notification on.
 */
export class Notify {
  #permit = false;
  readonly #waiters = new WaitList<Waiter<void>>();
  #n: NNotify | undefined = undefined;
  #handle: SyncHandle | undefined = undefined;

  /** Resolves on the next notification (or at once, consuming a stored permit). */
  notified(options?: WaitOptions): Promise<void> {
    const signal = signalOf(options);
    const n = this.#n;
    if (n !== undefined) {
      if (n.tryTake()) return RESOLVED;
      return nativeNotified(n, signal);
    }
    if (this.#permit) {
      this.#permit = false;
      return RESOLVED;
    }
    if (signal !== undefined && signal.aborted) return Promise.reject(abortReason(signal));
    return new Promise<void>((resolve, reject) => {
      const w = new Waiter<void>(resolve, reject);
      this.#waiters.push(w);
      if (signal !== undefined) {
        w.arm(signal, () => {
          w.onAbort = undefined;
          w.signal = undefined;
          if (!w.linked) return;
          this.#waiters.remove(w);
          reject(abortReason(signal));
        });
      }
    });
  }

  /** Wakes the oldest waiter, or stores one permit. */
  notifyOne(): void {
    if (this.#n !== undefined) return this.#n.notifyOne();
    const w = this.#waiters.shift();
    if (w === null) this.#permit = true;
    else w.settle(undefined);
  }

  /** Wakes the newest waiter, or stores one permit. */
  notifyLast(): void {
    if (this.#n !== undefined) return this.#n.notifyLast();
    const w = this.#waiters.pop();
    if (w === null) this.#permit = true;
    else w.settle(undefined);
  }

  /** Wakes every current waiter; stores no permit. */
  notifyWaiters(): void {
    if (this.#n !== undefined) return this.#n.notifyWaiters();
    for (const w of this.#waiters.drain()) w.settle(undefined);
  }

  /** Moves the Notify into shared memory; returns a handle for `fromShared` in any worker. */
  share(): SyncHandle {
    if (this.#handle !== undefined) return this.#handle;
    if (this.#n === undefined) {
      const n = sn().syncNotifyCreate(this.#permit);
      this.#permit = false;
      this.#n = n;
      for (const w of this.#waiters.drain()) {
        const signal = w.signal;
        w.disarm();
        nativeNotified(n, signal).then(w.resolve, w.reject);
      }
    }
    return (this.#handle = makeHandle('Notify', this.#n.share()));
  }

  static {
    reviveNotify = (n) => {
      const x = new Notify();
      x.#n = n;
      return x;
    };
  }
}

/** How a shared wait was woken (the native op's value). */
const BY_ONE = 1;

const same = (how: number): number => how;

/** A shared `notified()` wait. */
function nativeNotified(n: NNotify, signal: AbortSignal | undefined): Promise<void> {
  // Checked one microtask after the wake-up (where a shared recv() pulls its message): a select()
  // branch that the same batch settled, before or after this one, has aborted the wait by then.
  return nwait<number>(signal, (id) => n.wait(id)).then(same).then((how) => {
    // Woken but aborted before running (that branch won): a notifyOne() passes on, as from a
    // Tokio Notified dropped after it was picked.
    if (signal !== undefined && signal.aborted) {
      if (how === BY_ONE) n.notifyOne();
      throw abortReason(signal);
    }
  });
}

/** What {@link Barrier.wait} resolves with. */
export interface BarrierWaitResult {
  /** True for exactly one waiter of each generation (the one whose arrival released it). */
  readonly isLeader: boolean;
}

/** The resolve of a Barrier wait that was aborted (its arrival still counts). */
const ABANDONED = (): void => {};

const LEADER: BarrierWaitResult = Object.freeze({ isLeader: true });
const FOLLOWER: BarrierWaitResult = Object.freeze({ isLeader: false });

/**
 * Lets `n` tasks wait for each other: the `n`-th `wait()` releases the whole generation (and is its
 * leader), then the barrier is reused. `n = 0` behaves like 1. Like Tokio's, a wait is not
 * cancel-safe: an aborted `wait()` rejects but its arrival still counts.
 */
export class Barrier {
  readonly #n: number;
  #waiting: Waiter<BarrierWaitResult>[] = [];
  #arrived = 0;
  #nb: NBarrier | undefined = undefined;
  #handle: SyncHandle | undefined = undefined;

  /** @param n - the number of parties (an integer `0..2^32-1`). */
  constructor(n: number) {
    validateInteger(n, 'n', 0, 0xffffffff);
    this.#n = Math.max(1, n);
  }

  /** Arrives and waits for the rest of the generation. */
  wait(options?: WaitOptions): Promise<BarrierWaitResult> {
    const signal = signalOf(options);
    const nb = this.#nb;
    if (nb !== undefined) {
      return nwait<number>(signal, (id) => nb.wait(id)).then((x) => (x === 1 ? LEADER : FOLLOWER));
    }
    if (signal !== undefined && signal.aborted) return Promise.reject(abortReason(signal));
    this.#arrived++;
    if (this.#arrived >= this.#n) {
      const ws = this.#waiting;
      this.#waiting = [];
      this.#arrived = 0;
      for (const w of ws) w.settle(FOLLOWER);
      return Promise.resolve(LEADER);
    }
    return new Promise<BarrierWaitResult>((resolve, reject) => {
      const w = new Waiter<BarrierWaitResult>(resolve, reject);
      this.#waiting.push(w);
      if (signal !== undefined) {
        w.arm(signal, () => {
          w.onAbort = undefined;
          w.signal = undefined;
          // The arrival stays counted (not cancel-safe, as in Tokio); only this promise rejects.
          w.resolve = ABANDONED;
          reject(abortReason(signal));
        });
      }
    });
  }

  /** Moves the barrier into shared memory; returns a handle for `fromShared` in any worker. */
  share(): SyncHandle {
    if (this.#handle !== undefined) return this.#handle;
    if (this.#nb === undefined) {
      const nb = sn().syncBarrierCreate(this.#n, 0);
      // Current JS waiters keep their arrival: they re-arrive natively, in order.
      const ws = this.#waiting;
      this.#waiting = [];
      this.#arrived = 0;
      this.#nb = nb;
      for (const w of ws) {
        if (w.resolve === ABANDONED) {
          // An aborted wait: its arrival counts, but nothing waits on it to hold the loop for.
          nwaitAbandoned((id) => nb.wait(id));
          continue;
        }
        const signal = w.signal;
        w.disarm();
        nwait<number>(signal, (id) => nb.wait(id)).then((x) => w.resolve(x === 1 ? LEADER : FOLLOWER), w.reject);
      }
    }
    return (this.#handle = makeHandle('Barrier', this.#nb.share()));
  }

  static {
    reviveBarrier = (nb) => {
      const b = new Barrier(nb.n());
      b.#nb = nb;
      return b;
    };
  }
}

/**
 * Runs `init`, settling as it does unless `signal` aborts first: then it rejects with the abort
 * reason and what `init` later gives is ignored, as a Tokio `get_or_init` future dropped while
 * initialising (the next caller initialises). Not started once `signal` has aborted.
 */
function orAbort<T>(init: () => T | PromiseLike<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return Promise.resolve(init());
  if (signal.aborted) return Promise.reject(abortReason(signal));
  const p = Promise.resolve(init());
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortReason(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/**
 * A value set at most once (Tokio's `OnceCell`). Concurrent `getOrInit` callers share one
 * initialisation; if it throws (or rejects), or its caller's signal aborts, the next waiting
 * caller runs its own initialiser.
 * `share()` moves the cell into native memory so workers share it: the initialiser runs in the
 * thread of the caller that wins, the others wait; if that thread dies mid-initialisation, a
 * waiting caller retries. Values are then structured-cloned (each `get()` returns a copy).
 */
export class OnceCell<T> {
  #value: T | undefined = undefined;
  #set = false;
  readonly #sem = new JsSem(1);
  #n: NCell | undefined = undefined;
  #handle: SyncHandle | undefined = undefined;
  /** Shared mode: the key of an initialisation started in JS mode before `share()`. */
  #initKey = 0;

  /** @param value - when given (even `undefined`, if passed explicitly), the cell starts initialised. */
  constructor(...value: [] | [T]) {
    if (value.length > 0) {
      this.#value = value[0];
      this.#set = true;
      this.#sem.close();
    }
  }

  /** The value, or `undefined` while uninitialised. */
  get(): T | undefined {
    const n = this.#n;
    if (n !== undefined) {
      const v = n.oGet();
      return v === EMPTY ? undefined : (v as T);
    }
    return this.#value;
  }

  /** Whether a value is stored. */
  initialized(): boolean {
    const n = this.#n;
    return n !== undefined ? n.oGet() !== EMPTY : this.#set;
  }

  /**
   * Stores `value`; throws `SetError` with `kind: 'already_initialized'` once set, or
   * `'initializing'` while a `getOrInit` is running.
   */
  set(value: T): void {
    const n = this.#n;
    if (n !== undefined) {
      // The bytes are copied, not moved: a set() that fails (another thread set or is
      // initialising) stores nothing and must take nothing, and, as in one thread, the caller
      // may go on using what it stored.
      const [p, tag] = encodeKept(value);
      const r = n.oSet(p, tag);
      if (r === 1) throw new SetError('already_initialized');
      if (r === 2) throw new SetError('initializing');
      return;
    }
    if (this.#set) throw new SetError('already_initialized');
    if (this.#sem.permits === 0) throw new SetError('initializing');
    this.#value = value;
    this.#set = true;
    this.#sem.close();
  }

  /**
   * The value, initialising it with `init()` first if needed (one initialiser at a time). Aborting
   * `signal` while `init` runs rejects at once and lets the next caller initialise.
   */
  async getOrInit(init: () => T | PromiseLike<T>, options?: WaitOptions): Promise<T> {
    if (typeof init !== 'function') throw invalidArgType('init', 'of type function', init);
    const signal = signalOf(options);
    for (;;) {
      if (this.#n !== undefined) return this.#nativeGetOrInit(this.#n, init, signal);
      if (this.#set) return this.#value as T;
      try {
        await this.#sem.acquire(1, signal, KEY, undefined);
      } catch (e) {
        // Closed: another caller stored the value while we waited, or the cell was shared.
        if (this.#set) return this.#value as T;
        if (this.#n !== undefined) continue;
        throw e;
      }
      const sharedEarly = this.#shared();
      if (sharedEarly !== undefined) {
        // Shared after our turn came but before init ran: share() claimed the native
        // initialisation for us (it cannot tell a turn granted from an init running). Give it
        // back and go the native way, or every caller on every thread would wait for an
        // initialisation nobody runs.
        const key = this.#takeInitKey();
        if (key !== 0) sharedEarly.oAbandon(key);
        continue;
      }
      if (this.#set) {
        this.#sem.release(0, 1);
        return this.#value as T;
      }
      let v: T;
      try {
        v = await orAbort(init, signal);
      } catch (e) {
        const sn2 = this.#shared();
        if (sn2 !== undefined) sn2.oAbandon(this.#takeInitKey());
        else this.#sem.release(0, 1); // the next waiter retries
        throw e;
      }
      const shared = this.#shared();
      if (shared !== undefined) {
        // Shared while we were initialising: finish natively.
        const key = this.#takeInitKey();
        let enc: [unknown, number];
        try {
          enc = encodeKept(v); // v is returned: its bytes must not move
        } catch (e) {
          shared.oAbandon(key);
          throw e;
        }
        shared.oFinish(key, enc[0], enc[1]);
        return v;
      }
      this.#value = v;
      this.#set = true;
      this.#sem.close(); // wakes every waiter, who then read the value
      return v;
    }
  }

  /** The native state (a method, so TypeScript does not narrow it across awaits). */
  #shared(): NCell | undefined {
    return this.#n;
  }

  #takeInitKey(): number {
    const k = this.#initKey;
    this.#initKey = 0;
    return k;
  }

  async #nativeGetOrInit(n: NCell, init: () => T | PromiseLike<T>, signal: AbortSignal | undefined): Promise<T> {
    for (;;) {
      const k = n.oTryBegin();
      if (k === -2) return n.oGet() as T;
      if (k > 0) {
        let v: T;
        try {
          v = await orAbort(init, signal);
        } catch (e) {
          n.oAbandon(k);
          throw e;
        }
        try {
          const [p, tag] = encodeKept(v); // v is returned: its bytes must not move
          n.oFinish(k, p, tag);
        } catch (e) {
          n.oAbandon(k);
          throw e;
        }
        return v;
      }
      await nwait<void>(signal, (id) => n.oWait(id));
    }
  }

  /**
   * Moves the cell into shared memory (if it is not there yet) and returns a handle;
   * `fromShared(handle)` in any worker revives it.
   */
  share(): SyncHandle {
    if (this.#handle !== undefined) return this.#handle;
    if (this.#n === undefined) {
      const [p, tag] = this.#set ? encodeKept(this.#value) : [undefined, 0]; // what get() returned stays intact
      const n = sn().syncOnceCreate(this.#set, p, tag);
      if (!this.#set && this.#sem.permits === 0) {
        // An initialisation is running here: it continues as this env's native initialisation.
        this.#initKey = n.oTryBegin();
      }
      this.#n = n;
      this.#value = undefined;
      this.#sem.close(); // local waiters loop into the native path
    }
    return (this.#handle = makeHandle('OnceCell', this.#n.shareCell()));
  }

  static {
    reviveOnceCell = (n) => {
      const c = new OnceCell<unknown>();
      c.#n = n;
      return c;
    };
  }
}

registerReviver('Notify', (i, g, h, l) => {
  const n = sn().syncReviveNotify(i, g, h, l);
  return n === null ? null : reviveNotify(n);
});
registerReviver('Barrier', (i, g, h, l) => {
  const n = sn().syncReviveBarrier(i, g, h, l);
  return n === null ? null : reviveBarrier(n);
});
registerReviver('OnceCell', (i, g, h, l) => {
  const n = sn().syncReviveCell(CELL.ONCE, i, g, h, l);
  return n === null ? null : reviveOnceCell(n);
});
