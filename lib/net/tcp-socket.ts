/**
 * `TcpSocket`: an unconnected TCP socket that collects options and a local address, then becomes
 * a `TcpListener` (`listen`) or a `TcpStream` (`connect`).
 * @module
 */
import * as net from 'node:net';
import { codedError, invalidArgValue, optionsBag, validateInteger } from '../errors';
import type { Runtime, RuntimeOption } from '../runtime';
import { splitAddr, resolveAddr, socketRuntime, checkSignal, untilAborted, MAX_BACKLOG, O_REUSE_ADDR, O_REUSE_PORT } from './common';
import type { AddressLike, SignalOption } from './types';
import { TcpStream, connectTcp } from './tcp-stream';
import { TcpListener, listenTcp } from './tcp-listener';

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
    this.#flags = on ? this.#flags | O_REUSE_ADDR : this.#flags & ~O_REUSE_ADDR;
  }
  /** `SO_REUSEPORT`. */
  setReusePort(on: boolean): void {
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
    return listenTcp(b.host, b.port, backlog, this.#flags, this.#snd, this.#rcv, this.#runtime);
  }
  /** Connects to `addr`. */
  async connect(addr: AddressLike, options?: SignalOption): Promise<TcpStream> {
    checkSignal(options?.signal);
    this.#take();
    const { host, port } = await untilAborted(resolveAddr(addr), options?.signal);
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
