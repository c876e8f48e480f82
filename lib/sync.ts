/**
 * `kyoto/sync`: channels and synchronisation primitives with Tokio's semantics — mpsc (bounded
 * and unbounded), oneshot, broadcast, watch, Mutex, RwLock, Semaphore, Notify, Barrier, OnceCell.
 *
 * Within one thread everything runs in plain JS (no native call per operation). `share()` on a
 * Semaphore, Mutex, RwLock, Notify, Barrier or mpsc end moves its state into native memory and
 * returns a structured-cloneable handle; {@link fromShared} revives it in another worker. Waits
 * across threads go through the runtime's batched completion bridge; a worker that exits or is
 * terminated releases what it held (permits, locks, sender clones, its receiver).
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
export { fromShared, type SyncHandle } from './sync/native';
export { MAX_PERMITS, type WaitOptions as SyncWaitOptions } from './sync/internal';
export * from './sync/errors';
