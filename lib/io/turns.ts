/**
 * Calls that must not overlap (internal): each runs once every call made before it settled, in
 * the order they were made. `BufReader`'s reads, the JS path of `framed().send` and a TCP stream's
 * writes that must wait use it, where two calls in flight would interleave or reorder bytes.
 * @module
 */
import { untilAborted } from '../net/common';

const noop = (): void => {};

/** A queue of turns. */
export class Turns {
  /** Settles once every call made so far has; undefined when none is pending. */
  #pending: Promise<void> | undefined;

  /** Settles once every call made so far has (undefined when none is pending). */
  get settled(): Promise<void> | undefined {
    return this.#pending;
  }

  /** Runs `op` in its turn; an abort of `signal` while it waits for its turn rejects it at once. */
  run<T>(signal: AbortSignal | undefined, op: () => Promise<T>): Promise<T> {
    const prev = this.#pending;
    const run = prev === undefined ? op() : untilAborted(prev, signal).then(op);
    // The next call waits for this one and, if this one was aborted in the queue, for the one before.
    const done = (prev === undefined ? run : Promise.all([prev, run.catch(noop)])).then(noop, noop);
    this.#pending = done;
    void done.then(() => {
      if (this.#pending === done) this.#pending = undefined;
    });
    return run;
  }
}
