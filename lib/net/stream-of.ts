/**
 * Which values are kyoto streams, for `kyoto/io`'s native paths. It lives outside `lib/net.ts`
 * because the package's entry re-exports everything `lib/net.ts` exports, and these are internal.
 *
 * A stream (and each half of one) answers to a module-private symbol with the stream behind it, so
 * a look-alike object cannot pass for one.
 * @module
 */
import type { TcpStream } from '../net';

/** The method, on `TcpStream` (so `UnixStream`) and on `ReadHalf`/`WriteHalf`, naming the stream. */
export const kStream: unique symbol = Symbol('kyoto.stream');

/** The kyoto stream behind `x` (TCP or Unix, or a half of one), if it is one. */
export function kyotoStream(x: unknown): TcpStream | undefined {
  if (typeof x !== 'object' || x === null) return undefined;
  const of = (x as { [kStream]?: unknown })[kStream];
  return typeof of === 'function' ? (of.call(x) as TcpStream) : undefined;
}

/**
 * The kyoto stream behind `x` if native copies may use it: not one whose read side `framed()`
 * claimed.
 */
export function nativeStream(x: unknown): TcpStream | undefined {
  const s = kyotoStream(x);
  return s !== undefined && !s._framed ? s : undefined;
}
