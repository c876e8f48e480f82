import test from 'ava';
import * as http2 from 'node:http2';
import * as dc from 'node:diagnostics_channel';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { serveConsole, type ConsoleServer } from 'kyoto/console';
import { spawn, spawnBlocking, JoinSet, sleep, TcpListener, TcpStream, Semaphore, Mutex, type JoinHandle } from 'kyoto';
import { packageRoot, realDelay } from './helpers';

const req = createRequire(__filename);
/** Internal state of the instrumentation (test-only). */
const instrument: { consoleCount(): number; tasks: Map<number, unknown> } = req('../lib/console/instrument.js');
const native: { consoleSnapshot(): unknown } = req('../lib/native.js').native;

// Every test touches the thread's (and the process's) instrumentation: run them one at a time.

// ---------------------------------------------------------------------------------------------
// A protobuf wire-format decoder of its own (not the package's encoder), so these tests check the
// bytes on the wire against console-api/proto/*.proto.

type Value = bigint | Buffer;

class Msg {
  readonly fields = new Map<number, Value[]>();

  constructor(readonly buf: Buffer) {
    let i = 0;
    const varint = (): bigint => {
      let v = 0n;
      let shift = 0n;
      for (;;) {
        if (i >= buf.length) throw new Error('truncated varint');
        const b = buf[i++];
        v |= BigInt(b & 0x7f) << shift;
        if ((b & 0x80) === 0) return v;
        shift += 7n;
        if (shift > 63n) throw new Error('varint too long');
      }
    };
    while (i < buf.length) {
      const key = Number(varint());
      const field = key >>> 3;
      const wt = key & 7;
      let v: Value;
      if (wt === 0) v = varint();
      else if (wt === 2) {
        const n = Number(varint());
        if (i + n > buf.length) throw new Error('truncated bytes');
        v = buf.subarray(i, i + n);
        i += n;
      } else if (wt === 1) {
        v = buf.subarray(i, i + 8);
        i += 8;
      } else if (wt === 5) {
        v = buf.subarray(i, i + 4);
        i += 4;
      } else throw new Error(`wire type ${wt}`);
      const list = this.fields.get(field) ?? [];
      list.push(v);
      this.fields.set(field, list);
    }
  }

  has(f: number): boolean {
    return this.fields.has(f);
  }
  num(f: number): number {
    const v = this.fields.get(f)?.at(-1);
    if (v === undefined) return 0;
    if (typeof v !== 'bigint') throw new Error(`field ${f} is not a varint`);
    return Number(v);
  }
  str(f: number): string | undefined {
    const v = this.fields.get(f)?.at(-1);
    if (v === undefined) return undefined;
    if (typeof v === 'bigint') throw new Error(`field ${f} is not length-delimited`);
    return v.toString('utf8');
  }
  msg(f: number): Msg | undefined {
    const v = this.fields.get(f)?.at(-1);
    if (v === undefined) return undefined;
    if (typeof v === 'bigint') throw new Error(`field ${f} is not a message`);
    return new Msg(v);
  }
  msgs(f: number): Msg[] {
    return (this.fields.get(f) ?? []).map((v) => {
      if (typeof v === 'bigint') throw new Error(`field ${f} is not a message`);
      return new Msg(v);
    });
  }
  strs(f: number): string[] {
    return (this.fields.get(f) ?? []).map((v) => (v as Buffer).toString('utf8'));
  }
}

/** An HdrHistogram V2 (uncompressed) serialization: its header and counts. */
function decodeHdrV2(b: Buffer): { sigfig: number; low: number; high: number; counts: number[] } {
  if (b.readUInt32BE(0) !== 0x1c849313) throw new Error('not a V2 histogram');
  const payloadLen = b.readUInt32BE(4);
  if (b.readUInt32BE(8) !== 0) throw new Error('normalizing offset');
  const sigfig = b.readUInt32BE(12);
  const low = Number(b.readBigUInt64BE(16));
  const high = Number(b.readBigUInt64BE(24));
  if (b.readDoubleBE(32) !== 1) throw new Error('int-to-double ratio');
  if (b.length !== 40 + payloadLen) throw new Error('payload length');
  const counts: number[] = [];
  let i = 40;
  while (i < b.length) {
    let zz = 0;
    let mul = 1;
    for (;;) {
      const x = b[i++];
      zz += (x & 0x7f) * mul;
      if ((x & 0x80) === 0) break;
      mul *= 128;
    }
    const n = zz % 2 === 0 ? zz / 2 : -(zz + 1) / 2;
    if (n < 0) for (let k = 0; k < -n; k++) counts.push(0);
    else counts.push(n);
  }
  return { sigfig, low, high, counts };
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}

/** TaskDetailsRequest { id: Id { id } }. */
function detailsRequest(id: number): Buffer {
  const inner = [0x08, ...varint(id)];
  return Buffer.from([0x0a, ...varint(inner.length), ...inner]);
}

/** google.protobuf.Timestamp / Duration → ms. */
function ms(m: Msg | undefined): number | undefined {
  if (m === undefined) return undefined;
  return m.num(1) * 1000 + m.num(2) / 1e6;
}

interface Meta {
  name: string;
  target: string;
  fieldNames: string[];
}

interface TaskView {
  spanId: number;
  metaId: number;
  kind: number;
  fields: Map<string, string | number | boolean>;
  fieldMetaIds: number[];
  location?: { file?: string; line: number; column: number };
}

interface TaskStatsView {
  created?: number;
  dropped?: number;
  wakes: number;
  polls: number;
  busy?: number;
  firstPoll?: number;
  lastPollEnded?: number;
}

interface ResourceView {
  spanId: number;
  metaId: number;
  concreteType: string;
  kind: { known?: number; other?: string };
  isInternal: boolean;
  parent?: number;
}

interface ResourceStatsView {
  created?: number;
  dropped?: number;
  attrs: Map<string, string | number | boolean>;
}

interface UpdateView {
  now?: number;
  metas: Map<number, Meta>;
  tasks: TaskView[];
  taskStats: Map<number, TaskStatsView>;
  resources: ResourceView[];
  resourceStats: Map<number, ResourceStatsView>;
}

function fieldValue(f: Msg): string | number | boolean {
  if (f.has(4)) return f.str(4)!;
  if (f.has(3)) return f.str(3)!;
  if (f.has(5)) return f.num(5);
  if (f.has(7)) return f.num(7) !== 0;
  if (f.has(6)) {
    const z = f.num(6);
    return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
  }
  throw new Error('field without a value');
}

/** Resolves a common.Field's name through its metadata (name_idx) or str_name. */
function fieldName(f: Msg, metas: Map<number, Meta>): string {
  if (f.has(1)) return f.str(1)!;
  const meta = metas.get(f.msg(8)?.num(1) ?? -1);
  if (meta === undefined) throw new Error('field names a metadata that was never registered');
  const name = meta.fieldNames[f.num(2)];
  if (name === undefined) throw new Error('name_idx out of range');
  return name;
}

function decodeUpdate(buf: Buffer, metas: Map<number, Meta>): UpdateView {
  const u = new Msg(buf);
  for (const nm of u.msg(5)?.msgs(1) ?? []) {
    const md = nm.msg(2)!;
    metas.set(nm.msg(1)!.num(1), { name: md.str(1) ?? '', target: md.str(2) ?? '', fieldNames: md.strs(7) });
  }
  const out: UpdateView = {
    now: ms(u.msg(1)),
    metas,
    tasks: [],
    taskStats: new Map(),
    resources: [],
    resourceStats: new Map(),
  };
  const tu = u.msg(2);
  for (const t of tu?.msgs(1) ?? []) {
    const fields = new Map<string, string | number | boolean>();
    const fieldMetaIds: number[] = [];
    for (const f of t.msgs(4)) {
      fields.set(fieldName(f, metas), fieldValue(f));
      fieldMetaIds.push(f.msg(8)?.num(1) ?? -1);
    }
    const loc = t.msg(6);
    out.tasks.push({
      spanId: t.msg(1)!.num(1),
      metaId: t.msg(2)!.num(1),
      kind: t.num(3),
      fields,
      fieldMetaIds,
      location: loc && { file: loc.str(1), line: loc.num(3), column: loc.num(4) },
    });
  }
  for (const e of tu?.msgs(3) ?? []) {
    const s = e.msg(2)!;
    const p = s.msg(7);
    out.taskStats.set(e.num(1), {
      created: ms(s.msg(1)),
      dropped: ms(s.msg(2)),
      wakes: s.num(3),
      polls: p?.num(1) ?? -1,
      busy: ms(p?.msg(6)),
      firstPoll: ms(p?.msg(3)),
      lastPollEnded: ms(p?.msg(5)),
    });
  }
  const ru = u.msg(3);
  for (const r of ru?.msgs(1) ?? []) {
    const k = r.msg(4)!;
    out.resources.push({
      spanId: r.msg(1)!.num(1),
      metaId: r.msg(2)!.num(1),
      concreteType: r.str(3) ?? '',
      kind: k.has(1) ? { known: k.num(1) } : { other: k.str(2) },
      isInternal: r.num(7) !== 0,
      parent: r.msg(6)?.num(1),
    });
  }
  for (const e of ru?.msgs(2) ?? []) {
    const s = e.msg(2)!;
    const attrs = new Map<string, string | number | boolean>();
    for (const a of s.msgs(3)) {
      const f = a.msg(1)!;
      attrs.set(fieldName(f, metas), fieldValue(f));
    }
    out.resourceStats.set(e.num(1), { created: ms(s.msg(1)), dropped: ms(s.msg(2)), attrs });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// A minimal gRPC client over node:http2

const SERVICE = '/rs.tokio.console.instrument.Instrument/';

interface Call {
  headers: Promise<http2.IncomingHttpHeaders>;
  trailers: Promise<http2.IncomingHttpHeaders>;
  /** Next message (resolves `undefined` once the stream ended). */
  next(timeoutMs: number): Promise<Buffer | undefined>;
  /** Messages received and not taken yet. */
  pending(): number;
  cancel(): void;
}

function grpcFrame(msg: Uint8Array): Buffer {
  const b = Buffer.alloc(5 + msg.length);
  b.writeUInt32BE(msg.length, 1);
  b.set(msg, 5);
  return b;
}

function call(session: http2.ClientHttp2Session, path: string, body: Uint8Array = new Uint8Array(0)): Call {
  const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
  req.end(grpcFrame(body));
  const queue: Buffer[] = [];
  let waiter: (() => void) | undefined;
  let ended = false;
  let buf = Buffer.alloc(0);
  let headersSeen: http2.IncomingHttpHeaders = {};
  const headers = new Promise<http2.IncomingHttpHeaders>((resolve) =>
    req.once('response', (h) => {
      headersSeen = h;
      resolve(h);
    }),
  );
  const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => {
    req.once('trailers', resolve);
    // A trailers-only response carries grpc-status in its headers.
    req.once('close', () => resolve(headersSeen));
  });
  req.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 5) {
      if (buf[0] !== 0) throw new Error('compressed flag set');
      const n = buf.readUInt32BE(1);
      if (buf.length < 5 + n) break;
      queue.push(Buffer.from(buf.subarray(5, 5 + n)));
      buf = buf.subarray(5 + n);
    }
    waiter?.();
  });
  req.on('error', () => {});
  req.on('close', () => {
    ended = true;
    waiter?.();
  });
  return {
    headers,
    trailers,
    pending: () => queue.length,
    cancel: () => req.close(http2.constants.NGHTTP2_CANCEL),
    async next(timeoutMs: number): Promise<Buffer | undefined> {
      const deadline = Date.now() + timeoutMs;
      while (queue.length === 0) {
        if (ended) return undefined;
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no message on ${path} within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          waiter = () => {
            clearTimeout(t);
            resolve();
          };
        });
        waiter = undefined;
      }
      return queue.shift();
    },
  };
}

const sessions = new Set<http2.ClientHttp2Session>();

function connect(port: number): http2.ClientHttp2Session {
  const s = http2.connect(`http://127.0.0.1:${port}`);
  s.on('error', () => {});
  sessions.add(s);
  s.on('close', () => sessions.delete(s));
  return s;
}

test.afterEach.always(() => {
  for (const s of sessions) s.destroy();
});

/** Reads Updates until `pred` holds for one (or fails after `timeoutMs`). */
async function until(c: Call, metas: Map<number, Meta>, timeoutMs: number, pred: (u: UpdateView) => boolean): Promise<UpdateView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error('condition not met in time');
    const m = await c.next(left);
    if (m === undefined) throw new Error('stream ended');
    const u = decodeUpdate(m, metas);
    if (pred(u)) return u;
  }
}

async function withConsole<T>(fn: (console: ConsoleServer) => Promise<T>, interval = 50): Promise<T> {
  const console = await serveConsole({ port: 0, publishInterval: interval });
  try {
    return await fn(console);
  } finally {
    await console.close();
  }
}

// ---------------------------------------------------------------------------------------------

test.serial('WatchUpdates lists a spawned JS task with its name and metadata, then shows it completed with its polls and busy time', async (t) => {
  await withConsole(async (console) => {
    const session = connect(console.port);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const h: JoinHandle<number> = spawn(
      async () => {
        await gate;
        for (let i = 0; i < 3; i++) await sleep(5);
        const spin = Date.now() + 3;
        while (Date.now() < spin); // some busy time
        return 42;
      },
      { name: 'console-test-task' },
    );
    await realDelay(5);
    const c = call(session, SERVICE + 'WatchUpdates');
    t.is((await c.headers)['content-type'], 'application/grpc');
    const metas = new Map<number, Meta>();
    const first = decodeUpdate((await c.next(5000))!, metas);
    t.true(first.now !== undefined && Math.abs(first.now - Date.now()) < 5000, 'Update.now is the wall-clock time');

    const task = first.tasks.find((x) => x.fields.get('task.name') === 'console-test-task');
    if (task === undefined) return t.fail('the first Update lists the task');
    const meta = metas.get(task.metaId);
    t.truthy(meta, 'the task refers to metadata registered in new_metadata');
    t.is(meta!.name, 'runtime.spawn');
    t.is(meta!.target, 'kyoto::task');
    t.true(['kind', 'task.name', 'task.id'].every((n) => meta!.fieldNames.includes(n)));
    t.deepEqual([...new Set(task.fieldMetaIds)], [task.metaId], 'fields name their task metadata');
    t.is(task.fields.get('task.id'), h.id);
    t.is(task.fields.get('kind'), 'local');
    t.is(task.kind, 0, 'Task.Kind SPAWN');
    t.true(task.location?.file?.endsWith('console.spec.js'), `spawn location ${task.location?.file}`);
    t.true((task.location?.line ?? 0) > 0);
    const s0 = first.taskStats.get(task.spanId);
    t.truthy(s0, 'a new task comes with its stats in the same Update');
    t.is(s0!.dropped, undefined, 'running');
    t.is(s0!.polls, 1, 'the body ran once and waits on the gate');

    release();
    t.is(await h, 42);
    const done = await untilDropped(c, metas, task.spanId);
    const s = done.taskStats.get(task.spanId)!;
    t.false(done.tasks.some((x) => x.spanId === task.spanId), 'not announced twice');
    t.true(s.polls >= 5, `polls moved: ${s.polls}`);
    t.true(s.wakes >= 4, `woken by the gate and the three sleeps: ${s.wakes}`);
    t.true((s.busy ?? 0) >= 2, `busy time moved: ${s.busy} ms`);
    t.true(s.dropped! >= s.created!, 'completed after it was created');
    t.true(s.lastPollEnded! <= s.dropped! + 1);
    c.cancel();
    session.close();
  });
});

test.serial('a native workload (a socket pair) shows up as kyoto-rt tasks', async (t) => {
  await withConsole(async (console) => {
    const l = await TcpListener.bind('127.0.0.1:0');
    const accepted = l.accept();
    const client = await TcpStream.connect(l.localAddr());
    const [server] = await accepted;
    await client.writeAll(Buffer.from('ping'));
    const buf = Buffer.alloc(4);
    await server.readExact(buf);

    const session = connect(console.port);
    const c = call(session, SERVICE + 'WatchUpdates');
    const metas = new Map<number, Meta>();
    const seen = new Map<number, TaskView>();
    const stats = new Map<number, TaskStatsView>();
    await until(c, metas, 5000, (u) => {
      for (const x of u.tasks) seen.set(x.spanId, x);
      for (const [k, v] of u.taskStats) stats.set(k, v);
      const natives = [...seen.values()].filter((x) => metas.get(x.metaId)?.target === 'kyoto_rt::task');
      return natives.length >= 3 && natives.some((x) => (stats.get(x.spanId)?.polls ?? 0) > 0);
    });
    const natives = [...seen.values()].filter((x) => metas.get(x.metaId)?.target === 'kyoto_rt::task');
    t.true(natives.length >= 3, `one native task per socket: ${natives.length}`);
    const n = natives.find((x) => (stats.get(x.spanId)?.polls ?? 0) > 0)!;
    t.is(n.fields.get('kind'), 'task');
    t.is(typeof n.fields.get('task.id'), 'number');
    t.true(n.location?.file?.endsWith('.rs'), `a Rust spawn site: ${n.location?.file}`);
    // Its poll times come from kyoto-rt's own histogram.
    const d = call(session, SERVICE + 'WatchTaskDetails', detailsRequest(n.spanId));
    const det = new Msg((await d.next(5000))!);
    const v2 = decodeHdrV2(det.msg(4)!.fields.get(1)![0] as Buffer);
    t.true(v2.counts.reduce((a, b) => a + b, 0) >= 1, 'the native task has poll-time samples');
    d.cancel();
    c.cancel();
    session.close();
    client.close();
    server.close();
    l.close();
  });
});

test.serial('sockets, sleeps, intervals, semaphores and mutexes created while serving are resources', async (t) => {
  await withConsole(async (console) => {
    const l = await TcpListener.bind('127.0.0.1:0');
    const sem = new Semaphore(3);
    const permit = await sem.acquire(2);
    const mutex = new Mutex(0);
    const session = connect(console.port);
    const c = call(session, SERVICE + 'WatchUpdates');
    const metas = new Map<number, Meta>();
    const resources = new Map<number, ResourceView>();
    const stats = new Map<number, ResourceStatsView>();
    const collect = (u: UpdateView): void => {
      for (const r of u.resources) resources.set(r.spanId, r);
      for (const [k, v] of u.resourceStats) stats.set(k, v);
    };
    const byType = (type: string): ResourceView | undefined => [...resources.values()].find((r) => r.concreteType === type);
    const sleeping = sleep(30);
    await until(c, metas, 5000, (u) => (collect(u), byType('Sleep') !== undefined && byType('TcpListener') !== undefined));

    const lr = byType('TcpListener')!;
    t.deepEqual(lr.kind, { other: 'Net' });
    t.is(metas.get(lr.metaId)?.target, 'kyoto::net');
    t.is(metas.get(lr.metaId)?.name, 'runtime.resource');
    t.is(stats.get(lr.spanId)?.attrs.get('local.addr'), `127.0.0.1:${l.localAddr().port}`);
    t.is(stats.get(lr.spanId)?.dropped, undefined);

    const sr = byType('Sleep')!;
    t.deepEqual(sr.kind, { known: 0 }, 'Kind.Known TIMER');
    t.is(stats.get(sr.spanId)?.attrs.get('duration'), 30);

    const semr = byType('Semaphore')!;
    t.deepEqual(semr.kind, { other: 'Sync' });
    t.is(stats.get(semr.spanId)?.attrs.get('permits'), 1);
    t.is(byType('Mutex')?.concreteType, 'Mutex');
    t.is(stats.get(byType('Mutex')!.spanId)?.attrs.get('locked'), false);

    const iv = (await import('kyoto')).interval(100);
    await iv.tick();
    await iv.tick(); // waits on an internal sleep
    await sleeping;
    permit.release();
    const g = await mutex.lock();
    l.close();
    await until(c, metas, 5000, (u) => {
      collect(u);
      const ivr = byType('Interval');
      const child = ivr && [...resources.values()].find((r) => r.parent === ivr.spanId);
      return (
        stats.get(lr.spanId)?.dropped !== undefined &&
        stats.get(sr.spanId)?.dropped !== undefined &&
        stats.get(semr.spanId)?.attrs.get('permits') === 3 &&
        stats.get(byType('Mutex')!.spanId)?.attrs.get('locked') === true &&
        child !== undefined
      );
    });
    const ivr = byType('Interval')!;
    t.is(stats.get(ivr.spanId)?.attrs.get('period'), 100);
    const child = [...resources.values()].find((r) => r.parent === ivr.spanId)!;
    t.true(child.isInternal, "an interval's sleeps are its internal children");
    t.pass('the closed listener and the fired sleep are reported dropped; attributes follow the semaphore and the mutex');
    g.release();
    iv.close();
    c.cancel();
    session.close();
  });
});

test.serial('Pause stops updates and Resume restarts them, and WatchState follows', async (t) => {
  await withConsole(async (console) => {
    const session = connect(console.port);
    const c = call(session, SERVICE + 'WatchUpdates');
    const state = call(session, SERVICE + 'WatchState');
    const metas = new Map<number, Meta>();
    decodeUpdate((await c.next(5000))!, metas);
    t.is(new Msg((await state.next(5000))!).num(1), 0, 'LIVE');
    await c.next(5000); // periodic updates flow

    const pause = call(session, SERVICE + 'Pause');
    t.is((await pause.trailers)['grpc-status'], '0');
    t.is((await pause.next(1000))!.length, 0, 'an empty PauseResponse');
    t.is(new Msg((await state.next(2000))!).num(1), 1, 'PAUSED');
    t.true(console.paused);
    await realDelay(80); // an update already in flight may still arrive
    while (c.pending() > 0) await c.next(10);
    const keep = spawn(() => sleep(1), { name: 'during-pause' }); // something changes meanwhile
    await keep;
    await realDelay(400);
    t.is(c.pending(), 0, 'no update while paused (8 intervals)');

    const resume = call(session, SERVICE + 'Resume');
    t.is((await resume.trailers)['grpc-status'], '0');
    t.is(new Msg((await state.next(2000))!).num(1), 0, 'LIVE again');
    const u = decodeUpdate((await c.next(2000))!, metas);
    t.true(
      u.tasks.some((x) => x.fields.get('task.name') === 'during-pause') || u.taskStats.size > 0,
      'what changed during the pause arrives after Resume',
    );
    t.false(console.paused);
    c.cancel();
    state.cancel();
    session.close();
  });
});

test.serial('an unknown method gets grpc-status 12 UNIMPLEMENTED', async (t) => {
  await withConsole(async (console) => {
    const session = connect(console.port);
    for (const path of [SERVICE + 'NoSuchMethod', '/rs.tokio.console.trace.Trace/Watch', '/x']) {
      const c = call(session, path);
      const tr = await c.trailers;
      t.is(tr['grpc-status'], '12', path);
      t.is(await c.next(1000), undefined);
    }
    session.close();
  });
});

test.serial('WatchTaskDetails streams details of a known task and NOT_FOUND for an unknown one', async (t) => {
  await withConsole(async (console) => {
    let release!: () => void;
    const h = spawn(
      async () => {
        await sleep(1);
        await new Promise<void>((r) => (release = r));
      },
      { name: 'detailed' },
    );
    await realDelay(50);
    const session = connect(console.port);
    const c = call(session, SERVICE + 'WatchUpdates');
    const metas = new Map<number, Meta>();
    const u = decodeUpdate((await c.next(5000))!, metas);
    const task = u.tasks.find((x) => x.fields.get('task.name') === 'detailed')!;
    const d = call(session, SERVICE + 'WatchTaskDetails', detailsRequest(task.spanId));
    const det = new Msg((await d.next(5000))!);
    t.is(det.msg(1)?.num(1), task.spanId);
    t.true(det.has(2), 'with a timestamp');
    const hist = det.msg(4)!; // DurationHistogram (the current form, not legacy_histogram = 3)
    t.is(hist.num(2), 1e9, 'max_value: 1 s');
    t.is(hist.num(3), 0, 'no outliers');
    const v2 = decodeHdrV2(hist.fields.get(1)![0] as Buffer);
    t.like(v2, { sigfig: 1, low: 1, high: 1e9 });
    t.is(
      v2.counts.reduce((a, b) => a + b, 0),
      u.taskStats.get(task.spanId)!.polls,
      'one poll-time sample per poll',
    );
    t.true(det.has(5), 'and a scheduled-times histogram');
    await d.next(5000); // periodic
    const missing = call(session, SERVICE + 'WatchTaskDetails', detailsRequest(2 ** 40));
    t.is((await missing.trailers)['grpc-status'], '5');
    release();
    await h;
    d.cancel();
    c.cancel();
    session.close();
  });
});

test.serial('close() ends client streams, frees the port and switches instrumentation off', async (t) => {
  const first = await serveConsole({ port: 0, publishInterval: 50 });
  const port = first.port;
  t.true(port > 0);
  t.deepEqual(first.address(), { address: '127.0.0.1', family: 'IPv4', port });
  const session = connect(port);
  const c = call(session, SERVICE + 'WatchUpdates');
  await c.next(5000);
  t.true(instrument.consoleCount() > 0);
  t.not(native.consoleSnapshot(), null, 'native instrumentation on');

  await first.close();
  t.is((await c.trailers)['grpc-status'], '0', 'the stream ended with OK');
  t.is(instrument.consoleCount(), 0);
  t.is(native.consoleSnapshot(), null, 'native instrumentation off');
  await spawn(() => 1);
  t.is(instrument.tasks.size, 0, 'nothing recorded once closed');
  t.true(first.closed);
  await first.close(); // idempotent

  const again = await serveConsole({ port, publishInterval: 50 });
  t.is(again.port, port, 're-binding the same port works');
  await again.close();
  session.close();
});

test.serial('serveConsole rejects with EADDRINUSE when the port is taken, and validates its options', async (t) => {
  const a = await serveConsole({ port: 0 });
  const err = await t.throwsAsync(serveConsole({ port: a.port }));
  t.like(err, { code: 'EADDRINUSE', syscall: 'listen', port: a.port });
  await a.close();
  t.is(instrument.consoleCount(), 0, 'a failed serveConsole leaves instrumentation off');
  await t.throwsAsync(serveConsole({ port: 70000 }), { instanceOf: RangeError, code: 'ERR_SOCKET_BAD_PORT' });
  await t.throwsAsync(serveConsole({ port: 1.5 }), { code: 'ERR_SOCKET_BAD_PORT' });
  await t.throwsAsync(serveConsole({ host: 7 as unknown as string }), { code: 'ERR_INVALID_ARG_TYPE' });
  await t.throwsAsync(serveConsole({ publishInterval: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  await t.throwsAsync(serveConsole('x' as unknown as object), { code: 'ERR_INVALID_ARG_TYPE' });
});

test.serial('kyoto:task:spawn and kyoto:task:end carry { id, name, kind } and the outcome', async (t) => {
  const spawns: unknown[] = [];
  const ends: unknown[] = [];
  const onSpawn = (m: unknown): void => void spawns.push(m);
  const onEnd = (m: unknown): void => void ends.push(m);
  dc.subscribe('kyoto:task:spawn', onSpawn);
  dc.subscribe('kyoto:task:end', onEnd);
  try {
    const ok = spawn(async () => 1, { name: 'fine' });
    const bad = spawn(async () => {
      throw new Error('boom');
    });
    const ac = spawn((signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))));
    const set = new JoinSet<number>();
    const member = set.spawn(async () => 2, { name: 'member' });
    const blocking = spawnBlocking<number>(pathToFileURL(path.join(__dirname, 'fixtures', 'blocking.js')), 'add', 1, 2);
    await ok;
    await t.throwsAsync(bad);
    ac.abort();
    await t.throwsAsync(ac);
    await set.joinAll();
    t.is(await blocking, 3);
    t.deepEqual(spawns, [
      { id: ok.id, name: 'fine', kind: 'spawn' },
      { id: bad.id, name: undefined, kind: 'spawn' },
      { id: ac.id, name: undefined, kind: 'spawn' },
      { id: member.id, name: 'member', kind: 'spawn' },
      { id: blocking.id, name: undefined, kind: 'blocking' },
    ]);
    const byId = new Map((ends as Array<{ id: number }>).map((e) => [e.id, e]));
    t.deepEqual(byId.get(ok.id), { id: ok.id, name: 'fine', kind: 'spawn', outcome: 'ok' });
    t.deepEqual(byId.get(bad.id), { id: bad.id, name: undefined, kind: 'spawn', outcome: 'error' });
    t.deepEqual(byId.get(ac.id), { id: ac.id, name: undefined, kind: 'spawn', outcome: 'cancelled' });
    t.deepEqual(byId.get(member.id), { id: member.id, name: 'member', kind: 'spawn', outcome: 'ok' });
    t.deepEqual(byId.get(blocking.id), { id: blocking.id, name: undefined, kind: 'blocking', outcome: 'ok' });
    t.is(ends.length, 5);
  } finally {
    dc.unsubscribe('kyoto:task:spawn', onSpawn);
    dc.unsubscribe('kyoto:task:end', onEnd);
  }
});

test.serial('kyoto:resource:create and kyoto:resource:close follow sleeps, sockets and semaphores', async (t) => {
  const events: Array<[string, { id: number; kind: string; concreteType: string }]> = [];
  const onCreate = (m: unknown): void => void events.push(['create', m as never]);
  const onClose = (m: unknown): void => void events.push(['close', m as never]);
  dc.subscribe('kyoto:resource:create', onCreate);
  dc.subscribe('kyoto:resource:close', onClose);
  try {
    await sleep(1);
    const l = await TcpListener.bind('127.0.0.1:0');
    l.close();
    new Semaphore(1);
  } finally {
    dc.unsubscribe('kyoto:resource:create', onCreate);
    dc.unsubscribe('kyoto:resource:close', onClose);
  }
  const shapes = events.map(([e, m]) => [e, m.kind, m.concreteType]);
  t.deepEqual(shapes, [
    ['create', 'timer', 'Sleep'],
    ['close', 'timer', 'Sleep'],
    ['create', 'net', 'TcpListener'],
    ['close', 'net', 'TcpListener'],
    ['create', 'sync', 'Semaphore'],
  ]);
  t.is(events[0][1].id, events[1][1].id, 'close names the id create gave');
  t.deepEqual(Object.keys(events[0][1]).sort(), ['concreteType', 'id', 'kind']);
});

test.serial('nothing is published on the kyoto channels when no one subscribes', async (t) => {
  const names = ['kyoto:task:spawn', 'kyoto:task:end', 'kyoto:resource:create', 'kyoto:resource:close'];
  const published: string[] = [];
  const originals = names.map((n) => {
    const ch = dc.channel(n);
    const orig = ch.publish;
    ch.publish = (m: unknown) => {
      published.push(n);
      orig.call(ch, m);
    };
    return [ch, orig] as const;
  });
  try {
    t.false(names.some((n) => dc.hasSubscribers(n)));
    await spawn(async () => {
      await sleep(1);
      const l = await TcpListener.bind('127.0.0.1:0');
      l.close();
      new Semaphore(1);
    });
    t.deepEqual(published, []);
    t.is(instrument.tasks.size, 0, 'and no console record exists');
  } finally {
    for (const [ch, orig] of originals) ch.publish = orig;
  }
});

test.serial('a Worker that serves a console owns the native tasks until it is terminated', async (t) => {
  const { Worker } = await import('node:worker_threads');
  const w = new Worker(
    `const { serveConsole } = require('kyoto/console');
     const { parentPort } = require('node:worker_threads');
     serveConsole({ port: 0 }).then((c) => parentPort.postMessage(c.port));`,
    { eval: true },
  );
  const port = await new Promise<number>((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
  t.true(port > 0);
  const here = await serveConsole({ port: 0 });
  t.is(native.consoleSnapshot(), null, 'the worker owns the native instrumentation: this console shows JS tasks only');
  await here.close();
  await w.terminate();
  // The worker's thread gives it back when it ends (its thread-locals are destroyed).
  let owned = false;
  for (let i = 0; i < 40 && !owned; i++) {
    const after = await serveConsole({ port: 0 });
    owned = native.consoleSnapshot() !== null;
    await after.close();
    if (!owned) await realDelay(50);
  }
  t.true(owned, "the terminated worker's thread gave the native instrumentation back");
});

test.serial('a listening console holds the process open; unref() lets it exit', (t) => {
  const script = (unref: boolean): string => `
    const { serveConsole } = require('kyoto/console');
    serveConsole({ port: 0 }).then((c) => {
      ${unref ? 'c.unref();' : 'setTimeout(() => { console.log("still alive"); c.close(); }, 300).unref();'}
    });`;
  const run = (unref: boolean): string =>
    execFileSync(process.execPath, ['-e', script(unref)], { cwd: packageRoot, encoding: 'utf8', timeout: 20_000 });
  t.is(run(true), '', 'an unref()ed console lets the process exit at once');
  t.is(run(false).trim(), 'still alive', 'a ref()ed console holds the process until close()');
});

/** Runs `code` in a child Node with `--expose-gc` (cwd: the package root); resolves its last stdout line. */
function childLastLine(code: string): string {
  const out = execFileSync(process.execPath, ['--expose-gc', '-e', code], { cwd: packageRoot, encoding: 'utf8', timeout: 60_000 });
  return out.trim().split('\n').pop()!;
}

test.serial("tasks that awaited a shared settled promise or raced a never-settling one are not kept once they ended and were evicted", (t) => {
  // Weak references to the records of 2 000 ended tasks, per pattern: with retention 0 they are
  // evicted at the next publish, and nothing else may hold them (before the fix, the settled
  // `ready` and the pending `shutdown` listed every task that awaited them, forever).
  const code = `
    const k = require('./dist/index.js');
    const I = require('./dist/lib/console/instrument.js');
    const ready = Promise.resolve(1);
    (async () => {
      await ready;
      const shutdown = new Promise(() => {});
      const srv = await k.serveConsole({ port: 0, publishInterval: 20, retention: 0 });
      const alive = async (refs) => {
        for (let i = 0; i < 100 && [...I.tasks.values()].some((r) => r.origin === 'js'); i++) await new Promise((r) => setTimeout(r, 20));
        await new Promise((r) => setTimeout(r, 50));
        global.gc(); global.gc();
        return refs.filter((r) => r.deref() !== undefined).length;
      };
      const run = async (body) => {
        const hs = [];
        for (let i = 0; i < 2000; i++) hs.push(k.spawn(body));
        const refs = [...I.tasks.values()].filter((r) => r.origin === 'js').map((r) => new WeakRef(r));
        await Promise.all(hs);
        return [refs.length, await alive(refs)];
      };
      const settled = await run(async () => { await ready; await k.sleep(1); });
      const raced = await run(async () => { await Promise.race([k.sleep(1), shutdown]); });
      await srv.close();
      console.log(JSON.stringify({ settled, raced, shutdown: !!shutdown }));
    })().catch((e) => { console.log('ERR ' + e.stack); process.exit(1); });`;
  const r = JSON.parse(childLastLine(code)) as { settled: [number, number]; raced: [number, number] };
  t.is(r.settled[0], 2000, 'the records were seen');
  t.is(r.raced[0], 2000);
  // Generous: a few may still be referenced from the last tick's bookkeeping.
  t.true(r.settled[1] < 50, `records of tasks that awaited a settled promise still alive: ${r.settled[1]} of 2000`);
  t.true(r.raced[1] < 50, `records of tasks that raced a pending promise still alive: ${r.raced[1]} of 2000`);
});

/** Completed task records the thread's consoles keep. */
function completedRecords(): number {
  let n = 0;
  for (const r of instrument.tasks.values()) if ((r as { dropped: number }).dropped !== 0) n++;
  return n;
}

test.serial('a client that pauses and disconnects does not leave the console paused, and the retention cap holds while paused', async (t) => {
  await withConsole(async (console) => {
    // A pausing client that stays connected: retention (60 s) waits, the 10 000 cap does not.
    const holder = connect(console.port);
    t.is((await call(holder, SERVICE + 'Pause').trailers)['grpc-status'], '0');
    t.true(console.paused);
    const hs: Array<JoinHandle<number>> = [];
    for (let i = 0; i < 10_500; i++) hs.push(spawn(() => i));
    await Promise.all(hs);
    for (let i = 0; i < 100 && completedRecords() > 10_000; i++) await realDelay(20);
    t.true(completedRecords() <= 10_000, `completed tasks kept while paused: ${completedRecords()}`);

    // It goes away without Resume: updates resume, as when the last watcher leaves console-subscriber.
    holder.destroy();
    for (let i = 0; i < 100 && console.paused; i++) await realDelay(20);
    t.false(console.paused, 'resumed once the pausing client disconnected');

    // Another client's Pause is not undone by a third one disconnecting.
    const pauser = connect(console.port);
    await call(pauser, SERVICE + 'Pause').trailers;
    const other = connect(console.port);
    await call(other, SERVICE + 'WatchState').next(5000);
    other.destroy();
    await realDelay(100);
    t.true(console.paused, 'still paused: its client is connected');
    pauser.close();
  }, 20);
});

/** Reads `c` until it lists the task named `name` (returns its span id). */
async function spanOf(c: Call, metas: Map<number, Meta>, name: string): Promise<number> {
  const u = await until(c, metas, 5000, (x) => x.tasks.some((task) => task.fields.get('task.name') === name));
  return u.tasks.find((task) => task.fields.get('task.name') === name)!.spanId;
}

/** Reads `c` until the task of span `span` is reported dropped: its completion arrived. */
function untilDropped(c: Call, metas: Map<number, Meta>, span: number): Promise<UpdateView> {
  return until(c, metas, 5000, (u) => u.taskStats.get(span)?.dropped !== undefined);
}

/**
 * Watches the console at `port` while a task named `name` sleeps `ms`: resolves once the watching
 * client, which saw it running, has its completion.
 */
async function watchTaskToEnd(port: number, name: string, ms: number): Promise<void> {
  const c = call(connect(port), SERVICE + 'WatchUpdates');
  const metas = new Map<number, Meta>();
  const h = spawn(() => sleep(ms), { name });
  const span = await spanOf(c, metas, name);
  await h;
  await untilDropped(c, metas, span);
}

test.serial('a watching client receives the completion of a task that ends between two updates, with retention 0 or another console evicting', async (t) => {
  // Before, eviction (by age, before each publish) forgot the record before its final version was
  // sent: the client showed the task running forever.
  const zero = await serveConsole({ port: 0, publishInterval: 100, retention: 0 });
  try {
    await watchTaskToEnd(zero.port, 'ends-between-updates', 250);
    t.pass('completion delivered with retention 0');
  } finally {
    await zero.close();
  }

  const a = await serveConsole({ port: 0, publishInterval: 500 });
  const b = await serveConsole({ port: 0, publishInterval: 20, retention: 0 });
  try {
    await watchTaskToEnd(a.port, 'seen-by-a', 600);
    t.pass("a console with retention 0 does not evict what another console's client is owed");
  } finally {
    await a.close();
    await b.close();
  }
});

test.serial('a burst of more completions than the retention cap within one update still delivers the completion of a task the client saw running', async (t) => {
  await withConsole(async (console) => {
    const c = call(connect(console.port), SERVICE + 'WatchUpdates');
    const metas = new Map<number, Meta>();
    const first = spawn(() => sleep(400), { name: 'before-the-burst' });
    const span = await spanOf(c, metas, 'before-the-burst');
    await first;
    const hs: Array<JoinHandle<number>> = [];
    for (let i = 0; i < 10_001; i++) hs.push(spawn(() => i));
    await Promise.all(hs);
    await untilDropped(c, metas, span);
    t.pass('its completion arrived');
    for (let i = 0; i < 100 && completedRecords() > 10_000; i++) await realDelay(20);
    t.true(completedRecords() <= 10_000, `once sent, the cap applies again: ${completedRecords()}`);
    c.cancel();
  }, 300);
});

test.serial('a WatchTaskDetails client that does not read is not sent a snapshot per interval without limit', (t) => {
  // In a child: the console's HTTP/2 streams are taken from the server it creates, and a client
  // with a 1 KiB window asks for details every 10 ms and never reads. After 4 s (~400 snapshots of
  // ~150 bytes), what waits in the server stream must stay near the bound (16 KiB), not grow.
  const code = `
    const http2 = require('node:http2');
    const streams = [];
    const create = http2.createServer;
    http2.createServer = (...a) => { const s = create(...a); s.on('stream', (st) => streams.push(st)); return s; };
    const k = require('./dist/index.js');
    const I = require('./dist/lib/console/instrument.js');
    (async () => {
      const srv = await k.serveConsole({ port: 0, publishInterval: 10 });
      const h = k.spawn(async (sig) => { for (let i = 0; i < 100000 && !sig.aborted; i++) await k.sleep(1 + (i % 7)); }, { name: 'busy' });
      await new Promise((r) => setTimeout(r, 50));
      const span = [...I.tasks.values()].find((r) => r.name === 'busy').spanId;
      const body = Buffer.from([0x0a, 2, 0x08, span]);
      const req = Buffer.alloc(5 + body.length); req.writeUInt32BE(body.length, 1); body.copy(req, 5);
      const s = http2.connect('http://127.0.0.1:' + srv.port, { settings: { initialWindowSize: 1024 } });
      s.on('error', () => {});
      const st = s.request({ ':method': 'POST', ':path': '/rs.tokio.console.instrument.Instrument/WatchTaskDetails', 'content-type': 'application/grpc', te: 'trailers' });
      st.on('error', () => {}); st.pause(); st.end(req);
      await new Promise((r) => setTimeout(r, 4000));
      const buffered = Math.max(...streams.map((x) => x.writableLength));
      s.destroy(); h.abort(); await h.then(() => {}, () => {}); await srv.close();
      console.log(JSON.stringify({ buffered }));
    })().catch((e) => { console.log('ERR ' + e.stack); process.exit(1); });`;
  const { buffered } = JSON.parse(childLastLine(code)) as { buffered: number };
  t.log(`buffered for the client that does not read: ${buffered} bytes`);
  t.true(buffered > 0, 'the client stopped reading');
  t.true(buffered < 32 * 1024, `buffered: ${buffered} bytes`);
});

test.serial('every watching client is told of dropped native events, not only the first one served', async (t) => {
  // kyoto-rt's event buffer overflowing is simulated: the next snapshot reports 7 lost events.
  const nat = native as { consoleSnapshot(): { droppedEvents: number } | null };
  const orig = nat.consoleSnapshot;
  let lose = 0;
  nat.consoleSnapshot = function (this: unknown) {
    const snap = orig.call(this);
    if (snap !== null && lose > 0) {
      snap.droppedEvents += lose;
      lose = 0;
    }
    return snap;
  };
  try {
    await withConsole(async (console) => {
      const clients = [connect(console.port), connect(console.port)].map((s) => call(s, SERVICE + 'WatchUpdates'));
      for (const c of clients) await c.next(5000);
      lose = 7;
      for (const [i, c] of clients.entries()) {
        let seen = 0;
        for (let n = 0; n < 200 && seen < 7; n++) {
          const m = await c.next(5000);
          if (m === undefined) break;
          seen += new Msg(m).msg(2)?.num(4) ?? 0;
        }
        t.is(seen, 7, `client ${i + 1}: dropped_events`);
      }
    }, 20);
  } finally {
    nat.consoleSnapshot = orig;
  }
});

test.serial('records owed to a paused watching client are kept beyond the cap, up to a hard ceiling, and released once sent', async (t) => {
  await withConsole(async (console) => {
    const session = connect(console.port);
    const c = call(session, SERVICE + 'WatchUpdates');
    await c.next(5000);
    await call(session, SERVICE + 'Pause').trailers;
    const hs: Array<JoinHandle<number>> = [];
    for (let i = 0; i < 20_500; i++) hs.push(spawn(() => i));
    await Promise.all(hs);
    for (let i = 0; i < 100 && completedRecords() > 20_000; i++) await realDelay(20);
    const kept = completedRecords();
    t.true(kept > 10_000 && kept <= 20_000, `kept while paused: ${kept}`);
    await call(session, SERVICE + 'Resume').trailers;
    for (let i = 0; i < 250 && completedRecords() > 10_000; i++) await realDelay(20);
    t.true(completedRecords() <= 10_000, `kept once sent: ${completedRecords()}`);
    c.cancel();
  }, 20);
});
