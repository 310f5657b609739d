// The latency recorder and the dead-letter ring on their own: percentiles of known distributions
// within the histogram's bucket width, bounded keys, memory flat over 1,000,000 samples, the two
// windows under a hand-driven clock, and the ring's order and bound.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { DeadLetters, LatencyRecorder, Observer, defaults, type IDeadLetter } from '../../ts/internal.js';

const T = { timeout: 60_000 };
/** Log-linear buckets, 16 per doubling: each about 4.4 % wide; a percentile reports its bucket's upper bound. */
const BUCKET_WIDTH = 2 ** (1 / 16);

function getGc(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

function heapAfterGc(gc: () => void): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

/** Replaces performance.now for the duration of a test (the recorder's only clock). */
function manualNow(t: { after(fn: () => void): void }, start = 1_000_000): { advance(ms: number): void; readonly now: number } {
  let now = start;
  (performance as { now: () => number }).now = () => now;
  t.after(() => {
    delete (performance as { now?: unknown }).now;
  });
  return {
    advance: (ms) => {
      now += ms;
    },
    get now() {
      return now;
    },
  };
}

/** Asserts `actual` is the bucket upper bound of `exact`: at least it, at most one bucket width above. */
function nearAbove(actual: number, exact: number, what: string): void {
  assert.ok(actual >= exact * 0.999 && actual <= exact * BUCKET_WIDTH * 1.001, `${what}: ${actual} is not within one bucket above ${exact}`);
}

describe('LatencyRecorder', () => {
  test('an empty recorder has no keys; one sample is reported exactly', T, () => {
    const recorder = new LatencyRecorder();
    assert.deepEqual(recorder.summaries(), {});
    recorder.record('one', 12.345);
    assert.deepEqual(recorder.summaries(), { one: { count: 1, p50: 12.345, p90: 12.345, p99: 12.345, max: 12.345 } });
  });

  test('percentiles of 1..1000 ms are within one bucket (about 4 %) of the exact values, ordered, max exact', T, () => {
    const recorder = new LatencyRecorder();
    // Shuffled, so order cannot matter.
    const values = Array.from({ length: 1_000 }, (_, i) => i + 1).sort(() => Math.random() - 0.5);
    for (const v of values) recorder.record('uniform', v);
    const s = recorder.summaries().uniform;
    assert.equal(s.count, 1_000);
    nearAbove(s.p50, 500, 'p50');
    nearAbove(s.p90, 900, 'p90');
    nearAbove(s.p99, 990, 'p99');
    assert.equal(s.max, 1_000);
    assert.ok(s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.max, JSON.stringify(s));
  });

  test('a long tail shows in p99 and max, not in p50', T, () => {
    const recorder = new LatencyRecorder();
    for (let i = 0; i < 980; i++) recorder.record('tail', 2);
    for (let i = 0; i < 20; i++) recorder.record('tail', 250);
    const s = recorder.summaries().tail;
    nearAbove(s.p50, 2, 'p50');
    nearAbove(s.p90, 2, 'p90');
    nearAbove(s.p99, 250, 'p99');
    assert.equal(s.max, 250);
  });

  test('sub-microsecond, zero and very large samples land in the end buckets without breaking the order', T, () => {
    const recorder = new LatencyRecorder();
    recorder.record('edge', 0);
    recorder.record('edge', 0.0001);
    recorder.record('edge', 5e9);
    const s = recorder.summaries().edge;
    assert.equal(s.count, 3);
    assert.equal(s.max, 5e9);
    assert.ok(s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.max, JSON.stringify(s));
    assert.ok(s.p50 <= 0.0011, `p50 of [0, 0.0001, 5e9] is in the first bucket: ${s.p50}`);
  });

  test(`keys are bounded: past LATENCY_MAX_KEYS (${defaults.LATENCY_MAX_KEYS}) new keys count under '(other)'`, T, () => {
    const recorder = new LatencyRecorder();
    const max = defaults.LATENCY_MAX_KEYS;
    for (let k = 0; k < max + 44; k++) recorder.record(`type${k}`, 1);
    recorder.record('type0', 1); // a known key still records under itself
    const summaries = recorder.summaries();
    assert.equal(Object.keys(summaries).length, max + 1);
    assert.equal(summaries['(other)'].count, 44);
    assert.equal(summaries.type0.count, 2);
    assert.equal(summaries[`type${max - 1}`].count, 1);
    assert.equal(summaries[`type${max}`], undefined);
  });

  test(`sampled keys (message handlers): the first call and then one in ${defaults.LATENCY_SAMPLE_EVERY} is timed, every call is counted`, T, () => {
    const recorder = new LatencyRecorder();
    let timed = 0;
    for (let i = 0; i < 1_000; i++) {
      if (recorder.shouldTime('tick')) {
        timed++;
        recorder.record('tick', timed % 2 === 0 ? 1 : 3);
      } else {
        recorder.skip('tick');
      }
    }
    // The first call, then every LATENCY_SAMPLE_EVERY-th of the 999 after it.
    assert.equal(timed, 1 + Math.floor(999 / defaults.LATENCY_SAMPLE_EVERY), 'timed calls');
    const summary = recorder.summaries().tick;
    assert.equal(summary.count, 1_000, 'every call counted');
    assert.ok(summary.p50 >= 0.9 && summary.p50 <= 3.2 && summary.p99 >= 2.9 && summary.max === 3, `percentiles from the timed calls: ${JSON.stringify(summary)}`);
    // Another key interleaved does not disturb the first one's sampling.
    assert.equal(recorder.shouldTime('other'), true, 'a new key is timed at once');
  });

  test('memory stays flat over 1,000,000 samples (heap after GC)', T, (t) => {
    const gc = getGc();
    const recorder = new LatencyRecorder();
    const keys = ['a', 'b', 'c', 'd'];
    for (let i = 0; i < 10_000; i++) recorder.record(keys[i & 3], (i % 997) / 10); // every histogram exists
    const before = heapAfterGc(gc);
    for (let i = 0; i < 1_000_000; i++) recorder.record(keys[i & 3], ((i * 7919) % 100_000) / 100);
    const after = heapAfterGc(gc);
    const s = recorder.summaries();
    assert.deepEqual(Object.keys(s).sort(), keys);
    assert.equal(s.a.count + s.b.count + s.c.count + s.d.count, 1_010_000);
    const growth = after - before;
    assert.ok(growth < 256 * 1024, `heap grew by ${growth} bytes over 1,000,000 samples`);
    t.diagnostic(`heap growth over 1,000,000 samples: ${growth} bytes`);
  });

  test('a summary covers the current and the previous window; older samples are gone', T, (t) => {
    const clock = manualNow(t);
    const recorder = new LatencyRecorder();
    const window = defaults.LATENCY_WINDOW_MS;
    recorder.record('w', 100);
    clock.advance(window + 1);
    assert.equal(recorder.summaries().w.count, 1, 'the previous window still counts');
    recorder.record('w', 1);
    recorder.record('w', 1);
    const both = recorder.summaries().w;
    assert.deepEqual({ ...both, p50: 0 }, { count: 3, p50: 0, p90: 100, p99: 100, max: 100 });
    nearAbove(both.p50, 1, 'p50 over both windows');
    clock.advance(window + 1);
    // The window with the 100 ms sample is two windows old now.
    assert.deepEqual(recorder.summaries().w, { count: 2, p50: 1, p90: 1, p99: 1, max: 1 });
    clock.advance(window + 1);
    clock.advance(window + 1);
    assert.deepEqual(recorder.summaries(), {}, 'a key with nothing in either window is dropped');
  });

  test(
    'samples of a hot key recorded just now count, even when nobody asked for a summary for several windows',
    T,
    (t) => {
      const clock = manualNow(t);
      const recorder = new LatencyRecorder();
      const window = defaults.LATENCY_WINDOW_MS;
      // Steady traffic on one key for five windows, one sample per second; nobody reads the stats.
      for (let s = 0; s < (5 * window) / 1_000; s++) {
        recorder.record('hot', 3);
        clock.advance(1_000);
      }
      const summary = recorder.summaries().hot;
      assert.ok(summary !== undefined, 'the hot key has a summary');
      // The last one to two windows: between 60 and 120 samples.
      assert.ok(summary.count >= window / 1_000 && summary.count <= (2 * window) / 1_000, `count ${summary.count}`);
    },
  );
});

describe('DeadLetters', () => {
  const letter = (n: number): IDeadLetter => ({ reason: 'noHandler', type: 't', data: n, code: 'NO_HANDLER', at: n });

  test('keeps the last `capacity`, oldest first, and counts all; wrapping many times keeps the order', T, () => {
    const emitted: number[] = [];
    const ring = new DeadLetters(3, (l) => emitted.push(l.data as number));
    assert.deepEqual(ring.list(), []);
    ring.record(letter(1));
    ring.record(letter(2));
    assert.deepEqual(ring.list().map((l) => l.data), [1, 2]);
    for (let n = 3; n <= 11; n++) ring.record(letter(n));
    assert.deepEqual(ring.list().map((l) => l.data), [9, 10, 11]);
    assert.equal(ring.count, 11);
    assert.deepEqual(emitted, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  });

  test('capacity 0 keeps none and counts all; the default is 1000', T, () => {
    const ring = new DeadLetters(0, () => undefined);
    for (let n = 0; n < 5; n++) ring.record(letter(n));
    assert.deepEqual(ring.list(), []);
    assert.equal(ring.count, 5);
    const byDefault = new DeadLetters(undefined, () => undefined);
    for (let n = 0; n < 1_001; n++) byDefault.record(letter(n));
    assert.equal(byDefault.list().length, 1_000);
    assert.equal(byDefault.list()[0].data, 1);
  });

  test('a throwing listener is contained: the letter is kept and counted', T, () => {
    const ring = new DeadLetters(2, () => {
      throw new Error('listener bug');
    });
    assert.doesNotThrow(() => ring.record(letter(1)));
    assert.equal(ring.count, 1);
    assert.deepEqual(ring.list().map((l) => l.data), [1]);
  });

  test('the Observer counts every letter into metrics.deadLetters and reports latency per side', T, () => {
    const seen: IDeadLetter[] = [];
    const observer = new Observer(1, (l) => seen.push(l));
    observer.deadLetter(letter(1));
    observer.deadLetter(letter(2));
    observer.requests.record('r', 2);
    observer.handlers.record('h', 1);
    const metrics = observer.metrics(7);
    assert.equal(metrics.deadLetters, 2);
    assert.equal(metrics.requestsInFlight, 7);
    assert.deepEqual(Object.keys(metrics.latency.requests), ['r']);
    assert.deepEqual(Object.keys(metrics.latency.handlers), ['h']);
    assert.equal(seen.length, 2);
    assert.deepEqual(observer.deadLetters.list().map((l) => l.data), [2]);
  });
});
