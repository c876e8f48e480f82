/**
 * Protocol Buffers encoding for the handful of tokio-console messages `kyoto/console` serves
 * (`console-api/proto/*.proto`), written by hand: varints, length-delimited fields and the proto3
 * presence rules are all that is needed.
 * @module
 */

const WT_VARINT = 0;
const WT_I64 = 1;
const WT_LEN = 2;
const WT_I32 = 5;

const utf8 = new TextEncoder();

/** Appends protobuf fields to a growing buffer. Numbers are non-negative safe integers unless said. */
export class Writer {
  #buf = new Uint8Array(64);
  #len = 0;

  get length(): number {
    return this.#len;
  }

  #ensure(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    let cap = this.#buf.length * 2;
    while (cap < this.#len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
  }

  #byte(b: number): void {
    this.#ensure(1);
    this.#buf[this.#len++] = b;
  }

  /** A raw varint of a non-negative integer up to 2^64 - 1 (exact up to 2^53). */
  varint(v: number): void {
    this.#ensure(10);
    let n = Math.max(0, Math.floor(v));
    while (n >= 0x80) {
      this.#buf[this.#len++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.#buf[this.#len++] = n;
  }

  #tag(field: number, wt: number): void {
    this.varint(field * 8 + wt);
  }

  /** uint64/uint32/enum, omitted when 0 (proto3 default). */
  uint(field: number, v: number): void {
    if (v === 0) return;
    this.#tag(field, WT_VARINT);
    this.varint(v);
  }

  /** uint64/uint32/enum with explicit presence (`optional`, oneof members): written even when 0. */
  uintPresent(field: number, v: number): void {
    this.#tag(field, WT_VARINT);
    this.varint(v);
  }

  /** sint64 (zigzag) with explicit presence. */
  sintPresent(field: number, v: number): void {
    this.#tag(field, WT_VARINT);
    this.varint(v >= 0 ? v * 2 : -v * 2 - 1);
  }

  /** bool, omitted when false. */
  bool(field: number, v: boolean): void {
    if (!v) return;
    this.#tag(field, WT_VARINT);
    this.#byte(1);
  }

  /** bool with explicit presence. */
  boolPresent(field: number, v: boolean): void {
    this.#tag(field, WT_VARINT);
    this.#byte(v ? 1 : 0);
  }

  /** string, omitted when empty. */
  string(field: number, s: string): void {
    if (s === '') return;
    this.stringPresent(field, s);
  }

  /** string with explicit presence. */
  stringPresent(field: number, s: string): void {
    this.bytes(field, utf8.encode(s));
  }

  /** bytes, or an embedded message's encoding (always written: presence). */
  bytes(field: number, b: Uint8Array): void {
    this.#tag(field, WT_LEN);
    this.varint(b.length);
    this.#ensure(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
  }

  /** An embedded message built by `build` (always written, possibly empty: presence). */
  message(field: number, build: (w: Writer) => void): void {
    const w = new Writer();
    build(w);
    this.bytes(field, w.finish());
  }

  /** Appends already-encoded fields. */
  raw(b: Uint8Array): void {
    this.#ensure(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
  }

  /** The encoded bytes (a view; the writer must not be used afterwards). */
  finish(): Uint8Array {
    return this.#buf.subarray(0, this.#len);
  }
}

/** One decoded field: its number, wire type and value (a number for varints, bytes otherwise). */
export interface RawField {
  field: number;
  wireType: number;
  value: number | Uint8Array;
}

/** Decodes the top-level fields of a message; throws a `RangeError` on malformed input. */
export function decodeFields(buf: Uint8Array): RawField[] {
  const out: RawField[] = [];
  let i = 0;
  const varint = (): number => {
    let v = 0;
    let mul = 1;
    for (let k = 0; k < 10; k++) {
      if (i >= buf.length) throw new RangeError('truncated varint');
      const b = buf[i++];
      v += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return v;
      mul *= 0x80;
    }
    throw new RangeError('varint too long');
  };
  while (i < buf.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wireType = key % 8;
    if (field === 0) throw new RangeError('field number 0');
    switch (wireType) {
      case WT_VARINT:
        out.push({ field, wireType, value: varint() });
        break;
      case WT_I64:
      case WT_I32: {
        const n = wireType === WT_I64 ? 8 : 4;
        if (i + n > buf.length) throw new RangeError('truncated fixed field');
        out.push({ field, wireType, value: buf.subarray(i, i + n) });
        i += n;
        break;
      }
      case WT_LEN: {
        const n = varint();
        if (i + n > buf.length) throw new RangeError('truncated length-delimited field');
        out.push({ field, wireType, value: buf.subarray(i, i + n) });
        i += n;
        break;
      }
      default:
        throw new RangeError(`unsupported wire type ${wireType}`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// google.protobuf.Timestamp / Duration, from milliseconds

/** `google.protobuf.Timestamp` of a wall-clock time in (fractional) ms since the epoch. */
export function timestamp(w: Writer, field: number, ms: number): void {
  const totalNs = Math.max(0, Math.round(ms * 1e6));
  const seconds = Math.floor(totalNs / 1e9);
  const nanos = Math.min(999_999_999, Math.max(0, Math.round(totalNs - seconds * 1e9)));
  w.message(field, (t) => {
    t.uint(1, seconds);
    t.uint(2, nanos);
  });
}

/** `google.protobuf.Duration` of a non-negative duration in (fractional) ms. */
export function duration(w: Writer, field: number, ms: number): void {
  const totalNs = Math.max(0, Math.round(ms * 1e6));
  const seconds = Math.floor(totalNs / 1e9);
  const nanos = Math.min(999_999_999, Math.max(0, totalNs - seconds * 1e9));
  w.message(field, (d) => {
    d.uint(1, seconds);
    d.uint(2, nanos);
  });
}
