/**
 * Datagrams received while no receive was waiting (internal).
 *
 * Held without a JS object per datagram: the bytes are copied into a slab (one buffer outside the
 * JS heap, reused whenever the queue empties) and each entry is a slot in parallel arrays of small
 * integers, plus the sender's address (for UDP a cached, long-lived object). Only a caller that
 * keeps a datagram (`recvMany`) gets a Buffer of its own.
 *
 * Why: a queue of one `{ data: Buffer, address }` per datagram kept every queued datagram alive
 * across V8's young-generation scavenges, and V8 grows the young generation by the bytes that
 * survive; under P4's load it grew to its 32 MiB maximum, +30 MiB of RSS over `node:dgram`.
 * @module
 */

import { copyBytes, copyOut } from './bytes';

/** Bytes per slab; a larger datagram gets a slab of its own size. */
const SLAB = 64 * 1024;
const NO_SLAB = Buffer.alloc(0);

export class DatagramQueue<A> {
  #slab = NO_SLAB;
  /** Bytes of `#slab` in use. */
  #used = 0;
  // Entries live at indexes [#head, #tail) of the parallel arrays; slots are reused, not freed.
  #slabs: Buffer[] = [];
  #offs: number[] = [];
  #lens: number[] = [];
  #addrs: Array<A | undefined> = [];
  #head = 0;
  #tail = 0;

  /** Queued datagrams. */
  get length(): number {
    return this.#tail - this.#head;
  }

  /** Appends a copy of `src[off, off + len)`, received from `addr`. */
  push(src: Buffer, off: number, len: number, addr: A): void {
    if (this.#used + len > this.#slab.length) {
      this.#slab = Buffer.allocUnsafeSlow(len > SLAB ? len : SLAB);
      this.#used = 0;
    }
    copyBytes(src, off, this.#slab, this.#used, len);
    const t = this.#tail++;
    this.#slabs[t] = this.#slab;
    this.#offs[t] = this.#used;
    this.#lens[t] = len;
    this.#addrs[t] = addr;
    this.#used += len;
  }

  /** The first datagram's sender. Only while `length > 0`. */
  firstAddr(): A {
    return this.#addrs[this.#head] as A;
  }

  /** Copies the first datagram into `buf` (its excess is cut off); returns the bytes copied. */
  copyFirst(buf: Uint8Array): number {
    const h = this.#head;
    const len = this.#lens[h];
    const n = len < buf.length ? len : buf.length;
    const off = this.#offs[h];
    copyBytes(this.#slabs[h], off, buf, 0, n);
    return n;
  }

  /** The first datagram's bytes, as a Buffer of the caller's own. */
  firstBuffer(): Buffer {
    const h = this.#head;
    const off = this.#offs[h];
    return copyOut(this.#slabs[h], off, this.#lens[h]);
  }

  /** Drops the first datagram. */
  shift(): void {
    const h = this.#head++;
    this.#slabs[h] = NO_SLAB;
    this.#addrs[h] = undefined;
    if (this.#head === this.#tail) {
      // Empty: every byte was copied out, so the slab is free again.
      this.#head = this.#tail = 0;
      this.#used = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#tail) {
      this.#compact();
    }
  }

  /** Drops the datagrams whose sender `keep` refuses, keeping the others in order. */
  retain(keep: (addr: A) => boolean): void {
    let t = this.#head;
    for (let i = this.#head; i < this.#tail; i++) {
      if (!keep(this.#addrs[i] as A)) continue;
      this.#slabs[t] = this.#slabs[i];
      this.#offs[t] = this.#offs[i];
      this.#lens[t] = this.#lens[i];
      this.#addrs[t] = this.#addrs[i];
      t++;
    }
    for (let i = t; i < this.#tail; i++) {
      this.#slabs[i] = NO_SLAB;
      this.#addrs[i] = undefined;
    }
    this.#tail = t;
    if (this.#head === t) {
      this.#head = this.#tail = 0;
      this.#used = 0;
    }
  }

  /** Drops everything. */
  clear(): void {
    while (this.#head < this.#tail) this.shift();
  }

  /** Moves the live entries to the front of the arrays. */
  #compact(): void {
    const h = this.#head;
    const n = this.#tail - h;
    for (let i = 0; i < n; i++) {
      this.#slabs[i] = this.#slabs[h + i];
      this.#offs[i] = this.#offs[h + i];
      this.#lens[i] = this.#lens[h + i];
      this.#addrs[i] = this.#addrs[h + i];
      this.#slabs[h + i] = NO_SLAB;
      this.#addrs[h + i] = undefined;
    }
    this.#head = 0;
    this.#tail = n;
  }
}
