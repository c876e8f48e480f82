/**
 * `kyoto/compat/dgram`: a drop-in replacement for `node:dgram` on kyoto's {@link UdpSocket}.
 *
 * `createSocket` and `Socket` have `node:dgram`'s signatures, events (`listening`, `message`,
 * `connect`, `close`, `error`), errors and options. Received datagrams are read in batches
 * (`recvmmsg`) and emitted one `'message'` each.
 *
 * Not supported (they throw an error with `code: 'ERR_NOT_SUPPORTED'`): source-specific membership
 * of an IPv6 group, and binding to a descriptor or handle. Membership calls on a socket not bound
 * yet throw `EBADF`, where node:dgram binds it to a random port first.
 * @module
 */
import * as dns from 'node:dns';
import { EventEmitter } from 'node:events';
import { isIP, isIPv4, isIPv6 } from 'node:net';
import * as util from 'node:util';
import { native } from '../native';
import { currentBatch, errnoOf, ipv4ToInt, parseNativeAddr, systemError, type SystemError } from '../net/core';
import { networkInterfaces } from 'node:os';
import { O_REUSE_ADDR, O_REUSE_PORT, O_V6_ONLY, callReporting, errorToReport, isRuntimeShutdown, reportUncaught } from '../net/common';
import { UdpSocket } from '../net';
import {
  argType,
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
  validateFunction,
  validateNumber,
  validatePort,
  validateString,
} from './common';

/** `'udp4'` or `'udp6'`. */
export type SocketType = 'udp4' | 'udp6';

/** Options of {@link createSocket}. */
export interface SocketOptions {
  /** `'udp4'` or `'udp6'` (required). */
  type: SocketType;
  /** `SO_REUSEADDR` (several sockets may bind the same address, e.g. for multicast). */
  reuseAddr?: boolean;
  /** `SO_REUSEPORT`. */
  reusePort?: boolean;
  /** `IPV6_V6ONLY` for a `udp6` socket. */
  ipv6Only?: boolean;
  /** `SO_RCVBUF` at bind time. */
  recvBufferSize?: number;
  /** `SO_SNDBUF` at bind time. */
  sendBufferSize?: number;
  /** A `dns.lookup`-compatible resolver for bind/send/connect addresses. */
  lookup?: (hostname: string, family: number, callback: (err: Error | null, address: string, family: number) => void) => void;
  /** Closes the socket when aborted. */
  signal?: AbortSignal;
}

/** Options of `socket.bind(options)`. */
export interface BindOptions {
  /** Port (0 or omitted: any free port). */
  port?: number;
  /** Address (default `0.0.0.0` for udp4, `::` for udp6). */
  address?: string;
  /**
   * In a `node:cluster` worker: `true` binds a port of this worker's own; otherwise the socket is
   * the primary's, shared by every worker (Linux and macOS, as node:dgram's).
   */
  exclusive?: boolean;
  /** Not supported: binding to a descriptor. */
  fd?: number;
}

/** The sender of a received datagram. */
export interface RemoteInfo {
  /** Sender IP. */
  address: string;
  /** `'IPv4'` or `'IPv6'`. */
  family: 'IPv4' | 'IPv6';
  /** Sender port. */
  port: number;
  /** Datagram size in bytes. */
  size: number;
}

/** `{ address, family, port }`. */
export interface AddressInfo {
  /** The IP address. */
  address: string;
  /** `'IPv4'` or `'IPv6'`. */
  family: string;
  /** The port. */
  port: number;
}

type SendCallback = (error: Error | null, bytes?: number) => void;
type Lookup = NonNullable<SocketOptions['lookup']>;

/**
 * Whether node:dgram's default lookup answers a literal IP of the socket's family itself, on the
 * next tick, without dns.lookup (nodejs/node#64133: Node 24.19 and 26.5 on). Its `isIP` check
 * takes the address to a string first, so there bind() to `['127.0.0.1']` binds 127.0.0.1, and to
 * a symbol throws the TypeError of that conversion instead of dns.lookup's "hostname" error.
 */
const LITERAL_SKIPS_LOOKUP = ((): boolean => {
  const [major, minor] = process.versions.node.split('.').map(Number);
  return major > 26 || (major === 26 && minor >= 5) || (major === 24 && minor >= 19);
})();

/** node:dgram's default lookup where {@link LITERAL_SKIPS_LOOKUP}. */
const literalOrDnsLookup: Lookup = (address, family, cb) => {
  if (isIP(address) === family) {
    process.nextTick(cb, null, address, family);
    return;
  }
  (dns.lookup as unknown as Lookup)(address, family, cb);
};

const UNBOUND = 0;
const BINDING = 1;
const BOUND = 2;
const DISCONNECTED = 0;
const CONNECTING = 1;
const CONNECTED = 2;

// Option codes of native.netSetOpt.
const OPT_TTL = 4;
const OPT_BROADCAST = 5;
const OPT_MCAST_LOOP = 6;
const OPT_MCAST_TTL = 7;
const OPT_MCAST_LOOP_V6 = 10;
const OPT_MCAST_HOPS_V6 = 11;
/** libuv's lower bound for a multicast TTL: -1 on Windows (its VALIDATE_MULTICAST_TTL), 0 elsewhere. */
const MIN_MULTICAST_TTL = process.platform === 'win32' ? -1 : 0;
const OPT_SNDBUF = 8;
const OPT_RCVBUF = 9;

/**
 * The interface index an IPv6 address's zone names, as libuv's `uv_ip6_addr` finds it: 0 without a
 * zone or for a name no interface has.
 */
function zoneIndex(address: string): number {
  const i = address.indexOf('%');
  if (i < 0) return 0;
  const r = native.netZoneIndex(address.slice(i + 1));
  return r < 0 ? 0 : r;
}

function notRunning(): Error {
  return nodeError(Error, 'ERR_SOCKET_DGRAM_NOT_RUNNING', 'Not running');
}

function notConnected(): Error {
  return nodeError(Error, 'ERR_SOCKET_DGRAM_NOT_CONNECTED', 'Not connected');
}

function isConnected(): Error {
  return nodeError(Error, 'ERR_SOCKET_DGRAM_IS_CONNECTED', 'Already connected');
}

/**
 * Node's `ExceptionWithHostPort` (no libuv description in the message: `bind EADDRINUSE 0.0.0.0:41234`).
 * `port` is what the caller gave (bind's is not validated: `'80'` or `-1` show as given).
 */
function withHostPort(err: unknown, syscall: string, address?: string, port?: unknown): unknown {
  const e = err as SystemError;
  if (typeof e?.errno !== 'number' || typeof e.code !== 'string') return err;
  // node:dgram names the port only when there is one.
  const out = systemError(Math.abs(e.errno), syscall, address, (port || undefined) as number | undefined);
  let details = '';
  if (port && (port as number) > 0) details = ` ${address}:${port}`;
  else if (address) details = ` ${address}`;
  out.message = `${syscall} ${out.code}${details}`;
  return out;
}

function bufferSizeError(syscall: string, errno: number): Error {
  const sys = systemError(errno, syscall);
  const desc = (util.getSystemErrorMap() as Map<number, [string, string]>).get(sys.errno)?.[1];
  const err = nodeError(
    Error,
    'ERR_SOCKET_BUFFER_SIZE',
    `Could not get or set buffer size: ${syscall} returned ${sys.code}${desc ? ` (${desc})` : ''}`,
  );
  const info: Record<string, unknown> = { errno: sys.errno, code: sys.code };
  // node:dgram's `info` is libuv's view of the error: its description is `message`.
  if (desc !== undefined) info.message = desc;
  info.syscall = syscall;
  Object.assign(err, { name: 'SystemError', errno: sys.errno, syscall, info });
  return err;
}

/**
 * Whether `ip` is the limited broadcast address or the directed broadcast address of one of this
 * host's IPv4 networks (all host bits set, which ends in .255 for any network of /24 or wider —
 * only those are looked up).
 */
function isBroadcastV4(ip: string): boolean {
  if (ip === '255.255.255.255') return true;
  if (!ip.endsWith('.255')) return false;
  // Signed 32-bit values throughout (`ipv4ToInt`'s, and `|`'s); a /32 mask is -1: no broadcast.
  const n = ipv4ToInt(ip);
  for (const list of Object.values(networkInterfaces())) {
    for (const i of list ?? []) {
      if (i.family !== 'IPv4') continue;
      const mask = ipv4ToInt(i.netmask);
      if (mask !== -1 && (ipv4ToInt(i.address) | ~mask) === n) return true;
    }
  }
  return false;
}

/** `len` bytes of `v` from `off`, without a copy (an empty view, as a detached one reads, gives an empty Buffer). */
function viewBuffer(v: ArrayBufferView, off = 0, len = v.byteLength): Buffer {
  return len === 0 ? Buffer.alloc(0) : Buffer.from(v.buffer, v.byteOffset + off, len);
}

function toBufferList(list: unknown[]): Buffer[] | null {
  const out: Buffer[] = [];
  for (const b of list) {
    if (typeof b === 'string') out.push(Buffer.from(b));
    else if (ArrayBuffer.isView(b)) out.push(viewBuffer(b));
    else return null;
  }
  return out;
}

function sliceBuffer(buffer: unknown, offset: unknown, length: unknown): Buffer {
  let b: ArrayBufferView;
  if (typeof buffer === 'string') b = Buffer.from(buffer);
  else if (ArrayBuffer.isView(buffer)) b = buffer;
  else throw argType('buffer', 'of type string or an instance of Buffer, TypedArray, or DataView', buffer);
  const off = (offset as number) >>> 0;
  const len = (length as number) >>> 0;
  if (off > b.byteLength) throw nodeError(RangeError, 'ERR_BUFFER_OUT_OF_BOUNDS', '"offset" is outside of buffer bounds');
  if (off + len > b.byteLength) throw nodeError(RangeError, 'ERR_BUFFER_OUT_OF_BOUNDS', '"length" is outside of buffer bounds');
  return viewBuffer(b, off, len);
}

/**
 * `node:dgram`'s `Socket`: an `EventEmitter` over a kyoto {@link UdpSocket}, bound on `bind()` (or
 * implicitly by the first `send()`/`connect()`).
 */
export class Socket extends EventEmitter {
  /** `'udp4'` or `'udp6'`. */
  readonly type: SocketType;
  #sock: UdpSocket | undefined;
  #closed = false;
  /** `SO_BROADCAST` was set (a datagram to a broadcast address is refused otherwise). */
  #broadcast = false;
  #bindState = UNBOUND;
  #connectState = DISCONNECTED;
  #queue: Array<() => void> | undefined;
  #flags: number;
  /** In a cluster worker: closes the primary's socket as node:cluster handed it over (with ours). */
  #closeClusterHandle: (() => void) | undefined;
  #recvBufferSize: number;
  #sendBufferSize: number;
  #lookup: Lookup;
  #refd = true;
  #queuedSends = 0;
  #queuedBytes = 0;
  /** Send callbacks waiting for their turn: they run in send order (see `#inOrder`). */
  #callbacks: Array<{ cb: SendCallback; args: [Error | null, number?] | undefined }> = [];
  #callbacksScheduled = false;

  /**
   * @param type - `'udp4'`, `'udp6'` or {@link SocketOptions}.
   * @param listener - added for `'message'`.
   */
  constructor(type: SocketType | SocketOptions, listener?: (msg: Buffer, rinfo: RemoteInfo) => void) {
    super();
    let options: SocketOptions | undefined;
    let lookup: Lookup | undefined;
    if (type !== null && typeof type === 'object') {
      options = type;
      type = options.type;
      lookup = options.lookup;
      for (const k of ['recvBufferSize', 'sendBufferSize'] as const) {
        const v = options[k];
        if (v) {
          if (typeof v !== 'number') throw argType(`options.${k}`, 'of type number', v);
          if (!Number.isInteger(v)) throw outOfRange(`options.${k}`, 'an integer', v);
          if (v < 0 || v > 4294967295) throw outOfRange(`options.${k}`, '>= 0 && <= 4294967295', v);
        }
      }
    }
    if (lookup !== undefined) validateFunction(lookup, 'lookup');
    if (type !== 'udp4' && type !== 'udp6') {
      throw nodeError(TypeError, 'ERR_SOCKET_BAD_TYPE', 'Bad socket type specified. Valid types are: udp4, udp6');
    }
    this.type = type;
    const base = lookup ?? (LITERAL_SKIPS_LOOKUP ? literalOrDnsLookup : (dns.lookup as unknown as Lookup));
    const family = type === 'udp4' ? 4 : 6;
    const dflt = type === 'udp4' ? '127.0.0.1' : '::1';
    this.#lookup = (address, _family, cb) => base(address || dflt, family, cb);
    this.#flags =
      (options?.reuseAddr ? O_REUSE_ADDR : 0) | (options?.reusePort ? O_REUSE_PORT : 0) | (options?.ipv6Only ? O_V6_ONLY : 0);
    this.#recvBufferSize = options?.recvBufferSize ?? 0;
    this.#sendBufferSize = options?.sendBufferSize ?? 0;
    if (typeof listener === 'function') this.on('message', listener);
    if (options?.signal !== undefined) {
      validateAbortSignal(options.signal, 'options.signal');
      const signal = options.signal;
      const close = (): void => {
        if (!this.#closed) this.close();
      };
      if (signal.aborted) close();
      else this.once('close', onAbort(signal, close));
    }
  }

  #healthCheck(): void {
    if (this.#closed) throw notRunning();
  }

  /** The bound socket, or a Node-shaped EBADF for `syscall` (the OS's answer for an unbound one). */
  #bound(syscall: string): UdpSocket {
    this.#healthCheck();
    if (this.#sock === undefined) throw errnoError('EBADF', syscall);
    return this.#sock;
  }

  /**
   * Binds: `bind([port][, address][, callback])` or `bind(options[, callback])`; `callback` runs on
   * `'listening'`. Errors (e.g. `EADDRINUSE`) are emitted as `'error'`.
   */
  bind(port?: number, address?: string, callback?: () => void): this;
  bind(port?: number, callback?: () => void): this;
  bind(callback?: () => void): this;
  bind(options: BindOptions, callback?: () => void): this;
  bind(...args: unknown[]): this {
    let port: unknown = args[0];
    this.#healthCheck();
    if (this.#bindState !== UNBOUND) throw nodeError(Error, 'ERR_SOCKET_ALREADY_BOUND', 'Socket is already bound');
    const cb = args.length > 0 ? args[args.length - 1] : undefined;
    let address: unknown;
    let exclusive = false;
    if (port !== null && typeof port === 'object') {
      const o = port as BindOptions & { recvStart?: unknown };
      exclusive = o.exclusive === true;
      if (typeof o.recvStart === 'function' || (Number.isInteger(o.fd) && (o.fd as number) > 0)) {
        throw notSupported('dgram', 'binding to a descriptor or handle');
      }
      address = o.address || '';
      port = o.port;
    } else {
      address = typeof args[1] === 'function' ? '' : args[1];
    }
    // As node:dgram, the port is not validated: its handle binds `port || 0` taken as a uint32,
    // of which libuv keeps the low 16 bits (-1 binds 65535, 65536 any free port, '80' port 80).
    // A symbol or bigint, which node:dgram fails on with an uncaught TypeError after the lookup,
    // throws ERR_SOCKET_BAD_PORT here.
    if (typeof port === 'symbol' || typeof port === 'bigint') validatePort(port, 'Port');
    const p = (Number(port || 0) >>> 0) & 0xffff;
    this.#bindState = BINDING;
    if (typeof cb === 'function') {
      // As node:dgram's: whichever comes first removes both, so neither outlives the bind.
      const onListening = (): void => {
        removeListeners();
        (cb as () => void).call(this);
      };
      const removeListeners = (): void => {
        this.removeListener('error', removeListeners);
        this.removeListener('listening', onListening);
      };
      this.on('error', removeListeners);
      this.on('listening', onListening);
    }
    // As node:dgram: any falsy address is the any address, and another that is not a string is
    // the lookup's to refuse (dns.lookup throws, naming it "hostname", with the socket left binding).
    const addr = (address || (this.type === 'udp4' ? '0.0.0.0' : '::')) as string;
    this.#lookup(addr, 0, (err, found) => {
      if (this.#closed) return;
      // As node:dgram's handle, which takes the address to a string (see LITERAL_SKIPS_LOOKUP).
      const ip = typeof found === 'string' || found == null ? found : String(found);
      if (err) {
        this.#bindState = UNBOUND;
        this.emit('error', err);
        return;
      }
      if (!this.#familyFits(ip)) {
        this.#bindState = UNBOUND;
        this.emit('error', withHostPort(systemError(errnoOf('EINVAL'), 'bind'), 'bind', ip, port));
        return;
      }
      // As node:dgram: a cluster worker's socket is the primary's, shared by every worker (Unix).
      if (!exclusive && process.platform !== 'win32' && inClusterWorker()) {
        this.#bindInCluster(ip, port);
        return;
      }
      const h = native.netUdpBind(ip, p, this.#flags, this.#sendBufferSize, this.#recvBufferSize);
      if (h < 0) {
        this.#bindState = UNBOUND;
        this.emit('error', withHostPort(systemError(-h, 'bind'), 'bind', ip, port));
        return;
      }
      this.#startReceiving(new UdpSocket(h));
    });
    return this;
  }

  #startReceiving(sock: UdpSocket): void {
    if (!this.#refd) sock._setRef(false);
    this.#sock = sock;
    this.#bindState = BOUND;
    void this.#receive(sock);
    this.emit('listening');
  }

  /**
   * A cluster worker's bind, as node:dgram's `bindServerHandle`: node:cluster's `_getServer` asks
   * the primary, which binds the socket once and passes it to every worker over IPC; kyoto takes a
   * duplicate of its descriptor and keeps the libuv handle until close (which tells the primary).
   * node:cluster itself tells the primary when this socket emits `'listening'`. `port` is bind's,
   * as given: the primary binds it as node:dgram's handle does.
   */
  #bindInCluster(ip: string, port: unknown): void {
    // libuv's UV_UDP_IPV6ONLY (1) and UV_UDP_REUSEADDR (4), which the primary binds with.
    const flags = (this.#flags & O_V6_ONLY ? 1 : 0) | (this.#flags & O_REUSE_ADDR ? 4 : 0);
    const query = { address: ip, port, addressType: this.type, fd: -1, flags };
    getClusterServer<{ fd: number; close(): void }>(this, query, (err, handle) => {
      if (this.#closed) {
        handle?.close();
        return;
      }
      const h = err === 0 && handle !== null ? adoptDuplicate(handle.fd, (d) => [native.netAdoptUdpFd(d)])[0] : err;
      if (h < 0 || handle === null) {
        handle?.close();
        this.#bindState = UNBOUND;
        this.emit('error', withHostPort(systemError(Math.abs(h), 'bind'), 'bind', ip, port));
        return;
      }
      this.#closeClusterHandle = closeWithCluster(handle, (cb) => this.close(cb));
      this.#startReceiving(new UdpSocket(h));
    });
  }

  /**
   * Emits received datagrams one `'message'` each, as node:dgram's handle does, which is read a
   * datagram at a time from the event loop. What a batch read must not change from that:
   * - A datagram is not emitted to nobody while a listener is on its way: `await once(socket,
   *   'message')` in a loop re-adds its listener a microtask after the last one, so with none, the
   *   next datagram waits for one to be added, or for a turn of the loop (then it is lost, as it
   *   would be with node:dgram).
   * - libuv reads at most 32 datagrams per socket per loop turn, so a backlog does not hold timers
   *   and I/O back: after 32 emitted in a row, the loop yields a turn (`setImmediate`).
   * - A listener that throws is an uncaught exception before the next datagram is emitted: the
   *   process dies there when nothing handles it, as with node:dgram.
   * The common case, a persistent listener keeping up, awaits nothing per datagram.
   */
  async #receive(sock: UdpSocket): Promise<void> {
    /** Datagrams emitted since the loop last let a turn pass. */
    let inRow = 0;
    for (;;) {
      let batch: Array<{ data: Buffer; address: { address: string; family: 'IPv4' | 'IPv6'; port: number } }>;
      const before = currentBatch();
      try {
        batch = await sock.recvMany(64);
      } catch (e) {
        if (this.#sock !== sock) return;
        // A datagram the kernel refused after its send had called back (kyoto sends a turn's
        // datagrams together): node:dgram reports send failures only to the send's callback, never
        // as 'error', so neither is this one. The common refusals are caught before queueing.
        if ((e as SystemError).syscall === 'send') continue;
        // The socket's runtime is gone (`Runtime.default().shutdown()`): no receive can succeed,
        // so the socket closes.
        if (isRuntimeShutdown(e as Error)) {
          if (errorToReport(e as Error, this) !== null) this.#emitSafely('error', e);
          if (this.#sock === sock) this.close();
          return;
        }
        const errno = (e as SystemError).errno;
        this.#emitSafely('error', typeof errno === 'number' ? systemError(Math.abs(errno), 'recvmsg') : e);
        // A turn before the next receive: an error that repeats must not spin the loop.
        await new Promise((r) => setImmediate(r));
        if (this.#sock !== sock) return;
        continue;
      }
      // A batch delivered since the call came from the loop (the receive waited for it): a new
      // turn. One taken from what was queued continues this turn's run.
      if (currentBatch() !== before) inRow = 0;
      for (const d of batch) {
        if (this.#sock !== sock) return;
        if (inRow >= 32) {
          await new Promise((r) => setImmediate(r));
          inRow = 0;
          if (this.#sock !== sock) return;
        }
        if (this.listenerCount('message') === 0) {
          if (await this.#listenerOrTurn()) inRow = 0;
          if (this.#sock !== sock) return;
        }
        inRow++;
        const a = d.address;
        if (!this.#emitSafely('message', d.data, { address: a.address, family: a.family, port: a.port, size: d.data.length })) {
          // The uncaught exception's tick comes first: it ends the process unless handled.
          await new Promise((r) => process.nextTick(r));
        }
      }
    }
  }

  /**
   * Resolves once a `'message'` listener is being added (`'newListener'` comes just before it is)
   * or a turn of the loop passed, whichever first: true for the turn.
   */
  #listenerOrTurn(): Promise<boolean> {
    return new Promise((resolve) => {
      const onNew = (event: string | symbol): void => {
        if (event === 'message') done(false);
      };
      const timer = setImmediate(() => done(true));
      const done = (turned: boolean): void => {
        clearImmediate(timer);
        this.removeListener('newListener', onNew);
        resolve(turned);
      };
      this.on('newListener', onNew);
    });
  }

  /**
   * Emits; a throwing listener becomes an uncaught exception (as with `node:dgram`), not a
   * rejection. False when one threw.
   */
  #emitSafely(event: string, ...args: unknown[]): boolean {
    try {
      this.emit(event, ...args);
      return true;
    } catch (e) {
      reportUncaught(e);
      return false;
    }
  }

  #enqueue(fn: () => void): void {
    if (this.#queue === undefined) {
      const queue: Array<() => void> = [];
      this.#queue = queue;
      const onError = (): void => {
        this.removeListener('listening', onListening);
        this.#queue = undefined;
      };
      const onListening = (): void => {
        this.removeListener(EventEmitter.errorMonitor, onError);
        this.#queue = undefined;
        for (const f of queue) f();
      };
      this.once(EventEmitter.errorMonitor, onError);
      this.once('listening', onListening);
    }
    this.#queue.push(fn);
  }

  /**
   * Associates the socket with `address:port`: `send` may then omit them, and only that peer's
   * datagrams are received. Binds first when unbound. `callback` runs on `'connect'` (or gets the
   * error).
   */
  connect(port: number, address?: string, callback?: (err?: Error) => void): void;
  connect(port: number, callback: (err?: Error) => void): void;
  connect(port: number, address?: unknown, callback?: (err?: Error) => void): void {
    const p = validatePort(port, 'Port', false);
    if (typeof address === 'function') {
      callback = address as (err?: Error) => void;
      address = '';
    } else if (address === undefined) {
      address = '';
    }
    validateString(address, 'address');
    this.#healthCheck();
    if (this.#connectState !== DISCONNECTED) throw isConnected();
    this.#connectState = CONNECTING;
    if (this.#bindState === UNBOUND) this.bind({ port: 0, exclusive: true });
    if (this.#bindState !== BOUND) {
      this.#enqueue(() => this.#connect(p, address as string, callback));
      return;
    }
    this.#connect(p, address, callback);
  }

  #connect(port: number, address: string, callback?: (err?: Error) => void): void {
    if (callback) this.once('connect', callback);
    this.#lookup(address, 0, (ex, ip) => {
      const sock = this.#sock;
      if (sock === undefined) return;
      let err: unknown = ex;
      // libuv refuses an address of the other family itself (EINVAL), before the kernel would
      // (EAFNOSUPPORT), as bind does.
      if (!err && !this.#familyFits(ip)) err = withHostPort(systemError(errnoOf('EINVAL'), 'connect'), 'connect', address, port);
      if (!err) {
        try {
          // Connected at once, as node:dgram's handle is, and without kyoto's filter by peer:
          // datagrams other senders got queued before still arrive, as with node:dgram on Linux.
          sock._connect(ip, port, false);
        } catch (e) {
          err = withHostPort(e, 'connect', address, port);
        }
      }
      if (err) {
        this.#connectState = DISCONNECTED;
        process.nextTick(() => {
          if (callback) {
            this.removeListener('connect', callback);
            callback(err as Error);
          } else {
            this.emit('error', err);
          }
        });
        return;
      }
      this.#connectState = CONNECTED;
      process.nextTick(() => this.emit('connect'));
    });
  }

  /**
   * Dissolves the association made by {@link Socket.connect}: datagrams from anyone arrive again and
   * `send` needs a port and address. Throws `ERR_SOCKET_DGRAM_NOT_CONNECTED` when not connected.
   */
  disconnect(): void {
    // As node:dgram: the connection is checked first, so a closed socket never connected says so.
    if (this.#connectState !== CONNECTED) throw notConnected();
    this.#healthCheck();
    if (this.#sock === undefined) throw notConnected();
    this.#sock.disconnect();
    this.#connectState = DISCONNECTED;
  }

  /**
   * node:dgram's older, undocumented form of {@link Socket.send} with every argument given:
   * `sendto(buffer, offset, length, port, address[, callback])`. Kept for code that still calls it.
   */
  sendto(buffer: string | Uint8Array, offset: number, length: number, port: number, address: string, callback?: SendCallback): void {
    validateNumber(offset, 'offset');
    validateNumber(length, 'length');
    validateNumber(port, 'port');
    validateString(address, 'address');
    this.send(buffer, offset, length, port, address, callback);
  }

  /**
   * Sends one datagram: `send(msg[, offset, length][, port][, address][, callback])`. `msg` is a
   * string, Buffer, TypedArray, DataView or an array of them (sent as one datagram). Connected
   * sockets omit `port` and `address`. Binds first when unbound. `callback(err, bytes)`.
   */
  send(msg: string | Uint8Array | ReadonlyArray<unknown>, port?: number, address?: string, callback?: SendCallback): void;
  send(msg: string | Uint8Array | ReadonlyArray<unknown>, port?: number, callback?: SendCallback): void;
  send(msg: string | Uint8Array | ReadonlyArray<unknown>, callback?: SendCallback): void;
  send(msg: string | Uint8Array, offset: number, length: number, port?: number, address?: string, callback?: SendCallback): void;
  send(msg: string | Uint8Array, offset: number, length: number, port?: number, callback?: SendCallback): void;
  send(msg: string | Uint8Array, offset: number, length: number, callback?: SendCallback): void;
  send(buffer: unknown, offset?: unknown, length?: unknown, port?: unknown, address?: unknown, callback?: unknown): void {
    let list: Buffer[] | null;
    const connected = this.#connectState === CONNECTED;
    if (!connected) {
      if (address || (port && typeof port !== 'function')) {
        buffer = sliceBuffer(buffer, offset, length);
      } else {
        callback = port;
        port = offset;
        address = length;
      }
    } else {
      if (typeof length === 'number') {
        buffer = sliceBuffer(buffer, offset, length);
        if (typeof port === 'function') {
          callback = port;
          port = null;
        }
      } else {
        callback = offset;
      }
      if (port || address) throw isConnected();
    }
    if (!Array.isArray(buffer)) {
      if (typeof buffer === 'string') list = [Buffer.from(buffer)];
      else if (!ArrayBuffer.isView(buffer)) {
        throw argType('buffer', 'of type string or an instance of Buffer, TypedArray, or DataView', buffer);
      } else list = [viewBuffer(buffer)];
    } else if ((list = toBufferList(buffer)) === null) {
      throw argType('buffer list arguments', 'of type string or an instance of Buffer, TypedArray, or DataView', buffer);
    }
    let p = 0;
    if (!connected) p = validatePort(port, 'Port', false);
    let cb = typeof callback === 'function' ? (callback as SendCallback) : undefined;
    if (typeof address === 'function') {
      cb = address as SendCallback;
      address = undefined;
    } else if (address != null) {
      validateString(address, 'address');
    }
    this.#healthCheck();
    if (this.#bindState === UNBOUND) this.bind({ port: 0, exclusive: true });
    const data = list.length === 1 ? list[0] : Buffer.concat(list);
    const addr = address as string | undefined;
    if (this.#bindState !== BOUND) {
      // Not counted by getSendQueueSize()/Count() until it is sent, as node:dgram counts only
      // what its socket handle holds.
      this.#enqueue(() => this.#sendNow(data, connected, p, addr, cb));
      return;
    }
    this.#sendNow(data, connected, p, addr, cb);
  }

  /** Whether `ip` is of this socket's family (a udp4 socket takes no IPv6 address, and the reverse). */
  #familyFits(ip: string): boolean {
    return this.type === 'udp4' ? !isIPv6(ip) : !isIPv4(ip);
  }

  /**
   * The errno the kernel would give a datagram to `ip` (0: none known): `EINVAL` for the other
   * family, `EACCES` for an IPv4 broadcast address without {@link Socket.setBroadcast}.
   */
  #refusal(ip: string): number {
    if (!this.#familyFits(ip)) return errnoOf('EINVAL');
    if (!this.#broadcast && isIPv4(ip) && isBroadcastV4(ip)) return errnoOf('EACCES');
    return 0;
  }

  #queued(bytes: number, n: number): void {
    this.#queuedSends += n;
    this.#queuedBytes += n * bytes;
  }

  /**
   * Takes a place for `cb` among the send callbacks and returns what settles it. Callbacks run on
   * a later tick, in the order their sends were made (node:dgram's come in order): a large or
   * IPv6 send that takes the native call, or one that waits for room, would otherwise call back
   * after smaller ones made after it. A callback that throws is an uncaught exception.
   */
  #inOrder(cb: SendCallback | undefined): (err: Error | null, bytes?: number) => void {
    if (cb === undefined) return () => {};
    const entry: { cb: SendCallback; args: [Error | null, number?] | undefined } = { cb, args: undefined };
    this.#callbacks.push(entry);
    return (err, bytes) => {
      entry.args = err !== null ? [err] : [null, bytes];
      if (this.#callbacksScheduled) return;
      this.#callbacksScheduled = true;
      process.nextTick(() => {
        this.#callbacksScheduled = false;
        const q = this.#callbacks;
        while (q.length > 0 && q[0].args !== undefined) {
          const e = q.shift()!;
          callReporting(e.cb, ...e.args!);
        }
      });
    };
  }

  #sendNow(data: Buffer, connected: boolean, port: number, address: string | undefined, cb: SendCallback | undefined): void {
    const afterDns = (ex: Error | null, ip: string): void => {
      if (ex) {
        if (cb) this.#inOrder(cb)(ex);
        else process.nextTick(() => this.emit('error', ex));
        return;
      }
      const sock = this.#sock;
      if (sock === undefined) return;
      const done = this.#inOrder(cb);
      // Connected since this send was made (its connect's lookup came first): libuv refuses an
      // address on a connected socket, so node:dgram calls back with EISCONN and sends nothing.
      if (!connected && this.#connectState === CONNECTED) {
        done(withHostPort(systemError(errnoOf('EISCONN'), 'send'), 'send', address, port) as Error);
        return;
      }
      // What the kernel would refuse, refused here, so that it reaches the callback as with node:dgram.
      const refused = connected ? 0 : this.#refusal(ip);
      if (refused !== 0) {
        done(withHostPort(systemError(refused, 'send'), 'send', address, port) as Error);
        return;
      }
      // Queued at once (the common case): the callback still comes later, as node:dgram's does.
      if (sock._sendNow(data, connected ? '' : ip, port)) {
        done(null, data.length);
        return;
      }
      this.#queued(data.length, 1);
      const sent = connected ? sock.send(data) : sock.sendTo(data, { address: ip, port });
      sent.then(
        () => {
          this.#queued(data.length, -1);
          done(null, data.length);
        },
        (e) => {
          this.#queued(data.length, -1);
          // Like node:dgram, a failed send is reported to its callback only.
          done(withHostPort(e, 'send', address, connected ? undefined : port) as Error);
        },
      );
    };
    if (connected) afterDns(null, '');
    else this.#lookup(address ?? '', 0, afterDns);
  }

  /** Closes the socket; `'close'` (and `callback`) follow. Throws `ERR_SOCKET_DGRAM_NOT_RUNNING` when already closed. */
  close(callback?: () => void): this {
    if (typeof callback === 'function') this.on('close', callback);
    if (this.#queue !== undefined) {
      this.#queue.push(() => this.close());
      return this;
    }
    this.#healthCheck();
    this.#closed = true;
    const sock = this.#sock;
    this.#sock = undefined;
    sock?.close();
    this.#closeClusterHandle?.();
    this.#closeClusterHandle = undefined;
    process.nextTick(() => this.emit('close'));
    return this;
  }

  /** Closes the socket (resolves on `'close'`). */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#closed) return;
    await new Promise<void>((resolve) => this.close(resolve));
  }

  /** The bound address `{ address, family, port }`. */
  address(): AddressInfo {
    const a = this.#bound('getsockname').localAddr();
    return { address: a.address, family: a.family, port: a.port };
  }

  /** The connected peer's address; throws `ERR_SOCKET_DGRAM_NOT_CONNECTED` when not connected. */
  remoteAddress(): AddressInfo {
    this.#healthCheck();
    if (this.#connectState !== CONNECTED || this.#sock === undefined) throw notConnected();
    const a = parseNativeAddr(native.netAddr(this.#sock._h, true), 'getpeername');
    return { address: a.address, family: a.family, port: a.port };
  }

  #setOpt(syscall: string, opt: number, value: number): void {
    const sock = this.#bound(syscall);
    const r = native.netSetOpt(sock._h, opt, value, 0);
    if (r < 0) throw systemError(-r, syscall);
  }

  /** `SO_BROADCAST`. */
  setBroadcast(flag: boolean): void {
    this.#setOpt('setBroadcast', OPT_BROADCAST, flag ? 1 : 0);
    this.#broadcast = Boolean(flag);
  }

  /** The unicast TTL (1..255); returns it. */
  setTTL(ttl: number): number {
    validateNumber(ttl, 'ttl');
    // As node:dgram: the value is taken as an int32 (0.5 is 0), and its range is checked (by
    // libuv) before the socket is.
    const v = ttl | 0;
    if (v < 1 || v > 255) throw errnoError('EINVAL', 'setTTL');
    this.#bound('setTTL');
    this.#setOpt('setTTL', OPT_TTL, v);
    return ttl;
  }

  /**
   * The multicast TTL (`udp6`: hop limit), 0..255 (on Windows also -1, as libuv allows there);
   * returns it.
   */
  setMulticastTTL(ttl: number): number {
    validateNumber(ttl, 'ttl');
    const v = ttl | 0; // as setTTL
    if (v < MIN_MULTICAST_TTL || v > 255) throw errnoError('EINVAL', 'setMulticastTTL');
    this.#bound('setMulticastTTL');
    this.#setOpt('setMulticastTTL', this.type === 'udp6' ? OPT_MCAST_HOPS_V6 : OPT_MCAST_TTL, v);
    return ttl;
  }

  /** `IP_MULTICAST_LOOP` (`udp6`: `IPV6_MULTICAST_LOOP`); returns `flag`. */
  setMulticastLoopback(flag: boolean): boolean {
    this.#bound('setMulticastLoopback');
    this.#setOpt('setMulticastLoopback', this.type === 'udp6' ? OPT_MCAST_LOOP_V6 : OPT_MCAST_LOOP, flag ? 1 : 0);
    return flag;
  }

  /**
   * The interface outgoing multicast leaves by: on `udp4` its IPv4 address (`'0.0.0.0'`: the
   * default), on `udp6` an IPv6 address whose zone names it (`'::%eth0'`; `'::'`: the default).
   */
  setMulticastInterface(interfaceAddress: string): void {
    this.#healthCheck();
    validateString(interfaceAddress, 'interfaceAddress');
    if (!isIP(interfaceAddress)) throw errnoError('EINVAL', 'setMulticastInterface'); // as libuv, which takes v4 or v6
    const sock = this.#bound('setMulticastInterface');
    let r: number;
    if (isIPv6(interfaceAddress)) {
      // libuv sets the IPv6 option, with the zone's interface index (0 without one). An IPv4
      // socket refuses it (Linux: ENOPROTOOPT; Winsock, as measured under Wine: EINVAL).
      if (this.type === 'udp4') {
        throw errnoError(process.platform === 'win32' ? 'EINVAL' : 'ENOPROTOOPT', 'setMulticastInterface');
      }
      r = native.netMulticastIfV6(sock._h, zoneIndex(interfaceAddress));
    } else {
      r = native.netMulticastIf(sock._h, interfaceAddress);
    }
    if (r < 0) throw systemError(-r, 'setMulticastInterface');
  }

  #membership(join: boolean, group: unknown, iface: unknown): void {
    const syscall = join ? 'addMembership' : 'dropMembership';
    this.#healthCheck();
    if (!group) throw missingArgs('multicastAddress');
    if (typeof group !== 'string') throw argType('multicastAddress', 'of type string', group);
    if (iface !== undefined && typeof iface !== 'string') throw argType('interfaceAddress', 'of type string', iface);
    if (isIPv6(group)) {
      this.#membershipV6(join, group, iface, syscall);
      return;
    }
    // Codes as node:dgram's, whose libuv binds an unbound socket first: a malformed address is
    // EINVAL; joining a non-multicast group is EINVAL (on Windows leaving one too); leaving a
    // group never joined (as on an unbound socket) is EADDRNOTAVAIL.
    if (!isIPv4(group) || (iface !== undefined && !isIPv4(iface))) throw errnoError('EINVAL', syscall);
    // libuv on Windows refuses an IPv4 group on an IPv6 socket itself (Linux's kernel takes it).
    if (process.platform === 'win32' && this.type === 'udp6' && this.#sock !== undefined) throw errnoError('EINVAL', syscall);
    const first = Number(group.split('.')[0]);
    const multicast = first >= 224 && first <= 239;
    if (!multicast && (join || process.platform === 'win32')) throw errnoError('EINVAL', syscall);
    if (!join && this.#sock === undefined) throw errnoError('EADDRNOTAVAIL', syscall);
    const sock = this.#bound(syscall);
    const r = native.netMulticast(sock._h, join, group, iface ?? '');
    if (r < 0) throw systemError(-r, syscall);
  }

  #membershipV6(join: boolean, group: string, iface: string | undefined, syscall: string): void {
    // As libuv: the interface is an IPv6 address whose zone names it (`'::%eth0'`; none: the
    // kernel's choice); the rest is the kernel's to judge.
    if (iface !== undefined && !isIPv6(iface)) throw errnoError('EINVAL', syscall);
    if (!join && this.#sock === undefined) throw errnoError('EADDRNOTAVAIL', syscall);
    const sock = this.#bound(syscall);
    const r = native.netMulticastV6(sock._h, join, group, iface === undefined ? 0 : zoneIndex(iface));
    if (r < 0) throw systemError(-r, syscall);
  }

  /**
   * Joins the multicast group `multicastAddress`: IPv4 on `interfaceAddress` (an IPv4 address,
   * default any), IPv6 on the interface `interfaceAddress`'s zone names (`'::%eth0'`).
   */
  addMembership(multicastAddress: string, interfaceAddress?: string): void {
    this.#membership(true, multicastAddress, interfaceAddress);
  }

  /** Leaves a multicast group. */
  dropMembership(multicastAddress: string, interfaceAddress?: string): void {
    this.#membership(false, multicastAddress, interfaceAddress);
  }

  #sourceMembership(join: boolean, source: unknown, group: unknown, iface: unknown): void {
    const syscall = join ? 'addSourceSpecificMembership' : 'dropSourceSpecificMembership';
    this.#healthCheck();
    validateString(source, 'sourceAddress');
    validateString(group, 'groupAddress');
    if (isIPv6(group)) throw notSupported('dgram', `${syscall}() of an IPv6 group`);
    // As libuv: addresses that do not parse are EINVAL; the rest is the kernel's to judge, on a
    // socket bound first if it was not.
    if (!isIPv4(group) || !isIPv4(source) || (iface != null && !isIPv4(String(iface)))) {
      throw errnoError('EINVAL', syscall);
    }
    const sock = this.#bound(syscall);
    const r = native.netMulticastSsm(sock._h, join, source, group, iface == null ? '' : String(iface));
    if (r < 0) throw systemError(-r, syscall);
  }

  /**
   * Joins the IPv4 multicast group `groupAddress` for datagrams from `sourceAddress` only
   * (source-specific multicast), on `interfaceAddress` (default any). IPv6 groups throw
   * `ERR_NOT_SUPPORTED`.
   */
  addSourceSpecificMembership(sourceAddress: string, groupAddress: string, interfaceAddress?: string): void {
    this.#sourceMembership(true, sourceAddress, groupAddress, interfaceAddress);
  }

  /** Leaves a source-specific IPv4 multicast group. */
  dropSourceSpecificMembership(sourceAddress: string, groupAddress: string, interfaceAddress?: string): void {
    this.#sourceMembership(false, sourceAddress, groupAddress, interfaceAddress);
  }

  #bufferSize(size: unknown, opt: number, syscall: string): void {
    if (typeof size !== 'number' || size >>> 0 !== size) {
      throw nodeError(TypeError, 'ERR_SOCKET_BAD_BUFFER_SIZE', 'Buffer size must be a positive integer');
    }
    this.#healthCheck();
    const sock = this.#sock;
    if (sock === undefined) throw bufferSizeError(syscall, errnoError('EBADF', syscall).errno);
    if (size === 0) return;
    const r = native.netSetOpt(sock._h, opt, size, 0);
    if (r < 0) throw bufferSizeError(syscall, -r);
  }

  /** `SO_RCVBUF` (bytes). */
  setRecvBufferSize(size: number): void {
    this.#bufferSize(size, OPT_RCVBUF, 'uv_recv_buffer_size');
  }

  /** `SO_SNDBUF` (bytes). */
  setSendBufferSize(size: number): void {
    this.#bufferSize(size, OPT_SNDBUF, 'uv_send_buffer_size');
  }

  #getBufferSize(opt: number, syscall: string): number {
    this.#healthCheck();
    const sock = this.#sock;
    if (sock === undefined) throw bufferSizeError(syscall, errnoError('EBADF', syscall).errno);
    const r = native.netGetOpt(sock._h, opt);
    if (r < 0) throw bufferSizeError(syscall, -r);
    return r;
  }

  /** `SO_RCVBUF` as the kernel reports it (Linux doubles what was set, like Node shows). */
  getRecvBufferSize(): number {
    return this.#getBufferSize(OPT_RCVBUF, 'uv_recv_buffer_size');
  }

  /** `SO_SNDBUF` as the kernel reports it. */
  getSendBufferSize(): number {
    return this.#getBufferSize(OPT_SNDBUF, 'uv_send_buffer_size');
  }

  /**
   * Bytes of datagrams handed to the socket and not yet taken by the kernel (waiting for room),
   * as node:dgram counts its handle's queue: sends waiting for the bind or a lookup are not counted.
   */
  getSendQueueSize(): number {
    return this.#queuedBytes;
  }

  /** Datagrams counted by {@link Socket.getSendQueueSize}. */
  getSendQueueCount(): number {
    return this.#queuedSends;
  }

  /** Keeps the process alive while the socket is bound (the default). */
  ref(): this {
    if (!this.#closed) {
      this.#refd = true;
      this.#sock?._setRef(true);
    }
    return this;
  }

  /** Lets the process exit while the socket is bound. */
  unref(): this {
    if (!this.#closed) {
      this.#refd = false;
      this.#sock?._setRef(false);
    }
    return this;
  }
}

/** A new {@link Socket}: `createSocket('udp4' | 'udp6' | options[, messageListener])`. */
export function createSocket(type: SocketType | SocketOptions, listener?: (msg: Buffer, rinfo: RemoteInfo) => void): Socket {
  return new Socket(type, listener);
}
