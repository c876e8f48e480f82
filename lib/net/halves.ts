/**
 * The two halves `split()` makes of a stream (a kyoto `TcpStream` or `UnixStream`, or an end of a
 * `duplex()` pair): each forwards its direction's calls to the stream, closing the write half
 * sends end-of-stream, and the stream closes once both halves are closed. The TCP halves add the
 * addresses (`tcp-stream.ts`); the `duplex()` ones add nothing. Also the reads every such stream
 * derives from `read`/`readChunk` the same way.
 * @module
 */
import { codedError, invalidArgType } from '../errors';
import { ownController } from '../sync/internal';
import { closedError } from './common';
import type { SignalOption } from './types';

/**
 * @internal The key of a read's `options` naming the read half that made it. A stream that knows it
 * ({@link SplitStream._dropReads}) tags the read's waiter with the half, so closing the half ends its
 * reads without an AbortSignal listener per read (the hot path of a split stream's read loop).
 */
export const kReadOwner = Symbol.for('kyoto.readOwner'); // one symbol for every copy of this file (see firstCopy())

/** @internal What a read's owner answers: whether its half was closed (its reads then reject). */
export interface ReadOwner {
  readonly _closed: boolean;
}

/** @internal Read options that may name their read half. */
export interface OwnedReadOptions extends SignalOption {
  [kReadOwner]?: ReadOwner;
}

/**
 * A stream that can take back bytes a read consumed (kyoto's streams and `duplex()` ends): they go
 * in front of what it holds, for its next read.
 */
interface Unreadable {
  _unread?(bytes: Buffer): void;
}

/**
 * Hands `parts` back to `s` when the read that consumed them was aborted (`options.signal`) or its
 * read half closed: an aborted `readExact` or `readToEnd` loses no bytes, the next read of the
 * stream gets them. Any other failure (an error of the stream) keeps its own meaning.
 */
function giveBack(s: Unreadable, parts: Buffer[], options: SignalOption | undefined): void {
  const ended = options?.signal?.aborted === true || (options as OwnedReadOptions | undefined)?.[kReadOwner]?._closed === true;
  if (!ended || s._unread === undefined) return;
  const bytes = parts.length === 1 ? parts[0] : Buffer.concat(parts);
  if (bytes.length > 0) s._unread(bytes);
}

/**
 * `readExact` over a stream's `read`: fills `buf`, or rejects with `ERR_UNEXPECTED_EOF`. Aborted,
 * it gives the bytes it had read back to the stream (`buf` keeps a copy of them).
 */
export async function readExactFrom(
  s: { read(buf: Uint8Array, options?: SignalOption): Promise<number> } & Unreadable,
  buf: Uint8Array,
  options: SignalOption | undefined,
): Promise<number> {
  if (!(buf instanceof Uint8Array)) throw invalidArgType('buf', 'an instance of Uint8Array', buf);
  let n = 0;
  try {
    while (n < buf.length) {
      const k = await s.read(buf.subarray(n), options);
      if (k === 0) throw codedError('ERR_UNEXPECTED_EOF', `early eof: read ${n} of ${buf.length} bytes`);
      n += k;
    }
  } catch (e) {
    // A copy: the caller owns `buf` and may reuse it at once.
    if (n > 0) giveBack(s, [Buffer.from(buf.subarray(0, n))], options);
    throw e;
  }
  return n;
}

/**
 * `readToEnd` over a stream's `readChunk`: every chunk until end of stream, as one Buffer. Aborted,
 * it gives what it had read back to the stream.
 */
export async function readToEndFrom(
  s: { readChunk(options?: SignalOption): Promise<Buffer | undefined> } & Unreadable,
  options: SignalOption | undefined,
): Promise<Buffer> {
  const parts: Buffer[] = [];
  try {
    for (;;) {
      const c = await s.readChunk(options);
      if (c === undefined) return Buffer.concat(parts);
      parts.push(c);
    }
  } catch (e) {
    giveBack(s, parts, options);
    throw e;
  }
}

/** What a stream offers for its halves to forward to (kyoto's streams and `duplex()` ends). */
export interface SplitStream extends AsyncIterable<Buffer> {
  /** Reads into `buf`; 0 at end of stream. */
  read(buf: Uint8Array, options?: SignalOption): Promise<number>;
  /** Fills `buf`, or rejects with `ERR_UNEXPECTED_EOF`. */
  readExact(buf: Uint8Array, options?: SignalOption): Promise<number>;
  /** The next chunk, or `undefined` at end of stream. */
  readChunk(options?: SignalOption): Promise<Buffer | undefined>;
  /** Reads until end of stream. */
  readToEnd(options?: SignalOption): Promise<Buffer>;
  /** Reads without consuming. */
  peek(buf: Uint8Array, options?: SignalOption): Promise<number>;
  /** Writes all of `data`; resolves with its length. */
  write(data: Uint8Array | string, options?: SignalOption): Promise<number>;
  /** Writes all of `data`. */
  writeAll(data: Uint8Array | string, options?: SignalOption): Promise<void>;
  /** Waits until what was written left the process. */
  flush(options?: SignalOption): Promise<void>;
  /** Ends the writing direction (idempotent). */
  shutdown(options?: SignalOption): Promise<void>;
  /** Closes the stream. */
  close(): void;
  /** @internal Whether writes made earlier still wait for room (closing now would reject them). */
  _writesWaiting?(): boolean;
  /** Whether `close()` was called. */
  readonly closed: boolean;
  /**
   * @internal Rejects with `err` the waiting reads whose options named `owner` ({@link kReadOwner}).
   * A stream that has it also refuses a read whose owner is closed (`ERR_SOCKET_CLOSED`).
   */
  _dropReads?(owner: ReadOwner, err: Error): void;
}

/** How many of a stream's two halves are still open. @internal */
export interface SplitState {
  open: number;
  /** The write half's shutdown once it was closed: the stream closes after it, not before. */
  ending?: Promise<void>;
}

/** What a closed half's reads answer (as its stream's would once closed). */
function closedHalf(): Promise<never> {
  return Promise.reject(closedError());
}

/** Counts a half out; the last one out closes the stream, after the write half's shutdown. */
function releaseHalf(s: SplitStream, state: SplitState): void {
  if (state.open === 0 || --state.open > 0) return;
  // Closing at once would reject the writes the shutdown still waits for (made before the close).
  if (state.ending !== undefined && s._writesWaiting?.() === true) void state.ending.then(() => s.close());
  else s.close();
}

/** The read half of a split stream: its reads, and `close()` for this half. */
export class StreamReadHalf<S extends SplitStream> implements AsyncIterable<Buffer> {
  #closed = false;
  /**
   * Aborted (with `ERR_SOCKET_CLOSED`) by `close()`: every read of this half waits under its
   * signal, so dropping the half ends them instead of leaving them to hold the process and take
   * data nobody will see.
   */
  #ac: AbortController | undefined;
  /** @internal */
  constructor(
    /** @internal */ readonly _s: S,
    /** @internal */ readonly _state: SplitState,
  ) {}
  /** @internal Whether `close()` was called (native copies and framing then take no stream from it). */
  get _closed(): boolean {
    return this.#closed;
  }
  /** @internal A signal that this half's `close()` aborts (a native copy reading through it stops). */
  _closeSignal(): AbortSignal {
    return (this.#ac ??= ownController()).signal;
  }
  /** The options of a read made with none, naming this half (made once). */
  #owned: OwnedReadOptions | undefined;
  /**
   * `options` that let this half's `close()` end the read: naming this half where the stream takes
   * an owner, else with a signal that `close()` aborts too.
   */
  #opts(options: SignalOption | undefined): SignalOption | undefined {
    const user = options?.signal;
    if (this._s._dropReads !== undefined) {
      if (user === undefined) return (this.#owned ??= { [kReadOwner]: this });
      return { signal: user, [kReadOwner]: this } as OwnedReadOptions;
    }
    const own = (this.#ac ??= ownController()).signal;
    if (user === undefined) return { signal: own };
    // Not an AbortSignal: the stream's to refuse (ERR_INVALID_ARG_TYPE).
    if (!(user instanceof AbortSignal)) return options;
    return { signal: AbortSignal.any([user, own]) };
  }
  /** Reads into `buf` (see the stream's `read`). A closed half rejects with `ERR_SOCKET_CLOSED`. */
  read(buf: Uint8Array, options?: SignalOption): Promise<number> {
    return this.#closed ? closedHalf() : this._s.read(buf, this.#opts(options));
  }
  /** Fills `buf` (see the stream's `readExact`). */
  readExact(buf: Uint8Array, options?: SignalOption): Promise<number> {
    return this.#closed ? closedHalf() : this._s.readExact(buf, this.#opts(options));
  }
  /** The next chunk, or `undefined` at end of stream (see the stream's `readChunk`). */
  readChunk(options?: SignalOption): Promise<Buffer | undefined> {
    return this.#closed ? closedHalf() : this._s.readChunk(this.#opts(options));
  }
  /** Reads until end of stream (see the stream's `readToEnd`). */
  readToEnd(options?: SignalOption): Promise<Buffer> {
    return this.#closed ? closedHalf() : this._s.readToEnd(this.#opts(options));
  }
  /** Reads without consuming (see the stream's `peek`). */
  peek(buf: Uint8Array, options?: SignalOption): Promise<number> {
    return this.#closed ? closedHalf() : this._s.peek(buf, this.#opts(options));
  }
  /**
   * Drops this half (once: a second call does nothing): its waiting reads reject with
   * `ERR_SOCKET_CLOSED`; the stream closes when both halves are closed.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this._s._dropReads?.(this, closedError());
    this.#ac?.abort(closedError());
    releaseHalf(this._s, this._state);
  }
  /**
   * The received chunks until end of stream. `return()` ends the iteration (a `next()` still
   * waiting ends too, and its data goes to the next read); closing the half rejects a waiting
   * `next()` with `ERR_SOCKET_CLOSED`, as closing the stream does.
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<Buffer> {
    let done = false;
    const stop = new AbortController();
    // One signal for the iterator's reads: its return() and the half's close() both end them.
    let signal: AbortSignal | undefined;
    const it: AsyncIterableIterator<Buffer> = {
      next: async (): Promise<IteratorResult<Buffer, undefined>> => {
        if (done) return { value: undefined, done: true };
        if (this.#closed) throw closedError();
        // Where the stream takes an owner, the half's close() ends the read through it.
        const owned = this._s._dropReads !== undefined;
        signal ??= owned ? stop.signal : AbortSignal.any([stop.signal, (this.#ac ??= ownController()).signal]);
        let value: Buffer | undefined;
        try {
          value = await this._s.readChunk(owned ? ({ signal, [kReadOwner]: this } as OwnedReadOptions) : { signal });
        } catch (e) {
          if (stop.signal.aborted) return { value: undefined, done: true };
          throw e;
        }
        if (value === undefined) {
          done = true;
          return { value: undefined, done: true };
        }
        return { value, done: false };
      },
      return: (): Promise<IteratorResult<Buffer, undefined>> => {
        done = true;
        stop.abort();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]: () => it,
    };
    return it;
  }
}

/** The write half of a split stream: its writes, and `close()`, which ends the stream's writing. */
export class StreamWriteHalf<S extends SplitStream> {
  #closed = false;
  /** @internal */
  constructor(
    /** @internal */ readonly _s: S,
    /** @internal */ readonly _state: SplitState,
  ) {}
  /** Writes `data` (see the stream's `write`). */
  write(data: Uint8Array | string, options?: SignalOption): Promise<number> {
    return this._s.write(data, options);
  }
  /** Writes all of `data` (see the stream's `writeAll`). */
  writeAll(data: Uint8Array | string, options?: SignalOption): Promise<void> {
    return this._s.writeAll(data, options);
  }
  /** Waits until what was written left the process (see the stream's `flush`). */
  flush(options?: SignalOption): Promise<void> {
    return this._s.flush(options);
  }
  /** Ends the stream's writing (idempotent; see the stream's `shutdown`). */
  shutdown(options?: SignalOption): Promise<void> {
    return this._s.shutdown(options);
  }
  /**
   * Drops this half: end-of-stream follows what was written so far (as with `shutdown()`, whose
   * promise says when it went out), and the stream closes once both halves are closed.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this._s.closed) this._state.ending = this._s.shutdown().catch(() => {});
    releaseHalf(this._s, this._state);
  }
}
