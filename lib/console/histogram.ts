/**
 * Duration histograms for tokio-console's task view, in HdrHistogram's counts layout and its V2
 * serialization (what the CLI deserializes). The layout is the one `kyoto_rt::instrument::histogram`
 * uses for native tasks: lowest value 1 ns, highest 1 s (console-subscriber's default), 1 significant
 * digit (a bucket is at most 1/16 of its value wide); longer durations are outliers, counted apart and
 * recorded at 1 s.
 * @module
 */
import { Writer } from './proto';

/** Highest trackable value, ns. */
export const HIGH = 1_000_000_000;
const LOW = 1;
const SIGFIG = 1;
const SUB_BUCKET_COUNT_MAGNITUDE = 5;
const SUB_BUCKET_HALF_COUNT_MAGNITUDE = 4;
const SUB_BUCKET_HALF_COUNT = 16;
/** Number of counts (27 half-buckets of 16). */
export const LEN = 27 * SUB_BUCKET_HALF_COUNT;
/** HdrHistogram's V2 cookie (uncompressed, 8-byte word). */
const V2_COOKIE = 0x1c849313;

/** Leading zeros of a non-negative integer < 2^53 as a 64-bit value. */
function clz64(v: number): number {
  const hi = Math.floor(v / 0x1_0000_0000);
  return hi !== 0 ? Math.clz32(hi) : 32 + Math.clz32(v >>> 0);
}

/** HdrHistogram's counts index of `ns` (clamped to {@link HIGH}). */
export function histIndex(ns: number): number {
  const v = Math.min(HIGH, Math.max(0, Math.floor(ns)));
  const bucket = 64 - SUB_BUCKET_COUNT_MAGNITUDE - clz64(v < 32 ? 31 : v);
  const sub = Math.floor(v / 2 ** bucket);
  return ((bucket + 1) << SUB_BUCKET_HALF_COUNT_MAGNITUDE) + sub - SUB_BUCKET_HALF_COUNT;
}

/** The durations of one JS task (allocated on its first record). */
export class Histogram {
  readonly counts = new Uint32Array(LEN);
  outliers = 0;
  maxOutlier = 0;

  record(ns: number): void {
    if (ns > HIGH) {
      this.outliers++;
      if (ns > this.maxOutlier) this.maxOutlier = Math.round(ns);
    }
    this.counts[histIndex(ns)]++;
  }
}

/** The V2 serialization of `counts` (layout above). */
export function serializeV2(counts: ArrayLike<number>): Uint8Array {
  let limit = 0;
  for (let i = counts.length - 1; i > 0; i--) {
    if (counts[i] !== 0) {
      limit = i;
      break;
    }
  }
  const payload = new Writer();
  let i = 0;
  while (i <= limit) {
    const c = counts[i++];
    if (c === 0) {
      let zeros = 1;
      while (i <= limit && counts[i] === 0) {
        zeros++;
        i++;
      }
      // zig-zag: a run of zeros is a negative count (a single zero is written as 0)
      payload.varint(zeros > 1 ? zeros * 2 - 1 : 0);
    } else {
      payload.varint(c * 2);
    }
  }
  const body = payload.finish();
  const out = new Uint8Array(40 + body.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, V2_COOKIE);
  dv.setUint32(4, body.length);
  dv.setUint32(8, 0); // normalizing index offset
  dv.setUint32(12, SIGFIG);
  dv.setBigUint64(16, BigInt(LOW));
  dv.setBigUint64(24, BigInt(HIGH));
  dv.setFloat64(32, 1.0); // integer to double conversion ratio
  out.set(body, 40);
  return out;
}

/** A `tasks.DurationHistogram` message as field `field` of `w`. */
export function durationHistogram(
  w: Writer,
  field: number,
  counts: ArrayLike<number>,
  outliers: number,
  maxOutlier: number | undefined,
): void {
  w.message(field, (h) => {
    h.bytes(1, serializeV2(counts));
    h.uint(2, HIGH);
    h.uint(3, outliers);
    if (outliers > 0 && maxOutlier !== undefined) h.uintPresent(4, maxOutlier);
  });
}
