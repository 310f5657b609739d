import { BACKOFF_JITTER_FRACTION, BACKOFF_MULTIPLIER } from '../smartipc.defaults.js';

const MAX_EXPONENT = 64;

/** Exponential backoff with jitter: initial, initial*2, ... capped at max, each spread by +-20%. */
export class Backoff {
  private attempt = 0;

  constructor(private readonly initialDelayMs: number, private readonly maxDelayMs: number, private readonly random: () => number = Math.random) {}

  public get attempts(): number {
    return this.attempt;
  }

  /** The delay before the next attempt, and counts it. */
  public next(): number {
    // The exponent is capped: past the cap the delay is maxDelay anyway, and 0 * 2 ** 1025 is NaN.
    const base = Math.min(this.maxDelayMs, this.initialDelayMs * BACKOFF_MULTIPLIER ** Math.min(this.attempt, MAX_EXPONENT));
    this.attempt++;
    const jitter = base * BACKOFF_JITTER_FRACTION * (this.random() * 2 - 1);
    return Math.max(0, Math.round(Math.min(this.maxDelayMs, base + jitter)));
  }

  public reset(): void {
    this.attempt = 0;
  }
}
