/**
 * Writing all of a buffer to any `Writer` of `kyoto/io` (internal): `copy`'s and `framed`'s JS
 * paths, over writers that may take part of it per call.
 * @module
 */
import { codedError } from '../errors';
import type { Writer } from '../io';

/** Writes all of `data` to `w`, call after call; a write that takes nothing is `ERR_WRITE_ZERO`. */
export async function writeAll(w: Writer, data: Uint8Array, signal?: AbortSignal): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const r = await w.write(data.subarray(off), signal === undefined ? undefined : { signal });
    if (r === 0) throw codedError('ERR_WRITE_ZERO', 'write returned 0');
    off += typeof r === 'number' ? r : data.length - off;
  }
}
