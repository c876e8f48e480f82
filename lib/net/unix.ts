/**
 * Unix domain sockets: `UnixStream` (a `TcpStream` on a Unix socket, with `pair()` and
 * `peerCred()`), `UnixListener` and `UnixDatagram`. On Windows every entry point throws
 * `ERR_FEATURE_UNAVAILABLE_ON_PLATFORM`.
 * @module
 */
import { native } from '../native';
import type { RuntimeOption } from '../runtime';
import { codedError, invalidArgType, invalidArgValue, optionsBag } from '../errors';
import {
  K_DGRAM,
  K_DRAIN,
  K_ERROR,
  SYSCALLS,
  hold,
  pinRuntime,
  rarena,
  copyFromArena,
  register,
  systemError,
  unregister,
  type SocketAddress,
} from './core';
import { DatagramQueue } from './dgram-queue';
import {
  isRuntimeShutdown,
  rejectAll,
  socketRuntime,
  openSocket,
  DGRAM_HWM,
  checkSignal,
  withSignal,
  removeWaiter,
  toBytes,
  closedError,
} from './common';
import type { AddressLike, SignalOption } from './types';
import { TcpStream, waitConnected } from './tcp-stream';
import { TcpListener } from './tcp-listener';

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
    const h = openSocket(opts, (nrt) => native.netUnixConnect(path, nrt), 'connect', path);
    return waitConnected(new UnixStream(h), path, -1, opts.signal);
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
    return new UnixListener(openSocket(opts, (nrt) => native.netUnixListen(path, backlog, nrt), 'listen', path));
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
    const opts = optionsBag<RuntimeOption>(options);
    return new UnixDatagram(openSocket(opts, (nrt) => native.netUnixDgram(path, nrt), 'bind', path));
  }

  /** An unbound socket (it can send, and receive once connected or on a pair). */
  static unbound(options?: RuntimeOption): UnixDatagram {
    if (!UNIX_SOCKETS) unixOnly();
    const opts = optionsBag<RuntimeOption>(options);
    return new UnixDatagram(openSocket(opts, (nrt) => native.netUnixDgram('', nrt), 'socket'));
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
      return () => removeWaiter(this.#waiters, w);
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
    rejectAll(this.#waiters, closedError());
  }

  /** Closes the socket. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}
