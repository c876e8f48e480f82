/**
 * `UdpSocket`: datagrams received in native batches (`recvmmsg`) wait in a slab queue
 * (`dgram-queue.ts`) for `recv`/`recvFrom`/`recvMany`; sends are queued in the write arena and sent
 * in native batches (`sendmmsg`).
 * @module
 */
import * as net from 'node:net';
import { native, type NativeRuntime } from '../native';
import { settleNow } from '../runtime/coop';
import type { RuntimeOption } from '../runtime';
import { codedError, invalidArgType, optionsBag, outOfRange, validateInteger, validateString } from '../errors';
import {
  K_DGRAM,
  K_DRAIN,
  K_ERROR,
  SYSCALLS,
  encodedV4,
  ipv4ToInt,
  isBlocked,
  parseNativeAddr,
  queueWrite,
  register,
  systemError,
  errnoOf,
  flushWrites,
  unregister,
  v4Address,
  v6Address,
  ADDR_SCOPED,
  type SocketAddress,
} from './core';
import { DgramCore, type Datagram as DatagramOf } from './dgram-core';
import {
  socketRuntime,
  openSocket,
  splitAddr,
  resolveAddr,
  resolveHost,
  checkSignal,
  signalRejection,
  untilAborted,
  toBytes,
  closedError,
  O_REUSE_ADDR,
  O_REUSE_PORT,
} from './common';
import type { AddressLike, SignalOption } from './types';
import { freshResource } from '../runtime/unclaimed';

/** One datagram of `recvMany` / `sendMany`. */
export type Datagram = DatagramOf<SocketAddress>;

/** The largest UDP payload over IPv4: 65 535 minus the IP and UDP headers. */
const MAX_V4_PAYLOAD = 65_507;

/**
 * The largest payload of one datagram to `host`: larger ones fail with `EMSGSIZE` before they
 * reach the kernel (which would refuse them too), as node:dgram reports them: to the send.
 */
function maxPayload(host: string): number {
  return net.isIPv6(host) && !/^::ffff:/i.test(host) ? 65_527 : MAX_V4_PAYLOAD;
}

/**
 * `port` as a destination: 0 is refused (`ERR_SOCKET_BAD_PORT`), as node:dgram refuses it. The
 * kernel would take a `connect(2)` to it and then refuse every send (`EINVAL`), which, a send being
 * reported once queued, would only reach the next receive.
 */
function destinationPortError(port: number, name: string): Error | undefined {
  if (port !== 0) return undefined;
  return Object.assign(outOfRange(`${name}.port`, '>= 1 && <= 65535', port), { code: 'ERR_SOCKET_BAD_PORT' });
}

/**
 * A UDP socket. Received datagrams are batched natively (`recvmmsg`); sends too (`sendmmsg`).
 *
 * Errors of sends: a send resolves once its datagram is queued for the turn's `sendmmsg`, so an
 * error the kernel returns for it then (`EACCES` to a broadcast address without
 * {@link UdpSocket.setBroadcast}, `ENETUNREACH`, …) cannot reject that send. It rejects the next
 * receive instead (syscall `'send'`), as the error a connected socket gets back from the network
 * (`ECONNREFUSED`) does. A send refused before it is queued (`EMSGSIZE`, a bad address) rejects
 * itself, as does one waiting for room when the socket closes or its `signal` aborts; once queued,
 * its datagram's errors go to the next receive like any other's. Sends queued for the connected
 * peer still go to it when the socket connects elsewhere or disconnects.
 */
export class UdpSocket {
  /** @internal */ readonly _h: number;
  readonly #core: DgramCore<SocketAddress>;
  #connected = false;
  /** The connected peer's IP (see {@link maxPayload}). */
  #peerHost = '';

  /** @internal */
  constructor(h: number) {
    this._h = h;
    this.#core = new DgramCore(h);
    register(h, this);
  }

  /** @internal Node-style ref/unref: whether a pending receive or send keeps the loop alive. */
  _setRef(on: boolean): void {
    this.#core.holds.setRef(on);
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

  /** Binds to `addr` (port 0 picks a free port). */
  static bind(
    addr: AddressLike,
    options?: RuntimeOption & SignalOption & { reuseAddr?: boolean; reusePort?: boolean },
  ): Promise<UdpSocket> {
    // Only its caller holds the socket: a losing select() branch's is closed.
    return freshResource(UdpSocket.#bind(addr, options), (u) => u.close());
  }

  static async #bind(
    addr: AddressLike,
    options: (RuntimeOption & SignalOption & { reuseAddr?: boolean; reusePort?: boolean }) | undefined,
  ): Promise<UdpSocket> {
    const opts = optionsBag<RuntimeOption & SignalOption & { reuseAddr?: boolean; reusePort?: boolean }>(options);
    checkSignal(opts.signal);
    socketRuntime(opts); // validates before the lookup
    const { host, port } = await untilAborted(resolveAddr(addr), opts.signal);
    const flags = (opts.reuseAddr ? O_REUSE_ADDR : 0) | (opts.reusePort ? O_REUSE_PORT : 0);
    const open = (nrt: NativeRuntime | undefined): number => native.netUdpBind(host, port, flags, 0, 0, nrt);
    return new UdpSocket(openSocket(opts, open, 'bind', host, port));
  }

  /** @internal */
  onEvent(kind: number, a: number, b: number, off: number, len: number): void {
    if (kind === K_DGRAM) {
      const port = b & 0xffff;
      const address = a !== -1 || (b >> 16 & 0xff) === 4 ? v4Address(a, port) : v6Address(off + len, port, (b & ADDR_SCOPED) !== 0);
      this.#core.deliver(off, len, address);
    } else if (kind === K_ERROR) {
      this.#core.fail(systemError(a, SYSCALLS[b] ?? 'recv'));
    } else if (kind === K_DRAIN) {
      this.#core.drained();
    }
  }

  #recv<T>(kind: 0 | 1 | 2 | 3, buf: Uint8Array | undefined, max: number, signal?: AbortSignal): Promise<T> {
    if (kind !== 3 && !(buf instanceof Uint8Array)) return Promise.reject(invalidArgType('buf', 'an instance of Uint8Array', buf));
    return this.#core.recv(kind, buf, max, signal);
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
    try {
      validateInteger(max, 'max', 1, 0x7fffffff);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#recv(3, undefined, max, options?.signal);
  }

  #send(bytes: Uint8Array, host: string, port: number, signal: AbortSignal | undefined): Promise<number> {
    if (this.#core.closed) return Promise.reject(closedError());
    const dead = this.#core.deadError;
    if (dead !== undefined) return Promise.reject(dead);
    if (bytes.length > MAX_V4_PAYLOAD && bytes.length > maxPayload(host === '' ? this.#peerHost : host)) {
      return Promise.reject(systemError(errnoOf('EMSGSIZE'), 'send', host || undefined, host ? port : undefined));
    }
    const stop = signalRejection(signal);
    if (stop !== undefined) return stop;
    if (this._sendNow(bytes, host, port)) return settleNow(bytes.length);
    const r = native.netUdpSend(this._h, bytes, host, port);
    if (r < 0) return Promise.reject(systemError(-r, 'send', host || undefined, host ? port : undefined));
    if (r === 1) return this.#core.waitDrain(signal).then(() => bytes.length);
    return settleNow(bytes.length);
  }

  /**
   * Sends one datagram to the connected peer; resolves with its length once the kernel took it
   * (or it waits in a bounded queue). Rejects with `ERR_SOCKET_DGRAM_NOT_CONNECTED` before
   * {@link UdpSocket.connect}, `EMSGSIZE` when it is larger than UDP allows, `ERR_SOCKET_CLOSED`
   * when the socket closes before the datagram went out. An abort ends the wait only: a datagram
   * already handed over may still be sent.
   */
  send(data: Uint8Array | string, options?: SignalOption): Promise<number> {
    if (!this.#connected) return Promise.reject(codedError('ERR_SOCKET_DGRAM_NOT_CONNECTED', 'Not connected'));
    let bytes: Uint8Array;
    try {
      bytes = toBytes(data);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#send(bytes, '', 0, options?.signal);
  }

  /**
   * Sends one datagram to `addr` (a host name is looked up first, as `bind`'s is). One larger than
   * UDP allows (65 507 bytes over IPv4, 65 527 over IPv6) rejects with `EMSGSIZE`, as does `send`.
   */
  sendTo(data: Uint8Array | string, addr: AddressLike, options?: SignalOption): Promise<number> {
    const signal = options?.signal;
    if (signal === undefined && addr !== undefined && this.#queueFast(data, addr)) {
      return settleNow((data as Uint8Array).length);
    }
    let bytes: Uint8Array;
    let a: { host: string; port: number };
    try {
      bytes = toBytes(data);
      a = splitAddr(addr);
    } catch (e) {
      return Promise.reject(e);
    }
    const badPort = destinationPortError(a.port, 'addr');
    if (badPort !== undefined) return Promise.reject(badPort);
    if (net.isIP(a.host)) return this.#send(bytes, a.host, a.port, signal);
    return untilAborted(this.#resolveHost(a.host), signal).then((host) => this.#send(bytes, host, a.port, signal));
  }

  /**
   * @internal Queues a datagram as `send` (`host` empty) or `sendTo` do when they need not wait:
   * to the connected peer or an IPv4 literal, small enough for the write table, the socket open
   * and not blocked. Returns false, queueing nothing, otherwise (the general path of `send`, and
   * `compat/dgram`, then take the native call).
   */
  _sendNow(bytes: Uint8Array, host: string, port: number): boolean {
    if (this.#core.closed || this.#core.deadError !== undefined || isBlocked(this._h)) return false;
    if (host === '') return this.#connected && queueWrite(this._h, bytes, 0, 0);
    const ip = ipv4ToInt(host);
    return ip !== -1 && queueWrite(this._h, bytes, ip, port | (4 << 16));
  }

  /**
   * Fast path of a send: bytes to the connected peer (`addr` undefined) or to an address object
   * received from this module (e.g. `recvFrom`'s) go straight into the write table. False when the
   * send needs the general path (another address form, a string, a blocked or closed socket).
   */
  #queueFast(data: unknown, addr: unknown): boolean {
    if (!(data instanceof Uint8Array) || this.#core.closed || this.#core.deadError !== undefined || isBlocked(this._h)) {
      return false;
    }
    if (addr === undefined) return this.#connected && queueWrite(this._h, data, 0, 0);
    const enc = typeof addr === 'object' && addr !== null ? encodedV4(addr) : undefined;
    return enc !== undefined && queueWrite(this._h, data, enc[0], enc[1]);
  }

  /**
   * Sends several datagrams (one `sendmmsg` per run); resolves with how many were sent. Those
   * that take the fast path (see `sendTo`) are queued synchronously, so a batch costs no promise
   * per datagram. A message without `address` goes to the connected peer. On a failure the
   * datagrams before the failing one were sent, and the rest were not.
   */
  sendMany(msgs: ReadonlyArray<{ data: Uint8Array | string; address?: AddressLike }>, options?: SignalOption): Promise<number> {
    if (!Array.isArray(msgs)) return Promise.reject(invalidArgType('msgs', 'an array', msgs));
    let i = 0;
    if (options?.signal === undefined) {
      for (; i < msgs.length; i++) {
        const m: unknown = msgs[i];
        if (typeof m !== 'object' || m === null) break;
        const { data, address } = m as { data?: unknown; address?: unknown };
        if (!this.#queueFast(data, address)) break;
      }
    }
    return i === msgs.length ? settleNow(i) : this.#sendRest(msgs, i, options);
  }

  async #sendRest(
    msgs: ReadonlyArray<{ data: Uint8Array | string; address?: AddressLike }>,
    i: number,
    options: SignalOption | undefined,
  ): Promise<number> {
    for (; i < msgs.length; i++) {
      const m: unknown = msgs[i];
      if (typeof m !== 'object' || m === null) throw invalidArgType(`msgs[${i}]`, 'an object with data and address', m);
      const { data, address } = m as { data: Uint8Array | string; address?: AddressLike };
      if (address === undefined) await this.send(data, options);
      else await this.sendTo(data, address, options);
    }
    return msgs.length;
  }

  /**
   * Connects: `send` goes to `addr`, and only its datagrams are received. A host name is looked up
   * first (the wait `signal` can end).
   */
  async connect(addr: AddressLike, options?: SignalOption): Promise<void> {
    checkSignal(options?.signal);
    const { host, port } = await untilAborted(
      (async () => {
        const a = splitAddr(addr);
        return { host: await this.#resolveHost(a.host), port: a.port };
      })(),
      options?.signal,
    );
    const badPort = destinationPortError(port, 'addr');
    if (badPort !== undefined) throw badPort;
    this._connect(host, port, true);
  }

  /**
   * `host` looked up for a destination. `localhost` is the loopback address of this socket's family
   * (as `TcpSocket.v6()` has it): `::1` for an IPv6 socket, which could not reach `127.0.0.1` when
   * bound to `::1`. Other names are looked up in both families, as before: a dual-stack socket
   * reaches an IPv4-only host through its mapped address.
   */
  #resolveHost(host: string): Promise<string> {
    if (host !== 'localhost') return resolveHost(host);
    let family: 4 | 6 | undefined;
    try {
      family = this.localAddr().family === 'IPv6' ? 6 : 4;
    } catch {
      family = undefined; // closed: the send or connect fails on its own
    }
    return resolveHost(host, family);
  }

  /**
   * @internal Connects to the IP `host` at once. `filter` false keeps datagrams other senders got
   * queued before (for compat/dgram: node:dgram on Linux still emits those, as the kernel keeps them).
   */
  _connect(host: string, port: number, filter: boolean): void {
    if (this.#core.closed) throw closedError();
    flushWrites(); // sends queued for the old peer go to it
    const r = native.netUdpConnect(this._h, host, port);
    if (r < 0) throw systemError(-r, 'connect', host, port);
    // Connected only once nothing can fail: a connect that throws leaves the socket unconnected.
    let from: ((a: SocketAddress) => boolean) | undefined;
    if (filter) {
      let peer: SocketAddress;
      try {
        peer = this.peerAddr();
      } catch (e) {
        native.netUdpDisconnect(this._h);
        this.#connected = false;
        this.#core.onlyFrom(undefined);
        throw e;
      }
      from = (a) => a.port === peer.port && a.address === peer.address;
    }
    this.#connected = true;
    this.#peerHost = host;
    this.#core.onlyFrom(from);
  }

  /**
   * Undoes {@link UdpSocket.connect}: datagrams from any sender are received again, and `send`
   * needs an address (`sendTo`). Throws `ERR_SOCKET_DGRAM_NOT_CONNECTED` when not connected.
   * On Linux a socket bound to port 0 loses the port the kernel picked (as with node:dgram).
   */
  disconnect(): void {
    if (!this.#connected) throw codedError('ERR_SOCKET_DGRAM_NOT_CONNECTED', 'Not connected');
    if (this.#core.closed) throw closedError();
    flushWrites(); // sends queued for the peer go to it
    const r = native.netUdpDisconnect(this._h);
    if (r < 0) throw systemError(-r, 'connect');
    this.#connected = false;
    this.#core.onlyFrom(undefined);
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
    validateString(group, 'group');
    validateString(iface, 'iface');
    const r = native.netMulticast(this._h, true, group, iface);
    if (r < 0) throw systemError(-r, 'addMembership');
  }
  /** Leaves an IPv4 multicast group. */
  leaveMulticastV4(group: string, iface = '0.0.0.0'): void {
    validateString(group, 'group');
    validateString(iface, 'iface');
    const r = native.netMulticast(this._h, false, group, iface);
    if (r < 0) throw systemError(-r, 'dropMembership');
  }
  /**
   * Joins an IPv6 multicast group on the interface with index `iface` (0, the default: the
   * kernel's choice). Interface indexes are the `scopeid`s of `os.networkInterfaces()`.
   */
  joinMulticastV6(group: string, iface = 0): void {
    this.#membershipV6(true, group, iface);
  }
  /** Leaves an IPv6 multicast group joined on interface index `iface`. */
  leaveMulticastV6(group: string, iface = 0): void {
    this.#membershipV6(false, group, iface);
  }
  #membershipV6(join: boolean, group: string, iface: number): void {
    validateString(group, 'group');
    validateInteger(iface, 'iface', 0, 0xffffffff);
    const r = native.netMulticastV6(this._h, join, group, iface);
    if (r < 0) throw systemError(-r, join ? 'addMembership' : 'dropMembership');
  }
  /** `IPV6_MULTICAST_LOOP`: whether this host's own members receive what the socket sends. */
  setMulticastLoopV6(on: boolean): void {
    this.#opt(10, on ? 1 : 0);
  }
  /** `IPV6_MULTICAST_HOPS`: the hop limit of outgoing IPv6 multicast. */
  setMulticastHopsV6(hops: number): void {
    validateInteger(hops, 'hops', 0, 255);
    this.#opt(11, hops);
  }
  /**
   * `IPV6_MULTICAST_IF`: the interface (by index; 0 = the routing table's choice) outgoing IPv6
   * multicast leaves by. A destination with a zone (`ff02::1%eth0`) picks one per datagram.
   */
  setMulticastInterfaceV6(iface: number): void {
    validateInteger(iface, 'iface', 0, 0xffffffff);
    const r = native.netMulticastIfV6(this._h, iface);
    if (r < 0) throw systemError(-r, 'setsockopt');
  }
  /** The bound address. Throws `ERR_SOCKET_CLOSED` once the socket is closed, as its waits reject. */
  localAddr(): SocketAddress {
    if (this.#core.closed) throw closedError();
    return parseNativeAddr(native.netAddr(this._h, false), 'getsockname');
  }
  /**
   * The address {@link UdpSocket.connect} connected to; throws `ENOTCONN` when not connected, and
   * `ERR_SOCKET_CLOSED` once the socket is closed (as its waits reject).
   */
  peerAddr(): SocketAddress {
    if (this.#core.closed) throw closedError();
    return parseNativeAddr(native.netAddr(this._h, true), 'getpeername');
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
