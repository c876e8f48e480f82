/**
 * The instrumentation behind `kyoto/console`: records of JS tasks and resources, the
 * `node:diagnostics_channel` publications, and how a JS task's polls and wakes are observed.
 *
 * Off (near-zero cost) unless a console is serving in this thread or a `kyoto:*` channel has
 * subscribers: each instrumented site then pays one module-variable read and one
 * `channel.hasSubscribers` getter. While a console serves, records are kept and a V8 promise hook
 * attributes promise continuations to the JS task that created the promise.
 * @module
 */
import * as dc from 'node:diagnostics_channel';
import { promiseHooks } from 'node:v8';
import { dirname, sep } from 'node:path';
import { Histogram } from './histogram';

// ---------------------------------------------------------------------------------------------
// diagnostics_channel

/** `kyoto:task:spawn`: `{ id, name, kind }`. */
export const taskSpawnChannel = dc.channel('kyoto:task:spawn');
/** `kyoto:task:end`: `{ id, name, kind, outcome }`. */
export const taskEndChannel = dc.channel('kyoto:task:end');
/** `kyoto:resource:create`: `{ id, kind, concreteType }`. */
export const resourceCreateChannel = dc.channel('kyoto:resource:create');
/** `kyoto:resource:close`: `{ id, kind, concreteType }`. */
export const resourceCloseChannel = dc.channel('kyoto:resource:close');

// ---------------------------------------------------------------------------------------------
// State

/** Consoles serving in this thread. Records are kept only while > 0. */
let consoles = 0;
/** Next id for a record (JS task, native task mirror or resource): unique in this thread. */
let nextSpanId = 1;

/** Wall-clock milliseconds (fractional), the time base of every record. */
export function wallNow(): number {
  return performance.timeOrigin + performance.now();
}

/** A source location. */
export interface Loc {
  file: string;
  line: number;
  column: number;
}

/** A record the console publishes: bumped `v` on every change. */
interface Versioned {
  readonly spanId: number;
  v: number;
  created: number;
  /** Completion / close time (wall ms); 0 while alive. */
  dropped: number;
}

/** How a JS task ended. */
export type TaskOutcome = 'ok' | 'error' | 'cancelled';

/** A task as the console shows it: a JS task of this thread or a native kyoto-rt task. */
export class TaskRec implements Versioned {
  readonly spanId = nextSpanId++;
  v = 1;
  created: number;
  dropped = 0;
  polls = 0;
  /** Busy time, ms. */
  busy = 0;
  /** Scheduled time, ms. */
  scheduled = 0;
  firstPoll = 0;
  lastPollStarted = 0;
  lastPollEnded = 0;
  wakes = 0;
  selfWakes = 0;
  wakerClones = 0;
  wakerDrops = 0;
  lastWake = 0;
  /** First wake since the last poll started (0: none). */
  woken = 0;
  /** The last settlement that woke it (a task listed twice on one promise is woken once). */
  wakeSeq = 0;
  /**
   * What promises point to (owner and waiter maps): cleared when the task ends, so a promise that
   * outlives the task (one raced against a long-lived one) keeps a tiny object, not the record.
   */
  readonly ref: TaskRef = { rec: this };
  outcome: string | undefined;
  /** Poll durations (JS tasks; native ones are read from kyoto-rt on demand). */
  pollTimes: Histogram | undefined;
  /** Durations from a wake to the next poll. */
  scheduledTimes: Histogram | undefined;
  #polling = false;

  constructor(
    /** `'js'` (this thread) or `'native'` (kyoto-rt). */
    readonly origin: 'js' | 'native',
    /** The task id users see (`JoinHandle.id`, or the kyoto-rt task id). */
    readonly taskId: number,
    readonly name: string | undefined,
    /** `'local'` (a JS task), `'task'` or `'blocking'`. */
    readonly kind: string,
    readonly location: Loc | undefined,
    created: number,
  ) {
    this.created = created;
  }

  /** A poll (a continuation of the task) starts. */
  pollStart(): void {
    const t = wallNow();
    if (this.polls === 0) this.firstPoll = t;
    // A continuation that starts with no wake pending (after `await` of an already-settled value)
    // is a poll without a wake: JS queued it itself, the way a Tokio task yields cooperatively.
    if (this.woken !== 0) {
      const d = Math.max(0, t - this.woken);
      this.scheduled += d;
      (this.scheduledTimes ??= new Histogram()).record(d * 1e6);
      this.woken = 0;
    }
    this.polls++;
    this.lastPollStarted = t;
    this.#polling = true;
    this.v++;
  }

  /** The poll started last ends. */
  pollEnd(): void {
    if (!this.#polling) return;
    this.#polling = false;
    const t = wallNow();
    const d = Math.max(0, t - this.lastPollStarted);
    this.busy += d;
    (this.pollTimes ??= new Histogram()).record(d * 1e6);
    this.lastPollEnded = t;
    this.v++;
  }

  /** Something the task waits on settled (from outside its own polls). */
  wake(): void {
    const t = wallNow();
    this.wakes++;
    this.lastWake = t;
    if (this.woken === 0) this.woken = t;
    this.v++;
  }

  /** The task finished. */
  end(outcome: string): void {
    if (this.dropped !== 0) return;
    this.pollEnd();
    this.outcome = outcome;
    this.dropped = wallNow();
    this.ref.rec = undefined;
    this.v++;
  }
}

/** A JS task as promises know it: `rec` is unset once the task ended. */
export interface TaskRef {
  rec: TaskRec | undefined;
}

/** One attribute of a resource: a field name and a value. */
export interface Attr {
  name: string;
  value: string | number | boolean;
  unit?: string;
}

/** `'timer'`, `'net'` or `'sync'`: which metadata (and `kind`) a resource has. */
export type ResourceKind = 'timer' | 'net' | 'sync';

/** A resource: a sleep, an interval, a socket, a semaphore, a mutex or an rwlock. */
export class ResourceRec implements Versioned {
  readonly spanId = nextSpanId++;
  v = 1;
  created = wallNow();
  dropped = 0;
  attrs: Attr[] = [];
  #attrsKey = '';

  constructor(
    readonly kind: ResourceKind,
    readonly concreteType: string,
    readonly location: Loc | undefined,
    /** Recomputes the attributes (at publish time); `undefined`: they never change. */
    readonly read: (() => Attr[] | undefined) | undefined,
    attrs: Attr[] | undefined,
    /** The resource this one is an internal part of (an `Interval`'s sleeps). */
    readonly parent: ResourceRec | undefined,
  ) {
    if (attrs !== undefined) this.setAttrs(attrs);
  }

  setAttrs(attrs: Attr[]): void {
    const key = JSON.stringify(attrs);
    if (key === this.#attrsKey) return;
    this.#attrsKey = key;
    this.attrs = attrs;
    this.v++;
  }

  /** Re-reads the attributes (once per publish). */
  refresh(): void {
    if (this.dropped !== 0 || this.read === undefined) return;
    let attrs: Attr[] | undefined;
    try {
      attrs = this.read();
    } catch {
      return;
    }
    if (attrs !== undefined) this.setAttrs(attrs);
  }
}

/** Every record the consoles of this thread publish, by span id. */
export const tasks = new Map<number, TaskRec>();
export const resources = new Map<number, ResourceRec>();

// ---------------------------------------------------------------------------------------------
// Spawn locations

const libRoot = dirname(__dirname) + sep;

/** The first stack frame outside kyoto's own modules, as a location (console on only). */
export function callerLocation(): Loc | undefined {
  const limit = Error.stackTraceLimit;
  const prepare = Error.prepareStackTrace;
  let sites: NodeJS.CallSite[] | undefined;
  try {
    Error.stackTraceLimit = 12;
    Error.prepareStackTrace = (_e, s) => s;
    const holder: { stack?: unknown } = {};
    Error.captureStackTrace(holder, callerLocation);
    sites = holder.stack as NodeJS.CallSite[];
  } catch {
    sites = undefined;
  } finally {
    Error.stackTraceLimit = limit;
    Error.prepareStackTrace = prepare;
  }
  if (!Array.isArray(sites)) return undefined;
  for (const s of sites) {
    let file = s.getFileName?.() ?? undefined;
    if (file === undefined || file.startsWith('node:')) continue;
    if (file.startsWith('file://')) {
      try {
        file = decodeURIComponent(new URL(file).pathname);
      } catch {
        // keep the URL
      }
    }
    if (file.startsWith(libRoot)) continue;
    return { file, line: s.getLineNumber() ?? 0, column: s.getColumnNumber() ?? 0 };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// JS tasks

/** The JS task whose code runs right now (its first poll or a continuation), if any. */
let current: TaskRec | undefined;
/** Promises created by a JS task (during one of its runs). Replaced when the last console stops. */
let owner = new WeakMap<Promise<unknown>, TaskRef>();
/**
 * The JS tasks that registered a continuation on a promise (`await p`, `p.then(…)` in one of their
 * runs): `null` for none yet (created by a task, pending). A promise a task created that is absent
 * has settled: nothing is registered on it, it can wake no one. A promise created outside any
 * task is not tracked until a task waits on it (tracking every promise of the thread would tax
 * code that runs outside tasks); one that had settled by then gets registrations it never
 * releases, which the tiny refs and the sweep below keep bounded.
 */
let waiters = new WeakMap<Promise<unknown>, TaskRef | Waiters | null>();
let stopHook: (() => void) | undefined;

/** Several tasks waiting on one promise. */
interface Waiters {
  list: TaskRef[];
  /** Length at which ended tasks are swept out (a promise that never settles would keep them all). */
  sweepAt: number;
}

function addWaiter(p: Promise<unknown>, t: TaskRef): void {
  const w = waiters.get(p);
  if (w === t) return;
  if (w === undefined) {
    if (owner.has(p)) return; // a task's promise, settled: nothing to wait for
    waiters.set(p, t);
  } else if (w === null) waiters.set(p, t);
  else if (!('list' in w)) {
    if (w.rec === undefined) waiters.set(p, t);
    else waiters.set(p, { list: [w, t], sweepAt: 8 });
  } else {
    const list = w.list;
    if (list[list.length - 1] === t) return; // the same task again (settle() wakes a task once anyway)
    list.push(t);
    if (list.length >= w.sweepAt) {
      // Amortized O(1) per registration: sweep only once the list doubled since the last sweep.
      let n = 0;
      for (const x of list) if (x.rec !== undefined) list[n++] = x;
      list.length = n;
      w.sweepAt = Math.max(8, 2 * n);
    }
  }
}

/** Bumped per settlement: a task listed twice on one promise is woken once. */
let settleSeq = 0;

function wakeWaiter(t: TaskRec | undefined): void {
  if (t !== undefined && t !== current && t.dropped === 0) t.wake();
}

function installPromiseHook(): void {
  if (stopHook !== undefined) return;
  stopHook = <() => void>promiseHooks.createHook({
    init(p, parent) {
      if (current === undefined) return;
      waiters.set(p, null); // pending
      owner.set(p, current.ref);
      current.wakerClones++; // "waker clones" of a JS task: the promises it created
      // `parent` is the promise this one continues (`await parent`, `parent.then(…)`): its
      // settlement resumes the task.
      if (parent !== undefined) addWaiter(parent, current.ref);
    },
    before(p) {
      const t = owner.get(p)?.rec;
      if (t === undefined || t.dropped !== 0) return;
      current = t;
      t.pollStart();
    },
    after(p) {
      const t = owner.get(p)?.rec;
      if (t === undefined || t !== current) return;
      current = undefined;
      t.pollEnd();
    },
    settled(p) {
      const t = owner.get(p)?.rec;
      if (t !== undefined && t.dropped === 0) {
        t.wakerDrops++; // … and those that settled
        t.v++;
      }
      const w = waiters.get(p);
      if (w === undefined) return;
      waiters.delete(p);
      if (w === null) return;
      if (!('list' in w)) return wakeWaiter(w.rec);
      const seq = ++settleSeq;
      for (const { rec } of w.list) {
        if (rec === undefined || rec.wakeSeq === seq) continue;
        rec.wakeSeq = seq;
        wakeWaiter(rec);
      }
    },
  });
}

/** Whether a JS task spawn must be looked at (a console serves, or someone listens). */
export function observingTasks(): boolean {
  return consoles > 0 || taskSpawnChannel.hasSubscribers || taskEndChannel.hasSubscribers;
}

/**
 * A JS task was spawned: publishes `kyoto:task:spawn` and, while a console serves, returns its
 * record. Call only when {@link observingTasks} is true.
 */
export function taskSpawned(id: number, name: string | undefined, kind: 'local' | 'blocking'): TaskRec | undefined {
  if (taskSpawnChannel.hasSubscribers) {
    taskSpawnChannel.publish({ id, name, kind: kind === 'local' ? 'spawn' : 'blocking' });
  }
  if (consoles === 0) return undefined;
  const rec = new TaskRec('js', id, name, kind, callerLocation(), wallNow());
  tasks.set(rec.spanId, rec);
  return rec;
}

/** Runs `fn` as the first poll of the task `rec` (promises it creates belong to the task). */
export function firstPoll<R>(rec: TaskRec, fn: () => R): R {
  const prev = current;
  current = rec;
  rec.pollStart();
  try {
    return fn();
  } finally {
    rec.pollEnd();
    current = prev;
  }
}

/** A JS task finished: records it and publishes `kyoto:task:end`. */
export function taskEnded(
  id: number,
  name: string | undefined,
  kind: 'local' | 'blocking',
  rec: TaskRec | undefined,
  outcome: TaskOutcome,
): void {
  rec?.end(outcome);
  if (taskEndChannel.hasSubscribers) {
    taskEndChannel.publish({ id, name, kind: kind === 'local' ? 'spawn' : 'blocking', outcome });
  }
}

// ---------------------------------------------------------------------------------------------
// Resources

/** Whether a resource creation must be looked at. */
export function observingResources(): boolean {
  return consoles > 0 || resourceCreateChannel.hasSubscribers || resourceCloseChannel.hasSubscribers;
}

/** What a resource site keeps: the record (console) and/or the id (diagnostics only). */
export interface ResourceToken {
  readonly id: number;
  readonly kind: ResourceKind;
  readonly concreteType: string;
  readonly rec: ResourceRec | undefined;
  closed: boolean;
}

/**
 * A resource was created: publishes `kyoto:resource:create` and, while a console serves, records
 * it. Call only when {@link observingResources} is true.
 */
export function resourceCreated(
  kind: ResourceKind,
  concreteType: string,
  attrs?: Attr[],
  read?: () => Attr[] | undefined,
  parent?: ResourceToken,
): ResourceToken {
  let rec: ResourceRec | undefined;
  let id: number;
  if (consoles > 0) {
    rec = new ResourceRec(kind, concreteType, callerLocation() ?? parent?.rec?.location, read, attrs, parent?.rec);
    resources.set(rec.spanId, rec);
    id = rec.spanId;
  } else {
    id = nextSpanId++;
  }
  if (resourceCreateChannel.hasSubscribers) resourceCreateChannel.publish({ id, kind, concreteType });
  return { id, kind, concreteType, rec, closed: false };
}

/** A resource was closed, dropped or (for timers) fired. Idempotent. */
export function resourceClosed(token: ResourceToken): void {
  if (token.closed) return;
  token.closed = true;
  const rec = token.rec;
  if (rec !== undefined && rec.dropped === 0) {
    rec.refresh();
    rec.dropped = wallNow();
    rec.v++;
  }
  if (resourceCloseChannel.hasSubscribers) {
    resourceCloseChannel.publish({ id: token.id, kind: token.kind, concreteType: token.concreteType });
  }
}

/** Objects without a `close()` that ends them (mutexes): "dropped" when garbage-collected. */
const collected = new FinalizationRegistry<ResourceToken>((token) => {
  try {
    resourceClosed(token);
  } catch {
    // a subscriber threw: nothing to do from a finalizer
  }
});

/** Marks the resource `token` of `obj` dropped once `obj` is garbage-collected. */
export function closeWhenCollected(obj: object, token: ResourceToken): void {
  collected.register(obj, token, token);
}

// ---------------------------------------------------------------------------------------------
// Console lifetime

/** A console starts serving in this thread: instrumentation on. */
export function consoleStarted(): void {
  if (consoles++ === 0) installPromiseHook();
}

/** A console stopped: instrumentation off (and records dropped) when it was the last one. */
export function consoleStopped(): void {
  if (consoles === 0) return;
  if (--consoles > 0) return;
  stopHook?.();
  stopHook = undefined;
  current = undefined;
  // Promises outlive the console: forget which tasks they belong to and which tasks wait on them.
  owner = new WeakMap();
  waiters = new WeakMap();
  tasks.clear();
  resources.clear();
}

/** Consoles serving in this thread. */
export function consoleCount(): number {
  return consoles;
}

/** A fresh span id (for native task mirrors). */
export function newSpanId(): number {
  return nextSpanId++;
}
