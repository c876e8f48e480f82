/**
 * `kyoto/time`: `sleep`, `timeout`, `interval` and `Instant` on the runtime's timer wheel, plus the
 * pausable test clock. Durations are milliseconds (fractions allowed); deadlines are rounded up to
 * the wheel's 1 ms resolution. A deadline more than 1e12 ms (about 31 years) ahead of the clock is
 * treated as that far-future deadline, like Tokio's.
 * @module
 */
import { native, type NativeRuntime } from './native';
import { submit, submitCallbacks, cancelOp, keepAlive, setAfterBatch } from './bridge';
import { Runtime, type RuntimeOption } from './runtime';
import { runtimeOf } from './runtime/of';
import { clockHeld, holdClock, releaseClock, setOnClockReleased } from './runtime/clock-hold';
import { nextTurn } from './runtime/turn';
import { disposeUnclaimed, inClaimWindow } from './runtime/unclaimed';
import { observingResources, resourceCreated, resourceClosed, type ResourceToken } from './console/instrument';

import {
  codedError,
  invalidArgType,
  invalidArgValue,
  optionsBag,
  outOfRange,
  validateDuration,
  validateNumber,
  validateSignal,
  abortReason,
  runtimeShutdownError,
  illegalConstructor,
  kConstruct,
} from './errors';

/**
 * A point on the runtime's monotonic clock, in milliseconds. Follows {@link pause} and
 * {@link advance}; comparable with `<`/`>` through `valueOf()`.
 */
export class Instant {
  readonly #ms: number;

  /**
   * @internal Use {@link Instant.now}, {@link Instant.add}, {@link Instant.sub}; `new` throws
   * `ERR_ILLEGAL_CONSTRUCTOR` (an instant is always a number on the runtime clock).
   */
  constructor(token: typeof kConstruct, ms: number) {
    if (token !== kConstruct) throw illegalConstructor();
    this.#ms = ms;
  }

  /** The current instant of the runtime clock. */
  static now(): Instant {
    return new Instant(kConstruct, native.now());
  }

  /** Milliseconds since this instant (0 if it is in the future). */
  elapsed(): number {
    return Math.max(0, native.now() - this.#ms);
  }

  /** Milliseconds from `earlier` to this instant, saturating at 0. */
  durationSince(earlier: Instant): number {
    if (!(earlier instanceof Instant)) throw invalidArgType('earlier', 'an instance of Instant', earlier);
    return Math.max(0, this.#ms - earlier.#ms);
  }

  /** This instant plus `ms`. */
  add(ms: number): Instant {
    validateNumber(ms, 'ms', -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    return new Instant(kConstruct, this.#ms + ms);
  }

  /** This instant minus `ms`. */
  sub(ms: number): Instant {
    validateNumber(ms, 'ms', -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    return new Instant(kConstruct, this.#ms - ms);
  }

  /** The instant in ms on the runtime clock (monotonic; origin is process start-up). */
  valueOf(): number {
    return this.#ms;
  }

  /** `Instant(<ms>)`. */
  toString(): string {
    return `Instant(${this.#ms})`;
  }

  /** @internal */
  get [Symbol.toStringTag](): string {
    return 'Instant';
  }
}

function instantMs(v: unknown, name: string): number {
  if (!(v instanceof Instant)) throw invalidArgType(name, 'an instance of Instant', v);
  return v.valueOf();
}

/** Options of every wait in this module. */
export interface WaitOptions extends RuntimeOption {
  /** Aborting it rejects the wait with the signal's reason (or an `AbortError`). */
  signal?: AbortSignal;
}

// ---------------------------------------------------------------------------------------------
// Timers: one native wheel entry per (runtime, 1 ms tick), shared by every sleep ending on it.

/** A cancellable sleep waiting in a {@link TimerGroup}. */
class Member {
  dead = false;
  /** The sleep's console/diagnostics resource, when instrumentation looked. */
  token: ResourceToken | undefined = undefined;
  constructor(
    readonly group: TimerGroup,
    readonly resolve: () => void,
    readonly reject: (reason: unknown) => void,
    readonly signal: AbortSignal,
  ) {}

  readonly onAbort = (): void => {
    if (this.dead) return;
    this.dead = true;
    // Leave the group at once: it may live for hours more (a shared deadline, as with many
    // `timeoutAt(d, work)` whose work won), and must not keep every abandoned sleep until then.
    const g = this.group;
    g.members?.delete(this);
    if (this.token !== undefined) {
      g.tokens?.delete(this.token);
      resourceClosed(this.token);
    }
    this.reject(abortReason(this.signal));
    g.release();
  };
}

/**
 * Every sleep of one runtime that fires on the same tick of its timer wheel: one native timer
 * (registered directly in the wheel, no task), one bridge operation. Sleeps without a signal share
 * the group's promise; a cancellable one gets a member entry and a promise of its own.
 */
/**
 * Stops listening to a member's signal; false if its `removeEventListener` threw, in which case the
 * member is rejected with that error (a user's signal-like object must not cost the rest of the
 * group, or the batch it fires in, their settlement).
 */
function unlisten(m: { signal: AbortSignal; onAbort: () => void; reject: (e: unknown) => void }): boolean {
  try {
    m.signal.removeEventListener('abort', m.onAbort);
    return true;
  } catch (err) {
    m.reject(err);
    return false;
  }
}

class TimerGroup {
  id = 0;
  /** Sleeps still waiting: the group's native timer is cancelled when this drops to 0. */
  live = 0;
  promise: Promise<void> | undefined;
  resolveAll: (() => void) | undefined;
  rejectAll: ((reason: unknown) => void) | undefined;
  /** Cancellable sleeps still waiting, in the order they joined (the order they settle in). */
  members: Set<Member> | undefined;
  /** Resources of the sleeps in this group (instrumentation on only); closed when it fires. */
  tokens: Set<ResourceToken> | undefined;

  constructor(
    readonly table: TimerTable,
    readonly map: Map<number, TimerGroup>,
    readonly key: number,
  ) {}

  /**
   * The group's own promise, for a sleep that cannot be cancelled: every such sleep of the group
   * gets the same one. A promise cannot be settled by those holding it, so sharing it is safe, and
   * it spares a promise and a reaction per sleep (a million pending sleeps: ~90 MB).
   */
  join(): Promise<void> {
    this.live++;
    return (this.promise ??= new Promise<void>((resolve, reject) => {
      this.resolveAll = resolve;
      this.rejectAll = reject;
    }));
  }

  /** A cancellable sleep. */
  joinCancellable(signal: AbortSignal, token?: ResourceToken): Promise<void> {
    this.live++;
    return new Promise<void>((resolve, reject) => {
      const m = new Member(this, resolve as () => void, reject, signal);
      m.token = token;
      (this.members ??= new Set()).add(m);
      signal.addEventListener('abort', m.onAbort, { once: true });
    });
  }

  /** A cancellable sleep gave up its place. */
  release(): void {
    if (--this.live > 0) return;
    this.#detach();
    cancelOp(this.id);
  }

  #detach(): void {
    if (this.map.get(this.key) === this) this.map.delete(this.key);
  }

  #closeTokens(): void {
    const ts = this.tokens;
    if (ts === undefined) return;
    this.tokens = undefined;
    for (const t of ts) resourceClosed(t);
  }

  readonly fire = (): void => {
    this.#detach();
    this.#closeTokens();
    const ms = this.members;
    if (ms !== undefined) {
      for (const m of ms) {
        if (m.dead) continue;
        m.dead = true;
        if (unlisten(m)) m.resolve();
      }
    }
    this.resolveAll?.();
    this.table.fired();
  };

  readonly fail = (reason: unknown): void => {
    this.#detach();
    this.#closeTokens();
    const ms = this.members;
    if (ms !== undefined) {
      for (const m of ms) {
        if (m.dead) continue;
        m.dead = true;
        if (unlisten(m)) m.reject(reason);
      }
    }
    this.rejectAll?.(reason);
  };
}

/** Key of the group of sleeps whose deadline has already passed (fired at once). */
const DUE = -Infinity;

/** The timers of one runtime in this thread. */
class TimerTable {
  readonly #refed = new Map<number, TimerGroup>();
  readonly #unrefed = new Map<number, TimerGroup>();
  readonly #phase: number;
  readonly now: () => number;
  /** Open intervals of this runtime in this thread: each is closed when the runtime shuts down. */
  readonly intervals = new Set<{ shutDown(): void }>();

  constructor(
    readonly rt: Runtime,
    readonly nrt: NativeRuntime,
    shared: boolean,
  ) {
    this.#phase = nrt.tickPhase;
    this.now = shared ? native.now : () => nrt.now();
    // One hook per table, not per interval: the runtime keeps its hooks until it shuts down.
    rt._onShutdown(() => {
      for (const iv of this.intervals) iv.shutDown();
      this.intervals.clear();
    });
  }

  /**
   * A promise resolved at `deadline` (ms on this runtime's clock), rounded up to a wheel tick.
   * `parent`: the resource (an `Interval`) this sleep is part of, for the console.
   */
  sleepUntil(deadline: number, signal: AbortSignal | undefined, refed: boolean, parent?: ResourceToken): Promise<void> {
    const now = this.now();
    const key = deadline <= now ? DUE : Math.ceil(deadline - this.#phase);
    return this.#sleep(key, now, signal, refed, parent, deadline - now);
  }

  /** A promise resolved `ms` (>= 0) from now on this runtime's clock. */
  sleepFor(ms: number, signal: AbortSignal | undefined, refed: boolean): Promise<void> {
    const now = this.now();
    return this.#sleep(ms === 0 ? DUE : Math.ceil(now + ms - this.#phase), now, signal, refed, undefined, ms);
  }

  #sleep(
    key: number,
    now: number,
    signal: AbortSignal | undefined,
    refed: boolean,
    parent: ResourceToken | undefined,
    ms: number,
  ): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    const map = refed ? this.#refed : this.#unrefed;
    let g = map.get(key);
    if (g === undefined) {
      g = new TimerGroup(this, map, key);
      const at = key === DUE ? now : key + this.#phase;
      const nrt = this.nrt;
      g.id = submitCallbacks(this.rt, (id) => nrt.sleepUntil(id, at, refed, true), g.fire, g.fail);
      // Only once submitted: a group whose submit threw would never fire for later sleeps.
      map.set(key, g);
      // The clock may have been paused by another thread (the default runtime's is shared) or
      // before this handle existed: whoever waits on a paused clock helps it auto-advance.
      if (nrt.isClockPaused()) {
        pausedTables.add(this);
        scheduleAutoAdvance();
      }
    }
    if (observingResources()) {
      // kyoto/console, diagnostics_channel: one resource per sleep, closed when it fires or aborts.
      const token = resourceCreated('timer', 'Sleep', [{ name: 'duration', value: Math.max(0, Math.round(ms)), unit: 'ms' }], undefined, parent);
      (g.tokens ??= new Set()).add(token);
      return signal === undefined ? g.join() : g.joinCancellable(signal, token);
    }
    return signal === undefined ? g.join() : g.joinCancellable(signal);
  }

  /** A group fired: on a paused clock, the next idle moment may jump to the next timer. */
  fired(): void {
    if (pausedTables.has(this)) scheduleAutoAdvance();
  }
}

/** The timer table of `rt` in this thread. */
function timersOf(rt: Runtime): TimerTable {
  if (rt.isShutdown) throw runtimeShutdownError();
  let t = rt._timers as TimerTable | undefined;
  if (t === undefined) {
    t = new TimerTable(rt, rt._native(), rt._isShared);
    rt._timers = t;
  }
  return t;
}

/**
 * Tables of this thread whose clock was seen paused (by `pause()` or at a sleep): their idle
 * moments auto-advance it. A table leaves once its clock runs again or its runtime shut down.
 */
const pausedTables = new Set<TimerTable>();
let autoAdvanceScheduled = false;

/**
 * On a paused clock, an idle runtime jumps to its next timer. "Idle" includes this JS thread: the
 * jump happens from a `setImmediate`, i.e. once the current turn (and its microtasks) is over, so
 * timers started together are all registered before the clock moves.
 */
function scheduleAutoAdvance(): void {
  if (autoAdvanceScheduled) return;
  autoAdvanceScheduled = true;
  // Ref'd on purpose: Node arms the loop's idle handle only for ref'd immediates, so an unref'd one
  // scheduled from a timer callback would wait for the next unrelated event. It runs this turn.
  setImmediate(autoAdvance);
}

/** The 1 ms re-check: a timer callback runs when the thread is idle, so check at once. */
function recheck(): void {
  if (!autoAdvanceScheduled) autoAdvance();
}

function autoAdvance(): void {
  autoAdvanceScheduled = false;
  if (pausedTables.size === 0) return;
  // Completions not yet delivered: this thread is not idle; their batch re-arms the check.
  if (native.bridgeQueued() > 0) return;
  // Work of this thread holds the clock (blocking tasks, yieldNow, an advance() letting woken work
  // run): the last release re-arms the check.
  if (clockHeld()) return;
  for (const t of pausedTables) {
    if (t.rt.isShutdown || !t.nrt.isClockPaused()) {
      pausedTables.delete(t);
      continue;
    }
    t.nrt.advanceToNextTimer();
  }
  // While operations are pending, native tasks (woken by this jump or about to register timers on
  // the runtime's threads) may need the clock to move again without any completion reaching this
  // thread: look again shortly (1 ms of real time, unref'd).
  if (native.bridgeRefs() > 0) setTimeout(recheck, 1).unref();
}

// Completions of any kind (native tasks, sync waits, I/O) mean the thread was busy: look again at
// the next idle moment.
setAfterBatch(() => {
  if (pausedTables.size > 0) scheduleAutoAdvance();
});
setOnClockReleased(() => {
  if (pausedTables.size > 0) scheduleAutoAdvance();
});

function sleepUntilMs(
  deadline: number,
  rt: Runtime,
  signal: AbortSignal | undefined,
  refed = true,
  parent?: ResourceToken,
): Promise<void> {
  return timersOf(rt).sleepUntil(deadline, signal, refed, parent);
}

let defaultTable: TimerTable | undefined;

function defaultTimers(): TimerTable {
  const rt = Runtime.default();
  if (defaultTable === undefined || defaultTable.rt !== rt) defaultTable = timersOf(rt);
  return defaultTable;
}

/**
 * Resolves after `ms` milliseconds (1 ms resolution, rounded up). A pending sleep keeps the process
 * alive. Sleeps without a `signal` that end on the same tick of the runtime's timer wheel may return
 * the same promise (none of them can settle it for the others); with a `signal`, each has its own.
 * @param ms - a duration >= 0.
 * @param options - `signal` to cancel the sleep; `runtime` to use another runtime.
 * @throws TypeError `ERR_INVALID_ARG_TYPE`, RangeError `ERR_OUT_OF_RANGE` on a bad `ms`.
 */
export function sleep(ms: number, options?: WaitOptions): Promise<void> {
  if (typeof ms !== 'number' || !(ms >= 0 && ms <= Number.MAX_SAFE_INTEGER)) validateDuration(ms, 'ms');
  if (options === undefined) return defaultTimers().sleepFor(ms, undefined, true);
  const opts = optionsBag<WaitOptions>(options);
  validateSignal(opts.signal);
  return timersOf(runtimeOf(opts)).sleepFor(ms, opts.signal, true);
}

/**
 * Resolves at `deadline` (at once if it has passed). As with {@link sleep}, sleeps without a
 * `signal` ending on the same tick may return the same promise.
 * @param deadline - an {@link Instant}.
 * @param options - `signal` to cancel the sleep; `runtime` to use another runtime.
 */
export function sleepUntil(deadline: Instant, options?: WaitOptions): Promise<void> {
  const ms = instantMs(deadline, 'deadline');
  const opts = optionsBag<WaitOptions>(options);
  validateSignal(opts.signal);
  return sleepUntilMs(ms, runtimeOf(opts), opts.signal);
}

/** The error a {@link timeout} rejects with when the deadline passes first (`code: 'ERR_ELAPSED'`). */
export class Elapsed extends Error {
  /** Always `'ERR_ELAPSED'`. */
  readonly code = 'ERR_ELAPSED';
  constructor() {
    super('deadline has elapsed');
    this.name = 'Elapsed';
  }
}

/** Work given to {@link timeout}: a promise, or a function of an `AbortSignal` returning one. */
export type TimeoutWork<T> = PromiseLike<T> | T | ((signal: AbortSignal) => PromiseLike<T> | T);

function runWithDeadline<T>(deadline: number, work: TimeoutWork<T>, opts: WaitOptions): Promise<T> {
  validateSignal(opts.signal);
  const rt = runtimeOf(opts);
  const outer = opts.signal;
  if (outer?.aborted) return Promise.reject(abortReason(outer));
  const workAc = new AbortController();
  let started: PromiseLike<T> | T;
  let window: number | undefined;
  if (typeof work === 'function') {
    try {
      [started, window] = inClaimWindow(() => (work as (signal: AbortSignal) => PromiseLike<T> | T)(workAc.signal));
    } catch (err) {
      return Promise.reject(err);
    }
  } else {
    started = work;
  }
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const timerAc = new AbortController();
    const onOuterAbort = (): void => {
      if (done) return;
      done = true;
      timerAc.abort();
      workAc.abort(abortReason(outer!));
      reject(abortReason(outer!));
    };
    outer?.addEventListener('abort', onOuterAbort, { once: true });
    const finish = (): void => {
      done = true;
      outer?.removeEventListener('abort', onOuterAbort);
    };
    // The work's settlement is observed through a microtask while the timer needs a native round
    // trip (a macrotask), so work that has already settled wins even at a 0 deadline.
    Promise.resolve(started).then(
      (value) => {
        if (done) {
          // Work this call started settled past the decision: nobody can take its value. A
          // promise the caller passed in is theirs to await, so its value is left alone.
          if (typeof work === 'function') disposeUnclaimed(value, started, window);
          return;
        }
        finish();
        timerAc.abort();
        resolve(value);
      },
      (err) => {
        if (done) return;
        finish();
        timerAc.abort();
        reject(err);
      },
    );
    sleepUntilMs(deadline, rt, timerAc.signal).then(
      () => {
        if (done) return;
        // Like Tokio's Timeout, which polls the work before the deadline: work woken on this same
        // tick (a sleep as long as the limit, a task awaiting one) settles through microtasks
        // after this callback, and must still win. Decide once they have run: after a turn of
        // the loop, during which a paused clock must not move on.
        void nextTurn(undefined).then(() => {
          if (done) return;
          finish();
          const elapsed = new Elapsed();
          workAc.abort(elapsed);
          reject(elapsed);
        });
      },
      (err) => {
        // Our own abort (the work settled first, or the outer signal) is already handled; anything
        // else (the runtime shut down) ends the wait: the work is told why and the caller sees it.
        if (done) return;
        finish();
        workAc.abort(err);
        reject(err);
      },
    );
  });
}

/**
 * Runs `work` with a time limit. Rejects with {@link Elapsed} (and aborts the work's signal) if
 * `ms` passes first; work that has already settled wins even at a 0 deadline, and so does work
 * that settles on the deadline's own tick (as Tokio polls the work before the deadline). A lock
 * guard or permit that work given as a function resolves with after the rejection is released,
 * and so is a socket its call made and returned as is (`(signal) => TcpStream.connect(addr, {
 * signal })`: the stream is closed); see `select()`.
 * @param ms - the limit, >= 0.
 * @param work - a promise, or `(signal) => promise` (the signal aborts on elapse).
 * @param options - an outer `signal`; `runtime`.
 */
export function timeout<T>(ms: number, work: TimeoutWork<T>, options?: WaitOptions): Promise<T> {
  validateDuration(ms, 'ms');
  const opts = optionsBag<WaitOptions>(options);
  return runWithDeadline(timersOf(runtimeOf(opts)).now() + ms, work, opts);
}

/** Like {@link timeout} with an {@link Instant} deadline. */
export function timeoutAt<T>(deadline: Instant, work: TimeoutWork<T>, options?: WaitOptions): Promise<T> {
  const ms = instantMs(deadline, 'deadline');
  return runWithDeadline(ms, work, optionsBag<WaitOptions>(options));
}

// ---------------------------------------------------------------------------------------------
// Interval

/** What an {@link Interval} does with ticks it missed (Tokio's `MissedTickBehavior`). */
export type MissedTickBehavior = 'burst' | 'delay' | 'skip';

/** Options of {@link interval} / {@link intervalAt}. */
export interface IntervalOptions extends RuntimeOption {
  /** Missed-tick policy; default `'burst'`. */
  missedTickBehavior?: MissedTickBehavior;
  /** First tick's instant (default: now, i.e. the first tick is immediate). */
  start?: Instant;
}

/** A tick is "missed" only when it is observed more than this many ms late (Tokio's rule). */
const MISSED_THRESHOLD_MS = 5;

/**
 * Ticks in a row that were already due (no timer waited for): after this many, the next one first
 * lets the event loop turn, as Tokio's coop budget (128) makes a task always ready yield.
 */
const READY_TICK_BUDGET = 128;

class Reset {}
const RESET = new Reset();

/**
 * A stream of ticks every `period` ms (see {@link interval}). Holds the process alive until
 * disposed (like `setInterval`) unless {@link Interval.unref}'d. Obtained from {@link interval} /
 * {@link intervalAt}; not constructed directly (`new` throws `ERR_ILLEGAL_CONSTRUCTOR`).
 */
export class Interval implements AsyncIterable<Instant>, Disposable {
  readonly #period: number;
  readonly #behavior: MissedTickBehavior;
  readonly #rt: Runtime;
  readonly #table: TimerTable;
  #deadline: number;
  /** The queue of tick() calls: each settles its own promise, so this one never rejects. */
  #chain: Promise<unknown> = Promise.resolve();
  #wake: AbortController | undefined;
  /** Ticks in a row returned without waiting (see {@link READY_TICK_BUDGET}). */
  #ready = 0;
  #disposed = false;
  /** Closed because its runtime shut down: ticks then reject with `ERR_RUNTIME_SHUTDOWN`. */
  #shutDown = false;
  #refed = true;
  #token: ResourceToken | undefined;
  /** The runtime's shutdown closes the interval (and releases the process). */
  readonly #onShutdown = {
    shutDown: (): void => {
      if (this.#disposed) return;
      this.#shutDown = true;
      this.#close(runtimeShutdownError());
    },
  };

  /** @internal Use {@link interval} / {@link intervalAt}. */
  constructor(token: typeof kConstruct, start: number, period: number, behavior: MissedTickBehavior, rt: Runtime) {
    if (token !== kConstruct) throw illegalConstructor();
    this.#deadline = start;
    this.#period = period;
    this.#behavior = behavior;
    this.#rt = rt;
    this.#table = timersOf(rt);
    this.#table.intervals.add(this.#onShutdown);
    keepAlive(1);
    if (observingResources()) {
      this.#token = resourceCreated('timer', 'Interval', [
        { name: 'period', value: period, unit: 'ms' },
        { name: 'missed_tick_behavior', value: behavior },
      ]);
    }
  }

  /** The period in ms. */
  get period(): number {
    return this.#period;
  }

  /** The missed-tick policy. */
  get missedTickBehavior(): MissedTickBehavior {
    return this.#behavior;
  }

  /**
   * Waits for the next tick and resolves with its scheduled instant. Concurrent calls are served in
   * order. Rejects with `ERR_INTERVAL_CLOSED` once disposed. Aborting `signal` rejects the call at
   * once, even while it waits behind earlier calls (it then gives up its turn without a tick).
   */
  tick(options?: { signal?: AbortSignal }): Promise<Instant> {
    const opts = optionsBag<{ signal?: AbortSignal }>(options);
    validateSignal(opts.signal);
    const signal = opts.signal;
    const run = new Promise<Instant>((resolve, reject) => {
      if (signal?.aborted) return reject(abortReason(signal));
      // A call still queued behind earlier ticks rejects as soon as its signal aborts and gives
      // up its turn (no tick is consumed); once running, `#tick` handles the abort itself.
      let abandoned = false;
      const onQueuedAbort = (): void => {
        abandoned = true;
        reject(abortReason(signal!));
      };
      signal?.addEventListener('abort', onQueuedAbort, { once: true });
      this.#chain = this.#chain.then(() => {
        signal?.removeEventListener('abort', onQueuedAbort);
        if (abandoned) return;
        return this.#tick(signal).then(resolve, reject);
      });
    });
    // As before: a tick nobody awaits (e.g. pending when the interval closes) is no unhandled
    // rejection.
    run.catch(() => {});
    return run;
  }

  async #tick(signal: AbortSignal | undefined): Promise<Instant> {
    for (;;) {
      if (this.#disposed) throw this.#shutDown ? runtimeShutdownError() : closedError();
      if (signal?.aborted) throw abortReason(signal);
      const deadline = this.#deadline;
      if (this.#table.now() >= deadline) {
        // Already due: a consumer behind schedule would otherwise get every tick through
        // microtasks alone and starve timers and I/O for as long as it loops.
        if (++this.#ready > READY_TICK_BUDGET) {
          this.#ready = 0;
          await nextTurn(signal);
          continue; // closed, aborted or reset meanwhile: look again
        }
      } else {
        this.#ready = 0;
        const wake = new AbortController();
        this.#wake = wake;
        const onAbort = (): void => wake.abort(abortReason(signal!));
        signal?.addEventListener('abort', onAbort, { once: true });
        try {
          await sleepUntilMs(deadline, this.#rt, wake.signal, this.#refed, this.#token);
        } catch (err) {
          if (err !== RESET) throw err;
          continue; // reset while waiting: look at the new deadline
        } finally {
          signal?.removeEventListener('abort', onAbort);
          this.#wake = undefined;
        }
        if (this.#deadline !== deadline) continue;
      }
      const timeout = deadline;
      const now = this.#table.now();
      this.#deadline =
        now - timeout > MISSED_THRESHOLD_MS ? nextTimeout(this.#behavior, timeout, now, this.#period) : timeout + this.#period;
      return new Instant(kConstruct, timeout);
    }
  }

  #setDeadline(ms: number): void {
    this.#deadline = ms;
    this.#wake?.abort(RESET);
  }

  /** The next tick happens one period from now. */
  reset(): void {
    this.#setDeadline(this.#table.now() + this.#period);
  }

  /** The next tick happens now. */
  resetImmediately(): void {
    this.#setDeadline(this.#table.now());
  }

  /** The next tick happens `ms` from now. */
  resetAfter(ms: number): void {
    validateDuration(ms, 'ms');
    this.#setDeadline(this.#table.now() + ms);
  }

  /** The next tick happens at `deadline`. */
  resetAt(deadline: Instant): void {
    this.#setDeadline(instantMs(deadline, 'deadline'));
  }

  /** Lets the process exit while this interval is alive (ticks awaited meanwhile do not hold it). */
  unref(): this {
    if (this.#refed && !this.#disposed) keepAlive(-1);
    this.#setRefed(false);
    return this;
  }

  /** Undoes {@link Interval.unref} (a tick already waiting holds the process again). */
  ref(): this {
    if (!this.#refed && !this.#disposed) keepAlive(1);
    this.#setRefed(true);
    return this;
  }

  #setRefed(refed: boolean): void {
    if (this.#refed === refed) return;
    this.#refed = refed;
    // A tick already waiting registered its timer with the old flag: wake it to re-register.
    this.#wake?.abort(RESET);
  }

  /** Whether the interval holds the process alive. */
  hasRef(): boolean {
    return this.#refed && !this.#disposed;
  }

  /**
   * Stops the interval: a pending tick rejects with `ERR_INTERVAL_CLOSED`; releases the process.
   * Shutting its runtime down closes it too (ticks then reject with `ERR_RUNTIME_SHUTDOWN`).
   */
  close(): void {
    if (this.#disposed) return;
    this.#close(closedError());
  }

  #close(reason: Error): void {
    this.#disposed = true;
    this.#table.intervals.delete(this.#onShutdown);
    if (this.#refed) keepAlive(-1);
    if (this.#token !== undefined) resourceClosed(this.#token);
    this.#wake?.abort(reason);
  }

  /** Same as {@link Interval.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Ticks until the interval is closed (the loop then ends); throws `ERR_RUNTIME_SHUTDOWN` if its
   * runtime shuts down.
   */
  async *[Symbol.asyncIterator](): AsyncGenerator<Instant, void, undefined> {
    // After a shutdown the next tick throws its error rather than ending the loop quietly.
    while (!this.#disposed || this.#shutDown) {
      let t: Instant;
      try {
        t = await this.tick();
      } catch (err) {
        if (this.#disposed && !this.#shutDown) return;
        throw err;
      }
      yield t;
    }
  }
}

function closedError(): Error {
  return codedError('ERR_INTERVAL_CLOSED', 'the interval was closed');
}

function nextTimeout(behavior: MissedTickBehavior, timeout: number, now: number, period: number): number {
  switch (behavior) {
    case 'burst':
      return timeout + period;
    case 'delay':
      return now + period;
    case 'skip':
      return now + period - lateness(now - timeout, period);
  }
}

/**
 * `late % period`, as Tokio computes it: in whole nanoseconds. Clock readings are whole
 * nanoseconds but reach JS as float milliseconds, so `%` on them sees a lateness of exactly n
 * periods as a hair under n and answers almost a whole period: Skip then scheduled the next tick
 * at once instead of a period later. Beyond what doubles hold exactly, plain `%`.
 */
function lateness(late: number, period: number): number {
  const lateNs = Math.round(late * 1e6);
  const periodNs = Math.round(period * 1e6);
  if (periodNs > 0 && lateNs <= Number.MAX_SAFE_INTEGER && periodNs <= Number.MAX_SAFE_INTEGER) {
    return (lateNs % periodNs) / 1e6;
  }
  return late % period;
}

function makeInterval(start: number, period: unknown, options: unknown): Interval {
  validateNumber(period, 'periodMs', 0, Number.MAX_SAFE_INTEGER);
  if (period === 0) throw outOfRange('periodMs', '> 0', period);
  const opts = optionsBag<IntervalOptions>(options);
  const behavior = opts.missedTickBehavior ?? 'burst';
  if (behavior !== 'burst' && behavior !== 'delay' && behavior !== 'skip') {
    if (typeof behavior !== 'string') throw invalidArgType('options.missedTickBehavior', 'of type string', behavior);
    throw invalidArgValue('options.missedTickBehavior', "must be 'burst', 'delay' or 'skip'", behavior);
  }
  const rt = runtimeOf(opts);
  rt._native();
  return new Interval(kConstruct, start, period, behavior, rt);
}

/**
 * An {@link Interval} ticking every `periodMs`; the first tick is immediate (or at
 * `options.start`).
 * @throws RangeError `ERR_OUT_OF_RANGE` for a zero or negative period.
 */
export function interval(periodMs: number, options?: IntervalOptions): Interval {
  const opts = optionsBag<IntervalOptions>(options);
  const start = opts.start === undefined ? timersOf(runtimeOf(opts)).now() : instantMs(opts.start, 'options.start');
  return makeInterval(start, periodMs, opts);
}

/** An {@link Interval} whose first tick is at `start`. */
export function intervalAt(start: Instant, periodMs: number, options?: IntervalOptions): Interval {
  return makeInterval(instantMs(start, 'start'), periodMs, options);
}

// ---------------------------------------------------------------------------------------------
// Test clock

/**
 * Freezes the runtime's clock (the default runtime's unless `options.runtime` is given): every
 * kyoto timer of that runtime (JS-facing and native) then follows the virtual clock, which moves
 * only with {@link advance} — or, when the runtime and this JS thread are idle, jumps to the next
 * timer. The default runtime is shared by every thread of the process, and so is its clock: a
 * thread waiting on it while paused helps it auto-advance, and when a `worker_threads` thread that
 * paused it exits (or is terminated) without {@link resume}, the clock resumes.
 * @param options - `runtime`: the runtime whose clock to pause.
 */
export function pause(options?: RuntimeOption): void {
  const t = timersOf(runtimeOf(optionsBag<RuntimeOption>(options)));
  t.nrt.pauseClock();
  pausedTables.add(t);
  scheduleAutoAdvance();
}

/**
 * Lets the clock run again from where it was frozen (plus what it was advanced by).
 * @param options - `runtime`: the runtime whose clock to resume.
 */
export function resume(options?: RuntimeOption): void {
  const t = timersOf(runtimeOf(optionsBag<RuntimeOption>(options)));
  t.nrt.resumeClock();
  pausedTables.delete(t);
}

/**
 * Whether the clock is paused.
 * @param options - `runtime`: the runtime whose clock to look at.
 */
export function isPaused(options?: RuntimeOption): boolean {
  return timersOf(runtimeOf(optionsBag<RuntimeOption>(options))).nrt.isClockPaused();
}

/** Largest single {@link advance}: the furthest deadline the native timers represent exactly. */
const MAX_ADVANCE_MS = 1e12;
/** The paused clock never moves past this (ms since the clock's origin; about 3,170 years). */
const MAX_CLOCK_MS = 1e14;

/**
 * Moves the paused clock forward by exactly `ms` and resolves once the timers that came due have
 * fired and what they woke has run: like Tokio's `advance`, it yields (one macrotask turn, during
 * which the clock does not auto-advance), so `sleep(10).then(f)` has run `f` once `advance(10)`
 * resolves. Rejects with `ERR_CLOCK_NOT_PAUSED` when the clock runs.
 * @param ms - a duration >= 0 and <= 1e12 (about 31 years); the clock cannot be moved past 1e14 ms
 *   after its origin either.
 * @param options - `runtime`: the runtime whose clock to advance.
 * @throws RangeError `ERR_OUT_OF_RANGE` for a negative `ms` or one beyond those limits (which the
 *   native clock would otherwise clamp silently).
 */
export function advance(ms: number, options?: RuntimeOption): Promise<void> {
  validateDuration(ms, 'ms');
  if (ms > MAX_ADVANCE_MS) throw outOfRange('ms', `<= ${MAX_ADVANCE_MS}`, ms);
  const opts = optionsBag<RuntimeOption>(options);
  const rt = runtimeOf(opts);
  const t = timersOf(rt);
  if (t.now() + ms > MAX_CLOCK_MS) {
    throw outOfRange('ms', `<= ${Math.max(0, MAX_CLOCK_MS - t.now())} (the clock stops at ${MAX_CLOCK_MS} ms)`, ms);
  }
  if (!t.nrt.advanceClock(ms)) {
    return Promise.reject(codedError('ERR_CLOCK_NOT_PAUSED', 'the clock is not paused; call pause() first'));
  }
  // The timers that came due completed while the clock moved (on this thread); an operation due at
  // once is queued behind them, so its completion arrives after theirs.
  const nrt = t.nrt;
  const due = submit<void>(rt, (id) => nrt.sleepUntil(id, -1e12, true, false));
  holdClock();
  return due.then(
    () =>
      new Promise<void>((resolve) => {
        // Callbacks of the timers that fired run in the microtasks before this macrotask.
        setImmediate(() => {
          releaseClock();
          resolve();
        });
      }),
    (err: unknown) => {
      releaseClock();
      throw err;
    },
  );
}
