/**
 * The blocking pool behind `spawnBlocking` (`kyoto/task`) and `Runtime.spawnBlocking`: a pool of
 * worker threads per runtime and JS thread, fed in batches. A module of its own so that it is not
 * part of `kyoto/task`'s exports (the package's entry re-exports them all).
 *
 * `kyoto/task` imports this module and this module imports `kyoto/task` (for `JoinHandle`); that
 * cycle is safe because `JoinHandle` is only used when a task is submitted, never while loading.
 * @module
 */
import { Worker } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { isAbsolute } from 'node:path';
import { availableParallelism } from 'node:os';
import { invalidArgValue, validateString, runtimeShutdownError } from '../errors';
import type { Runtime } from '../runtime';
import { JoinHandle } from '../task';
import { holdClock, releaseClock } from '../runtime/clock-hold';

/** Tasks per dispatch message. */
const CHUNK = 256;
/** Dispatched, unfinished tasks per worker (two chunks: one running, one waiting). */
const PER_WORKER = 2 * CHUNK;
/** Task states in the pool's shared array: a worker takes a task QUEUED → RUNNING, abort QUEUED → CANCELLED. */
const FREE = 0;
const QUEUED = 1;
const RUNNING = 2;
const CANCELLED = 3;

// The worker: runs every task of a batch, answers with one message per batch (the tasks that waited
// for their module: one per module, once they ran), and one per async task as it settles. Every
// answer goes out synchronously, as soon as it is known: a thread ends at the first uncaught error
// (another task's timer or immediate throwing), and an answer kept for later would be lost with it,
// failing a task that had finished. A batch is a list of groups `url, export, count, (slot, args) ×
// count`; a result is `slot, status, value` (status 1 value, 0 error, 2 cancelled before it started).
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const state = new Uint8Array(workerData.state);
const loaded = new Map();
const loading = new Map();
let out = [];
function send(o) {
  try {
    parentPort.postMessage(o);
  } catch {
    for (let i = 0; i < o.length; i += 3) {
      try {
        parentPort.postMessage([o[i], o[i + 1], o[i + 2]]);
      } catch (e) {
        parentPort.postMessage([o[i], 0, new Error('the blocking task\\'s ' + (o[i + 1] === 1 ? 'value' : 'error') + ' could not be cloned: ' + (e && e.message))]);
      }
    }
  }
}
function flush() {
  later = false;
  if (out.length === 0) return;
  const o = out;
  out = [];
  send(o);
}
function settle(slot, status, value) {
  out.push(slot, status, value);
  flush();
}
function run(slot, mod, url, name, args) {
  let fn = mod[name];
  if (typeof fn !== 'function' && mod.default != null) fn = mod.default[name];
  if (typeof fn !== 'function') {
    out.push(slot, 0, new TypeError('module ' + url + ' has no exported function "' + name + '"'));
    return;
  }
  let r;
  try {
    r = fn(...args);
  } catch (e) {
    out.push(slot, 0, e);
    return;
  }
  if (r !== null && (typeof r === 'object' || typeof r === 'function') && typeof r.then === 'function') {
    Promise.resolve(r).then((v) => settle(slot, 1, v), (e) => settle(slot, 0, e));
  } else {
    out.push(slot, 1, r);
  }
}
function load(url) {
  let p = loading.get(url);
  if (p === undefined) {
    p = import(url).then((m) => (loaded.set(url, m), m));
    p.catch(() => loading.delete(url));
    loading.set(url, p);
  }
  return p;
}
parentPort.on('message', (m) => {
  // Tasks waiting for their module: url → [slot, name, args, ...].
  let waiting;
  let i = 0;
  while (i < m.length) {
    const url = m[i], name = m[i + 1], end = i + 3 + 2 * m[i + 2];
    for (i += 3; i < end; i += 2) {
      const slot = m[i];
      if (Atomics.compareExchange(state, slot, ${QUEUED}, ${RUNNING}) !== ${QUEUED}) {
        out.push(slot, 2, undefined);
        continue;
      }
      const mod = loaded.get(url);
      if (mod !== undefined) {
        run(slot, mod, url, name, m[i + 1]);
      } else {
        if (waiting === undefined) waiting = new Map();
        let list = waiting.get(url);
        if (list === undefined) waiting.set(url, (list = []));
        list.push(slot, name, m[i + 1]);
      }
    }
  }
  flush();
  if (waiting === undefined) return;
  for (const [url, list] of waiting) {
    load(url).then((mod) => {
      for (let j = 0; j < list.length; j += 3) run(list[j], mod, url, list[j + 1], list[j + 2]);
      // Answered as soon as they ran, as a loaded module's tasks are at the end of their message:
      // before any timer, immediate or microtask of theirs, which could end the thread first.
      flush();
    }, (e) => {
      for (let j = 0; j < list.length; j += 3) out.push(list[j], 0, e);
      flush();
    });
  }
});
`;

class BlockingTask {
  slot = -1;
  worker: PoolWorker | undefined;
  constructor(
    readonly url: string,
    readonly name: string,
    readonly args: unknown[],
    readonly handle: JoinHandle<unknown>,
  ) {}
}

class PoolWorker {
  readonly worker: Worker;
  readonly tasks: (BlockingTask | undefined)[] = new Array(PER_WORKER);
  readonly free: number[] = [];
  inflight = 0;
  refed = true;
  dead = false;
  /** The thread ran: it answered, or started a task (a thread that never came up is not retried). */
  ran = false;

  constructor(
    readonly pool: BlockingPool,
    readonly base: number,
  ) {
    for (let i = PER_WORKER - 1; i >= 0; i--) this.free.push(base + i);
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { state: pool.state.buffer },
      name: 'kyoto-blocking',
    });
    this.worker.on('message', (m: unknown[]) => pool.onResults(this, m));
    // The thread's death is settled at 'exit', which Node emits once it has delivered every answer
    // the thread posted: its uncaught error can arrive ahead of them, and settling at 'error' would
    // fail tasks whose answers were already on their way.
    let error: { readonly err: unknown } | undefined;
    this.worker.on('error', (err) => (error ??= { err }));
    this.worker.on('exit', (code) =>
      pool.onDeath(this, error !== undefined ? error.err : new Error(`blocking worker exited with code ${code}`)),
    );
    this.unref();
  }

  ref(): void {
    if (!this.refed) {
      this.refed = true;
      this.worker.ref();
    }
  }

  unref(): void {
    if (this.refed) {
      this.refed = false;
      this.worker.unref();
    }
  }
}

/**
 * The blocking pool of one runtime in this thread: up to `size` worker threads. Tasks wait in a JS
 * queue, are dispatched in chunks (one message per chunk), and each worker answers a chunk with
 * one message; a task's state word in a SharedArrayBuffer decides a race between its start and an
 * abort. Idle workers are unref'd.
 */
class BlockingPool {
  readonly state: Uint8Array;
  readonly #size: number;
  #queue: BlockingTask[] = [];
  #head = 0;
  readonly #workers: PoolWorker[] = [];
  readonly #bases: number[] = [];
  #scheduled = false;
  #closed = false;
  /**
   * The runtime, held only while tasks are queued or running: a runtime dropped while its pool
   * is idle can be collected, and then its threads stop (see `spawnBlockingOn`).
   */
  keptRuntime: Runtime | undefined;

  constructor(size: number) {
    this.#size = size;
    this.state = new Uint8Array(new SharedArrayBuffer(size * PER_WORKER));
    for (let i = size - 1; i >= 0; i--) this.#bases.push(i * PER_WORKER);
  }

  submit(owner: Runtime, url: string, name: string, args: unknown[]): JoinHandle<unknown> {
    let task: BlockingTask | undefined = undefined;
    const handle = new JoinHandle<unknown>(null, undefined, () => this.#cancel(task!));
    task = new BlockingTask(url, name, args, handle);
    if (this.#closed) {
      handle._complete(2, undefined);
      return handle;
    }
    this.#queue.push(task);
    this.keptRuntime = owner;
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => {
        this.#scheduled = false;
        this.#dispatch();
      });
    }
    return handle;
  }

  #cancel(task: BlockingTask): boolean {
    if (task.worker === undefined) return true; // still queued here: the dispatcher skips it
    return Atomics.compareExchange(this.state, task.slot, QUEUED, CANCELLED) === QUEUED;
  }

  #dispatch(): void {
    let waiting = this.#queue.length - this.#head;
    if (waiting === 0) return;
    let busy = 0;
    for (const w of this.#workers) busy += w.inflight;
    // As Tokio's pool: a task does not wait behind a running one while a thread could be added
    // (a worker runs its tasks one after another, so two blocking tasks on one would be serial).
    const want = Math.min(this.#size, waiting + busy);
    while (this.#workers.length < want && this.#bases.length > 0) {
      this.#workers.push(new PoolWorker(this, this.#bases.pop()!));
    }
    const n = this.#workers.length;
    // The least busy first: a task goes to an idle worker before one with tasks ahead of it.
    const order = n === 1 ? this.#workers : this.#workers.slice().sort((a, b) => a.inflight - b.inflight);
    for (let wi = 0; wi < n && waiting > 0; wi++) {
      const w = order[wi];
      const room = PER_WORKER - w.inflight;
      if (room <= 0) continue;
      const take = Math.min(room, CHUNK, Math.max(1, Math.ceil(waiting / n)));
      const msg: unknown[] = [];
      const sent: BlockingTask[] = [];
      let group = -1;
      while (sent.length < take && this.#head < this.#queue.length) {
        const task = this.#queue[this.#head++];
        waiting--;
        if (task.handle.isFinished()) continue; // aborted before dispatch
        const slot = w.free.pop()!;
        task.slot = slot;
        task.worker = w;
        w.tasks[slot - w.base] = task;
        Atomics.store(this.state, slot, QUEUED);
        if (group < 0 || msg[group] !== task.url || msg[group + 1] !== task.name) {
          group = msg.length;
          msg.push(task.url, task.name, 0);
        }
        (msg[group + 2] as number)++;
        msg.push(slot, task.args);
        sent.push(task);
      }
      if (sent.length === 0) continue;
      w.inflight += sent.length;
      // A blocking task in flight keeps a paused clock from auto-advancing (as in Tokio); released
      // in #finish.
      holdClock(sent.length);
      w.ref();
      try {
        w.worker.postMessage(msg);
      } catch {
        // Some argument cannot be cloned: send the tasks one by one, failing those that cannot go.
        for (const task of sent) {
          try {
            w.worker.postMessage([task.url, task.name, 1, task.slot, task.args]);
          } catch (err) {
            this.#finish(w, task.slot, 0, err);
          }
        }
        // Tasks that failed here get no answer from the worker: if none went, nothing will unref
        // it (onResults does that), and the idle worker would hold the process open.
        if (w.inflight === 0) w.unref();
      }
    }
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    this.#releaseRuntimeIfIdle();
  }

  #finish(w: PoolWorker, slot: number, status: number, value: unknown): void {
    const i = slot - w.base;
    const task = w.tasks[i];
    if (task === undefined) return;
    w.tasks[i] = undefined;
    this.state[slot] = FREE;
    w.free.push(slot);
    w.inflight--;
    releaseClock();
    task.handle._complete(status, value);
  }

  onResults(w: PoolWorker, m: unknown[]): void {
    w.ran = true;
    for (let i = 0; i < m.length; i += 3) this.#finish(w, m[i] as number, m[i + 1] as number, m[i + 2]);
    if (w.inflight === 0) w.unref();
    if (this.#head < this.#queue.length) this.#dispatch();
    else this.#releaseRuntimeIfIdle();
  }

  #releaseRuntimeIfIdle(): void {
    if (this.#head < this.#queue.length) return;
    for (const w of this.#workers) if (w.inflight > 0) return;
    this.keptRuntime = undefined;
  }

  onDeath(w: PoolWorker, err: unknown): void {
    if (w.dead) return;
    w.dead = true;
    const at = this.#workers.indexOf(w);
    if (at >= 0) this.#workers.splice(at, 1);
    const unstarted: BlockingTask[] = [];
    // A task the thread never started did not die with it: as in Tokio, a blocking task fails only
    // by itself. It goes back to the queue, ahead of later tasks, for another thread; unless this
    // thread never came up (it could not start: another would not either), when all fail as before.
    const retry = !this.#closed && (w.ran || w.tasks.some((t) => t !== undefined && Atomics.load(this.state, t.slot) === RUNNING));
    for (const task of w.tasks) {
      if (task === undefined) continue;
      if (retry && Atomics.compareExchange(this.state, task.slot, QUEUED, FREE) === QUEUED) {
        w.tasks[task.slot - w.base] = undefined;
        w.free.push(task.slot);
        w.inflight--;
        releaseClock(); // held again when it is dispatched
        task.worker = undefined;
        task.slot = -1;
        unstarted.push(task);
      } else {
        this.#finish(w, task.slot, this.#closed ? 2 : 0, err);
      }
    }
    if (unstarted.length > 0) {
      unstarted.sort((a, b) => a.handle.id - b.handle.id);
      this.#queue.splice(this.#head, 0, ...unstarted);
    }
    this.#bases.push(w.base);
    void w.worker.terminate();
    if (!this.#closed && this.#head < this.#queue.length) this.#dispatch();
    else this.#releaseRuntimeIfIdle();
  }

  /** Worker threads of this pool that are alive (idle or busy); `Runtime.metrics()` counts them. */
  get liveWorkers(): number {
    return this.#workers.length;
  }

  /** Cancels queued tasks and stops the workers (their running tasks end as cancelled). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.keptRuntime = undefined;
    for (let i = this.#head; i < this.#queue.length; i++) this.#queue[i].handle._complete(2, undefined);
    this.#queue = [];
    this.#head = 0;
    for (const w of [...this.#workers]) this.onDeath(w, undefined);
  }
}

let lastModuleUrl: unknown;
let lastModuleHref = '';

function moduleUrlOf(moduleUrl: unknown): string {
  if (moduleUrl === lastModuleUrl && typeof moduleUrl === 'string') return lastModuleHref;
  if (moduleUrl instanceof URL) return moduleUrl.href;
  validateString(moduleUrl, 'moduleUrl');
  lastModuleUrl = undefined;
  lastModuleHref = parseModuleUrl(moduleUrl);
  lastModuleUrl = moduleUrl;
  return lastModuleHref;
}

function parseModuleUrl(moduleUrl: string): string {
  if (isAbsolute(moduleUrl)) return pathToFileURL(moduleUrl).href;
  try {
    return new URL(moduleUrl).href;
  } catch {
    throw invalidArgValue('moduleUrl', 'must be a URL or an absolute path', moduleUrl);
  }
}

/**
 * Pools whose runtime was collected without `shutdown()`, as the native runtime's threads stop
 * then: idle by then (a pool holds its runtime while it has tasks), so closing loses nothing.
 */
const orphaned = new FinalizationRegistry<BlockingPool>((pool) => pool.close());

/** Submits a blocking task to `rt`'s pool (made on first use; closed when `rt` shuts down or is collected). */
export function spawnBlockingOn<T>(rt: Runtime, moduleUrl: string | URL, exportName: string, args: unknown[]): JoinHandle<T> {
  const url = moduleUrlOf(moduleUrl);
  validateString(exportName, 'exportName');
  if (rt.isShutdown) throw runtimeShutdownError();
  let pool = rt._blocking as BlockingPool | undefined;
  if (pool === undefined) {
    rt._native(); // throws ERR_RUNTIME_SHUTDOWN once shut down
    const size = rt._maxBlockingThreads ?? Math.max(1, availableParallelism());
    pool = new BlockingPool(size);
    rt._blocking = pool;
    const p = pool;
    rt._onShutdown(() => p.close());
    orphaned.register(rt, p);
  }
  return pool.submit(rt, url, exportName, args) as JoinHandle<T>;
}
