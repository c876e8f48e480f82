/**
 * What `UdpSocket` and `UnixDatagram` share (internal): receiving, waiting for a blocked send, and
 * closing. The socket classes decode their own addresses and make their own sends; this class
 * owns everything after that.
 *
 * Receiving. Native code delivers the datagrams of one `recvmmsg` batch as `K_DGRAM` events. A
 * datagram goes straight to the first waiting receive when nothing is queued before it; otherwise
 * into a {@link DatagramQueue}. Past `DGRAM_HWM` queued datagrams, native reading stops (the
 * kernel's buffer then drops, as UDP does) and resumes below a quarter of it.
 *
 * Invariants:
 * - Waiting receives exist only while the queue is empty (a datagram goes to the first waiter), so
 *   FIFO order holds across both; a peek leaves its datagram queued for the next receive.
 * - The loop is held while a receive or a blocked send waits (one hold per non-empty list,
 *   through {@link LoopHolds}, so `unref()` drops both).
 * - After `close()` nothing waits: receives and blocked sends reject with `ERR_SOCKET_CLOSED`, and
 *   every later call rejects before reaching native code.
 * @module
 */
import { native } from '../native';
import { LoopHolds, arenaChunk, copyFromArena, currentBatch, rarena } from './core';
import { DatagramQueue } from './dgram-queue';
import { DGRAM_HWM, closedError, isRuntimeShutdown, rejectAll, removeWaiter, capture, capturedReject, capturedResolve, withSignal } from './common';

/** What `recvMany` resolves with. */
export interface Datagram<A> {
  /** The datagram's bytes (a Buffer of the caller's own). */
  data: Buffer;
  /** The sender. */
  address: A;
}

/** recv, recvFrom, peekFrom, recvMany. */
type RecvKind = 0 | 1 | 2 | 3;

interface RecvWaiter {
  kind: RecvKind;
  buf: Uint8Array | undefined;
  max: number;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

interface DrainWaiter {
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class DgramCore<A> {
  readonly #h: number;
  #queue = new DatagramQueue<A>();
  #waiters: RecvWaiter[] = [];
  /**
   * The array a `recvMany` was resolved with while its batch is still being delivered: later
   * datagrams of the same batch join it (its reader runs only after the batch call returns), so a
   * burst arrives as one array instead of its first datagram alone.
   */
  #filling: { out: Array<Datagram<A>>; max: number; batch: number } | undefined;
  #reading = false;
  #closed = false;
  #err: Error | undefined;
  #drain: DrainWaiter[] = [];
  /** Set while connected: the senders whose datagrams are received (see `onlyFrom`). */
  #from: ((a: A) => boolean) | undefined;
  readonly holds = new LoopHolds();
  /** Adds to the loop holds (one per non-empty waiter list; see the module notes). */
  readonly #hold = (d: number): void => this.holds.add(d);

  constructor(h: number) {
    this.#h = h;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** `ERR_RUNTIME_SHUTDOWN` once the socket's runtime is gone: every later call fails with it. */
  get deadError(): Error | undefined {
    const e = this.#err;
    return e !== undefined && isRuntimeShutdown(e) ? e : undefined;
  }

  /**
   * Receives only datagrams whose sender `from` accepts (all again with `undefined`), dropping those
   * queued from others: what a connected socket receives. The kernel keeps datagrams that arrived
   * before `connect(2)`, and more of them wait on their way here, so the filter stays on.
   */
  onlyFrom(from: ((a: A) => boolean) | undefined): void {
    this.#from = from;
    if (from !== undefined) this.#queue.retain(from);
  }

  /** A `K_DGRAM` event: `len` bytes at `off` of the receive arena, from `address`. */
  deliver(off: number, len: number, address: A): void {
    if (this.#from !== undefined && !this.#from(address)) return;
    const w = this.#waiters;
    if (w.length > 0 && this.#queue.length === 0 && w[0].kind !== 2) {
      // Straight to the waiting receive, without passing through the queue.
      const first = w.shift()!;
      if (w.length === 0) this.holds.add(-1);
      // A later datagram of this batch must not join an earlier recvMany's burst past this one.
      this.#filling = undefined;
      if (first.kind === 3) {
        const out: Array<Datagram<A>> = [{ data: arenaChunk(off, len), address }];
        this.#filling = first.max > 1 ? { out, max: first.max, batch: currentBatch() } : undefined;
        first.resolve(out);
        return;
      }
      const buf = first.buf!;
      const n = len < buf.length ? len : buf.length;
      copyFromArena(buf, off, n);
      first.resolve(first.kind === 0 ? n : { bytes: n, address });
      return;
    }
    const f = this.#filling;
    // The burst a recvMany took grows only while nothing else waits: a receive (or peek) waiting
    // after it gets the next datagram, in order.
    if (f !== undefined && w.length === 0 && f.batch === currentBatch() && f.out.length < f.max && this.#queue.length === 0) {
      f.out.push({ data: arenaChunk(off, len), address });
      return;
    }
    this.#filling = undefined;
    this.#queue.push(rarena, off, len, address);
    if (this.#queue.length > DGRAM_HWM && this.#reading) {
      this.#reading = false;
      native.netRead(this.#h, false);
    }
    this.#service();
  }

  /** A `K_ERROR` event: fails the first waiting receive, or the next one to come. */
  fail(err: Error): void {
    if (isRuntimeShutdown(err)) {
      this.#err = err;
      rejectAll(this.#waiters, err, this.#hold);
      rejectAll(this.#drain, err, this.#hold);
      return;
    }
    const w = this.#waiters.shift();
    if (w) {
      if (this.#waiters.length === 0) this.holds.add(-1);
      w.reject(err);
    } else {
      this.#err = err;
    }
  }

  /** A `K_DRAIN` event: blocked sends went out. */
  drained(): void {
    const all = this.#drain.splice(0);
    if (all.length > 0) this.holds.add(-1);
    for (const d of all) d.resolve();
  }

  #shift(): void {
    this.#queue.shift();
    if (!this.#reading && !this.#closed && this.#queue.length < DGRAM_HWM / 4) {
      this.#reading = true;
      native.netRead(this.#h, true);
    }
  }

  #fulfil(w: RecvWaiter): void {
    const q = this.#queue;
    if (w.kind === 3) {
      const out: Array<Datagram<A>> = [];
      while (out.length < w.max && q.length > 0) {
        out.push({ data: q.firstBuffer(), address: q.firstAddr() });
        this.#shift();
      }
      this.#filling = out.length < w.max ? { out, max: w.max, batch: currentBatch() } : undefined;
      w.resolve(out);
      return;
    }
    const n = q.copyFirst(w.buf!);
    const address = q.firstAddr();
    if (w.kind !== 2) {
      this.#filling = undefined;
      this.#shift();
    }
    w.resolve(w.kind === 0 ? n : { bytes: n, address });
  }

  #service(): void {
    while (this.#waiters.length > 0 && this.#queue.length > 0) {
      const w = this.#waiters.shift()!;
      if (this.#waiters.length === 0) this.holds.add(-1);
      this.#fulfil(w);
    }
  }

  #enqueue(w: RecvWaiter): void {
    if (this.#waiters.length === 0 && this.#queue.length === 0) this.holds.add(1);
    if (this.#queue.length > 0 && this.#waiters.length === 0) this.#fulfil(w);
    else this.#waiters.push(w);
  }

  /** A receive of `kind` (`buf` for kinds 0–2, `max` for `recvMany`), abortable by `signal`. */
  recv<T>(kind: RecvKind, buf: Uint8Array | undefined, max: number, signal: AbortSignal | undefined): Promise<T> {
    if (this.#closed) return Promise.reject(closedError());
    if (this.#err) {
      const e = this.#err;
      if (!isRuntimeShutdown(e)) this.#err = undefined; // a dead runtime fails every later call too
      return Promise.reject(e);
    }
    // Reading stopped above the queue's high-water mark resumes only once it is drained below a
    // quarter of it (`#shift`), whatever the receives asking meanwhile.
    if (!this.#reading && this.#queue.length < DGRAM_HWM / 4) {
      this.#reading = true;
      native.netRead(this.#h, true);
    }
    if (signal === undefined) {
      // No closure per receive (see `capture` in common.ts).
      const p = new Promise(capture) as Promise<T>;
      this.#enqueue({ kind, buf, max, resolve: capturedResolve, reject: capturedReject });
      return p;
    }
    return withSignal<T>(signal, (resolve, reject) => {
      const w: RecvWaiter = { kind, buf, max, resolve: resolve as (v: unknown) => void, reject };
      this.#enqueue(w);
      return () => removeWaiter(this.#waiters, w, this.#hold);
    });
  }

  /**
   * Waits for the `K_DRAIN` that follows a send native code took while the socket was blocked.
   * An abort ends the wait only: the datagram was handed over and may still be sent.
   */
  waitDrain(signal: AbortSignal | undefined): Promise<void> {
    if (this.#closed) return Promise.reject(closedError());
    if (this.#err && isRuntimeShutdown(this.#err)) return Promise.reject(this.#err);
    return withSignal<void>(signal, (resolve, reject) => {
      const d: DrainWaiter = { resolve, reject };
      if (this.#drain.length === 0) this.holds.add(1);
      this.#drain.push(d);
      return () => removeWaiter(this.#drain, d, this.#hold);
    });
  }

  /** Marks the socket closed and rejects every wait (the caller closed the native socket). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.clear();
    this.#filling = undefined;
    rejectAll(this.#waiters, closedError(), this.#hold);
    rejectAll(this.#drain, closedError(), this.#hold);
  }
}
