/**
 * Windows named pipes: `NamedPipeServer` (one instance per client, as in Tokio) and
 * `NamedPipeClient`, both streams with `TcpStream`'s methods. Elsewhere every entry point throws
 * `ERR_FEATURE_UNAVAILABLE_ON_PLATFORM`.
 * @module
 */
import { native } from '../native';
import type { RuntimeOption } from '../runtime';
import { codedError, invalidArgType, invalidArgValue, optionsBag, validateInteger, validateSignal } from '../errors';
import { type SocketAddress } from './core';
import { checkSignal, openSocket, withSignal } from './common';
import type { SignalOption } from './types';
import { TcpStream, waitConnected } from './tcp-stream';
import type { UnixSocketAddress } from './unix';
import { freshResource } from '../runtime/unclaimed';

function windowsOnly(): never {
  throw codedError('ERR_FEATURE_UNAVAILABLE_ON_PLATFORM', 'Windows named pipes are not available on this platform');
}

function validatePipePath(path: unknown): asserts path is string {
  if (typeof path !== 'string') throw invalidArgType('path', 'of type string', path);
  if (path.length === 0 || path.includes('\0')) throw invalidArgValue('path', 'must be a non-empty string without NUL', path);
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

  /**
   * Not for pipes (the static `connect` a subclass of {@link TcpStream} would inherit opens a TCP
   * connection): rejects with `ERR_METHOD_NOT_IMPLEMENTED`. Open a pipe with
   * {@link NamedPipeClient.open}; serve one with {@link NamedPipeServer.create}.
   */
  static override connect(): Promise<never> {
    return Promise.reject(
      codedError(
        'ERR_METHOD_NOT_IMPLEMENTED',
        'a named pipe is opened with NamedPipeClient.open(path) or served with NamedPipeServer.create(path), not connect()',
      ),
    );
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
    const h = openSocket(
      opts,
      (nrt) => {
        if (process.platform !== 'win32') windowsOnly(); // after the runtime option's check, as before
        return native.netPipeCreate(path, first, max, inSize, outSize, reject, nrt);
      },
      'listen',
      path,
    );
    const s = new NamedPipeServer(h, path);
    s.#connected = waitConnected(s, path, -1, undefined).then(() => undefined);
    // Observed by connect(); a server closed before any connect() call must not be an unhandled
    // rejection.
    s.#connected.catch(() => {});
    return freshResource(s, (x) => x.close()); // a losing select() branch's is closed
  }

  /**
   * Waits until a client has opened this instance (at once if one already has). Rejects with the
   * connection's error, or `ERR_SOCKET_CLOSED` if the instance is closed first. Aborting the wait
   * leaves the instance waiting for its client. Bad options (a `signal` that is not an
   * `AbortSignal`) reject with `ERR_INVALID_ARG_TYPE`, as every waiting call's do.
   */
  connect(options?: SignalOption): Promise<void> {
    let signal: AbortSignal | undefined;
    try {
      signal = optionsBag<SignalOption>(options).signal;
      validateSignal(signal);
    } catch (e) {
      return Promise.reject(e);
    }
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
  static open(path: string, options?: RuntimeOption & SignalOption): Promise<NamedPipeClient> {
    // Only its caller holds the pipe: a losing select() branch's is closed.
    return freshResource(NamedPipeClient.#open(path, options), (p) => p.close());
  }

  static async #open(path: string, options: (RuntimeOption & SignalOption) | undefined): Promise<NamedPipeClient> {
    validatePipePath(path);
    const opts = optionsBag<RuntimeOption & SignalOption>(options);
    checkSignal(opts.signal);
    const h = openSocket(
      opts,
      (nrt) => {
        if (process.platform !== 'win32') windowsOnly();
        return native.netPipeOpen(path, nrt);
      },
      'open',
      path,
    );
    return waitConnected(new NamedPipeClient(h, path), path, -1, opts.signal);
  }
}
