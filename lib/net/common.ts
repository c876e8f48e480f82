/**
 * What `kyoto/net`'s socket classes share: address parsing and host lookup, the promise and
 * `AbortSignal` plumbing of waiting calls, error makers and socket option flags. Internal: nothing
 * here is re-exported (the public types they share are in `types.ts`).
 * @module
 */
import * as dns from 'node:dns';
import * as net from 'node:net';
import type { Readable } from 'node:stream';
import type { NativeRuntime } from '../native';
import type { Runtime, RuntimeOption } from '../runtime';
import { runtimeOf } from '../runtime/of';
import { abortReason, codedError, invalidArgType, invalidArgValue, outOfRange, validateSignal } from '../errors';
import { hold, pinRuntime, systemError } from './core';

export function isRuntimeShutdown(e: Error): boolean {
  return (e as { code?: string }).code === 'ERR_RUNTIME_SHUTDOWN';
}

/**
 * What an emitter of node's streams and sockets (compat's, `toNodeStream()`'s) reports for `err`:
 * `err`, except that an end by its runtime's shutdown, which the program asked for, goes to
 * 'error' listeners only and is never an uncaught exception without one (null then).
 */
export function errorToReport(err: Error | null, emitter: { listenerCount(event: string): number }): Error | null {
  return err !== null && isRuntimeShutdown(err) && emitter.listenerCount('error') === 0 ? null : err;
}

/** Rejects and removes every waiter of `ws`, releasing their loop hold (through `release`). */
export function rejectAll(ws: Array<{ reject: (e: unknown) => void }>, err: Error, release: (delta: number) => void = hold): void {
  const all = ws.splice(0);
  if (all.length > 0) release(-1);
  for (const w of all) w.reject(err);
}

/**
 * Removes `w` from `ws` if it is still queued (its wait was aborted), releasing the loop hold
 * (through `release`) when that empties `ws`.
 */
export function removeWaiter<W>(ws: W[], w: W, release: (delta: number) => void = hold): void {
  const i = ws.indexOf(w);
  if (i < 0) return;
  ws.splice(i, 1);
  if (ws.length === 0) release(-1);
}

/**
 * The runtime a new socket's I/O runs on. Without `runtime` (or with the default runtime) a socket
 * uses this thread's data path (see {@link netFlavor}); with another {@link Runtime} its reads,
 * writes and accepts run on that runtime's threads, its events reach this thread batched, and
 * shutting that runtime down fails the socket's pending and later operations with
 * `ERR_RUNTIME_SHUTDOWN`.
 * @internal Its type names the native binding, which the emitted typings must not reference (see
 * lib/native.ts).
 */
export function socketRuntime(opts: RuntimeOption): [Runtime | undefined, NativeRuntime | undefined] {
  if (opts.runtime === undefined) return [undefined, undefined];
  const rt = runtimeOf(opts);
  if (rt._isShared) return [undefined, undefined];
  return [rt, rt._native()];
}

/**
 * Opens a socket on the runtime `opts` names (see {@link socketRuntime}): `open` makes the native
 * call with that runtime's handle and returns the socket's handle or a negative errno, thrown as a
 * system error of `syscall` (with `address`/`port`). The handle is pinned to the runtime.
 * @internal Its type names the native binding (see {@link socketRuntime}).
 */
export function openSocket(
  opts: RuntimeOption,
  open: (nrt: NativeRuntime | undefined) => number,
  syscall: string,
  address?: string,
  port?: number,
  failure: (h: number) => Error = (h) => systemError(-h, syscall, address, port),
): number {
  const [rt, nrt] = socketRuntime(opts);
  const h = open(nrt);
  if (h < 0) throw failure(h);
  pinRuntime(h, rt);
  return h;
}

/** The largest listen backlog accepted (`listen(2)` takes an int; the kernel caps it at its own limit). */
export const MAX_BACKLOG = 0x7fffffff;

export const READ_HWM = 1 << 20;
export const READ_LWM = 256 * 1024;
export const DGRAM_HWM = 4096;

export function splitAddr(addr: unknown, name = 'addr'): { host: string; port: number } {
  let host: unknown;
  let port: unknown;
  if (typeof addr === 'string') {
    const i = addr.lastIndexOf(':');
    if (i < 0) throw invalidArgValue(name, 'must be "host:port"', addr);
    host = addr.slice(0, i);
    port = Number(addr.slice(i + 1));
    if (addr.slice(i + 1) === '') port = NaN;
    if (typeof host === 'string' && host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  } else if (addr !== null && typeof addr === 'object') {
    const o = addr as Record<string, unknown>;
    host = o.host ?? o.address;
    port = o.port;
  } else {
    throw invalidArgType(name, 'a "host:port" string or an object with host/address and port', addr);
  }
  if (typeof host !== 'string') throw invalidArgType(`${name}.host`, 'of type string', host);
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw Object.assign(outOfRange(`${name}.port`, '>= 0 && <= 65535', port), { code: 'ERR_SOCKET_BAD_PORT' });
  }
  if (host === '') host = '0.0.0.0';
  return { host: host as string, port: port as number };
}

/**
 * The address to use for `host` (of `family` if given), looked up anew every time as node:net
 * does: no cache here, so a name whose address changes is followed, and a lookup of one family is
 * never answered with an address of the other. `localhost` is the loopback address of the family
 * (`127.0.0.1` without one) whatever `/etc/hosts` says (RFC 6761). An IP literal is returned as
 * is, whatever its family.
 */
export async function resolveHost(host: string, family?: 4 | 6): Promise<string> {
  if (net.isIP(host)) return host;
  if (host === 'localhost') return family === 6 ? '::1' : '127.0.0.1';
  const r = await dns.promises.lookup(host, family ? { family } : {});
  return r.address;
}

/**
 * Every address `host` names, in the resolver's order (as {@link resolveHost}, looked up anew each
 * time; an IP literal and `localhost` are one address): what a connect tries in turn, as Tokio's does.
 */
export async function resolveHostAll(host: string): Promise<string[]> {
  if (net.isIP(host) || host === 'localhost') return [await resolveHost(host)];
  const all = await dns.promises.lookup(host, { all: true });
  return all.map((a) => a.address);
}

export async function resolveAddr(addr: unknown, name = 'addr'): Promise<{ host: string; port: number }> {
  const { host, port } = splitAddr(addr, name);
  return { host: await resolveHost(host), port };
}

export function checkSignal(signal: AbortSignal | undefined): void {
  validateSignal(signal);
  if (signal?.aborted) throw abortReason(signal);
}

/**
 * What a waiting call rejects with before doing anything when its `signal` is not an
 * `AbortSignal` (`ERR_INVALID_ARG_TYPE`) or is already aborted; `undefined` when it may go on.
 * Checked ahead of the fast paths, so the outcome does not depend on whether the call had to wait.
 */
export function signalRejection(signal: unknown): Promise<never> | undefined {
  if (signal === undefined) return undefined;
  try {
    checkSignal(signal as AbortSignal);
  } catch (e) {
    return Promise.reject(e);
  }
  return undefined;
}

// A promise and its resolvers without a closure per call (the hot read paths): `new
// Promise(capture)` runs `capture` synchronously, which leaves the resolvers here for the caller
// to take at once. A closure capturing the caller's state would be two more objects per read, and
// every pending read's objects survive V8's scavenges (see README, P1 peak RSS).
export let capturedResolve: (v: unknown) => void = () => {};
export let capturedReject: (e: unknown) => void = () => {};
export function capture(resolve: (v: unknown) => void, reject: (e: unknown) => void): void {
  capturedResolve = resolve;
  capturedReject = reject;
}

/**
 * Runs `wait` with `signal`: an abort removes the waiter via `cancel` and rejects. A `signal` that
 * is not an `AbortSignal` rejects with `ERR_INVALID_ARG_TYPE` (every waiting call passes its
 * `options.signal` here unchecked).
 */
export function withSignal<T>(
  signal: AbortSignal | undefined,
  register: (resolve: (v: T) => void, reject: (e: unknown) => void) => () => void,
): Promise<T> {
  if (signal === undefined) {
    return new Promise<T>((resolve, reject) => {
      register(resolve, reject);
    });
  }
  const stop = signalRejection(signal);
  if (stop !== undefined) return stop;
  return new Promise<T>((resolve, reject) => {
    let cancel: (() => void) | undefined;
    const onAbort = (): void => {
      cancel?.();
      reject(abortReason(signal));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    cancel = register(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/**
 * `p`, or a rejection with `signal`'s reason if it aborts first. For waits on work that goes on
 * regardless (a FIN already queued, a datagram already handed over): the abort ends the caller's
 * wait, not the work, and `p` stays shareable (an idempotent `shutdown()` returns it again).
 */
export function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p;
  return withSignal<T>(signal, (resolve, reject) => {
    p.then(resolve, reject);
    return () => {};
  });
}

export function toBytes(data: unknown, name = 'data'): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (typeof data === 'string') return Buffer.from(data);
  // Memory transferred away (a detached buffer) reads as empty, as a detached Uint8Array does;
  // a new view of it would throw an uncoded TypeError.
  if (ArrayBuffer.isView(data)) {
    try {
      return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    } catch {
      return new Uint8Array(0);
    }
  }
  if (data instanceof ArrayBuffer) return data.byteLength === 0 ? new Uint8Array(0) : new Uint8Array(data);
  throw invalidArgType(name, 'a string, Buffer, TypedArray or DataView', data);
}

export function closedError(): Error {
  return codedError('ERR_SOCKET_CLOSED', 'Socket is closed');
}

export function framedError(): Error {
  return codedError('ERR_STREAM_FRAMED', 'the stream is framed: read frames with framed(...).next()');
}

/**
 * @internal The receiving side of `framed()` on a kyoto stream: gets the stream's frame events once
 * the native framer took over.
 */
export interface FrameSink {
  /** `K_FRAMES`, `K_FRAME_ERR`, `K_EOF` or a read `K_ERROR` (after the switch to native framing). */
  onFrameEvent(kind: number, a: number, b: number, off: number, len: number): void;
  /** The native framer took over: reading may be turned on. */
  onSynced(): void;
  /** The stream was closed locally. */
  onStreamClosed(): void;
}

export const O_REUSE_ADDR = 1;
export const O_REUSE_PORT = 2;
export const O_V6_ONLY = 4;
export const O_NODELAY = 8;
export const O_KEEPALIVE = 16;

/**
 * Reports `e` as an uncaught exception on the next tick, as an exception thrown from a listener
 * that node:net or node:dgram runs from libuv is: used where kyoto runs a listener from a promise
 * callback or a loop that must go on, so the throw neither becomes an unhandled rejection nor
 * stops the caller.
 */
export function reportUncaught(e: unknown): void {
  process.nextTick(() => {
    throw e;
  });
}

/**
 * Calls `cb(...args)` from a promise callback (a write's callback, a listener): what it throws
 * becomes an uncaught exception, as it would from node:net's handle, not a rejection nobody handles.
 */
export function callReporting<A extends unknown[]>(cb: (...args: A) => void, ...args: A): void {
  try {
    cb(...args);
  } catch (e) {
    reportUncaught(e);
  }
}

/**
 * `readable.push(chunk)` for a read loop driven by promises (`toNodeStream()`, the compat sockets):
 * a `'data'` listener that throws becomes an uncaught exception, as it does from node:net's
 * handle, and the loop goes on. Thrown inside the promise callback it would be a rejection nobody
 * handles, and the stream would stop reading for good.
 */
export function pushReporting(r: Readable, chunk: Buffer): boolean {
  try {
    return r.push(chunk);
  } catch (e) {
    reportUncaught(e);
    return true;
  }
}
