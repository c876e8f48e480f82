/**
 * `kyoto/io`: copying between streams, buffered line reading and framing.
 *
 * `copy` and `copyBidirectional` run entirely in native code when both ends are kyoto TCP streams
 * (after handing over whatever JS had already buffered); for other readers/writers they run a JS
 * loop over `read`/`write`. `framed` splits frames in native code on kyoto streams and in JS
 * otherwise (see `lib/io/framed.ts` for the exact semantics).
 * @module
 */
import { codedError, invalidArgType, optionsBag, outOfRange } from './errors';
import { SYSCALLS, startCopy, systemError } from './net/core';
import type { SignalOption, TcpStream } from './net';
import { nativeStream } from './net/stream-of';
import { toBytes } from './net/common';

/** Anything with `read(buf) → bytes` (0 at end of stream). */
export interface Reader {
  /** Reads into `buf`; resolves with the count, 0 at end of stream. */
  read(buf: Uint8Array, options?: SignalOption): Promise<number>;
}

/** Anything with `write(data)` (and optionally `shutdown()`/`flush()`). */
export interface Writer {
  /** Writes `data` (all of it, or resolves with the count written). */
  write(data: Uint8Array, options?: SignalOption): Promise<number | void>;
  /** Sends end-of-stream. */
  shutdown?(): Promise<void>;
  /** Waits until written data left the process. */
  flush?(): Promise<void>;
}

async function writeAllTo(w: Writer, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const r = await w.write(data.subarray(off));
    off += typeof r === 'number' ? r : data.length - off;
    if (r === 0) throw codedError('ERR_WRITE_ZERO', 'write returned 0');
  }
}

function nativeCopy(a: TcpStream, b: TcpStream, bidi: boolean): Promise<[number, number]> {
  return new Promise((resolve, reject) => {
    const op = startCopy(a._h, b._h, bidi, (errno, sys, aToB, bToA) => {
      a._endCopy(true);
      b._endCopy(bidi);
      if (errno !== 0) reject(systemError(errno, SYSCALLS[sys] ?? 'read'));
      else resolve([aToB, bToA]);
    });
    if (op < 0) {
      a._endCopy(false);
      b._endCopy(false);
      reject(systemError(-op, 'copy'));
    }
  });
}

async function jsCopy(reader: Reader, writer: Writer, signal?: AbortSignal): Promise<number> {
  const buf = Buffer.allocUnsafe(64 * 1024);
  let total = 0;
  for (;;) {
    const n = await reader.read(buf, { signal });
    if (n === 0) break;
    // A fresh copy: the writer may keep a reference to what it was given.
    await writeAllTo(writer, Buffer.from(buf.subarray(0, n)));
    total += n;
  }
  if (writer.flush) await writer.flush();
  return total;
}

/** Throws `ERR_INVALID_ARG_TYPE` unless `v` is an object with the named methods. */
function validateEnd(name: string, v: unknown, methods: ReadonlyArray<'read' | 'write'>): void {
  const o = v as Record<string, unknown> | null;
  if (o === null || typeof o !== 'object' || methods.some((m) => typeof o[m] !== 'function')) {
    throw invalidArgType(name, `an object with ${methods.map((m) => `a ${m}() method`).join(' and ')}`, v);
  }
}

/**
 * Copies everything `reader` produces into `writer` until end of stream; resolves with the byte
 * count. Native when both are kyoto streams (`copy(s, s)` echoes a connection).
 */
export async function copy(reader: Reader, writer: Writer, options?: SignalOption): Promise<number> {
  validateEnd('reader', reader, ['read']);
  validateEnd('writer', writer, ['write']);
  const opts = optionsBag<SignalOption>(options);
  const a = nativeStream(reader);
  const b = nativeStream(writer);
  if (a && b && opts.signal === undefined) {
    const pre = a._beginCopy();
    b._beginCopy();
    if (pre.length > 0) await b.write(pre);
    // The native copy owns the writer's readiness: what JS queued must be out first.
    await b.flush();
    if (a._eof) {
      a._endCopy(true);
      b._endCopy(false);
      await b.flush();
      return pre.length;
    }
    const [n] = await nativeCopy(a, b, false);
    return n + pre.length;
  }
  return jsCopy(reader, writer, opts.signal);
}

/**
 * Copies `a → b` and `b → a` at once until both reach end of stream; when one side ends, the
 * other side's writer is shut down. Resolves with `[aToB, bToA]`.
 */
export async function copyBidirectional(
  a: Reader & Writer,
  b: Reader & Writer,
  options?: SignalOption,
): Promise<[number, number]> {
  validateEnd('a', a, ['read', 'write']);
  validateEnd('b', b, ['read', 'write']);
  const opts = optionsBag<SignalOption>(options);
  const na = nativeStream(a);
  const nb = nativeStream(b);
  if (na && nb && na !== nb && opts.signal === undefined) {
    const preA = na._beginCopy();
    const preB = nb._beginCopy();
    if (preA.length > 0) await nb.write(preA);
    if (preB.length > 0) await na.write(preB);
    await Promise.all([na.flush(), nb.flush()]);
    const [x, y] = await nativeCopy(na, nb, true);
    return [x + preA.length, y + preB.length];
  }
  const one = async (r: Reader, w: Writer): Promise<number> => {
    const n = await jsCopy(r, w, opts.signal);
    if (w.shutdown) await w.shutdown();
    return n;
  };
  return Promise.all([one(a, b), one(b, a)]);
}

// ---------------------------------------------------------------------------------------------
// BufReader

/** Buffered reading over any {@link Reader}: lines and exact reads without a syscall per byte. */
export class BufReader implements Reader {
  #inner: Reader;
  #buf: Buffer;
  #pos = 0;
  #end = 0;
  #eof = false;

  /**
   * @param inner - the reader to buffer.
   * @param capacity - buffer size in bytes (default 8 KiB).
   */
  constructor(inner: Reader, capacity = 8192) {
    validateEnd('inner', inner, ['read']);
    if (!Number.isInteger(capacity) || capacity < 1) throw outOfRange('capacity', '>= 1', capacity);
    this.#inner = inner;
    this.#buf = Buffer.allocUnsafe(capacity);
  }

  async #fill(options?: SignalOption): Promise<boolean> {
    if (this.#eof) return false;
    if (this.#pos > 0 && this.#pos === this.#end) {
      this.#pos = 0;
      this.#end = 0;
    }
    if (this.#end === this.#buf.length) {
      if (this.#pos > 0) {
        this.#buf.copy(this.#buf, 0, this.#pos, this.#end);
        this.#end -= this.#pos;
        this.#pos = 0;
      } else {
        const bigger = Buffer.allocUnsafe(this.#buf.length * 2);
        this.#buf.copy(bigger, 0, 0, this.#end);
        this.#buf = bigger;
      }
    }
    const n = await this.#inner.read(this.#buf.subarray(this.#end), options);
    if (n === 0) {
      this.#eof = true;
      return false;
    }
    this.#end += n;
    return true;
  }

  /** Reads buffered bytes first, then from the inner reader. */
  async read(buf: Uint8Array, options?: SignalOption): Promise<number> {
    if (!(buf instanceof Uint8Array)) throw invalidArgType('buf', 'an instance of Uint8Array', buf);
    if (this.#pos === this.#end) {
      if (buf.length >= this.#buf.length) return this.#eof ? 0 : this.#inner.read(buf, options);
      if (!(await this.#fill(options))) return 0;
    }
    const n = Math.min(buf.length, this.#end - this.#pos);
    this.#buf.copy(buf, 0, this.#pos, this.#pos + n);
    this.#pos += n;
    return n;
  }

  /**
   * The next line without its `\n` or `\r\n`, or `undefined` at end of stream. A last line without
   * a newline is returned as is.
   */
  async readLine(options?: SignalOption & { maxLength?: number }): Promise<string | undefined> {
    const max = options?.maxLength ?? Infinity;
    let scanned = this.#pos;
    for (;;) {
      const i = this.#buf.indexOf(10, scanned);
      if (i >= 0 && i < this.#end) {
        let lineEnd = i;
        if (lineEnd > this.#pos && this.#buf[lineEnd - 1] === 13) lineEnd--;
        if (lineEnd - this.#pos > max) {
          this.#pos = i + 1; // the oversize line is discarded
          throw codedError('ERR_LINE_TOO_LONG', `line longer than ${max} bytes`);
        }
        const line = this.#buf.toString('utf8', this.#pos, lineEnd);
        this.#pos = i + 1;
        return line;
      }
      if (this.#end - this.#pos > max) {
        throw codedError('ERR_LINE_TOO_LONG', `line longer than ${max} bytes`);
      }
      scanned = this.#end;
      const before = this.#pos;
      if (!(await this.#fill(options))) {
        if (this.#pos === this.#end) return undefined;
        const line = this.#buf.toString('utf8', this.#pos, this.#end);
        this.#pos = this.#end;
        return line;
      }
      scanned -= before - this.#pos; // the buffer may have been compacted
    }
  }

  /** The lines until end of stream. */
  async *lines(options?: SignalOption): AsyncGenerator<string, void, undefined> {
    for (;;) {
      const l = await this.readLine(options);
      if (l === undefined) return;
      yield l;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// duplex

/** One end of an in-memory {@link duplex} pipe. */
export class DuplexStream implements Reader, Writer {
  /** @internal */ _peer!: DuplexStream;
  #chunks: Buffer[] = [];
  #buffered = 0;
  #eof = false;
  #closed = false;
  #readers: Array<() => void> = [];
  #writers: Array<() => void> = [];
  /** @internal */
  constructor(private readonly _max: number) {}

  #wakeReaders(): void {
    for (const r of this.#readers.splice(0)) r();
  }
  #wakeWriters(): void {
    for (const w of this.#writers.splice(0)) w();
  }

  /** Reads what the other end wrote; 0 once it shut down and everything was read. */
  async read(buf: Uint8Array): Promise<number> {
    if (!(buf instanceof Uint8Array)) throw invalidArgType('buf', 'an instance of Uint8Array', buf);
    for (;;) {
      if (this.#buffered > 0) {
        let n = 0;
        while (n < buf.length && this.#chunks.length > 0) {
          const c = this.#chunks[0];
          const k = Math.min(c.length, buf.length - n);
          c.copy(buf, n, 0, k);
          n += k;
          if (k === c.length) this.#chunks.shift();
          else this.#chunks[0] = c.subarray(k);
        }
        this.#buffered -= n;
        this._peer.#wakeWriters();
        return n;
      }
      if (this.#eof || this.#closed) return 0;
      await new Promise<void>((r) => this.#readers.push(r));
    }
  }

  /** Writes into the other end, waiting while its buffer holds `maxBuf` bytes. */
  async write(data: Uint8Array | string): Promise<number> {
    const bytes = toBytes(data);
    const peer = this._peer;
    let off = 0;
    while (off < bytes.length) {
      if (this.#closed || peer.#closed || peer.#eof) throw codedError('EPIPE', 'broken pipe');
      const room = this._max - peer.#buffered;
      if (room <= 0) {
        await new Promise<void>((r) => this.#writers.push(r));
        continue;
      }
      const k = Math.min(room, bytes.length - off);
      peer.#chunks.push(Buffer.from(bytes.subarray(off, off + k)));
      peer.#buffered += k;
      off += k;
      peer.#wakeReaders();
    }
    return bytes.length;
  }

  /** Writes everything. */
  async writeAll(data: Uint8Array | string): Promise<void> {
    await this.write(data);
  }

  /** Nothing to flush in memory. */
  async flush(): Promise<void> {}

  /** Ends the other end's reads (after what it has buffered). */
  async shutdown(): Promise<void> {
    this._peer.#eof = true;
    this._peer.#wakeReaders();
  }

  /** Closes this end: the other end reads EOF and its writes fail. */
  close(): void {
    this.#closed = true;
    this._peer.#eof = true;
    this._peer.#wakeReaders();
    this.#wakeReaders();
    this._peer.#wakeWriters();
  }
}

/** An in-memory pipe: what one end writes the other reads; each direction holds at most `maxBuf`. */
export function duplex(maxBuf: number): [DuplexStream, DuplexStream] {
  if (!Number.isInteger(maxBuf) || maxBuf < 1) throw outOfRange('maxBuf', '>= 1', maxBuf);
  const a = new DuplexStream(maxBuf);
  const b = new DuplexStream(maxBuf);
  a._peer = b;
  b._peer = a;
  return [a, b];
}

// ---------------------------------------------------------------------------------------------
// Framing (lib/io/framed.ts)

export { LengthDelimitedCodec, LinesCodec, framed, type Framed } from './io/framed';
