/**
 * Work of this JS thread that keeps a paused clock from auto-advancing, like Tokio's
 * `inhibit_auto_advance`: the runtime is not idle while it is there. `kyoto/time` registers what
 * to do when the last hold goes (look again for an idle moment). A module of its own so that
 * `kyoto/task` can take holds without importing `kyoto/time`.
 * @module
 */

let holds = 0;
let onReleased: (() => void) | undefined;

/** Takes `n` holds: auto-advance waits until they are released. */
export function holdClock(n = 1): void {
  holds += n;
}

/** Releases `n` holds taken with {@link holdClock}. */
export function releaseClock(n = 1): void {
  holds -= n;
  if (holds === 0) onReleased?.();
}

/** Whether some work of this thread holds the paused clock. */
export function clockHeld(): boolean {
  return holds > 0;
}

/** Registers what runs when the last hold is released (`kyoto/time`'s auto-advance check). */
export function setOnClockReleased(fn: () => void): void {
  onReleased = fn;
}
