/**
 * `kyoto/compat/net`: a drop-in replacement for `node:net` on kyoto's sockets.
 *
 * `createServer`, `connect`/`createConnection`, `Server` and `Socket` have `node:net`'s signatures,
 * events, errors and options; a service swaps `require('node:net')` for
 * `require('kyoto/compat/net')` and keeps working. Sockets are `stream.Duplex`es over kyoto's
 * {@link TcpStream}/{@link UnixStream}; servers accept through {@link TcpListener}/{@link UnixListener}.
 * The non-socket helpers (`isIP`, `BlockList`, `SocketAddress`, …) are `node:net`'s own.
 *
 * A socket descriptor can be adopted on Linux and macOS (`new Socket({ fd })`,
 * `server.listen({ fd })`, e.g. one passed in by systemd): a TCP or Unix stream socket, or a
 * listening (or bound) one for `listen`. Not supported (they throw an error with
 * `code: 'ERR_NOT_SUPPORTED'`): descriptors that are not sockets (pipes, TTYs) and descriptors on
 * Windows, native handles (`{ handle }`, `server.listen(handle)`), and Windows named pipes as
 * `path`.
 *
 * In a `node:cluster` worker, `listen()` goes through the primary as node:net's does (Linux and
 * macOS): the primary binds the port or Unix path once and deals connections out round-robin (or
 * shares the socket with `SCHED_NONE`), each passed over IPC as a descriptor kyoto takes over; a
 * port-0 listen gives every worker the same port, `'listening'` reaches the primary, and a
 * disconnect closes the worker's servers. On Windows a worker binds a port of its own (the second
 * gets `EADDRINUSE`). `exclusive: true` keeps a worker's port its own everywhere.
 * @module
 */
import * as dns from 'node:dns';
import { EventEmitter } from 'node:events';
import { chmodSync, statSync, unlinkSync } from 'node:fs';
import * as nodeNet from 'node:net';
import { Duplex, addAbortSignal, type DuplexOptions } from 'node:stream';
import { native } from '../native';
import { connectError, errnoOf, flushWrites, systemError } from '../net/core';
import {
  NamedPipe,
  NamedPipeClient,
  NamedPipeServer,
  TcpListener,
  TcpStream,
  UnixListener,
  UnixStream,
  type SocketAddress as KyotoAddress,
} from '../net';
import { waitConnected } from '../net/tcp-stream';
import { O_REUSE_PORT, O_V6_ONLY, callReporting, errorToReport, isRuntimeShutdown, pushReporting, reportUncaught } from '../net/common';
import { listenTcp } from '../net/tcp-listener';
import {
  argType,
  argValue,
  adoptDuplicate,
  closeWithCluster,
  getClusterServer,
  inClusterWorker,
  errnoError,
  missingArgs,
  nodeError,
  notSupported,
  onAbort,
  outOfRange,
  validateAbortSignal,
  validateBoolean,
  validateFunction,
  validateInt32,
  validateNumber,
  validatePort,
  validateString,
} from './common';

// ---------------------------------------------------------------------------------------------
// node:net's helpers, re-exported as they are

/** `node:net`'s `isIP`: 4, 6 or 0. */
export const isIP: typeof nodeNet.isIP = nodeNet.isIP;
/** `node:net`'s `isIPv4`. */
export const isIPv4: typeof nodeNet.isIPv4 = nodeNet.isIPv4;
/** `node:net`'s `isIPv6`. */
export const isIPv6: typeof nodeNet.isIPv6 = nodeNet.isIPv6;

/** `node:net`'s `BlockList`. */
export const BlockList: typeof nodeNet.BlockList = nodeNet.BlockList;
/** `node:net`'s `SocketAddress`. */
export const SocketAddress: typeof nodeNet.SocketAddress = nodeNet.SocketAddress;
/** `node:net`'s default for `autoSelectFamily` (shared with `node:net`; {@link connect} follows it). */
export const getDefaultAutoSelectFamily: typeof nodeNet.getDefaultAutoSelectFamily = nodeNet.getDefaultAutoSelectFamily;
/** Sets `node:net`'s default for `autoSelectFamily` (shared with `node:net`). */
export const setDefaultAutoSelectFamily: typeof nodeNet.setDefaultAutoSelectFamily = nodeNet.setDefaultAutoSelectFamily;
/** `node:net`'s default attempt timeout of `autoSelectFamily` (ms, shared with `node:net`). */
export const getDefaultAutoSelectFamilyAttemptTimeout: () => number = (
  nodeNet as unknown as { getDefaultAutoSelectFamilyAttemptTimeout: () => number }
).getDefaultAutoSelectFamilyAttemptTimeout;
/** Sets `node:net`'s default attempt timeout of `autoSelectFamily` (shared with `node:net`). */
export const setDefaultAutoSelectFamilyAttemptTimeout: (value: number) => void = (
  nodeNet as unknown as { setDefaultAutoSelectFamilyAttemptTimeout: (value: number) => void }
).setDefaultAutoSelectFamilyAttemptTimeout;

// ---------------------------------------------------------------------------------------------
// Types

/** `{ address, family, port }` (`node:net`'s `AddressInfo`). */
export type AddressInfo = nodeNet.AddressInfo;

/** Options of `new Socket()` (`node:net`'s, plus the stream's `highWaterMark`s). */
export interface SocketConstructorOpts {
  /** Keep the writable side open after the peer ends (default false: end it too, like Node). */
  allowHalfOpen?: boolean;
  /** Whether the socket is readable (default true). */
  readable?: boolean;
  /** Whether the socket is writable (default true). */
  writable?: boolean;
  /** Destroys the socket with an `AbortError` when aborted. */
  signal?: AbortSignal;
  /** `TCP_NODELAY` once connected. */
  noDelay?: boolean;
  /** `SO_KEEPALIVE` once connected. */
  keepAlive?: boolean;
  /** Idle time before the first keep-alive probe, ms. */
  keepAliveInitialDelay?: number;
  /** Both buffers' high-water mark (bytes). */
  highWaterMark?: number;
  /** The readable buffer's high-water mark (bytes); also bounds what kyoto buffers for it. */
  readableHighWaterMark?: number;
  /** The writable buffer's high-water mark (bytes). */
  writableHighWaterMark?: number;
  /** A connected stream socket's descriptor to adopt (unix only; the socket then owns it). */
  fd?: number;
  /**
   * Reads into the caller's memory instead of emitting `'data'`: each read fills `buffer` (or the
   * buffer the function returns, asked once per read) and calls `callback(nread, buffer)`; a
   * `false` return pauses reading until `resume()`. An object without both is ignored.
   */
  onread?: OnReadOpts;
}

/** `onread` of {@link SocketConstructorOpts}. */
export interface OnReadOpts {
  /** The memory reads land in, or a function that returns it for each read. */
  buffer: Uint8Array | (() => Uint8Array);
  /** Called with the number of bytes read into `buf`; `false` pauses reading. */
  callback(this: Socket, nread: number, buf: Uint8Array): boolean | void;
}

/** Options of `socket.connect()` / `connect()` for TCP. */
export interface TcpConnectOpts extends SocketConstructorOpts {
  /** The port to connect to. */
  port: number | string;
  /** Host name or IP (default `'localhost'`). */
  host?: string;
  /** Local IP to bind before connecting. */
  localAddress?: string;
  /** Local port to bind before connecting. */
  localPort?: number;
  /** `dns.lookup` hints. */
  hints?: number;
  /** 4, 6 (or 0) for the lookup. */
  family?: number | string;
  /** A `dns.lookup`-compatible resolver. */
  lookup?: (...args: never[]) => void;
  /** Try every resolved address in turn (happy eyeballs), `node:net`'s default when omitted. */
  autoSelectFamily?: boolean;
  /** How long one attempt may take before the next address is tried (ms, >= 10). */
  autoSelectFamilyAttemptTimeout?: number;
  /** Calls `setTimeout(timeout)` on the socket. */
  timeout?: number;
}

/** Options of `socket.connect()` / `connect()` for a Unix domain socket. */
export interface IpcConnectOpts extends SocketConstructorOpts {
  /** The socket's path. */
  path: string;
  /** Calls `setTimeout(timeout)` on the socket. */
  timeout?: number;
}

/** Options of `connect()`. */
export type NetConnectOpts = TcpConnectOpts | IpcConnectOpts;

/** Options of `new Server()` / `createServer()`. */
export interface ServerOpts {
  /** Accepted sockets keep their writable side open after the peer ends. */
  allowHalfOpen?: boolean;
  /** Accepted sockets start paused (no reads until `resume()`). */
  pauseOnConnect?: boolean;
  /** `TCP_NODELAY` on accepted sockets. */
  noDelay?: boolean;
  /** `SO_KEEPALIVE` on accepted sockets. */
  keepAlive?: boolean;
  /** Idle time before the first keep-alive probe, ms. */
  keepAliveInitialDelay?: number;
  /** Accepted sockets' readable and writable high-water marks. */
  highWaterMark?: number;
}

/** Options of `server.listen()`. */
export interface ListenOptions {
  /** TCP port (0: any free port). */
  port?: number | string | null;
  /** Host to listen on (default: `::` when IPv6 is available, else `0.0.0.0`). */
  host?: string;
  /** A Unix domain socket path instead of a port. */
  path?: string;
  /** Listen backlog (default 511). */
  backlog?: number;
  /** `IPV6_V6ONLY` for a `::` listener. */
  ipv6Only?: boolean;
  /**
   * In a `node:cluster` worker: `true` listens on a port of this worker's own; otherwise the
   * primary holds the port and deals this worker connections (see the module docs).
   */
  exclusive?: boolean;
  /**
   * `SO_REUSEPORT` (Node 22.12's option): sockets of any process bound to the port share its
   * connections. Linux only; elsewhere listening fails with `ENOTSUP`, as libuv's does.
   */
  reusePort?: boolean;
  /** Makes the Unix socket file readable by everyone. */
  readableAll?: boolean;
  /** Makes the Unix socket file writable by everyone. */
  writableAll?: boolean;
  /** Closes the server when aborted. */
  signal?: AbortSignal;
  /** Not supported: listening on a descriptor. */
  fd?: number;
  /** Not supported: listening on a native handle. */
  handle?: unknown;
}

// ---------------------------------------------------------------------------------------------
// Argument normalisation (node:net's)

const kNormalized = Symbol('kyoto.compat.normalizedArgs');
const kAccepted = Symbol('kyoto.compat.accepted');

type Normalized = [Record<string, unknown>, ((...a: unknown[]) => void) | null] & { [kNormalized]?: true };

/**
 * `Number(x)` where it works, NaN where it would throw an uncoded TypeError (a symbol, a BigInt
 * in arithmetic, an object whose conversion throws: a typed array over a detached buffer).
 */
function looseNumber(x: unknown): number {
  if (typeof x === 'symbol' || typeof x === 'bigint') return NaN;
  try {
    return Number(x);
  } catch {
    return NaN;
  }
}

function toNumber(x: unknown): number | false {
  const n = looseNumber(x);
  return n >= 0 ? n : false;
}

function isPipeName(s: unknown): s is string {
  return typeof s === 'string' && toNumber(s) === false;
}

/** `(options[, cb])`, `(path[, cb])` or `([port][, host][, cb])` → `[options, cb]`. */
function normalizeArgs(args: unknown[]): Normalized {
  let arr: Normalized;
  if (args.length === 0) {
    arr = [{}, null];
    arr[kNormalized] = true;
    return arr;
  }
  const arg0 = args[0];
  let options: Record<string, unknown> = {};
  if (typeof arg0 === 'object' && arg0 !== null) {
    options = arg0 as Record<string, unknown>;
  } else if (isPipeName(arg0)) {
    options.path = arg0;
  } else {
    options.port = arg0;
    if (args.length > 1 && typeof args[1] === 'string') options.host = args[1];
  }
  const cb = args[args.length - 1];
  arr = [options, typeof cb === 'function' ? (cb as (...a: unknown[]) => void) : null];
  arr[kNormalized] = true;
  return arr;
}

/**
 * Whether the kernel took the bytes written at once up to a point: `err` is undefined until known,
 * then null (taken) or the error of the write that failed; `waiting` holds the write callbacks
 * (with the status the stream gave them) that wait for the answer.
 */
interface TakenCheck {
  started: boolean;
  err: Error | null | undefined;
  waiting: Array<[(err?: Error | null) => void, Error | null | undefined]>;
}

function socketClosed(): Error {
  return nodeError(Error, 'ERR_SOCKET_CLOSED', 'Socket is closed');
}

/**
 * Whether node:net calls a write still waiting when the socket is destroyed back with its error
 * (libuv's `ECANCELED`, which also becomes the socket's `errored`): Node 22.9 on
 * (nodejs/node#54032 checks the write's status before `destroyed`). Before, it called back
 * without an error.
 */
const DESTROYED_WRITE_ERRS = ((): boolean => {
  const [major, minor] = process.versions.node.split('.').map(Number);
  return major > 22 || (major === 22 && minor >= 9);
})();

/** Node's `getTimerDuration`. */
function timerDuration(msecs: unknown, name: string): number {
  validateNumber(msecs, name);
  if (msecs < 0 || !Number.isFinite(msecs)) throw outOfRange(name, 'a non-negative finite number', msecs);
  return Math.min(msecs, 2 ** 31 - 1);
}

/** What a `Server` accepts from: a TCP or Unix listener, or (Windows) a named-pipe acceptor. */
interface Acceptor {
  accept(): Promise<[TcpStream, KyotoAddress]>;
  close(): void;
  ref(): unknown;
  unref(): unknown;
  localAddr(): KyotoAddress;
}

/**
 * `listen({ reusePort })` works where libuv's does: Linux among kyoto's platforms (libuv answers
 * `ENOTSUP` on macOS and Windows, which have no load-balancing `SO_REUSEPORT`).
 */
const REUSE_PORT_SUPPORTED = process.platform === 'linux';

/** What node:cluster's `_getServer` hands a worker: a shared listening socket, or its faux round-robin one. */
interface ClusterHandle {
  /** A shared socket's descriptor (absent on the round-robin handle). */
  fd?: number;
  /** Called with each connection the primary deals this worker (round-robin). */
  onconnection?: (err: number, client: { fd: number; close(): void } | undefined) => void;
  getsockname?(out: Record<string, unknown>): number;
  close(): void;
  ref(): void;
  unref(): void;
}

/**
 * A listener of a node:cluster worker, over what the primary gave it: connections the primary
 * accepted and passes over IPC (round-robin, node's default on Unix) or a listening socket it
 * shares (`SCHED_NONE`). Each is a libuv handle; kyoto takes a duplicate of its descriptor and
 * closes the handle (the shared one when the server closes, which also tells the primary).
 */
class ClusterAcceptor implements Acceptor {
  readonly #handle: ClusterHandle;
  /** Closes the handle (once), telling the primary. */
  readonly #closeHandle: () => void;
  readonly #shared: TcpListener | undefined;
  readonly #ready: Array<[TcpStream, KyotoAddress]> = [];
  #waiting: { resolve: (v: [TcpStream, KyotoAddress]) => void; reject: (e: Error) => void } | undefined;
  #closed = false;

  /** `owner` closes the server (see {@link closeWithCluster}). */
  constructor(handle: ClusterHandle, backlog: number, owner: (cb?: () => void) => void) {
    this.#handle = handle;
    if (typeof handle.fd === 'number' && handle.fd >= 0) {
      const [h, what] = adoptDuplicate(handle.fd, (d) => native.netAdoptFd(d, true, backlog));
      if (h < 0) throw systemError(-h, 'listen');
      this.#shared = what === ADOPTED_UNIX_LISTENER ? new UnixListener(h) : new TcpListener(h);
    } else {
      this.#shared = undefined;
      handle.onconnection = (err, client) => this.#onConnection(err, client);
    }
    // Only once this cannot fail: from here node:cluster's close of the handle closes the server.
    this.#closeHandle = closeWithCluster(handle, owner);
  }

  /** A connection the primary dealt this worker (round-robin). */
  #onConnection(err: number, client: { fd: number; close(): void } | undefined): void {
    if (err !== 0 || client === undefined) return;
    const [h, what] = this.#closed ? [-1, 0] : adoptDuplicate(client.fd, (d) => native.netAdoptFd(d, false, 0));
    client.close();
    if (h < 0) return; // node:net drops a connection it cannot wrap as well
    const s = what === ADOPTED_UNIX_STREAM ? new UnixStream(h) : new TcpStream(h);
    let peer: KyotoAddress;
    try {
      peer = s.peerAddr();
    } catch {
      s.close();
      return;
    }
    const w = this.#waiting;
    this.#waiting = undefined;
    if (w !== undefined) w.resolve([s, peer]);
    else this.#ready.push([s, peer]);
  }

  accept(): Promise<[TcpStream, KyotoAddress]> {
    if (this.#shared !== undefined) return this.#shared.accept();
    const next = this.#ready.shift();
    if (next !== undefined) return Promise.resolve(next);
    if (this.#closed) return Promise.reject(errnoError('EBADF', 'accept'));
    return new Promise((resolve, reject) => (this.#waiting = { resolve, reject }));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#shared?.close();
    this.#closeHandle();
    for (const [s] of this.#ready.splice(0)) s.close();
    this.#waiting?.reject(errnoError('EBADF', 'accept'));
    this.#waiting = undefined;
  }

  ref(): void {
    this.#shared?.ref();
    this.#handle.ref();
  }

  unref(): void {
    this.#shared?.unref();
    this.#handle.unref();
  }

  localAddr(): KyotoAddress {
    if (this.#shared !== undefined) return this.#shared.localAddr();
    const out: Record<string, unknown> = {};
    this.#handle.getsockname?.(out);
    return out as unknown as KyotoAddress;
  }
}

/** Kinds `netAdoptFd` reports (see `unix.rs`). */
const ADOPTED_UNIX_STREAM = 2;
const ADOPTED_UNIX_LISTENER = 4;

/**
 * A kyoto stream over the connected socket `fd`, which it then owns (`new Socket({ fd })`). Throws
 * as node:net does for a descriptor it cannot use, and `ERR_NOT_SUPPORTED` for a pipe or TTY
 * (node:net would open those as pipes) and on Windows.
 */
function adoptStream(fd: number): TcpStream {
  if (process.platform === 'win32') throw notSupported('net', 'options.fd on Windows');
  const [h, what] = native.netAdoptFd(fd, false, 0);
  if (h >= 0) return what === ADOPTED_UNIX_STREAM ? new UnixStream(h) : new TcpStream(h);
  const err = systemError(-h, 'open');
  if (err.code === 'ENOTSOCK') throw notSupported('net', 'options.fd naming a descriptor that is not a socket');
  if (err.code === 'EBADF') throw nodeError(TypeError, 'ERR_INVALID_FD_TYPE', 'Unsupported fd type: UNKNOWN');
  throw err;
}

/** node:net's `ERR_INVALID_ADDRESS_FAMILY` for what a lookup answered, with `host` and `port`. */
function invalidAddressFamily(family: unknown, host: unknown, port: unknown): Error {
  return Object.assign(
    nodeError(RangeError, 'ERR_INVALID_ADDRESS_FAMILY', `Invalid address family: ${family} ${host}:${port}`),
    { host, port },
  );
}

function unixListen(path: string, backlog: number): Acceptor {
  if (process.platform === 'win32') return new PipeAcceptor(path);
  const h = native.netUnixListen(path, backlog);
  if (h < 0) {
    // As libuv's uv_pipe_bind: a missing directory is EACCES, and the error names port -1.
    const errno = -h === errnoOf('ENOENT') ? errnoOf('EACCES') : -h;
    throw Object.assign(systemError(errno, 'listen', path), { port: -1 });
  }
  return new UnixListener(h);
}

/**
 * A Windows named-pipe "listener", as libuv makes one: an instance of the pipe waits for a client;
 * once one connects, the next instance is created before the connected one is handed out, so a
 * client never finds none. The first instance insists on being first (`EACCES` if the name is
 * served already).
 */
class PipeAcceptor implements Acceptor {
  #next: NamedPipeServer;
  #refd = true;

  constructor(readonly path: string) {
    this.#next = NamedPipeServer.create(path, { firstPipeInstance: true });
  }

  async accept(): Promise<[TcpStream, KyotoAddress]> {
    const inst = this.#next;
    await inst.connect();
    this.#next = NamedPipeServer.create(this.path);
    if (!this.#refd) this.#next._setRef(false);
    return [inst, inst.localAddr()];
  }

  close(): void {
    this.#next.close();
  }

  ref(): this {
    this.#refd = true;
    this.#next._setRef(true);
    return this;
  }

  unref(): this {
    this.#refd = false;
    this.#next._setRef(false);
    return this;
  }

  localAddr(): KyotoAddress {
    return this.#next.localAddr();
  }
}

/**
 * Opens a Windows pipe as a client (its connect then completes like a socket's), retrying while
 * every instance is busy, as libuv waits for one too (up to 30 s).
 */
async function openPipe(path: string, signal: AbortSignal): Promise<NamedPipeClient> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const h = native.netPipeOpen(path);
    if (h >= 0) return new NamedPipeClient(h, path);
    const err = systemError(-h, 'connect', path);
    if (err.code !== 'EBUSY' || Date.now() > deadline || signal.aborted) throw err;
    await new Promise((r) => setTimeout(r, 10));
  }
}

// ---------------------------------------------------------------------------------------------
// Socket

/**
 * `node:net`'s `Socket`: a `stream.Duplex` over a kyoto TCP or Unix stream, with Node's events
 * (`lookup`, `connect`, `ready`, `data`, `end`, `timeout`, `drain`, `error`, `close(hadError)`),
 * properties and methods. `new Socket()` then `socket.connect(...)` works, as does
 * `net.connect(...)`.
 *
 * Reads are driven by the stream's demand: kyoto keeps reading while the readable buffer is below
 * its `highWaterMark` and stops (leaving data in the kernel) once both it and kyoto's own buffer,
 * bounded by the same mark, are full.
 */
export class Socket extends Duplex {
  /** True from `connect()` until the connection is established (or fails). */
  connecting = false;

  /** node:net's older name of {@link Socket.connecting}. */
  get _connecting(): boolean {
    return this.connecting;
  }
  /** The `Server` that accepted this socket (`null` for client sockets). */
  server: Server | null = null;
  /** Same as {@link Socket.server} (Node's legacy name). */
  _server: Server | null = null;
  /** The last `setTimeout` value. */
  timeout: number | undefined = undefined;
  /** The addresses tried by `autoSelectFamily`, as `"ip:port"`. */
  autoSelectFamilyAttemptedAddresses: string[] | undefined = undefined;
  /** The host name being resolved or connected to. */
  _host: string | null = null;

  #stream: TcpStream | undefined;
  /** The stream whose connect is in flight (for ref/unref), and how to cancel it. */
  #connectingStream: TcpStream | undefined;
  #attempt: AbortController | undefined;
  #hasHandle = false;
  #pipe = false;
  #reading = false;
  /** `onread`: the buffer (or its maker) and callback; reading paused by either. */
  #onread: OnReadOpts | undefined;
  #onreadPaused = false;
  #timer: NodeJS.Timeout | undefined;
  #bytesRead = 0;
  #bytesDispatched = 0;
  #pendingData: Buffer | null = null;
  /** The latest check of bytes written at once (`#checkTaken`), and those not yet settled. */
  #check: TakenCheck | undefined;
  #checks = new Set<TakenCheck>();
  #noDelay = false;
  #keepAlive = false;
  #keepAliveDelay = 0;
  #refd = true;
  #peer: Partial<AddressInfo> | undefined;
  #sock: Partial<AddressInfo> | undefined;
  #resetting = false;

  /**
   * @param options - `allowHalfOpen`, `readable`, `writable`, `signal`, `noDelay`, `keepAlive`,
   * `keepAliveInitialDelay`, `highWaterMark`s, `fd` (a connected stream socket's descriptor, which
   * the socket then owns and closes; nothing else in the process may use it, the event loop
   * included; unix only), `onread`.
   */
  constructor(options?: SocketConstructorOpts | number) {
    // node:net's legacy form: `new Socket(fd)`.
    if (typeof options === 'number') options = { fd: options };
    const o: Record<PropertyKey, unknown> = { ...(options as Record<PropertyKey, unknown> | undefined) };
    if (o.objectMode) throw argValue('options.objectMode', o.objectMode, 'is not supported');
    if (o.readableObjectMode || o.writableObjectMode) {
      const k = o.readableObjectMode ? 'readableObjectMode' : 'writableObjectMode';
      throw argValue(`options.${k}`, o[k], 'is not supported');
    }
    if (o.keepAliveInitialDelay !== undefined) {
      validateNumber(o.keepAliveInitialDelay, 'options.keepAliveInitialDelay');
      if (o.keepAliveInitialDelay < 0) o.keepAliveInitialDelay = 0;
    }
    if (o.handle !== undefined && o[kAccepted] === undefined) throw notSupported('net', 'options.handle');
    if (o.signal !== undefined) validateAbortSignal(o.signal, 'options.signal');
    let accepted = o[kAccepted] as TcpStream | undefined;
    if (o.fd !== undefined) {
      validateInt32(o.fd, 'fd', 0);
      accepted = adoptStream(o.fd);
    }
    const duplexOpts: DuplexOptions & { readable?: boolean; writable?: boolean } = {
      allowHalfOpen: Boolean(o.allowHalfOpen),
      readable: o.readable as boolean | undefined,
      writable: o.writable as boolean | undefined,
      highWaterMark: o.highWaterMark as number | undefined,
      readableHighWaterMark: o.readableHighWaterMark as number | undefined,
      writableHighWaterMark: o.writableHighWaterMark as number | undefined,
      emitClose: false,
      autoDestroy: true,
    };
    super(duplexOpts);
    this.#noDelay = Boolean(o.noDelay);
    this.#keepAlive = Boolean(o.keepAlive);
    this.#keepAliveDelay = ~~((o.keepAliveInitialDelay as number | undefined ?? 0) / 1000);
    this.on('end', onReadableStreamEnd);
    // As node:net: an onread without a usable buffer and callback is ignored.
    const onread = o.onread as Partial<OnReadOpts> | null | undefined;
    if (
      onread !== null &&
      typeof onread === 'object' &&
      (onread.buffer instanceof Uint8Array || typeof onread.buffer === 'function') &&
      typeof onread.callback === 'function'
    ) {
      this.#onread = { buffer: onread.buffer, callback: onread.callback };
    }
    // After super(): an already-aborted signal destroys the socket at once, which needs its fields.
    if (o.signal !== undefined) addAbortSignal(o.signal as AbortSignal, this);
    if (accepted !== undefined) {
      this.#hasHandle = true;
      this.#attach(accepted);
      if (o.readable !== false) {
        if (o.pauseOnCreate) (this as { readableFlowing: boolean | null }).readableFlowing = false;
        else this.read(0);
      }
    }
  }

  #attach(s: TcpStream): void {
    this.#stream = s;
    this.#pipe = s instanceof UnixStream || s instanceof NamedPipe;
    const hwm = this.readableHighWaterMark;
    s._readHwm = hwm;
    s._readLwm = Math.max(1, hwm >> 1);
    if (!this.#refd) s._setRef(false);
  }

  // -- connect ---------------------------------------------------------------------------------

  /**
   * Connects: `connect(options[, listener])`, `connect(path[, listener])` or
   * `connect(port[, host][, listener])`; `listener` is added for `'connect'`.
   */
  connect(options: NetConnectOpts, connectionListener?: () => void): this;
  connect(port: number | string, host?: string, connectionListener?: () => void): this;
  connect(port: number | string, connectionListener?: () => void): this;
  connect(path: string, connectionListener?: () => void): this;
  connect(...args: unknown[]): this {
    const normalized =
      Array.isArray(args[0]) && (args[0] as Normalized)[kNormalized] ? (args[0] as Normalized) : normalizeArgs(args);
    const [options, cb] = normalized;
    if (cb !== null) this.once('connect', cb);
    if (options.port === undefined && options.path == null) throw missingArgs(['options', 'port', 'path']);
    if (this.write !== Socket.prototype.write) this.write = Socket.prototype.write;
    if (this.#stream !== undefined || this.#connectingStream !== undefined) {
      // Already connected (or connecting): the OS would say EISCONN / EALREADY.
      this.destroy(errnoError(this.#stream ? 'EISCONN' : 'EALREADY', 'connect'));
      return this;
    }
    if (this.destroyed) {
      (this as unknown as { _undestroy(): void })._undestroy();
      this.#peer = undefined;
      this.#sock = undefined;
      this.#reading = false;
    }
    // A new handle: node:net counts bytes per connection.
    this.#bytesRead = 0;
    this.#bytesDispatched = 0;
    const path = options.path;
    this.#pipe = !!path;
    this.#hasHandle = true;
    this._unrefTimer();
    this.connecting = true;
    if (this.#pipe) {
      validateString(path, 'options.path');
      this.#connectPipe(path);
    } else {
      this.#lookupAndConnect(options);
    }
    return this;
  }

  #connectPipe(path: string): void {
    if (process.platform === 'win32') {
      const ac = new AbortController();
      this.#attempt = ac;
      openPipe(path, ac.signal).then(
        (p) => {
          if (this.#attempt !== ac) return p.close();
          this.#track(p, path, -1, () => {});
        },
        (e) => {
          if (this.#attempt === ac) this.destroy(e as Error);
        },
      );
      return;
    }
    const h = native.netUnixConnect(path);
    if (h < 0) {
      const err = systemError(-h, 'connect', path);
      process.nextTick(() => this.destroy(err));
      return;
    }
    this.#track(new UnixStream(h), path, -1, () => {});
  }

  /** Waits for `s` to connect; `failed` gets the error of a failed attempt (not of a cancelled one). */
  #track(s: TcpStream, host: string, port: number, failed: (e: Error) => void): void {
    const ac = new AbortController();
    this.#attempt = ac;
    this.#connectingStream = s;
    if (!this.#refd) s._setRef(false);
    waitConnected(s, host, port, ac.signal).then(
      (stream) => {
        if (this.#attempt !== ac) {
          stream.close();
          return;
        }
        // 'connect' from a callback of its own, as node's comes from libuv's: connections that
        // complete in one native batch would otherwise emit back to back, before code awaiting
        // the first (`await once(a, 'connect'); await once(b, 'connect')`) listens for the next.
        setImmediate(() => {
          if (this.#attempt !== ac) {
            stream.close(); // destroyed (or connecting elsewhere) meanwhile
            return;
          }
          this.#attempt = undefined;
          this.#connectingStream = undefined;
          this.#afterConnect(stream);
        });
      },
      (e: Error) => {
        if (this.#attempt !== ac || ac.signal.aborted) return;
        this.#attempt = undefined;
        this.#connectingStream = undefined;
        if (!this.connecting) return;
        failed(e);
      },
    );
  }

  #lookupAndConnect(options: Record<string, unknown>): void {
    const localAddress = options.localAddress as string | undefined;
    const localPort = options.localPort as number | undefined;
    const host = (options.host as string | undefined) || 'localhost';
    let port = options.port as number;
    if (localAddress && !isIP(localAddress)) {
      throw nodeError(TypeError, 'ERR_INVALID_IP_ADDRESS', `Invalid IP address: ${localAddress}`);
    }
    if (localPort) validateNumber(localPort, 'options.localPort');
    if (port !== undefined) {
      if (typeof port !== 'number' && typeof port !== 'string') {
        throw argType('options.port', 'of type number or string', port);
      }
      validatePort(port);
    }
    port = (port as unknown as number) | 0;
    let autoSelectFamily = options.autoSelectFamily as boolean | undefined | null;
    if (autoSelectFamily != null) validateBoolean(autoSelectFamily, 'options.autoSelectFamily');
    else autoSelectFamily = getDefaultAutoSelectFamily();
    let attemptTimeout = options.autoSelectFamilyAttemptTimeout as number | undefined | null;
    if (attemptTimeout != null) {
      if (!Number.isInteger(attemptTimeout)) throw argType('options.autoSelectFamilyAttemptTimeout', 'an integer', attemptTimeout);
      if (attemptTimeout < 1 || attemptTimeout > 2 ** 31 - 1) {
        throw outOfRange('options.autoSelectFamilyAttemptTimeout', `>= 1 && <= ${2 ** 31 - 1}`, attemptTimeout);
      }
      attemptTimeout = Math.max(attemptTimeout, 10);
    } else {
      attemptTimeout = getDefaultAutoSelectFamilyAttemptTimeout?.() ?? 250;
    }

    const addressType = isIP(host);
    if (addressType) {
      process.nextTick(() => {
        if (this.connecting) this.#internalConnect(host, port, addressType, localAddress, localPort);
      });
      return;
    }
    if (options.lookup != null) validateFunction(options.lookup, 'options.lookup');
    const fam = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : options.family;
    const dnsopts: dns.LookupOptions = { family: fam as number, hints: (options.hints as number) || 0 };
    if (process.platform !== 'win32' && dnsopts.family !== 4 && dnsopts.family !== 6 && dnsopts.hints === 0) {
      dnsopts.hints = dns.ADDRCONFIG;
    }
    this._host = host;
    const lookup = (options.lookup as typeof dns.lookup | undefined) ?? dns.lookup;

    if (dnsopts.family !== 4 && dnsopts.family !== 6 && !localAddress && autoSelectFamily) {
      dnsopts.all = true;
      lookup(host, dnsopts as dns.LookupAllOptions, (err: NodeJS.ErrnoException | null, addresses: dns.LookupAddress[]) => {
        this.#connectMultiple(err, addresses, host, options, port, localPort, attemptTimeout as number);
      });
      return;
    }
    lookup(host, dnsopts as dns.LookupOneOptions, (err: NodeJS.ErrnoException | null, ip: string, family: number) => {
      this.emit('lookup', err, ip, family, host);
      if (!this.connecting) return;
      if (err) {
        process.nextTick(() => this.destroy(err));
      } else if (!isIP(ip)) {
        const e = nodeError(TypeError, 'ERR_INVALID_IP_ADDRESS', `Invalid IP address: ${ip}`);
        process.nextTick(() => this.destroy(e));
      } else if (family !== 4 && family !== 6) {
        const e = invalidAddressFamily(family, host, port);
        process.nextTick(() => this.destroy(e));
      } else {
        this._unrefTimer();
        this.#internalConnect(ip, port, family, localAddress, localPort);
      }
    });
  }

  /** Starts a TCP connect to `address`; null when it failed at once (`failed` already called). */
  #startTcp(
    address: string,
    port: number,
    family: number,
    localAddress: string | undefined,
    localPort: number | undefined,
    failed: (e: Error) => void,
  ): boolean {
    let local = '';
    if (localAddress || localPort) local = localAddress || (family === 4 ? '0.0.0.0' : '::');
    this.emit('connectionAttempt', address, port, family);
    // node:net names the local end of a failed connect that was bound to a port.
    const fail =
      local && localPort
        ? (e: Error): void => {
            if ((e as NodeJS.ErrnoException).syscall === 'connect') {
              e.message += ` - Local (${local}:${localPort})`;
              Object.assign(e, { localAddress: local, localPort });
            }
            failed(e);
          }
        : failed;
    // node:net binds the local address as one of the peer's family (uv_ip4_addr / uv_ip6_addr):
    // one of the other family is EINVAL there, before the kernel sees it.
    if (local && isIP(local) !== family) {
      fail(systemError(errnoOf('EINVAL'), 'bind', local, localPort || undefined, false));
      return false;
    }
    const h = native.netTcpConnect(address, port, local, localPort ?? 0, 0, 0, 0);
    if (h < 0) {
      const e = connectError(h, address, port, local, localPort ?? 0);
      // node:net's ExceptionWithHostPort names the local port only when one was asked for.
      fail(e.syscall === 'bind' && !localPort ? systemError(Math.abs(e.errno), 'bind', local, undefined, false) : e);
      return false;
    }
    this.#track(new TcpStream(h), address, port, fail);
    return true;
  }

  #internalConnect(address: string, port: number, family: number, localAddress?: string, localPort?: number): void {
    this.#startTcp(address, port, family, localAddress, localPort, (e) => {
      this.emit('connectionAttemptFailed', address, port, family, e);
      this.destroy(e);
    });
  }

  #connectMultiple(
    err: NodeJS.ErrnoException | null,
    addresses: dns.LookupAddress[],
    host: string,
    options: Record<string, unknown>,
    port: number,
    localPort: number | undefined,
    attemptTimeout: number,
  ): void {
    if (!this.connecting) return;
    if (err) {
      this.emit('lookup', err, undefined, undefined, host);
      process.nextTick(() => this.destroy(err));
      return;
    }
    // Alternate the families, starting with the first address's, each address once (node:net's order).
    const groups: dns.LookupAddress[][] = [[], []];
    const seen = new Set<string>();
    let first: number | undefined;
    for (const a of addresses) {
      this.emit('lookup', err, a.address, a.family, host);
      if (!this.connecting) return;
      if (isIP(a.address) && (a.family === 4 || a.family === 6)) {
        first ??= a.family;
        if (!seen.has(a.address)) {
          seen.add(a.address);
          groups[a.family === first ? 0 : 1].push(a);
        }
      }
    }
    if (groups[0].length === 0) {
      const a = addresses[0];
      const e =
        a === undefined || !isIP(a.address)
          ? nodeError(TypeError, 'ERR_INVALID_IP_ADDRESS', `Invalid IP address: ${a?.address}`)
          : invalidAddressFamily(a.family, options.host, options.port);
      process.nextTick(() => this.destroy(e));
      return;
    }
    const toAttempt: dns.LookupAddress[] = [];
    for (let i = 0; i < Math.max(groups[0].length, groups[1].length); i++) {
      if (i < groups[0].length) toAttempt.push(groups[0][i]);
      if (i < groups[1].length) toAttempt.push(groups[1][i]);
    }
    this._unrefTimer();
    if (toAttempt.length === 1) {
      this.#internalConnect(toAttempt[0].address, port, toAttempt[0].family, undefined, localPort);
      return;
    }
    this.autoSelectFamilyAttemptedAddresses = [];
    const errors: Error[] = [];
    let timer: NodeJS.Timeout | undefined;
    const next = (i: number): void => {
      clearTimeout(timer);
      if (!this.connecting) return;
      if (i === toAttempt.length) {
        const e =
          errors.length === 0
            ? nodeError(Error, 'ERR_SOCKET_CONNECTION_TIMEOUT', 'Socket connection timeout')
            : Object.assign(new AggregateError(errors), { code: (errors[0] as { code?: string }).code });
        this.destroy(e);
        return;
      }
      const { address, family } = toAttempt[i];
      this.autoSelectFamilyAttemptedAddresses!.push(`${address}:${port}`);
      let done = false;
      const started = this.#startTcp(address, port, family, undefined, localPort, (e) => {
        if (done) return;
        done = true;
        errors.push(e);
        this.emit('connectionAttemptFailed', address, port, family, e);
        next(i + 1);
      });
      if (started && i < toAttempt.length - 1) {
        timer = setTimeout(() => {
          if (done || !this.connecting) return;
          done = true;
          this.emit('connectionAttemptTimeout', address, port, family);
          errors.push(errnoError('ETIMEDOUT', 'connect', address, port));
          // Cancel this attempt (its stream closes) and move on.
          const ac = this.#attempt;
          this.#attempt = undefined;
          this.#connectingStream = undefined;
          ac?.abort();
          next(i + 1);
        }, attemptTimeout);
        timer.unref();
      }
    };
    next(0);
  }

  #afterConnect(stream: TcpStream): void {
    if (this.destroyed) {
      stream.close();
      return;
    }
    this.connecting = false;
    this.#sock = undefined;
    this.#attach(stream);
    this._unrefTimer();
    if (!this.#pipe) {
      try {
        if (this.#noDelay) stream.setNoDelay(true);
        if (this.#keepAlive) stream.setKeepAlive(true, this.#keepAliveDelay * 1000);
      } catch {
        /* the connection may already be gone; reads will say so */
      }
    }
    // Run from a promise callback: a throwing listener is an uncaught exception, as in node:net.
    try {
      this.emit('connect');
      this.emit('ready');
      if (this.readable && !this.isPaused()) this.read(0);
    } catch (e) {
      reportUncaught(e);
    }
  }

  // -- stream implementation -------------------------------------------------------------------

  /** @internal */
  override _read(): void {
    const s = this.#stream;
    if (this.connecting || s === undefined) {
      this.once('connect', () => this._read());
      return;
    }
    if (this.#reading) return;
    this.#reading = true;
    if (this.#onread !== undefined) this.#pumpInto(s, this.#onread);
    else this.#pump(s);
  }

  /** `onread`'s loop: reads into the caller's buffer until EOF, an error or a pause. */
  #pumpInto(s: TcpStream, onread: OnReadOpts): void {
    if (this.#onreadPaused) {
      this.#reading = false;
      return;
    }
    const buf = typeof onread.buffer === 'function' ? onread.buffer() : onread.buffer;
    s.read(buf).then(
      (n) => {
        if (this.#stream !== s) return;
        if (n === 0) {
          this.#reading = false;
          this.#endSoon(s);
          return;
        }
        this.#bytesRead += n;
        this._unrefTimer();
        try {
          if (onread.callback.call(this, n, buf) === false) this.#onreadPaused = true;
        } catch (e) {
          reportUncaught(e); // as from node:net's handle: uncaught, and reading goes on
        }
        this.#pumpInto(s, onread);
      },
      (err: Error) => {
        if (this.#stream !== s) return;
        this.#reading = false;
        this.destroy(err);
      },
    );
  }

  /** Stops reading; with `onread`, until `resume()`. */
  override pause(): this {
    if (this.#onread !== undefined) this.#onreadPaused = true;
    return super.pause();
  }

  /** Resumes reading (and, with `onread`, its loop). */
  override resume(): this {
    if (this.#onread !== undefined && this.#onreadPaused) {
      this.#onreadPaused = false;
      if (this.#stream !== undefined && !this.#reading && !this.connecting) this._read();
    }
    return super.resume();
  }

  /**
   * `s` reached its end of stream: ends the readable side from a callback of its own, as node's
   * end of stream comes from libuv's read callback. Sockets that reach EOF in one native batch
   * would otherwise emit 'end' back to back, before code awaiting the first
   * (`await once(a, 'end')`) listens on the next.
   */
  #endSoon(s: TcpStream): void {
    setImmediate(() => {
      if (this.#stream !== s) return;
      this.push(null);
      // As node:net does: a socket nobody reads still ends (and, without allowHalfOpen, ends its
      // side too) once its buffer is empty.
      this.read(0);
    });
  }

  #pump(s: TcpStream): void {
    // Chunks are pushed to us as they arrive (no promise per read); false stops them until the
    // readable buffer drains and _read asks again.
    s._sink((chunk, err) => {
      if (this.#stream !== s) return false;
      if (chunk === undefined) {
        this.#reading = false;
        if (err !== undefined) {
          // A reset found by a write: node:net reports the write's error (its write fails first).
          // Bytes still in kyoto's buffers never left: their callbacks get the error, before the
          // socket's 'error' (as node:net's write callbacks precede it).
          const failed = s._writeError() ?? err;
          if (typeof (failed as { errno?: unknown }).errno === 'number') for (const check of [...this.#checks]) this.#settle(check, failed);
          this.destroy(failed);
          return false;
        }
        this.#endSoon(s);
        return false;
      }
      this.#bytesRead += chunk.length;
      this._unrefTimer();
      if (pushReporting(this, chunk)) return true;
      this.#reading = false;
      return false;
    });
  }

  #send(data: Buffer, cb: (err?: Error | null) => void): void {
    if (this.connecting) {
      this.#pendingData = data;
      const onClose = (): void => {
        cb(nodeError(Error, 'ERR_SOCKET_CLOSED_BEFORE_CONNECTION', 'Socket closed before the connection was established'));
      };
      this.once('connect', () => {
        this.off('close', onClose);
        this.#send(data, cb);
      });
      this.once('close', onClose);
      return;
    }
    this.#pendingData = null;
    const s = this.#stream;
    if (s === undefined) {
      cb(socketClosed());
      return;
    }
    this._unrefTimer();
    this.#bytesDispatched += data.length;
    // Taken at once (as libuv's synchronous write would): the callback runs now, so writableLength
    // stays 0 and write() returns true until kyoto's backlog is full, as node:net's does.
    if (s._writeNow(data)) {
      cb();
      this.#checkTaken(s);
      return;
    }
    // A write still waiting when the socket is destroyed calls back as node:net's does: without
    // an error before Node 22.9; from 22.9 with `write ECANCELED`, libuv's status for a write
    // cut off by the close (or with the write's own system error if it had failed by itself).
    s.write(data).then(
      () => {
        this._unrefTimer(); // a completed write is activity (node:net's kUpdateTimer)
        callReporting(cb);
      },
      (err: Error) => {
        if (!this.destroyed) {
          callReporting(cb, err);
          return;
        }
        const status = !DESTROYED_WRITE_ERRS
          ? null
          : typeof (err as { errno?: unknown }).errno === 'number'
            ? err
            : errnoError('ECANCELED', 'write');
        // node:net's write request is called back by the handle's close, after destroy() emitted
        // 'error': so are the writes buffered behind it (a write callback never precedes it).
        process.nextTick(() => callReporting(cb, status));
      },
    );
  }

  /**
   * Bytes written at once sit in kyoto's write table (then its native backlog) until the kernel
   * takes them: checks, after the table went out this turn, whether it did. A failed write (the
   * peer reset the connection, a broken pipe) destroys the socket with its error, and `write()`
   * callbacks waiting on the check get that error instead of a success, as node:net's writes
   * the kernel refused do.
   */
  #checkTaken(s: TcpStream): void {
    if (this.#check !== undefined && !this.#check.started) return;
    const check: TakenCheck = { started: false, err: undefined, waiting: [] };
    this.#check = check;
    this.#checks.add(check);
    queueMicrotask(() => {
      check.started = true; // bytes written from now on need a check of their own
      flushWrites();
      s.flush().then(
        () => this.#settle(check, null),
        (e: Error) => {
          const failed = s._writeError();
          if (failed !== undefined) {
            this.#settle(check, failed);
            if (this.#stream === s) this.destroy(failed);
          } else if (typeof (e as { errno?: unknown }).errno === 'number') {
            this.#settle(check, e);
          } else {
            // Closed meanwhile (destroy()): as a write still waiting when node:net's socket is
            // destroyed, whose bytes go out with the close.
            this.#settle(check, DESTROYED_WRITE_ERRS ? errnoError('ECANCELED', 'write') : null);
          }
        },
      );
    });
  }

  /** Calls back the writes waiting on `check` (with `err` when their bytes never left). */
  #settle(check: TakenCheck, err: Error | null): void {
    if (check.err !== undefined) return;
    check.err = err;
    this.#checks.delete(check);
    for (const [user, own] of check.waiting.splice(0)) callReporting(user, err ?? own);
  }

  /**
   * Writes `chunk` (see node:net); `cb` learns whether the kernel took it: a write kyoto took at
   * once calls back after its bytes left kyoto's buffers, with the write's error if they never did.
   */
  override write(chunk: unknown, encoding?: BufferEncoding | ((err?: Error | null) => void), cb?: (err?: Error | null) => void): boolean {
    if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    // What node's Writable would turn into an uncoded TypeError: an encoding that cannot even be
    // printed (a view of a detached buffer) is unknown, and a detached chunk is empty, as it reads.
    if (encoding && typeof encoding !== 'string') {
      let shown: string;
      try {
        shown = String(encoding);
      } catch {
        shown = typeof encoding;
      }
      throw nodeError(TypeError, 'ERR_UNKNOWN_ENCODING', `Unknown encoding: ${shown}`);
    }
    if (chunk instanceof Uint8Array && chunk.byteLength === 0) chunk = Buffer.alloc(0);
    if (typeof cb === 'function') {
      const user = cb;
      cb = (err?: Error | null): void => {
        const check = this.#check;
        if ((err !== null && err !== undefined) || check === undefined) user(err);
        else if (check.err === undefined) check.waiting.push([user, err]);
        else user(check.err ?? err);
      };
    }
    return super.write(chunk, encoding as BufferEncoding, cb);
  }

  /** @internal */
  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#send(chunk, cb);
  }

  /** @internal */
  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    this.#send(chunks.length === 1 ? chunks[0].chunk : Buffer.concat(chunks.map((c) => c.chunk)), cb);
  }

  /** @internal */
  override _final(cb: (err?: Error | null) => void): void {
    if (this.pending) {
      this.once('connect', () => this._final(cb));
      return;
    }
    const s = this.#stream;
    if (s === undefined) {
      cb();
      return;
    }
    // Like node:net, a failed shutdown (the peer is gone) still finishes the writable side.
    s.shutdown().then(
      () => callReporting(cb),
      () => callReporting(cb),
    );
  }

  /** @internal */
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    err = errorToReport(err, this);
    this.connecting = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const attempt = this.#attempt;
    this.#attempt = undefined;
    this.#connectingStream = undefined;
    attempt?.abort();
    if (this.#hasHandle) {
      this.#hasHandle = false;
      const s = this.#stream;
      this.#stream = undefined;
      this.#reading = false;
      this.#sock = undefined;
      if (s !== undefined) {
        if (this.#resetting && !this.#pipe) {
          try {
            s.setLinger(0);
          } catch {
            /* already gone */
          }
        }
        this.#resetting = false;
        s.close();
      }
      const hadError = !!err;
      cb(err);
      setImmediate(() => this.emit('close', hadError));
    } else {
      cb(err);
      process.nextTick(() => this.emit('close'));
    }
    const server = this._server;
    if (server !== null) {
      server._connections--;
      server._emitCloseIfDrained();
    }
  }

  // -- methods ---------------------------------------------------------------------------------

  /**
   * Emits `'timeout'` after `msecs` of inactivity (0 disables); `callback` is added for `'timeout'`.
   * The socket stays open: the listener decides (e.g. `socket.end()`).
   */
  setTimeout(msecs: number, callback?: () => void): this {
    if (this.destroyed) return this;
    this.timeout = msecs;
    const ms = timerDuration(msecs, 'msecs');
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (ms === 0) {
      if (callback !== undefined) {
        validateFunction(callback, 'callback');
        this.removeListener('timeout', callback);
      }
    } else {
      this.#timer = setTimeout(() => this._onTimeout(), ms);
      this.#timer.unref();
      if (callback !== undefined) {
        validateFunction(callback, 'callback');
        this.once('timeout', callback);
      }
    }
    return this;
  }

  /**
   * @internal Emits `'timeout'` unless unsent bytes are there and moved since the timer last fired:
   * a large write the peer is slowly taking is activity, as node:net counts it.
   */
  _onTimeout(): void {
    if (this.#stream?._writeMoved() === true) {
      this._unrefTimer();
      return;
    }
    this.emit('timeout');
  }

  /** @internal Restarts the inactivity timer (Node's name; `http` calls it). */
  _unrefTimer(): void {
    this.#timer?.refresh();
  }

  /** Sets `TCP_NODELAY` (default true); remembered until connected. No effect on Unix sockets. */
  setNoDelay(noDelay?: boolean): this {
    const enable = Boolean(noDelay === undefined ? true : noDelay);
    const s = this.#stream;
    if (s === undefined) {
      this.#noDelay = enable;
      return this;
    }
    if (!this.#pipe && enable !== this.#noDelay) {
      this.#noDelay = enable;
      try {
        s.setNoDelay(enable);
      } catch {
        /* closed */
      }
    }
    return this;
  }

  /** Sets `SO_KEEPALIVE` and the idle time before probes (ms, whole seconds used, like Node). */
  setKeepAlive(enable?: boolean, initialDelay?: number): this {
    const on = Boolean(enable);
    // Node coerces the delay with `/ 1000`, which throws an uncoded TypeError for these two.
    if (typeof initialDelay === 'symbol' || typeof initialDelay === 'bigint') {
      throw argType('initialDelay', 'of type number', initialDelay);
    }
    const delay = Math.max(0, ~~(looseNumber(initialDelay ?? 0) / 1000));
    const s = this.#stream;
    if (s === undefined) {
      this.#keepAlive = on;
      this.#keepAliveDelay = delay;
      return this;
    }
    if (this.#pipe) return this;
    if (on !== this.#keepAlive || (on && this.#keepAliveDelay !== delay)) {
      this.#keepAlive = on;
      this.#keepAliveDelay = delay;
      try {
        s.setKeepAlive(on, delay * 1000);
      } catch {
        /* closed */
      }
    }
    return this;
  }

  /** The local address: `{ address, family, port }` (`{}` before connect, after close, and for Unix sockets). */
  address(): AddressInfo | Record<string, never> {
    return this.#getsockname() as AddressInfo;
  }

  #getsockname(): Partial<AddressInfo> {
    const s = this.#stream;
    if (s === undefined || this.#pipe) return {};
    if (this.#sock === undefined) {
      try {
        this.#sock = { ...s.localAddr() };
      } catch {
        return {};
      }
    }
    return this.#sock;
  }

  #getpeername(): Partial<AddressInfo> {
    const s = this.#stream;
    if (s === undefined || this.#pipe || this.connecting) return this.#peer ?? {};
    if (this.#peer === undefined) {
      try {
        this.#peer = { ...(s.peerAddr() as KyotoAddress) };
      } catch {
        return {};
      }
    }
    return this.#peer;
  }

  /** Keeps the process alive while this socket is open (the default). */
  ref(): this {
    if (!this.#hasHandle) {
      this.once('connect', () => this.ref());
      return this;
    }
    this.#refd = true;
    (this.#stream ?? this.#connectingStream)?._setRef(true);
    return this;
  }

  /** Lets the process exit while this socket is open. */
  unref(): this {
    if (!this.#hasHandle) {
      this.once('connect', () => this.unref());
      return this;
    }
    this.#refd = false;
    (this.#stream ?? this.#connectingStream)?._setRef(false);
    return this;
  }

  /** Ends the writable side, then destroys the socket once everything was written. */
  destroySoon(): void {
    if (this.writable) this.end();
    if (this.writableFinished) this.destroy();
    else this.once('finish', () => this.destroy());
  }

  /** Closes a TCP connection with an RST (`SO_LINGER` 0) and destroys the socket. */
  resetAndDestroy(): this {
    if (this.#hasHandle) {
      if (this.#pipe) throw nodeError(TypeError, 'ERR_INVALID_HANDLE_TYPE', 'This handle type cannot be sent');
      if (this.connecting) this.once('connect', () => this._reset());
      else this._reset();
    } else {
      this.destroy(socketClosed());
    }
    return this;
  }

  /** @internal */
  _reset(): this {
    this.#resetting = true;
    return this.destroy();
  }

  /** `'opening'`, `'open'`, `'readOnly'`, `'writeOnly'` or `'closed'`. */
  get readyState(): 'opening' | 'open' | 'readOnly' | 'writeOnly' | 'closed' {
    if (this.connecting) return 'opening';
    if (this.readable && this.writable) return 'open';
    if (this.readable && !this.writable) return 'readOnly';
    if (!this.readable && this.writable) return 'writeOnly';
    return 'closed';
  }

  /** True until the socket is connected (also while connecting). */
  get pending(): boolean {
    return !this.#hasHandle || this.connecting;
  }

  /** Bytes received. */
  get bytesRead(): number {
    return this.#bytesRead;
  }

  /** Bytes written, including those still buffered in the stream. */
  get bytesWritten(): number | undefined {
    const buffer = (this as unknown as { writableBuffer: unknown }).writableBuffer as Array<{ chunk: Buffer | string; encoding: BufferEncoding }> | undefined;
    if (!buffer) return undefined;
    let bytes = this.#bytesDispatched;
    for (const el of buffer) bytes += typeof el.chunk === 'string' ? Buffer.byteLength(el.chunk, el.encoding) : el.chunk.length;
    if (this.#pendingData !== null) bytes += this.#pendingData.length;
    return bytes;
  }

  /** Deprecated in Node: `writableLength`. */
  get bufferSize(): number | undefined {
    return this.#hasHandle ? this.writableLength : undefined;
  }

  /** The peer's IP (undefined until connected, and for Unix sockets). */
  get remoteAddress(): string | undefined {
    return this.#getpeername().address;
  }

  /** `'IPv4'` or `'IPv6'`. */
  get remoteFamily(): string | undefined {
    return this.#getpeername().family;
  }

  /** The peer's port. */
  get remotePort(): number | undefined {
    return this.#getpeername().port;
  }

  /** The local IP. */
  get localAddress(): string | undefined {
    return this.#getsockname().address;
  }

  /** The local port. */
  get localPort(): number | undefined {
    return this.#getsockname().port;
  }

  /** `'IPv4'` or `'IPv6'`. */
  get localFamily(): string | undefined {
    return this.#getsockname().family;
  }
}

function writeAfterFIN(this: Socket, chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
  if (!this.writableEnded) {
    return Socket.prototype.write.call(this, chunk, encoding as BufferEncoding, cb as () => void);
  }
  if (typeof encoding === 'function') cb = encoding;
  const er = nodeError(Error, 'EPIPE', 'This socket has been ended by the other party');
  if (typeof cb === 'function') process.nextTick(cb as (e: Error) => void, er);
  this.destroy(er);
  return false;
}

function onReadableStreamEnd(this: Socket): void {
  if (!this.allowHalfOpen) this.write = writeAfterFIN as Socket['write'];
}

/** `node:net`'s legacy alias of {@link Socket}. */
export const Stream = Socket;

// ---------------------------------------------------------------------------------------------
// Server

/**
 * `node:net`'s `Server`: listens on a TCP port or a Unix socket path and emits `'connection'`
 * with a {@link Socket} per accepted connection, plus `'listening'`, `'close'`, `'error'` and
 * `'drop'` (over `maxConnections`).
 */
export class Server extends EventEmitter {
  /** @internal Open accepted connections (Node's name). */
  _connections = 0;
  /** Connections above this many are closed at once (`'drop'` is emitted). */
  maxConnections: number | undefined = undefined;
  /** Accepted sockets keep their writable side open after the peer ends. */
  allowHalfOpen: boolean;
  /** Accepted sockets start paused. */
  pauseOnConnect: boolean;
  /** `TCP_NODELAY` on accepted sockets. */
  noDelay: boolean;
  /** `SO_KEEPALIVE` on accepted sockets. */
  keepAlive: boolean;
  /** Keep-alive idle time of accepted sockets, seconds. */
  keepAliveInitialDelay: number;
  /** High-water mark of accepted sockets. */
  highWaterMark: number;

  #listener: Acceptor | undefined;
  #pipeName: string | undefined;
  #unref = false;
  #listeningId = 1;
  /** This listen() goes through node:cluster's primary (a worker's, not exclusive; Unix). */
  #inCluster = false;

  /**
   * @param options - `allowHalfOpen`, `pauseOnConnect`, `noDelay`, `keepAlive`,
   * `keepAliveInitialDelay`, `highWaterMark`.
   * @param connectionListener - added for `'connection'`.
   */
  constructor(connectionListener?: (socket: Socket) => void);
  constructor(options?: ServerOpts, connectionListener?: (socket: Socket) => void);
  constructor(options?: ServerOpts | ((socket: Socket) => void), connectionListener?: (socket: Socket) => void) {
    super();
    let opts: ServerOpts;
    if (typeof options === 'function') {
      opts = {};
      this.on('connection', options);
    } else if (options == null || typeof options === 'object') {
      opts = { ...options };
      if (typeof connectionListener === 'function') this.on('connection', connectionListener);
    } else {
      throw argType('options', 'of type object', options);
    }
    if (opts.keepAliveInitialDelay !== undefined) {
      validateNumber(opts.keepAliveInitialDelay, 'options.keepAliveInitialDelay');
      if (opts.keepAliveInitialDelay < 0) opts.keepAliveInitialDelay = 0;
    }
    if (opts.highWaterMark !== undefined) {
      validateNumber(opts.highWaterMark, 'options.highWaterMark');
      if (opts.highWaterMark < 0) opts.highWaterMark = undefined;
    }
    this.allowHalfOpen = opts.allowHalfOpen || false;
    this.pauseOnConnect = !!opts.pauseOnConnect;
    this.noDelay = Boolean(opts.noDelay);
    this.keepAlive = Boolean(opts.keepAlive);
    this.keepAliveInitialDelay = ~~((opts.keepAliveInitialDelay ?? 0) / 1000);
    this.highWaterMark = opts.highWaterMark ?? 16 * 1024;
  }

  /**
   * Starts listening: `listen(port[, host][, backlog][, cb])`, `listen(path[, backlog][, cb])` or
   * `listen({ port, host, path, backlog, ipv6Only, readableAll, writableAll, signal }[, cb])`.
   * Binding happens now (`address()` works on return); `'listening'` (and `cb`) follow, or
   * `'error'` (e.g. `EADDRINUSE` with `syscall: 'listen'`, `address`, `port`).
   */
  listen(port?: number | string, hostname?: string, backlog?: number, listeningListener?: () => void): this;
  listen(port?: number | string, hostname?: string, listeningListener?: () => void): this;
  listen(port?: number | string, backlog?: number, listeningListener?: () => void): this;
  listen(port?: number | string, listeningListener?: () => void): this;
  listen(path: string, backlog?: number, listeningListener?: () => void): this;
  listen(path: string, listeningListener?: () => void): this;
  listen(options: ListenOptions, listeningListener?: () => void): this;
  listen(...args: unknown[]): this {
    const [normalized, cb] = normalizeArgs(args);
    if (this.#listener !== undefined) {
      throw nodeError(Error, 'ERR_SERVER_ALREADY_LISTEN', 'Listen method has been called more than once without closing.');
    }
    if (cb !== null) this.once('listening', cb);
    const backlogFromArgs = toNumber(args.length > 1 && args[1]) || toNumber(args.length > 2 && args[2]);
    // As node:net, whose handle takes the backlog as an int32: `'5'` (say, from an environment
    // variable) is 5, what is no number 0 (then the default).
    const backlog = looseNumber(normalized.backlog || backlogFromArgs || 0) | 0;
    if (normalized._handle || normalized.handle) throw notSupported('net', 'server.listen(handle)');
    const options: Record<string, unknown> = { ...normalized };
    let flags = options.ipv6Only === true ? O_V6_ONLY : 0;
    this.#listeningId++;
    // As node:net: a cluster worker's listen() asks the primary for the port unless exclusive.
    this.#inCluster = options.exclusive !== true && process.platform !== 'win32' && inClusterWorker();
    if (options.reusePort === true) flags |= O_REUSE_PORT;
    if (options.signal !== undefined) {
      validateAbortSignal(options.signal, 'options.signal');
      const off = onAbort(options.signal as AbortSignal, () => this.close());
      this.once('close', off);
    }
    if (typeof options.fd === 'number' && options.fd >= 0) {
      this.#listenOnFd(options.fd, backlog || 511);
      return this;
    }
    if (
      args.length === 0 ||
      typeof args[0] === 'function' ||
      (options.port === undefined && 'port' in options) ||
      options.port === null
    ) {
      options.port = 0;
    }
    if (typeof options.port === 'number' || typeof options.port === 'string') {
      const port = validatePort(options.port, 'options.port');
      if (options.reusePort === true && !REUSE_PORT_SUPPORTED) {
        const host = (options.host as string | undefined) ?? '::';
        process.nextTick(() => this.emit('error', systemError(errnoOf('ENOTSUP'), 'listen', host, port)));
        return this;
      }
      if (options.host) this.#lookupAndListen(port, options.host as string, backlog, flags);
      else if (this.#inCluster) this.#listenInCluster(null, port, 4, backlog, flags);
      else this.#setupListen(null, port, backlog, flags);
      return this;
    }
    if (options.path && isPipeName(options.path)) {
      const path = options.path;
      if (path[0] === '\0' && (options.readableAll || options.writableAll)) {
        throw argValue('options', options, 'can not set readableAll or writableAllt to true when path is abstract unix socket');
      }
      this.#pipeName = path;
      if (this.#inCluster) {
        // The primary binds the path and deals the connections out, as for a port (node:net's
        // readableAll/writableAll have no handle to act on there either).
        this.#listenInCluster(path, -1, -1, backlog, 0);
        return this;
      }
      this.#setupListen(path, -1, backlog, 0);
      if (this.#listener === undefined) return this;
      let mode = 0;
      if (options.readableAll === true) mode |= 0o444;
      if (options.writableAll === true) mode |= 0o222;
      if (mode !== 0) {
        try {
          const st = statSync(path);
          if ((st.mode & mode) !== mode) chmodSync(path, (st.mode | mode) & 0o7777);
        } catch (e) {
          this.#closeListener();
          throw Object.assign(e as Error, { syscall: 'uv_pipe_chmod' });
        }
      }
      return this;
    }
    if (!('port' in options || 'path' in options)) {
      throw argValue('options', options, 'must have the property "port" or "path"');
    }
    throw argValue('options', options);
  }

  #lookupAndListen(port: number, address: string, backlog: number, flags: number): void {
    const id = this.#listeningId;
    dns.lookup(address, (err, ip) => {
      if (id !== this.#listeningId) return;
      if (err) this.emit('error', err);
      else if (this.#inCluster) this.#listenInCluster(ip, port, isIPv6(ip) ? 6 : 4, backlog, flags);
      else this.#setupListen(ip, port, backlog, flags);
    });
  }

  /** `listen({ fd })`: serves on an inherited socket; node:net reports any unusable one as EINVAL. */
  #listenOnFd(fd: number, backlog: number): void {
    if (process.platform === 'win32') throw notSupported('net', 'server.listen({ fd }) on Windows');
    const [h, what] = native.netAdoptFd(fd, true, backlog);
    if (h < 0) {
      process.nextTick(() => this.emit('error', systemError(errnoOf('EINVAL'), 'listen')));
      return;
    }
    this.#startListening(what === ADOPTED_UNIX_LISTENER ? new UnixListener(h) : new TcpListener(h));
  }

  /** Binds and listens now (`port` -1: `address` is a Unix path); errors go to `'error'`. */
  #setupListen(address: string | null, port: number, backlog: number, flags: number): void {
    let l: Acceptor;
    const bl = backlog || 511;
    try {
      if (port === -1) {
        l = unixListen(address!, bl);
      } else if (!address) {
        try {
          l = listenTcp('::', port, bl, flags, 0, 0);
        } catch (e) {
          // node:net falls back to IPv4 when IPv6 is unavailable; EADDRINUSE is reported for '::'.
          if ((e as { code?: string }).code === 'EADDRINUSE') throw e;
          l = listenTcp('0.0.0.0', port, bl, flags & ~O_V6_ONLY, 0, 0);
        }
      } else {
        l = listenTcp(address, port, bl, flags, 0, 0);
      }
    } catch (e) {
      process.nextTick(() => this.emit('error', e));
      return;
    }
    this.#startListening(l);
  }

  #startListening(l: Acceptor): void {
    this.#listener = l;
    if (this.#unref) l.unref();
    void this.#acceptLoop(l);
    process.nextTick(() => {
      if (this.#listener === l) this.emit('listening');
    });
  }

  /**
   * A cluster worker's listen, as node:net's `listenInCluster`: node:cluster's `_getServer` asks
   * the primary, which binds the port once for every worker, and answers with a handle (see
   * {@link ClusterAcceptor}); it also tells the primary when this server emits `'listening'`.
   */
  #listenInCluster(address: string | null, port: number, addressType: number, backlog: number, flags: number): void {
    const id = this.#listeningId;
    const query = { address, port, addressType, fd: undefined, flags, backlog };
    getClusterServer<ClusterHandle>(this, query, (err, handle) => {
      if (id !== this.#listeningId) {
        handle?.close();
        return;
      }
      if (err === 0 && handle?.getsockname !== undefined && port > 0) {
        // node:net's checkBindError: a port-0 listen elsewhere must not end up on another port.
        const out: Record<string, unknown> = {};
        handle.getsockname(out);
        if (out.port !== port) err = errnoOf('EADDRINUSE') * -1;
      }
      let l: Acceptor;
      try {
        if (err !== 0 || handle === null) throw systemError(Math.abs(err), 'bind', String(address), port, false);
        l = new ClusterAcceptor(handle, backlog || 511, (cb) => this.close(cb));
      } catch (e) {
        handle?.close();
        this.emit('error', e);
        return;
      }
      this.#startListening(l);
    });
  }

  async #acceptLoop(l: Acceptor): Promise<void> {
    for (;;) {
      let s: TcpStream;
      try {
        [s] = await l.accept();
      } catch (e) {
        if (this.#listener !== l) return;
        // The listener's runtime is gone (`Runtime.default().shutdown()`): no accept can succeed,
        // so the server closes.
        if (isRuntimeShutdown(e as Error)) {
          if (errorToReport(e as Error, this) !== null) callReporting(() => this.emit('error', e));
          if (this.#listener === l) this.close();
          return;
        }
        // Like node:net: report it (with no 'error' listener, as an uncaught exception) and keep
        // listening, a later accept may succeed.
        await new Promise((r) => setImmediate(r));
        continue;
      }
      if (this.#listener !== l) {
        s.close();
        return;
      }
      // 'connection' from a callback of its own, as node's from libuv's: connections accepted
      // in one native batch would otherwise emit back to back, before code awaiting the first
      // (`await once(server, 'connection')`) listens for the next.
      setImmediate(() => {
        if (this.#listener !== l) {
          s.close(); // closed meanwhile
          return;
        }
        try {
          this.#onConnection(s);
        } catch (e) {
          // A throwing 'connection' listener is an uncaught exception, as with node:net.
          reportUncaught(e);
        }
      });
    }
  }

  #onConnection(s: TcpStream): void {
    const pipe = s instanceof UnixStream || s instanceof NamedPipe;
    if (this.maxConnections && this._connections >= this.maxConnections) {
      if (pipe) {
        this.emit('drop');
      } else {
        const data: Record<string, unknown> = {};
        try {
          const local = s.localAddr();
          data.localAddress = local.address;
          data.localPort = local.port;
          data.localFamily = local.family;
          const remote = s.peerAddr();
          data.remoteAddress = remote.address;
          data.remotePort = remote.port;
          data.remoteFamily = remote.family;
        } catch {
          /* gone already */
        }
        this.emit('drop', data);
      }
      s.close();
      return;
    }
    const socket = new Socket({
      [kAccepted]: s,
      allowHalfOpen: this.allowHalfOpen,
      pauseOnCreate: this.pauseOnConnect,
      readable: true,
      writable: true,
      readableHighWaterMark: this.highWaterMark,
      writableHighWaterMark: this.highWaterMark,
    } as SocketConstructorOpts);
    if (this.noDelay && !pipe) socket.setNoDelay(true);
    if (this.keepAlive && !pipe) socket.setKeepAlive(true, this.keepAliveInitialDelay * 1000);
    this._connections++;
    socket.server = this;
    socket._server = this;
    this.emit('connection', socket);
  }

  /** Whether the server is listening. */
  get listening(): boolean {
    return this.#listener !== undefined;
  }

  /** `{ address, family, port }`, the path for a Unix socket server, or null when not listening. */
  address(): AddressInfo | string | null {
    const l = this.#listener;
    if (l !== undefined && this.#pipeName === undefined) {
      const a = l.localAddr();
      return { address: a.address, family: a.family, port: a.port };
    }
    if (this.#pipeName !== undefined) return this.#pipeName;
    return null;
  }

  #closeListener(): void {
    const l = this.#listener;
    if (l === undefined) return;
    this.#listener = undefined;
    l.close();
    if (this.#pipeName !== undefined && this.#pipeName[0] !== '\0' && !(l instanceof ClusterAcceptor)) {
      // libuv unlinks a pipe server's path when it closes; so does this (a cluster worker's path
      // is the primary's to remove).
      try {
        unlinkSync(this.#pipeName);
      } catch {
        /* already gone */
      }
    }
  }

  /**
   * Stops accepting; `'close'` (and `cb`) follow once every accepted connection has closed.
   * `cb` gets `ERR_SERVER_NOT_RUNNING` when the server was not listening.
   */
  close(cb?: (err?: Error) => void): this {
    this.#listeningId++;
    if (typeof cb === 'function') {
      if (this.#listener === undefined) {
        this.once('close', () => cb(nodeError(Error, 'ERR_SERVER_NOT_RUNNING', 'Server is not running.')));
      } else {
        this.once('close', cb);
      }
    }
    this.#closeListener();
    this._emitCloseIfDrained();
    return this;
  }

  /** Closes the server (resolves on `'close'`). */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#listener === undefined) return;
    await new Promise<void>((resolve, reject) => this.close((e) => (e ? reject(e) : resolve())));
  }

  /** @internal Emits `'close'` once not listening and no connection is open. */
  _emitCloseIfDrained(): void {
    if (this.#listener !== undefined || this._connections > 0) return;
    process.nextTick(() => this.emit('close'));
  }

  /**
   * With `captureRejections`, a rejected async `'connection'` listener destroys that connection
   * with the error (as node:net does); any other event's rejection becomes the server's `'error'`.
   */
  override [EventEmitter.captureRejectionSymbol](err: Error, event: string | symbol, ...args: unknown[]): void {
    if (event === 'connection') (args[0] as Socket).destroy(err);
    else this.emit('error', err);
  }

  /** Calls `cb(null, count)` with the number of open connections. */
  getConnections(cb: (error: Error | null, count: number) => void): this {
    process.nextTick(cb, null, this._connections);
    return this;
  }

  /** Keeps the process alive while listening (the default). */
  ref(): this {
    this.#unref = false;
    this.#listener?.ref();
    return this;
  }

  /** Lets the process exit while listening. */
  unref(): this {
    this.#unref = true;
    this.#listener?.unref();
    return this;
  }
}

// ---------------------------------------------------------------------------------------------
// Factories

/** `new Server(options, connectionListener)`. */
export function createServer(connectionListener?: (socket: Socket) => void): Server;
export function createServer(options?: ServerOpts, connectionListener?: (socket: Socket) => void): Server;
export function createServer(
  options?: ServerOpts | ((socket: Socket) => void),
  connectionListener?: (socket: Socket) => void,
): Server {
  return new Server(options as ServerOpts, connectionListener);
}

/**
 * A new {@link Socket} connecting to `options` (`{ port, host, path, … }`), `path` or
 * `port[, host]`; `connectionListener` is added for `'connect'`.
 */
export function connect(options: NetConnectOpts, connectionListener?: () => void): Socket;
export function connect(port: number | string, host?: string, connectionListener?: () => void): Socket;
export function connect(port: number | string, connectionListener?: () => void): Socket;
export function connect(path: string, connectionListener?: () => void): Socket;
export function connect(...args: unknown[]): Socket {
  const normalized = normalizeArgs(args);
  const options = normalized[0];
  const socket = new Socket(options as SocketConstructorOpts);
  if (options.timeout) socket.setTimeout(options.timeout as number);
  return socket.connect(normalized as unknown as NetConnectOpts);
}

/** Same as {@link connect}. */
export const createConnection: typeof connect = connect;

let warnSimultaneousAccepts = true;
/**
 * Deprecated in node:net (DEP0121) and a no-op here, as it is there outside Windows (kyoto's
 * Windows listeners have no such switch): warns once.
 */
export function _setSimultaneousAccepts(): void {
  if (!warnSimultaneousAccepts) return;
  warnSimultaneousAccepts = false;
  process.emitWarning('net._setSimultaneousAccepts() is deprecated and will be removed.', 'DeprecationWarning', 'DEP0121');
}

// ---------------------------------------------------------------------------------------------
// Calls without `new`

/** `C`, callable without `new` too (as node:net's function constructors are). */
function callableWithoutNew<C extends new (...args: never[]) => object>(cls: C): C {
  return new Proxy(cls, {
    apply: (target, _this, args: unknown[]) => Reflect.construct(target, args) as object,
  });
}

// `net.Socket()`, `net.Stream()` and `net.Server()` work on node:net (old code and Node's own
// tests call them so), where an ES class throws. The exports are swapped for callable proxies of
// the classes: `new`, `instanceof`, `extends` and `.prototype` reach the class itself.
{
  const socket = callableWithoutNew(Socket);
  Object.assign(exports, { Socket: socket, Stream: socket, Server: callableWithoutNew(Server) });
}
