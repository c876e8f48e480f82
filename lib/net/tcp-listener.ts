/**
 * `TcpListener`: a listening socket whose accepted connections arrive as events of the native
 * batch and wait in a queue until `accept()` or iteration takes them. Also the base of
 * `UnixListener`.
 * @module
 */
import { native, type NativeRuntime } from '../native';
import { Runtime, type RuntimeOption } from '../runtime';
import { invalidArgType, optionsBag, validateInteger } from '../errors';
import {
  K_ACCEPT,
  K_ERROR,
  hold,
  parseNativeAddr,
  pinRuntime,
  rarena,
  register,
  pinnedRuntime,
  systemError,
  unregister,
  v4Address,
  v6Address,
  ADDR_SCOPED,
  type SocketAddress,
} from './core';
import {
  isRuntimeShutdown,
  openSocket,
  resolveHostAll,
  splitAddr,
  checkSignal,
  signalRejection,
  untilAborted,
  withSignal,
  MAX_BACKLOG,
  closedError,
  O_REUSE_ADDR,
  O_REUSE_PORT,
} from './common';
import type { AddressLike, SignalOption } from './types';
import { TcpStream } from './tcp-stream';
import { freshResource } from '../runtime/unclaimed';

/** Options of {@link TcpListener.bind}. */
export interface BindOptions extends SignalOption, RuntimeOption {
  /** Listen backlog (default 1024). */
  backlog?: number;
  /** `SO_REUSEADDR` (always on for listeners on Unix, like Node). */
  reuseAddr?: boolean;
  /** `SO_REUSEPORT`. */
  reusePort?: boolean;
}

/** @internal Opens a listening TCP socket (flags `O_*`, buffer sizes 0 = the system's). */
export function listenTcp(
  host: string,
  port: number,
  backlog: number,
  flags: number,
  snd: number,
  rcv: number,
  runtime?: Runtime,
): TcpListener {
  const open = (nrt: NativeRuntime | undefined): number =>
    native.netTcpListen(host, port, backlog, flags, snd, rcv, nrt);
  return new TcpListener(openSocket({ runtime }, open, 'listen', host, port));
}

/** {@link TcpListener.bind}'s work. */
async function bindTcp(addr: AddressLike, options: BindOptions | undefined): Promise<TcpListener> {
  const opts = optionsBag<BindOptions>(options);
  for (const k of ['reuseAddr', 'reusePort'] as const) {
    if (opts[k] !== undefined && typeof opts[k] !== 'boolean') throw invalidArgType(`options.${k}`, 'of type boolean', opts[k]);
  }
  checkSignal(opts.signal);
  const backlog = opts.backlog ?? 1024;
  validateInteger(backlog, 'options.backlog', 1, MAX_BACKLOG);
  const { host, port } = splitAddr(addr);
  const ips = await untilAborted(resolveHostAll(host), opts.signal);
  const flags = (opts.reuseAddr ? O_REUSE_ADDR : 0) | (opts.reusePort ? O_REUSE_PORT : 0);
  // The first address that binds; none: the last one's error (Tokio's bind).
  let err: unknown;
  for (const ip of ips) {
    try {
      return listenTcp(ip, port, backlog, flags, 0, 0, opts.runtime);
    } catch (e) {
      err = e;
    }
  }
  throw err;
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
    const addr = len === 4 ? v4Address(rarena.readUInt32BE(off), port) : v6Address(off, port, (b & ADDR_SCOPED) !== 0);
    return [new TcpStream(h, addr), addr];
  }
  #refd = true;
  #closed = false;
  /** Its runtime shut down: it neither accepts nor holds the process again. */
  #dead = false;
  #err: Error | undefined;

  /** @internal */
  constructor(h: number) {
    this._h = h;
    register(h, this);
    hold(1);
  }

  /**
   * Binds and listens on `addr` (port 0 picks a free port; see {@link TcpListener.localAddr}). A
   * host name's addresses are tried in turn: the first that binds is used.
   */
  static bind(addr: AddressLike, options?: BindOptions): Promise<TcpListener> {
    // Only its caller holds the listener: a losing select() branch's is closed.
    return freshResource(bindTcp(addr, options), (l) => l.close());
  }

  /** @internal */
  onEvent(kind: number, a: number, b: number, off: number, len: number): void {
    if (kind === K_ACCEPT) {
      const [s, addr] = this._adopt(a, b, off, len);
      pinRuntime(a, pinnedRuntime(this._h));
      const w = this.#waiters.shift();
      if (w) {
        if (this.#waiters.length === 0) this.#arm(false);
        w[0]([s, addr]);
      } else {
        this.#queue.push([s, addr]);
        if (this.#queue.length >= 128) this.#arm(false);
      }
    } else if (kind === K_ERROR) {
      const err = systemError(a, 'accept');
      this.#armed = false;
      const waiting = this.#waiters.splice(0);
      // The accepts waiting now take the error; only with none is it kept for the next one (a dead
      // runtime's is kept regardless: it fails every later call).
      if (waiting.length === 0 || isRuntimeShutdown(err)) this.#err = err;
      for (const [, rej] of waiting) rej(err);
      // A listener whose runtime is gone can never accept again: it stops holding the process.
      if (isRuntimeShutdown(err)) {
        if (this.#refd) hold(-1);
        this.#refd = false;
        this.#dead = true;
      }
    }
  }

  #arm(on: boolean): void {
    if (this.#armed === on || this.#closed) return;
    this.#armed = on;
    native.netArm(this._h, on);
  }

  /**
   * Waits for a connection: `[stream, peerAddress]`. The stream is the caller's alone: a losing
   * `select()` branch's (or a `timeout()`'s that elapsed) is closed.
   */
  accept(options?: SignalOption): Promise<[TcpStream, SocketAddress]> {
    return freshResource(this.#accept(options), (v) => v[0].close());
  }

  #accept(options: SignalOption | undefined): Promise<[TcpStream, SocketAddress]> {
    const stop = signalRejection(options?.signal);
    if (stop !== undefined) return stop;
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

  /** The bound address. Throws `ERR_SOCKET_CLOSED` once the listener is closed, as `accept()` rejects. */
  localAddr(): SocketAddress {
    return parseNativeAddr(this._addr(), 'getsockname');
  }

  /** @internal The native `getsockname` answer; throws `ERR_SOCKET_CLOSED` once closed. */
  _addr(): string {
    if (this.#closed) throw closedError();
    return native.netAddr(this._h, false);
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
    if (!this.#refd && !this.#closed && !this.#dead) {
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
    this.#refd = false;
    native.netClose(this._h);
    unregister(this._h);
    for (const [, rej] of this.#waiters.splice(0)) rej(closedError());
    for (const [s] of this.#queue.splice(0)) s.close();
  }

  /** Stops listening. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  /**
   * Accepted connections, until the listener is closed. `return()` (a `break` out of a `for
   * await`) ends the iteration, not the listener: a `next()` still waiting ends too (done), and
   * the connection it waited for goes to the next `accept()`.
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<TcpStream> {
    let done = false;
    /** The accepts that waiting `next()` calls are in (a `return()` aborts them). */
    const waiting = new Set<AbortController>();
    const end: IteratorResult<TcpStream, undefined> = Object.freeze({ value: undefined, done: true });
    const it: AsyncIterableIterator<TcpStream> = {
      next: async (): Promise<IteratorResult<TcpStream, undefined>> => {
        if (done) return end;
        const ac = new AbortController();
        waiting.add(ac);
        try {
          const [s] = await this.accept({ signal: ac.signal });
          return { value: s, done: false };
        } catch (e) {
          const ended = done || this.#closed;
          done = true; // as a generator that threw
          if (ended) return end;
          throw e;
        } finally {
          waiting.delete(ac);
        }
      },
      return: (): Promise<IteratorResult<TcpStream, undefined>> => {
        done = true;
        for (const ac of waiting) ac.abort();
        return Promise.resolve(end);
      },
      [Symbol.asyncIterator]: () => it,
    };
    return it;
  }
}
