/**
 * Reading once from any `Reader` of `kyoto/io` (internal): the JS paths of `copy`, `BufReader`
 * and `framed`, over readers written by users.
 * @module
 */
import { codedError } from '../errors';
import type { Reader } from '../io';
import type { SignalOption } from '../net';

/**
 * `r.read(buf)`, checked: the count must be an integer in 0..`buf.length`, else
 * `ERR_INVALID_RETURN_VALUE`. A Node stream's `read()` answers a chunk or `null` instead, and a
 * loop taking that for a count would spin or copy garbage.
 */
export async function readSome(r: Reader, buf: Uint8Array, options?: SignalOption): Promise<number> {
  const n: unknown = await r.read(buf, options);
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > buf.length) {
    const got = n === null ? 'null' : typeof n === 'number' ? String(n) : `a value of type ${typeof n}`;
    throw codedError('ERR_INVALID_RETURN_VALUE', `read() returned ${got} for a ${buf.length}-byte buffer, not a byte count`);
  }
  return n;
}
