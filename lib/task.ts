/**
 * `kyoto/task`: JS tasks with Tokio's shape — `spawn` → `JoinHandle`, `JoinError`, `JoinSet`,
 * `select`, `yieldNow` — and `spawnBlocking` on a pool of worker threads. Tasks run on the calling
 * JS thread; cancellation is an `AbortSignal`.
 * @module
 */
import {
  invalidArgType,
  invalidArgValue,
  optionsBag,
  validateFunction,
  validateSignal,
  validateString,
  abortReason,
  AbortError,
} from './errors';
import { Runtime } from './runtime';
import { spawnBlockingOn } from './task/blocking';
import { nextTurn } from './runtime/turn';
import { disposeUnclaimed, inClaimWindow } from './runtime/unclaimed';
import { observingTasks, taskSpawned, taskEnded, firstPoll, type TaskRec, type TaskOutcome } from './console/instrument';

let nextTaskId = 1;

/** Why a task did not produce a value: it was cancelled (aborted) or it "panicked" (threw). */
export class JoinError extends Error {
  /** The task's id. */
  readonly id: number;
  /** Always `'ERR_TASK_CANCELLED'` or `'ERR_TASK_PANICKED'`. */
  readonly code: 'ERR_TASK_CANCELLED' | 'ERR_TASK_PANICKED';
  readonly #cancelled: boolean;

  /** @internal */
  constructor(id: number, cancelled: boolean, cause?: unknown) {
    super(
      cancelled ? `task ${id} was cancelled` : `task ${id} panicked with message ${JSON.stringify(panicMessage(cause))}`,
      cause === undefined ? undefined : { cause },
    );
    this.name = 'JoinError';
    this.id = id;
    this.#cancelled = cancelled;
    this.code = cancelled ? 'ERR_TASK_CANCELLED' : 'ERR_TASK_PANICKED';
  }

  /** True when the task was aborted before it finished. */
  isCancelled(): boolean {
    return this.#cancelled;
  }

  /** True when the task threw (or its promise rejected) on its own. */
  isPanic(): boolean {
    return !this.#cancelled;
  }
}

function panicMessage(cause: unknown): string {
  if (cause instanceof Error) return cause.message;
  if (typeof cause === 'string') return cause;
  try {
    return String(cause);
  } catch {
    return 'Box<dyn Any>';
  }
}

type Outcome<T> = { ok: true; value: T } | { ok: false; error: JoinError };

/** Options of {@link spawn}. */
export interface SpawnOptions {
  /** A name for diagnostics. */
  name?: string;
}

/** A task body: receives an `AbortSignal` that fires when the task is aborted. */
export type TaskFn<T> = (signal: AbortSignal) => PromiseLike<T> | T;


/**
 * The handle of a spawned task: `await` it for the task's value (it rejects with a
 * {@link JoinError}); `abort()` cancels the task. Not awaiting it detaches the task, and a failing
 * detached task never becomes an unhandled rejection.
 */
export class JoinHandle<T> implements PromiseLike<T> {
  /** The task's id (unique in this thread). */
  readonly id: number;
  /** The name given at spawn, if any. */
  readonly name: string | undefined;
  #ac: AbortController | undefined;
  #finished = false;
  /** For a task run elsewhere (spawnBlocking): cancels it if it has not started. */
  #cancel: (() => boolean) | undefined;
  #settle: ((o: Outcome<T>) => void) | undefined;
  /** @internal Settles with the outcome; never rejects. */
  readonly _outcome: Promise<Outcome<T>>;
  #result: Promise<T> | undefined;
  /** Spawned while a console served or a `kyoto:task:*` channel had subscribers. */
  #observed = false;
  #rec: TaskRec | undefined;

  /**
   * @internal Use {@link spawn} / {@link spawnBlocking}. `fn` null: a handle settled from outside
   * (a blocking task), which `cancel` stops if it has not started.
   */
  constructor(fn: TaskFn<T> | null, name: string | undefined, cancel?: () => boolean) {
    this.id = nextTaskId++;
    this.name = name;
    this.#cancel = cancel;
    // Instrumentation (kyoto/console, diagnostics_channel): one check when nobody looks.
    if (observingTasks()) this.#observed = true;
    if (fn === null) {
      if (this.#observed) this.#rec = taskSpawned(this.id, name, 'blocking');
      this._outcome = new Promise<Outcome<T>>((resolve) => {
        this.#settle = resolve;
      });
      return;
    }
    const rec = this.#observed ? (this.#rec = taskSpawned(this.id, name, 'local')) : undefined;
    const ac = (this.#ac = new AbortController());
    const signal = ac.signal;
    const id = this.id;
    this._outcome = new Promise<Outcome<T>>((resolve) => {
      const fail = (err: unknown): void => {
        this.#finished = true;
        if (this.#observed) this.#ended(signal.aborted ? 'cancelled' : 'error');
        resolve({ ok: false, error: new JoinError(id, signal.aborted, err) });
      };
      // A task starts at spawn; its body runs as soon as the spawner yields (like a spawned Tokio
      // task's first poll). Aborted before that, it never runs.
      queueMicrotask(() => {
        if (signal.aborted) {
          this.#finished = true;
          if (this.#observed) this.#ended('cancelled');
          resolve({ ok: false, error: new JoinError(id, true) });
          return;
        }
        let ret: PromiseLike<T> | T;
        try {
          ret = rec === undefined ? fn(signal) : firstPoll(rec, () => fn(signal));
        } catch (err) {
          fail(err);
          return;
        }
        Promise.resolve(ret).then((value) => {
          this.#finished = true;
          if (this.#observed) this.#ended('ok');
          resolve({ ok: true, value });
        }, fail);
      });
    });
  }

  #ended(outcome: TaskOutcome): void {
    taskEnded(this.id, this.name, this.#ac === undefined ? 'blocking' : 'local', this.#rec, outcome);
    this.#rec = undefined; // a handle the app keeps must not keep the console's record after it is evicted
  }

  /** @internal Settles an external handle: `status` 1 = value, 0 = failed with `value`, 2 = cancelled. */
  _complete(status: number, value: unknown): void {
    if (this.#finished) return;
    this.#finished = true;
    if (this.#observed) this.#ended(status === 1 ? 'ok' : status === 2 ? 'cancelled' : 'error');
    const settle = this.#settle!;
    if (status === 1) settle({ ok: true, value: value as T });
    else settle({ ok: false, error: new JoinError(this.id, status === 2, status === 2 ? undefined : value) });
  }

  #promise(): Promise<T> {
    if (this.#result === undefined) {
      this.#result = this._outcome.then((o) => {
        if (o.ok) return o.value;
        throw o.error;
      });
    }
    return this.#result;
  }

  /** Settles with the task's value, or rejects with its {@link JoinError}. */
  then<R1 = T, R2 = never>(
    onfulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    onrejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.#promise().then(onfulfilled, onrejected);
  }

  /** Like `Promise.prototype.catch`. */
  catch<R = never>(onrejected?: ((reason: unknown) => R | PromiseLike<R>) | null): Promise<T | R> {
    return this.#promise().catch(onrejected);
  }

  /** Like `Promise.prototype.finally`. */
  finally(onfinally?: (() => void) | null): Promise<T> {
    return this.#promise().finally(onfinally);
  }

  /**
   * Cancels the task: fires its signal. The handle rejects with a cancelled {@link JoinError} once
   * the task has stopped; a task that finishes without noticing resolves normally. No-op once
   * finished.
   */
  abort(): void {
    if (this.#finished) return;
    if (this.#cancel !== undefined) {
      // A blocking task: cancelled only if it has not started.
      if (this.#cancel()) this._complete(2, undefined);
      return;
    }
    this.#ac!.abort(new JoinError(this.id, true));
  }

  /**
   * Whether the task has stopped (with a value, an error or cancelled).
   */
  isFinished(): boolean {
    return this.#finished;
  }

  /** @internal */
  get [Symbol.toStringTag](): string {
    return 'JoinHandle';
  }
}

/**
 * Spawns `fn` as a task on the calling thread and returns its {@link JoinHandle}.
 * @param fn - the task body; its `signal` aborts when the task is aborted.
 * @param options - `name` for diagnostics.
 */
export function spawn<T>(fn: TaskFn<T>, options?: SpawnOptions): JoinHandle<T> {
  validateFunction(fn, 'fn');
  const opts = optionsBag<SpawnOptions>(options);
  if (opts.name !== undefined) validateString(opts.name, 'options.name');
  return new JoinHandle(fn, opts.name);
}

/**
 * Resolves after letting pending timers, I/O and other callbacks run (a turn of the event loop),
 * like Tokio's `yield_now`. The yielding task is still runnable, so a paused clock does not
 * auto-advance while a `yieldNow()` is pending.
 */
export function yieldNow(options?: { signal?: AbortSignal }): Promise<void> {
  const opts = optionsBag<{ signal?: AbortSignal }>(options);
  validateSignal(opts.signal);
  return nextTurn(opts.signal);
}

/**
 * A set of tasks joined in completion order.
 *
 * `abortAll()` cancels every task but keeps them in the set until joined (each then yields a
 * cancelled {@link JoinError}); `[Symbol.asyncDispose]` (= `shutdown`) aborts and joins everything.
 */
export class JoinSet<T> implements AsyncIterable<T>, AsyncDisposable {
  readonly #tasks = new Set<JoinHandle<T>>();
  readonly #done: JoinHandle<T>[] = [];
  readonly #settled = new Map<JoinHandle<T>, Outcome<T>>();
  #waiters: (() => void)[] = [];

  /** Number of tasks in the set (running or finished but not yet joined). */
  get size(): number {
    return this.#tasks.size;
  }

  /** Whether the set is empty. */
  isEmpty(): boolean {
    return this.#tasks.size === 0;
  }

  /** Spawns `fn` into the set. */
  spawn(fn: TaskFn<T>, options?: SpawnOptions): JoinHandle<T> {
    const handle = spawn(fn, options);
    this.#tasks.add(handle);
    handle._outcome.then((o) => {
      if (!this.#tasks.has(handle)) return;
      this.#settled.set(handle, o);
      this.#done.push(handle);
      const w = this.#waiters;
      this.#waiters = [];
      for (const wake of w) wake();
    });
    return handle;
  }

  #take(): Outcome<T> | undefined {
    while (this.#done.length > 0) {
      const h = this.#done.shift()!;
      const o = this.#settled.get(h);
      this.#settled.delete(h);
      if (o !== undefined && this.#tasks.delete(h)) return o;
    }
    return undefined;
  }

  /**
   * Waits for the next task to finish and returns its value; `undefined` when the set is empty.
   * Rejects with the task's {@link JoinError}.
   */
  async joinNext(options?: { signal?: AbortSignal }): Promise<T | undefined> {
    const opts = optionsBag<{ signal?: AbortSignal }>(options);
    validateSignal(opts.signal);
    const o = await this.#next(opts.signal);
    if (o === undefined) return undefined;
    if (o.ok) return o.value;
    throw o.error;
  }

  /**
   * The outcome of the next task to finish; `undefined` once the set is empty. Loops and `joinAll`
   * use it rather than `joinNext`, whose `undefined` could also be a task's value.
   */
  async #next(signal: AbortSignal | undefined): Promise<Outcome<T> | undefined> {
    for (;;) {
      const o = this.#take();
      if (o !== undefined) return o;
      if (this.#tasks.size === 0) return undefined;
      if (signal?.aborted) throw abortReason(signal);
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => {
          this.#waiters = this.#waiters.filter((w) => w !== wake);
          reject(abortReason(signal!));
        };
        const wake = (): void => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        this.#waiters.push(wake);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
  }

  /**
   * The value of a task that has already finished, without waiting; `undefined` if none has.
   * Throws the task's {@link JoinError} if it failed.
   */
  tryJoinNext(): T | undefined {
    const o = this.#take();
    if (o === undefined) return undefined;
    if (o.ok) return o.value;
    throw o.error;
  }

  /**
   * Waits for every task and returns their values in completion order. The first failure aborts
   * the remaining tasks, removes them from the set and rejects with its {@link JoinError}.
   * Aborting `signal` rejects with its reason: the tasks not joined yet stay in the set, the
   * values joined until then are dropped (as when Tokio's `join_all` future is dropped).
   */
  async joinAll(options?: { signal?: AbortSignal }): Promise<T[]> {
    const opts = optionsBag<{ signal?: AbortSignal }>(options);
    validateSignal(opts.signal);
    const out: T[] = [];
    for (;;) {
      // Emptied meanwhile (detachAll): done, without a value for the set's absence.
      const o = await this.#next(opts.signal);
      if (o === undefined) return out;
      if (!o.ok) {
        this.abortAll();
        this.detachAll();
        throw o.error;
      }
      out.push(o.value);
    }
  }

  /** Aborts every task; they stay in the set until joined. */
  abortAll(): void {
    for (const h of this.#tasks) h.abort();
  }

  /** Removes every task from the set without aborting them (they keep running, detached). */
  detachAll(): void {
    this.#tasks.clear();
    this.#done.length = 0;
    this.#settled.clear();
    const w = this.#waiters;
    this.#waiters = [];
    for (const wake of w) wake();
  }

  /**
   * Aborts every task and waits until all have stopped; the set is then empty. Aborting `signal`
   * stops the wait (rejecting with its reason); the tasks that have not stopped yet stay in the set.
   */
  async shutdown(options?: { signal?: AbortSignal }): Promise<void> {
    const opts = optionsBag<{ signal?: AbortSignal }>(options);
    validateSignal(opts.signal);
    this.abortAll();
    // Failed and cancelled tasks are dropped, like Tokio's shutdown; an abort of the wait throws.
    while ((await this.#next(opts.signal)) !== undefined);
  }

  /** Same as {@link JoinSet.shutdown}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  /** Yields task values in completion order until the set is empty; a failure throws. */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for (;;) {
      // Emptied meanwhile (detachAll) ends the loop rather than yielding `undefined`.
      const o = await this.#next(undefined);
      if (o === undefined) return;
      if (!o.ok) throw o.error;
      yield o.value;
    }
  }
}

/** The winner of {@link select}. */
export interface Selected<K extends PropertyKey, V> {
  /** The key of the branch that settled first. */
  key: K;
  /** Its value. */
  value: V;
}

type Branches = Record<string, (signal: AbortSignal) => unknown>;
type BranchValue<F> = F extends (signal: AbortSignal) => infer R ? Awaited<R> : never;
/** The union of `{ key, value }` over the branches of a {@link select}. */
export type SelectResult<B extends Branches> = { [K in keyof B]: Selected<K, BranchValue<B[K]>> }[keyof B];

/**
 * Runs every branch and settles like the first one to settle (resolving `{ key, value }`, or
 * rejecting with its error); the other branches' signals are aborted. A lock guard or permit that
 * a losing branch resolves with anyway (acquired in the same tick) is released, as Tokio drops a
 * losing output, and so is a socket that a branch's own call made and returned as is (its promise
 * returned directly, as `(signal) => listener.accept({ signal })`): an accepted or connected
 * stream is closed, a bound listener or datagram socket too. Other values of losing branches
 * (anything an `async` branch awaited itself) are ignored.
 * @param branches - an object of `(signal) => value | promise`.
 * @param options - an outer `signal` that aborts every branch and rejects.
 */
export function select<B extends Branches>(branches: B, options?: { signal?: AbortSignal }): Promise<SelectResult<B>> {
  if (branches === null || typeof branches !== 'object') throw invalidArgType('branches', 'of type object', branches);
  const keys = Object.keys(branches);
  if (keys.length === 0) throw invalidArgValue('branches', 'must have at least one branch', branches);
  for (const k of keys) validateFunction(branches[k], `branches.${k}`);
  const opts = optionsBag<{ signal?: AbortSignal }>(options);
  validateSignal(opts.signal);
  const outer = opts.signal;
  if (outer?.aborted) return Promise.reject(abortReason(outer));
  return new Promise<SelectResult<B>>((resolve, reject) => {
    const controllers = keys.map(() => new AbortController());
    let done = false;
    const settle = (winner: number, reason?: unknown): void => {
      done = true;
      outer?.removeEventListener('abort', onOuter);
      const why = reason ?? new AbortError('another select branch settled first');
      controllers.forEach((c, i) => {
        if (i !== winner) c.abort(why);
      });
    };
    const onOuter = (): void => {
      if (done) return;
      // The branches are told the caller's reason, as timeout() tells its work.
      const reason = abortReason(outer!);
      settle(-1, reason);
      reject(reason);
    };
    outer?.addEventListener('abort', onOuter, { once: true });
    keys.forEach((key, i) => {
      if (done) return;
      let ret: unknown;
      let window: number;
      try {
        [ret, window] = inClaimWindow(() => branches[key](controllers[i].signal));
      } catch (err) {
        settle(i);
        reject(err);
        return;
      }
      Promise.resolve(ret).then(
        (value) => {
          if (done) {
            disposeUnclaimed(value, ret, window); // a lost branch's output is dropped, as in Tokio
            return;
          }
          settle(i);
          resolve({ key, value } as SelectResult<B>);
        },
        (err) => {
          if (done) return;
          settle(i);
          reject(err);
        },
      );
    });
  });
}


/**
 * Runs the function `exportName` of the module `moduleUrl` on a pool of worker threads (the
 * default runtime's blocking pool: `maxBlockingThreads` threads, default one per core) with
 * `args` (structured-cloned) and returns its {@link JoinHandle}. The value (or the thrown error)
 * comes back structured-cloned; an error or rejection becomes a {@link JoinError} whose `cause` is
 * it. A task that has started cannot be aborted (`abort()` then does nothing); one aborted before
 * it starts never runs and its handle rejects with a cancelled {@link JoinError}. Idle pool
 * threads do not keep the process alive. As in Tokio, a paused clock (`kyoto/time`'s `pause`)
 * does not auto-advance while a blocking task of this thread is in flight.
 * @param moduleUrl - a `file:` (or `data:`) URL, or an absolute path, of an ES or CommonJS module.
 * @param exportName - the exported function to call (`default.<name>` is tried too).
 * @param args - its arguments.
 * @throws TypeError `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE` on a bad URL or name.
 */
export function spawnBlocking<T = unknown>(moduleUrl: string | URL, exportName: string, ...args: unknown[]): JoinHandle<T> {
  return spawnBlockingOn<T>(Runtime.default(), moduleUrl, exportName, args);
}
