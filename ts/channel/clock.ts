// The time the channel's timer-driven pieces (pending requests, heartbeat) see. Production code
// uses `systemClock`; unit tests pass a manual clock so deadlines and ticks are exact.

/** A timer started through an IClock; only that clock can cancel it. */
export type TClockTimer = unknown;

export interface IClock {
  /** Milliseconds on a monotonic scale (performance.now() for the system clock). */
  now(): number;
  /** Calls `fn` once after `ms`; the timer does not keep the process alive. */
  setTimeout(fn: () => void, ms: number): TClockTimer;
  clearTimeout(timer: TClockTimer): void;
  /** Calls `fn` every `ms`; the timer does not keep the process alive. */
  setInterval(fn: () => void, ms: number): TClockTimer;
  clearInterval(timer: TClockTimer): void;
}

/** performance.now() and Node's timers, every timer unref()'d. */
export const systemClock: IClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout),
  setInterval: (fn, ms) => setInterval(fn, ms).unref(),
  clearInterval: (timer) => clearInterval(timer as NodeJS.Timeout),
};
