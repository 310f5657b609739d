import { MAX_TIMER_DELAY_MS } from './smartipc.defaults.js';

/**
 * setTimeout for library timers: unref'd (a timer alone never keeps a process alive), clamped to
 * Node's limit (2^31-1 ms; beyond it Node fires at once with a TimeoutOverflowWarning), and
 * `Infinity` means "never": no timer at all (undefined is returned).
 */
export function startTimer(callback: () => void, delayMs: number, options: { ref?: boolean } = {}): NodeJS.Timeout | undefined {
  if (delayMs === Infinity) return undefined;
  const timer = setTimeout(callback, clampDelay(delayMs));
  if (options.ref !== true) timer.unref();
  return timer;
}

/** A delay Node's timers accept: 0 .. MAX_TIMER_DELAY_MS (NaN and negatives become 0). */
export function clampDelay(delayMs: number): number {
  if (!(delayMs > 0)) return 0;
  return delayMs > MAX_TIMER_DELAY_MS ? MAX_TIMER_DELAY_MS : delayMs;
}

/**
 * How long a periodic check ran late, when that is more than a whole period (this process was
 * stopped or its event loop blocked: what peers sent meanwhile waited unread, so it is not held
 * against them); else 0. `lastRunAt` and `now` on one clock.
 */
export function stalledFor(now: number, lastRunAt: number, periodMs: number): number {
  const late = now - lastRunAt - periodMs;
  return late > periodMs ? late : 0;
}
