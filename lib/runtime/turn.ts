/**
 * One turn of the event loop for code that stays runnable meanwhile (internal): `yieldNow()`, and
 * an interval catching up on ticks already due. A module of its own so that `kyoto/time` and
 * `kyoto/task` share it without importing each other.
 * @module
 */
import { abortReason } from '../errors';
import { holdClock, releaseClock } from './clock-hold';

/**
 * Resolves from `setImmediate`, after pending timers and I/O (rejects if `signal` aborts first).
 * The caller is still runnable meanwhile, so a paused clock does not auto-advance (Tokio's
 * runtime is not idle either).
 */
export function nextTurn(signal: AbortSignal | undefined): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortReason(signal));
  holdClock();
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      clearImmediate(im);
      releaseClock();
      reject(abortReason(signal!));
    };
    const im = setImmediate(() => {
      signal?.removeEventListener('abort', onAbort);
      releaseClock();
      resolve();
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
