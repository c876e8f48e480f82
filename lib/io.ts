/**
 * `kyoto/io`: copying between streams, buffered line reading and framing.
 *
 * `copy` and `copyBidirectional` run entirely in native code when both ends are kyoto TCP streams
 * (after handing over whatever JS had already buffered); for other readers/writers they run a JS
 * loop over `read`/`write`. `framed` splits frames in native code on kyoto streams and in JS
 * otherwise (see `lib/io/framed.ts` for the exact semantics).
 * @module
 */
import * as buffer from 'node:buffer';
import { codedError, invalidArgType, optionsBag, validateInteger, validateNumber, validateSignal } from './errors';
import { COPY_NO_FAULT, COPY_REVERSE, E_RUNTIME_SHUTDOWN, SYSCALLS, startCopy, systemError } from './net/core';
import type { SignalOption, TcpStream } from './net';
import { nativeStream } from './net/stream-of';
import { StreamReadHalf } from './net/halves';
import { native } from './native';
import { checkSignal, closedError } from './net/common';
import { Turns } from './io/turns';
import { readSome } from './io/read-some';
import { writeAll } from './io/write-all';
import { duplexPair, type DuplexStream } from './io/duplex';

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
  shutdown?(options?: SignalOption): Promise<void>;
  /** Waits until written data left the process. */
  flush?(options?: SignalOption): Promise<void>;
}

/**
 * Runs a native copy. `stop` (the source's read half closing) aborts it: it then rejects with
 * `ERR_SOCKET_CLOSED`, as a read of the closed half would. Any of `ended` (a writer's writing
 * ending: its `shutdown()`, its write half's `close()`) aborts it too: it then rejects with
 * `ERR_STREAM_WRITE_AFTER_END`, as a write of the ended writer would.
 */
function nativeCopy(a: TcpStream, b: TcpStream, bidi: boolean, stop?: AbortSignal, ended: readonly AbortSignal[] = []): Promise<[number, number]> {
  return new Promise((resolve, reject) => {
    const onStop = (): void => native.netCopyAbort(op);
    const op = startCopy(a._h, b._h, bidi, (errno, code, aToB, bToA) => {
      for (const sig of [stop, ...ended]) sig?.removeEventListener('abort', onStop);
      // Only the copy's sources were taken from JS reads (`beginNativeCopy`): `b` is one only
      // when the copy is bidirectional.
      if (errno === 0) {
        a._endCopy(true);
        if (bidi) b._endCopy(true);
        resolve([aToB, bToA]);
        return;
      }
      const sys = code & 0xff;
      // Cancelled because one of the streams was closed: as a JS copy's read or write of it (and
      // a copy that starts on a closed stream) would say, not a system error of a read that never
      // failed (ECANCELED, EBADF).
      const closedUnder =
        (code & COPY_NO_FAULT) !== 0 && errno !== E_RUNTIME_SHUTDOWN && (a.closed || b.closed || stop?.aborted === true);
      // The writer's end came first (a write the copy made past the FIN, before the abort
      // reached it, failed with EPIPE): as a JS copy's next write would.
      const afterEnd =
        !closedUnder && ended.some((sig) => sig.aborted) && errno !== E_RUNTIME_SHUTDOWN && ((code & COPY_NO_FAULT) !== 0 || SYSCALLS[sys] === 'write');
      const err = closedUnder
        ? closedError()
        : afterEnd
          ? codedError('ERR_STREAM_WRITE_AFTER_END', 'write after end')
          : systemError(errno, SYSCALLS[sys] ?? 'read');
      // The stream whose read failed keeps the error for its later reads; otherwise both go back
      // to JS reads (the kernel repeats an end of stream the copy saw).
      const failed = sys !== 0 || (code & COPY_NO_FAULT) !== 0 ? undefined : (code & COPY_REVERSE) !== 0 ? b : a;
      a._endCopy(false, failed === a ? err : undefined, errno);
      if (bidi) b._endCopy(false, failed === b ? err : undefined, errno);
      reject(err);
    });
    if (op < 0) {
      a._endCopy(false);
      if (bidi) b._endCopy(false);
      reject(systemError(-op, 'copy'));
    } else {
      for (const sig of [stop, ...ended]) {
        if (sig === undefined) continue;
        if (sig.aborted) {
          onStop();
          break;
        }
        sig.addEventListener('abort', onStop, { once: true });
      }
    }
  });
}

/**
 * Hands the streams to a native copy: what JS had already read from each source goes to its
 * writer first, and the writers' queues are flushed (the native copy owns the sources' read
 * sides and the writers' write sides from then on; a writer's own reads, and a source's own
 * writes, go on). If that fails, the sources go back to JS reads, as they were.
 */
async function beginNativeCopy(pairs: ReadonlyArray<readonly [TcpStream, TcpStream]>): Promise<number[]> {
  // As a JS read or write of a closed stream would (native code would say EBADF).
  for (const [r, w] of pairs) if (r.closed || w.closed) throw closedError();
  const pre = pairs.map(([r]) => r._beginCopy());
  try {
    for (let i = 0; i < pairs.length; i++) if (pre[i].length > 0) await pairs[i][1].write(pre[i]);
    await Promise.all(pairs.map(([, w]) => w.flush()));
  } catch (e) {
    for (const [r] of pairs) r._endCopy(false);
    throw e;
  }
  return pre.map((p) => p.length);
}

async function jsCopy(reader: Reader, writer: Writer, signal: AbortSignal | undefined): Promise<number> {
  const buf = Buffer.allocUnsafe(64 * 1024);
  let total = 0;
  for (;;) {
    const n = await readSome(reader, buf, { signal });
    if (n === 0) break;
    // A fresh copy: the writer may keep a reference to what it was given.
    await writeAll(writer, Buffer.from(buf.subarray(0, n)), signal);
    total += n;
  }
  if (writer.flush) await writer.flush({ signal });
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
 * count. Native when both are kyoto streams (`copy(s, s)` echoes a connection). Ending the
 * writer's writing meanwhile (its `shutdown()`, or closing it when it is a write half) stops the
 * copy: it rejects with `ERR_STREAM_WRITE_AFTER_END`, as a write into it would, and what the
 * source still has stays there; closing a read half it reads stops it with `ERR_SOCKET_CLOSED`.
 */
export async function copy(reader: Reader, writer: Writer, options?: SignalOption): Promise<number> {
  validateEnd('reader', reader, ['read']);
  validateEnd('writer', writer, ['write']);
  const opts = optionsBag<SignalOption>(options);
  const a = nativeStream(reader);
  const b = nativeStream(writer);
  if (a && b && opts.signal === undefined) {
    const [pre] = await beginNativeCopy([[a, b]]);
    if (a._eof) {
      a._endCopy(true);
      await b.flush();
      return pre;
    }
    // From a read half: closing it stops the copy (the stream itself stays open). Ending the
    // writer's writing (its shutdown(), its write half's close()) stops it too.
    const stop = reader instanceof StreamReadHalf ? reader._closeSignal() : undefined;
    const [n] = await nativeCopy(a, b, false, stop, [b._writeEndSignal()]);
    return n + pre;
  }
  validateSignal(opts.signal);
  return jsCopy(reader, writer, opts.signal);
}

/**
 * Copies `a → b` and `b → a` at once until both reach end of stream; when one side ends, the
 * other side's writer is shut down. Resolves with `[aToB, bToA]`. Between kyoto streams, the
 * caller shutting either stream down meanwhile stops the copy as it stops {@link copy}: it rejects
 * with `ERR_STREAM_WRITE_AFTER_END`, and what the sources still have stays there.
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
    const [preA, preB] = await beginNativeCopy([
      [na, nb],
      [nb, na],
    ]);
    // The caller ending either stream's writing (its shutdown()) mid-copy ends the direction
    // into it as copy() would, and with it the whole copy (as Tokio's future ends on the first
    // failed direction): it rejects with ERR_STREAM_WRITE_AFTER_END. The copy's own shutdown of
    // a writer at end of stream is native and aborts nothing.
    const [x, y] = await nativeCopy(na, nb, true, undefined, [na._writeEndSignal(), nb._writeEndSignal()]);
    return [x + preA, y + preB];
  }
  validateSignal(opts.signal);
  // Both directions wait on one signal: the caller's abort, or the first direction's failure,
  // which stops the other (as Tokio's future, dropped on its error, stops both).
  const stop = new AbortController();
  const outer = opts.signal;
  const onAbort = (): void => stop.abort(outer!.reason);
  if (outer?.aborted) onAbort();
  else outer?.addEventListener('abort', onAbort, { once: true });
  const one = async (r: Reader, w: Writer): Promise<number> => {
    try {
      const n = await jsCopy(r, w, stop.signal);
      if (w.shutdown) await w.shutdown({ signal: stop.signal });
      return n;
    } catch (e) {
      if (!stop.signal.aborted) stop.abort(e);
      throw e;
    }
  };
  try {
    return await Promise.all([one(a, b), one(b, a)]);
  } finally {
    outer?.removeEventListener('abort', onAbort);
  }
}

// ---------------------------------------------------------------------------------------------
// BufReader

function lineTooLong(max: number): Error {
  return codedError('ERR_LINE_TOO_LONG', `line longer than ${max} bytes`);
}

/**
 * Buffered reading over any {@link Reader}: lines and exact reads without a syscall per byte.
 * Calls made while another is pending run after it, in the order they were made (each reads what
 * the one before left); an abort of a call still waiting for its turn rejects it at once.
 */
export class BufReader implements Reader {
  #inner: Reader;
  #buf: Buffer;
  #pos = 0;
  #end = 0;
  #eof = false;
  /** Inside a line that was too long: the next `readLine` first drops the rest of it. */
  #discarding = false;
  /** Calls run one after another: two in flight would fill the same part of the buffer. */
  readonly #turns = new Turns();

  /**
   * @param inner - the reader to buffer.
   * @param capacity - buffer size in bytes (default 8 KiB).
   */
  constructor(inner: Reader, capacity = 8192) {
    validateEnd('inner', inner, ['read']);
    validateInteger(capacity, 'capacity', 1, buffer.constants.MAX_LENGTH);
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
    const n = await readSome(this.#inner, this.#buf.subarray(this.#end), options);
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
    checkSignal(options?.signal);
    return this.#turns.run(options?.signal, () => this.#read(buf, options));
  }

  async #read(buf: Uint8Array, options?: SignalOption): Promise<number> {
    if (this.#pos === this.#end) {
      if (buf.length >= this.#buf.length) return this.#eof ? 0 : readSome(this.#inner, buf, options);
      if (!(await this.#fill(options))) return 0;
    }
    const n = Math.min(buf.length, this.#end - this.#pos);
    this.#buf.copy(buf, 0, this.#pos, this.#pos + n);
    this.#pos += n;
    return n;
  }

  /**
   * The next line without its `\n` or `\r\n`, or `undefined` at end of stream. A last line without
   * a newline is returned as is. With `maxLength`, a line longer than that many bytes (without its
   * terminator) rejects once with `ERR_LINE_TOO_LONG` as soon as that is certain; the rest of that
   * line is discarded as it arrives (never buffered), and the next call returns the line after it.
   */
  async readLine(options?: SignalOption & { maxLength?: number }): Promise<string | undefined> {
    const max = options?.maxLength ?? Infinity;
    if (max !== Infinity) validateNumber(max, 'options.maxLength', 0, Number.MAX_SAFE_INTEGER);
    checkSignal(options?.signal);
    return this.#turns.run(options?.signal, () => this.#readLine(max, options));
  }

  async #readLine(max: number, options?: SignalOption): Promise<string | undefined> {
    if (this.#discarding && !(await this.#skipLine(options))) return undefined;
    let scanned = this.#pos;
    for (;;) {
      const i = this.#buf.indexOf(10, scanned);
      if (i >= 0 && i < this.#end) {
        let lineEnd = i;
        if (lineEnd > this.#pos && this.#buf[lineEnd - 1] === 13) lineEnd--;
        if (lineEnd - this.#pos > max) {
          this.#pos = i + 1; // the oversize line is discarded
          throw lineTooLong(max);
        }
        const line = this.#buf.toString('utf8', this.#pos, lineEnd);
        this.#pos = i + 1;
        return line;
      }
      // No newline yet: what is buffered is all one line (a last `\r` may still be the terminator's).
      const pending = this.#end - this.#pos - (this.#end > this.#pos && this.#buf[this.#end - 1] === 13 ? 1 : 0);
      if (pending > max) {
        this.#pos = this.#end;
        this.#discarding = true;
        throw lineTooLong(max);
      }
      scanned = this.#end;
      const before = this.#pos;
      if (!(await this.#fill(options))) {
        if (this.#pos === this.#end) return undefined;
        // The last line, as is: a `\r` that no `\n` followed is part of it, and counts.
        const start = this.#pos;
        this.#pos = this.#end;
        if (this.#end - start > max) throw lineTooLong(max);
        return this.#buf.toString('utf8', start, this.#end);
      }
      scanned -= before - this.#pos; // the buffer may have been compacted
    }
  }

  /** Drops the rest of an oversize line, through its `\n`; false if the stream ended first. */
  async #skipLine(options?: SignalOption): Promise<boolean> {
    for (;;) {
      const i = this.#buf.indexOf(10, this.#pos);
      if (i >= 0 && i < this.#end) {
        this.#pos = i + 1;
        this.#discarding = false;
        return true;
      }
      this.#pos = this.#end;
      if (!(await this.#fill(options))) {
        this.#discarding = false;
        return false;
      }
    }
  }

  /** The lines until end of stream (see {@link BufReader.readLine} for `maxLength`). */
  async *lines(options?: SignalOption & { maxLength?: number }): AsyncGenerator<string, void, undefined> {
    for (;;) {
      const l = await this.readLine(options);
      if (l === undefined) return;
      yield l;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// duplex (lib/io/duplex.ts)

export { DuplexStream, DuplexReadHalf, DuplexWriteHalf } from './io/duplex';

/** An in-memory pipe: what one end writes the other reads; each direction holds at most `maxBuf`. */
export function duplex(maxBuf: number): [DuplexStream, DuplexStream] {
  validateInteger(maxBuf, 'maxBuf', 1, Number.MAX_SAFE_INTEGER);
  return duplexPair(maxBuf);
}

// ---------------------------------------------------------------------------------------------
// Framing (lib/io/framed.ts)

export { LengthDelimitedCodec, LinesCodec, framed, type Framed } from './io/framed';
