/**
 * Error classes of `kyoto/sync`. Every class carries a stable `code`; the errors of the `try*`
 * methods also carry a `kind` naming which of Tokio's error variants occurred.
 * @module
 */

/** Base class of every `kyoto/sync` error: an `Error` with a stable `code`. */
export class SyncError extends Error {
  /** Stable machine-readable code, e.g. `'ERR_CHANNEL_CLOSED'`. */
  readonly code: string;

  /**
   * @param code - the stable code.
   * @param message - human-readable text.
   */
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

/** `send` on a channel whose receiving side is gone (or, for broadcast/watch, has no receivers). */
export class SendError extends SyncError {
  /** Always `'closed'`. */
  readonly kind = 'closed' as const;
  /** @param message - human-readable text. */
  constructor(message = 'channel closed') {
    super('ERR_CHANNEL_CLOSED', message);
  }
}

/** Which way a `trySend` failed. */
export type TrySendErrorKind = 'full' | 'closed';

/** `trySend`/`tryReserve` failed: the channel is full (`ERR_CHANNEL_FULL`) or closed (`ERR_CHANNEL_CLOSED`). */
export class TrySendError extends SyncError {
  /** `'full'` or `'closed'`. */
  readonly kind: TrySendErrorKind;
  /** @param kind - `'full'` or `'closed'`. */
  constructor(kind: TrySendErrorKind) {
    super(kind === 'full' ? 'ERR_CHANNEL_FULL' : 'ERR_CHANNEL_CLOSED', kind === 'full' ? 'channel full' : 'channel closed');
    this.kind = kind;
  }
}

/** Which way a receive failed. */
export type RecvErrorKind = 'closed' | 'lagged';

/**
 * A receive failed: the channel closed (`ERR_CHANNEL_CLOSED`, oneshot and watch) or a broadcast
 * receiver fell behind (`ERR_LAGGED`, with `skipped` = the number of values it missed).
 */
export class RecvError extends SyncError {
  /** `'closed'` or `'lagged'`. */
  readonly kind: RecvErrorKind;
  /** For `'lagged'`: how many values were overwritten before this receiver saw them (else 0). */
  readonly skipped: number;
  /**
   * @param kind - `'closed'` or `'lagged'`.
   * @param skipped - the count of missed values (lagged only).
   */
  constructor(kind: RecvErrorKind, skipped = 0) {
    super(
      kind === 'lagged' ? 'ERR_LAGGED' : 'ERR_CHANNEL_CLOSED',
      kind === 'lagged' ? `receiver lagged behind by ${skipped} values` : 'channel closed',
    );
    this.kind = kind;
    this.skipped = skipped;
  }
}

/** Which way a `tryRecv` failed. */
export type TryRecvErrorKind = 'empty' | 'disconnected' | 'closed' | 'lagged';

/**
 * `tryRecv` failed: nothing is buffered (`'empty'`, `ERR_CHANNEL_EMPTY`), the channel is closed and
 * drained (`'disconnected'` for mpsc, `'closed'` for oneshot/broadcast, `ERR_CHANNEL_CLOSED`), or a
 * broadcast receiver lagged (`'lagged'`, `ERR_LAGGED`, with `skipped`).
 */
export class TryRecvError extends SyncError {
  /** What happened. */
  readonly kind: TryRecvErrorKind;
  /** For `'lagged'`: how many values this receiver missed (else 0). */
  readonly skipped: number;
  /**
   * @param kind - what happened.
   * @param skipped - the count of missed values (lagged only).
   */
  constructor(kind: TryRecvErrorKind, skipped = 0) {
    super(
      kind === 'empty' ? 'ERR_CHANNEL_EMPTY' : kind === 'lagged' ? 'ERR_LAGGED' : 'ERR_CHANNEL_CLOSED',
      kind === 'empty'
        ? 'channel empty'
        : kind === 'lagged'
          ? `receiver lagged behind by ${skipped} values`
          : 'channel closed',
    );
    this.kind = kind;
    this.skipped = skipped;
  }
}

/** `acquire` on a closed semaphore (`ERR_SEMAPHORE_CLOSED`). */
export class AcquireError extends SyncError {
  /** Always `'closed'`. */
  readonly kind = 'closed' as const;
  constructor() {
    super('ERR_SEMAPHORE_CLOSED', 'semaphore closed');
  }
}

/** Which way a `tryAcquire` failed. */
export type TryAcquireErrorKind = 'closed' | 'no_permits';

/** `tryAcquire` failed: the semaphore is closed (`ERR_SEMAPHORE_CLOSED`) or has too few free permits (`ERR_NO_PERMITS`). */
export class TryAcquireError extends SyncError {
  /** `'closed'` or `'no_permits'`. */
  readonly kind: TryAcquireErrorKind;
  /** @param kind - `'closed'` or `'no_permits'`. */
  constructor(kind: TryAcquireErrorKind) {
    super(
      kind === 'closed' ? 'ERR_SEMAPHORE_CLOSED' : 'ERR_NO_PERMITS',
      kind === 'closed' ? 'semaphore closed' : 'no permits available',
    );
    this.kind = kind;
  }
}

/** `tryLock`/`tryRead`/`tryWrite` found the lock held (`code: 'ERR_WOULD_BLOCK'`, `kind: 'would_block'`). */
export class TryLockError extends SyncError {
  /** Always `'would_block'`. */
  readonly kind = 'would_block' as const;
  constructor() {
    super('ERR_WOULD_BLOCK', 'the lock is held');
  }
}

/** Which way `OnceCell.set` failed. */
export type SetErrorKind = 'already_initialized' | 'initializing';

/** `OnceCell.set` on a cell that holds a value or is being initialised (`ERR_ONCE_CELL_SET`). */
export class SetError extends SyncError {
  /** `'already_initialized'` or `'initializing'`. */
  readonly kind: SetErrorKind;
  /** @param kind - why the value was not stored. */
  constructor(kind: SetErrorKind) {
    super(
      'ERR_ONCE_CELL_SET',
      kind === 'initializing' ? 'the cell is being initialised' : 'the cell is already initialised',
    );
    this.kind = kind;
  }
}

/** `fromShared` was given something that is not a live handle (`TypeError`, `ERR_INVALID_HANDLE`). */
export class InvalidHandleError extends TypeError {
  /** Always `'ERR_INVALID_HANDLE'`. */
  readonly code = 'ERR_INVALID_HANDLE';
  /** @param message - what was wrong. */
  constructor(message = 'invalid, forged or stale kyoto/sync handle') {
    super(message);
    this.name = 'TypeError';
  }
}

/** A guard, permit or channel end used after it was released, closed or moved (`ERR_INVALID_STATE`). */
export class InvalidStateError extends SyncError {
  /** @param message - what was wrong. */
  constructor(message: string) {
    super('ERR_INVALID_STATE', message);
  }
}
