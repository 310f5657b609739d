import { LATENCY_MAX_KEYS, LATENCY_SAMPLE_EVERY, LATENCY_WINDOW_MS } from '../../smartipc.defaults.js';
import type { ILatencySummary } from '../../interfaces/observability.js';

/**
 * Log-linear buckets from 1 us to about 10^6 ms, 16 per doubling (each about 4 % wide): a fixed
 * 480-bucket histogram per key, so memory does not grow with traffic. Two windows are kept: the
 * current one and the previous one; a summary merges both (the last 1-2 windows).
 */
const SUB_BUCKETS = 16;
const DOUBLINGS = 30;
const BUCKETS = SUB_BUCKETS * DOUBLINGS;
const MIN_MS = 0.001;

function bucketOf(ms: number): number {
  if (!(ms > MIN_MS)) return 0;
  const index = Math.floor(Math.log2(ms / MIN_MS) * SUB_BUCKETS);
  return index >= BUCKETS ? BUCKETS - 1 : index;
}

function upperBoundOf(bucket: number): number {
  return MIN_MS * 2 ** ((bucket + 1) / SUB_BUCKETS);
}

class Histogram {
  public current = new Uint32Array(BUCKETS);
  public previous = new Uint32Array(BUCKETS);
  public currentCount = 0;
  public previousCount = 0;
  public currentMax = 0;
  public previousMax = 0;

  /** Calls of this key that were counted but not timed since the last timed one (sampled message handlers). */
  public untimed = 0;
  public sampleTick = 0;

  /** One timed call; the untimed ones since the last are weighed into its bucket (they are counted, not lost). */
  public record(ms: number): void {
    const weight = 1 + this.untimed;
    this.untimed = 0;
    this.current[bucketOf(ms)] += weight;
    this.currentCount += weight;
    if (ms > this.currentMax) this.currentMax = ms;
  }

  public rotate(): void {
    const emptied = this.previous;
    emptied.fill(0);
    this.previous = this.current;
    this.current = emptied;
    this.previousCount = this.currentCount;
    this.previousMax = this.currentMax;
    this.currentCount = 0;
    this.currentMax = 0;
  }

  public summary(): ILatencySummary {
    const timed = this.currentCount + this.previousCount;
    const count = timed + this.untimed;
    const max = Math.max(this.currentMax, this.previousMax);
    const at = (q: number): number => {
      const rank = Math.ceil(q * timed);
      let seen = 0;
      for (let b = 0; b < BUCKETS; b++) {
        seen += this.current[b] + this.previous[b];
        if (seen >= rank) return round(Math.min(upperBoundOf(b), max));
      }
      return max;
    };
    return timed === 0 ? { count, p50: 0, p90: 0, p99: 0, max: 0 } : { count, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: round(max) };
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** Latency per key (message type or `service.method`), bounded in keys and memory. */
export class LatencyRecorder {
  private readonly histograms = new Map<string, Histogram>();
  private windowStartedAt = performance.now();

  /** `ms` for `key`, measured up to `now` (performance.now()); past LATENCY_MAX_KEYS keys new ones are counted under '(other)'. */
  public record(key: string, ms: number, now: number = performance.now()): void {
    if (now - this.windowStartedAt > LATENCY_WINDOW_MS) this.rotate(now);
    let histogram = this.lookup(key);
    if (histogram === undefined) {
      if (this.histograms.size >= LATENCY_MAX_KEYS) {
        key = '(other)';
        histogram = this.histograms.get(key);
      }
      if (histogram === undefined) {
        histogram = new Histogram();
        this.histograms.set(key, histogram);
      }
    }
    histogram.record(ms);
  }

  /**
   * Whether to time this call of `key` (for handlers of fire-and-forget messages, where two clock
   * readings would cost a fifth of a small message): the first call of a key, then one in
   * LATENCY_SAMPLE_EVERY. The others are passed to `skip`.
   */
  public shouldTime(key: string): boolean {
    const histogram = this.lookup(key);
    return histogram === undefined || (++histogram.sampleTick & (LATENCY_SAMPLE_EVERY - 1)) === 0;
  }

  /** A call of `key` that was not timed: counted with the next timed one. */
  public skip(key: string): void {
    const histogram = this.lookup(key);
    if (histogram !== undefined) histogram.untimed++;
  }

  // A run of messages of one type asks for the same key many times in a row (the frame decoder
  // even hands out the same string): one remembered entry saves the Map lookups.
  private lastKey?: string;
  private lastHistogram?: Histogram;

  private lookup(key: string): Histogram | undefined {
    if (key === this.lastKey) return this.lastHistogram;
    const histogram = this.histograms.get(key);
    if (histogram !== undefined) {
      this.lastKey = key;
      this.lastHistogram = histogram;
    }
    return histogram;
  }

  public summaries(): Record<string, ILatencySummary> {
    const now = performance.now();
    if (now - this.windowStartedAt > LATENCY_WINDOW_MS) this.rotate(now);
    const out: Record<string, ILatencySummary> = {};
    for (const [key, histogram] of this.histograms) out[key] = histogram.summary();
    return out;
  }

  private rotate(now: number): void {
    // Windows that passed with nothing recorded empty both halves.
    const windows = Math.floor((now - this.windowStartedAt) / LATENCY_WINDOW_MS);
    for (const [key, histogram] of this.histograms) {
      histogram.rotate();
      if (windows > 1) histogram.rotate();
      if (histogram.currentCount === 0 && histogram.previousCount === 0 && histogram.untimed === 0) this.histograms.delete(key);
    }
    this.windowStartedAt = now;
    this.lastKey = undefined;
    this.lastHistogram = undefined;
  }
}
