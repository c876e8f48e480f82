/**
 * The JS half of `kyoto/net`'s data path (internal).
 *
 * Native socket tasks report events in batches: one call of {@link onBatch} per batch, with six-int
 * records in a shared `Int32Array` and their bytes in one shared arena, both created here once.
 * Writes go the other way without a native call each: their bytes are copied into a shared write
 * arena and described in a shared write table, which native code sends in one pass per turn (right
 * after the batch call on the `current_thread` data path, or from one microtask otherwise).
 * @module
 */
import * as util from 'node:util';
import { copyBytes, copyOut } from './bytes';
import { firstCopy, native } from '../native';
import { refillBudget } from '../runtime/coop';
import { runtimeShutdownError } from '../errors';
import {
  observingResources,
  resourceCreated,
  resourceClosed,
  type Attr,
  type ResourceToken,
} from '../console/instrument';

// A later evaluation of this file in this env (Jest's per-file module registries, a cleared
// require.cache) takes the first one's exports: see firstCopy().
const first = firstCopy('net/core', exports);

/** Ints per event record. */
const EV = 6;
const EV_CAP = 4096;
const RARENA = 4 << 20;
const WREC = 5;
const WTAB_CAP = 4096;
const WARENA = 1 << 20;
/** Writes larger than this bypass the shared arena (one native call). */
export const DIRECT_WRITE_MIN = 16 * 1024;
/** A large write goes to native code in slices of at most this (each waits for room after it). */
export const DIRECT_WRITE_MAX = 1 << 20;
const IDX_MASK = (1 << 20) - 1;

export const K_DATA = 1;
export const K_EOF = 2;
export const K_ERROR = 3;
export const K_ACCEPT = 4;
export const K_CONNECTED = 5;
export const K_DRAIN = 6;
export const K_DGRAM = 7;
export const K_COPY = 8;
/** Frames of a framed stream: `a` segments, their bytes then a (start, length | more << 31) table;
 * `b` & 1: the bytes are all ASCII. */
export const K_FRAMES = 9;
/** A framed stream broke its codec's rules: `a` = 1 line too long, 2 frame too big (u64 length at
 * `off`), 3 EOF in a header, 4 EOF in a frame. */
export const K_FRAME_ERR = 10;
/** Every raw `K_DATA` of a stream that is being framed came before this record. */
export const K_FRAME_SYNC = 11;

export const SYSCALLS = ['read', 'write', 'connect', 'accept', 'recv', 'send', 'shutdown'] as const;
/** In a `K_COPY` error's syscall code: the failing call was of `copyBidirectional`'s `b → a` half. */
export const COPY_REVERSE = 0x100;
/** In a `K_COPY` error's syscall code: the copy was cancelled; no read or write failed. */
export const COPY_NO_FAULT = 0x200;

const ev = new Int32Array(EV_CAP * EV);
const rarenaU8 = new Uint8Array(RARENA);
/** The receive arena as a Buffer (for cheap copies and latin1 decoding). */
export const rarena = Buffer.from(rarenaU8.buffer, 0, RARENA);

/** Copies `n` bytes at `off` of the receive arena to the start of `dst`. */
export function copyFromArena(dst: Uint8Array, off: number, n: number): void {
  copyBytes(rarena, off, dst, 0, n);
}

/** `len` bytes at `off` of the receive arena as a Buffer of their own (Node's pool for small ones). */
export function arenaChunk(off: number, len: number): Buffer {
  return copyOut(rarena, off, len);
}

const wtab = new Int32Array(WTAB_CAP * WREC);
const warenaU8 = new Uint8Array(WARENA);
const warena = Buffer.from(warenaU8.buffer, 0, WARENA);
/** [0] queued write records, [1] write arena bytes used, [2] native turn in progress. */
const ctl = new Int32Array(4);
/** Per socket index: 1 while its native write backlog is above the high-water mark. */
const blocked = new Uint8Array(1 << 20);

/** Something that receives a socket's events. */
export interface Endpoint {
  onEvent(kind: number, a: number, b: number, off: number, len: number): void;
}

const endpoints = new Map<number, Endpoint>();
const copyOps = new Map<number, (errno: number, sys: number, aToB: number, bToA: number) => void>();
let nextCopyOp = 0;
/** Counts `onBatch` calls: events with the same number arrived in one batch. */
let batchNo = 0;

/** The number of the batch being (or last) delivered; see `UdpSocket.recvMany`. */
export function currentBatch(): number {
  return batchNo;
}

/** Asks for the events queued since a large delivery (see `onBatch`'s count of 0). */
function rearm(): void {
  native.netRearm();
}

function onBatch(count: number): void {
  // 0: a large delivery came from another runtime's threads and more waits behind it; it is
  // asked for from the next loop turn, so that timers and I/O callbacks run in between.
  if (count === 0) {
    setImmediate(rearm);
    return;
  }
  refillBudget(count);
  batchNo = (batchNo + 1) | 0;
  for (let i = 0; i < count; i++) {
    const o = i * EV;
    const h = ev[o];
    const kind = ev[o + 1];
    if (kind === K_COPY) {
      const done = copyOps.get(h);
      if (done === undefined) continue;
      copyOps.delete(h);
      native.netCopyDone(h);
      const off = ev[o + 4];
      const aToB = Number(rarena.readBigUInt64LE(off));
      const bToA = Number(rarena.readBigUInt64LE(off + 8));
      done(ev[o + 2], ev[o + 3], aToB, bToA);
      continue;
    }
    const e = endpoints.get(h);
    if (e === undefined) {
      // A connection accepted natively for a listener closed meanwhile: nobody will adopt it.
      if (kind === K_ACCEPT) native.netClose(ev[o + 2]);
      continue;
    }
    if (kind === K_DRAIN) blocked[h & IDX_MASK] = 0;
    e.onEvent(kind, ev[o + 2], ev[o + 3], ev[o + 4], ev[o + 5]);
  }
}

const requested = (process.env.KYOTO_NET_FLAVOR ?? 'current_thread').trim();
/** The data path in use: `'current_thread'` (uv_poll on this thread's loop) or `'multi_thread'`. */
export const flavor: string = first !== exports ? '' : native.netInit(
  requested === 'multi_thread' ? 'multi_thread' : 'current_thread',
  onBatch,
  ev,
  rarenaU8,
  wtab,
  warenaU8,
  ctl,
  blocked,
);

/** The errno of error events sent when a socket's runtime shut down (see `sock.rs`). */
export const E_RUNTIME_SHUTDOWN = 0x4b590001;

/** The runtime each socket created with `{ runtime }` runs on, kept alive while the socket is. */
const runtimes = new Map<number, object>();

/** Console/diagnostics resources of sockets, by handle (instrumentation on only). */
const tokens = new Map<number, ResourceToken>();

export function register(h: number, e: Endpoint): void {
  endpoints.set(h, e);
  if (observingResources()) tokens.set(h, resourceCreated('net', e.constructor.name, undefined, addressReader(e)));
}

function fmtAddr(a: unknown): string | undefined {
  if (a === null || typeof a !== 'object') return undefined;
  const o = a as { address?: unknown; port?: unknown; path?: unknown; family?: unknown };
  if (typeof o.path === 'string') return o.path === '' ? '(unnamed)' : o.path;
  if (typeof o.address !== 'string') return undefined;
  return o.family === 'IPv6' ? `[${o.address}]:${String(o.port)}` : `${o.address}:${String(o.port)}`;
}

/** Reads a socket's addresses for the console, until both (or the local one) are known. */
function addressReader(e: Endpoint): () => Attr[] | undefined {
  let done = false;
  return () => {
    if (done) return undefined;
    const s = e as { localAddr?: () => unknown; peerAddr?: () => unknown };
    const attrs: Attr[] = [];
    let local: string | undefined;
    let peer: string | undefined;
    try {
      local = fmtAddr(s.localAddr?.());
    } catch {
      // not bound yet, or closed
    }
    if (local !== undefined) attrs.push({ name: 'local.addr', value: local });
    const hasPeer = typeof s.peerAddr === 'function' && !('accept' in (e as object));
    if (hasPeer) {
      try {
        peer = fmtAddr(s.peerAddr!());
      } catch {
        // not connected
      }
      if (peer !== undefined) attrs.push({ name: 'peer.addr', value: peer });
    }
    done = local !== undefined && (!hasPeer || peer !== undefined);
    return attrs.length > 0 ? attrs : undefined;
  };
}

/** Records that socket `h` runs on `runtime` (no-op for `undefined`). */
export function pinRuntime(h: number, runtime: object | undefined): void {
  if (runtime === undefined) return;
  runtimes.set(h, runtime);
  // Its shutdown closes its sockets (natively, once their backlog went out): what JS acknowledged
  // but still holds in the write table must reach them first.
  if (!flushOnShutdown.has(runtime)) {
    flushOnShutdown.add(runtime);
    (runtime as { _onShutdown?: (fn: () => void) => void })._onShutdown?.(flushWrites);
  }
}

/** Runtimes whose shutdown sends the write table first (see {@link pinRuntime}). */
const flushOnShutdown = new WeakSet<object>();

/** The runtime socket `h` was created on (`undefined`: the data path's own). */
export function pinnedRuntime(h: number): object | undefined {
  return runtimes.get(h);
}

export function unregister(h: number): void {
  if (tokens.size > 0) {
    const t = tokens.get(h);
    if (t !== undefined) {
      tokens.delete(h);
      resourceClosed(t);
    }
  }
  endpoints.delete(h);
  runtimes.delete(h);
  blocked[h & IDX_MASK] = 0;
}

export function isBlocked(h: number): boolean {
  return blocked[h & IDX_MASK] === 1;
}

let flushScheduled = false;
function flushMicrotask(): void {
  flushScheduled = false;
  flushWrites();
}

/** Bytes of the write arena in use: drops back (to 0) whenever the table was sent. */
export function writeTableUsed(): number {
  return ctl[1];
}

/** Sends the write table now (native code then marks sockets over their high-water mark). */
export function flushWrites(): void {
  if (ctl[0] > 0) native.netFlush();
}
// A write queued in the turn that calls process.exit() still goes out, as node:net's (whose
// small writes reach the kernel inside write()).
if (first === exports) process.on('exit', flushWrites);

/** A stream's native backlog high-water mark (`sock.rs` `BACKLOG_HWM`). */
export const BACKLOG_HWM = 64 * 1024;

/**
 * Queues `data` for socket `h` in the shared write table (`a`/`b`: IPv4 destination of a
 * datagram). Returns false when `data` is too large for the arena path (use a direct call).
 */
export function queueWrite(h: number, data: Uint8Array, a = 0, b = 0): boolean {
  const len = data.length;
  if (len > DIRECT_WRITE_MIN) return false;
  let n = ctl[0];
  let used = ctl[1];
  if (n >= WTAB_CAP || used + len > WARENA) {
    native.netFlush();
    n = 0;
    used = 0;
  }
  // (A detached buffer reads as empty, and `set` would throw on it.)
  if (len > 0) warena.set(data, used);
  const o = n * WREC;
  wtab[o] = h;
  wtab[o + 1] = used;
  wtab[o + 2] = len;
  wtab[o + 3] = a;
  wtab[o + 4] = b;
  ctl[0] = n + 1;
  ctl[1] = used + len;
  if (!flushScheduled && ctl[2] === 0) {
    flushScheduled = true;
    queueMicrotask(flushMicrotask);
  }
  return true;
}

/**
 * One frame as written: a `hdr`-byte big-endian length header (0: none; up to 8), `bytes`, then
 * `\n` when `nl`. The direct-write path of {@link queueFrame} and the JS framer both send this.
 */
export function encodeFrame(bytes: Uint8Array, hdr: number, nl: boolean): Buffer {
  const out = Buffer.allocUnsafe(hdr + bytes.length + (nl ? 1 : 0));
  if (hdr > 6) {
    out.fill(0, 0, hdr - 6);
    out.writeUIntBE(bytes.length, hdr - 6, 6);
  } else if (hdr > 0) {
    out.writeUIntBE(bytes.length, 0, hdr);
  }
  if (bytes.length > 0) out.set(bytes, hdr);
  if (nl) out[out.length - 1] = 10;
  return out;
}

/**
 * Queues one frame for stream `h` in the shared write table, as one write: a `hdr`-byte big-endian
 * length header (0: none), `body` (a string is written as UTF-8), then `\n` when `nl`. Returns the
 * body's byte length; -1 when the frame is too large for the arena path (nothing queued: use a direct
 * write); -2 when the body is longer than `max` bytes (nothing queued).
 */
export function queueFrame(h: number, hdr: number, body: Uint8Array | string, nl: boolean, max: number): number {
  const str = typeof body === 'string';
  const extra = hdr + (nl ? 1 : 0);
  let room = (str ? body.length * 3 : body.length) + extra;
  if (room > DIRECT_WRITE_MIN) {
    const exact = str ? Buffer.byteLength(body) : body.length;
    if (exact > max) return -2;
    if (exact + extra > DIRECT_WRITE_MIN) return -1;
    room = exact + extra;
  }
  let n = ctl[0];
  let used = ctl[1];
  if (n >= WTAB_CAP || used + room > WARENA) {
    native.netFlush();
    n = 0;
    used = 0;
  }
  let len: number;
  if (str) {
    len = warena.write(body, used + hdr);
  } else {
    len = body.length;
    if (len > 0) warena.set(body, used + hdr);
  }
  if (len > max) return -2; // nothing committed: the next write reuses these arena bytes
  if (hdr > 6) {
    warena.fill(0, used, used + hdr - 6);
    warena.writeUIntBE(len, used + hdr - 6, 6);
  } else if (hdr > 0) {
    warena.writeUIntBE(len, used, hdr);
  }
  if (nl) warena[used + hdr + len] = 10;
  const o = n * WREC;
  wtab[o] = h;
  wtab[o + 1] = used;
  wtab[o + 2] = len + extra;
  wtab[o + 3] = 0;
  wtab[o + 4] = 0;
  ctl[0] = n + 1;
  ctl[1] = used + len + extra;
  if (!flushScheduled && ctl[2] === 0) {
    flushScheduled = true;
    queueMicrotask(flushMicrotask);
  }
  return len;
}

/** Starts a native copy; `done` gets the outcome. Returns the op id or a negative errno. */
export function startCopy(
  src: number,
  dst: number,
  bidi: boolean,
  done: (errno: number, sys: number, aToB: number, bToA: number) => void,
): number {
  nextCopyOp = (nextCopyOp + 1) & 0x3fffffff;
  const op = nextCopyOp;
  copyOps.set(op, done);
  const r = native.netCopy(op, src, dst, bidi);
  if (r < 0) {
    copyOps.delete(op);
    return r;
  }
  return op;
}

// ---------------------------------------------------------------------------------------------
// Event-loop holds: listeners (unless unref'd) and pending operations keep the process alive.

let holds = 0;
/** Adds `delta` holds on the event loop. */
export function hold(delta: number): void {
  const before = holds;
  holds += delta;
  if (holds < 0) holds = 0;
  if (before === 0 && holds > 0) native.netRef(true);
  else if (before > 0 && holds === 0) native.netRef(false);
}

/**
 * One socket's share of the loop holds (pending connects, reads, drain waits): always counted, and
 * passed on to {@link hold} only while the socket is ref'd (Node-style `ref()`/`unref()`).
 */
export class LoopHolds {
  #held = 0;
  #refd = true;

  /** Adds `delta` to this socket's holds. */
  add(delta: number): void {
    this.#held += delta;
    if (this.#refd) hold(delta);
  }

  /** Whether this socket's holds keep the loop alive. */
  setRef(on: boolean): void {
    if (on === this.#refd) return;
    this.#refd = on;
    if (this.#held > 0) hold(on ? this.#held : -this.#held);
  }
}

// ---------------------------------------------------------------------------------------------
// Addresses

/** `{ address, family, port }`, like Node's `socket.address()`. */
export interface SocketAddress {
  /** The IP address. */
  address: string;
  /** `'IPv4'` or `'IPv6'`. */
  family: 'IPv4' | 'IPv6';
  /** The port. */
  port: number;
}

const v4Cache = new Map<number, SocketAddress>();
/** IPv4 addresses made here, with their wire encoding `[ip, port | 4 << 16]` (no re-parsing on send). */
const v4Encoding = new WeakMap<SocketAddress, [number, number]>();

/** The wire encoding of an address object this module made, if it is IPv4. */
export function encodedV4(a: object): [number, number] | undefined {
  return v4Encoding.get(a as SocketAddress);
}

/** The address of an IPv4 `ip` (as u32) and port, from a small cache. */
export function v4Address(ip: number, port: number): SocketAddress {
  const key = (ip >>> 0) * 65536 + port;
  let a = v4Cache.get(key);
  if (a === undefined) {
    const u = ip >>> 0;
    a = Object.freeze({
      address: `${u >>> 24}.${(u >>> 16) & 255}.${(u >>> 8) & 255}.${u & 255}`,
      family: 'IPv4' as const,
      port,
    });
    if (v4Cache.size > 4096) v4Cache.clear();
    v4Cache.set(key, a);
    v4Encoding.set(a, [ip | 0, port | (4 << 16)]);
  }
  return a;
}

/** Set in an event's `port | family << 16` word when the IPv6 bytes are followed by a scope id. */
export const ADDR_SCOPED = 1 << 25;

/**
 * Decodes 16 IPv6 bytes at `off` of the receive arena; when `scoped`, a u32 scope id follows them
 * and the address reads `fe80::1%eth0`, as Node prints a scoped link-local address.
 */
export function v6Address(off: number, port: number, scoped = false): SocketAddress {
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(rarena.readUInt16BE(off + i * 2).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  let text: string;
  if (best >= 0) {
    text = `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
  } else {
    text = groups.join(':');
  }
  if (/^::ffff:[0-9a-f]{1,4}:[0-9a-f]{1,4}$/.test(text)) {
    const hi = parseInt(groups[6], 16);
    const lo = parseInt(groups[7], 16);
    text = `::ffff:${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  // Looked up each time, as Node does: interfaces come and go, and an index can be reused.
  if (scoped) text = `${text}%${native.netZoneName(rarena.readUInt32LE(off + 16))}`;
  return Object.freeze({ address: text, family: 'IPv6' as const, port });
}

/** Parses native's `"family|ip|port"` (or `"!errno"`). */
export function parseNativeAddr(s: string, syscall: string): SocketAddress {
  if (s.startsWith('!')) throw systemError(Number(s.slice(1)), syscall);
  const [fam, address, port] = s.split('|');
  return Object.freeze({ address, family: fam === '6' ? ('IPv6' as const) : ('IPv4' as const), port: Number(port) });
}

/** IPv4 text → u32 (or -1 if not a dotted quad). */
export function ipv4ToInt(ip: string): number {
  const p = ip.split('.');
  if (p.length !== 4) return -1;
  let v = 0;
  for (const s of p) {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 0 || n > 255 || s === '') return -1;
    v = v * 256 + n;
  }
  return v | 0;
}

// ---------------------------------------------------------------------------------------------
// Errors

/** A Node-shaped system error. */
export interface SystemError extends Error {
  /** e.g. `'ECONNREFUSED'`. */
  code: string;
  /** Negative errno, as Node reports it. */
  errno: number;
  /** The failing call, e.g. `'connect'`. */
  syscall: string;
  /** The address involved, if any. */
  address?: string;
  /** The port involved, if any. */
  port?: number;
}

let errMap: Map<number, [string, string]> | undefined;

/** The positive errno libuv gives the error named `code` on this platform (e.g. `'EMSGSIZE'`). */
export function errnoOf(code: string): number {
  errMap ??= util.getSystemErrorMap() as Map<number, [string, string]>;
  for (const [uv, [name]] of errMap) if (name === code) return -uv;
  throw new Error(`no errno named ${code}`);
}

/** Added to `-errno` by `netTcpConnect` when binding the local address failed (`ops.rs`). */
const CONNECT_BIND_FAILED = 1 << 16;
/** Added to the negated errno `netDrain`/`netShutdown` return when an earlier write failed (`ops.rs`). */
export const WRITE_FAILED = 1 << 17;

/**
 * The error of a failed `netTcpConnect` (`r < 0`): as node:net words it, `bind` with the local
 * address when that step failed, else `connect` with the peer's.
 */
export function connectError(r: number, host: string, port: number, localIp: string, localPort: number): SystemError {
  return -r > CONNECT_BIND_FAILED
    ? systemError(-r - CONNECT_BIND_FAILED, 'bind', localIp, localPort, false)
    : systemError(-r, 'connect', host, port);
}

/**
 * Builds a Node-shaped system error from a positive errno. `describe` adds the error's text after
 * the code, as Node's `listen` (and most `bind`) errors have it; node:net's connect path leaves it out.
 */
export function systemError(
  errno: number,
  syscall: string,
  address?: string,
  port?: number,
  describe = syscall === 'listen' || syscall === 'bind',
): SystemError {
  if (errno === E_RUNTIME_SHUTDOWN) return Object.assign(runtimeShutdownError(), { syscall }) as SystemError;
  errMap ??= util.getSystemErrorMap() as Map<number, [string, string]>;
  const uv = -Math.abs(errno);
  const entry = errMap.get(uv);
  const code = entry?.[0] ?? `Unknown system error ${uv}`;
  let msg = `${syscall} ${code}`;
  if (describe) msg += `: ${entry?.[1] ?? 'unknown error'}`;
  if (address !== undefined) msg += port !== undefined ? ` ${address}:${port}` : ` ${address}`;
  const err = new Error(msg) as SystemError;
  err.errno = uv;
  err.code = code;
  err.syscall = syscall;
  if (address !== undefined) err.address = address;
  if (port !== undefined) err.port = port;
  Error.captureStackTrace?.(err, systemError);
  return err;
}

if (first !== exports) module.exports = first;
