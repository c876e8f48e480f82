/**
 * Byte copies for the receive paths. `Buffer#copy` from an offset allocates a `Uint8Array` view
 * per call (Node's `_copyActual`), one object per datagram or read; short copies — P1's and P4's
 * every message — run as a plain loop instead, so the hot paths allocate less and V8 scavenges
 * less often (see the README's peak-RSS rows).
 * @module
 */

/** Up to this many bytes are copied by the loop. */
const LOOP_MAX = 256;

/** Copies `n` bytes from `src` at `srcOff` to `dst` at `dstOff`. */
export function copyBytes(src: Buffer, srcOff: number, dst: Uint8Array, dstOff: number, n: number): void {
  if (n <= LOOP_MAX) {
    for (let i = 0; i < n; i++) dst[dstOff + i] = src[srcOff + i];
  } else {
    src.copy(dst, dstOff, srcOff, srcOff + n);
  }
}

/** `n` bytes of `src` at `off` as a Buffer of their own (from Node's pool when small). */
export function copyOut(src: Buffer, off: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  copyBytes(src, off, b, 0, n);
  return b;
}
