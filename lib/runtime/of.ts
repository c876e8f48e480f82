/**
 * Which `Runtime` an operation runs on. Shared by `kyoto/time` and `kyoto/net`; it lives outside
 * `lib/runtime.ts` because everything that file exports is public.
 * @module
 */
import { invalidArgType } from '../errors';
import { Runtime, type RuntimeOption } from '../runtime';

/** `options.runtime` or the default runtime; anything else in `options.runtime` is a TypeError. */
export function runtimeOf(options: RuntimeOption | undefined): Runtime {
  const rt = options?.runtime;
  if (rt === undefined) return Runtime.default();
  if (!(rt instanceof Runtime)) {
    throw invalidArgType('options.runtime', 'an instance of Runtime', rt);
  }
  return rt;
}
