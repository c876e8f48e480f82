/**
 * Cooperative yielding for operations that can settle at once, after tokio's `coop` budget.
 *
 * A send the kernel takes at once (a datagram, a small write to a peer that keeps reading), a
 * receive from a channel that holds a message, a lock that is free, a task that finished without
 * waiting: each resolves its promise without waiting for any event. A loop of `await`s on them
 * then runs entirely in microtasks: the event loop never turns, so timers, I/O callbacks and
 * `setImmediate` starve for as long as the loop runs. (`node:dgram` cannot do that: its send
 * callbacks come from a later loop turn.) Users: the send fast paths of `kyoto/net`, every
 * immediate settlement of `kyoto/sync` (values and failures alike, as tokio's channels, semaphores
 * and `Notify` spend budget on every poll that completes) and `kyoto/task`'s `JoinHandle` and
 * `JoinSet` results that arrive in the turn they were asked for.
 *
 * Invariant: between two turns of the event loop, at most {@link BUDGET} such operations settle,
 * or {@link BUDGET} per event a native delivery brought. Each spends one unit; once the budget is
 * spent, the next settles from `setImmediate` instead, and that callback refills it. Every native
 * delivery (`net/core.ts` `onBatch`, itself a loop turn) refills it too, so code driven by I/O
 * events, as servers are, never waits for the refill. What this costs a tight loop: one
 * `setImmediate` per {@link BUDGET} operations. Only the settlement waits: what the operation did
 * (a message taken, a lock acquired) is done at the call, so a deferred settlement cannot lose it.
 * While settlements wait for the refill, a paused clock does not auto-advance: their code is
 * runnable, as a tokio task that yielded is.
 * @module
 */
import { holdClock, releaseClock } from './clock-hold';

/** Operations that may settle at once between two loop turns (tokio spends 128 per task poll). */
const BUDGET = 128;

let left = BUDGET;
/** A refill is scheduled: the budget was spent from in this turn of the loop. */
let refillScheduled = false;
/** Settlements waiting for the refill, in the order they were asked for. */
let waiting: Array<() => void> = [];
/** Counts refills: see {@link turnMark}. */
let turns = 0;

const RESOLVED_VOID: Promise<undefined> = Promise.resolve(undefined);

function refill(): void {
  refillScheduled = false;
  left = BUDGET;
  turns++;
  const ws = waiting;
  if (ws.length === 0) return;
  waiting = [];
  for (const w of ws) w();
  releaseClock();
}

/** Schedules this turn's refill (for its check phase) if no one has yet. */
function scheduleRefill(): void {
  // The first spend of a turn schedules the refill: the budget is per turn of the loop, never
  // spread over many (a plain `left` would run out across macrotasks).
  if (!refillScheduled) {
    refillScheduled = true;
    setImmediate(refill);
  }
}

/** Spends one unit if any is left (and nothing waits ahead); false: settle from the refill. */
function spend(): boolean {
  scheduleRefill();
  // (Behind settlements already waiting, even if a delivery refilled the budget meanwhile: they
  // settle in the order they were asked for.)
  if (left > 0 && waiting.length === 0) {
    left--;
    return true;
  }
  return false;
}

/** Queues `settle` for the refill. */
function defer(settle: () => void): void {
  if (waiting.length === 0) holdClock();
  waiting.push(settle);
}

/**
 * The event loop turned: a native delivery of `events` events is running. Each event may wake a
 * handler of its own (tokio gives every task its own budget), so the refill is a budget per
 * event: a batch of 800 reads whose handlers each write stays within it, and a loop that never
 * waits for an event still runs out.
 */
export function refillBudget(events: number): void {
  left = BUDGET * (events > 1 ? events : 1);
  turns++;
}

/**
 * `Promise.resolve(value)` while the budget lasts; once it is spent, a promise that resolves
 * with `value` from `setImmediate` (after this turn's I/O; timers come first in the next).
 */
export function settleNow<T>(value: T): Promise<T> {
  if (spend()) return value === undefined ? (RESOLVED_VOID as Promise<T>) : Promise.resolve(value);
  return new Promise<T>((resolve) => defer(() => resolve(value)));
}

/** {@link settleNow} for a failure: `Promise.reject(reason)` while the budget lasts. */
export function rejectNow(reason: unknown): Promise<never> {
  if (spend()) return Promise.reject(reason);
  return new Promise<never>((_, reject) => defer(() => reject(reason)));
}

/**
 * A mark of the current turn of the loop, for {@link sameTurn}. For results that arrive through
 * microtasks (a task's): one that arrives in the turn it was asked for never waited for the loop,
 * so it settles through the budget as a fast path does. (Taking a mark schedules this turn's
 * refill, which is what ends the turn's count. A delivery ends it too.)
 */
export function turnMark(): number {
  scheduleRefill();
  return turns;
}

/** Whether the loop is still in the turn {@link turnMark} returned `mark` in. */
export function sameTurn(mark: number): boolean {
  return turns === mark;
}
