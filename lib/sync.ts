/**
 * `kyoto/sync`: channels and synchronisation primitives with Tokio's semantics — mpsc (bounded
 * and unbounded), oneshot, broadcast, watch, Mutex, RwLock, Semaphore, Notify, Barrier, OnceCell.
 *
 * Within one thread everything runs in plain JS (no native call per operation). `share()` on any
 * of them (or on a channel end) moves its state into native memory and returns a
 * structured-cloneable handle; {@link fromShared} revives it in another worker ({@link dropShared}
 * drops the channel end of a handle whose message may have been lost). Waits across
 * threads go through the runtime's batched completion bridge; a worker that exits or is
 * terminated releases what it held (permits, locks, sender clones, receivers, an unsent oneshot
 * sender, a OnceCell initialisation in progress) — also what it took in same-thread mode before
 * calling `share()`, which counts as that worker's from then on.
 *
 * Garbage collection is a safety net, not a way to release: a channel end collected without
 * `close()` gives back what it held (a sender counts out, a receiver closes or unsubscribes), and
 * so do, once shared, a permit or guard collected without `release()`. In same-thread mode
 * permits and guards hold on to what they took until released (`using` does it): tracking each
 * would cost about as much as the acquire itself on the hot paths.
 *
 * Shared mpsc senders publish numbers, booleans, `null` and `undefined` through a per-sender
 * lock-free ring in native memory (no native call per send; a bounded channel's sender first takes
 * its slot with a compare-and-swap on the capacity semaphore's word, which fails while other
 * senders wait, so a freed slot still goes to the oldest waiting sender), and receivers take
 * messages in batches; other values are structured-cloned, Buffers and ArrayBuffers are moved
 * (copied once into native memory, the sender's detached) — N-API cannot hand a V8 backing store
 * to another isolate, so a large Buffer costs one copy where `MessagePort` transfers it. A value
 * that cannot be structured-cloned (a function, a symbol, ...) fails with a `TypeError` carrying
 * `code: 'ERR_DATA_CLONE'` before anything moves: thrown by synchronous calls, a rejection of
 * Promise-returning ones (a bounded `Sender.send`).
 *
 * Every wait takes `{ signal }`; aborting it behaves as dropping the Tokio future.
 * @module
 */
export * as mpsc from './sync/mpsc';
export * as oneshot from './sync/oneshot';
export * as broadcast from './sync/broadcast';
export * as watch from './sync/watch';
export {
  Semaphore,
  SemaphorePermit,
  Mutex,
  MutexGuard,
  RwLock,
  RwLockReadGuard,
  RwLockWriteGuard,
  DEFAULT_MAX_READERS,
  type RwLockOptions,
} from './sync/semaphore';
export { Notify, Barrier, OnceCell, type BarrierWaitResult } from './sync/notify';
export { fromShared, dropShared, type SyncHandle } from './sync/native';
export { MAX_PERMITS, type WaitOptions as SyncWaitOptions } from './sync/internal';
export * from './sync/errors';
