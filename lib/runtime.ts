/**
 * `kyoto/runtime`: native runtimes, the lazily started default runtime, metrics and shutdown.
 * @module
 */
import { native, type NativeRuntime } from './native';
import { rejectAll, submit, type OpOwner } from './bridge';
import type { JoinHandle } from './task';
import {
  invalidArgValue,
  optionsBag,
  runtimeShutdownError,
  validateDuration,
  validateInteger,
  validateString,
} from './errors';

/** Options of {@link Runtime}. */
export interface RuntimeOptions {
  /** `'multi_thread'` (work-stealing, default) or `'current_thread'` (one thread). */
  flavor?: 'multi_thread' | 'current_thread';
  /** Worker threads of a multi-thread runtime; default one per core. */
  workerThreads?: number;
  /** Prefix of the runtime threads' names (no NUL characters). */
  threadName?: string;
  /** Scheduler ticks between two polls of the I/O and timer driver (Tokio default 61). */
  eventInterval?: number;
  /** Scheduler ticks between two checks of the global queue. */
  globalQueueInterval?: number;
  /** Cap on the blocking pool's threads. */
  maxBlockingThreads?: number;
}

/** A snapshot of a runtime's counters, as returned by {@link Runtime.metrics}. */
export interface RuntimeMetrics {
  /** The runtime's flavor. */
  flavor: 'multi_thread' | 'current_thread';
  /** Number of worker threads. */
  workers: number;
  /** Tasks spawned and not yet finished. */
  aliveTasks: number;
  /** Tasks spawned since start. */
  spawnedTasks: number;
  /** Tasks waiting in the global (injector) queue. */
  globalQueueDepth: number;
  /** Per worker: tasks polled. */
  workerPollCount: number[];
  /** Per worker: steal operations that took work from another worker. */
  workerStealCount: number[];
  /** Per worker: times the worker parked. */
  workerParkCount: number[];
  /** Per worker: tasks in its local queue. */
  workerLocalQueueDepth: number[];
  /** I/O readiness events dispatched by the reactor. */
  ioEvents: number;
  /** Times a task was forced to yield because its cooperative budget ran out. */
  budgetForcedYields: number;
  /**
   * Live threads of the blocking pools: the native runtime's, plus the worker threads that
   * `spawnBlocking` started for this runtime in the calling JS thread (each JS thread has its own).
   */
  blockingThreads: number;
}

/** Options bag accepted by every operation that may run on a specific runtime. */
export interface RuntimeOption {
  /** The runtime to use instead of the default one. */
  runtime?: Runtime;
}

const MAX_U32 = 2 ** 32 - 1;

function nativeOptions(opts: RuntimeOptions): {
  flavor?: string;
  workerThreads?: number;
  threadName?: string;
  eventInterval?: number;
  globalQueueInterval?: number;
  maxBlockingThreads?: number;
} {
  const out: ReturnType<typeof nativeOptions> = {};
  // Each option is read once: a getter answering differently on a second read must not slip an
  // unchecked value past the checks (the native ones have no Node-style codes or upper bounds).
  const { flavor, workerThreads, threadName, eventInterval, globalQueueInterval, maxBlockingThreads } = opts;
  if (flavor !== undefined) {
    validateString(flavor, 'options.flavor');
    if (flavor !== 'multi_thread' && flavor !== 'current_thread') {
      throw invalidArgValue('options.flavor', "must be 'multi_thread' or 'current_thread'", flavor);
    }
    out.flavor = flavor;
  }
  if (workerThreads !== undefined) {
    validateInteger(workerThreads, 'options.workerThreads', 1, 1024);
    out.workerThreads = workerThreads;
  }
  if (threadName !== undefined) {
    validateString(threadName, 'options.threadName');
    // Thread names are C strings.
    if (threadName.includes('\0')) {
      throw invalidArgValue('options.threadName', 'must not contain null characters', threadName);
    }
    out.threadName = threadName;
  }
  if (eventInterval !== undefined) {
    validateInteger(eventInterval, 'options.eventInterval', 1, MAX_U32);
    out.eventInterval = eventInterval;
  }
  if (globalQueueInterval !== undefined) {
    validateInteger(globalQueueInterval, 'options.globalQueueInterval', 1, MAX_U32);
    out.globalQueueInterval = globalQueueInterval;
  }
  if (maxBlockingThreads !== undefined) {
    validateInteger(maxBlockingThreads, 'options.maxBlockingThreads', 1, 65536);
    out.maxBlockingThreads = maxBlockingThreads;
  }
  return out;
}

let defaultRuntime: Runtime | undefined;
let blockingModule: typeof import('./task/blocking') | undefined;
const SHARED = Symbol('kyoto.shared');

/**
 * A kyoto runtime: a pool of native worker threads (or one thread) running timers, tasks and I/O.
 *
 * A runtime never keeps the process alive by itself; its pending operations do, like Node handles.
 * Most programs use the lazily started {@link Runtime.default} runtime, shared by every
 * `worker_threads` thread of the process.
 */
export class Runtime implements OpOwner {
  /** @internal */
  readonly _ownerTag = true as const;
  #native: NativeRuntime;
  #closed = false;
  #shared: boolean;
  #shutdownPromise: Promise<void> | undefined;

  /**
   * Starts a runtime owned by the calling thread (shut down when the thread exits).
   * @param options - flavor and scheduler knobs; see {@link RuntimeOptions}.
   * @throws TypeError `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE` on bad options,
   *   RangeError `ERR_OUT_OF_RANGE` on out-of-range numbers.
   */
  constructor(options?: RuntimeOptions);
  /** @internal */
  constructor(options: RuntimeOptions | undefined, shared: typeof SHARED);
  constructor(options?: RuntimeOptions, shared?: typeof SHARED) {
    const opts = nativeOptions(optionsBag<RuntimeOptions>(options));
    this.#shared = shared === SHARED;
    this.#native = this.#shared ? native.NativeRuntime.shared() : new native.NativeRuntime(opts);
  }

  /** This thread's timers on this runtime (owned by `kyoto/time`). @internal */
  _timers: unknown = undefined;

  /** This thread's blocking pool on this runtime (owned by `kyoto/task`). @internal */
  _blocking: unknown = undefined;

  #shutdownHooks: (() => void)[] = [];

  /** Runs `fn` when this runtime is shut down. @internal */
  _onShutdown(fn: () => void): void {
    this.#shutdownHooks.push(fn);
  }

  /** The `maxBlockingThreads` option. @internal */
  get _maxBlockingThreads(): number | undefined {
    return this.#native.maxBlockingThreads ?? undefined;
  }

  /**
   * Like `spawnBlocking` of `kyoto/task`, on this runtime's blocking pool (`maxBlockingThreads`
   * worker threads, default one per core).
   * @param moduleUrl - a `file:` URL or an absolute path of the module.
   * @param exportName - the exported function to run.
   * @param args - its arguments (structured-cloned).
   */
  spawnBlocking<T = unknown>(moduleUrl: string | URL, exportName: string, ...args: unknown[]): JoinHandle<T> {
    // Loaded on demand (once): the pool's module imports this one.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    blockingModule ??= require('./task/blocking') as typeof import('./task/blocking');
    return blockingModule.spawnBlockingOn<T>(this, moduleUrl, exportName, args);
  }

  /** Whether this is (a handle of) the process-wide default runtime. @internal */
  get _isShared(): boolean {
    return this.#shared;
  }

  /**
   * The default runtime: multi-thread, one worker per core (`KYOTO_WORKER_THREADS` overrides with
   * an integer from 1 to 1024; other values are ignored), started on first use and shared by every
   * thread of the process.
   */
  static default(): Runtime {
    if (defaultRuntime === undefined || defaultRuntime.#closed) {
      // The worker count comes from the native builder's default: `KYOTO_WORKER_THREADS`, else
      // one per core.
      defaultRuntime = new Runtime(undefined, SHARED);
    }
    return defaultRuntime;
  }

  /** Whether {@link Runtime.shutdown} was called. */
  get isShutdown(): boolean {
    return this.#closed;
  }

  /** A snapshot of the runtime's counters. */
  metrics(): RuntimeMetrics {
    const m = this.#native.metrics() as RuntimeMetrics;
    const pool = this._blocking as { readonly liveWorkers: number } | undefined;
    if (pool !== undefined) m.blockingThreads += pool.liveWorkers;
    return m;
  }

  /**
   * Shuts the runtime down: every operation pending on it rejects with `ERR_RUNTIME_SHUTDOWN`, its
   * tasks are dropped and its threads stop (waiting at most `timeoutMs` for them). Its sockets end
   * as well: their waits reject with `ERR_RUNTIME_SHUTDOWN`, and so do later calls on them (writes
   * acknowledged before go out first), addresses included, and their descriptors close without
   * waiting for `close()`: a stream's peer reads end of stream after those writes, a listener
   * refuses new connections (a later `close()` does nothing). Shutting down the shared default runtime only affects the
   * calling thread's operations and sockets (those made without `{ runtime }`, or with this
   * handle); the next use of {@link Runtime.default} gets a fresh handle, and sockets made
   * afterwards work. JS tasks (`spawn`, `JoinSet`) run on the thread's own event loop, not on a
   * runtime, so they are not aborted: a task whose pending operation rejects with
   * `ERR_RUNTIME_SHUTDOWN` fails with it (its `JoinError`'s `cause`) unless it catches it.
   * @param timeoutMs - how long to wait for the threads to stop; default 5000.
   */
  shutdown(timeoutMs = 5000): Promise<void> {
    validateDuration(timeoutMs, 'timeoutMs');
    if (this.#shutdownPromise !== undefined) return this.#shutdownPromise;
    this.#closed = true;
    if (this.#shared) native.netShutdownDefault();
    let failed: { readonly err: unknown } | undefined;
    try {
      rejectAll(this, runtimeShutdownError);
    } catch (err) {
      failed = { err };
    }
    for (const fn of this.#shutdownHooks.splice(0)) fn();
    const nativeRt = this.#native;
    const done = submit<void>(SHUTDOWN_OWNER, (id) => nativeRt.shutdown(id, timeoutMs));
    this.#shutdownPromise = done;
    // A pending operation's callback threw as it was rejected (a caller's signal whose
    // removeEventListener throws): the runtime shut down all the same, and the caller gets the error.
    if (failed !== undefined) throw failed.err;
    return done;
  }

  /** The native handle; throws `ERR_RUNTIME_SHUTDOWN` once shut down. @internal */
  _native(): NativeRuntime {
    if (this.#closed) throw runtimeShutdownError();
    return this.#native;
  }

  /** @internal */
  get [Symbol.toStringTag](): string {
    return 'Runtime';
  }
}

const SHUTDOWN_OWNER: OpOwner = { _ownerTag: true };

