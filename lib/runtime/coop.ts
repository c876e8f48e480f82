/**
 * Cooperative yielding for operations that can settle at once, after tokio's `coop` budget.
 *
 * A send the kernel takes at once (a datagram, a small write to a peer that keeps reading)
 * resolves its promise without waiting for any event. A loop of `await sock.sendTo(...)` then runs
 * entirely in microtasks: the event loop never turns, so timers, I/O callbacks and
 * `setImmediate` starve for as long as the loop runs. (`node:dgram` cannot do that: its send
 * callbacks come from a later loop turn.)
 *
 * Invariant: between two turns of the event loop, at most {@link BUDGET} such operations settle,
 * or {@link BUDGET} per event a native delivery brought. Each spends one unit; once the budget is
 * spent, the next settles from `setImmediate` instead, and that callback refills it. Every native
 * delivery (`net/core.ts` `onBatch`, itself a loop turn) refills it too, so code driven by I/O
 * events, as servers are, never waits for the refill. What this costs a tight loop: one
 * `setImmediate` per {@link BUDGET} operations.
 * @module
 */
import { firstCopy } from '../native';

// A later evaluation of this file in this env (Jest's per-file module registries, a cleared
// require.cache) takes the first one's exports: see firstCopy().
const first = firstCopy('runtime/coop', exports);

/** Operations that may settle at once between two loop turns (tokio spends 128 per task poll). */
const BUDGET = 128;

let left = BUDGET;
/** A refill is scheduled: the budget was spent from in this turn of the loop. */
let refillScheduled = false;
/** Settlements waiting for the refill, in the order they were asked for. */
let waiting: Array<() => void> = [];

function refill(): void {
  refillScheduled = false;
  left = BUDGET;
  const ws = waiting;
  waiting = [];
  for (const w of ws) w();
}

/**
 * The event loop turned: a native delivery of `events` events is running. Each event may wake a
 * handler of its own (tokio gives every task its own budget), so the refill is a budget per
 * event: a batch of 800 reads whose handlers each write stays within it, and a loop that never
 * waits for an event still runs out.
 */
export function refillBudget(events: number): void {
  left = BUDGET * (events > 1 ? events : 1);
}

/**
 * `Promise.resolve(value)` while the budget lasts; once it is spent, a promise that resolves
 * with `value` from `setImmediate` (after this turn's I/O; timers come first in the next).
 */
export function settleNow<T>(value: T): Promise<T> {
  // The first spend of a turn schedules the refill for its check phase: the budget is per turn
  // of the loop, never spread over many (a plain `left` would run out across macrotasks).
  if (!refillScheduled) {
    refillScheduled = true;
    setImmediate(refill);
  }
  // (Behind settlements already waiting, even if a delivery refilled the budget meanwhile: they
  // settle in the order they were asked for.)
  if (left > 0 && waiting.length === 0) {
    left--;
    return Promise.resolve(value);
  }
  return new Promise<T>((resolve) => {
    waiting.push(() => resolve(value));
  });
}

if (first !== exports) module.exports = first;
