/**
 * Semaphore, Mutex and RwLock: all three are a batch semaphore (FIFO, partial assignment to the
 * head waiter) as in Tokio. Same-thread use runs in JS; `share()` moves the state into native
 * memory so other workers can revive it with `fromShared`.
 * @module
 */
import { releasedIfUnclaimed } from '../runtime/unclaimed';
import { illegalConstructor, invalidArgType, kConstruct, optionsBag, validateInteger } from '../errors';
import { InvalidStateError, TryAcquireError, TryLockError } from './errors';
import { JsSem, KEY, MAX_PERMITS, notThenable, signalOf, validatePermits, type SemCore, type WaitOptions } from './internal';
import {
  NativeSemCore,
  encodeKept,
  makeHandle,
  payload,
  registerReviver,
  sn,
  tagOf,
  track,
  untrack,
  type NSem,
  type SyncHandle,
} from './native';
import { observingResources, resourceCreated, closeWhenCollected, type Attr } from '../console/instrument';

/**
 * kyoto/console, diagnostics_channel: `obj` becomes a `sync` resource, dropped when garbage-collected;
 * its attributes are read (through a weak reference) when the console publishes.
 */
function observeSync(obj: { _core: SemCore }, type: string, attrs: (core: SemCore, o: object) => Attr[]): void {
  const ref = new WeakRef(obj);
  const read = (): Attr[] | undefined => {
    const o = ref.deref();
    return o === undefined ? undefined : attrs(o._core, o);
  };
  closeWhenCollected(obj, resourceCreated('sync', type, read(), read));
}

function semaphoreAttrs(core: SemCore): Attr[] {
  return [
    { name: 'permits', value: core.available() },
    { name: 'closed', value: core.isClosed() },
  ];
}

function lockAttrs(core: SemCore, o: object): Attr[] {
  const max = o instanceof RwLock ? o._max : 1;
  const free = core.available();
  const attrs: Attr[] = [{ name: 'locked', value: free < max }];
  if (max > 1) attrs.push({ name: 'permits', value: free });
  return attrs;
}

/** Gives back every permit still in native holding `key` (a collected permit or guard). */
function releaseHolding(core: SemCore, key: number): void {
  core.release(key, MAX_PERMITS);
}

const KIND_SEMAPHORE = 1;
const KIND_MUTEX = 2;
const KIND_RWLOCK = 3;

/**
 * Moves a JS semaphore core into native memory; returns the native state. The permits this
 * thread's permits and guards hold become one holding of this thread (released if it dies).
 */
function toNative(core: JsSem, max: number, setCore: (c: SemCore) => void): NSem {
  const n = sn().syncSemCreate(core.freeAndAssigned(), max, core.closed);
  const nc = new NativeSemCore(n, core.held > 0 ? n.adopt(core.held) : 0);
  setCore(nc);
  core.moveWaitersTo((need, signal) => nc.acquire(need, signal, KEY, undefined));
  core.permits = 0;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Semaphore

/**
 * Permits acquired from a {@link Semaphore}. Returned to the semaphore by {@link release} (or
 * `using`); {@link forget} drops them for good. Obtained from `acquire()` / `tryAcquire()`; not
 * constructed directly (`new` throws `ERR_ILLEGAL_CONSTRUCTOR`).
 */
export class SemaphorePermit implements Disposable {
  #sem: Semaphore;
  #key: number;
  #n: number;

  /** @internal */
  constructor(token: typeof kConstruct, sem: Semaphore, key: number, n: number) {
    if (token !== kConstruct) throw illegalConstructor();
    this.#sem = sem;
    this.#key = key;
    this.#n = n;
    if (key !== 0) track(this, releaseHolding, sem._core, key);
  }

  /** How many permits this object holds (0 once released or forgotten). */
  get permits(): number {
    return this.#n;
  }

  /** Returns the permits to the semaphore (idempotent). */
  release(): void {
    const n = this.#n;
    if (n === 0 && this.#key === 0) return;
    if (this.#key !== 0) untrack(this);
    this.#n = 0;
    this.#sem._core.release(this.#key, n);
    this.#key = 0;
  }

  /** Drops the permits without returning them: the semaphore has that many fewer for good. */
  forget(): void {
    const n = this.#n;
    if (this.#key !== 0) untrack(this);
    this.#n = 0;
    this.#sem._core.forget(this.#key, n);
    this.#key = 0;
  }

  /**
   * Splits `n` permits off into a new permit; `undefined` (and nothing changes) if this one holds
   * fewer than `n`.
   */
  split(n: number): SemaphorePermit | undefined {
    validatePermits(n);
    if (n > this.#n) return undefined;
    const key = this.#sem._core.split(this.#key, n);
    this.#n -= n;
    return new SemaphorePermit(kConstruct, this.#sem, key, n);
  }

  /** Moves every permit of `other` (from the same semaphore) into this one. */
  merge(other: SemaphorePermit): void {
    if (!(other instanceof SemaphorePermit)) throw invalidArgType('other', 'an instance of SemaphorePermit', other);
    if (other.#sem !== this.#sem) throw invalidArgType('other', 'a permit of the same semaphore', other);
    if (other === this) return;
    this.#key = this.#sem._core.merge(this.#key, this.#n, other.#key, other.#n);
    this.#n += other.#n;
    if (other.#key !== 0) untrack(other);
    other.#n = 0;
    other.#key = 0;
    if (this.#key !== 0) track(this, releaseHolding, this.#sem._core, this.#key);
  }

  /** Same as {@link release}. */
  [Symbol.dispose](): void {
    this.release();
  }
}
releasedIfUnclaimed(SemaphorePermit.prototype); // a permit a lost select() branch took goes back

// How `fromShared` builds a Semaphore over revived native state. Assigned in the class's static
// block, which can set #native, rather than being a static: user code must not be able to make an
// instance bound to arbitrary state.
let reviveSemaphore: (n: NSem) => Semaphore;

/**
 * A counting semaphore with Tokio's semantics: waiters are served strictly FIFO, and freed
 * permits are assigned incrementally to the head waiter (so a large `acquire(n)` at the head holds
 * back smaller ones behind it, and `availablePermits()` is 0 while it is partly served). An
 * aborted acquire returns what it was partly assigned.
 */
export class Semaphore {
  /**
   * The largest number of permits a semaphore can hold: `2^53 - 1`
   * (`Number.MAX_SAFE_INTEGER`, so every count is exact in JS; Tokio's is `usize::MAX >> 3`).
   * `new Semaphore(n)` and `addPermits` throw a `RangeError` past it.
   */
  static readonly MAX_PERMITS: number = MAX_PERMITS;

  /** @internal */
  _core: SemCore;
  #native: NSem | undefined;
  #handle: SyncHandle | undefined;

  /** @param permits - the initial number of permits (an integer `0..MAX_PERMITS`). */
  constructor(permits: number) {
    validatePermits(permits, 'permits');
    this._core = new JsSem(permits);
    if (observingResources()) observeSync(this, 'Semaphore', semaphoreAttrs);
  }

  /**
   * Waits for `n` permits (FIFO). Rejects with `AcquireError` (`ERR_SEMAPHORE_CLOSED`) once the
   * semaphore is closed, or with the abort reason when `signal` aborts.
   */
  acquire(n = 1, options?: WaitOptions): Promise<SemaphorePermit> {
    validatePermits(n);
    const signal = signalOf(options);
    return this._core.acquire(n, signal, makePermit, this);
  }

  /**
   * Takes `n` permits now. Throws `TryAcquireError` with `kind: 'no_permits'` if fewer are free
   * (or others wait ahead) and `kind: 'closed'` if the semaphore is closed.
   */
  tryAcquire(n = 1): SemaphorePermit {
    validatePermits(n);
    return new SemaphorePermit(kConstruct, this, this._core.tryAcquire(n), n);
  }

  /** Adds `n` permits (served to waiters first). Counts even after `close()`. */
  addPermits(n: number): void {
    validatePermits(n);
    this._core.addPermits(n);
  }

  /** Removes up to `n` free permits; returns how many were removed. */
  forgetPermits(n: number): number {
    validatePermits(n);
    return this._core.forgetPermits(n);
  }

  /** Free permits (0 while the head waiter is partly served). */
  availablePermits(): number {
    return this._core.available();
  }

  /** Fails every pending and future acquire; `tryAcquire` then throws `kind: 'closed'`. */
  close(): void {
    this._core.close();
  }

  /** Whether {@link close} was called. */
  isClosed(): boolean {
    return this._core.isClosed();
  }

  /**
   * Moves this semaphore into shared memory (if it is not there yet) and returns a
   * structured-cloneable handle; `fromShared(handle)` in any worker revives it.
   */
  share(): SyncHandle {
    if (this.#handle !== undefined) return this.#handle;
    if (this.#native === undefined) {
      this.#native = toNative(this._core as JsSem, MAX_PERMITS, (c) => (this._core = c));
    }
    return (this.#handle = makeHandle('Semaphore', this.#native.share(KIND_SEMAPHORE)));
  }

  static {
    reviveSemaphore = (n) => {
      const s = new Semaphore(0);
      s._core = new NativeSemCore(n);
      s.#native = n;
      return s;
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Mutex

/** The holder of shared state's value (JS mode) or its native home. */
abstract class Locked<T> {
  /** @internal */
  _core: SemCore;
  /** @internal */
  _value: T;
  /** @internal */
  _native: NSem | undefined = undefined;
  /**
   * @internal Shared mode: the value as share() found it, for the guards taken before (key 0).
   * Code may hold that object and write through it, as through a Tokio guard across a clone of
   * the Arc: those guards go on giving it out and store it back on release. `_keptHeld`: the
   * permits those guards still hold; at 0 the object is let go.
   */
  _kept: T | undefined = undefined;
  /** @internal */
  _keptHeld = 0;
  #handle: SyncHandle | undefined;

  constructor(value: T, permits: number) {
    this._core = new JsSem(permits);
    this._value = value;
    if (observingResources()) observeSync(this, new.target.name, lockAttrs);
  }

  /** @internal */
  _share(type: string, kind: number, max: number): SyncHandle {
    if (this.#handle !== undefined) return this.#handle;
    if (this._native === undefined) {
      const value = this._value;
      // May throw (ERR_DATA_CLONE) before anything moves. The bytes are copied: a guard may hold them.
      const [p, tag] = encodeKept(value);
      const held = (this._core as JsSem).held;
      const n = toNative(this._core as JsSem, max, (c) => (this._core = c));
      n.setValue(p, tag);
      this._native = n;
      if (held > 0) {
        this._kept = value;
        this._keptHeld = held;
      }
      this._value = undefined as T;
    }
    return (this.#handle = makeHandle(type, this._native.share(kind)));
  }

  /** @internal Guards from before share() gave back `n` permits. */
  _unkeep(n: number): void {
    this._keptHeld -= n;
    if (this._keptHeld <= 0) {
      this._keptHeld = 0;
      this._kept = undefined;
    }
  }
}

/** Access to the value under a lock (shared by the guard kinds). */
abstract class GuardBase<T> implements Disposable {
  /** @internal */
  protected _lock: Locked<T> | null;
  /** @internal */
  protected _key: number;
  /** @internal */
  protected _n: number;
  #fetched = false;
  #cached: T | undefined = undefined;

  /** @internal */
  constructor(token: typeof kConstruct, lock: Locked<T>, key: number, n: number) {
    if (token !== kConstruct) throw illegalConstructor();
    this._lock = lock;
    this._key = key;
    this._n = n;
    // A collected guard unlocks (its value is not stored back, as when its worker dies).
    if (key !== 0) track(this, releaseHolding, lock._core, key);
  }

  /** @internal */
  protected _live(): Locked<T> {
    if (this._lock === null) throw new InvalidStateError('the guard was released');
    return this._lock;
  }

  /** @internal */
  protected _get(): T {
    const l = this._live();
    if (l._native === undefined) return l._value;
    if (!this.#fetched) {
      // A guard from before share() (key 0) goes on with the object it gave out then.
      this.#cached = this._key === 0 ? l._kept : (l._native.getValue() as T);
      this.#fetched = true;
    }
    return this.#cached as T;
  }

  /** @internal */
  protected _set(v: T): void {
    const l = this._live();
    if (l._native === undefined) l._value = v;
    else {
      this.#cached = v;
      this.#fetched = true;
    }
  }

  /** Whether the guard still holds the lock. */
  get held(): boolean {
    return this._lock !== null;
  }

  /** Unlocks (idempotent). In shared mode a value read or written through the guard is stored back first. */
  release(): void {
    const l = this._lock;
    if (l === null) return;
    this._lock = null;
    if (this._key !== 0) untrack(this);
    else if (l._native !== undefined) {
      // A guard from before share(): what was written through the object it gave out is stored.
      if (!this.#fetched) {
        this.#cached = l._kept;
        this.#fetched = true;
      }
      l._unkeep(this._n);
    }
    if (this.#fetched && this._writes()) {
      const v = this.#cached;
      this.#cached = undefined;
      this.#fetched = false;
      const tag = tagOf(v);
      try {
        l._native!.setValue(payload(v, tag), tag);
      } finally {
        l._core.release(this._key, this._n);
      }
      return;
    }
    this.#cached = undefined;
    l._core.release(this._key, this._n);
  }

  /** @internal */
  protected _writes(): boolean {
    return true;
  }

  /** Same as {@link release}. */
  [Symbol.dispose](): void {
    this.release();
  }
}
releasedIfUnclaimed(GuardBase.prototype); // a lock a lost select() branch took is unlocked

/**
 * Exclusive access to a {@link Mutex}'s value until {@link release}. Obtained from `lock()` /
 * `tryLock()`; not constructed directly (`new` throws `ERR_ILLEGAL_CONSTRUCTOR`).
 */
export class MutexGuard<T> extends GuardBase<T> {
  /** The protected value (readable and writable while the guard is held). */
  get value(): T {
    return this._get();
  }

  set value(v: T) {
    this._set(v);
  }
}

/**
 * An async mutex protecting a value, strictly FIFO (the order of `lock()` calls is the order of
 * acquisition; an aborted `lock` loses its place). Shared across workers with {@link share}: the
 * value is then stored natively and structured-cloned in and out of each guard.
 */
export class Mutex<T = void> extends Locked<T> {
  /** @param value - the protected value. */
  constructor(value: T) {
    super(value, 1);
  }

  /** Waits for the lock. */
  lock(options?: WaitOptions): Promise<MutexGuard<T>> {
    const signal = signalOf(options);
    return this._core.acquire(1, signal, makeMutexGuard, this) as Promise<MutexGuard<T>>;
  }

  /** Takes the lock now or throws `TryLockError` (`kind: 'would_block'`). */
  tryLock(): MutexGuard<T> {
    let key: number;
    try {
      key = this._core.tryAcquire(1);
    } catch (e) {
      if (e instanceof TryAcquireError) throw new TryLockError();
      throw e;
    }
    return new MutexGuard<T>(kConstruct, this, key, 1);
  }

  /** Runs `fn` with the lock held and releases it afterwards (also when `fn` throws). */
  async runExclusive<R>(fn: (guard: MutexGuard<T>) => R | Promise<R>, options?: WaitOptions): Promise<R> {
    if (typeof fn !== 'function') throw invalidArgType('fn', 'of type function', fn);
    const g = await this.lock(options);
    try {
      return await fn(g);
    } finally {
      g.release();
    }
  }

  /** Whether the lock is held right now. */
  isLocked(): boolean {
    return this._core.available() === 0;
  }

  /** Moves the mutex into shared memory; returns a handle for `fromShared` in any worker. */
  share(): SyncHandle {
    return this._share('Mutex', KIND_MUTEX, 1);
  }
}

// ---------------------------------------------------------------------------------------------
// RwLock

/** Default `maxReaders` of a {@link RwLock}: `2^29 - 1` (Tokio's `u32::MAX >> 3`). */
export const DEFAULT_MAX_READERS = 0x1fffffff;

/**
 * Shared read access to a {@link RwLock}'s value. Obtained from `read()` / `tryRead()`; not
 * constructed directly (`new` throws `ERR_ILLEGAL_CONSTRUCTOR`).
 */
export class RwLockReadGuard<T> extends GuardBase<T> {
  /** The protected value (read-only). */
  get value(): T {
    return this._get();
  }

  /** @internal */
  protected override _writes(): boolean {
    return false;
  }
}

/**
 * Exclusive write access to a {@link RwLock}'s value. Obtained from `write()` / `tryWrite()`; not
 * constructed directly (`new` throws `ERR_ILLEGAL_CONSTRUCTOR`).
 */
export class RwLockWriteGuard<T> extends GuardBase<T> {
  /** The protected value (readable and writable). */
  get value(): T {
    return this._get();
  }

  set value(v: T) {
    this._set(v);
  }

  /** Turns this write guard into a read guard without letting a writer in between. */
  downgrade(): RwLockReadGuard<T> {
    const l = this._live() as RwLock<T>;
    const v = this._get();
    const key = this._key;
    const extra = this._n - 1;
    if (l._native !== undefined) {
      const [p, tag] = encodeKept(v); // the read guard of a guard from before share() gives out v
      l._native.setValue(p, tag);
      if (key === 0) {
        l._kept = v;
        l._unkeep(extra);
      }
    }
    this._lock = null;
    if (key !== 0) untrack(this);
    l._core.release(key, extra);
    return new RwLockReadGuard<T>(kConstruct, l, key, 1);
  }
}

/** Options of {@link RwLock}. */
export interface RwLockOptions {
  /** How many readers may hold the lock at once (default {@link DEFAULT_MAX_READERS}). */
  maxReaders?: number;
}

/**
 * A fair, write-preferring reader-writer lock (Tokio's): requests are served FIFO, so a queued
 * writer blocks every reader that comes after it. A write takes all `maxReaders` permits.
 */
export class RwLock<T = void> extends Locked<T> {
  /** @internal */
  readonly _max: number;

  /**
   * @param value - the protected value.
   * @param options - `maxReaders` (an integer `1..2^32-1`).
   */
  constructor(value: T, options?: RwLockOptions) {
    const max = optionsBag<RwLockOptions>(options).maxReaders ?? DEFAULT_MAX_READERS;
    validateInteger(max, 'options.maxReaders', 1, 0xffffffff);
    super(value, max);
    this._max = max;
  }

  /** Waits for shared read access. */
  read(options?: WaitOptions): Promise<RwLockReadGuard<T>> {
    const signal = signalOf(options);
    return this._core.acquire(1, signal, makeReadGuard, this) as Promise<RwLockReadGuard<T>>;
  }

  /** Waits for exclusive write access. */
  write(options?: WaitOptions): Promise<RwLockWriteGuard<T>> {
    const signal = signalOf(options);
    return this._core.acquire(this._max, signal, makeWriteGuard, this) as Promise<RwLockWriteGuard<T>>;
  }

  /** Read access now or `TryLockError` (`kind: 'would_block'`). */
  tryRead(): RwLockReadGuard<T> {
    return new RwLockReadGuard<T>(kConstruct, this, this.#try(1), 1);
  }

  /** Write access now or `TryLockError` (`kind: 'would_block'`). */
  tryWrite(): RwLockWriteGuard<T> {
    return new RwLockWriteGuard<T>(kConstruct, this, this.#try(this._max), this._max);
  }

  #try(n: number): number {
    try {
      return this._core.tryAcquire(n);
    } catch (e) {
      if (e instanceof TryAcquireError) throw new TryLockError();
      throw e;
    }
  }

  /** The `maxReaders` this lock was created with. */
  get maxReaders(): number {
    return this._max;
  }

  /** Moves the lock into shared memory; returns a handle for `fromShared` in any worker. */
  share(): SyncHandle {
    return this._share('RwLock', KIND_RWLOCK, this._max);
  }
}

function makePermit(s: Semaphore, key: number, n: number): SemaphorePermit {
  return new SemaphorePermit(kConstruct, s, key, n);
}
function makeMutexGuard(m: Mutex<unknown>, key: number): MutexGuard<unknown> {
  return new MutexGuard(kConstruct, m, key, 1);
}
function makeReadGuard(l: RwLock<unknown>, key: number): RwLockReadGuard<unknown> {
  return new RwLockReadGuard(kConstruct, l, key, 1);
}
function makeWriteGuard(l: RwLock<unknown>, key: number, n: number): RwLockWriteGuard<unknown> {
  return new RwLockWriteGuard(kConstruct, l, key, n);
}

// What acquires resolve with: skip the `then` lookup down to Object.prototype (see notThenable).
notThenable(SemaphorePermit);
notThenable(MutexGuard);
notThenable(RwLockReadGuard);
notThenable(RwLockWriteGuard);

// Module functions, not statics, for the same reason as reviveSemaphore (these need no #private).
function reviveMutex(n: NSem): Mutex<unknown> {
  const m = new Mutex<unknown>(undefined);
  m._core = new NativeSemCore(n);
  m._native = n;
  return m;
}
function reviveRwLock(n: NSem): RwLock<unknown> {
  const l = new RwLock<unknown>(undefined, { maxReaders: n.max() });
  l._core = new NativeSemCore(n);
  l._native = n;
  return l;
}

registerReviver('Semaphore', (i, g, h, l) => {
  const n = sn().syncReviveSem(KIND_SEMAPHORE, i, g, h, l);
  return n === null ? null : reviveSemaphore(n);
});
registerReviver('Mutex', (i, g, h, l) => {
  const n = sn().syncReviveSem(KIND_MUTEX, i, g, h, l);
  return n === null ? null : reviveMutex(n);
});
registerReviver('RwLock', (i, g, h, l) => {
  const n = sn().syncReviveSem(KIND_RWLOCK, i, g, h, l);
  return n === null ? null : reviveRwLock(n);
});
