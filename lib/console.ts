/**
 * `kyoto/console`: serves the tokio-console gRPC protocol (`rs.tokio.console.instrument.Instrument`)
 * so the unmodified `tokio-console` CLI shows kyoto's tasks and resources, and publishes task and
 * resource events on `node:diagnostics_channel`.
 *
 * ```ts
 * import { serveConsole } from 'kyoto/console';
 * const console = await serveConsole(); // then run `tokio-console` (http://127.0.0.1:6669)
 * // …
 * await console.close();
 * ```
 *
 * **What is shown.**
 * - *JS tasks* (`kyoto/task` `spawn`, `JoinSet.spawn`, `spawnBlocking`) of the thread that called
 *   `serveConsole`: target `kyoto::task`, kind `local` (they run on the thread that spawned them,
 *   like Tokio's `spawn_local`) or `blocking`; fields `task.name` and `task.id` (`JoinHandle.id`);
 *   location = the `spawn` call site. A JS task's **poll** is one run of its code: the first run of
 *   its body, then every continuation (a promise reaction job) of a promise the task created — in
 *   practice each resumption after an `await`. **Busy** time is the time spent in those runs. A
 *   **wake** is the settlement, outside the task's own runs, of a promise the task waits on (one it
 *   `await`ed or chained with `then` during a run); a continuation that needs none (after `await` of
 *   an already-settled value) is a poll without a wake, like a cooperative yield, and JS tasks report
 *   no self-wakes. **Scheduled** time runs from the first wake to the next poll. "Waker
 *   clones/drops" are the promises the task created and those of them that settled. `spawnBlocking`
 *   tasks run on other threads: they show their spawn and completion only, with no polls.
 * - *Native tasks* of kyoto-rt (every runtime in the process — e.g. the task behind each `kyoto/net`
 *   socket, `kyoto/io` copies, runtime operations): target `kyoto_rt::task`, kind `task` or
 *   `blocking`, field `task.id`, location = the Rust `spawn` site. Polls, busy, scheduled time, wakes,
 *   self-wakes and waker clones/drops are measured exactly as Tokio's instrumentation does. Only one
 *   thread of the process receives them (the first to serve a console); tasks spawned before
 *   instrumentation started are not shown.
 * - *Resources* created while serving: sleeps (`Sleep`, attribute `duration`) and intervals
 *   (`Interval`, `period`; its sleeps are its internal children) as kind `Timer`; sockets of
 *   `kyoto/net` (`TcpStream`, `TcpListener`, `UdpSocket`, `UnixStream`, `UnixListener`,
 *   `UnixDatagram`, attributes `local.addr`/`peer.addr`) as kind `Net`, closed at `close()`;
 *   `Semaphore` (`permits`, `closed`), `Mutex` and `RwLock` (`locked`, `permits`) as kind `Sync`,
 *   dropped when garbage-collected (JS has no destructors).
 *
 * **Task details** (`WatchTaskDetails`): poll-time and scheduled-time histograms in HdrHistogram's
 * format, 1 ns to 1 s at one significant digit (each bucket at most 1/16 of its value wide; longer
 * durations are counted as outliers), for JS and native tasks alike. A native task's histograms are
 * read while it runs; after it completes the view keeps the last ones read.
 *
 * **Not shown** (kyoto cannot know, or does not record): async operations and poll operations on
 * resources (the resource detail view lists none), parent spans, and future sizes.
 *
 * **Cost.** Until a console serves or a `kyoto:*` channel has subscribers, an instrumented JS site
 * pays one variable read and one `hasSubscribers` check, and a native spawn one relaxed atomic load.
 * While a console serves, JS task continuations are attributed through a V8 promise hook (every
 * promise of the thread pays a `WeakMap` lookup), each spawn/resource captures a stack frame, and a
 * native task spawned meanwhile carries about 3.6 KiB of stats (mostly its two histograms) until it
 * completes and is reported. Closing the last console switches all of it off.
 *
 * **diagnostics_channel.** Published only while the channel has subscribers (nothing is built
 * otherwise), for tasks and resources created while someone subscribed:
 * - `kyoto:task:spawn` — {@link TaskSpawnMessage} `{ id, name, kind }`
 * - `kyoto:task:end` — {@link TaskEndMessage} `{ id, name, kind, outcome }`
 * - `kyoto:resource:create` — {@link ResourceMessage} `{ id, kind, concreteType }`
 * - `kyoto:resource:close` — {@link ResourceMessage}
 * @module
 */
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { native } from './native';
import { codedError, illegalConstructor, kConstruct, optionsBag, validateNumber, validateString } from './errors';
import * as I from './console/instrument';
import { Writer, decodeFields, timestamp, duration } from './console/proto';
import { durationHistogram } from './console/histogram';

// ---------------------------------------------------------------------------------------------
// Public types

/** Options of {@link serveConsole}. */
export interface ServeConsoleOptions {
  /** TCP port to listen on (default 6669, tokio-console's default; 0 picks a free port). */
  port?: number;
  /** Address to listen on (default `'127.0.0.1'`). */
  host?: string;
  /** Milliseconds between updates sent to each client (default 1000, at least 10). */
  publishInterval?: number;
  /**
   * How long a completed task or closed resource is kept for clients that connect later (ms, default
   * 60 000; at most the 10 000 most recent of each are kept). A record a connected client has not
   * received in its final state yet is kept until sent, up to 20 000 of each in all (a client that
   * has not read its updates for 10 s is no longer waited for). With several consoles in a thread,
   * the longest retention applies to all.
   */
  retention?: number;
}

/** The message of `kyoto:task:spawn`. */
export interface TaskSpawnMessage {
  /** The task's id (`JoinHandle.id`). */
  id: number;
  /** The name given to `spawn`, if any. */
  name: string | undefined;
  /** `'spawn'` (`spawn`, `JoinSet.spawn`) or `'blocking'` (`spawnBlocking`). */
  kind: 'spawn' | 'blocking';
}

/** The message of `kyoto:task:end`. */
export interface TaskEndMessage extends TaskSpawnMessage {
  /** `'ok'` (a value), `'error'` (it threw or rejected) or `'cancelled'` (aborted). */
  outcome: 'ok' | 'error' | 'cancelled';
}

/** The message of `kyoto:resource:create` and `kyoto:resource:close`. */
export interface ResourceMessage {
  /** The resource's id (unique in the thread; the console's resource id while one serves). */
  id: number;
  /** `'timer'` (sleeps, intervals), `'net'` (sockets) or `'sync'` (semaphores, mutexes, rwlocks). */
  kind: 'timer' | 'net' | 'sync';
  /** `'Sleep'`, `'Interval'`, `'TcpStream'`, `'TcpListener'`, `'UdpSocket'`, `'Semaphore'`, `'Mutex'`, … */
  concreteType: string;
}

/** Names of the channels kyoto publishes on (`node:diagnostics_channel`). */
export const diagnosticsChannels = {
  /** {@link TaskSpawnMessage} when a JS task is spawned. */
  taskSpawn: 'kyoto:task:spawn',
  /** {@link TaskEndMessage} when it finishes. */
  taskEnd: 'kyoto:task:end',
  /** {@link ResourceMessage} when a resource is created. */
  resourceCreate: 'kyoto:resource:create',
  /** {@link ResourceMessage} when it is closed (sockets), fires or aborts (sleeps), or is collected (sync). */
  resourceClose: 'kyoto:resource:close',
} as const;

// ---------------------------------------------------------------------------------------------
// Metadata: ids are fixed; every task and resource refers to one of these.

const META_JS_TASK = 1;
const META_NATIVE_TASK = 2;
const META_TIMER = 3;
const META_NET = 4;
const META_SYNC = 5;

const TASK_FIELDS = ['kind', 'task.name', 'task.id'];
const RESOURCE_FIELDS: Record<I.ResourceKind, string[]> = {
  timer: ['concrete_type', 'kind', 'duration', 'period', 'missed_tick_behavior'],
  net: ['concrete_type', 'kind', 'local.addr', 'peer.addr'],
  sync: ['concrete_type', 'kind', 'permits', 'locked', 'closed'],
};
const RESOURCE_META: Record<I.ResourceKind, number> = { timer: META_TIMER, net: META_NET, sync: META_SYNC };
const RESOURCE_KIND_NAME: Record<I.ResourceKind, string | undefined> = { timer: undefined, net: 'Net', sync: 'Sync' };

interface MetaDef {
  id: number;
  name: string;
  target: string;
  modulePath: string;
  fields: string[];
}

const METADATA: MetaDef[] = [
  { id: META_JS_TASK, name: 'runtime.spawn', target: 'kyoto::task', modulePath: 'kyoto/task', fields: TASK_FIELDS },
  { id: META_NATIVE_TASK, name: 'runtime.spawn', target: 'kyoto_rt::task', modulePath: 'kyoto_rt::task', fields: TASK_FIELDS },
  { id: META_TIMER, name: 'runtime.resource', target: 'kyoto::time', modulePath: 'kyoto/time', fields: RESOURCE_FIELDS.timer },
  { id: META_NET, name: 'runtime.resource', target: 'kyoto::net', modulePath: 'kyoto/net', fields: RESOURCE_FIELDS.net },
  { id: META_SYNC, name: 'runtime.resource', target: 'kyoto::sync', modulePath: 'kyoto/sync', fields: RESOURCE_FIELDS.sync },
];

// ---------------------------------------------------------------------------------------------
// Encoding (field numbers from console-api/proto/*.proto)

function encodeMetadata(): Uint8Array {
  // common.RegisterMetadata { repeated NewMetadata metadata = 1 }
  const w = new Writer();
  for (const m of METADATA) {
    w.message(1, (nm) => {
      nm.message(1, (id) => id.uint(1, m.id)); // MetaId
      nm.message(2, (md) => {
        md.string(1, m.name);
        md.string(2, m.target);
        md.string(3, m.modulePath);
        md.uint(5, 0); // Kind.SPAN
        md.uint(6, 4); // Level.TRACE
        for (const f of m.fields) md.stringPresent(7, f);
      });
    });
  }
  return w.finish();
}

const METADATA_BYTES = encodeMetadata();

type FieldValue = { str: string } | { u64: number } | { i64: number } | { bool: boolean };

/** common.Field, named by index into its metadata's `field_names` (or by string if not listed). */
function encodeField(w: Writer, field: number, meta: number, names: string[], name: string, value: FieldValue): void {
  w.message(field, (f) => {
    const idx = names.indexOf(name);
    if (idx >= 0) f.uintPresent(2, idx);
    else f.stringPresent(1, name);
    if ('str' in value) f.stringPresent(4, value.str);
    else if ('u64' in value) f.uintPresent(5, value.u64);
    else if ('i64' in value) f.sintPresent(6, value.i64);
    else f.boolPresent(7, value.bool);
    f.message(8, (m) => m.uint(1, meta));
  });
}

function encodeLocation(w: Writer, field: number, loc: I.Loc): void {
  w.message(field, (l) => {
    l.stringPresent(1, loc.file);
    l.uintPresent(3, loc.line);
    l.uintPresent(4, loc.column);
  });
}

/** A `tasks.Task` as a `new_tasks` (1) entry of a TaskUpdate. */
function encodeNewTask(rec: I.TaskRec): Uint8Array {
  const w = new Writer();
  const meta = rec.origin === 'js' ? META_JS_TASK : META_NATIVE_TASK;
  w.message(1, (t) => {
    t.message(1, (id) => id.uint(1, rec.spanId));
    t.message(2, (m) => m.uint(1, meta));
    t.uint(3, rec.kind === 'blocking' ? 1 : 0);
    encodeField(t, 4, meta, TASK_FIELDS, 'kind', { str: rec.kind });
    if (rec.name !== undefined) encodeField(t, 4, meta, TASK_FIELDS, 'task.name', { str: rec.name });
    encodeField(t, 4, meta, TASK_FIELDS, 'task.id', { u64: rec.taskId });
    if (rec.location !== undefined) encodeLocation(t, 6, rec.location);
  });
  return w.finish();
}

/** A `stats_update` (3) map entry of a TaskUpdate. */
function encodeTaskStats(rec: I.TaskRec): Uint8Array {
  const w = new Writer();
  w.message(3, (e) => {
    e.uint(1, rec.spanId);
    e.message(2, (s) => {
      timestamp(s, 1, rec.created);
      if (rec.dropped !== 0) timestamp(s, 2, rec.dropped);
      s.uint(3, rec.wakes);
      s.uint(4, rec.wakerClones);
      s.uint(5, rec.wakerDrops);
      if (rec.lastWake !== 0) timestamp(s, 6, rec.lastWake);
      s.message(7, (p) => {
        p.uint(1, rec.polls);
        if (rec.firstPoll !== 0) timestamp(p, 3, rec.firstPoll);
        if (rec.lastPollStarted !== 0) timestamp(p, 4, rec.lastPollStarted);
        if (rec.lastPollEnded !== 0) timestamp(p, 5, rec.lastPollEnded);
        duration(p, 6, rec.busy);
      });
      s.uint(8, rec.selfWakes);
      duration(s, 9, rec.scheduled);
    });
  });
  return w.finish();
}

/** A `resources.Resource` as a `new_resources` (1) entry of a ResourceUpdate. */
function encodeNewResource(rec: I.ResourceRec): Uint8Array {
  const w = new Writer();
  w.message(1, (r) => {
    r.message(1, (id) => id.uint(1, rec.spanId));
    r.message(2, (m) => m.uint(1, RESOURCE_META[rec.kind]));
    r.string(3, rec.concreteType);
    r.message(4, (k) => {
      const other = RESOURCE_KIND_NAME[rec.kind];
      if (other === undefined) k.uintPresent(1, 0); // Known.TIMER
      else k.stringPresent(2, other);
    });
    if (rec.location !== undefined) encodeLocation(r, 5, rec.location);
    if (rec.parent !== undefined) r.message(6, (id) => id.uint(1, rec.parent!.spanId));
    r.bool(7, rec.parent !== undefined);
  });
  return w.finish();
}

/** A `stats_update` (2) map entry of a ResourceUpdate. */
function encodeResourceStats(rec: I.ResourceRec): Uint8Array {
  const w = new Writer();
  const meta = RESOURCE_META[rec.kind];
  const names = RESOURCE_FIELDS[rec.kind];
  w.message(2, (e) => {
    e.uint(1, rec.spanId);
    e.message(2, (s) => {
      timestamp(s, 1, rec.created);
      if (rec.dropped !== 0) timestamp(s, 2, rec.dropped);
      for (const a of rec.attrs) {
        s.message(3, (attr) => {
          const v = a.value;
          let value: FieldValue;
          if (typeof v === 'boolean') value = { bool: v };
          else if (typeof v === 'string') value = { str: v };
          else if (Number.isInteger(v) && v >= 0) value = { u64: v };
          else if (Number.isInteger(v)) value = { i64: v };
          else value = { str: String(v) };
          encodeField(attr, 1, meta, names, a.name, value);
          if (a.unit !== undefined) attr.stringPresent(2, a.unit);
        });
      }
    });
  });
  return w.finish();
}

/** Encoded parts of a record, cached per version (shared by every client). */
interface Encoded {
  v: number;
  stats: Uint8Array;
  created?: Uint8Array;
}
const encoded = new WeakMap<object, Encoded>();

function encodedTask(rec: I.TaskRec): Encoded {
  let e = encoded.get(rec);
  if (e === undefined || e.v !== rec.v) {
    e = { v: rec.v, stats: encodeTaskStats(rec), created: e?.created };
    encoded.set(rec, e);
  }
  return e;
}

function encodedResource(rec: I.ResourceRec): Encoded {
  let e = encoded.get(rec);
  if (e === undefined || e.v !== rec.v) {
    e = { v: rec.v, stats: encodeResourceStats(rec), created: e?.created };
    encoded.set(rec, e);
  }
  return e;
}

/** Larger messages are split: tonic (tokio-console's gRPC library) refuses messages over 4 MiB. */
const MAX_MESSAGE = 4 * 1024 * 1024 - 64 * 1024;

/** instrument.Update messages carrying `taskParts`/`resourceParts` (each a group that must stay together). */
function buildUpdates(
  taskParts: Uint8Array[][],
  resourceParts: Uint8Array[][],
  withMetadata: boolean,
  droppedTasks: number,
): Uint8Array[] {
  const out: Uint8Array[] = [];
  let ti = 0;
  let ri = 0;
  let first = true;
  do {
    const now = I.wallNow();
    const tasks = new Writer();
    const res = new Writer();
    let size = withMetadata && first ? METADATA_BYTES.length : 0;
    while (ti < taskParts.length) {
      const g = taskParts[ti];
      const n = g.reduce((a, b) => a + b.length, 0);
      if (size + n > MAX_MESSAGE && size > 0) break;
      for (const b of g) tasks.raw(b);
      size += n;
      ti++;
    }
    while (ri < resourceParts.length && ti >= taskParts.length) {
      const g = resourceParts[ri];
      const n = g.reduce((a, b) => a + b.length, 0);
      if (size + n > MAX_MESSAGE && size > 0) break;
      for (const b of g) res.raw(b);
      size += n;
      ri++;
    }
    if (first) tasks.uint(4, droppedTasks);
    const u = new Writer();
    timestamp(u, 1, now);
    u.bytes(2, tasks.finish());
    u.bytes(3, res.finish());
    u.bytes(4, new Uint8Array(0));
    if (withMetadata && first) u.bytes(5, METADATA_BYTES);
    out.push(u.finish());
    first = false;
  } while (ti < taskParts.length || ri < resourceParts.length);
  return out;
}

/** A gRPC length-prefixed message (uncompressed). */
function frame(msg: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(5 + msg.length);
  b[0] = 0;
  b.writeUInt32BE(msg.length, 1);
  b.set(msg, 5);
  return b;
}

// ---------------------------------------------------------------------------------------------
// The shared state of this thread's consoles: native task mirrors, refresh and eviction.

const nativeTasks = new Map<number, I.TaskRec>();
let nativeOwned = false;
let lastRefresh = 0;
const servers = new Set<ConsoleServer>();

function hubStart(): void {
  if (I.consoleCount() === 0) {
    try {
      nativeOwned = native.consoleAttach();
    } catch {
      nativeOwned = false;
    }
  }
  I.consoleStarted();
}

function hubStop(): void {
  I.consoleStopped();
  if (I.consoleCount() > 0) return;
  if (nativeOwned) {
    try {
      native.consoleDetach();
    } catch {
      // the addon is going away
    }
  }
  nativeOwned = false;
  nativeTasks.clear();
}

/** Every WatchUpdates client of this thread's consoles (eviction keeps what they are owed). */
const allWatches = new Set<Watch>();

/** Pulls native task changes, re-reads resource attributes and forgets expired records. */
function refresh(): void {
  const now = I.wallNow();
  if (now - lastRefresh < 5) return;
  lastRefresh = now;
  if (nativeOwned) {
    let snap: ReturnType<typeof native.consoleSnapshot> = null;
    try {
      snap = native.consoleSnapshot();
    } catch {
      snap = null;
    }
    if (snap != null) {
      // Every client is told, in its next update, of the events lost since its previous one.
      if (snap.droppedEvents > 0) for (const w of allWatches) w.dropped += snap.droppedEvents;
      for (const r of snap.tasks) {
        let rec = nativeTasks.get(r.id);
        if (rec === undefined) {
          if (!r.isNew) continue;
          const loc = r.file == null ? undefined : { file: r.file, line: r.line ?? 0, column: r.column ?? 0 };
          rec = new I.TaskRec('native', r.id, undefined, r.kind, loc, r.created);
          nativeTasks.set(r.id, rec);
          I.tasks.set(rec.spanId, rec);
        }
        rec.polls = r.polls;
        rec.busy = r.busyNs / 1e6;
        rec.scheduled = r.scheduledNs / 1e6;
        rec.firstPoll = r.firstPoll ?? 0;
        rec.lastPollStarted = r.lastPollStarted ?? 0;
        rec.lastPollEnded = r.lastPollEnded ?? 0;
        rec.wakes = r.wakes;
        rec.selfWakes = r.selfWakes;
        rec.wakerClones = r.wakerClones;
        rec.wakerDrops = r.wakerDrops;
        rec.lastWake = r.lastWake ?? 0;
        if (r.dropped != null) {
          rec.dropped = r.dropped;
          rec.outcome = r.outcome;
          nativeTasks.delete(r.id);
        }
        rec.v++;
      }
    }
  }
  for (const r of I.resources.values()) r.refresh();
  // While some client is paused, keep what retention would drop (it has not seen the final states
  // yet), but never more than the cap. Records are shared by the thread's consoles: keep them as
  // long as the longest retention asks.
  let paused = false;
  let retention = 0;
  for (const s of servers) {
    if (s._paused) paused = true;
    retention = Math.max(retention, s._retention);
  }
  evict(I.tasks, now, paused ? Infinity : retention);
  evict(I.resources, now, paused ? Infinity : retention);
}

/** A client that could not take an update for this long no longer holds records back. */
const STUCK_MS = 10_000;

/**
 * Whether some client has not received the final version of `r` (console-subscriber keeps such
 * records: evicting one leaves the client showing the task running, or the resource open, forever).
 */
function owed(r: { v: number }, now: number): boolean {
  for (const w of allWatches) {
    if (w.stuckSince !== 0 && now - w.stuckSince > STUCK_MS) continue;
    if (w.sent.get(r) !== r.v) return true;
  }
  return false;
}

/**
 * Completed tasks (closed resources) kept at most, oldest forgotten first, whatever the retention,
 * besides those still owed to a client.
 */
const MAX_RETAINED = 10_000;
/** Kept at most counting those owed (a paused client is owed everything): past it the oldest go anyway. */
const HARD_MAX = 2 * MAX_RETAINED;

function evict(map: Map<number, { dropped: number; v: number }>, now: number, retention: number): void {
  let retained = 0;
  let owing: Set<object> | undefined;
  for (const [k, r] of map) {
    if (r.dropped === 0) continue;
    if (allWatches.size > 0 && owed(r, now)) (owing ??= new Set()).add(r);
    else if (now - r.dropped > retention) map.delete(k);
    else retained++;
  }
  const owedCount = owing?.size ?? 0;
  if (retained > MAX_RETAINED) {
    // Insertion order is creation order: drop the oldest completed ones.
    for (const [k, r] of map) {
      if (r.dropped === 0 || owing?.has(r) === true) continue;
      map.delete(k);
      if (--retained <= MAX_RETAINED) break;
    }
  }
  let total = retained + owedCount;
  if (total <= HARD_MAX) return;
  for (const [k, r] of map) {
    if (r.dropped === 0) continue;
    map.delete(k);
    if (--total <= HARD_MAX) return;
  }
}

// ---------------------------------------------------------------------------------------------
// gRPC over HTTP/2 (h2c)

const SERVICE = '/rs.tokio.console.instrument.Instrument/';
const GRPC_OK = 0;
const GRPC_NOT_FOUND = 5;
const GRPC_RESOURCE_EXHAUSTED = 8;
const GRPC_UNIMPLEMENTED = 12;
const GRPC_INTERNAL = 13;
const GRPC_UNAVAILABLE = 14;
/** Requests are tiny (an id at most). */
const MAX_REQUEST = 64 * 1024;
/** A client that has this much unsent skips updates until it catches up (it misses nothing). */
const MAX_BUFFERED = 8 * 1024 * 1024;

/** A WatchTaskDetails client with this much unsent gets no new snapshot until it catches up. */
const MAX_DETAILS_BUFFERED = 16 * 1024;

type Stream = http2.ServerHttp2Stream;

function trailersOnly(stream: Stream, code: number, message: string): void {
  if (stream.destroyed || stream.headersSent) return;
  try {
    stream.respond(
      {
        ':status': 200,
        'content-type': 'application/grpc',
        'grpc-status': String(code),
        'grpc-message': encodeURIComponent(message),
      },
      { endStream: true },
    );
  } catch {
    stream.destroy();
  }
}

/** Starts a response whose trailers carry `status()` when the stream ends. */
function respond(stream: Stream, status: () => [number, string]): boolean {
  if (stream.destroyed) return false;
  stream.once('wantTrailers', () => {
    const [code, message] = status();
    try {
      stream.sendTrailers(
        message === '' ? { 'grpc-status': String(code) } : { 'grpc-status': String(code), 'grpc-message': encodeURIComponent(message) },
      );
    } catch {
      stream.destroy();
    }
  });
  try {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  } catch {
    stream.destroy();
    return false;
  }
  return true;
}

/** Reads a unary request body: one length-prefixed message. */
function readRequest(stream: Stream, done: (err: [number, string] | undefined, msg: Uint8Array) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let failed = false;
  stream.on('data', (c: Buffer) => {
    if (failed) return;
    size += c.length;
    if (size > MAX_REQUEST) {
      failed = true;
      done([GRPC_RESOURCE_EXHAUSTED, 'request too large'], new Uint8Array(0));
      return;
    }
    chunks.push(c);
  });
  stream.on('end', () => {
    if (failed) return;
    const body = Buffer.concat(chunks);
    if (body.length === 0) return done(undefined, new Uint8Array(0)); // no message: all defaults
    if (body.length < 5) return done([GRPC_INTERNAL, 'truncated gRPC message'], body);
    if (body[0] !== 0) return done([GRPC_UNIMPLEMENTED, 'compressed messages are not supported'], body);
    const len = body.readUInt32BE(1);
    if (body.length !== 5 + len) return done([GRPC_INTERNAL, 'one request message expected'], body);
    done(undefined, body.subarray(5));
  });
}

interface Watch {
  stream: Stream;
  /** Version of each record last sent to this client. */
  sent: WeakMap<object, number>;
  /** Since when (wall ms) updates are skipped because it does not read; 0: it keeps up. */
  stuckSince: number;
  /** Native task events lost since its last update (its `dropped_events`). */
  dropped: number;
}

interface DetailsWatch {
  stream: Stream;
  task: I.TaskRec;
}

/**
 * A console endpoint returned by {@link serveConsole}. While it listens it holds the process open,
 * like a `net.Server`, unless {@link ConsoleServer.unref}'d. Obtained from {@link serveConsole};
 * not constructed directly (`new` throws `ERR_ILLEGAL_CONSTRUCTOR`).
 */
export class ConsoleServer {
  readonly #server: http2.Http2Server;
  /** @internal How long completed records are kept for later clients (ms). */
  readonly _retention: number;
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  readonly #watches = new Set<Watch>();
  readonly #details = new Set<DetailsWatch>();
  readonly #states = new Set<Stream>();
  #timer: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;
  #refed = true;
  /** @internal Pause: no updates are sent until Resume. */
  _paused = false;
  /** The connection that sent the last Pause: when it closes, updates resume. */
  #pausedBy: http2.Http2Session | undefined;

  /** @internal Use {@link serveConsole}. */
  constructor(token: typeof kConstruct, server: http2.Http2Server, interval: number, retention: number) {
    if (token !== kConstruct) throw illegalConstructor();
    this.#server = server;
    this._retention = retention;
    server.on('session', (s) => this.#onSession(s));
    server.on('stream', (stream, headers) => this.#onStream(stream, headers));
    this.#timer = setInterval(() => this.#tick(), interval);
    this.#timer.unref();
  }

  /** The port it listens on. */
  get port(): number {
    return this.address().port;
  }

  /** `{ address, family, port }` it listens on, like `net.Server#address()`. */
  address(): AddressInfo {
    const a = this.#server.address();
    if (a !== null && typeof a === 'object') return { address: a.address, family: a.family, port: a.port };
    return { address: '', family: '', port: 0 };
  }

  /** Whether {@link ConsoleServer.close} was called. */
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /** Whether updates are paused (a client sent `Pause`). */
  get paused(): boolean {
    return this._paused;
  }

  /** Lets the process exit while the console listens (and while clients are connected). */
  unref(): this {
    this.#refed = false;
    this.#server.unref();
    for (const s of this.#sessions) s.unref();
    return this;
  }

  /** Undoes {@link ConsoleServer.unref}. */
  ref(): this {
    this.#refed = true;
    if (this.#closing === undefined) this.#server.ref();
    for (const s of this.#sessions) s.ref();
    return this;
  }

  /**
   * Stops listening (the port is free once this resolves), ends every client stream with status
   * OK, closes the connections (forcibly after 1 s) and switches instrumentation off if no other
   * console in this thread needs it. Idempotent.
   */
  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closing = new Promise<void>((resolve) => {
      if (this.#timer !== undefined) clearInterval(this.#timer);
      this.#timer = undefined;
      servers.delete(this);
      hubStop();
      for (const w of this.#watches) {
        w.stream.end();
        allWatches.delete(w);
      }
      for (const d of this.#details) d.stream.end();
      for (const s of this.#states) s.end();
      this.#watches.clear();
      this.#details.clear();
      this.#states.clear();
      const force = setTimeout(() => {
        for (const s of this.#sessions) s.destroy();
      }, 1000);
      force.unref();
      this.#server.close(() => {
        clearTimeout(force);
        resolve();
      });
      for (const s of this.#sessions) s.close();
    });
    return this.#closing;
  }

  /** Same as {@link ConsoleServer.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #onSession(s: http2.ServerHttp2Session): void {
    this.#sessions.add(s);
    s.on('error', () => {});
    s.on('close', () => {
      this.#sessions.delete(s);
      // Like console-subscriber once no watcher remains: a client that paused and went away must
      // not leave the console paused for good (nothing would be sent, or forgotten, again).
      if (this.#pausedBy === s) this.#setPaused(false, undefined);
    });
    if (!this.#refed) s.unref();
    if (this.#closing !== undefined) s.close();
  }

  #onStream(stream: Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on('error', () => {});
    const path = headers[':path'];
    const ct = headers['content-type'];
    if (headers[':method'] !== 'POST' || typeof ct !== 'string' || !ct.startsWith('application/grpc')) {
      try {
        stream.respond({ ':status': 415 }, { endStream: true });
      } catch {
        stream.destroy();
      }
      return;
    }
    if (this.#closing !== undefined) {
      stream.resume();
      return trailersOnly(stream, GRPC_UNAVAILABLE, 'the console is closing');
    }
    const method = typeof path === 'string' && path.startsWith(SERVICE) ? path.slice(SERVICE.length) : undefined;
    switch (method) {
      case 'WatchUpdates':
      case 'WatchTaskDetails':
      case 'WatchState':
      case 'Pause':
      case 'Resume':
        break;
      default:
        stream.resume();
        return trailersOnly(stream, GRPC_UNIMPLEMENTED, `unknown method ${String(path)}`);
    }
    readRequest(stream, (err, msg) => {
      if (err !== undefined) return trailersOnly(stream, err[0], err[1]);
      if (this.#closing !== undefined) return trailersOnly(stream, GRPC_UNAVAILABLE, 'the console is closing');
      try {
        this.#call(method, stream, msg);
      } catch (e) {
        trailersOnly(stream, GRPC_INTERNAL, e instanceof Error ? e.message : String(e));
      }
    });
  }

  #call(method: string, stream: Stream, msg: Uint8Array): void {
    switch (method) {
      case 'Pause':
      case 'Resume': {
        const paused = method === 'Pause';
        if (!respond(stream, () => [GRPC_OK, ''])) return;
        stream.end(frame(new Uint8Array(0))); // PauseResponse / ResumeResponse {}
        this.#setPaused(paused, paused ? stream.session : undefined);
        return;
      }
      case 'WatchState': {
        if (!respond(stream, () => [GRPC_OK, ''])) return;
        this.#states.add(stream);
        stream.on('close', () => this.#states.delete(stream));
        stream.write(frame(encodeState(this._paused)));
        return;
      }
      case 'WatchUpdates': {
        refresh();
        if (!respond(stream, () => [GRPC_OK, ''])) return;
        const w: Watch = { stream, sent: new WeakMap(), stuckSince: 0, dropped: 0 };
        this.#watches.add(w);
        allWatches.add(w);
        stream.on('close', () => {
          this.#watches.delete(w);
          allWatches.delete(w);
        });
        this.#send(w, true);
        return;
      }
      case 'WatchTaskDetails': {
        let id = 0;
        for (const f of decodeFields(msg)) {
          if (f.field === 1 && f.value instanceof Uint8Array) {
            for (const g of decodeFields(f.value)) if (g.field === 1 && typeof g.value === 'number') id = g.value;
          }
        }
        const task = I.tasks.get(id);
        if (task === undefined) return trailersOnly(stream, GRPC_NOT_FOUND, `task ${id} not found`);
        if (!respond(stream, () => [GRPC_OK, ''])) return;
        const d: DetailsWatch = { stream, task };
        this.#details.add(d);
        stream.on('close', () => this.#details.delete(d));
        stream.write(frame(encodeDetails(task)));
        return;
      }
    }
  }

  #setPaused(paused: boolean, by: http2.Http2Session | undefined): void {
    this.#pausedBy = by;
    if (this._paused === paused || this.#closing !== undefined) return;
    this._paused = paused;
    const state = frame(encodeState(paused));
    for (const s of this.#states) s.write(state);
    if (!paused) this.#tick();
  }

  /** Sends `w` what changed since its last update (everything when `all`). */
  #send(w: Watch, all: boolean): void {
    const s = w.stream;
    if (s.destroyed || s.closed) return;
    if (!all && s.writableLength > MAX_BUFFERED) {
      if (w.stuckSince === 0) w.stuckSince = I.wallNow();
      return;
    }
    w.stuckSince = 0;
    const taskParts: Uint8Array[][] = [];
    const resParts: Uint8Array[][] = [];
    const marks: Array<[object, number]> = [];
    for (const t of I.tasks.values()) {
      const seen = w.sent.get(t);
      if (seen === t.v) continue;
      const e = encodedTask(t);
      if (seen === undefined) {
        e.created ??= encodeNewTask(t);
        taskParts.push([e.created, e.stats]);
      } else {
        taskParts.push([e.stats]);
      }
      marks.push([t, t.v]);
    }
    for (const r of I.resources.values()) {
      const seen = w.sent.get(r);
      if (seen === r.v) continue;
      const e = encodedResource(r);
      if (seen === undefined) {
        e.created ??= encodeNewResource(r);
        resParts.push([e.created, e.stats]);
      } else {
        resParts.push([e.stats]);
      }
      marks.push([r, r.v]);
    }
    const dropped = w.dropped;
    w.dropped = 0;
    for (const m of buildUpdates(taskParts, resParts, all, dropped)) s.write(frame(m));
    for (const [rec, v] of marks) w.sent.set(rec, v);
  }

  #tick(): void {
    if (this.#closing !== undefined) return;
    try {
      refresh();
      if (this._paused) return;
      for (const w of this.#watches) this.#send(w, false);
      for (const d of this.#details) {
        if (d.stream.destroyed) continue;
        if (!I.tasks.has(d.task.spanId)) {
          d.stream.end();
          continue;
        }
        // A client that does not read only needs the latest snapshot, not every one since.
        if (d.stream.writableLength > MAX_DETAILS_BUFFERED) continue;
        d.stream.write(frame(encodeDetails(d.task)));
      }
    } catch {
      // a client went away mid-write: its stream's close handler forgets it
    }
  }
}

function encodeState(paused: boolean): Uint8Array {
  const w = new Writer();
  w.uint(1, paused ? 1 : 0); // Temporality
  return w.finish();
}

/** The latest histograms read for a native task (kept after kyoto-rt forgets the task). */
const nativeHistograms = new WeakMap<I.TaskRec, NonNullable<ReturnType<typeof native.consoleTaskHistograms>>>();

/** tasks.TaskDetails: the task id, the time, and its poll-time and scheduled-time histograms. */
function encodeDetails(task: I.TaskRec): Uint8Array {
  const w = new Writer();
  w.message(1, (id) => id.uint(1, task.spanId));
  timestamp(w, 2, I.wallNow());
  if (task.origin === 'js') {
    const p = task.pollTimes;
    const s = task.scheduledTimes;
    if (p !== undefined) durationHistogram(w, 4, p.counts, p.outliers, p.maxOutlier);
    if (s !== undefined) durationHistogram(w, 5, s.counts, s.outliers, s.maxOutlier);
  } else {
    let h = nativeHistograms.get(task);
    if (nativeOwned && task.dropped === 0) {
      try {
        h = native.consoleTaskHistograms(task.taskId) ?? h;
      } catch {
        // keep the last one
      }
      if (h !== undefined) nativeHistograms.set(task, h);
    }
    if (h !== undefined) {
      durationHistogram(w, 4, h.poll, h.pollOutliers, h.pollMaxOutlier ?? undefined);
      durationHistogram(w, 5, h.scheduled, h.scheduledOutliers, h.scheduledMaxOutlier ?? undefined);
    }
  }
  return w.finish();
}

/**
 * Serves the tokio-console protocol on `host:port` (h2c, plaintext HTTP/2) and switches kyoto's
 * instrumentation on. Resolves once listening with the {@link ConsoleServer} (`port` is the real
 * port when 0 was asked). Like a `net.Server`, a listening console keeps the process alive until
 * `close()`d or `unref()`d.
 *
 * @param options - `port` (default 6669), `host` (default `'127.0.0.1'`), `publishInterval` (ms,
 *   default 1000), `retention` (ms, default 60 000).
 * @returns the server; rejects with Node's listen error (`code: 'EADDRINUSE'`, `errno`, `syscall`,
 *   `address`, `port`) if the address cannot be bound, `ERR_INVALID_ARG_TYPE` /
 *   `ERR_SOCKET_BAD_PORT` / `ERR_OUT_OF_RANGE` on bad options.
 */
export async function serveConsole(options?: ServeConsoleOptions): Promise<ConsoleServer> {
  const opts = optionsBag<ServeConsoleOptions>(options);
  const port = opts.port ?? 6669;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    const err = new RangeError(`options.port should be >= 0 and < 65536. Received ${String(port)}.`);
    Object.defineProperty(err, 'code', { value: 'ERR_SOCKET_BAD_PORT', enumerable: true, writable: true, configurable: true });
    throw err;
  }
  const host = opts.host ?? '127.0.0.1';
  validateString(host, 'options.host');
  const interval = opts.publishInterval ?? 1000;
  validateNumber(interval, 'options.publishInterval', 10, 2 ** 31 - 1);
  const retention = opts.retention ?? 60_000;
  validateNumber(retention, 'options.retention', 0, Number.MAX_SAFE_INTEGER);

  const server = http2.createServer({ settings: { enablePush: false } });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    try {
      server.listen(port, host);
    } catch (e) {
      server.off('error', onError);
      server.off('listening', onListening);
      reject(e instanceof Error ? e : codedError('ERR_CONSOLE_LISTEN', String(e)));
    }
  });
  server.on('error', () => {}); // later socket errors are per connection
  hubStart();
  const console = new ConsoleServer(kConstruct, server, interval, retention);
  servers.add(console);
  return console;
}
