/**
 * `kyoto/net`: TCP and UDP sockets on kyoto's native reactor.
 *
 * Reads are delivered to JavaScript in batches (one call per batch of ready sockets, data in one
 * shared arena), writes are queued in a shared arena and sent by one native pass per turn. By default
 * the reactor is a current-thread kyoto runtime driven from Node's own event loop (no thread hop);
 * `KYOTO_NET_FLAVOR=multi_thread` runs socket I/O on kyoto worker threads instead.
 * @module
 */
import * as dns from 'node:dns';
import * as net from 'node:net';
import { Duplex } from 'node:stream';
import { native } from './native';
import { Runtime, type RuntimeOption } from './runtime';
import {
  abortReason,
  codedError,
  invalidArgType,
  invalidArgValue,
  optionsBag,
  outOfRange,
  validateInteger,
  validateNumber,
  validateSignal,
} from './errors';
import {
  DIRECT_WRITE_MIN,
  LoopHolds,
  encodeFrame,
  K_ACCEPT,
  K_CONNECTED,
  K_DATA,
  K_DGRAM,
  K_DRAIN,
  K_EOF,
  K_ERROR,
  K_FRAME_ERR,
  K_FRAME_SYNC,
  K_FRAMES,
  SYSCALLS,
  currentBatch,
  encodedV4,
  flavor,
  hold,
  ipv4ToInt,
  isBlocked,
  parseNativeAddr,
  pinRuntime,
  queueFrame,
  queueWrite,
  rarena,
  copyFromArena,
  register,
  runtimeOf,
  systemError,
  unregister,
  v4Address,
  v6Address,
  type SocketAddress,
  type SystemError,
} from './net/core';
import { DatagramQueue } from './net/dgram-queue';
import { kStream } from './net/stream-of';

export type { SocketAddress, SystemError };

/** The I/O data path in use in this thread: `'current_thread'` or `'multi_thread'`. */
export const netFlavor: string = flavor;

/** An address: `"host:port"`, `{ host, port }` or `{ address, port }`. */
export type AddressLike = string | { host: string; port: number } | { address: string; port: number };

/** Options of every waiting call. */
export interface SignalOption {
  /** Aborts the wait. */
  signal?: AbortSignal;
}

/**
 * The runtime a new socket's I/O runs on. Without `runtime` (or with the default runtime) a socket
 * uses this thread's data path (see {@link netFlavor}); with another {@link Runtime} its reads,
 * writes and accepts run on that runtime's threads, its events reach this thread batched, and
 * shutting that runtime down fails the socket's pending and later operations with
 * `ERR_RUNTIME_SHUTDOWN`.
 */
function isRuntimeShutdown(e: Error): boolean {
  return (e as { code?: string }).code === 'ERR_RUNTIME_SHUTDOWN';
}

/** Rejects and removes every waiter of `ws`, releasing their loop hold (through `release`). */
function rejectAll(ws: Array<{ reject: (e: unknown) => void }>, err: Error, release: (delta: number) => void = hold): void {
  const all = ws.splice(0);
  if (all.length > 0) release(-1);
  for (const w of all) w.reject(err);
}

function socketRuntime(opts: RuntimeOption): [Runtime | undefined, ReturnType<Runtime['_native']> | undefined] {
  if (opts.runtime === undefined) return [undefined, undefined];
  const rt = Runtime._of(opts);
  if (rt._isShared) return [undefined, undefined];
  return [rt, rt._native()];
}

const READ_HWM = 1 << 20;
const READ_LWM = 256 * 1024;
const DGRAM_HWM = 4096;

function splitAddr(addr: unknown, name = 'addr'): { host: string; port: number } {
  let host: unknown;
  let port: unknown;
  if (typeof addr === 'string') {
    const i = addr.lastIndexOf(':');
    if (i < 0) throw invalidArgValue(name, 'must be "host:port"', addr);
    host = addr.slice(0, i);
    port = Number(addr.slice(i + 1));
    if (addr.slice(i + 1) === '') port = NaN;
    if (typeof host === 'string' && host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  } else if (addr !== null && typeof addr === 'object') {
    const o = addr as Record<string, unknown>;
    host = o.host ?? o.address;
    port = o.port;
  } else {
    throw invalidArgType(name, 'a "host:port" string or an object with host/address and port', addr);
  }
  if (typeof host !== 'string') throw invalidArgType(`${name}.host`, 'of type string', host);
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw Object.assign(outOfRange(`${name}.port`, '>= 0 && <= 65535', port), { code: 'ERR_SOCKET_BAD_PORT' });
  }
  if (host === '') host = '0.0.0.0';
  return { host: host as string, port: port as number };
}

const lookupCache = new Map<string, string>();

async function resolveHost(host: string, family?: 4 | 6): Promise<string> {
  if (net.isIP(host)) return host;
  if (host === 'localhost' && family !== 6) return '127.0.0.1';
  const cached = lookupCache.get(host);
  if (cached !== undefined) return cached;
  const r = await dns.promises.lookup(host, family ? { family } : {});
  if (lookupCache.size > 256) lookupCache.clear();
  lookupCache.set(host, r.address);
  return r.address;
}

async function resolveAddr(addr: unknown, name = 'addr'): Promise<{ host: string; port: number }> {
  const { host, port } = splitAddr(addr, name);
  return { host: await resolveHost(host), port };
}

function checkSignal(signal: AbortSignal | undefined): void {
  validateSignal(signal);
  if (signal?.aborted) throw abortReason(signal);
}

// A promise and its resolvers without a closure per call (the hot read paths): `new
// Promise(capture)` runs `capture` synchronously, which leaves the resolvers here for the caller
// to take at once. A closure capturing the caller's state would be two more objects per read, and
// every pending read's objects survive V8's scavenges (see README, P1 peak RSS).
let capturedResolve: (v: unknown) => void = () => {};
let capturedReject: (e: unknown) => void = () => {};
function capture(resolve: (v: unknown) => void, reject: (e: unknown) => void): void {
  capturedResolve = resolve;
  capturedReject = reject;
}

/** Runs `wait` with `signal`: an abort removes the waiter via `cancel` and rejects. */
function withSignal<T>(
  signal: AbortSignal | undefined,
  register: (resolve: (v: T) => void, reject: (e: unknown) => void) => () => void,
): Promise<T> {
  if (signal === undefined) {
    return new Promise<T>((resolve, reject) => {
      register(resolve, reject);
    });
  }
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise<T>((resolve, reject) => {
    let cancel: (() => void) | undefined;
    const onAbort = (): void => {
      cancel?.();
      reject(abortReason(signal));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    cancel = register(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

function toBytes(data: unknown, name = 'data'): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (typeof data === 'string') return Buffer.from(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw invalidArgType(name, 'a string, Buffer, TypedArray or DataView', data);
}

function closedError(): Error {
  return codedError('ERR_SOCKET_CLOSED', 'Socket is closed');
}

function framedError(): Error {
  return codedError('ERR_STREAM_FRAMED', 'the stream is framed: read frames with framed(...).next()');
}

/**
 * @internal The receiving side of `framed()` on a kyoto stream: gets the stream's frame events once
 * the native framer took over.
 */
export interface FrameSink {
  /** `K_FRAMES`, `K_FRAME_ERR`, `K_EOF` or a read `K_ERROR` (after the switch to native framing). */
  onFrameEvent(kind: number, a: number, b: number, off: number, len: number): void;
  /** The native framer took over: reading may be turned on. */
  onSynced(): void;
  /** The stream was closed locally. */
  onStreamClosed(): void;
}

const O_REUSE_ADDR = 1;
const O_REUSE_PORT = 2;
const O_NODELAY = 8;
const O_KEEPALIVE = 16;

// ---------------------------------------------------------------------------------------------
// TcpStream

interface ReadWaiter {
  buf: Uint8Array | undefined; // undefined: take a whole chunk
  peek: boolean;
  /** Resolve with an `IteratorResult` (the stream's async iterator) rather than the chunk itself. */
  iter: boolean;
  resolve: (v: number | Buffer | undefined | IteratorResult<Buffer, undefined>) => void;
  reject: (e: unknown) => void;
}

const ITER_DONE: IteratorResult<Buffer, undefined> = Object.freeze({ value: undefined, done: true });

/**
 * An iterator result carrying a chunk. A class rather than an object literal: V8 tracks literal
 * sites for pretenuring, and with thousands of connections enough results survive a scavenge for
 * V8 to start allocating them all straight into the old generation.
 */
class ChunkResult implements IteratorYieldResult<Buffer> {
  readonly done = false;
  constructor(readonly value: Buffer) {}
}

/** A chunk of the receive arena as a Buffer of its own (Node's pool for small ones). */
function arenaChunk(off: number, len: number): Buffer {
  return Buffer.from(rarena.subarray(off, off + len));
}

/**
 * A TCP connection. Reads land in the caller's buffer; `write` resolves once the kernel took the
 * bytes or a bounded per-socket buffer has room.
 */
export class TcpStream implements AsyncIterable<Buffer> {
  /** @internal */ readonly _h: number;
  #chunks: Buffer[] = [];
  #chunkOff = 0;
  #buffered = 0;
  #eof = false;
  #readErr: Error | undefined;
  #writeErr: Error | undefined;
  #reading = false;
  #waiters: ReadWaiter[] = [];
  #drainWaiters: Array<[() => void, (e: unknown) => void]> = [];
  #connect: [(s: TcpStream) => void, (e: unknown) => void, string, number] | undefined;
  #closed = false;
  #shutdown: Promise<void> | undefined;
  #copying = false;
  #peer: SocketAddress | undefined;
  #node: Duplex | undefined;
  #framer: FrameSink | undefined;
  #frameSynced = false;
  #readErrno = 0;
  /** Pending connect, reads, drain waits (stream) or receives (UDP) holding the loop. */
  #holds = new LoopHolds();
  /** @internal Stop native reads above this many buffered bytes (kyoto/compat/net lowers it). */
  _readHwm = READ_HWM;
  /** @internal Resume native reads below this many buffered bytes. */
  _readLwm = READ_LWM;

  /** @internal */
  constructor(h: number, peer?: SocketAddress) {
    this._h = h;
    this.#peer = peer;
    register(h, this);
  }

  /**
   * Connects to `addr`.
   * @param addr - `"host:port"`, `{ host, port }` or `{ address, port }`.
   * @param options - `signal`, `noDelay`, `keepAlive`.
   */
  static async connect(
    addr: AddressLike,
    options?: SignalOption & RuntimeOption & { noDelay?: boolean; keepAlive?: boolean },
  ): Promise<TcpStream> {
    const opts = optionsBag<SignalOption & RuntimeOption & { noDelay?: boolean; keepAlive?: boolean }>(options);
    checkSignal(opts.signal);
    socketRuntime(opts); // validates before the lookup
    const { host, port } = await resolveAddr(addr);
    const flags = (opts.noDelay ? O_NODELAY : 0) | (opts.keepAlive ? O_KEEPALIVE : 0);
    return TcpStream._connect(host, port, '', 0, flags, 0, 0, opts.signal, opts.runtime);
  }

  /** @internal */
  static _connect(
    host: string,
    port: number,
    localIp: string,
    localPort: number,
    flags: number,
    sndbuf: number,
    rcvbuf: number,
    signal: AbortSignal | undefined,
    runtime?: Runtime,
  ): Promise<TcpStream> {
    checkSignal(signal);
    const [rt, nrt] = socketRuntime({ runtime });
    const h = native.netTcpConnect(host, port, localIp, localPort, flags, sndbuf, rcvbuf, nrt);
    if (h < 0) return Promise.reject(systemError(-h, 'connect', host, port));
    const s = new TcpStream(h);
    pinRuntime(h, rt);
    return TcpStream._waitConnected(s, host, port, signal);
  }

  /** @internal Resolves with `s` once its connect finished (`port` -1: a Unix path). */
  static _waitConnected<T extends TcpStream>(s: T, host: string, port: number, signal: AbortSignal | undefined): Promise<T> {
    s.#holds.add(1);
    return withSignal<T>(signal, (resolve, reject) => {
      s.#connect = [resolve as (s: TcpStream) => void, reject, host, port];
      return () => {
        if (s.#connect !== undefined) {
          s.#connect = undefined;
          s.#holds.add(-1);
          s.close();
        }
      };
    });
  }

  /** @internal Node-style ref/unref: whether this stream's pending operations keep the loop alive. */
  _setRef(on: boolean): void {
    this.#holds.setRef(on);
  }

  /** @internal */
  onEvent(kind: number, a: number, b: number, off: number, len: number): void {
    if (this.#framer !== undefined && this.#onFramedEvent(this.#framer, kind, a, b, off, len)) return;
    switch (kind) {
      case K_DATA:
        this.#onData(off, len);
        break;
      case K_EOF:
        this.#eof = true;
        this.#service();
        break;
      case K_DRAIN:
        // Each waiter removes itself; the last one releases the loop hold.
        for (const [res] of this.#drainWaiters.slice()) res();
        break;
      case K_CONNECTED: {
        const c = this.#connect;
        if (c !== undefined) {
          this.#connect = undefined;
          this.#holds.add(-1);
          c[0](this);
        }
        break;
      }
      case K_ERROR: {
        const sys = SYSCALLS[b] ?? 'read';
        if (sys === 'connect') {
          const c = this.#connect;
          this.#connect = undefined;
          if (c !== undefined) {
            this.#holds.add(-1);
            this.close();
            c[1](c[3] < 0 ? systemError(a, 'connect', c[2]) : systemError(a, 'connect', c[2], c[3]));
          }
          return;
        }
        const err = systemError(a, sys);
        if (sys === 'read') {
          if (this.#readErr === undefined) this.#readErrno = a;
          this.#readErr ??= err;
          this.#eof = true;
          this.#service();
        } else {
          this.#writeErr ??= err;
          for (const [, rej] of this.#drainWaiters.slice()) rej(err);
        }
        break;
      }
    }
  }

  /** A framed stream's events; false for those handled as usual (write side). */
  #onFramedEvent(f: FrameSink, kind: number, a: number, b: number, off: number, len: number): boolean {
    switch (kind) {
      case K_DATA:
        // Read before the native framer took over: handed to it at K_FRAME_SYNC.
        this.#chunks.push(Buffer.from(rarena.subarray(off, off + len)));
        this.#buffered += len;
        return true;
      case K_FRAME_SYNC:
        if (!this.#frameSynced) this.#frameSync(f);
        return true;
      case K_FRAMES:
      case K_FRAME_ERR:
        f.onFrameEvent(kind, a, b, off, len);
        return true;
      case K_EOF:
        if (this.#frameSynced) f.onFrameEvent(kind, a, b, off, len);
        else this.#eof = true;
        return true;
      case K_ERROR:
        if ((SYSCALLS[b] ?? 'read') !== 'read') return false;
        if (this.#frameSynced) {
          f.onFrameEvent(kind, a, b, off, len);
        } else {
          if (this.#readErr === undefined) this.#readErrno = a;
          this.#readErr ??= systemError(a, 'read');
          this.#eof = true;
        }
        return true;
      default:
        return false;
    }
  }

  /**
   * Hands what JS buffered (and how the stream ended, if it did) to the native framer: from now on
   * the stream's frames, end and read errors go to `f`.
   */
  #frameSync(f: FrameSink): void {
    const raw = this.#takeBuffered();
    const end = this.#eof ? (this.#readErr !== undefined ? 2 : 1) : 0;
    this.#frameSynced = true;
    const r = native.netFrameFeed(this._h, raw, end, this.#readErrno);
    if (r === 0) f.onSynced();
    else f.onFrameEvent(K_ERROR, -r, 0, 0, 0);
  }

  /** Everything buffered on the JS side, as one Buffer (emptying the buffer). */
  #takeBuffered(): Buffer {
    const parts = this.#chunks;
    const first = this.#chunkOff;
    this.#chunks = [];
    this.#chunkOff = 0;
    this.#buffered = 0;
    if (parts.length > 0 && first > 0) parts[0] = parts[0].subarray(first);
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }

  /**
   * @internal Hands the read side to native framing (`kind` 1 lines, 2 length-delimited): raw reads
   * end (pending ones reject with `ERR_STREAM_FRAMED`), and `sink` receives the frames. Bytes
   * already buffered or on their way go through the framer first.
   */
  _attachFramer(sink: FrameSink, kind: number, max: number, fieldBytes: number): void {
    if (this.#framer !== undefined) throw codedError('ERR_STREAM_FRAMED', 'the stream is already framed');
    if (this.#copying) throw codedError('ERR_INVALID_STATE', 'the stream is being copied natively');
    if (!this.#closed) {
      const r = native.netFrame(this._h, kind, max, fieldBytes);
      if (r < 0) throw systemError(-r, 'framed');
    }
    this.#framer = sink;
    if (this.#reading) {
      this.#reading = false;
      native.netRead(this._h, false);
    }
    if (this.#waiters.length > 0) this.#holds.add(-1);
    for (const w of this.#waiters.splice(0)) w.reject(framedError());
    if (this.#closed) sink.onStreamClosed();
    // Already ended: no raw data can follow, so no need to wait for the task's marker (whose task
    // may be gone, e.g. with its runtime); a marker that still comes is ignored.
    else if (this.#eof) this.#frameSync(sink);
  }

  /** @internal Whether `framed()` claimed the read side. */
  get _framed(): boolean {
    return this.#framer !== undefined;
  }

  /**
   * @internal Writes one frame as one write: a `hdr`-byte big-endian length header (0: none),
   * `body`, then `\n` when `nl`. A body longer than `max` bytes rejects with `tooBig(length)`.
   */
  _sendFrame(
    body: Uint8Array | string,
    hdr: number,
    nl: boolean,
    max: number,
    tooBig: (len: number) => Error,
  ): Promise<void> {
    if (this.#closed) return Promise.reject(closedError());
    if (this.#writeErr) return Promise.reject(this.#writeErr);
    if (this.#shutdown) return Promise.reject(codedError('ERR_STREAM_WRITE_AFTER_END', 'write after end'));
    if (isBlocked(this._h)) return this.#blockedWait().then(() => this._sendFrame(body, hdr, nl, max, tooBig));
    const r = queueFrame(this._h, hdr, body, nl, max);
    if (r >= 0) return Promise.resolve();
    const bytes = typeof body === 'string' ? Buffer.from(body) : body;
    if (r === -2 || bytes.length > max) return Promise.reject(tooBig(bytes.length));
    return this.#writeDirect(encodeFrame(bytes, hdr, nl)).then(() => undefined);
  }

  #onData(off: number, len: number): void {
    const w = this.#waiters;
    if (w.length > 0 && this.#buffered === 0 && !w[0].peek) {
      // Fast path: straight into the caller's buffer, or as a chunk of its own, without passing
      // through the chunk queue.
      const first = w.shift()!;
      if (w.length === 0) this.#holds.add(-1);
      const buf = first.buf;
      if (buf === undefined) {
        const c = arenaChunk(off, len);
        first.resolve(first.iter ? new ChunkResult(c) : c);
      } else {
        const n = len < buf.length ? len : buf.length;
        copyFromArena(buf, off, n);
        if (n < len) this.#push(arenaChunk(off + n, len - n));
        first.resolve(n);
      }
      if (w.length > 0 && this.#buffered > 0) this.#service();
      return;
    }
    this.#push(arenaChunk(off, len));
    this.#service();
  }

  #push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    if (this.#buffered > this._readHwm && this.#reading) {
      this.#reading = false;
      native.netRead(this._h, false);
    }
  }

  /** Copies (and unless `peek`, consumes) up to `buf.length` buffered bytes. */
  #take(buf: Uint8Array, peek: boolean): number {
    let n = 0;
    let ci = 0;
    let off = this.#chunkOff;
    while (n < buf.length && ci < this.#chunks.length) {
      const c = this.#chunks[ci];
      const k = Math.min(c.length - off, buf.length - n);
      c.copy(buf, n, off, off + k);
      n += k;
      off += k;
      if (off === c.length) {
        ci++;
        off = 0;
      }
    }
    if (!peek) {
      this.#chunks.splice(0, ci);
      this.#chunkOff = off;
      this.#buffered -= n;
      this.#maybeResume();
    }
    return n;
  }

  #takeChunk(): Buffer {
    const c = this.#chunks.shift()!;
    const out = this.#chunkOff > 0 ? c.subarray(this.#chunkOff) : c;
    this.#chunkOff = 0;
    this.#buffered -= out.length;
    this.#maybeResume();
    return out;
  }

  #maybeResume(): void {
    if (
      !this.#reading &&
      !this.#eof &&
      !this.#closed &&
      !this.#copying &&
      this.#framer === undefined &&
      this.#buffered < this._readLwm
    ) {
      this.#reading = true;
      native.netRead(this._h, true);
    }
  }

  #service(): void {
    const w = this.#waiters;
    while (w.length > 0) {
      const first = w[0];
      if (this.#buffered > 0) {
        w.shift();
        if (first.buf !== undefined) first.resolve(this.#take(first.buf, first.peek));
        else if (first.iter) first.resolve(new ChunkResult(this.#takeChunk()));
        else first.resolve(this.#takeChunk());
      } else if (this.#eof || this.#closed) {
        w.shift();
        if (this.#readErr !== undefined && !this.#closed) first.reject(this.#readErr);
        else if (this.#closed) first.reject(closedError());
        else first.resolve(first.buf !== undefined ? 0 : first.iter ? ITER_DONE : undefined);
      } else {
        return;
      }
      if (w.length === 0) this.#holds.add(-1);
    }
  }

  #wait(
    buf: Uint8Array | undefined,
    peek: boolean,
    signal: AbortSignal | undefined,
    iter = false,
  ): Promise<number | Buffer | undefined | IteratorResult<Buffer, undefined>> {
    if (!this.#reading && !this.#eof && !this.#closed) this.#maybeResume();
    if (signal === undefined) {
      // The hot path: one promise and one waiter record per read.
      const p = new Promise(capture);
      if (this.#waiters.length === 0) this.#holds.add(1);
      this.#waiters.push({ buf, peek, iter, resolve: capturedResolve, reject: capturedReject });
      return p as Promise<number | Buffer | undefined | IteratorResult<Buffer, undefined>>;
    }
    return withSignal(signal, (resolve, reject) => {
      const w: ReadWaiter = { buf, peek, iter, resolve, reject };
      if (this.#waiters.length === 0) this.#holds.add(1);
      this.#waiters.push(w);
      return () => {
        const i = this.#waiters.indexOf(w);
        if (i >= 0) {
          this.#waiters.splice(i, 1);
          if (this.#waiters.length === 0) this.#holds.add(-1);
        }
      };
    });
  }

  /**
   * Reads into `buf`; resolves with the number of bytes read, 0 at end of stream. Once `framed()`
   * (`kyoto/io`) claimed the stream, raw reads (`read`, `peek`, `readChunk`, iteration) reject with
   * `ERR_STREAM_FRAMED`.
   * @param buf - the destination.
   * @param options - `signal`.
   */
  read(buf: Uint8Array, options?: SignalOption): Promise<number> {
    if (!(buf instanceof Uint8Array)) return Promise.reject(invalidArgType('buf', 'an instance of Uint8Array', buf));
    if (this.#framer !== undefined) return Promise.reject(framedError());
    if (this.#buffered > 0) return Promise.resolve(this.#take(buf, false));
    if (this.#closed) return Promise.reject(closedError());
    if (this.#eof) return this.#readErr ? Promise.reject(this.#readErr) : Promise.resolve(0);
    if (buf.length === 0) return Promise.resolve(0);
    return this.#wait(buf, false, options?.signal) as Promise<number>;
  }

  /** Reads into `buf` without consuming the data. */
  peek(buf: Uint8Array, options?: SignalOption): Promise<number> {
    if (!(buf instanceof Uint8Array)) return Promise.reject(invalidArgType('buf', 'an instance of Uint8Array', buf));
    if (this.#framer !== undefined) return Promise.reject(framedError());
    if (this.#buffered > 0) return Promise.resolve(this.#take(buf, true));
    if (this.#closed) return Promise.reject(closedError());
    if (this.#eof) return this.#readErr ? Promise.reject(this.#readErr) : Promise.resolve(0);
    return this.#wait(buf, true, options?.signal) as Promise<number>;
  }

  /** Fills `buf` completely; rejects with `ERR_UNEXPECTED_EOF` if the stream ends first. */
  async readExact(buf: Uint8Array, options?: SignalOption): Promise<number> {
    let n = 0;
    while (n < buf.length) {
      const k = await this.read(buf.subarray(n), options);
      if (k === 0) throw codedError('ERR_UNEXPECTED_EOF', `early eof: read ${n} of ${buf.length} bytes`);
      n += k;
    }
    return n;
  }

  /** The next chunk as it arrived, or `undefined` at end of stream. */
  readChunk(options?: SignalOption): Promise<Buffer | undefined> {
    if (this.#framer !== undefined) return Promise.reject(framedError());
    if (this.#buffered > 0) return Promise.resolve(this.#takeChunk());
    if (this.#closed) return Promise.reject(closedError());
    if (this.#eof) return this.#readErr ? Promise.reject(this.#readErr) : Promise.resolve(undefined);
    return this.#wait(undefined, false, options?.signal) as Promise<Buffer | undefined>;
  }

  /** Reads until end of stream. */
  async readToEnd(options?: SignalOption): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (;;) {
      const c = await this.readChunk(options);
      if (c === undefined) return Buffer.concat(parts);
      parts.push(c);
    }
  }

  #blockedWait(signal?: AbortSignal): Promise<void> {
    return withSignal<void>(signal, (resolve, reject) => {
      const entry: [() => void, (e: unknown) => void] = [resolve, reject];
      if (this.#drainWaiters.length === 0) this.#holds.add(1);
      this.#drainWaiters.push(entry);
      // Removes the entry; the last one out releases the loop hold (exactly once per entry).
      const done = (): boolean => {
        const i = this.#drainWaiters.indexOf(entry);
        if (i < 0) return false;
        this.#drainWaiters.splice(i, 1);
        if (this.#drainWaiters.length === 0) this.#holds.add(-1);
        return true;
      };
      entry[0] = () => {
        if (done()) resolve();
      };
      entry[1] = (e) => {
        if (done()) reject(e);
      };
      return () => {
        done();
      };
    });
  }

  /**
   * Writes `data`; resolves with its length once the kernel took it or a bounded buffer has room.
   * @param data - a string (UTF-8), Buffer, TypedArray or DataView.
   */
  write(data: Uint8Array | string, options?: SignalOption): Promise<number> {
    let bytes: Uint8Array;
    try {
      bytes = toBytes(data);
    } catch (e) {
      return Promise.reject(e);
    }
    if (this.#closed) return Promise.reject(closedError());
    if (this.#writeErr) return Promise.reject(this.#writeErr);
    if (this.#shutdown) return Promise.reject(codedError('ERR_STREAM_WRITE_AFTER_END', 'write after end'));
    if (isBlocked(this._h)) return this.#blockedWait(options?.signal).then(() => this.write(bytes, options));
    if (queueWrite(this._h, bytes)) return Promise.resolve(bytes.length);
    return this.#writeDirect(bytes, options);
  }

  async #writeDirect(bytes: Uint8Array, options?: SignalOption): Promise<number> {
    for (let off = 0; off < bytes.length; ) {
      const end = Math.min(bytes.length, off + 4 * DIRECT_WRITE_MIN * 16);
      const r = native.netWrite(this._h, bytes.subarray(off, end));
      if (r < 0) throw (this.#writeErr ??= systemError(-r, 'write'));
      off = end;
      if (r === 1 || isBlocked(this._h)) await this.#blockedWait(options?.signal);
      if (this.#writeErr) throw this.#writeErr;
    }
    return bytes.length;
  }

  /** Writes all of `data` (same as {@link TcpStream.write}: it always takes everything). */
  async writeAll(data: Uint8Array | string, options?: SignalOption): Promise<void> {
    await this.write(data, options);
  }

  /** Resolves once everything written so far was handed to the kernel. */
  async flush(options?: SignalOption): Promise<void> {
    if (this.#closed) throw closedError();
    if (this.#writeErr) throw this.#writeErr;
    if (native.netDrain(this._h) === 1) await this.#blockedWait(options?.signal);
    if (this.#writeErr) throw this.#writeErr;
  }

  /** Sends a FIN after the data written so far. Idempotent. */
  shutdown(): Promise<void> {
    if (this.#shutdown) return this.#shutdown;
    if (this.#closed) return Promise.reject(closedError());
    const r = native.netShutdown(this._h);
    if (r < 0) this.#shutdown = Promise.reject(systemError(-r, 'shutdown'));
    else if (r === 0) this.#shutdown = Promise.resolve();
    else this.#shutdown = this.#blockedWait();
    this.#shutdown.catch(() => {});
    return this.#shutdown;
  }

  /** The local address. */
  localAddr(): SocketAddress {
    return parseNativeAddr(native.netAddr(this._h, false), 'getsockname');
  }

  /** The peer's address. */
  peerAddr(): SocketAddress {
    this.#peer ??= parseNativeAddr(native.netAddr(this._h, true), 'getpeername');
    return this.#peer;
  }

  #opt(opt: number, a: number, b = 0, name = 'setsockopt'): void {
    const r = native.netSetOpt(this._h, opt, a, b);
    if (r < 0) throw systemError(-r, name);
  }

  /** Sets `TCP_NODELAY`. */
  setNoDelay(on = true): void {
    this.#opt(1, on ? 1 : 0);
  }

  /** Sets `SO_KEEPALIVE` (and the idle time before probes, in ms). */
  setKeepAlive(on = true, initialDelayMs = 0): void {
    validateNumber(initialDelayMs, 'initialDelayMs', 0, 2 ** 31);
    this.#opt(2, on ? 1 : 0, initialDelayMs);
  }

  /** Sets `SO_LINGER` (ms; `null` turns it off). */
  setLinger(ms: number | null): void {
    if (ms !== null) validateNumber(ms, 'ms', 0, 2 ** 31);
    this.#opt(3, ms === null ? -1 : ms / 1000);
  }

  /** Sets the IP TTL. */
  setTtl(ttl: number): void {
    validateInteger(ttl, 'ttl', 1, 255);
    this.#opt(4, ttl);
  }

  /** Splits into a read half and a write half (closing the write half sends a FIN). */
  split(): [ReadHalf, WriteHalf] {
    const state = { open: 2 };
    return [new ReadHalf(this, state), new WriteHalf(this, state)];
  }

  /** Closes the connection (data queued by `write` is sent first when the socket takes it). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    native.netClose(this._h);
    unregister(this._h);
    const c = this.#connect;
    if (c !== undefined) {
      // A pipe server closed while it waits for its client (sockets are handed out connected).
      this.#connect = undefined;
      this.#holds.add(-1);
      c[1](closedError());
    }
    this.#service();
    for (const [, rej] of this.#drainWaiters.slice()) rej(closedError());
    this.#framer?.onStreamClosed();
  }

  /** Closes the connection. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  /** @internal The stream itself (see `net/stream-of.ts`). */
  [kStream](): TcpStream {
    return this;
  }

  /** Whether {@link TcpStream.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * The data received so far, as chunks, until end of stream. Each `next()` is one promise,
   * resolved with its result directly (an async generator awaiting `readChunk()` would settle
   * three per chunk, and under load every pending one survives V8's scavenges).
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<Buffer> {
    let done = false;
    const it: AsyncIterableIterator<Buffer> = {
      next: (): Promise<IteratorResult<Buffer, undefined>> => {
        if (done) return Promise.resolve(ITER_DONE);
        if (this.#framer !== undefined) return Promise.reject(framedError());
        if (this.#buffered > 0) return Promise.resolve(new ChunkResult(this.#takeChunk()));
        if (this.#closed) return Promise.reject(closedError());
        if (this.#eof) return this.#readErr ? Promise.reject(this.#readErr) : Promise.resolve(ITER_DONE);
        return this.#wait(undefined, false, undefined, true) as Promise<IteratorResult<Buffer, undefined>>;
      },
      // `break` out of a `for await` ends the iteration, not the stream.
      return: (): Promise<IteratorResult<Buffer, undefined>> => {
        done = true;
        return Promise.resolve(ITER_DONE);
      },
      [Symbol.asyncIterator]: () => it,
    };
    return it;
  }

  /** @internal Hands buffered data over for a native copy and stops JS reads. */
  _beginCopy(): Buffer {
    this.#copying = true;
    if (this.#reading) {
      this.#reading = false;
      native.netRead(this._h, false);
    }
    return this.#takeBuffered();
  }

  /** @internal */
  _endCopy(sawEof: boolean): void {
    this.#copying = false;
    if (sawEof) this.#eof = true;
  }

  /** @internal */
  get _eof(): boolean {
    return this.#eof && this.#buffered === 0;
  }

  /**
   * A Node `stream.Duplex` over this connection, for any Node library (e.g.
   * `http.Server#emit('connection', stream.toNodeStream())`). Ending it sends a FIN; destroying it
   * closes the connection.
   */
  toNodeStream(): Duplex {
    if (this.#node) return this.#node;
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    let reading = false;
    const d = new Duplex({
      allowHalfOpen: true,
      read() {
        if (reading) return;
        reading = true;
        const pump = (): void => {
          self.readChunk().then(
            (c) => {
              if (c === undefined) {
                reading = false;
                d.push(null);
              } else if (d.push(c)) {
                pump();
              } else {
                reading = false;
              }
            },
            (e) => {
              reading = false;
              d.destroy(e);
            },
          );
        };
        pump();
      },
      write(chunk: Buffer, _enc, cb) {
        self.write(chunk).then(() => cb(), cb);
      },
      writev(chunks, cb) {
        const total = Buffer.concat(chunks.map((c) => c.chunk as Buffer));
        self.write(total).then(() => cb(), cb);
      },
      final(cb) {
        self.shutdown().then(() => cb(), cb);
      },
      destroy(err, cb) {
        self.close();
        cb(err);
      },
    });
    const extra = d as Duplex & Record<string, unknown>;
    let peer: SocketAddress | undefined;
    try {
      peer = this.peerAddr();
    } catch {
      peer = undefined;
    }
    extra.remoteAddress = peer?.address;
    extra.remotePort = peer?.port;
    extra.remoteFamily = peer?.family;
    extra.setNoDelay = (on?: boolean) => {
      try {
        self.setNoDelay(on ?? true);
      } catch {
        /* closed */
      }
      return d;
    };
    extra.setKeepAlive = (on?: boolean, delay?: number) => {
      try {
        self.setKeepAlive(on ?? false, delay ?? 0);
      } catch {
        /* closed */
      }
      return d;
    };
    extra.setTimeout = (ms: number, cb?: () => void) => {
      const timers = extra as { _kyotoTimer?: NodeJS.Timeout };
      if (timers._kyotoTimer) clearTimeout(timers._kyotoTimer);
      timers._kyotoTimer = undefined;
      if (cb) d.once('timeout', cb);
      if (ms > 0) {
        timers._kyotoTimer = setTimeout(() => d.emit('timeout'), ms);
        timers._kyotoTimer.unref();
      }
      return d;
    };
    extra.address = () => {
      try {
        return self.localAddr();
      } catch {
        return {};
      }
    };
    this.#node = d;
    return d;
  }
}

/** The read half of a split {@link TcpStream}. */
export class ReadHalf implements AsyncIterable<Buffer> {
  /** @internal */
  constructor(
    /** @internal */ readonly _s: TcpStream,
    private readonly _state: { open: number },
  ) {}
  /** @internal The stream this half reads (see `net/stream-of.ts`). */
  [kStream](): TcpStream {
    return this._s;
  }
  /** See {@link TcpStream.read}. */
  read(buf: Uint8Array, options?: SignalOption): Promise<number> {
    return this._s.read(buf, options);
  }
  /** See {@link TcpStream.readExact}. */
  readExact(buf: Uint8Array, options?: SignalOption): Promise<number> {
    return this._s.readExact(buf, options);
  }
  /** See {@link TcpStream.readToEnd}. */
  readToEnd(options?: SignalOption): Promise<Buffer> {
    return this._s.readToEnd(options);
  }
  /** See {@link TcpStream.peek}. */
  peek(buf: Uint8Array, options?: SignalOption): Promise<number> {
    return this._s.peek(buf, options);
  }
  /** See {@link TcpStream.peerAddr}. */
  peerAddr(): SocketAddress {
    return this._s.peerAddr();
  }
  /** See {@link TcpStream.localAddr}. */
  localAddr(): SocketAddress {
    return this._s.localAddr();
  }
  /** Drops this half; the connection closes when both halves are closed. */
  close(): void {
    if (this._state.open > 0 && --this._state.open === 0) this._s.close();
  }
  /** The received chunks until end of stream. */
  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return this._s[Symbol.asyncIterator]();
  }
}

/** The write half of a split {@link TcpStream}; closing it sends a FIN. */
export class WriteHalf {
  #closed = false;
  /** @internal */
  constructor(
    /** @internal */ readonly _s: TcpStream,
    private readonly _state: { open: number },
  ) {}
  /** @internal The stream this half writes (see `net/stream-of.ts`). */
  [kStream](): TcpStream {
    return this._s;
  }
  /** See {@link TcpStream.write}. */
  write(data: Uint8Array | string, options?: SignalOption): Promise<number> {
    return this._s.write(data, options);
  }
  /** See {@link TcpStream.writeAll}. */
  writeAll(data: Uint8Array | string, options?: SignalOption): Promise<void> {
    return this._s.writeAll(data, options);
  }
  /** See {@link TcpStream.flush}. */
  flush(options?: SignalOption): Promise<void> {
    return this._s.flush(options);
  }
  /** Sends a FIN (idempotent). */
  shutdown(): Promise<void> {
    return this._s.shutdown();
  }
  /** See {@link TcpStream.peerAddr}. */
  peerAddr(): SocketAddress {
    return this._s.peerAddr();
  }
  /** See {@link TcpStream.localAddr}. */
  localAddr(): SocketAddress {
    return this._s.localAddr();
  }
  /** Sends a FIN and drops this half. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this._s.shutdown();
    } finally {
      if (this._state.open > 0 && --this._state.open === 0) this._s.close();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// TcpListener

/** Options of {@link TcpListener.bind}. */
export interface BindOptions extends SignalOption, RuntimeOption {
  /** Listen backlog (default 1024). */
  backlog?: number;
  /** `SO_REUSEADDR` (always on for listeners on Unix, like Node). */
  reuseAddr?: boolean;
  /** `SO_REUSEPORT`. */
  reusePort?: boolean;
}

/** A listening TCP socket. Keeps the process alive until closed or `unref()`ed. */
export class TcpListener implements AsyncIterable<TcpStream> {
  /** @internal */ readonly _h: number;
  #queue: Array<[TcpStream, SocketAddress]> = [];
  #waiters: Array<[(v: [TcpStream, SocketAddress]) => void, (e: unknown) => void]> = [];
  #armed = false;

  /** @internal The stream object of an accepted connection and its peer address. */
  _adopt(h: number, b: number, off: number, len: number): [TcpStream, SocketAddress] {
    const port = b & 0xffff;
    const addr = len === 4 ? v4Address(rarena.readUInt32BE(off), port) : v6Address(off, port);
    return [new TcpStream(h, addr), addr];
  }
  #refd = true;
  #closed = false;
  #err: Error | undefined;

  /** @internal */
  constructor(h: number) {
    this._h = h;
    register(h, this);
    hold(1);
  }

  /**
   * Binds and listens on `addr` (port 0 picks a free port; see {@link TcpListener.localAddr}).
   */
  static async bind(addr: AddressLike, options?: BindOptions): Promise<TcpListener> {
    const opts = optionsBag<BindOptions>(options);
    checkSignal(opts.signal);
    const backlog = opts.backlog ?? 1024;
    if (!Number.isInteger(backlog) || backlog < 1) throw outOfRange('options.backlog', '>= 1', backlog);
    const { host, port } = await resolveAddr(addr);
    checkSignal(opts.signal);
    const flags = (opts.reuseAddr ? O_REUSE_ADDR : 0) | (opts.reusePort ? O_REUSE_PORT : 0);
    return TcpListener._listen(host, port, backlog, flags, 0, 0, opts.runtime);
  }

  /** @internal */
  static _listen(
    host: string,
    port: number,
    backlog: number,
    flags: number,
    snd: number,
    rcv: number,
    runtime?: Runtime,
  ): TcpListener {
    const [rt, nrt] = socketRuntime({ runtime });
    const h = native.netTcpListen(host, port, backlog, flags, snd, rcv, nrt);
    if (h < 0) throw systemError(-h, 'listen', host, port);
    const l = new TcpListener(h);
    pinRuntime(h, rt);
    return l;
  }

  /** @internal */
  onEvent(kind: number, a: number, b: number, off: number, len: number): void {
    if (kind === K_ACCEPT) {
      const [s, addr] = this._adopt(a, b, off, len);
      pinRuntime(a, runtimeOf(this._h));
      const w = this.#waiters.shift();
      if (w) {
        if (this.#waiters.length === 0) this.#arm(false);
        w[0]([s, addr]);
      } else {
        this.#queue.push([s, addr]);
        if (this.#queue.length >= 128) this.#arm(false);
      }
    } else if (kind === K_ERROR) {
      this.#err = systemError(a, 'accept');
      this.#armed = false;
      for (const [, rej] of this.#waiters.splice(0)) rej(this.#err);
    }
  }

  #arm(on: boolean): void {
    if (this.#armed === on || this.#closed) return;
    this.#armed = on;
    native.netArm(this._h, on);
  }

  /** Waits for a connection: `[stream, peerAddress]`. */
  accept(options?: SignalOption): Promise<[TcpStream, SocketAddress]> {
    const q = this.#queue.shift();
    if (q) {
      if (this.#queue.length < 64 && this.#waiters.length === 0) this.#arm(true);
      return Promise.resolve(q);
    }
    if (this.#closed) return Promise.reject(closedError());
    if (this.#err) {
      const e = this.#err;
      if (!isRuntimeShutdown(e)) this.#err = undefined; // a dead runtime fails every later call too
      return Promise.reject(e);
    }
    this.#arm(true);
    return withSignal(options?.signal, (resolve, reject) => {
      const w: [(v: [TcpStream, SocketAddress]) => void, (e: unknown) => void] = [resolve as (v: [TcpStream, SocketAddress]) => void, reject];
      this.#waiters.push(w);
      return () => {
        const i = this.#waiters.indexOf(w);
        if (i >= 0) this.#waiters.splice(i, 1);
      };
    });
  }

  /** The bound address. */
  localAddr(): SocketAddress {
    return parseNativeAddr(native.netAddr(this._h, false), 'getsockname');
  }

  /** Lets the process exit while this listener is open. */
  unref(): this {
    if (this.#refd && !this.#closed) {
      this.#refd = false;
      hold(-1);
    }
    return this;
  }

  /** Keeps the process alive while this listener is open (the default). */
  ref(): this {
    if (!this.#refd && !this.#closed) {
      this.#refd = true;
      hold(1);
    }
    return this;
  }

  /** Stops listening; pending `accept()`s reject with `ERR_SOCKET_CLOSED`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#refd) hold(-1);
    native.netClose(this._h);
    unregister(this._h);
    for (const [, rej] of this.#waiters.splice(0)) rej(closedError());
    for (const [s] of this.#queue.splice(0)) s.close();
  }

  /** Stops listening. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  /** Accepted connections, until the listener is closed. */
  async *[Symbol.asyncIterator](): AsyncIterator<TcpStream> {
    for (;;) {
      let s: TcpStream;
      try {
        [s] = await this.accept();
      } catch (e) {
        if (this.#closed) return;
        throw e;
      }
      yield s;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// TcpSocket

/** An unconnected TCP socket to set options on before `bind`+`listen` or `connect`. */
export class TcpSocket {
  #flags = 0;
  #snd = 0;
  #rcv = 0;
  #bind: { host: string; port: number } | undefined;
  #used = false;
  private constructor(private readonly _v6: boolean) {}
  /** A new IPv4 socket. */
  static v4(): TcpSocket {
    return new TcpSocket(false);
  }
  /** A new IPv6 socket. */
  static v6(): TcpSocket {
    return new TcpSocket(true);
  }
  /** `SO_REUSEADDR`. */
  setReuseAddr(on: boolean): void {
    this.#flags = on ? this.#flags | O_REUSE_ADDR : this.#flags & ~O_REUSE_ADDR;
  }
  /** `SO_REUSEPORT`. */
  setReusePort(on: boolean): void {
    this.#flags = on ? this.#flags | O_REUSE_PORT : this.#flags & ~O_REUSE_PORT;
  }
  /** `SO_SNDBUF`. */
  setSendBufferSize(n: number): void {
    if (!Number.isInteger(n) || n < 1) throw outOfRange('size', '>= 1', n);
    this.#snd = n;
  }
  /** `SO_RCVBUF`. */
  setRecvBufferSize(n: number): void {
    if (!Number.isInteger(n) || n < 1) throw outOfRange('size', '>= 1', n);
    this.#rcv = n;
  }
  /** Sets the local address (an IP literal and port). */
  bind(addr: AddressLike): void {
    const a = splitAddr(addr);
    if (!net.isIP(a.host)) throw invalidArgValue('addr', 'must be an IP address', a.host);
    if ((net.isIP(a.host) === 6) !== this._v6) throw invalidArgValue('addr', `must be an IPv${this._v6 ? 6 : 4} address`, a.host);
    this.#bind = a;
  }
  #take(): void {
    if (this.#used) throw codedError('ERR_SOCKET_CLOSED', 'the socket was already used');
    this.#used = true;
  }
  /** Listens (after {@link TcpSocket.bind}). */
  listen(backlog = 1024): TcpListener {
    const b = this.#bind ?? { host: this._v6 ? '::' : '0.0.0.0', port: 0 };
    this.#take();
    return TcpListener._listen(b.host, b.port, backlog, this.#flags, this.#snd, this.#rcv);
  }
  /** Connects to `addr`. */
  async connect(addr: AddressLike, options?: SignalOption): Promise<TcpStream> {
    this.#take();
    const { host, port } = await resolveAddr(addr);
    return TcpStream._connect(
      host,
      port,
      this.#bind?.host ?? '',
      this.#bind?.port ?? 0,
      this.#flags,
      this.#snd,
      this.#rcv,
      options?.signal,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// UdpSocket

interface Datagram {
  data: Buffer;
  address: SocketAddress;
}

interface RecvWaiter {
  kind: 0 | 1 | 2 | 3; // recv, recvFrom, peekFrom, recvMany
  buf: Uint8Array | undefined;
  max: number;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** A UDP socket. Received datagrams are batched natively (`recvmmsg`); sends too (`sendmmsg`). */
export class UdpSocket {
  /** @internal */ readonly _h: number;
  #queue = new DatagramQueue<SocketAddress>();
  #waiters: RecvWaiter[] = [];
  /**
   * The array a `recvMany` was resolved with while its batch is still being delivered: later
   * datagrams of the same batch join it (its reader runs only after the batch call returns), so a
   * burst arrives as one array instead of its first datagram alone.
   */
  #filling: { out: Datagram[]; max: number; batch: number } | undefined;
  #reading = false;
  #closed = false;
  #err: Error | undefined;
  #drain: Array<() => void> = [];
  #connected = false;
  /** Pending connect, reads, drain waits (stream) or receives (UDP) holding the loop. */
  #holds = new LoopHolds();

  /** @internal */
  constructor(h: number) {
    this._h = h;
    register(h, this);
  }

  /** @internal Node-style ref/unref: whether a pending receive keeps the loop alive. */
  _setRef(on: boolean): void {
    this.#holds.setRef(on);
  }

  /** Binds to `addr` (port 0 picks a free port). */
  static async bind(
    addr: AddressLike,
    options?: RuntimeOption & { reuseAddr?: boolean; reusePort?: boolean },
  ): Promise<UdpSocket> {
    const opts = optionsBag<RuntimeOption & { reuseAddr?: boolean; reusePort?: boolean }>(options);
    socketRuntime(opts); // validates before the lookup
    const { host, port } = await resolveAddr(addr);
    const flags = (opts.reuseAddr ? O_REUSE_ADDR : 0) | (opts.reusePort ? O_REUSE_PORT : 0);
    const [rt, nrt] = socketRuntime(opts);
    const h = native.netUdpBind(host, port, flags, 0, 0, nrt);
    if (h < 0) throw systemError(-h, 'bind', host, port);
    const u = new UdpSocket(h);
    pinRuntime(h, rt);
    return u;
  }

  /** @internal */
  onEvent(kind: number, a: number, b: number, off: number, len: number): void {
    if (kind === K_DGRAM) {
      const port = b & 0xffff;
      const address = a !== -1 || (b >> 16 & 0xff) === 4 ? v4Address(a, port) : v6Address(off + len, port);
      const w = this.#waiters;
      if (w.length > 0 && this.#queue.length === 0 && w[0].kind !== 2 && w[0].kind !== 3) {
        const first = w.shift()!;
        if (w.length === 0) this.#holds.add(-1);
        const buf = first.buf!;
        const n = len < buf.length ? len : buf.length;
        copyFromArena(buf, off, n);
        first.resolve(first.kind === 0 ? n : { bytes: n, address });
        return;
      }
      const f = this.#filling;
      if (f !== undefined && f.batch === currentBatch() && f.out.length < f.max && this.#pending() === 0) {
        f.out.push({ data: Buffer.from(rarena.subarray(off, off + len)), address });
        return;
      }
      this.#filling = undefined;
      this.#queue.push(rarena, off, len, address);
      if (this.#queue.length > DGRAM_HWM && this.#reading) {
        this.#reading = false;
        native.netRead(this._h, false);
      }
      this.#service();
    } else if (kind === K_ERROR) {
      const err = systemError(a, SYSCALLS[b] ?? 'recv');
      if (isRuntimeShutdown(err)) {
        this.#err = err;
        rejectAll(this.#waiters, err, (d) => this.#holds.add(d));
        return;
      }
      const w = this.#waiters.shift();
      if (w) {
        if (this.#waiters.length === 0) this.#holds.add(-1);
        w.reject(err);
      } else {
        this.#err = err;
      }
    } else if (kind === K_DRAIN) {
      for (const r of this.#drain.splice(0)) r();
    }
  }

  #pending(): number {
    return this.#queue.length;
  }

  #shift(): void {
    this.#queue.shift();
    if (!this.#reading && !this.#closed && this.#pending() < DGRAM_HWM / 4) {
      this.#reading = true;
      native.netRead(this._h, true);
    }
  }

  #fulfil(w: RecvWaiter): void {
    const q = this.#queue;
    if (w.kind === 3) {
      const out: Datagram[] = [];
      while (out.length < w.max && q.length > 0) {
        out.push({ data: q.firstBuffer(), address: q.firstAddr() });
        this.#shift();
      }
      this.#filling = out.length < w.max ? { out, max: w.max, batch: currentBatch() } : undefined;
      w.resolve(out);
      return;
    }
    const n = q.copyFirst(w.buf!);
    const address = q.firstAddr();
    if (w.kind !== 2) this.#shift();
    w.resolve(w.kind === 0 ? n : { bytes: n, address });
  }

  #service(): void {
    while (this.#waiters.length > 0 && this.#pending() > 0) {
      const w = this.#waiters.shift()!;
      if (this.#waiters.length === 0) this.#holds.add(-1);
      this.#fulfil(w);
    }
  }

  #recv<T>(kind: 0 | 1 | 2 | 3, buf: Uint8Array | undefined, max: number, signal?: AbortSignal): Promise<T> {
    if (kind !== 3 && !(buf instanceof Uint8Array)) return Promise.reject(invalidArgType('buf', 'an instance of Uint8Array', buf));
    if (this.#closed) return Promise.reject(closedError());
    if (this.#err) {
      const e = this.#err;
      if (!isRuntimeShutdown(e)) this.#err = undefined; // a dead runtime fails every later call too
      return Promise.reject(e);
    }
    if (!this.#reading) {
      this.#reading = true;
      native.netRead(this._h, true);
    }
    if (signal === undefined) {
      const p = new Promise(capture) as Promise<T>;
      const w: RecvWaiter = { kind, buf, max, resolve: capturedResolve, reject: capturedReject };
      if (this.#waiters.length === 0 && this.#pending() === 0) this.#holds.add(1);
      if (this.#pending() > 0 && this.#waiters.length === 0) this.#fulfil(w);
      else this.#waiters.push(w);
      return p;
    }
    return withSignal<T>(signal, (resolve, reject) => {
      const w: RecvWaiter = { kind, buf, max, resolve: resolve as (v: unknown) => void, reject };
      if (this.#waiters.length === 0 && this.#pending() === 0) this.#holds.add(1);
      if (this.#pending() > 0 && this.#waiters.length === 0) this.#fulfil(w);
      else this.#waiters.push(w);
      return () => {
        const i = this.#waiters.indexOf(w);
        if (i >= 0) {
          this.#waiters.splice(i, 1);
          if (this.#waiters.length === 0) this.#holds.add(-1);
        }
      };
    });
  }

  /** Receives one datagram into `buf` (excess bytes are discarded); resolves with its length. */
  recv(buf: Uint8Array, options?: SignalOption): Promise<number> {
    return this.#recv(0, buf, 0, options?.signal);
  }

  /** Receives one datagram: `{ bytes, address }`. */
  recvFrom(buf: Uint8Array, options?: SignalOption): Promise<{ bytes: number; address: SocketAddress }> {
    return this.#recv(1, buf, 0, options?.signal);
  }

  /** Like {@link UdpSocket.recvFrom} but leaves the datagram queued. */
  peekFrom(buf: Uint8Array, options?: SignalOption): Promise<{ bytes: number; address: SocketAddress }> {
    return this.#recv(2, buf, 0, options?.signal);
  }

  /**
   * Receives up to `max` datagrams at once: those already queued, or, when none is, waits for at
   * least one and resolves with the whole burst it arrived in (every datagram of that native
   * batch, up to `max`), in order.
   */
  recvMany(max = 64, options?: SignalOption): Promise<Datagram[]> {
    if (!Number.isInteger(max) || max < 1) return Promise.reject(outOfRange('max', '>= 1', max));
    return this.#recv(3, undefined, max, options?.signal);
  }

  #destination(addr: AddressLike): { host: string; port: number } {
    const a = splitAddr(addr);
    if (!net.isIP(a.host)) {
      if (a.host === 'localhost') return { host: '127.0.0.1', port: a.port };
      throw invalidArgValue('addr', 'must be an IP address for UDP sends (resolve names first)', a.host);
    }
    return a;
  }

  #send(bytes: Uint8Array, host: string, port: number): Promise<number> {
    if (this.#closed) return Promise.reject(closedError());
    const ip = host === '' ? 0 : ipv4ToInt(host);
    if (ip !== -1 && (host !== '' || this.#connected) && !isBlocked(this._h)) {
      if (queueWrite(this._h, bytes, ip, host === '' ? 0 : port | (4 << 16))) return Promise.resolve(bytes.length);
    }
    const r = native.netUdpSend(this._h, bytes, host, port);
    if (r < 0) return Promise.reject(systemError(-r, 'send', host || undefined, host ? port : undefined));
    if (r === 1) return new Promise((res) => this.#drain.push(() => res(bytes.length)));
    return Promise.resolve(bytes.length);
  }

  /** Sends to the connected peer. */
  send(data: Uint8Array | string): Promise<number> {
    if (!this.#connected) return Promise.reject(codedError('ERR_SOCKET_DGRAM_NOT_CONNECTED', 'Not connected'));
    return this.#send(toBytes(data), '', 0);
  }

  /** Sends one datagram to `addr` (an IP literal). */
  sendTo(data: Uint8Array | string, addr: AddressLike): Promise<number> {
    if (addr !== undefined && this.#queueFast(data, addr)) return Promise.resolve((data as Uint8Array).length);
    let bytes: Uint8Array;
    let a: { host: string; port: number };
    try {
      bytes = toBytes(data);
      a = this.#destination(addr);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#send(bytes, a.host, a.port);
  }

  /**
   * Fast path of a send: bytes to the connected peer (`addr` undefined) or to an address object
   * received from this module (e.g. `recvFrom`'s) go straight into the write table. False when the
   * send needs the general path (another address form, a string, a blocked or closed socket).
   */
  #queueFast(data: unknown, addr: unknown): boolean {
    if (!(data instanceof Uint8Array) || this.#closed || isBlocked(this._h)) return false;
    if (addr === undefined) return this.#connected && queueWrite(this._h, data, 0, 0);
    const enc = typeof addr === 'object' && addr !== null ? encodedV4(addr) : undefined;
    return enc !== undefined && queueWrite(this._h, data, enc[0], enc[1]);
  }

  /**
   * Sends several datagrams (one `sendmmsg` per run); resolves with how many were queued. Those
   * that take the fast path (see `sendTo`) are queued synchronously, so a batch costs no promise
   * per datagram.
   */
  sendMany(msgs: Array<{ data: Uint8Array | string; address?: AddressLike }>): Promise<number> {
    if (!Array.isArray(msgs)) return Promise.reject(invalidArgType('msgs', 'an array', msgs));
    let i = 0;
    for (; i < msgs.length; i++) {
      const m: unknown = msgs[i];
      if (typeof m !== 'object' || m === null) break;
      const { data, address } = m as { data?: unknown; address?: unknown };
      if (!this.#queueFast(data, address)) break;
    }
    return i === msgs.length ? Promise.resolve(i) : this.#sendRest(msgs, i);
  }

  async #sendRest(msgs: Array<{ data: Uint8Array | string; address?: AddressLike }>, i: number): Promise<number> {
    for (; i < msgs.length; i++) {
      const m = msgs[i];
      if (m.address === undefined) await this.send(m.data);
      else await this.sendTo(m.data, m.address);
    }
    return msgs.length;
  }

  /** Connects: `send` goes to `addr`, and only its datagrams are received. */
  async connect(addr: AddressLike): Promise<void> {
    const { host, port } = await resolveAddr(addr);
    const r = native.netUdpConnect(this._h, host, port);
    if (r < 0) throw systemError(-r, 'connect', host, port);
    this.#connected = true;
  }

  /**
   * Undoes {@link UdpSocket.connect}: datagrams from any sender are received again, and `send`
   * needs an address (`sendTo`). Throws `ERR_SOCKET_DGRAM_NOT_CONNECTED` when not connected.
   */
  disconnect(): void {
    if (!this.#connected) throw codedError('ERR_SOCKET_DGRAM_NOT_CONNECTED', 'Not connected');
    const r = native.netUdpDisconnect(this._h);
    if (r < 0) throw systemError(-r, 'connect');
    this.#connected = false;
  }

  #opt(opt: number, a: number): void {
    const r = native.netSetOpt(this._h, opt, a, 0);
    if (r < 0) throw systemError(-r, 'setsockopt');
  }

  /** `SO_BROADCAST`. */
  setBroadcast(on: boolean): void {
    this.#opt(5, on ? 1 : 0);
  }
  /** IP TTL. */
  setTtl(ttl: number): void {
    validateInteger(ttl, 'ttl', 1, 255);
    this.#opt(4, ttl);
  }
  /** `IP_MULTICAST_LOOP`. */
  setMulticastLoopV4(on: boolean): void {
    this.#opt(6, on ? 1 : 0);
  }
  /** `IP_MULTICAST_TTL`. */
  setMulticastTtlV4(ttl: number): void {
    validateInteger(ttl, 'ttl', 0, 255);
    this.#opt(7, ttl);
  }
  /** Joins an IPv4 multicast group on interface `iface` (an IPv4 address; default any). */
  joinMulticastV4(group: string, iface = '0.0.0.0'): void {
    const r = native.netMulticast(this._h, true, group, iface);
    if (r < 0) throw systemError(-r, 'addMembership');
  }
  /** Leaves an IPv4 multicast group. */
  leaveMulticastV4(group: string, iface = '0.0.0.0'): void {
    const r = native.netMulticast(this._h, false, group, iface);
    if (r < 0) throw systemError(-r, 'dropMembership');
  }
  /** The bound address. */
  localAddr(): SocketAddress {
    return parseNativeAddr(native.netAddr(this._h, false), 'getsockname');
  }
  /** Closes the socket; pending receives reject with `ERR_SOCKET_CLOSED`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    native.netClose(this._h);
    unregister(this._h);
    if (this.#waiters.length > 0) this.#holds.add(-1);
    for (const w of this.#waiters.splice(0)) w.reject(closedError());
  }
  /** Closes the socket. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Unix domain sockets

/** The address of a Unix domain socket (`path` is `''` for an unnamed socket). */
export interface UnixSocketAddress {
  /** The socket's path. */
  path: string;
}

function unixAddr(s: string, syscall: string): UnixSocketAddress {
  if (s.startsWith('!')) throw systemError(Number(s.slice(1)), syscall);
  return { path: s.split('|')[1] ?? '' };
}

function validatePath(path: unknown): asserts path is string {
  if (typeof path !== 'string') throw invalidArgType('path', 'of type string', path);
  if (path === '') throw invalidArgValue('path', 'must not be empty', path);
}

/** Whether this platform has Unix domain sockets (the native functions exist everywhere). */
const UNIX_SOCKETS = process.platform !== 'win32';

function unixOnly(): never {
  throw codedError('ERR_FEATURE_UNAVAILABLE_ON_PLATFORM', 'Unix domain sockets are not available on this platform');
}

/** The credentials of a Unix socket's peer. */
export interface UCred {
  /** Process id (undefined when the platform does not say). */
  pid: number | undefined;
  /** User id. */
  uid: number;
  /** Group id. */
  gid: number;
}

/** A connected Unix domain stream socket: the methods of {@link TcpStream}, plus {@link UnixStream.peerCred}. */
export class UnixStream extends TcpStream {
  /** Connects to the socket at `path`. */
  static override async connect(path: AddressLike | string, options?: SignalOption & RuntimeOption): Promise<UnixStream> {
    validatePath(path);
    const opts = optionsBag<SignalOption & RuntimeOption>(options);
    checkSignal(opts.signal);
    if (!UNIX_SOCKETS) unixOnly();
    const [rt, nrt] = socketRuntime(opts);
    const h = native.netUnixConnect(path, nrt);
    if (h < 0) throw systemError(-h, 'connect', path);
    const s = new UnixStream(h);
    pinRuntime(h, rt);
    return TcpStream._waitConnected(s, path, -1, opts.signal);
  }

  /** A connected pair of Unix streams (like `socketpair(2)`). */
  static pair(options?: RuntimeOption): [UnixStream, UnixStream] {
    if (!UNIX_SOCKETS) unixOnly();
    const [rt, nrt] = socketRuntime(optionsBag<RuntimeOption>(options));
    const r = native.netUnixPair(nrt);
    if (r.length === 1) throw systemError(-r[0], 'socketpair');
    pinRuntime(r[0], rt);
    pinRuntime(r[1], rt);
    return [new UnixStream(r[0]), new UnixStream(r[1])];
  }

  /** The local address. */
  override localAddr(): SocketAddress & UnixSocketAddress {
    return unixAddr(native.netAddr(this._h, false), 'getsockname') as SocketAddress & UnixSocketAddress;
  }

  /** The peer's address. */
  override peerAddr(): SocketAddress & UnixSocketAddress {
    return unixAddr(native.netAddr(this._h, true), 'getpeername') as SocketAddress & UnixSocketAddress;
  }

  /** The peer process's credentials (`SO_PEERCRED`). */
  peerCred(): UCred {
    const s = native.netPeerCred(this._h);
    if (s.startsWith('!')) throw systemError(Number(s.slice(1)), 'getsockopt');
    const [pid, uid, gid] = s.split('|').map(Number);
    return { pid: pid < 0 ? undefined : pid, uid, gid };
  }
}

/** A listening Unix domain socket. Keeps the process alive until closed or `unref()`ed. */
export class UnixListener extends TcpListener {
  /** Binds and listens on `path` (which must not exist). */
  static override async bind(path: AddressLike | string, options?: RuntimeOption & { backlog?: number }): Promise<UnixListener> {
    validatePath(path);
    if (!UNIX_SOCKETS) unixOnly();
    const opts = optionsBag<RuntimeOption & { backlog?: number }>(options);
    const backlog = opts.backlog ?? 1024;
    const [rt, nrt] = socketRuntime(opts);
    const h = native.netUnixListen(path, backlog, nrt);
    if (h < 0) throw systemError(-h, 'listen', path);
    const l = new UnixListener(h);
    pinRuntime(h, rt);
    return l;
  }

  /** @internal */
  override _adopt(h: number, _b: number, off: number, len: number): [TcpStream, SocketAddress] {
    const addr = { path: rarena.toString('utf8', off, off + len) };
    return [new UnixStream(h), addr as unknown as SocketAddress];
  }

  /** Waits for a connection: `[stream, peerAddress]`. */
  override accept(options?: SignalOption): Promise<[UnixStream, SocketAddress & UnixSocketAddress]> {
    return super.accept(options) as Promise<[UnixStream, SocketAddress & UnixSocketAddress]>;
  }

  /** The bound path. */
  override localAddr(): SocketAddress & UnixSocketAddress {
    return unixAddr(native.netAddr(this._h, false), 'getsockname') as SocketAddress & UnixSocketAddress;
  }
}

/** A Unix domain datagram socket. */
export class UnixDatagram {
  /** @internal */ readonly _h: number;
  #queue = new DatagramQueue<string>();
  #waiters: Array<{ buf: Uint8Array; from: boolean; resolve: (v: unknown) => void; reject: (e: unknown) => void }> = [];
  #reading = false;
  #closed = false;
  #err: Error | undefined;
  #drain: Array<() => void> = [];

  private constructor(h: number) {
    this._h = h;
    register(h, this);
  }

  /** Binds to `path`. */
  static bind(path: string, options?: RuntimeOption): UnixDatagram {
    validatePath(path);
    if (!UNIX_SOCKETS) unixOnly();
    const [rt, nrt] = socketRuntime(optionsBag<RuntimeOption>(options));
    const h = native.netUnixDgram(path, nrt);
    if (h < 0) throw systemError(-h, 'bind', path);
    pinRuntime(h, rt);
    return new UnixDatagram(h);
  }

  /** An unbound socket (it can send, and receive once connected or on a pair). */
  static unbound(options?: RuntimeOption): UnixDatagram {
    if (!UNIX_SOCKETS) unixOnly();
    const [rt, nrt] = socketRuntime(optionsBag<RuntimeOption>(options));
    const h = native.netUnixDgram('', nrt);
    if (h < 0) throw systemError(-h, 'socket');
    pinRuntime(h, rt);
    return new UnixDatagram(h);
  }

  /** A connected pair. */
  static pair(options?: RuntimeOption): [UnixDatagram, UnixDatagram] {
    if (!UNIX_SOCKETS) unixOnly();
    const [rt, nrt] = socketRuntime(optionsBag<RuntimeOption>(options));
    const r = native.netUnixDgramPair(nrt);
    if (r.length === 1) throw systemError(-r[0], 'socketpair');
    pinRuntime(r[0], rt);
    pinRuntime(r[1], rt);
    return [new UnixDatagram(r[0]), new UnixDatagram(r[1])];
  }

  /** @internal */
  onEvent(kind: number, a: number, b: number, off: number, len: number): void {
    if (kind === K_DGRAM) {
      const path = b > 0 ? rarena.toString('utf8', off + len, off + len + b) : '';
      const w = this.#waiters.shift();
      if (w) {
        if (this.#waiters.length === 0) hold(-1);
        const n = Math.min(len, w.buf.length);
        copyFromArena(w.buf, off, n);
        w.resolve(w.from ? { bytes: n, address: { path } } : n);
        return;
      }
      this.#queue.push(rarena, off, len, path);
      if (this.#queue.length > DGRAM_HWM && this.#reading) {
        this.#reading = false;
        native.netRead(this._h, false);
      }
    } else if (kind === K_ERROR) {
      const err = systemError(a, SYSCALLS[b] ?? 'recv');
      if (isRuntimeShutdown(err)) {
        this.#err = err;
        rejectAll(this.#waiters, err);
        return;
      }
      const w = this.#waiters.shift();
      if (w) {
        if (this.#waiters.length === 0) hold(-1);
        w.reject(err);
      } else this.#err = err;
    } else if (kind === K_DRAIN) {
      for (const r of this.#drain.splice(0)) r();
    }
  }

  #recv<T>(buf: Uint8Array, from: boolean, signal?: AbortSignal): Promise<T> {
    if (!(buf instanceof Uint8Array)) return Promise.reject(invalidArgType('buf', 'an instance of Uint8Array', buf));
    if (this.#closed) return Promise.reject(closedError());
    if (this.#err) {
      const e = this.#err;
      if (!isRuntimeShutdown(e)) this.#err = undefined; // a dead runtime fails every later call too
      return Promise.reject(e);
    }
    const q = this.#queue;
    if (q.length > 0) {
      const n = q.copyFirst(buf);
      const path = q.firstAddr();
      q.shift();
      if (!this.#reading && this.#queue.length < DGRAM_HWM / 4) {
        this.#reading = true;
        native.netRead(this._h, true);
      }
      return Promise.resolve((from ? { bytes: n, address: { path } } : n) as T);
    }
    if (!this.#reading) {
      this.#reading = true;
      native.netRead(this._h, true);
    }
    return withSignal<T>(signal, (resolve, reject) => {
      const w = { buf, from, resolve: resolve as (v: unknown) => void, reject };
      if (this.#waiters.length === 0) hold(1);
      this.#waiters.push(w);
      return () => {
        const i = this.#waiters.indexOf(w);
        if (i >= 0) {
          this.#waiters.splice(i, 1);
          if (this.#waiters.length === 0) hold(-1);
        }
      };
    });
  }

  /** Receives one datagram into `buf` (excess bytes are discarded). */
  recv(buf: Uint8Array, options?: SignalOption): Promise<number> {
    return this.#recv(buf, false, options?.signal);
  }

  /** Receives one datagram: `{ bytes, address: { path } }`. */
  recvFrom(buf: Uint8Array, options?: SignalOption): Promise<{ bytes: number; address: UnixSocketAddress }> {
    return this.#recv(buf, true, options?.signal);
  }

  #send(data: Uint8Array | string, path: string): Promise<number> {
    if (this.#closed) return Promise.reject(closedError());
    const bytes = toBytes(data);
    const r = native.netUnixDgramSend(this._h, bytes, path);
    if (r < 0) return Promise.reject(systemError(-r, 'send', path || undefined));
    if (r === 1) return new Promise((res) => this.#drain.push(() => res(bytes.length)));
    return Promise.resolve(bytes.length);
  }

  /** Sends to the connected peer. */
  send(data: Uint8Array | string): Promise<number> {
    return this.#send(data, '');
  }

  /** Sends to the socket at `path`. */
  sendTo(data: Uint8Array | string, path: string): Promise<number> {
    try {
      validatePath(path);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#send(data, path);
  }

  /** Connects to `path`: `send` goes there and only its datagrams are received. */
  connect(path: string): void {
    validatePath(path);
    const r = native.netUnixDgramConnect(this._h, path);
    if (r < 0) throw systemError(-r, 'connect', path);
  }

  /** The bound address. */
  localAddr(): UnixSocketAddress {
    return unixAddr(native.netAddr(this._h, false), 'getsockname');
  }

  /** The connected peer's address. */
  peerAddr(): UnixSocketAddress {
    return unixAddr(native.netAddr(this._h, true), 'getpeername');
  }

  /** Closes the socket. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    native.netClose(this._h);
    unregister(this._h);
    if (this.#waiters.length > 0) hold(-1);
    for (const w of this.#waiters.splice(0)) w.reject(closedError());
  }

  /** Closes the socket. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Windows named pipes

function windowsOnly(): never {
  throw codedError('ERR_FEATURE_UNAVAILABLE_ON_PLATFORM', 'Windows named pipes are not available on this platform');
}

function validatePipePath(path: unknown): asserts path is string {
  if (typeof path !== 'string') throw invalidArgType('path', 'of type string', path);
  if (path.length === 0 || path.includes('\0')) throw invalidArgValue('path', path, 'must be a non-empty string without NUL');
}

function optBool(v: unknown, name: string, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw invalidArgType(name, 'of type boolean', v);
  return v;
}

/**
 * What both ends of a Windows named pipe share: a byte stream with the methods of
 * {@link TcpStream}, named by its pipe's path. See {@link NamedPipeServer} and
 * {@link NamedPipeClient}.
 */
export class NamedPipe extends TcpStream {
  readonly #path: string;

  /** @internal */
  constructor(h: number, path: string) {
    super(h);
    this.#path = path;
  }

  /** The pipe's name. */
  get path(): string {
    return this.#path;
  }

  /** `{ path }`: the pipe's name (pipes have no socket addresses). */
  override localAddr(): SocketAddress & UnixSocketAddress {
    return { path: this.#path } as SocketAddress & UnixSocketAddress;
  }

  /** `{ path }`: the pipe's name. */
  override peerAddr(): SocketAddress & UnixSocketAddress {
    return this.localAddr();
  }
}

/** Options of {@link NamedPipeServer.create}. */
export interface NamedPipeServerOptions extends RuntimeOption {
  /** Fail with `EACCES` unless this is the first instance of the name (default `false`). */
  firstPipeInstance?: boolean;
  /** The most instances of the name at once: 1–254, or 255 (the default) for unlimited. */
  maxInstances?: number;
  /** Bytes the system reserves for the input buffer (advisory; default 65 536). */
  inBufferSize?: number;
  /** Bytes the system reserves for the output buffer (advisory; default 65 536). */
  outBufferSize?: number;
  /** Refuse clients on other machines (default `true`). */
  rejectRemoteClients?: boolean;
}

/**
 * The server end of one instance of a Windows named pipe (`\\.\pipe\<name>`), on Tokio's model:
 * an instance serves one client. {@link NamedPipeServer.create} makes an instance that accepts a
 * client from then on, {@link NamedPipeServer.connect} waits until one has opened it, and the
 * instance is then a byte stream with the methods of {@link TcpStream} (`read`, `write`,
 * `readChunk`, iteration, `copy`, `framed`, `toNodeStream`, …). Create the next instance before
 * serving the connected one, so a client never finds none (`ENOENT`). Socket options throw
 * (`ENOTSOCK`); pipes have no half-close, so `shutdown()` succeeds without the peer seeing end of
 * stream, which it sees when this end closes. An instance waiting for its client keeps the process
 * alive until it connects or is closed. Windows only: elsewhere `create` throws
 * `ERR_FEATURE_UNAVAILABLE_ON_PLATFORM`.
 */
export class NamedPipeServer extends NamedPipe {
  #connected: Promise<void> = Promise.resolve();


  /** Creates an instance of the pipe `path`; it accepts a client from now on. */
  static create(path: string, options?: NamedPipeServerOptions): NamedPipeServer {
    validatePipePath(path);
    const opts = optionsBag<NamedPipeServerOptions>(options);
    const first = optBool(opts.firstPipeInstance, 'options.firstPipeInstance', false);
    const reject = optBool(opts.rejectRemoteClients, 'options.rejectRemoteClients', true);
    const max = opts.maxInstances ?? 255;
    validateInteger(max, 'options.maxInstances', 1, 255);
    const inSize = opts.inBufferSize ?? 65536;
    validateInteger(inSize, 'options.inBufferSize', 0, 0xffffffff);
    const outSize = opts.outBufferSize ?? 65536;
    validateInteger(outSize, 'options.outBufferSize', 0, 0xffffffff);
    const [rt, nrt] = socketRuntime(opts);
    if (process.platform !== 'win32') windowsOnly();
    const h = native.netPipeCreate(path, first, max, inSize, outSize, reject, nrt);
    if (h < 0) throw systemError(-h, 'listen', path);
    const s = new NamedPipeServer(h, path);
    pinRuntime(h, rt);
    s.#connected = TcpStream._waitConnected(s, path, -1, undefined).then(() => undefined);
    // Observed by connect(); a server closed before any connect() call must not be an unhandled
    // rejection.
    s.#connected.catch(() => {});
    return s;
  }

  /**
   * Waits until a client has opened this instance (at once if one already has). Rejects with the
   * connection's error, or `ERR_SOCKET_CLOSED` if the instance is closed first. Aborting the wait
   * leaves the instance waiting for its client.
   */
  connect(options?: SignalOption): Promise<void> {
    const { signal } = optionsBag<SignalOption>(options);
    validateSignal(signal);
    if (signal === undefined) return this.#connected;
    return withSignal<void>(signal, (resolve, reject) => {
      this.#connected.then(resolve, reject);
      return () => {};
    });
  }
}

/**
 * The client end of a Windows named pipe: a byte stream with the methods of {@link TcpStream} (see
 * {@link NamedPipeServer} for what differs from a socket). Windows only.
 */
export class NamedPipeClient extends NamedPipe {
  /**
   * Opens the pipe `path`. Rejects at once with `EBUSY` when every instance is serving a client
   * (retry after a short sleep) and `ENOENT` when the name has no instance; it never waits for an
   * instance to free up.
   */
  static async open(path: string, options?: RuntimeOption): Promise<NamedPipeClient> {
    validatePipePath(path);
    const [rt, nrt] = socketRuntime(optionsBag<RuntimeOption>(options));
    if (process.platform !== 'win32') windowsOnly();
    const h = native.netPipeOpen(path, nrt);
    if (h < 0) throw systemError(-h, 'open', path);
    pinRuntime(h, rt);
    return TcpStream._waitConnected(new NamedPipeClient(h, path), path, -1, undefined);
  }
}
