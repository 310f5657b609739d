// Backoff on its own, with an injected random: the exact sequence, the cap, the jitter bounds and
// reset. No timers: Backoff only computes delays.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Backoff, defaults } from '../../ts/internal.js';

const T = { timeout: 20_000 };

/** A random source that returns `values` in turn (and fails the test if asked for more). */
function sequence(...values: number[]): () => number {
  let i = 0;
  return () => {
    assert.ok(i < values.length, 'Backoff asked for more random numbers than one per attempt');
    return values[i++];
  };
}

function take(backoff: Backoff, n: number): number[] {
  return Array.from({ length: n }, () => backoff.next());
}

describe('Backoff', () => {
  test('the constants it is built on: doubling, +-20 % jitter', T, () => {
    assert.equal(defaults.BACKOFF_MULTIPLIER, 2);
    assert.equal(defaults.BACKOFF_JITTER_FRACTION, 0.2);
  });

  test('without jitter (random 0.5) the delays double from initialDelay and stay at maxDelay', T, () => {
    const backoff = new Backoff(100, 1_000, () => 0.5);
    assert.deepEqual(take(backoff, 8), [100, 200, 400, 800, 1_000, 1_000, 1_000, 1_000]);
  });

  test('the exact sequence for given random numbers: base * (1 + 0.2 * (2r - 1)), rounded', T, () => {
    const backoff = new Backoff(100, 1_000, sequence(0, 0.25, 0.75, 0.5, 0, 0.75));
    // bases 100, 200, 400, 800, 1000, 1000
    assert.deepEqual(take(backoff, 6), [80, 180, 440, 800, 800, 1_000]);
  });

  test('the cap holds after jitter too: at maxDelay a delay is spread downwards only', T, () => {
    const nearlyOne = 1 - Number.EPSILON;
    const backoff = new Backoff(100, 1_000, () => nearlyOne);
    assert.deepEqual(take(backoff, 6), [120, 240, 480, 960, 1_000, 1_000]);
    const low = new Backoff(100, 1_000, () => 0);
    assert.deepEqual(take(low, 6), [80, 160, 320, 640, 800, 800]);
  });

  test('maxDelay below initialDelay caps the very first delay', T, () => {
    assert.deepEqual(take(new Backoff(500, 200, () => 0.5), 3), [200, 200, 200]);
  });

  test('attempts counts next() calls; reset() starts the sequence over', T, () => {
    const backoff = new Backoff(50, 400, () => 0.5);
    assert.equal(backoff.attempts, 0);
    assert.deepEqual(take(backoff, 4), [50, 100, 200, 400]);
    assert.equal(backoff.attempts, 4);
    backoff.reset();
    assert.equal(backoff.attempts, 0);
    assert.deepEqual(take(backoff, 3), [50, 100, 200]);
    assert.equal(backoff.attempts, 3);
  });

  test('jitter bounds: every delay is an integer within base +-20 %, never above maxDelay, never below 0', T, () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10_000 }),
        fc.integer({ min: 0, max: 100_000 }),
        fc.array(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), { minLength: 1, maxLength: 40 }),
        (initialDelay, maxDelay, randoms) => {
          const backoff = new Backoff(initialDelay, maxDelay, sequence(...randoms));
          randoms.forEach((_, attempt) => {
            const delay = backoff.next();
            const base = Math.min(maxDelay, initialDelay * 2 ** attempt);
            assert.ok(Number.isInteger(delay), `attempt ${attempt}: ${delay} is not an integer`);
            assert.ok(delay <= maxDelay, `attempt ${attempt}: ${delay} above maxDelay ${maxDelay}`);
            assert.ok(delay >= Math.floor(base * 0.8), `attempt ${attempt}: ${delay} below ${base} - 20 %`);
            assert.ok(delay <= Math.ceil(base * 1.2), `attempt ${attempt}: ${delay} above ${base} + 20 %`);
          });
        },
      ),
      { numRuns: 300 },
    );
  });

  test('with the default random (Math.random) the delays stay within the bounds', T, () => {
    const backoff = new Backoff(100, 1_000);
    const bases = [100, 200, 400, 800, 1_000, 1_000, 1_000];
    for (const base of bases) {
      const delay = backoff.next();
      assert.ok(delay >= base * 0.8 && delay <= Math.min(1_000, base * 1.2), `${delay} outside ${base} +-20 %`);
    }
  });

  test('a zero initialDelay retries at once, even after a thousand attempts', T, () => {
    const backoff = new Backoff(0, 100, () => 0.5);
    assert.deepEqual(take(backoff, 1_000), new Array(1_000).fill(0));
  });

  test(
    'the delay stays a finite number however many attempts (reconnect.maxAttempts defaults to Infinity)',
    T,
    () => {
      for (const initialDelay of [0, 1, 100]) {
        const backoff = new Backoff(initialDelay, 5_000, () => 0.5);
        const delays = take(backoff, 1_100);
        const bad = delays.findIndex((delay) => !Number.isFinite(delay));
        assert.equal(bad, -1, `initialDelay ${initialDelay}: attempt ${bad + 1} gave ${delays[bad]}`);
      }
    },
  );
});
