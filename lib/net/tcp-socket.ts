/**
 * `TcpSocket`: an unconnected TCP socket that collects options and a local address, then becomes
 * a `TcpListener` (`listen`) or a `TcpStream` (`connect`).
 * @module
 */
import * as net from 'node:net';
import { codedError, invalidArgType, invalidArgValue, optionsBag, validateInteger } from '../errors';
import type { Runtime, RuntimeOption } from '../runtime';
import { splitAddr, resolveHost, socketRuntime, checkSignal, untilAborted, MAX_BACKLOG, O_REUSE_ADDR, O_REUSE_PORT } from './common';
import type { AddressLike, SignalOption } from './types';
import { errnoOf, systemError } from './core';
import { TcpStream, connectTcp } from './tcp-stream';
import { TcpListener, listenTcp } from './tcp-listener';
import { freshResource } from '../runtime/unclaimed';

/** An unconnected TCP socket to set options on before `bind`+`listen` or `connect`. */
export class TcpSocket {
  #flags = 0;
  #snd = 0;
  #rcv = 0;
  #bind: { host: string; port: number } | undefined;
  #used = false;
  #runtime: Runtime | undefined;
  private constructor(
    private readonly _v6: boolean,
    options: RuntimeOption | undefined,
  ) {
    this.#runtime = socketRuntime(optionsBag<RuntimeOption>(options))[0];
  }
  /**
   * A new IPv4 socket.
   * @param options - `runtime`: the runtime its listener or stream is served by.
   */
  static v4(options?: RuntimeOption): TcpSocket {
    return new TcpSocket(false, options);
  }
  /**
   * A new IPv6 socket.
   * @param options - `runtime`: the runtime its listener or stream is served by.
   */
  static v6(options?: RuntimeOption): TcpSocket {
    return new TcpSocket(true, options);
  }
  /** `SO_REUSEADDR`. */
  setReuseAddr(on: boolean): void {
    if (typeof on !== 'boolean') throw invalidArgType('on', 'of type boolean', on);
    this.#flags = on ? this.#flags | O_REUSE_ADDR : this.#flags & ~O_REUSE_ADDR;
  }
  /** `SO_REUSEPORT`. */
  setReusePort(on: boolean): void {
    if (typeof on !== 'boolean') throw invalidArgType('on', 'of type boolean', on);
    this.#flags = on ? this.#flags | O_REUSE_PORT : this.#flags & ~O_REUSE_PORT;
  }
  /** `SO_SNDBUF`. */
  setSendBufferSize(n: number): void {
    validateInteger(n, 'size', 1, 0x7fffffff);
    this.#snd = n;
  }
  /** `SO_RCVBUF`. */
  setRecvBufferSize(n: number): void {
    validateInteger(n, 'size', 1, 0x7fffffff);
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
    validateInteger(backlog, 'backlog', 1, MAX_BACKLOG);
    const b = this.#bind ?? { host: this._v6 ? '::' : '0.0.0.0', port: 0 };
    this.#take();
    const l = listenTcp(b.host, b.port, backlog, this.#flags, this.#snd, this.#rcv, this.#runtime);
    return freshResource(l, (x) => x.close()); // a losing select() branch's is closed
  }
  /**
   * `addr` as an address of this socket's family: a name resolved to one, an IP literal of the
   * other family rejected as the OS rejects it (`connect` would otherwise open a socket of the
   * destination's family).
   */
  async #resolve(addr: AddressLike): Promise<{ host: string; port: number }> {
    const { host, port } = splitAddr(addr);
    const family = this._v6 ? 6 : 4;
    const ip = await resolveHost(host, family);
    if (net.isIP(ip) !== family) {
      // Linux: connect(2) of an AF_INET socket to an IPv6 address is EAFNOSUPPORT; of an AF_INET6
      // one to an IPv4 address (a sockaddr_in, too short), EINVAL; Tokio's TcpSocket passes both on.
      throw systemError(errnoOf(this._v6 ? 'EINVAL' : 'EAFNOSUPPORT'), 'connect', ip, port);
    }
    return { host: ip, port };
  }
  /**
   * Connects to `addr`, an address of this socket's family (a name is resolved to one;
   * `localhost` is `127.0.0.1` or `::1`). One of the other family rejects as connect(2) does on
   * Linux: `EAFNOSUPPORT` for a v4 socket, `EINVAL` for a v6 one.
   */
  connect(addr: AddressLike, options?: SignalOption): Promise<TcpStream> {
    // Only its caller holds the stream: a losing select() branch's is closed.
    return freshResource(this.#connect(addr, options), (s) => s.close());
  }

  async #connect(addr: AddressLike, options: SignalOption | undefined): Promise<TcpStream> {
    checkSignal(options?.signal);
    this.#take();
    const { host, port } = await untilAborted(this.#resolve(addr), options?.signal);
    return connectTcp(
      host,
      port,
      this.#bind?.host ?? '',
      this.#bind?.port ?? 0,
      this.#flags,
      this.#snd,
      this.#rcv,
      options?.signal,
      this.#runtime,
    );
  }
}
