/**
 * `TcpStream` and its halves (`ReadHalf`, `WriteHalf`): a connected byte stream, also the base of
 * `UnixStream` and `NamedPipe`. Reads land in the caller's buffer (or a chunk of their own) straight
 * from the batch the native side delivered; writes are queued in the shared write arena and sent by
 * one native pass per turn, or written directly when large.
 * @module
 */
import { Duplex } from 'node:stream';
import { native, type NativeRuntime } from '../native';
import { settleNow } from '../runtime/coop';
import { Runtime, type RuntimeOption } from '../runtime';
import { codedError, invalidArgType, optionsBag, validateInteger, validateNumber } from '../errors';
import {
  DIRECT_WRITE_MAX,
  WRITE_FAILED,
  LoopHolds,
  encodeFrame,
  K_CONNECTED,
  K_DATA,
  K_DRAIN,
  K_EOF,
  K_ERROR,
  K_FRAME_ERR,
  K_FRAME_SYNC,
  K_FRAMES,
  SYSCALLS,
  isBlocked,
  parseNativeAddr,
  queueFrame,
  queueWrite,
  writeTableUsed,
  flushWrites,
  BACKLOG_HWM,
  copyFromArena,
  arenaChunk,
  connectError,
  E_RUNTIME_SHUTDOWN,
  register,
  systemError,
  unregister,
  type SocketAddress,
} from './core';
import { kStream } from './stream-of';
import { Turns } from '../io/turns';
import { freshResource } from '../runtime/unclaimed';
import { kReadOwner, readExactFrom, readToEndFrom, StreamReadHalf, StreamWriteHalf, type OwnedReadOptions, type ReadOwner } from './halves';
import {
  socketRuntime,
  openSocket,
  READ_HWM,
  READ_LWM,
  resolveHostAll,
  splitAddr,
  checkSignal,
  capturedResolve,
  capturedReject,
  capture,
  withSignal,
  untilAborted,
  signalRejection,
  rejectAll,
  removeWaiter,
  toBytes,
  closedError,
  framedError,
  type FrameSink,
  O_NODELAY,
  O_KEEPALIVE,
  callReporting,
  errorToReport,
  pushReporting,
} from './common';
import type { AddressLike, SignalOption } from './types';

interface ReadWaiter {
  buf: Uint8Array | undefined; // undefined: take a whole chunk
  peek: boolean;
  /**
   * The async iterator this read is a `next()` of (resolve with an `IteratorResult` rather than
   * the chunk itself), or false.
   */
  iter: object | false;
  /** The read half that made this read (see `kReadOwner`), or undefined. */
  owner: ReadOwner | undefined;
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


/**
 * @internal Resolves with `s` once its connect finished (`port` -1: a Unix path); aborting closes
 * it. Set by TcpStream's static block (it reaches the stream's private state); shared with the
 * Unix, pipe and compat modules, so it is not a static anyone could call.
 */
export let waitConnected: <T extends TcpStream>(s: T, host: string, port: number, signal: AbortSignal | undefined) => Promise<T>;

/** @internal Opens a TCP connection (flags `O_*`, buffer sizes 0 = the system's). */
export function connectTcp(
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
  let h: number;
  try {
    const open = (nrt: NativeRuntime | undefined): number =>
      native.netTcpConnect(host, port, localIp, localPort, flags, sndbuf, rcvbuf, nrt);
    h = openSocket({ runtime }, open, 'connect', host, port, (r) => connectError(r, host, port, localIp, localPort));
  } catch (e) {
    return Promise.reject(e);
  }
  return waitConnected(new TcpStream(h), host, port, signal);
}

/** The options of {@link TcpStream.connect}. */
type ConnectOpts = SignalOption & RuntimeOption & { noDelay?: boolean; keepAlive?: boolean };

/** {@link TcpStream.connect}'s work. */
async function connectTo(addr: AddressLike, options: ConnectOpts | undefined): Promise<TcpStream> {
  const opts = optionsBag<ConnectOpts>(options);
  for (const k of ['noDelay', 'keepAlive'] as const) {
    if (opts[k] !== undefined && typeof opts[k] !== 'boolean') throw invalidArgType(`options.${k}`, 'of type boolean', opts[k]);
  }
  checkSignal(opts.signal);
  socketRuntime(opts); // validates before the lookup
  const { host, port } = splitAddr(addr);
  const ips = await untilAborted(resolveHostAll(host), opts.signal);
  const flags = (opts.noDelay ? O_NODELAY : 0) | (opts.keepAlive ? O_KEEPALIVE : 0);
  // Each address in turn until one accepts; none: the last one's error (Tokio's connect).
  let err: unknown;
  for (const ip of ips) {
    try {
      return await connectTcp(ip, port, '', 0, flags, 0, 0, opts.signal, opts.runtime);
    } catch (e) {
      if (opts.signal?.aborted) throw e;
      err = e;
    }
  }
  throw err;
}

/**
 * @internal A push consumer of a stream's read side (see `TcpStream._sink`): a chunk, or
 * `undefined` at end of stream (with `err` after a read error); `false` detaches it.
 */
export type ChunkSink = (chunk: Buffer | undefined, err?: Error) => boolean;

/**
 * A TCP connection. Reads land in the caller's buffer; `write` resolves once the kernel took the
 * bytes or a bounded per-socket buffer has room.
 */
export class TcpStream implements AsyncIterable<Buffer> {
  /** @internal */ readonly _h: number;
  #chunks: Buffer[] = [];
  #chunkOff = 0;
  #buffered = 0;
  /** Bytes this stream queued in the write table since it was last sent, and the table's use then. */
  #tableBytes = 0;
  #tableMark = 0;
  #eof = false;
  #readErr: Error | undefined;
  #writeErr: Error | undefined;
  #reading = false;
  #waiters: ReadWaiter[] = [];
  #sink: ChunkSink | undefined;
  #drainWaiters: Array<[() => void, (e: unknown) => void]> = [];
  #connect: [(s: TcpStream) => void, (e: unknown) => void, string, number] | undefined;
  #closed = false;
  #shutdown: Promise<void> | undefined;
  /** Aborted by the first `shutdown()`: a native copy writing into this stream stops. */
  #writeEnd: AbortController | undefined;
  /**
   * Writes and frames that could not be handed over at once (no room, or large): they go out one
   * after another, and later ones queue behind them rather than overtake them in the turn where
   * room comes back. A `shutdown()` waits for them.
   */
  readonly #writeTurns = new Turns();
  /** Writes and frames in `#writeTurns`, not settled yet (0: the fast path is open). */
  #waitingWrites = 0;
  #copying = false;
  /** What the large write in progress (`#writeDirect`) has not handed to native code yet. */
  #directLeft = 0;
  /** The unsent byte count `_writeMoved` last saw move. */
  #lastUnsent = 0;
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
   * Connects to `addr`. A host name's addresses are tried in turn until one accepts; when none
   * does, the last one's error rejects. The stream is the caller's alone: a losing `select()`
   * branch's (or a `timeout()`'s that elapsed) is closed.
   * @param addr - `"host:port"`, `{ host, port }` or `{ address, port }`.
   * @param options - `signal`, `noDelay`, `keepAlive`.
   */
  static connect(
    addr: AddressLike,
    options?: SignalOption & RuntimeOption & { noDelay?: boolean; keepAlive?: boolean },
  ): Promise<TcpStream> {
    return freshResource(connectTo(addr, options), (s) => s.close());
  }

  static {
    waitConnected = <T extends TcpStream>(s: T, host: string, port: number, signal: AbortSignal | undefined): Promise<T> => {
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
    };
  }

  /** @internal Node-style ref/unref: whether this stream's pending operations keep the loop alive. */
  _setRef(on: boolean): void {
    this.#holds.setRef(on);
  }

  /** Lets this stream's pending operations keep the process alive (the default). Returns `this`. */
  ref(): this {
    this.#holds.setRef(true);
    return this;
  }

  /**
   * Stops this stream's pending operations (reads, writes waiting for room, a connect) from
   * keeping the process alive, like Node's `socket.unref()`. Returns `this`.
   */
  unref(): this {
    this.#holds.setRef(false);
    return this;
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
          // A reset found by a write is the connection's: the kernel reports it once, so the read
          // side would otherwise see a clean end of stream after it.
          if (err.code === 'ECONNRESET' && !this.#eof) {
            this.#readErrno = a;
            this.#readErr ??= systemError(a, 'read');
            this.#eof = true;
            this.#service();
          }
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
        this.#chunks.push(arenaChunk(off, len));
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
          // The socket's runtime shut down: its task is gone, and if it went before `framed()`
          // claimed the stream, no marker will ever come. Nothing more can be read either.
          if (a === E_RUNTIME_SHUTDOWN) this.#frameSync(f);
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
   * @internal Adds `d` to the loop holds of this stream (a framed stream's pending `next()`), so
   * they follow `ref()`/`unref()` like a pending read.
   */
  _hold(d: number): void {
    this.#holds.add(d);
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
      if (r === -E_RUNTIME_SHUTDOWN) {
        // Its runtime shut down and closed the stream (its error may still be on the way): the
        // framing ends with that error, as a read would.
        if (this.#readErr === undefined) this.#readErrno = E_RUNTIME_SHUTDOWN;
        this.#readErr ??= systemError(E_RUNTIME_SHUTDOWN, 'read');
        this.#eof = true;
      } else if (r < 0) throw systemError(-r, 'framed');
    }
    this.#framer = sink;
    if (this.#reading) {
      this.#reading = false;
      native.netRead(this._h, false);
    }
    rejectAll(this.#waiters, framedError(), (d) => this.#holds.add(d));
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
    signal?: AbortSignal,
  ): Promise<void> {
    const stop = signalRejection(signal);
    if (stop !== undefined) return stop;
    if (this.#closed) return Promise.reject(closedError());
    if (this.#writeErr) return Promise.reject(this.#writeErr);
    if (this.#shutdown) return Promise.reject(codedError('ERR_STREAM_WRITE_AFTER_END', 'write after end'));
    if (this.#waitingWrites === 0 && !isBlocked(this._h) && this.#queueFrameNow(body, hdr, nl, max) >= 0) return settleNow(undefined);
    return this.#inTurn(signal, () => this.#sendFrame(body, hdr, nl, max, tooBig, signal));
  }

  /** Queues a frame in the write table and counts its bytes; `queueFrame`'s result (< 0: not queued). */
  #queueFrameNow(body: Uint8Array | string, hdr: number, nl: boolean, max: number): number {
    const mark = writeTableUsed();
    const r = queueFrame(this._h, hdr, body, nl, max);
    if (r >= 0) this.#noteQueued(mark, hdr + r + (nl ? 1 : 0));
    return r;
  }

  /** `_sendFrame` past its checks of the stream's state (a retry made before a `shutdown()` goes on). */
  #sendFrame(
    body: Uint8Array | string,
    hdr: number,
    nl: boolean,
    max: number,
    tooBig: (len: number) => Error,
    signal?: AbortSignal,
  ): Promise<void> {
    if (this.#closed) return Promise.reject(closedError());
    if (this.#writeErr) return Promise.reject(this.#writeErr);
    if (isBlocked(this._h)) return this.#blockedWait(signal).then(() => this.#sendFrame(body, hdr, nl, max, tooBig, signal));
    const r = this.#queueFrameNow(body, hdr, nl, max);
    if (r >= 0) return settleNow(undefined);
    const bytes = typeof body === 'string' ? Buffer.from(body) : body;
    if (r === -2 || bytes.length > max) return Promise.reject(tooBig(bytes.length));
    // Without the signal: a frame that started going out must go out whole, or the peer's framing
    // would read the next frame's header as this one's payload.
    return this.#writeDirect(encodeFrame(bytes, hdr, nl)).then(() => undefined);
  }

  #onData(off: number, len: number): void {
    const sink = this.#sink;
    if (sink !== undefined && this.#buffered === 0) {
      // A push consumer (compat): no promise, no queue.
      if (!sink(arenaChunk(off, len)) && this.#sink === sink) this.#detachSink();
      return;
    }
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

  /**
   * @internal Puts `bytes` a read consumed back in front of what the stream holds, for the next
   * read (an aborted `readExact` or `readToEnd` gives back what it had read). Nothing once closed.
   */
  _unread(bytes: Buffer): void {
    if (this.#closed || bytes.length === 0) return;
    if (this.#chunkOff > 0) {
      this.#chunks[0] = this.#chunks[0].subarray(this.#chunkOff);
      this.#chunkOff = 0;
    }
    this.#chunks.unshift(bytes);
    this.#buffered += bytes.length;
    if (this.#buffered > this._readHwm && this.#reading) {
      this.#reading = false;
      native.netRead(this._h, false);
    }
    // Reads that came in while the aborted one held these bytes.
    this.#service();
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
        break;
      }
      if (w.length === 0) this.#holds.add(-1);
    }
    if (this.#sink !== undefined) this.#feedSink();
  }

  /**
   * @internal Hands the read side to `sink` (compat's `Socket`, `toNodeStream()`) instead of read
   * promises: every chunk as it arrives, then `sink(undefined)` at end of stream, or
   * `sink(undefined, err)` after a read error or once the stream is closed. When `sink` returns
   * false it is detached, and chunks wait here (bounded, as for reads) until `_sink` is called
   * again, which hands them over first. While attached it holds the loop as a pending read does;
   * `_sink(undefined)` detaches it. Not for use beside reads.
   */
  _sink(sink: ChunkSink | undefined): void {
    if (sink === undefined) {
      this.#detachSink();
      return;
    }
    if (this.#sink === undefined) this.#holds.add(1);
    this.#sink = sink;
    if (!this.#reading && !this.#eof && !this.#closed) this.#maybeResume();
    this.#feedSink();
  }

  #detachSink(): void {
    if (this.#sink === undefined) return;
    this.#sink = undefined;
    this.#holds.add(-1);
  }

  /** Gives the attached sink what waits here: chunks, then the end, or `ERR_SOCKET_CLOSED` once closed. */
  #feedSink(): void {
    for (let sink = this.#sink; sink !== undefined; sink = this.#sink) {
      if (this.#buffered > 0) {
        if (!sink(this.#takeChunk()) && this.#sink === sink) this.#detachSink();
      } else if (this.#closed) {
        this.#detachSink();
        sink(undefined, closedError());
      } else if (this.#eof) {
        this.#detachSink();
        sink(undefined, this.#readErr);
      } else {
        return;
      }
    }
  }

  #wait(
    buf: Uint8Array | undefined,
    peek: boolean,
    signal: AbortSignal | undefined,
    iter: object | false = false,
    owner: ReadOwner | undefined = undefined,
  ): Promise<number | Buffer | undefined | IteratorResult<Buffer, undefined>> {
    if (!this.#reading && !this.#eof && !this.#closed) this.#maybeResume();
    if (signal === undefined) {
      // The hot path: one promise and one waiter record per read.
      const p = new Promise(capture);
      if (this.#waiters.length === 0) this.#holds.add(1);
      this.#waiters.push({ buf, peek, iter, owner, resolve: capturedResolve, reject: capturedReject });
      return p as Promise<number | Buffer | undefined | IteratorResult<Buffer, undefined>>;
    }
    return withSignal(signal, (resolve, reject) => {
      const w: ReadWaiter = { buf, peek, iter, owner, resolve, reject };
      if (this.#waiters.length === 0) this.#holds.add(1);
      this.#waiters.push(w);
      return () => removeWaiter(this.#waiters, w, (d) => this.#holds.add(d));
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
    const stop = signalRejection(options?.signal);
    if (stop !== undefined) return stop;
    if (this.#framer !== undefined) return Promise.reject(framedError());
    const owner = (options as OwnedReadOptions | undefined)?.[kReadOwner];
    if (this.#closed || owner?._closed === true) return Promise.reject(closedError());
    if (this.#buffered > 0) return Promise.resolve(this.#take(buf, false));
    if (this.#eof) return this.#readErr ? Promise.reject(this.#readErr) : Promise.resolve(0);
    if (buf.length === 0) return Promise.resolve(0);
    return this.#wait(buf, false, options?.signal, false, owner) as Promise<number>;
  }

  /** Reads into `buf` without consuming the data. */
  peek(buf: Uint8Array, options?: SignalOption): Promise<number> {
    if (!(buf instanceof Uint8Array)) return Promise.reject(invalidArgType('buf', 'an instance of Uint8Array', buf));
    const stop = signalRejection(options?.signal);
    if (stop !== undefined) return stop;
    if (this.#framer !== undefined) return Promise.reject(framedError());
    const owner = (options as OwnedReadOptions | undefined)?.[kReadOwner];
    if (this.#closed || owner?._closed === true) return Promise.reject(closedError());
    if (this.#buffered > 0) return Promise.resolve(this.#take(buf, true));
    if (this.#eof) return this.#readErr ? Promise.reject(this.#readErr) : Promise.resolve(0);
    if (buf.length === 0) return Promise.resolve(0); // as read(): nothing to wait for
    return this.#wait(buf, true, options?.signal, false, owner) as Promise<number>;
  }

  /**
   * Fills `buf` completely; rejects with `ERR_UNEXPECTED_EOF` if the stream ends first. An abort
   * loses nothing: the bytes it had read go back to the stream for the next read.
   */
  readExact(buf: Uint8Array, options?: SignalOption): Promise<number> {
    return readExactFrom(this, buf, options);
  }

  /** The next chunk as it arrived, or `undefined` at end of stream. */
  readChunk(options?: SignalOption): Promise<Buffer | undefined> {
    const stop = signalRejection(options?.signal);
    if (stop !== undefined) return stop;
    if (this.#framer !== undefined) return Promise.reject(framedError());
    const owner = (options as OwnedReadOptions | undefined)?.[kReadOwner];
    if (this.#closed || owner?._closed === true) return Promise.reject(closedError());
    if (this.#buffered > 0) return Promise.resolve(this.#takeChunk());
    if (this.#eof) return this.#readErr ? Promise.reject(this.#readErr) : Promise.resolve(undefined);
    return this.#wait(undefined, false, options?.signal, false, owner) as Promise<Buffer | undefined>;
  }

  /**
   * Reads until end of stream. An abort loses nothing: the bytes it had read go back to the
   * stream for the next read.
   */
  readToEnd(options?: SignalOption): Promise<Buffer> {
    return readToEndFrom(this, options);
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
   * An abort while it waits for room rejects it; the part of a large `data` already queued by then
   * still goes out (as a cancelled Tokio `write_all` leaves what it wrote).
   * @param data - a string (UTF-8), Buffer, TypedArray or DataView.
   * @param options - `signal`.
   */
  write(data: Uint8Array | string, options?: SignalOption): Promise<number> {
    let bytes: Uint8Array;
    try {
      bytes = toBytes(data);
    } catch (e) {
      return Promise.reject(e);
    }
    const stop = signalRejection(options?.signal);
    if (stop !== undefined) return stop;
    if (this.#closed) return Promise.reject(closedError());
    if (this.#writeErr) return Promise.reject(this.#writeErr);
    if (this.#shutdown) return Promise.reject(codedError('ERR_STREAM_WRITE_AFTER_END', 'write after end'));
    if (this.#waitingWrites === 0 && !isBlocked(this._h) && this.#queueSmall(bytes)) return settleNow(bytes.length);
    return this.#inTurn(options?.signal, () => this.#write(bytes, options));
  }

  /** @internal The error of this stream's failed write, if one failed (`compat`'s 'error' prefers it). */
  _writeError(): Error | undefined {
    return this.#writeErr;
  }

  /** @internal Whether writes or frames wait for room (see `SplitStream._writesWaiting`). */
  _writesWaiting(): boolean {
    return this.#waitingWrites > 0;
  }

  /** Runs a write or frame that cannot be handed over at once in its turn (see `#writeTurns`). */
  #inTurn<T>(signal: AbortSignal | undefined, op: () => Promise<T>): Promise<T> {
    this.#waitingWrites++;
    const p = this.#writeTurns.run(signal, op);
    const done = (): void => {
      this.#waitingWrites--;
    };
    p.then(done, done);
    return p;
  }

  /** `write` past its checks of the arguments and of `shutdown()` (a retry made before it goes on). */
  #write(bytes: Uint8Array, options?: SignalOption): Promise<number> {
    if (this.#closed) return Promise.reject(closedError());
    if (this.#writeErr) return Promise.reject(this.#writeErr);
    if (isBlocked(this._h)) return this.#blockedWait(options?.signal).then(() => this.#write(bytes, options));
    if (this.#queueSmall(bytes)) return settleNow(bytes.length);
    return this.#writeDirect(bytes, options);
  }

  /** Queues `bytes` in the write table and counts them (see `#noteQueued`); false if too large. */
  #queueSmall(bytes: Uint8Array): boolean {
    const mark = writeTableUsed();
    if (!queueWrite(this._h, bytes)) return false;
    this.#noteQueued(mark, bytes.length);
    return true;
  }

  /**
   * @internal Queues `bytes` the way `write` does when it need not wait (open, not blocked, small
   * enough for the write table) and returns true; false without queueing anything otherwise (the
   * caller then uses `write`). What node:net's synchronous write callback needs (`compat`).
   */
  _writeNow(bytes: Uint8Array): boolean {
    if (this.#closed || this.#writeErr || this.#shutdown || this.#waitingWrites !== 0 || isBlocked(this._h)) return false;
    if (this.#queueSmall(bytes)) return true;
    if (bytes.length > DIRECT_WRITE_MAX) return false;
    // One native write: the kernel, or the bounded backlog behind it, takes all of it (a write
    // after it waits if that went over the high-water mark), as `write` would without waiting.
    const r = native.netWrite(this._h, bytes);
    if (r < 0) {
      this.#writeErr ??= systemError(-r, 'write');
      return false;
    }
    return true;
  }

  /**
   * @internal Whether bytes written and not yet taken by the kernel (the native backlog, and what a
   * large write still holds back) are there and changed since the last call that saw them move: a
   * write in progress. node:net's idle timeout asks the same of its `writeQueueSize`; compat's and
   * `toNodeStream()`'s ask this before firing.
   */
  _writeMoved(): boolean {
    const unsent = this.#closed ? 0 : native.netBacklog(this._h) + this.#directLeft;
    if (unsent === 0 || unsent === this.#lastUnsent) return false;
    this.#lastUnsent = unsent;
    return true;
  }

  /**
   * Counts the bytes this stream has in the write table (writes and frames). The table is sent at
   * the end of a turn, so writes made within one turn would all resolve before native code could
   * mark the stream blocked; past the backlog's high-water mark the table is sent at once, and the
   * next write sees the mark.
   */
  #noteQueued(mark: number, len: number): void {
    // The table was sent since this stream last queued (its use dropped below our last mark).
    if (mark < this.#tableMark) this.#tableBytes = 0;
    this.#tableBytes += len;
    this.#tableMark = writeTableUsed();
    if (this.#tableBytes > BACKLOG_HWM) {
      flushWrites();
      this.#tableBytes = 0;
      this.#tableMark = 0;
    }
  }

  async #writeDirect(bytes: Uint8Array, options?: SignalOption): Promise<number> {
    let waited = false;
    try {
      for (let off = 0; off < bytes.length; ) {
        const end = Math.min(bytes.length, off + DIRECT_WRITE_MAX);
        const r = native.netWrite(this._h, bytes.subarray(off, end));
        if (r < 0) throw (this.#writeErr ??= systemError(-r, 'write'));
        off = end;
        this.#directLeft = bytes.length - off;
        if (r === 1 || isBlocked(this._h)) {
          waited = true;
          await this.#blockedWait(options?.signal);
        }
        if (this.#writeErr) throw this.#writeErr;
      }
    } finally {
      this.#directLeft = 0;
    }
    return waited ? bytes.length : settleNow(bytes.length);
  }

  /** Writes all of `data` (same as {@link TcpStream.write}: it always takes everything). */
  async writeAll(data: Uint8Array | string, options?: SignalOption): Promise<void> {
    await this.write(data, options);
  }

  /** Resolves once everything written so far was handed to the kernel. */
  async flush(options?: SignalOption): Promise<void> {
    if (options?.signal !== undefined) checkSignal(options.signal);
    if (this.#closed) throw closedError();
    if (this.#writeErr) throw this.#writeErr;
    // Asked again after each drain notice: one answering an earlier request (a notice already on
    // its way) can come while this flush's bytes are still queued.
    for (let r = native.netDrain(this._h); r !== 0; r = native.netDrain(this._h)) {
      // A write failed (perhaps as the write table went out just now, its error event not yet here).
      if (r < 0) throw this.#failedWrite(r);
      await this.#blockedWait(options?.signal);
      if (this.#writeErr) throw this.#writeErr;
      if (this.#closed) throw closedError();
    }
    if (this.#writeErr) throw this.#writeErr;
  }

  /** The error of a failed write, from a native answer `r` < 0 (see `WRITE_FAILED`). */
  #failedWrite(r: number): Error {
    if (-r > WRITE_FAILED) return (this.#writeErr ??= systemError(-r - WRITE_FAILED, 'write'));
    return systemError(-r, 'write');
  }

  /**
   * Sends a FIN after the data written so far, including writes made before it that still wait
   * for room (they complete first; later writes reject); resolves once it went out. Idempotent: every call
   * returns the same outcome. An abort ends the caller's wait, not the shutdown (the FIN is already
   * queued behind the data).
   */
  shutdown(options?: SignalOption): Promise<void> {
    const stop = signalRejection(options?.signal);
    if (stop !== undefined) return stop;
    if (!this.#shutdown) {
      if (this.#closed) return Promise.reject(closedError());
      // A write that failed lost bytes written before the FIN: the shutdown reports that error
      // rather than confirm an end of stream after data the peer never got.
      const start = (): Promise<void> => {
        if (this.#closed) return Promise.reject(closedError());
        if (this.#writeErr) return Promise.reject(this.#writeErr);
        const r = native.netShutdown(this._h);
        if (r < 0) return Promise.reject(-r > WRITE_FAILED ? this.#failedWrite(r) : systemError(-r, 'shutdown'));
        if (r === 0) return Promise.resolve();
        return this.#blockedWait().then(() => {
          if (this.#writeErr) throw this.#writeErr;
        });
      };
      // A native copy writing into this stream would go on reading its source and find the end
      // only at its next write (EPIPE), or never: it stops now.
      this.#writeEnd?.abort();
      // Writes made before it that still wait for room (or go out in pieces) go first.
      const earlier = this.#writeTurns.settled;
      this.#shutdown = earlier === undefined ? start() : earlier.then(start);
      this.#shutdown.catch(() => {});
    }
    return untilAborted(this.#shutdown, options?.signal);
  }

  /** The local address. Throws `ERR_SOCKET_CLOSED` once the stream is closed, as its waits reject. */
  localAddr(): SocketAddress {
    if (this.#closed) throw closedError();
    return parseNativeAddr(native.netAddr(this._h, false), 'getsockname');
  }

  /** The peer's address. Throws `ERR_SOCKET_CLOSED` once the stream is closed, as its waits reject. */
  peerAddr(): SocketAddress {
    if (this.#closed) throw closedError();
    this.#peer ??= parseNativeAddr(native.netAddr(this._h, true), 'getpeername');
    return this.#peer;
  }

  #opt(opt: number, a: number, b = 0, name = 'setsockopt'): void {
    const r = native.netSetOpt(this._h, opt, a, b);
    if (r < 0) throw systemError(-r, name);
  }

  /** Sets `TCP_NODELAY` (`on`: a boolean, default true). */
  setNoDelay(on = true): void {
    if (typeof on !== 'boolean') throw invalidArgType('on', 'of type boolean', on);
    this.#opt(1, on ? 1 : 0);
  }

  /**
   * Sets `SO_KEEPALIVE` and, when `initialDelayMs` > 0, the idle time before probes. The kernel
   * counts whole seconds: the delay is rounded up, and capped at 32 767 s (Linux's limit).
   */
  setKeepAlive(on = true, initialDelayMs = 0): void {
    if (typeof on !== 'boolean') throw invalidArgType('on', 'of type boolean', on);
    validateNumber(initialDelayMs, 'initialDelayMs', 0, 2 ** 31);
    this.#opt(2, on ? 1 : 0, initialDelayMs);
  }

  /**
   * Sets `SO_LINGER`: how long closing waits for unsent data, in ms (`null` turns it off). The
   * kernel counts whole seconds, so a time is rounded up to the next second; only `0` makes
   * `close()` discard unsent data and reset the connection. Closing never blocks a thread: with a
   * time above 0, `close()` returns at once and the unsent data still goes out in the background
   * (the kernel's close would otherwise stop the calling thread for that long).
   */
  setLinger(ms: number | null): void {
    if (ms !== null) validateNumber(ms, 'ms', 0, 2 ** 31);
    this.#opt(3, ms === null ? -1 : Math.ceil(ms / 1000));
  }

  /** Sets the IP TTL. */
  setTtl(ttl: number): void {
    validateInteger(ttl, 'ttl', 1, 255);
    this.#opt(4, ttl);
  }

  /** @internal Rejects with `err` the waiting reads made by the read half `owner` (its `close()`). */
  _dropReads(owner: ReadOwner, err: Error): void {
    const w = this.#waiters;
    if (!w.some((x) => x.owner === owner)) return;
    this.#waiters = w.filter((x) => x.owner !== owner);
    if (this.#waiters.length === 0) this.#holds.add(-1);
    for (const x of w) if (x.owner === owner) x.reject(err);
  }

  /** Splits into a read half and a write half (closing the write half sends a FIN). */
  split(): [ReadHalf, WriteHalf] {
    const state = { open: 2 };
    return [new ReadHalf(this, state), new WriteHalf(this, state)];
  }

  /**
   * Closes the connection. Bytes whose `write` already resolved still go out, then the FIN: the
   * closed stream goes on offering them to the peer (as the kernel does with its own buffer after
   * `close(2)`) for up to 60 s, without keeping the process alive. To know they were sent, await
   * {@link TcpStream.flush} or {@link TcpStream.shutdown} before closing.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Closing is destroying for a Duplex over it (as node:net's destroy()): 'close', no 'error'.
    const node = this.#node;
    if (node !== undefined && !node.destroyed) node.destroy();
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
    // Nothing reads a closed stream (reads reject): what it had buffered goes now, not when the
    // stream object is collected.
    this.#chunks = [];
    this.#chunkOff = 0;
    this.#buffered = 0;
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
        if (this.#closed) return Promise.reject(closedError());
        if (this.#buffered > 0) return Promise.resolve(new ChunkResult(this.#takeChunk()));
        if (this.#eof) return this.#readErr ? Promise.reject(this.#readErr) : Promise.resolve(ITER_DONE);
        return this.#wait(undefined, false, undefined, it) as Promise<IteratorResult<Buffer, undefined>>;
      },
      // `break` out of a `for await` ends the iteration, not the stream. A next() still waiting
      // ends too (done), so the data it waited for goes to the stream's next read.
      return: (): Promise<IteratorResult<Buffer, undefined>> => {
        done = true;
        const w = this.#waiters;
        const mine = w.filter((x) => x.iter === it);
        if (mine.length > 0) {
          this.#waiters = w.filter((x) => x.iter !== it);
          if (this.#waiters.length === 0) this.#holds.add(-1);
          for (const x of mine) x.resolve(ITER_DONE);
        }
        return Promise.resolve(ITER_DONE);
      },
      [Symbol.asyncIterator]: () => it,
    };
    return it;
  }

  /**
   * @internal A signal aborted once this stream's writing ended (`shutdown()`, and so closing its
   * write half): a native copy writing into it stops then.
   */
  _writeEndSignal(): AbortSignal {
    this.#writeEnd ??= new AbortController();
    if (this.#shutdown !== undefined) this.#writeEnd.abort();
    return this.#writeEnd.signal;
  }

  /**
   * @internal Hands buffered data over for a native copy that reads this stream, and stops JS
   * reads. Only a copy's sources call it: a stream a copy only writes keeps reading on its own
   * (and its buffered bytes, which were sent to it, not to the copy).
   */
  _beginCopy(): Buffer {
    this.#copying = true;
    if (this.#reading) {
      this.#reading = false;
      native.netRead(this._h, false);
    }
    return this.#takeBuffered();
  }

  /**
   * @internal Takes the stream back from a native copy: at its end of stream (`sawEof`), with the
   * copy's read error (`readErr`, errno `readErrno`) for later reads, or as it was.
   */
  _endCopy(sawEof: boolean, readErr?: Error, readErrno = 0): void {
    this.#copying = false;
    if (readErr !== undefined && this.#readErr === undefined) {
      this.#readErr = readErr;
      this.#readErrno = readErrno;
    }
    if (sawEof || readErr !== undefined) {
      this.#eof = true;
      this.#service(); // reads made before the copy took the stream end too
    } else if (this.#waiters.length > 0 || this.#sink !== undefined) {
      this.#maybeResume(); // reads made before the copy took the stream read on
    }
  }

  /** @internal */
  get _eof(): boolean {
    return this.#eof && this.#buffered === 0;
  }

  /**
   * A Node `stream.Duplex` over this connection, for any Node library (e.g.
   * `http.Server#emit('connection', stream.toNodeStream())`). Ending it sends a FIN; destroying it
   * closes the connection. Like a `net.Socket` (without `allowHalfOpen`), it ends its own side once
   * the peer's end of stream was read, then closes.
   */
  toNodeStream(): Duplex {
    if (this.#node) return this.#node;
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    let reading = false;
    /** `setTimeout(ms)`: 'timeout' after `ms` without reads or writes, as node:net's idle timeout. */
    let idle: NodeJS.Timeout | undefined;
    const active = (): void => {
      idle?.refresh();
    };
    // Taken at once: call back now, so write() stays true while the socket takes bytes.
    const send = (bytes: Buffer, cb: (err?: Error | null) => void): void => {
      active();
      if (self._writeNow(bytes)) cb();
      else
        self.write(bytes).then(
          () => {
            active(); // a completed write is activity
            callReporting(cb);
          },
          (e: Error) => callReporting(cb, e),
        );
    };
    const d = new Duplex({
      // As a net.Socket by default: the peer's end of stream ends this side too, and the Duplex
      // closes. Node's clients count on it (a keep-alive http.Agent drops an idle socket the server
      // closed only once it closes); http.Server handles a client's end itself either way.
      allowHalfOpen: false,
      read() {
        if (reading) return;
        reading = true;
        // Chunks are pushed as they arrive (no promise per read) until the buffer is full.
        self._sink((c, err) => {
          if (c !== undefined) active();
          if (c !== undefined && pushReporting(d, c)) return true;
          reading = false;
          if (err !== undefined) d.destroy(err);
          else if (c === undefined) d.push(null);
          return false;
        });
      },
      write(chunk: Buffer, _enc, cb) {
        send(chunk, cb);
      },
      writev(chunks, cb) {
        // Corked writes (http's header + body): one write, called back at once like the rest.
        send(chunks.length === 1 ? (chunks[0].chunk as Buffer) : Buffer.concat(chunks.map((c) => c.chunk as Buffer)), cb);
      },
      final(cb) {
        self.shutdown().then(() => callReporting(cb), (e: Error) => callReporting(cb, e));
      },
      destroy(err, cb) {
        if (idle !== undefined) clearTimeout(idle);
        idle = undefined;
        self.close();
        cb(errorToReport(err, d));
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
        self.setNoDelay(Boolean(on ?? true)); // node:net's coerces
      } catch {
        /* closed */
      }
      return d;
    };
    extra.setKeepAlive = (on?: boolean, delay?: number) => {
      try {
        self.setKeepAlive(Boolean(on), delay ?? 0); // node:net's coerces
      } catch {
        /* closed */
      }
      return d;
    };
    extra.setTimeout = (ms: number, cb?: () => void) => {
      if (idle !== undefined) clearTimeout(idle);
      idle = undefined;
      if (cb) d.once('timeout', cb);
      if (ms > 0 && !d.destroyed) {
        idle = setTimeout(() => {
          // A write in progress is activity (as node:net counts it).
          if (self._writeMoved()) idle?.refresh();
          else d.emit('timeout');
        }, ms);
        idle.unref();
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
    // As net.Socket's: a keep-alive http.Agent unref()s an idle socket and ref()s it for reuse.
    extra.ref = () => {
      self.ref();
      return d;
    };
    extra.unref = () => {
      self.unref();
      return d;
    };
    this.#node = d;
    return d;
  }
}

/** The read half of a split {@link TcpStream}: its reads, and the connection's addresses. */
export class ReadHalf extends StreamReadHalf<TcpStream> {
  /**
   * @internal The stream this half reads (see `net/stream-of.ts`); none once the half is closed,
   * so a native copy or framer cannot read the stream through it (its reads reject instead).
   */
  [kStream](): TcpStream | undefined {
    return this._closed ? undefined : this._s;
  }
  /** See {@link TcpStream.peerAddr}. */
  peerAddr(): SocketAddress {
    return this._s.peerAddr();
  }
  /** See {@link TcpStream.localAddr}. */
  localAddr(): SocketAddress {
    return this._s.localAddr();
  }
}

/** The write half of a split {@link TcpStream}; closing it sends a FIN. */
export class WriteHalf extends StreamWriteHalf<TcpStream> {
  /** @internal The stream this half writes (see `net/stream-of.ts`). */
  [kStream](): TcpStream {
    return this._s;
  }
  /** See {@link TcpStream.peerAddr}. */
  peerAddr(): SocketAddress {
    return this._s.peerAddr();
  }
  /** See {@link TcpStream.localAddr}. */
  localAddr(): SocketAddress {
    return this._s.localAddr();
  }
}
