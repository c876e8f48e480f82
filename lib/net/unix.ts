/**
 * Unix domain sockets: `UnixStream` (a `TcpStream` on a Unix socket, with `pair()` and
 * `peerCred()`), `UnixListener` and `UnixDatagram`. On Windows every entry point throws
 * `ERR_FEATURE_UNAVAILABLE_ON_PLATFORM`.
 * @module
 */
import { native } from '../native';
import { settleNow } from '../runtime/coop';
import type { RuntimeOption } from '../runtime';
import { codedError, invalidArgType, invalidArgValue, optionsBag, validateInteger } from '../errors';
import { K_DGRAM, K_DRAIN, K_ERROR, SYSCALLS, pinRuntime, rarena, register, systemError, unregister, type SocketAddress } from './core';
import { DgramCore, type Datagram } from './dgram-core';
import { socketRuntime, openSocket, checkSignal, toBytes, closedError, MAX_BACKLOG } from './common';
import type { AddressLike, SignalOption } from './types';
import { TcpStream, waitConnected } from './tcp-stream';
import { TcpListener } from './tcp-listener';
import { freshResource } from '../runtime/unclaimed';

/**
 * The address of a Unix domain socket (`path` is `''` for an unnamed socket). On Linux a path
 * that starts with a NUL (`'\0name'`) is an abstract name, given back the same way, as node:net
 * does. A NUL anywhere else is refused (`ERR_INVALID_ARG_VALUE`).
 */
export interface UnixSocketAddress {
  /** The socket's path. */
  path: string;
}

function unixAddr(s: string, syscall: string): UnixSocketAddress {
  if (s.startsWith('!')) throw systemError(Number(s.slice(1)), syscall);
  // `u|<path>|0`: the path is everything between the first and the last `|` (it may hold some).
  const end = s.lastIndexOf('|');
  return { path: end > 1 ? s.slice(2, end) : '' };
}

/** Linux has abstract socket names: a path that starts with a NUL. */
const ABSTRACT_NAMES = process.platform === 'linux';

function validatePath(path: unknown): asserts path is string {
  if (typeof path !== 'string') throw invalidArgType('path', 'of type string', path);
  if (path === '') throw invalidArgValue('path', 'must not be empty', path);
  // The kernel reads a path up to its first NUL: one further on would silently name another
  // socket. A leading one starts an abstract name, on Linux.
  if (path.indexOf('\0', ABSTRACT_NAMES ? 1 : 0) >= 0) {
    throw invalidArgValue('path', `must not contain a NUL byte${ABSTRACT_NAMES ? ' (except a leading one, for an abstract name)' : ''}`, path);
  }
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

/** Closes both sockets of a pair nobody can claim. */
function closeBoth(p: [{ close(): void }, { close(): void }]): void {
  p[0].close();
  p[1].close();
}

/** {@link UnixStream.connect}'s work. */
async function connectUnix(path: AddressLike | string, options: (SignalOption & RuntimeOption) | undefined): Promise<UnixStream> {
  validatePath(path);
  const opts = optionsBag<SignalOption & RuntimeOption>(options);
  checkSignal(opts.signal);
  if (!UNIX_SOCKETS) unixOnly();
  const h = openSocket(opts, (nrt) => native.netUnixConnect(path, nrt), 'connect', path);
  return waitConnected(new UnixStream(h), path, -1, opts.signal);
}

/** A connected Unix domain stream socket: the methods of {@link TcpStream}, plus {@link UnixStream.peerCred}. */
export class UnixStream extends TcpStream {
  /**
   * Connects to the socket at `path`. The stream is the caller's alone: a losing `select()`
   * branch's (or a `timeout()`'s that elapsed) is closed.
   */
  static override connect(path: AddressLike | string, options?: SignalOption & RuntimeOption): Promise<UnixStream> {
    return freshResource(connectUnix(path, options), (s) => s.close());
  }

  /** A connected pair of Unix streams (like `socketpair(2)`). */
  static pair(options?: RuntimeOption): [UnixStream, UnixStream] {
    return freshResource(UnixStream.#pair(options), closeBoth);
  }

  static #pair(options: RuntimeOption | undefined): [UnixStream, UnixStream] {
    if (!UNIX_SOCKETS) unixOnly();
    const [rt, nrt] = socketRuntime(optionsBag<RuntimeOption>(options));
    const r = native.netUnixPair(nrt);
    if (r.length === 1) throw systemError(-r[0], 'socketpair');
    pinRuntime(r[0], rt);
    pinRuntime(r[1], rt);
    return [new UnixStream(r[0]), new UnixStream(r[1])];
  }

  /** The local address. Throws `ERR_SOCKET_CLOSED` once the stream is closed, as its waits reject. */
  override localAddr(): SocketAddress & UnixSocketAddress {
    if (this.closed) throw closedError();
    return unixAddr(native.netAddr(this._h, false), 'getsockname') as SocketAddress & UnixSocketAddress;
  }

  /** The peer's address. Throws `ERR_SOCKET_CLOSED` once the stream is closed, as its waits reject. */
  override peerAddr(): SocketAddress & UnixSocketAddress {
    if (this.closed) throw closedError();
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

/** Options of {@link UnixListener.bind}. */
export interface UnixBindOptions extends SignalOption, RuntimeOption {
  /** Listen backlog (default 1024). */
  backlog?: number;
}

/** A listening Unix domain socket. Keeps the process alive until closed or `unref()`ed. */
export class UnixListener extends TcpListener {
  /**
   * Binds and listens on `path` (which must not exist). An already aborted `signal` rejects with
   * its reason (or an `AbortError`, `ABORT_ERR`) and binds nothing, as {@link TcpListener.bind}.
   */
  static override bind(path: AddressLike | string, options?: UnixBindOptions): Promise<UnixListener> {
    // Only its caller holds the listener: a losing select() branch's is closed.
    return freshResource(UnixListener.#bind(path, options), (l) => l.close());
  }

  static async #bind(path: AddressLike | string, options: UnixBindOptions | undefined): Promise<UnixListener> {
    validatePath(path);
    const opts = optionsBag<UnixBindOptions>(options);
    checkSignal(opts.signal);
    if (!UNIX_SOCKETS) unixOnly();
    const backlog = opts.backlog ?? 1024;
    validateInteger(backlog, 'options.backlog', 1, MAX_BACKLOG);
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

  /** The bound path. Throws `ERR_SOCKET_CLOSED` once the listener is closed, as `accept()` rejects. */
  override localAddr(): SocketAddress & UnixSocketAddress {
    return unixAddr(this._addr(), 'getsockname') as SocketAddress & UnixSocketAddress;
  }
}

/**
 * A Unix domain datagram socket: the methods of {@link UdpSocket}, with paths for addresses
 * (`{ path }`; `''` for an unnamed sender). Datagrams up to 2 MiB are received whole (Linux caps
 * one by the sender's `SO_SNDBUF`, 208 KiB unless raised); beyond that, as beyond the buffer
 * given to a receive, the excess is discarded.
 */
export class UnixDatagram {
  /** @internal */ readonly _h: number;
  readonly #core: DgramCore<UnixSocketAddress>;

  private constructor(h: number) {
    this._h = h;
    this.#core = new DgramCore(h);
    register(h, this);
  }

  /** Binds to `path`. */
  static bind(path: string, options?: RuntimeOption): UnixDatagram {
    validatePath(path);
    if (!UNIX_SOCKETS) unixOnly();
    const opts = optionsBag<RuntimeOption>(options);
    const d = new UnixDatagram(openSocket(opts, (nrt) => native.netUnixDgram(path, nrt), 'bind', path));
    return freshResource(d, (s) => s.close()); // a losing select() branch's is closed
  }

  /** An unbound socket (it can send, and receive once connected or on a pair). */
  static unbound(options?: RuntimeOption): UnixDatagram {
    if (!UNIX_SOCKETS) unixOnly();
    const opts = optionsBag<RuntimeOption>(options);
    const d = new UnixDatagram(openSocket(opts, (nrt) => native.netUnixDgram('', nrt), 'socket'));
    return freshResource(d, (s) => s.close());
  }

  /** A connected pair. */
  static pair(options?: RuntimeOption): [UnixDatagram, UnixDatagram] {
    if (!UNIX_SOCKETS) unixOnly();
    const [rt, nrt] = socketRuntime(optionsBag<RuntimeOption>(options));
    const r = native.netUnixDgramPair(nrt);
    if (r.length === 1) throw systemError(-r[0], 'socketpair');
    pinRuntime(r[0], rt);
    pinRuntime(r[1], rt);
    return freshResource<[UnixDatagram, UnixDatagram]>([new UnixDatagram(r[0]), new UnixDatagram(r[1])], closeBoth);
  }

  /** @internal */
  onEvent(kind: number, a: number, b: number, off: number, len: number): void {
    if (kind === K_DGRAM) {
      const path = b > 0 ? rarena.toString('utf8', off + len, off + len + b) : '';
      this.#core.deliver(off, len, { path });
    } else if (kind === K_ERROR) {
      this.#core.fail(systemError(a, SYSCALLS[b] ?? 'recv'));
    } else if (kind === K_DRAIN) {
      this.#core.drained();
    }
  }

  #recv<T>(kind: 0 | 1 | 2, buf: Uint8Array, signal: AbortSignal | undefined): Promise<T> {
    if (!(buf instanceof Uint8Array)) return Promise.reject(invalidArgType('buf', 'an instance of Uint8Array', buf));
    return this.#core.recv(kind, buf, 0, signal);
  }

  /** Receives one datagram into `buf` (excess bytes are discarded); resolves with its length. */
  recv(buf: Uint8Array, options?: SignalOption): Promise<number> {
    return this.#recv(0, buf, options?.signal);
  }

  /** Receives one datagram: `{ bytes, address: { path } }`. */
  recvFrom(buf: Uint8Array, options?: SignalOption): Promise<{ bytes: number; address: UnixSocketAddress }> {
    return this.#recv(1, buf, options?.signal);
  }

  /** Like {@link UnixDatagram.recvFrom} but leaves the datagram queued. */
  peekFrom(buf: Uint8Array, options?: SignalOption): Promise<{ bytes: number; address: UnixSocketAddress }> {
    return this.#recv(2, buf, options?.signal);
  }

  /**
   * Receives up to `max` datagrams at once: those already queued, or, when none is, waits for at
   * least one and resolves with the whole burst it arrived in (up to `max`), in order.
   */
  recvMany(max = 64, options?: SignalOption): Promise<Array<Datagram<UnixSocketAddress>>> {
    try {
      validateInteger(max, 'max', 1, 0x7fffffff);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#core.recv(3, undefined, max, options?.signal);
  }

  /** One datagram to `path`, or to the connected peer when `path` is undefined. */
  #send(data: Uint8Array | string, path: string | undefined, signal: AbortSignal | undefined): Promise<number> {
    let bytes: Uint8Array;
    try {
      bytes = toBytes(data);
      if (path !== undefined) validatePath(path);
      if (signal !== undefined) checkSignal(signal);
    } catch (e) {
      return Promise.reject(e);
    }
    if (this.#core.closed) return Promise.reject(closedError());
    const dead = this.#core.deadError;
    if (dead !== undefined) return Promise.reject(dead);
    const r = native.netUnixDgramSend(this._h, bytes, path ?? '');
    if (r < 0) return Promise.reject(systemError(-r, 'send', path || undefined));
    if (r === 1) return this.#core.waitDrain(signal).then(() => bytes.length);
    return settleNow(bytes.length);
  }

  /**
   * Sends one datagram to the connected peer (see {@link UdpSocket.send}: an abort ends the wait
   * only, and a close before the datagram went out rejects with `ERR_SOCKET_CLOSED`).
   */
  send(data: Uint8Array | string, options?: SignalOption): Promise<number> {
    return this.#send(data, undefined, options?.signal);
  }

  /** Sends one datagram to the socket at `path`. */
  sendTo(data: Uint8Array | string, path: string, options?: SignalOption): Promise<number> {
    return this.#send(data, path, options?.signal);
  }

  /**
   * Sends several datagrams in order (`address` a `{ path }` or a path; none: the connected
   * peer); resolves with how many were sent. On a failure the ones before it were sent.
   */
  async sendMany(
    msgs: ReadonlyArray<{ data: Uint8Array | string; address?: UnixSocketAddress | string }>,
    options?: SignalOption,
  ): Promise<number> {
    if (!Array.isArray(msgs)) throw invalidArgType('msgs', 'an array', msgs);
    for (let i = 0; i < msgs.length; i++) {
      const m: unknown = msgs[i];
      if (typeof m !== 'object' || m === null) throw invalidArgType(`msgs[${i}]`, 'an object with data and address', m);
      const { data, address } = m as { data: Uint8Array | string; address?: UnixSocketAddress | string };
      const path = typeof address === 'object' && address !== null ? address.path : address;
      // No address, or an unnamed one (`{ path: '' }`, as `recvMany` reports a pair's peer): the
      // connected peer.
      await this.#send(data, path === '' || path == null ? undefined : path, options?.signal);
    }
    return msgs.length;
  }

  /** Connects to `path`: `send` goes there and only its datagrams are received. */
  connect(path: string): void {
    validatePath(path);
    if (this.#core.closed) throw closedError();
    const r = native.netUnixDgramConnect(this._h, path);
    if (r < 0) throw systemError(-r, 'connect', path);
  }

  /** The bound address. Throws `ERR_SOCKET_CLOSED` once the socket is closed, as its waits reject. */
  localAddr(): UnixSocketAddress {
    if (this.#core.closed) throw closedError();
    return unixAddr(native.netAddr(this._h, false), 'getsockname');
  }

  /** The connected peer's address. Throws `ERR_SOCKET_CLOSED` once the socket is closed, as its waits reject. */
  peerAddr(): UnixSocketAddress {
    if (this.#core.closed) throw closedError();
    return unixAddr(native.netAddr(this._h, true), 'getpeername');
  }

  /** Lets pending receives and sends keep the process alive (the default). Returns `this`. */
  ref(): this {
    this.#core.holds.setRef(true);
    return this;
  }

  /** Stops pending receives and sends from keeping the process alive. Returns `this`. */
  unref(): this {
    this.#core.holds.setRef(false);
    return this;
  }

  /** Closes the socket; pending receives and blocked sends reject with `ERR_SOCKET_CLOSED`. */
  close(): void {
    if (this.#core.closed) return;
    this.#core.close();
    native.netClose(this._h);
    unregister(this._h);
  }

  /** Closes the socket. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}
