// Every public method, static and function, called with junk: whatever it does, it never crashes
// the process and never fails with an uncoded error — a throw or a rejection carries a `code`
// (TypeError/RangeError for the arguments, a system or kyoto error otherwise).
import test from 'ava';
import * as kyoto from 'kyoto';
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as nodeNet from 'node:net';
import * as nodeDgram from 'node:dgram';
import { Duplex } from 'node:stream';
import { UNIX_SOCKETS, realDelay } from './helpers';

/** Option names of instance methods (waits, readLine), filled with {@link BAG_JUNK}. */
const INSTANCE_OPTION_KEYS = ['signal', 'maxLength'];
const BAG_JUNK: unknown[] = [null, -1, 'x', Symbol('junk'), {}, 1e20];
/** A view whose ArrayBuffer was transferred away: reads as empty, and copying into or out of it throws. */
function detachedView(): Uint8Array {
  const v = new Uint8Array(8);
  structuredClone(v.buffer, { transfer: [v.buffer] });
  return v;
}
const JUNK: unknown[] = [undefined, null, {}, -1, 0.5, NaN, 'x', Symbol('junk'), 1e20, [], () => {}, 2n ** 70n, new Uint8Array(3), detachedView()];

type AnyFn = (...args: unknown[]) => unknown;
type Obj = Record<string, unknown>;

/** Collects failures; a call's result is settled later (pending waits are fine, only rejections are checked). */
class Probe {
  readonly uncoded: string[] = [];
  readonly #seen = new Set<string>();
  readonly #pending: Promise<unknown>[] = [];
  readonly #listened = new WeakSet<EventEmitter>();

  check(where: string, e: unknown): void {
    if (e instanceof Error && typeof (e as { code?: unknown }).code === 'string') return;
    const what = e instanceof Error ? `${e.constructor.name}: ${e.message}` : `non-Error ${String(e)}`;
    const key = `${where} → ${what}`;
    if (!this.#seen.has(key)) {
      this.#seen.add(key);
      this.uncoded.push(key);
    }
  }

  call(where: string, self: unknown, f: AnyFn, args: unknown[]): unknown {
    let r: unknown;
    try {
      r = f.apply(self, args);
    } catch (e) {
      this.check(where, e);
      return undefined;
    }
    // What a compat call returns reports as Node's does, on 'error'.
    if (r instanceof EventEmitter && !this.#listened.has(r)) {
      this.#listened.add(r); // many calls return `this`: one listener each
      r.on('error', (e: unknown) => this.check(`${where} 'error' event`, e));
    }
    if (r !== null && typeof r === 'object' && typeof (r as PromiseLike<unknown>).then === 'function') {
      this.#pending.push(Promise.resolve(r as PromiseLike<unknown>).then(dispose, (e) => this.check(`${where} (rejected)`, e)));
    } else {
      dispose(r);
    }
    return r;
  }

  /** Waits a bounded time for the calls' promises; ones still pending (a wait that junk did not end) are left. */
  async settle(ms: number): Promise<void> {
    await Promise.race([Promise.all(this.#pending), realDelay(ms)]);
  }
}

/** Closes what a call produced (a socket, a channel end, an interval), so nothing keeps the loop. */
function dispose(v: unknown): void {
  const items = Array.isArray(v) ? v : [v];
  for (const x of items) {
    if (x === null || typeof x !== 'object') continue;
    for (const m of ['close', 'abort', 'release']) {
      const f = (x as Obj)[m];
      if (typeof f === 'function') {
        try {
          const r = (f as AnyFn).call(x);
          if (r instanceof Promise) r.catch(() => {});
        } catch {
          // closing twice and the like: not what this test looks at
        }
        break;
      }
    }
  }
}

const label = (a: unknown): string =>
  typeof a === 'symbol' ? 'Symbol' : typeof a === 'bigint' ? 'BigInt' : typeof a === 'function' ? 'fn' : a instanceof Uint8Array ? 'Uint8Array' : Array.isArray(a) ? '[]' : String(a);

/**
 * Method names kyoto defines on `o`'s prototype chain that are public (no `_` prefix, not kyoto's
 * internal hooks). What the compat classes inherit from node:stream / node:events is Node's.
 */
function methodsOf(o: object): string[] {
  const names = new Set<string>();
  const nodes: unknown[] = [Object.prototype, Duplex.prototype, EventEmitter.prototype];
  for (let p = Object.getPrototypeOf(o); p !== null && !nodes.includes(p); p = Object.getPrototypeOf(p)) {
    for (const n of Object.getOwnPropertyNames(p)) {
      const d = Object.getOwnPropertyDescriptor(p, n)!;
      if (n === 'constructor' || n.startsWith('_') || n === 'onEvent' || typeof d.value !== 'function') continue;
      names.add(n);
    }
  }
  return [...names];
}

async function probeInstances(probe: Probe, kind: string, make: () => unknown | Promise<unknown>): Promise<void> {
  // Only real promises are awaited: a oneshot receiver is a thenable that would wait for its value.
  const made = make();
  const first = made instanceof Promise ? await made : made;
  const methods = methodsOf(first as object);
  dispose(first);
  for (const m of methods) {
    const next = make();
    const o = (next instanceof Promise ? await next : next) as Obj;
    // The compat classes report as Node's do, on 'error' (unhandled, it would throw, as in Node).
    if (o instanceof EventEmitter) {
      o.on('error', (e: unknown) => probe.check(`${kind}.${m} 'error' event`, e));
      o.setMaxListeners(0); // every junk connect() adds a 'connect' listener, as in Node
    }
    const f = o[m] as AnyFn;
    for (const a of JUNK) {
      probe.call(`${kind}.${m}(${label(a)})`, o, f, [a]);
      probe.call(`${kind}.${m}(Buffer, ${label(a)})`, o, f, [Buffer.alloc(4), a]);
    }
    // Junk inside a method's option bag, after plausible leading arguments (a wait's `signal`,
    // readLine's `maxLength`, …).
    for (const key of INSTANCE_OPTION_KEYS) {
      for (const j of BAG_JUNK) {
        const bag = { [key]: j };
        probe.call(`${kind}.${m}({ ${key}: ${label(j)} })`, o, f, [bag]);
        probe.call(`${kind}.${m}(Buffer, { ${key}: ${label(j)} })`, o, f, [Buffer.alloc(4), bag]);
        probe.call(`${kind}.${m}(Buffer, addr, { ${key}: ${label(j)} })`, o, f, [Buffer.alloc(4), '127.0.0.1:9', bag]);
      }
    }
    dispose(o);
    // And once closed: plausible arguments on a closed object fail with a code too.
    for (const args of [[], [Buffer.alloc(4)], ['127.0.0.1:0'], [4]]) {
      probe.call(`${kind}.${m}(${args.map(label).join(', ')}) after close`, o, f, args);
    }
  }
}

/** Socket files in the working directory: junk such as `'x'` is a valid relative path to a Unix bind. */
function socketFilesHere(): Set<string> {
  return new Set(fs.readdirSync('.').filter((f) => fs.lstatSync(f, { throwIfNoEntry: false })?.isSocket()));
}

test('public methods given junk arguments throw or reject with coded errors', async (t) => {
  const probe = new Probe();
  const socketsBefore = socketFilesHere();
  const listener = await kyoto.TcpListener.bind('127.0.0.1:0');
  const { port } = listener.localAddr();
  const accepted: kyoto.TcpStream[] = [];
  (async () => {
    for await (const s of listener) accepted.push(s);
  })().catch(() => {});
  const makers: Array<[string, () => unknown]> = [
    ['Semaphore', () => new kyoto.Semaphore(2)],
    ['Mutex', () => new kyoto.Mutex(1)],
    ['RwLock', () => new kyoto.RwLock(1)],
    ['Notify', () => new kyoto.Notify()],
    ['Barrier', () => new kyoto.Barrier(2)],
    ['OnceCell', () => new kyoto.OnceCell()],
    ['mpsc.Sender', () => kyoto.mpsc.channel(4)[0]],
    ['mpsc.Receiver', () => kyoto.mpsc.channel(4)[1]],
    ['mpsc.UnboundedSender', () => kyoto.mpsc.unboundedChannel()[0]],
    ['oneshot.Sender', () => kyoto.oneshot.channel()[0]],
    ['oneshot.Receiver', () => kyoto.oneshot.channel()[1]],
    ['broadcast.Sender', () => kyoto.broadcast.channel(4)[0]],
    ['broadcast.Receiver', () => kyoto.broadcast.channel(4)[1]],
    ['watch.Sender', () => kyoto.watch.channel(1)[0]],
    ['watch.Receiver', () => kyoto.watch.channel(1)[1]],
    ['JoinSet', () => new kyoto.JoinSet()],
    ['JoinHandle', () => kyoto.spawn(async () => 1)],
    ['Interval', () => kyoto.interval(50)],
    ['Instant', () => kyoto.Instant.now()],
    ['TcpStream', () => kyoto.TcpStream.connect({ host: '127.0.0.1', port })],
    ['TcpListener', () => kyoto.TcpListener.bind('127.0.0.1:0')],
    ['TcpSocket', () => kyoto.TcpSocket.v4()],
    ['UdpSocket', () => kyoto.UdpSocket.bind('127.0.0.1:0')],
    ['BufReader', async () => new kyoto.BufReader(await kyoto.TcpStream.connect({ host: '127.0.0.1', port }))],
    ['DuplexStream', () => kyoto.duplex(64)[0]],
    ['Runtime', () => new kyoto.Runtime({ flavor: 'current_thread' })],
    ['compatNet.Socket', () => new kyoto.compatNet.Socket()],
    ['compatNet.Server', () => kyoto.compatNet.createServer()],
    ['compatDgram.Socket', () => kyoto.compatDgram.createSocket('udp4')],
    ...(UNIX_SOCKETS
      ? ([
          ['UnixStream', () => kyoto.UnixStream.pair()[0]],
          ['UnixDatagram', () => kyoto.UnixDatagram.pair()[0]],
        ] as Array<[string, () => unknown]>)
      : []),
  ];
  for (const [kind, make] of makers) await probeInstances(probe, kind, make);

  // Functions and statics. serveConsole is left out: it listens on a fixed default port, which the
  // console tests own; its option checks are tested there.
  const calls: Array<[string, AnyFn, unknown]> = [];
  const namespaces: Array<[string, Obj]> = [['', kyoto as Obj]];
  for (const ns of ['compatNet', 'compatDgram', 'mpsc', 'oneshot', 'watch', 'broadcast']) namespaces.push([`${ns}.`, (kyoto as Obj)[ns] as Obj]);
  for (const [prefix, ns] of namespaces) for (const [short, v] of Object.entries(ns)) {
    const name = prefix + short;
    if (typeof v !== 'function' || name === 'serveConsole') continue;
    // compatNet.isIP and friends are node:net's own functions, re-exported: Node's behaviour.
    if (Object.values(nodeNet).includes(v as never) || Object.values(nodeDgram).includes(v as never)) continue;
    const isClass = /^class\b/.test(Function.prototype.toString.call(v));
    const statics = isClass ? Object.getOwnPropertyNames(v).filter((s) => typeof (v as unknown as Obj)[s] === 'function') : [];
    for (const s of statics) {
      for (const a of JUNK) probe.call(`${name}.${s}(${label(a)})`, v, (v as unknown as Obj)[s] as AnyFn, [a]);
      calls.push([`${name}.${s}`, (v as unknown as Obj)[s] as AnyFn, v]);
    }
    if (isClass && !(v.prototype instanceof Error) && v !== Error) {
      // a constructor with an option bag (Runtime, Semaphore, …)
      calls.push([`new ${name}`, function (this: unknown, ...args: unknown[]) { return new (v as new (...a: unknown[]) => unknown)(...args); } as AnyFn, undefined]);
    }
    if (!isClass) {
      calls.push([name, v as AnyFn, undefined]);
      for (const a of JUNK) {
        probe.call(`${name}(${label(a)})`, undefined, v as AnyFn, [a]);
        probe.call(`${name}(${label(a)}, ${label(a)})`, undefined, v as AnyFn, [a, a]);
      }
    }
  }
  // Junk inside option bags: every option name the API takes, with a plausible first argument.
  const OPTION_KEYS = ['signal', 'runtime', 'flavor', 'workerThreads', 'threadName', 'name', 'maxBlockingThreads', 'globalQueueInterval', 'eventInterval',
    'start', 'reuseAddr', 'reusePort', 'path', 'maxLength', 'host', 'port', 'backlog', 'noDelay', 'keepAlive', 'missedTickBehavior', 'maxReaders',
    'maxFrameLength', 'lengthFieldBytes', 'family', 'address', 'retention', 'publishInterval', 'inBufferSize', 'outBufferSize', 'maxInstances',
    'firstPipeInstance', 'rejectRemoteClients'];
  const FIRST: unknown[] = ['127.0.0.1:0', 4, Buffer.alloc(4)];
  for (const [name, f, self] of calls) {
    for (const first of FIRST) {
      for (const key of OPTION_KEYS) {
        for (const j of BAG_JUNK) probe.call(`${name}(${label(first)}, { ${key}: ${label(j)} })`, self, f, [first, { [key]: j }]);
      }
    }
  }
  await probe.settle(2000);
  listener.close();
  for (const s of accepted) s.close();
  for (const f of socketFilesHere()) if (!socketsBefore.has(f)) fs.unlinkSync(f);
  t.deepEqual(probe.uncoded, []);
});
