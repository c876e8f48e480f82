/**
 * Node-shaped errors and validators shared by `kyoto/compat/net` and `kyoto/compat/dgram`
 * (worded like Node's own, same classes and codes).
 * @module
 */
import { closeSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as util from 'node:util';
import { native } from '../native';
import { systemError, type SystemError } from '../net/core';

/** An error with Node's `code` property. */
export type NodeCodedError<E extends Error = Error> = E & { code: string };

/** `new Ctor(message)` with an own, enumerable `code`, like Node's internal errors. */
export function nodeError<E extends Error>(
  Ctor: new (message: string) => E,
  code: string,
  message: string,
): NodeCodedError<E> {
  const err = new Ctor(message) as NodeCodedError<E>;
  err.code = code;
  Error.captureStackTrace?.(err, nodeError);
  return err;
}

/**
 * The error thrown where `node:net`/`node:dgram` behaviour has no kyoto equivalent:
 * `code: 'ERR_NOT_SUPPORTED'`, a message naming the feature.
 */
export function notSupported(module: string, feature: string): NodeCodedError {
  return nodeError(Error, 'ERR_NOT_SUPPORTED', `kyoto/compat/${module}: ${feature} is not supported`);
}

/** Node's `determineSpecificType` (how argument errors show the received value). */
export function received(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  switch (typeof value) {
    case 'number':
      return Object.is(value, -0) ? 'type number (-0)' : `type number (${value})`;
    case 'bigint':
      return `type bigint (${value}n)`;
    case 'boolean':
      return `type boolean (${value})`;
    case 'symbol':
      return `type symbol (${String(value)})`;
    case 'function':
      return `function ${(value as { name?: string }).name}`;
    case 'string': {
      const s = value.length > 28 ? `${value.slice(0, 25)}...` : value;
      return `type string ('${s}')`;
    }
    default: {
      const ctor = (value as object).constructor;
      return ctor?.name ? `an instance of ${ctor.name}` : 'an object';
    }
  }
}

/** `ERR_INVALID_ARG_TYPE` (`TypeError`). */
export function argType(name: string, expected: string, actual: unknown): NodeCodedError<TypeError> {
  const what = name.includes('.') ? 'property' : 'argument';
  return nodeError(TypeError, 'ERR_INVALID_ARG_TYPE', `The "${name}" ${what} must be ${expected}. Received ${received(actual)}`);
}

/** `ERR_INVALID_ARG_VALUE` (`TypeError`). */
export function argValue(name: string, value: unknown, reason = 'is invalid'): NodeCodedError<TypeError> {
  const what = name.includes('.') ? 'property' : 'argument';
  // Node shows the value itself here (inspected, cut at 128 characters), not its type.
  let shown = util.inspect(value);
  if (shown.length > 128) shown = `${shown.slice(0, 128)}...`;
  return nodeError(TypeError, 'ERR_INVALID_ARG_VALUE', `The ${what} '${name}' ${reason}. Received ${shown}`);
}

/** `ERR_OUT_OF_RANGE` (`RangeError`). */
export function outOfRange(name: string, range: string, value: unknown): NodeCodedError<RangeError> {
  return nodeError(
    RangeError,
    'ERR_OUT_OF_RANGE',
    `The value of "${name}" is out of range. It must be ${range}. Received ${String(value)}`,
  );
}

/** `ERR_MISSING_ARGS` (`TypeError`); an array entry means "one of these". */
export function missingArgs(...names: Array<string | string[]>): NodeCodedError<TypeError> {
  const parts = names.map((n) => (Array.isArray(n) ? n.map((a) => `"${a}"`).join(' or ') : `"${n}"`));
  const list = parts.length < 3 ? parts.join(' and ') : `${parts.slice(0, -1).join(', ')}, and ${parts[parts.length - 1]}`;
  return nodeError(TypeError, 'ERR_MISSING_ARGS', `The ${list} argument${names.length > 1 ? 's' : ''} must be specified`);
}

/** Node's `validatePort`: a number or numeric string in 0..65535 (1.. unless `allowZero`). */
export function validatePort(port: unknown, name = 'Port', allowZero = true): number {
  if (
    (typeof port !== 'number' && typeof port !== 'string') ||
    (typeof port === 'string' && port.trim().length === 0) ||
    +port !== +port >>> 0 ||
    +port > 0xffff ||
    (+port === 0 && !allowZero)
  ) {
    throw nodeError(
      RangeError,
      'ERR_SOCKET_BAD_PORT',
      `${name} should be ${allowZero ? '>=' : '>'} 0 and < 65536. Received ${received(port)}.`,
    );
  }
  return +port | 0;
}

/** Node's `validateNumber` (no bounds: only the type is checked). */
export function validateNumber(value: unknown, name: string): asserts value is number {
  if (typeof value !== 'number') throw argType(name, 'of type number', value);
}

/** Node's `validateInt32`: an integer number in `min`..2^31-1. */
export function validateInt32(value: unknown, name: string, min = -2147483648): asserts value is number {
  if (typeof value !== 'number') throw argType(name, 'of type number', value);
  if (!Number.isInteger(value)) throw outOfRange(name, 'an integer', value);
  if (value < min || value > 2147483647) throw outOfRange(name, `>= ${min} && <= 2147483647`, value);
}

/** Node's `validateString`. */
export function validateString(value: unknown, name: string): asserts value is string {
  if (typeof value !== 'string') throw argType(name, 'of type string', value);
}

/** Node's `validateFunction`. */
export function validateFunction(value: unknown, name: string): asserts value is (...args: never[]) => unknown {
  if (typeof value !== 'function') throw argType(name, 'of type function', value);
}

/** Node's `validateBoolean`. */
export function validateBoolean(value: unknown, name: string): asserts value is boolean {
  if (typeof value !== 'boolean') throw argType(name, 'of type boolean', value);
}

/** Node's `validateAbortSignal`. */
export function validateAbortSignal(value: unknown, name: string): asserts value is AbortSignal | undefined {
  if (value !== undefined && (value === null || typeof value !== 'object' || !('aborted' in value))) {
    throw argType(name, 'an instance of AbortSignal', value);
  }
}

/** A Node-shaped system error for an errno name (`'EBADF'`), e.g. `setBroadcast EBADF`. */
export function errnoError(name: keyof typeof osConstants.errno, syscall: string, address?: string, port?: number): SystemError {
  return systemError(uvErrno(name), syscall, address, port);
}

let uvByName: Map<string, number> | undefined;

/**
 * libuv's (positive) number for an errno name: what Node reports. On Unix it is the OS's errno; on
 * Windows libuv has its own numbers (`EBADF` is 4083 there, not the CRT's 9).
 */
function uvErrno(name: string): number {
  if (uvByName === undefined) {
    uvByName = new Map();
    for (const [uv, [n]] of util.getSystemErrorMap()) uvByName.set(n, -uv);
  }
  return uvByName.get(name) ?? osConstants.errno[name as keyof typeof osConstants.errno];
}

/** Calls `fn` once `signal` aborts (at once, on the next tick, when it already has). */
export function onAbort(signal: AbortSignal, fn: () => void): () => void {
  if (signal.aborted) {
    process.nextTick(fn);
    return () => {};
  }
  signal.addEventListener('abort', fn, { once: true });
  return () => signal.removeEventListener('abort', fn);
}

/**
 * Whether this process is a `node:cluster` worker. A worker always has an IPC channel; only then is
 * node:cluster loaded to ask.
 */
export function inClusterWorker(): boolean {
  if (typeof process.send !== 'function') return false;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('node:cluster') as { isWorker: boolean }).isWorker;
}

/**
 * Asks node:cluster's primary for the socket `query` describes, through `_getServer`: where
 * node:net's `listenInCluster` and node:dgram's `bindServerHandle` ask. `cb` gets a libuv errno
 * (0 or negative) and the handle the primary passed (see `ClusterAcceptor` in compat/net). It also
 * tells the primary once `obj` emits `'listening'`.
 */
export function getClusterServer<H>(obj: object, query: object, cb: (err: number, handle: H | null) => void): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const cluster = require('node:cluster') as { _getServer(obj: object, query: object, cb: (err: number, handle: H | null) => void): void };
  cluster._getServer(obj, query, cb);
}

/**
 * Has kyoto adopt a duplicate of `fd`, a descriptor a libuv handle keeps owning: `adopt` takes the
 * duplicate and returns `[handle, ...]` or `[-errno]`; on an error (or when duplicating fails) the
 * duplicate is closed again, as the adopting calls leave a descriptor they refuse open.
 */
export function adoptDuplicate(fd: number, adopt: (dup: number) => number[]): number[] {
  const dup = native.netDupFd(fd);
  if (dup < 0) return [dup];
  const r = adopt(dup);
  if (r[0] < 0) closeSync(dup);
  return r;
}

/**
 * Ties a handle node:cluster gave a worker to the server or socket (`owner`) that serves from a
 * duplicate of its descriptor. node:cluster closes every such handle when the worker disconnects
 * and waits for the callback: the owner then closes too, and calls it. Returns the handle's own
 * close, run at most once, for the owner's close to call.
 */
export function closeWithCluster(handle: { close(cb?: () => void): unknown }, owner: (cb?: () => void) => void): () => void {
  const nodeClose = handle.close.bind(handle);
  let closed = false;
  const closeOnce = (): void => {
    if (closed) return;
    closed = true;
    nodeClose();
  };
  handle.close = (cb?: () => void): void => {
    closeOnce();
    owner(cb);
  };
  return closeOnce;
}
