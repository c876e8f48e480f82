/**
 * `duplex(maxBuf)` of `kyoto/io` (re-exported from `lib/io.ts`): an in-memory pair of streams with
 * the methods of a TCP stream, like Tokio's `io::duplex`.
 *
 * Each direction is a {@link Pipe} holding at most `maxBuf` bytes: a write waits while the pipe is
 * full and a read while it is empty. Ending one direction and closing one end follow TCP:
 * - `shutdown()` ends the end's outgoing direction once the writes made before it went in: the
 *   peer reads what was buffered, then 0 (EOF); later writes reject with `ERR_STREAM_WRITE_AFTER_END`.
 * - Writes keep the order they were made in: one made while an earlier one waits for room waits
 *   behind it.
 * - `close()` ends both directions of that end: the peer reads what was buffered, then EOF, and its
 *   writes reject with `EPIPE` (bytes it had buffered towards the closed end are dropped). The
 *   closed end's own calls, including those waiting, reject with `ERR_SOCKET_CLOSED`.
 * Waits take `{ signal }`. Nothing here holds the event loop: an in-memory wait can only be ended
 * by code that is itself running.
 * @module
 */
import { Duplex } from 'node:stream';
import { codedError, illegalConstructor, invalidArgType, kConstruct } from '../errors';
import { errnoOf, systemError } from '../net/core';
import { checkSignal, closedError, pushReporting, removeWaiter, toBytes, untilAborted, withSignal } from '../net/common';
import type { SignalOption } from '../net/types';
import { readExactFrom, readToEndFrom, StreamReadHalf, StreamWriteHalf, type SplitState } from '../net/halves';
import { Turns } from './turns';

/** One direction of a {@link duplex} pair. */
class Pipe {
  chunks: Buffer[] = [];
  buffered = 0;
  /** The writing end shut down or closed: the reader gets EOF after `chunks`. */
  ended = false;
  /** The reading end closed: writes fail with `EPIPE`. */
  broken = false;
  /** Wakeups of reads waiting for bytes (or EOF), and of writes waiting for room. */
  readers: Array<() => void> = [];
  writers: Array<() => void> = [];

  constructor(readonly max: number) {}

  wakeReaders(): void {
    for (const r of this.readers.splice(0)) r();
  }
  wakeWriters(): void {
    for (const w of this.writers.splice(0)) w();
  }

  /** Copies up to `buf.length` buffered bytes into `buf`, consuming them unless `peek`. */
  take(buf: Uint8Array, peek: boolean): number {
    let n = 0;
    let i = 0;
    while (n < buf.length && i < this.chunks.length) {
      const c = this.chunks[i];
      const k = Math.min(c.length, buf.length - n);
      c.copy(buf, n, 0, k);
      n += k;
      if (peek) i++;
      else if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    if (!peek && n > 0) {
      this.buffered -= n;
      this.wakeWriters();
    }
    return n;
  }

  /** The first buffered chunk, consumed. */
  takeChunk(): Buffer {
    const c = this.chunks.shift()!;
    this.buffered -= c.length;
    this.wakeWriters();
    return c;
  }
}

/** Waits for a wakeup pushed to `list` (the caller re-checks its condition), or for an abort. */
function wakeup(list: Array<() => void>, signal: AbortSignal | undefined): Promise<void> {
  return withSignal<void>(signal, (resolve) => {
    list.push(resolve);
    return () => removeWaiter(list, resolve, () => {});
  });
}

function brokenPipe(): Error {
  return systemError(errnoOf('EPIPE'), 'write');
}

const ITER_DONE: IteratorReturnResult<undefined> = { done: true, value: undefined };

/**
 * One end of an in-memory `duplex()` pair: the methods of a TCP stream. Made by `duplex()` only
 * (`new` throws `ERR_ILLEGAL_CONSTRUCTOR`).
 */
export class DuplexStream implements AsyncIterable<Buffer> {
  #in: Pipe;
  #out: Pipe;
  #closed = false;
  /** `shutdown()` was called: later writes are refused. */
  #shutdown = false;
  /** Settles once the shutdown happened (after the writes made before it). */
  #ending: Promise<void> | undefined;
  /**
   * Writes that could not put all their bytes in the pipe at once go one after another, and later
   * writes queue behind them: a write made while an earlier one waits for room must not slip its
   * bytes into the room a read just made, in the middle of the earlier write's (as on a TCP stream).
   */
  readonly #writeTurns = new Turns();
  #waitingWrites = 0;
  #node: Duplex | undefined;

  /** @internal */
  constructor(token: typeof kConstruct, incoming: Pipe, outgoing: Pipe) {
    if (token !== kConstruct) throw illegalConstructor();
    this.#in = incoming;
    this.#out = outgoing;
  }

  /** Whether {@link DuplexStream.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Waits until bytes (or EOF) can be read, then `take`s them in the same turn: a reader woken
   * with others must not find the bytes gone after its own `await`. `atEof` at end of stream.
   */
  async #readWith<T>(signal: AbortSignal | undefined, take: (p: Pipe) => T, atEof: T): Promise<T> {
    checkSignal(signal);
    for (;;) {
      if (this.#closed) throw closedError();
      if (this.#in.buffered > 0) return take(this.#in);
      if (this.#in.ended) return atEof;
      await wakeup(this.#in.readers, signal);
    }
  }

  /** Reads what the other end wrote into `buf`; resolves with the count, 0 at end of stream. */
  async read(buf: Uint8Array, options?: SignalOption): Promise<number> {
    if (!(buf instanceof Uint8Array)) throw invalidArgType('buf', 'an instance of Uint8Array', buf);
    if (buf.length === 0 && !this.#closed) {
      checkSignal(options?.signal);
      return 0;
    }
    return this.#readWith(options?.signal, (p) => p.take(buf, false), 0);
  }

  /** Like {@link DuplexStream.read}, but leaves the bytes to be read again. */
  async peek(buf: Uint8Array, options?: SignalOption): Promise<number> {
    if (!(buf instanceof Uint8Array)) throw invalidArgType('buf', 'an instance of Uint8Array', buf);
    if (buf.length === 0 && !this.#closed) {
      // As read() (and a TCP stream's peek): nothing to wait for.
      checkSignal(options?.signal);
      return 0;
    }
    return this.#readWith(options?.signal, (p) => p.take(buf, true), 0);
  }

  /**
   * Fills `buf` completely; rejects with `ERR_UNEXPECTED_EOF` if the stream ends first. An abort
   * loses nothing: the bytes it had read go back to the stream for the next read.
   */
  readExact(buf: Uint8Array, options?: SignalOption): Promise<number> {
    return readExactFrom(this, buf, options);
  }

  /** The next chunk as it was written, or `undefined` at end of stream. */
  async readChunk(options?: SignalOption): Promise<Buffer | undefined> {
    return this.#readWith<Buffer | undefined>(options?.signal, (p) => p.takeChunk(), undefined);
  }

  /**
   * Reads until end of stream. An abort loses nothing: the bytes it had read go back to the
   * stream for the next read.
   */
  readToEnd(options?: SignalOption): Promise<Buffer> {
    return readToEndFrom(this, options);
  }

  /**
   * @internal Puts `bytes` a read consumed back in front of what the other end wrote, for the next
   * read (an aborted `readExact` or `readToEnd` gives back what it had read). They may take the
   * pipe past `maxBuf` for a while, as they were in it before. Nothing once closed.
   */
  _unread(bytes: Buffer): void {
    if (this.#closed || bytes.length === 0) return;
    this.#in.chunks.unshift(bytes);
    this.#in.buffered += bytes.length;
    this.#in.wakeReaders();
  }

  /**
   * Writes all of `data` into the other end, waiting while its buffer holds `maxBuf` bytes;
   * resolves with the length. Rejects with `EPIPE` once the other end closed. An abort while
   * waiting for room leaves what was already written in the pipe.
   */
  async write(data: Uint8Array | string, options?: SignalOption): Promise<number> {
    const bytes = toBytes(data);
    checkSignal(options?.signal);
    const out = this.#out;
    if (this.#closed) throw closedError();
    if (this.#shutdown) throw codedError('ERR_STREAM_WRITE_AFTER_END', 'write after end');
    if (out.broken) throw brokenPipe();
    if (bytes.length === 0) return 0; // nothing to wait for room for
    if (this.#waitingWrites === 0 && out.max - out.buffered >= bytes.length) {
      this.#put(bytes);
      return bytes.length;
    }
    this.#waitingWrites++;
    try {
      return await this.#writeTurns.run(options?.signal, () => this.#writeWaiting(bytes, options?.signal));
    } finally {
      this.#waitingWrites--;
    }
  }

  /** Puts `bytes` in the outgoing pipe (the caller checked there is room). */
  #put(bytes: Uint8Array): void {
    const out = this.#out;
    // A copy: the caller may reuse its buffer once the write resolved.
    out.chunks.push(Buffer.from(bytes));
    out.buffered += bytes.length;
    out.wakeReaders();
  }

  /**
   * A write in its turn, waiting for room as it goes. A `shutdown()` called after the write was
   * made does not stop it: the end of stream follows it.
   */
  async #writeWaiting(bytes: Uint8Array, signal: AbortSignal | undefined): Promise<number> {
    const out = this.#out;
    let off = 0;
    while (off < bytes.length) {
      if (this.#closed) throw closedError();
      if (out.broken) throw brokenPipe();
      const room = out.max - out.buffered;
      if (room <= 0) {
        await wakeup(out.writers, signal);
        continue;
      }
      const k = Math.min(room, bytes.length - off);
      this.#put(bytes.subarray(off, off + k));
      off += k;
    }
    return bytes.length;
  }

  /** @internal Whether writes made earlier still wait for room (see `SplitStream._writesWaiting`). */
  _writesWaiting(): boolean {
    return this.#waitingWrites > 0;
  }

  /** Writes all of `data` (same as {@link DuplexStream.write}: it always takes everything). */
  async writeAll(data: Uint8Array | string, options?: SignalOption): Promise<void> {
    await this.write(data, options);
  }

  /** Nothing waits in between: resolves at once (rejects once closed). */
  async flush(options?: SignalOption): Promise<void> {
    checkSignal(options?.signal);
    if (this.#closed) throw closedError();
  }

  /**
   * Ends this end's writing: the other end reads what is buffered, then EOF. Writes made before it
   * that still wait for room go first (later writes are refused); it resolves once the end was
   * sent. Idempotent (also after a later `close()`). An abort ends the caller's wait only.
   */
  async shutdown(options?: SignalOption): Promise<void> {
    checkSignal(options?.signal);
    if (this.#ending === undefined) {
      if (this.#closed) throw closedError();
      this.#shutdown = true;
      const end = (): void => {
        if (this.#closed) throw closedError();
        this.#out.ended = true;
        this.#out.wakeReaders();
      };
      const earlier = this.#writeTurns.settled;
      if (earlier === undefined) {
        end();
        this.#ending = Promise.resolve();
      } else {
        this.#ending = earlier.then(end);
        this.#ending.catch(() => {});
      }
    }
    return untilAborted(this.#ending, options?.signal);
  }

  /** Closes this end (see the module notes): both directions end. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Closing is destroying for a Duplex over it, as for a TCP stream's: 'close', no 'error' (its
    // read loop would otherwise fail with ERR_SOCKET_CLOSED, uncaught without a listener).
    const node = this.#node;
    if (node !== undefined && !node.destroyed) node.destroy();
    const incoming = this.#in;
    const outgoing = this.#out;
    incoming.broken = true;
    incoming.chunks = [];
    incoming.buffered = 0;
    outgoing.ended = true;
    incoming.wakeReaders();
    incoming.wakeWriters();
    outgoing.wakeReaders();
    outgoing.wakeWriters();
  }

  /** Closes this end. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  /** The chunks written by the other end, until end of stream. */
  [Symbol.asyncIterator](): AsyncIterableIterator<Buffer> {
    let done = false;
    /** Ends the iterator's waiting reads at `return()`. */
    const stop = new AbortController();
    const it: AsyncIterableIterator<Buffer> = {
      next: async (): Promise<IteratorResult<Buffer, undefined>> => {
        if (done) return ITER_DONE;
        let value: Buffer | undefined;
        try {
          value = await this.readChunk({ signal: stop.signal });
        } catch (e) {
          if (stop.signal.aborted) return ITER_DONE;
          throw e;
        }
        if (value === undefined) {
          done = true;
          return ITER_DONE;
        }
        return { done: false, value };
      },
      // `break` out of a `for await` ends the iteration, not the stream. A next() still waiting
      // ends too (done), so the data it waited for goes to the stream's next read, as on a TCP stream.
      return: async (): Promise<IteratorResult<Buffer, undefined>> => {
        done = true;
        stop.abort();
        return ITER_DONE;
      },
      [Symbol.asyncIterator]: () => it,
    };
    return it;
  }

  /** Splits into a read half and a write half; closing the write half ends this end's writing. */
  split(): [DuplexReadHalf, DuplexWriteHalf] {
    const state = { open: 2 };
    return [new DuplexReadHalf(kConstruct, this, state), new DuplexWriteHalf(kConstruct, this, state)];
  }

  /**
   * A Node `stream.Duplex` over this end: ending it shuts the end down, destroying it closes it.
   * The same object on every call. As a TCP stream's (and a `net.Socket` without `allowHalfOpen`),
   * it ends its own side once the peer's end of stream was read, then closes, and it has the
   * `net.Socket` methods a keep-alive `http.Agent` calls: `setTimeout()` (an idle timeout, as
   * node:net's), and `ref()`, `unref()`, `setKeepAlive()`, `setNoDelay()`, which do nothing for
   * an in-memory pair (it holds no process and has no TCP options).
   */
  toNodeStream(): Duplex {
    if (this.#node) return this.#node;
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    let reading = false;
    /** `setTimeout(ms)`: 'timeout' after `ms` without reads or writes, as node:net's idle timeout. */
    let idle: NodeJS.Timeout | undefined;
    const pull = async (d: Duplex): Promise<void> => {
      try {
        for (;;) {
          const c = await self.readChunk();
          if (c === undefined) {
            d.push(null);
            return;
          }
          idle?.refresh();
          if (!pushReporting(d, c)) return;
        }
      } catch (e) {
        d.destroy(e as Error);
      } finally {
        reading = false;
      }
    };
    const d = new Duplex({
      // As a TCP stream's toNodeStream() and a net.Socket: the peer's end ends this side too (a
      // keep-alive http.Agent drops a socket only once it closes).
      allowHalfOpen: false,
      read() {
        if (reading) return;
        reading = true;
        void pull(this);
      },
      write(chunk: Buffer, _enc, cb) {
        idle?.refresh();
        self.write(chunk).then(() => cb(), cb);
      },
      final(cb) {
        self.shutdown().then(() => cb(), cb);
      },
      destroy(err, cb) {
        if (idle !== undefined) clearTimeout(idle);
        idle = undefined;
        self.close();
        cb(err);
      },
    });
    // net.Socket's, which a keep-alive http.Agent calls on its idle and reused sockets: ref/unref
    // and the TCP options do nothing for an in-memory pair (it holds no process).
    const extra = d as Duplex & Record<'ref' | 'unref' | 'setKeepAlive' | 'setNoDelay', () => Duplex> & {
      setTimeout(ms: number, cb?: () => void): Duplex;
    };
    extra.ref = extra.unref = extra.setKeepAlive = extra.setNoDelay = () => d;
    extra.setTimeout = (ms: number, cb?: () => void) => {
      if (idle !== undefined) clearTimeout(idle);
      idle = undefined;
      if (cb) d.once('timeout', cb);
      if (ms > 0 && !d.destroyed) {
        idle = setTimeout(() => d.emit('timeout'), ms);
        idle.unref();
      }
      return d;
    };
    this.#node = d;
    return d;
  }
}

/** The read half of a split {@link DuplexStream}. */
export class DuplexReadHalf extends StreamReadHalf<DuplexStream> {
  /** @internal */
  constructor(token: typeof kConstruct, s: DuplexStream, state: SplitState) {
    if (token !== kConstruct) throw illegalConstructor();
    super(s, state);
  }
}

/** The write half of a split {@link DuplexStream}; closing it ends the end's writing. */
export class DuplexWriteHalf extends StreamWriteHalf<DuplexStream> {
  /** @internal */
  constructor(token: typeof kConstruct, s: DuplexStream, state: SplitState) {
    if (token !== kConstruct) throw illegalConstructor();
    super(s, state);
  }
}

/** An in-memory pipe: what one end writes the other reads; each direction holds at most `maxBuf`. */
export function duplexPair(maxBuf: number): [DuplexStream, DuplexStream] {
  const ab = new Pipe(maxBuf);
  const ba = new Pipe(maxBuf);
  return [new DuplexStream(kConstruct, ba, ab), new DuplexStream(kConstruct, ab, ba)];
}
