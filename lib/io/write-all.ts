/**
 * Writing all of a buffer to any `Writer` of `kyoto/io` (internal): `copy`'s and `framed`'s JS
 * paths, over writers that may take part of it per call.
 * @module
 */
import { codedError } from '../errors';
import type { Writer } from '../io';

/**
 * Writes all of `data` to `w`, call after call. A write resolving with no number took everything;
 * one that took nothing is `ERR_WRITE_ZERO`, and a count that is not an integer in
 * 1..(bytes offered) is `ERR_INVALID_RETURN_VALUE` (it would skip or repeat bytes).
 */
export async function writeAll(w: Writer, data: Uint8Array, signal?: AbortSignal): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const rest = data.length - off;
    const r = await w.write(data.subarray(off), signal === undefined ? undefined : { signal });
    if (r === 0) throw codedError('ERR_WRITE_ZERO', 'write returned 0');
    if (typeof r === 'number' && !(Number.isInteger(r) && r > 0 && r <= rest)) {
      throw codedError('ERR_INVALID_RETURN_VALUE', `write() returned ${r} for ${rest} bytes offered`);
    }
    off += typeof r === 'number' ? r : rest;
  }
}
