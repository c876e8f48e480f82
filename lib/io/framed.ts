/**
 * `framed(stream, codec)` of `kyoto/io` (re-exported from `lib/io.ts`).
 *
 * On a kyoto stream (TCP or Unix, or a read half) the splitting runs in native code: the stream's
 * task hands JS whole batches of frames (one `K_FRAMES` record per read, see
 * `crates/kyoto-node/src/net/frame.rs`), so a stream of small frames costs one JS call per batch.
 * Sends go out as one write per frame through the shared write arena. Any other stream (e.g. a
 * `duplex()` end) is framed here in JS over its `read`/`write`, with the same semantics:
 *
 * - {@link LinesCodec}: lines end at `\n`; one `\r` before it is dropped; a last line without `\n`
 *   is returned at end of stream (a trailing `\r` dropped). A line longer than `maxLength` bytes
 *   (without its terminator) makes `next()` reject once with `ERR_LINE_TOO_LONG` as soon as that
 *   is certain; the rest of that line is discarded without being buffered and the next `next()`
 *   returns the line after it. Lines are decoded as UTF-8 (invalid sequences become U+FFFD, as
 *   `Buffer#toString` does). `send(line)` writes the line and `\n` as they are (a `\n` inside
 *   `line` splits it for the reader), and rejects a line longer than `maxLength` bytes.
 * - {@link LengthDelimitedCodec}: a big-endian length header of `lengthFieldBytes` (1–8) then that
 *   many payload bytes. A header announcing more than `maxFrameLength` makes `next()` reject once
 *   with `ERR_FRAME_TOO_BIG` right after the header; that payload is skipped without being
 *   buffered and the next `next()` returns the frame after it. A stream ending inside a header or
 *   payload rejects with `ERR_UNEXPECTED_EOF`, then `next()` returns `undefined`.
 *
 * Nothing is ever buffered beyond the limit plus one read. After `framed()` claimed a kyoto
 * stream's read side, its raw reads (`read`, `peek`, `readChunk`, iteration, `copy` from it) reject
 * with `ERR_STREAM_FRAMED`; bytes it had already received are framed first, in order. Writes stay
 * available and are ordered with `send`.
 * @module
 */
import * as buffer from 'node:buffer';
import { codedError, invalidArgType, optionsBag, outOfRange, validateSignal, abortReason } from '../errors';
import { K_EOF, K_ERROR, K_FRAMES, K_FRAME_ERR, arenaChunk, encodeFrame, rarena, systemError } from '../net/core';
import { WriteHalf, ReadHalf, type SignalOption, type TcpStream } from '../net';
import { toBytes, type FrameSink } from '../net/common';
import { kyotoStream } from '../net/stream-of';
import { native } from '../native';
import type { Reader, Writer } from '../io';
import { readSome } from './read-some';
import { writeAll } from './write-all';
import { Turns } from './turns';

/** Default `maxLength` of {@link LinesCodec}: 64 KiB. */
const DEFAULT_MAX_LINE = 64 * 1024;
/** Default `maxFrameLength` of {@link LengthDelimitedCodec}: 8 MiB. */
const DEFAULT_MAX_FRAME = 8 * 1024 * 1024;
/** Queued frames above this many bytes pause the native reader; below the low mark it resumes. */
const QUEUE_HWM = 1 << 20;
const QUEUE_LWM = 256 * 1024;
/** What each queued frame counts for besides its bytes (so empty frames are bounded too). */
const FRAME_COST = 16;
/** What a queued codec error counts for: an Error with its stack trace. */
const FAILURE_COST = 2048;
const JS_READ_SIZE = 64 * 1024;

/** Splits a byte stream into lines (strings), at most `maxLength` bytes each. */
export class LinesCodec {
  /** Longest accepted line in bytes, not counting its `\n` or `\r\n`. */
  readonly maxLength: number;
  /**
   * @param options - `maxLength`: default 64 KiB; at most `buffer.constants.MAX_STRING_LENGTH`
   *   (a line must fit a JS string).
   */
  constructor(options?: { maxLength?: number }) {
    const opts = optionsBag<{ maxLength?: number }>(options);
    const m = opts.maxLength ?? DEFAULT_MAX_LINE;
    if (typeof m !== 'number') throw invalidArgType('options.maxLength', 'of type number', m);
    const top = buffer.constants.MAX_STRING_LENGTH;
    if (!Number.isInteger(m) || m < 1 || m > top) throw outOfRange('options.maxLength', `an integer >= 1 and <= ${top}`, m);
    this.maxLength = m;
  }
}

/** Frames made of a big-endian length header and that many payload bytes (Buffers). */
export class LengthDelimitedCodec {
  /** Bytes of the length header (1 to 8). */
  readonly lengthFieldBytes: number;
  /** Largest accepted payload in bytes (capped to what the header can express). */
  readonly maxFrameLength: number;
  /**
   * @param options - `lengthFieldBytes`: 1 to 8 (default 4); `maxFrameLength`: default 8 MiB, at
   *   most `buffer.constants.MAX_LENGTH`, and capped to `2 ** (8 * lengthFieldBytes) - 1`.
   */
  constructor(options?: { lengthFieldBytes?: number; maxFrameLength?: number }) {
    const opts = optionsBag<{ lengthFieldBytes?: number; maxFrameLength?: number }>(options);
    const b = opts.lengthFieldBytes ?? 4;
    if (typeof b !== 'number') throw invalidArgType('options.lengthFieldBytes', 'of type number', b);
    if (!Number.isInteger(b) || b < 1 || b > 8) throw outOfRange('options.lengthFieldBytes', 'an integer from 1 to 8', b);
    const m = opts.maxFrameLength ?? DEFAULT_MAX_FRAME;
    if (typeof m !== 'number') throw invalidArgType('options.maxFrameLength', 'of type number', m);
    const top = buffer.constants.MAX_LENGTH;
    if (!Number.isInteger(m) || m < 0 || m > top) throw outOfRange('options.maxFrameLength', `an integer >= 0 and <= ${top}`, m);
    this.lengthFieldBytes = b;
    this.maxFrameLength = Math.min(m, 2 ** (8 * b) - 1);
  }
}

/** A framed stream: `next()` gives whole frames, `send(frame)` writes one. */
export interface Framed<T> extends AsyncIterable<T> {
  /**
   * The next frame, or `undefined` at end of stream. Rejects once per broken codec rule
   * (`ERR_LINE_TOO_LONG`, `ERR_FRAME_TOO_BIG`, `ERR_UNEXPECTED_EOF`; the frame after it follows), and
   * with the stream's read error (for instance `ERR_SOCKET_CLOSED` after `close()`).
   */
  next(options?: SignalOption): Promise<T | undefined>;
  /**
   * Writes one frame (one write). Rejects with `ERR_LINE_TOO_LONG` / `ERR_FRAME_TOO_BIG` above the
   * limit. An abort while the stream has no room for the frame ends the wait and the frame is not
   * sent; a frame that started going out is sent whole whatever the signal does (on a kyoto
   * stream; on another, past its first write, only in part). Sends run one after another.
   */
  send(frame: T | Uint8Array | string, options?: SignalOption): Promise<void>;
  /** The frames until end of stream. */
  [Symbol.asyncIterator](): AsyncIterator<T>;
}

function lineTooLong(max: number): Error {
  return codedError('ERR_LINE_TOO_LONG', `line longer than maxLength (${max} bytes)`);
}

function frameTooBig(len: number | bigint, max: number): Error {
  return codedError('ERR_FRAME_TOO_BIG', `frame of ${len} bytes exceeds maxFrameLength (${max} bytes)`);
}

function eofInFrame(header: boolean): Error {
  return codedError('ERR_UNEXPECTED_EOF', header ? 'the stream ended inside a frame header' : 'the stream ended inside a frame');
}

// ---------------------------------------------------------------------------------------------
// The receiving side shared by both paths: queued frames and per-frame errors, and waiters.

interface Waiter<T> {
  resolve: (v: T | undefined) => void;
  reject: (e: unknown) => void;
}

/** Marks a queued per-frame error (frames are strings or Buffers, never this). */
class FrameFailure {
  constructor(readonly error: Error) {}
}

abstract class FrameSource<T> {
  #q: Array<T | FrameFailure> = [];
  #head = 0;
  /** Bytes (plus a per-frame cost) of the queued frames. */
  protected queued = 0;
  /** No frame will be queued any more. */
  protected ended = false;
  /** What `next()` rejects with once the queue is empty and `ended` (undefined: end of stream). */
  protected endErr: Error | undefined;
  protected waiters: Array<Waiter<T>> = [];

  /** A waiter is waiting and nothing is queued: produce more. */
  protected abstract want(): void;
  /** The first waiter arrived (true) or the last one left (false). */
  protected waiting(_on: boolean): void {}
  /** A frame left the queue. */
  protected dequeued(): void {}

  /**
   * `next()` for iteration: one promise per frame, settled with the iterator result. `stop` is the
   * iterator's: its `return()` aborts it, which ends a waiting call with `done` (the frame it
   * waited for stays for the next reader).
   */
  nextResult(stop: AbortSignal): Promise<IteratorResult<T, undefined>> {
    if (this.#head < this.#q.length) {
      const item = this.#take();
      return item instanceof FrameFailure ? Promise.reject(item.error) : Promise.resolve({ done: false, value: item });
    }
    return this.next({ signal: stop }).then(
      (value) => (value === undefined ? { done: true, value: undefined } : { done: false, value }),
      (e: unknown) => {
        if (stop.aborted) return { done: true, value: undefined };
        throw e;
      },
    );
  }

  next(options?: SignalOption): Promise<T | undefined> {
    let signal: AbortSignal | undefined;
    try {
      signal = optionsBag<SignalOption>(options).signal;
      validateSignal(signal);
    } catch (e) {
      return Promise.reject(e);
    }
    if (this.#head < this.#q.length) return this.#shift();
    if (this.ended) return this.endErr !== undefined ? Promise.reject(this.endErr) : Promise.resolve(undefined);
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    return new Promise<T | undefined>((resolve, reject) => {
      const w: Waiter<T> = { resolve, reject };
      if (signal !== undefined) {
        const onAbort = (): void => {
          const i = this.waiters.indexOf(w);
          if (i < 0) return;
          this.waiters.splice(i, 1);
          if (this.waiters.length === 0) this.waiting(false);
          reject(abortReason(signal));
        };
        signal.addEventListener('abort', onAbort, { once: true });
        w.resolve = (v) => {
          signal.removeEventListener('abort', onAbort);
          resolve(v);
        };
        w.reject = (e) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        };
      }
      this.waiters.push(w);
      if (this.waiters.length === 1) this.waiting(true);
      this.want();
    });
  }

  #shift(): Promise<T | undefined> {
    const item = this.#take();
    return item instanceof FrameFailure ? Promise.reject(item.error) : Promise.resolve(item);
  }

  #take(): T | FrameFailure {
    const item = this.#q[this.#head++];
    if (this.#head === this.#q.length) {
      this.#q = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#q.length) {
      this.#q = this.#q.slice(this.#head);
      this.#head = 0;
    }
    this.queued -= this.#size(item);
    this.dequeued();
    return item;
  }

  /** What a queued item counts for against the queue's limits (an error with its stack for a failure). */
  #size(item: T | FrameFailure): number {
    return item instanceof FrameFailure ? FAILURE_COST : (item as { length: number }).length + FRAME_COST;
  }

  /** A frame (or a per-frame error) arrived: to the first waiter, else queued. */
  protected deliver(item: T | FrameFailure): void {
    if (this.waiters.length > 0 && this.#head === this.#q.length) {
      const w = this.waiters.shift()!;
      if (this.waiters.length === 0) this.waiting(false);
      if (item instanceof FrameFailure) w.reject(item.error);
      else w.resolve(item);
      return;
    }
    this.#q.push(item);
    this.queued += this.#size(item);
  }

  /** No more frames: waiters get `undefined` (or `err`) once the queue is empty. */
  protected end(err?: Error): void {
    if (this.ended && (err === undefined || this.endErr !== undefined)) return;
    this.ended = true;
    this.endErr = err;
    if (this.waiters.length === 0) return;
    const ws = this.waiters.splice(0);
    this.waiting(false);
    for (const w of ws) {
      if (err !== undefined) w.reject(err);
      else w.resolve(undefined);
    }
  }

  /** Whether nothing is queued. */
  protected get empty(): boolean {
    return this.#head === this.#q.length;
  }
}

// ---------------------------------------------------------------------------------------------
// Native path

/** Frames from a kyoto stream's native framer. */
class NativeSource<T extends string | Buffer> extends FrameSource<T> implements FrameSink {
  readonly #s: TcpStream;
  readonly #h: number;
  readonly #lines: boolean;
  readonly #max: number;
  /** Pieces of a frame that spans reads. */
  #parts: Buffer[] = [];
  #partsLen = 0;
  #synced = false;
  #wanted = false;
  #reading = false;

  constructor(s: TcpStream, codec: LinesCodec | LengthDelimitedCodec) {
    super();
    this.#s = s;
    this.#h = s._h;
    this.#lines = codec instanceof LinesCodec;
    this.#max = codec instanceof LinesCodec ? codec.maxLength : codec.maxFrameLength;
    const field = codec instanceof LengthDelimitedCodec ? codec.lengthFieldBytes : 0;
    s._attachFramer(this, this.#lines ? 1 : 2, this.#max, field);
  }

  #setReading(on: boolean): void {
    if (this.#reading === on || this.ended) return;
    this.#reading = on;
    native.netRead(this.#h, on);
  }

  protected override want(): void {
    this.#wanted = true;
    if (this.#synced) this.#setReading(true);
  }

  protected override waiting(on: boolean): void {
    // A pending next() keeps the event loop alive, like a pending read (and unless unref()ed).
    this.#s._hold(on ? 1 : -1);
  }

  protected override dequeued(): void {
    if (this.#synced && this.#wanted && this.queued < QUEUE_LWM) this.#setReading(true);
  }

  onSynced(): void {
    this.#synced = true;
    if (this.#wanted && this.queued < QUEUE_HWM) this.#setReading(true);
  }

  onStreamClosed(): void {
    this.#parts = [];
    this.#partsLen = 0;
    this.#reading = false;
    this.end(codedError('ERR_SOCKET_CLOSED', 'Socket is closed'));
  }

  onFrameEvent(kind: number, a: number, b: number, off: number, len: number): void {
    if (this.ended) return;
    switch (kind) {
      case K_FRAMES:
        this.#onFrames(a, b, off, len);
        if (this.queued > QUEUE_HWM) this.#setReading(false);
        break;
      case K_FRAME_ERR: {
        this.#parts = [];
        this.#partsLen = 0;
        let err: Error;
        if (a === 1) err = lineTooLong(this.#max);
        else if (a === 2) err = frameTooBig(rarena.readBigUInt64LE(off), this.#max);
        else err = eofInFrame(a === 3);
        this.deliver(new FrameFailure(err));
        // A peer sending only oversize frames must not queue errors without bound either.
        if (this.queued > QUEUE_HWM) this.#setReading(false);
        break;
      }
      case K_EOF:
        this.#reading = false;
        this.end();
        break;
      case K_ERROR:
        this.#reading = false;
        this.end(systemError(a, 'read'));
        break;
    }
  }

  #onFrames(count: number, flags: number, off: number, len: number): void {
    const a = rarena;
    let t = off + len - 8 * count;
    // Lines in an all-ASCII event: one decode for the event, then substrings (as readline's split
    // of a decoded chunk, each line shares the decoded chunk's memory).
    const text = this.#lines && (flags & 1) === 1 ? a.toString('latin1', off, t) : undefined;
    for (let i = 0; i < count; i++, t += 8) {
      // Little-endian u32s (start; length | more << 31), read inline.
      const start = off + (a[t] | (a[t + 1] << 8) | (a[t + 2] << 16) | (a[t + 3] << 24));
      const segLen = a[t + 4] | (a[t + 5] << 8) | (a[t + 6] << 16) | ((a[t + 7] & 0x7f) << 24);
      const more = a[t + 7] > 0x7f;
      if (this.#partsLen === 0 && this.#parts.length === 0 && !more) {
        if (text !== undefined) this.deliver(text.substring(start - off, start - off + segLen) as T);
        else this.deliver(this.#decode(start, start + segLen));
        continue;
      }
      this.#parts.push(arenaChunk(start, segLen));
      this.#partsLen += segLen;
      if (!more) {
        const whole = Buffer.concat(this.#parts, this.#partsLen);
        this.#parts = [];
        this.#partsLen = 0;
        this.deliver((this.#lines ? whole.toString('utf8') : whole) as T);
      }
    }
  }

  #decode(start: number, end: number): T {
    if (this.#lines) return rarena.toString('utf8', start, end) as T;
    const b = Buffer.allocUnsafe(end - start);
    rarena.copy(b, 0, start, end);
    return b as T;
  }
}

// ---------------------------------------------------------------------------------------------
// JS path: the same splitting over any Reader.

type Emit<T> = (item: T | FrameFailure) => void;

interface Splitter<T> {
  feed(chunk: Buffer, emit: Emit<T>): void;
  finish(emit: Emit<T>): void;
}

class JsLines implements Splitter<string> {
  #parts: Buffer[] = [];
  #len = 0;
  #discarding = false;
  constructor(private readonly max: number) {}

  feed(chunk: Buffer, emit: Emit<string>): void {
    const n = chunk.length;
    let pos = 0;
    while (pos < n) {
      const i = chunk.indexOf(10, pos);
      if (this.#discarding) {
        if (i < 0) return;
        this.#discarding = false;
        pos = i + 1;
        continue;
      }
      if (i >= 0) {
        let content = this.#len + (i - pos);
        const before = i > pos ? chunk[i - 1] : this.#lastByte();
        if (before === 13) content -= 1;
        if (content > this.max) {
          emit(new FrameFailure(lineTooLong(this.max)));
        } else if (this.#len === 0) {
          emit(chunk.toString('utf8', pos, pos + content));
        } else {
          this.#parts.push(chunk.subarray(pos, i));
          emit(Buffer.concat(this.#parts, this.#len + (i - pos)).toString('utf8', 0, content));
        }
        this.#parts = [];
        this.#len = 0;
        pos = i + 1;
      } else {
        const rest = n - pos;
        const content = this.#len + rest - (chunk[n - 1] === 13 ? 1 : 0);
        if (content > this.max) {
          emit(new FrameFailure(lineTooLong(this.max)));
          this.#discarding = true;
          this.#parts = [];
          this.#len = 0;
        } else {
          // A copy: the reader's buffer is reused.
          this.#parts.push(Buffer.from(chunk.subarray(pos)));
          this.#len += rest;
        }
        return;
      }
    }
  }

  #lastByte(): number {
    const p = this.#parts;
    if (p.length === 0) return -1;
    const last = p[p.length - 1];
    return last[last.length - 1];
  }

  finish(emit: Emit<string>): void {
    if (!this.#discarding && this.#len > 0) {
      const whole = Buffer.concat(this.#parts, this.#len);
      emit(whole.toString('utf8', 0, whole[whole.length - 1] === 13 ? whole.length - 1 : whole.length));
    }
    this.#parts = [];
    this.#len = 0;
    this.#discarding = false;
  }
}

class JsLengthDelimited implements Splitter<Buffer> {
  #hdr: Buffer;
  #have = 0;
  /** The payload being filled, and how much of it is. */
  #body: Buffer | undefined;
  #got = 0;
  /** Bytes of a rejected frame still to skip. */
  #skip = 0;
  constructor(
    private readonly bytes: number,
    private readonly max: number,
  ) {
    this.#hdr = Buffer.alloc(bytes);
  }

  feed(chunk: Buffer, emit: Emit<Buffer>): void {
    const n = chunk.length;
    let pos = 0;
    while (pos < n) {
      if (this.#skip > 0) {
        const k = Math.min(this.#skip, n - pos);
        this.#skip -= k;
        pos += k;
      } else if (this.#body !== undefined) {
        const k = Math.min(this.#body.length - this.#got, n - pos);
        chunk.copy(this.#body, this.#got, pos, pos + k);
        this.#got += k;
        pos += k;
        if (this.#got === this.#body.length) {
          const b = this.#body;
          this.#body = undefined;
          emit(b);
        }
      } else {
        const k = Math.min(this.bytes - this.#have, n - pos);
        chunk.copy(this.#hdr, this.#have, pos, pos + k);
        this.#have += k;
        pos += k;
        if (this.#have < this.bytes) return;
        this.#have = 0;
        let len: number | bigint;
        if (this.bytes <= 6) {
          len = this.#hdr.readUIntBE(0, this.bytes);
        } else {
          let v = 0n;
          for (const x of this.#hdr) v = (v << 8n) | BigInt(x);
          len = v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
        }
        if (typeof len === 'bigint' || len > this.max) {
          emit(new FrameFailure(frameTooBig(len, this.max)));
          // Beyond 2^53 bytes nothing after the frame can ever be read: skip forever.
          this.#skip = typeof len === 'bigint' ? Infinity : len;
        } else if (len === 0) {
          emit(Buffer.alloc(0));
        } else {
          this.#body = Buffer.allocUnsafe(len);
          this.#got = 0;
        }
      }
    }
  }

  finish(emit: Emit<Buffer>): void {
    if (this.#body !== undefined) emit(new FrameFailure(eofInFrame(false)));
    else if (this.#have > 0) emit(new FrameFailure(eofInFrame(true)));
    this.#body = undefined;
    this.#have = 0;
    this.#skip = 0;
  }
}

/** Frames split in JS from any {@link Reader}: reads only while a `next()` waits for a frame. */
class JsSource<T> extends FrameSource<T> {
  #buf: Buffer | undefined;
  #pumping = false;
  readonly #emit: Emit<T> = (item) => this.deliver(item);

  constructor(
    private readonly reader: Reader,
    private readonly splitter: Splitter<T>,
  ) {
    super();
  }

  protected override want(): void {
    if (!this.#pumping) void this.#pump();
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    this.#buf ??= Buffer.allocUnsafe(JS_READ_SIZE);
    try {
      while (this.waiters.length > 0 && this.empty && !this.ended) {
        const n = await readSome(this.reader, this.#buf);
        if (n === 0) {
          this.splitter.finish(this.#emit);
          this.end();
        } else {
          this.splitter.feed(this.#buf.subarray(0, n), this.#emit);
        }
      }
    } catch (e) {
      this.end(e instanceof Error ? e : codedError('ERR_STREAM_READ', String(e)));
    } finally {
      this.#pumping = false;
    }
  }
}

/** Reads of a stream without a `read()` method. */
class NoSource<T> extends FrameSource<T> {
  constructor(stream: unknown) {
    super();
    this.ended = true;
    this.endErr = invalidArgType('stream', 'an object with a read() method to receive frames', stream);
  }
  protected override want(): void {}
}

// ---------------------------------------------------------------------------------------------
// framed()

function frameBytes(frame: unknown): Uint8Array | string {
  if (typeof frame === 'string' || frame instanceof Uint8Array) return frame;
  // (A view of memory transferred away reads as empty, as kyoto/net's writes take it.)
  if (ArrayBuffer.isView(frame)) return toBytes(frame, 'frame');
  throw invalidArgType('frame', 'a string, Buffer, TypedArray or DataView', frame);
}

/**
 * Frames `stream` with `codec`: lines become strings, length-delimited frames Buffers. On a kyoto
 * stream (TCP or Unix, or a half of one) the framing runs in native code. `stream` needs `read()` to
 * receive and `write()` to send (a read half only receives, a write half only sends).
 */
export function framed(stream: Reader | Writer, codec: LinesCodec): Framed<string>;
export function framed(stream: Reader | Writer, codec: LengthDelimitedCodec): Framed<Buffer>;
export function framed(stream: Reader | Writer, codec: LinesCodec | LengthDelimitedCodec): Framed<string> | Framed<Buffer> {
  if (stream === null || typeof stream !== 'object') {
    throw invalidArgType('stream', 'an object with read() and/or write() methods', stream);
  }
  const canRead = typeof (stream as Reader).read === 'function';
  const canWrite = typeof (stream as Writer).write === 'function';
  if (!canRead && !canWrite) throw invalidArgType('stream', 'an object with read() and/or write() methods', stream);
  if (!(codec instanceof LinesCodec) && !(codec instanceof LengthDelimitedCodec)) {
    throw invalidArgType('codec', 'a LinesCodec or a LengthDelimitedCodec', codec);
  }
  const ks = kyotoStream(stream);
  const lines = codec instanceof LinesCodec;
  const max = lines ? codec.maxLength : codec.maxFrameLength;
  const hdr = lines ? 0 : codec.lengthFieldBytes;
  const tooBig = (len: number): Error => (lines ? lineTooLong(max) : frameTooBig(len, max));

  let source: FrameSource<string | Buffer>;
  if (ks !== undefined && !(stream instanceof WriteHalf)) {
    source = new NativeSource<string | Buffer>(ks, codec);
  } else if (canRead) {
    const splitter = lines ? new JsLines(max) : new JsLengthDelimited(hdr, max);
    source = new JsSource<string | Buffer>(stream as Reader, splitter as Splitter<string | Buffer>);
  } else {
    source = new NoSource(stream);
  }

  let send: (frame: unknown, options?: SignalOption) => Promise<void>;
  if (ks !== undefined && !(stream instanceof ReadHalf)) {
    send = (frame, options) => {
      let body: Uint8Array | string;
      try {
        body = frameBytes(frame);
      } catch (e) {
        return Promise.reject(e);
      }
      return ks._sendFrame(body, hdr, lines, max, tooBig, options?.signal);
    };
  } else if (canWrite) {
    const w = stream as Writer;
    // One frame at a time: a writer may take part of a buffer per call, and two frames' writes
    // in flight would interleave (a kyoto stream queues each frame whole).
    const turns = new Turns();
    send = async (frame, options) => {
      const b = frameBytes(frame);
      const bytes = typeof b === 'string' ? Buffer.from(b) : b;
      if (bytes.length > max) throw tooBig(bytes.length);
      validateSignal(options?.signal);
      const encoded = encodeFrame(bytes, hdr, lines);
      await turns.run(options?.signal, () => writeAll(w, encoded, options?.signal));
    };
  } else {
    send = () => Promise.reject(invalidArgType('stream', 'an object with a write() method to send frames', stream));
  }

  return {
    next: (options?: SignalOption): Promise<string | Buffer | undefined> => source.next(options),
    send,
    [Symbol.asyncIterator](): AsyncIterator<string | Buffer, undefined> {
      // `break` out of a `for await` ends the iteration, not the stream: a next() still waiting
      // ends with done, and the frame it waited for goes to the stream's next reader.
      const stop = new AbortController();
      return {
        next: () => (stop.signal.aborted ? Promise.resolve({ done: true, value: undefined }) : source.nextResult(stop.signal)),
        return: async () => {
          stop.abort();
          return { done: true, value: undefined };
        },
      };
    },
  } as Framed<string> | Framed<Buffer>;
}
