/**
 * The TypeScript side of shared (cross-thread) mode: the native binding's `kyoto/sync` surface,
 * value encoding, waits through the completion bridge, and handles.
 * @module
 */
import * as v8 from 'node:v8';
import { firstCopy, native } from '../native';
import { cancelOp, submitCallbacks, submitCancellable, type OpOwner } from '../bridge';
import { dataCloneError, invalidArgType, outOfRange } from '../errors';
import { AcquireError, InvalidHandleError, SendError, TryAcquireError } from './errors';
import { MAX_PERMITS, type Make, type SemCore } from './internal';

// A later evaluation of this file in this env (Jest's per-file module registries, a cleared
// require.cache) takes the first one's exports: see firstCopy().
const first = firstCopy('sync/native', exports);

/** Shared semaphore state (Semaphore, Mutex, RwLock). */
export interface NSem {
  tryAcquire(n: number): number;
  acquireWait(id: number, n: number): void;
  release(key: number, n: number): void;
  forget(key: number, n: number): void;
  split(key: number, n: number): number;
  merge(a: number, na: number, b: number, nb: number): number;
  available(): number;
  addPermits(n: number): boolean;
  forgetPermits(n: number): number;
  close(): void;
  isClosed(): boolean;
  max(): number;
  getValue(): unknown;
  setValue(value: unknown, tag: number): void;
  share(kind: number): number[];
  /** Records `n` permits taken before sharing as one holding of this thread; returns its key. */
  adopt(n: number): number;
}

/** Shared mpsc channel state. */
export interface NChan {
  trySend(value: unknown, tag: number): number;
  pushInit(value: unknown, tag: number): void;
  tryReserve(n: number): number;
  reserveWait(id: number, n: number): void;
  permitSend(key: number, value: unknown, tag: number): void;
  permitRelease(key: number, n: number): void;
  tryRecv(): unknown;
  recvMany(limit: number): unknown;
  recvWait(id: number): void;
  closedWait(id: number): void;
  closeRx(): void;
  addSender(): number;
  dropSender(key: number): void;
  dropReceiver(key: number): void;
  rxClosed(): boolean;
  isClosed(): boolean;
  len(): number;
  capacity(): number;
  maxCapacity(): number;
  endKey(): number;
  shareSender(): number[];
  shareReceiver(key: number): number[];
  /**
   * Records what this thread's objects held before sharing (reserved slots, sender clones, the
   * receiver) as holdings of this thread; returns their keys `[slots, senders, receiver]`.
   */
  adopt(slots: number, senders: number, receiver: boolean): number[];
  /** This wrapper's sender ring, or null. */
  senderRing(): ArrayBuffer | null;
  /** The channel's send counter (4 bytes; ring entries take their numbers from it), or null. */
  seqWord(): ArrayBuffer | null;
  /** The capacity semaphore's state word (bounded channels), or null. */
  semWord(): ArrayBuffer | null;
  pushFront(value: unknown, tag: number): void;
  /** Takes up to `limit` messages into {@link BATCH}; the count, or -1 when closed and drained. */
  recvBatch(limit: number): number;
  /** The local id to pass to {@link chanKick}. */
  kickLid: number;
}

/** Shared Notify state. */
export interface NNotify {
  tryTake(): boolean;
  wait(id: number): void;
  notifyOne(): void;
  notifyLast(): void;
  notifyWaiters(): void;
  hasPermit(): boolean;
  share(): number[];
}

/** Shared Barrier state. */
export interface NBarrier {
  wait(id: number): void;
  n(): number;
  share(): number[];
}

/**
 * Shared oneshot / broadcast / watch / OnceCell state (one native class; methods are prefixed by
 * the primitive they apply to).
 */
export interface NCell {
  key(): number;
  aux(): number;
  adoptEnd(which: number, aux: number): number;
  newEnd(which: number, aux: number): number[];
  dropEnd(key: number): void;
  shareEnd(key: number, which: number): number[];
  shareNew(which: number, aux: number): number[];
  shareCell(): number[];
  osSend(value: unknown, tag: number): boolean;
  osTryRecv(): unknown;
  osRecvWait(id: number): void;
  osClosedWait(id: number): void;
  osRxClosed(): boolean;
  osCloseRx(): void;
  osCloseTx(): void;
  bcPut(pos: number, value: unknown, tag: number): void;
  bcSend(value: unknown, tag: number): number;
  bcTryRecv(id: number): unknown;
  bcRecvWait(opId: number, id: number): void;
  bcClosedWait(opId: number): void;
  bcRxCount(): number;
  bcLen(): number;
  bcRxLen(id: number): number;
  bcIsClosed(): boolean;
  bcCap(): number;
  wSend(value: unknown, tag: number, requireRx: boolean): number;
  wReplace(value: unknown, tag: number): unknown;
  wModifyBegin(): [unknown, number];
  wModifyEnd(key: number, store: boolean, value: unknown, tag: number, notify: boolean): void;
  wBorrow(): [unknown, number];
  wVersion(): number;
  wRxCount(): number;
  wIsClosed(): boolean;
  wChangedWait(id: number, seen: number): void;
  wClosedWait(id: number): void;
  oTryBegin(): number;
  oFinish(key: number, value: unknown, tag: number): boolean;
  oAbandon(key: number): void;
  oSet(value: unknown, tag: number): number;
  oGet(): unknown;
  oWait(id: number): void;
}

/** End / handle kinds of {@link NCell} objects (must match `cells_js.rs`). */
export const CELL = {
  OS_TX: 10,
  OS_RX: 11,
  BC_TX: 12,
  BC_RX: 13,
  W_TX: 14,
  W_RX: 15,
  ONCE: 16,
} as const;

interface SyncNativeRaw extends SyncNative {
  syncChanTrySend(lid: number, value: unknown, tag: number): number;
  syncChanTryRecv(lid: number): unknown;
  syncChanRecvMany(lid: number, limit: number): unknown;
  syncChanRecvBatch(lid: number, limit: number): number;
  syncChanKick(lid: number): void;
  syncSemTryAcquire(lid: number, n: number): number;
  syncSemRelease(lid: number, key: number, n: number): void;
}

interface SyncNative {
  syncInit(
    deserialize: (buf: Buffer) => unknown,
    empty: object,
    closed: object,
    kinds: Uint8Array,
    nums: Float64Array,
    others: unknown[],
  ): void;
  syncSemCreate(permits: number, max: number, closed: boolean): NSem;
  syncReviveSem(kind: number, index: number, gen: number, hi: number, lo: number): NSem | null;
  syncChanCreate(cap: number, free: number, txCount: number, rxClosed: boolean): NChan;
  syncReviveChan(kind: number, index: number, gen: number, hi: number, lo: number): NChan | null;
  syncNotifyCreate(permit: boolean): NNotify;
  syncReviveNotify(index: number, gen: number, hi: number, lo: number): NNotify | null;
  syncBarrierCreate(n: number, arrived: number): NBarrier;
  syncReviveBarrier(index: number, gen: number, hi: number, lo: number): NBarrier | null;
  syncOneshotCreate(has: boolean, value: unknown, tag: number, txClosed: boolean, rxClosed: boolean, taken: boolean): NCell;
  syncBcastCreate(cap: number, tail: number, tx: number): NCell;
  syncWatchCreate(value: unknown, tag: number, version: number, tx: number): NCell;
  syncOnceCreate(has: boolean, value: unknown, tag: number): NCell;
  syncReviveCell(kind: number, index: number, gen: number, hi: number, lo: number): NCell | null;
  syncBcLagged(): number;
  syncDropHandle(kind: number, index: number, gen: number, hi: number, lo: number): boolean;
}

/** Returned by a native non-blocking receive when nothing is buffered. */
export const EMPTY: object = Object.freeze({ empty: true });
/** Returned by a native non-blocking receive when the channel is closed and drained. */
export const CLOSED: object = Object.freeze({ closed: true });

let api: SyncNative | undefined;

/** How many messages one batch receive can carry. */
export const BATCH_MAX = 4096;

/**
 * The arrays native batch receives write into (one set per thread): per message a kind (0 number,
 * 1 undefined, 2 null, 3 false, 4 true, 5 the next element of `others`) and, for numbers, the value.
 */
export const BATCH = {
  kinds: new Uint8Array(BATCH_MAX),
  nums: new Float64Array(BATCH_MAX),
  others: [] as unknown[],
};

// napi-rs class methods pay a type-tag check per call (~300 ns); the hot ones are rebound to plain
// native functions that take the object's per-thread local id (~30 ns).
/**
 * Wakes the channel's waiting receiver after a ring publish: the native function itself, called
 * directly. A JS wrapper would run a stack check on entry, which throws at the stack's limit (or
 * stops a terminating Worker) after the value was published, leaving the receiver asleep; a native
 * call has no such check.
 */
export const chanKick: (lid: number) => void = (native as unknown as SyncNativeRaw).syncChanKick;

function fastChan<T extends NChan | null>(c: T): T {
  if (c === null) return c;
  const n = native as unknown as SyncNativeRaw;
  const lid = (c as unknown as { lid(): number }).lid();
  const f = c as NChan;
  f.trySend = (v, tag) => n.syncChanTrySend(lid, v, tag);
  f.tryRecv = () => n.syncChanTryRecv(lid);
  f.recvMany = (limit) => n.syncChanRecvMany(lid, limit);
  f.recvBatch = (limit) => n.syncChanRecvBatch(lid, limit);
  f.kickLid = lid;
  return c;
}

function fastSem<T extends NSem | null>(s: T): T {
  if (s === null) return s;
  const n = native as unknown as SyncNativeRaw;
  const lid = (s as unknown as { lid(): number }).lid();
  const f = s as NSem;
  f.tryAcquire = (k) => n.syncSemTryAcquire(lid, k);
  f.release = (key, k) => n.syncSemRelease(lid, key, k);
  return s;
}

/** The native binding, initialised for this thread on first use. */
export function sn(): SyncNative {
  if (api !== undefined) return api;
  const n = native as unknown as SyncNativeRaw;
  if (typeof n.syncInit !== 'function') {
    throw new Error('kyoto/sync: the native addon was built without shared-mode support');
  }
  n.syncInit((buf) => v8.deserialize(buf), EMPTY, CLOSED, BATCH.kinds, BATCH.nums, BATCH.others);
  api = {
    syncInit: n.syncInit,
    syncSemCreate: (p, m, c) => fastSem(n.syncSemCreate(p, m, c)),
    syncReviveSem: (k, i, g, h, l) => fastSem(n.syncReviveSem(k, i, g, h, l)),
    syncChanCreate: (cap, free, tx, closed) => fastChan(n.syncChanCreate(cap, free, tx, closed)),
    syncReviveChan: (k, i, g, h, l) => fastChan(n.syncReviveChan(k, i, g, h, l)),
    syncNotifyCreate: n.syncNotifyCreate,
    syncReviveNotify: n.syncReviveNotify,
    syncBarrierCreate: n.syncBarrierCreate,
    syncReviveBarrier: n.syncReviveBarrier,
    syncOneshotCreate: n.syncOneshotCreate,
    syncBcastCreate: n.syncBcastCreate,
    syncWatchCreate: n.syncWatchCreate,
    syncOnceCreate: n.syncOnceCreate,
    syncReviveCell: n.syncReviveCell,
    syncBcLagged: n.syncBcLagged,
    syncDropHandle: n.syncDropHandle,
  };
  return api;
}

/** Value tags understood by the native side. */
export const TAG_PLAIN = 0;
export const TAG_CLONED = 1;
export const TAG_BUFFER = 2;

/**
 * How a value crosses threads: primitives as themselves, Buffers / typed arrays / DataViews /
 * ArrayBuffers moved (their bytes are copied once into native memory and the sender's
 * ArrayBuffer detached), everything else structured-cloned with `v8.serialize`.
 */
export function tagOf(v: unknown): number {
  const t = typeof v;
  if (t === 'object') {
    if (v === null) return TAG_PLAIN;
    if (Buffer.isBuffer(v)) return TAG_BUFFER;
    if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return TAG_PLAIN;
    return TAG_CLONED;
  }
  if (t === 'function' || t === 'symbol' || t === 'bigint') return TAG_CLONED;
  return TAG_PLAIN;
}

/**
 * `v8.serialize` (which is exactly this: a `DefaultSerializer`, header, value, buffer) except that a
 * value that cannot be cloned throws {@link dataCloneError} (`TypeError`, `ERR_DATA_CLONE`) instead
 * of a plain `Error` without a code. Errors thrown by the value itself (a throwing getter) pass
 * through unchanged: V8 asks for a clone error only when it cannot clone.
 */
class CloneSerializer extends v8.DefaultSerializer {
  _getDataCloneError(message: string): Error {
    return dataCloneError(message);
  }
}

function serialize(v: unknown): Buffer {
  const ser = new CloneSerializer();
  ser.writeHeader();
  ser.writeValue(v);
  return ser.releaseBuffer();
}

/**
 * The value to hand to native code for `tag`. Throws `TypeError` with `code: 'ERR_DATA_CLONE'`
 * when the value cannot be structured-cloned.
 */
export function payload(v: unknown, tag: number): unknown {
  return tag === TAG_CLONED ? serialize(v) : v;
}

const OWNER = { _ownerTag: true } as OpOwner;

/** A cross-thread wait: `start(id)` queues a native waiter naming op `id` of this env. */
export function nwait<T>(signal: AbortSignal | undefined, start: (id: number) => void): Promise<T> {
  return submitCancellable<T>(OWNER, signal, (id) => start(id));
}

const ignore = (): void => {};

/**
 * A cross-thread wait nobody awaits any more, whose start still counts (an aborted Barrier
 * arrival carried over by `share()`): started, then cancelled at once, so it holds no event loop.
 */
export function nwaitAbandoned(start: (id: number) => void): void {
  cancelOp(submitCallbacks(OWNER, start, ignore, ignore));
}

function mapSemError(e: unknown): never {
  if ((e as { code?: string })?.code === 'ERR_SEMAPHORE_CLOSED') throw new AcquireError();
  throw e;
}

/** What a collected object still had to give back: `f(a, k)` gives it back. */
interface Leftover {
  f: (a: any, k: number) => void; // eslint-disable-line @typescript-eslint/no-explicit-any
  a: unknown;
  k: number;
}

const finalizer = new FinalizationRegistry<Leftover>((h) => {
  try {
    h.f(h.a, h.k);
  } catch {
    // The thread is going away (its holdings are released by the env teardown anyway).
  }
});

/**
 * Safety net: when `obj` (a permit, guard or channel end) is garbage-collected without being
 * released or closed, `f(a, k)` runs to give back what it held (as dropping it would in Tokio).
 * `a` must not reference `obj`. Tracking again replaces the previous entry. Used for shared
 * objects and same-thread channel ends, not same-thread permits and guards (see the module doc of
 * `kyoto/sync`): registering costs ~0.3 µs, too much for every acquire.
 */
export function track<A>(obj: object, f: (a: A, k: number) => void, a: A, k = 0): void {
  finalizer.unregister(obj);
  finalizer.register(obj, { f, a, k }, obj);
}

/** Ends {@link track}ing `obj` (it was released, closed or moved explicitly). */
export function untrack(obj: object): void {
  finalizer.unregister(obj);
}

/** Encodes `v` for native code: `[payload, tag]` (throws `ERR_DATA_CLONE` before anything moves). */
export function encode(v: unknown): [unknown, number] {
  const tag = tagOf(v);
  return [payload(v, tag), tag];
}

/**
 * Like {@link encode}, for a value that JS code can still reach afterwards — one a receiver already
 * got, a borrower holds or a call returns: a Buffer, typed array, DataView or ArrayBuffer is copied
 * first, so moving it into native memory detaches the copy and not the bytes that code holds.
 */
export function encodeKept(v: unknown): [unknown, number] {
  return encode(copyBytes(v));
}

function copyBytes(v: unknown): unknown {
  if (typeof v !== 'object' || v === null) return v;
  if (v instanceof ArrayBuffer) return v.slice(0);
  if (!ArrayBuffer.isView(v)) return v;
  if (Buffer.isBuffer(v)) return Buffer.from(v); // (a Buffer's slice() is a view, not a copy)
  if (v instanceof DataView) return new DataView(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
  return (v as unknown as Uint8Array).slice();
}

/** Maps a native "semaphore closed" (a channel's capacity) to a channel `SendError`. */
export function mapSendError(e: unknown): never {
  if (e instanceof AcquireError || (e as { code?: string })?.code === 'ERR_SEMAPHORE_CLOSED') throw new SendError();
  throw e;
}

/**
 * A {@link SemCore} over shared native state. Grants made before the object was shared carry key 0;
 * they are counted in this thread's holding `legacy` (see `NSem.adopt`), which key 0 stands for.
 */
export class NativeSemCore implements SemCore {
  readonly native = true;
  constructor(
    readonly n: NSem,
    readonly legacy = 0,
  ) {}

  acquire<T, O>(need: number, signal: AbortSignal | undefined, make: Make<T, O>, owner: O): Promise<T> {
    const k = this.n.tryAcquire(need);
    if (k >= 0) return Promise.resolve(make(owner, k, need));
    if (k === -2) return Promise.reject(new AcquireError());
    return nwait<number>(signal, (id) => this.n.acquireWait(id, need)).then((key) => make(owner, key, need), mapSemError);
  }

  tryAcquire(need: number): number {
    const k = this.n.tryAcquire(need);
    if (k >= 0) return k;
    throw new TryAcquireError(k === -2 ? 'closed' : 'no_permits');
  }

  release(key: number, n: number): void {
    this.n.release(key === 0 ? this.legacy : key, n);
  }

  forget(key: number, n: number): void {
    this.n.forget(key === 0 ? this.legacy : key, n);
  }

  split(key: number, n: number): number {
    return this.n.split(key === 0 ? this.legacy : key, n);
  }

  merge(a: number, na: number, b: number, nb: number): number {
    return this.n.merge(a === 0 ? this.legacy : a, na, b === 0 ? this.legacy : b, nb);
  }

  available(): number {
    return this.n.available();
  }

  addPermits(n: number): void {
    if (!this.n.addPermits(n)) throw outOfRange('n', `<= ${MAX_PERMITS - this.n.available()} (MAX_PERMITS - available)`, n);
  }

  forgetPermits(n: number): number {
    return this.n.forgetPermits(n);
  }

  close(): void {
    this.n.close();
  }

  isClosed(): boolean {
    return this.n.isClosed();
  }
}

// ---------------------------------------------------------------------------------------------
// Handles

/**
 * A structured-cloneable reference to a shared primitive or channel end, made by `share()` and
 * revived by `fromShared()`. Plain data: a registry slot, its generation and a random 64-bit
 * secret — never a pointer.
 */
export interface SyncHandle {
  /** Marks a kyoto/sync handle (always 1). */
  readonly kyotoSync: 1;
  /** The class it revives as, e.g. `'Semaphore'`, `'mpsc.Sender'`. */
  readonly type: string;
  /** Registry slot. */
  readonly index: number;
  /** Slot generation. */
  readonly gen: number;
  /** 16 hex digits. */
  readonly secret: string;
}

const hex8 = (n: number): string => n.toString(16).padStart(8, '0');

/** Builds a handle from native `[index, gen, hi, lo]`. */
export function makeHandle(type: string, parts: number[]): SyncHandle {
  return Object.freeze({
    kyotoSync: 1 as const,
    type,
    index: parts[0],
    gen: parts[1],
    secret: hex8(parts[2]) + hex8(parts[3]),
  });
}

const u32 = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 0xffffffff;

/** Parses a handle; throws `ERR_INVALID_HANDLE` when malformed. Returns `[type, index, gen, hi, lo]`. */
export function parseHandle(h: unknown): [string, number, number, number, number] {
  if (h === null || typeof h !== 'object') throw new InvalidHandleError('a kyoto/sync handle must be an object');
  const o = h as Record<string, unknown>;
  let secret: unknown, type: unknown, index: unknown, gen: unknown, mark: unknown;
  try {
    ({ kyotoSync: mark, type, index, gen, secret } = o);
  } catch {
    throw new InvalidHandleError();
  }
  if (mark !== 1 || typeof type !== 'string' || !u32(index) || !u32(gen) || typeof secret !== 'string' || !/^[0-9a-f]{16}$/.test(secret)) {
    throw new InvalidHandleError();
  }
  return [type, index, gen, parseInt(secret.slice(0, 8), 16), parseInt(secret.slice(8), 16)];
}

type Reviver = (index: number, gen: number, hi: number, lo: number) => object | null;
const revivers = new Map<string, Reviver>();

/** Registers how handles of `type` are revived. */
export function registerReviver(type: string, r: Reviver): void {
  revivers.set(type, r);
}

/**
 * Revives a handle made by `share()` (possibly in another worker): returns an object of the same
 * class bound to the same shared state. Sender handles and receiver handles are revivable once
 * (each carries one channel end); primitive handles any number of times while the primitive is
 * alive somewhere. A forged, stale or malformed handle throws a `TypeError` with
 * `code: 'ERR_INVALID_HANDLE'`.
 */
export function fromShared<T = unknown>(handle: SyncHandle): T {
  const [type, index, gen, hi, lo] = parseHandle(handle);
  const r = revivers.get(type);
  if (r === undefined) throw new InvalidHandleError(`unknown kyoto/sync handle type`);
  const obj = r(index, gen, hi, lo);
  if (obj === null) throw new InvalidHandleError();
  return obj as T;
}

/** The native kind of each handle type that carries a channel end (see `sync_drop_handle`). */
const END_KINDS: ReadonlyMap<string, number> = new Map([
  ['mpsc.Sender', 4],
  ['mpsc.Receiver', 5],
  ['mpsc.UnboundedSender', 6],
  ['mpsc.UnboundedReceiver', 7],
  ['oneshot.Sender', CELL.OS_TX],
  ['oneshot.Receiver', CELL.OS_RX],
  ['broadcast.Sender', CELL.BC_TX],
  ['broadcast.Receiver', CELL.BC_RX],
  ['watch.Sender', CELL.W_TX],
  ['watch.Receiver', CELL.W_RX],
]);

/**
 * Drops the channel end a handle carries without reviving it, as reviving it and closing the end
 * would: a sender clone counts out, a receiver closes its channel. Returns true if it did, false if
 * there was nothing to drop (the handle was already revived — then whoever revived it owns the
 * end —, already dropped, or is a primitive's handle).
 *
 * Until it is revived, the end a handle carries belongs to no thread: if the message carrying it
 * is lost (posted to a worker that is terminated before it handles it), nothing would ever drop
 * it and the channel would never close. Call this when a handle's recipient may not have revived
 * it, e.g. on the worker's `'exit'`: it cannot race with a revival (exactly one of them gets the
 * end). A malformed handle throws a `TypeError` with `code: 'ERR_INVALID_HANDLE'`.
 */
export function dropShared(handle: SyncHandle): boolean {
  const [type, index, gen, hi, lo] = parseHandle(handle);
  if (!revivers.has(type)) throw new InvalidHandleError(`unknown kyoto/sync handle type`);
  const kind = END_KINDS.get(type);
  if (kind === undefined) return false;
  return sn().syncDropHandle(kind, index, gen, hi, lo);
}

/** @internal */
export function checkType(value: unknown, ctor: abstract new (...a: never[]) => unknown, name: string, expected: string): void {
  if (!(value instanceof ctor)) throw invalidArgType(name, expected, value);
}

if (first !== exports) module.exports = first;
