// The pending-request table on its own: correlation ids (wrap-around, never 0, never one in use),
// growth with long-lived entries, one deadline timer for mixed timeouts, abort, rejectAll and
// disarmIfIdle. Time is a ManualClock unless a test says otherwise; no sockets.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import fc from 'fast-check';
import { IpcError, PendingRequests, defaults, systemClock, type IPendingRequest } from '../../ts/internal.js';
import { expectIpcError, withTimeout } from '../helpers/fixtures.js';
import { ManualClock, flushMicrotasks } from '../helpers/manualclock.js';

const T = { timeout: 20_000 };
const MAX_ID = 0xffffffff;
const LONG = 3_600_000;

/** The outcome of a request promise, recorded without unhandled rejections. */
interface IOutcome {
  settled: boolean;
  value?: unknown;
  error?: IpcError;
  /** clock.now() when the rejection handler ran. */
  at?: number;
}

function watch(promise: Promise<unknown>, clock?: ManualClock, log?: string[], name?: string): IOutcome {
  const outcome: IOutcome = { settled: false };
  promise.then(
    (value) => {
      outcome.settled = true;
      outcome.value = value;
    },
    (error: IpcError) => {
      outcome.settled = true;
      outcome.error = error;
      outcome.at = clock?.now();
      if (log && name !== undefined) log.push(name);
    },
  );
  return outcome;
}

/** Allocates an id and registers a request under it. */
function request(pending: PendingRequests, type: string, timeoutMs = LONG, signal?: AbortSignal): { id: number; promise: Promise<unknown> } {
  const id = pending.allocateId();
  return { id, promise: pending.add(id, type, timeoutMs, signal) };
}

describe('correlation ids', () => {
  test('ids start at 1 and count up; after 0xffffffff comes 1, never 0', T, () => {
    assert.equal(new PendingRequests().allocateId(), 1);
    const fresh = new PendingRequests(new ManualClock());
    assert.deepEqual([fresh.allocateId(), fresh.allocateId(), fresh.allocateId()], [1, 2, 3]);

    const clock = new ManualClock();
    const pending = new PendingRequests(clock, MAX_ID - 2);
    const ids: number[] = [];
    for (let i = 0; i < 6; i++) {
      const { id, promise } = request(pending, `r${i}`);
      watch(promise);
      ids.push(id);
    }
    assert.deepEqual(ids, [MAX_ID - 2, MAX_ID - 1, MAX_ID, 1, 2, 3]);
    // The ones from before the wrap are still there and still answerable.
    for (const id of ids) assert.equal(pending.has(id), true, `id ${id} lost`);
    assert.equal(pending.take(MAX_ID)?.type, 'r2');
    assert.equal(pending.take(1)?.type, 'r3');
    assert.equal(pending.size, 4);
  });

  test('across the wrap-around with long-lived requests: never 0, never an id in use, every entry keeps its own id', { timeout: 60_000 }, () => {
    const op = fc.oneof(
      { arbitrary: fc.constant('short' as const), weight: 3 },
      { arbitrary: fc.constant('long' as const), weight: 3 },
      { arbitrary: fc.nat(), weight: 2 }, // answer one of the live requests
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_500 }), fc.array(op, { minLength: 3_000, maxLength: 4_000 }), (beforeWrap, ops) => {
        const firstId = MAX_ID - beforeWrap + 1;
        const pending = new PendingRequests(new ManualClock(), firstId);
        const live = new Map<number, string>();
        let wrapped = false;
        let n = 0;
        for (const next of ops) {
          if (typeof next === 'number') {
            if (live.size === 0) continue;
            const ids = [...live.keys()];
            const id = ids[next % ids.length];
            const entry = pending.take(id);
            assert.equal(entry?.id, id);
            assert.equal(entry?.type, live.get(id));
            live.delete(id);
            continue;
          }
          const type = `${next}-${n++}`;
          const { id, promise } = request(pending, type);
          watch(promise);
          assert.ok(Number.isInteger(id) && id >= 1 && id <= MAX_ID, `id ${id} out of range`);
          assert.ok(!live.has(id), `id ${id} handed out while still in use`);
          if (id < firstId) wrapped = true;
          if (next === 'long') live.set(id, type);
          else assert.equal(pending.take(id)?.type, type);
        }
        assert.ok(wrapped, 'the run never crossed 0xffffffff');
        assert.equal(pending.size, live.size);
        for (const [id, type] of live) {
          assert.equal(pending.has(id), true, `long-lived ${id} lost`);
          assert.equal(pending.take(id)?.type, type);
        }
        assert.equal(pending.size, 0);
      }),
      { numRuns: 40 },
    );
  });

  test('the table grows past its initial size with long-lived requests among many short ones; every entry stays reachable', T, async () => {
    const pending = new PendingRequests(new ManualClock());
    const long = new Map<number, { type: string; outcome: IOutcome }>();
    for (let i = 0; i < 60_000; i++) {
      const { id, promise } = request(pending, `req-${i}`);
      const outcome = watch(promise);
      // every sixth request is left pending, the others are answered at once
      if (i % 6 === 0) long.set(id, { type: `req-${i}`, outcome });
      else pending.take(id)!.resolve(i);
    }
    assert.equal(long.size, 10_000);
    assert.equal(pending.size, long.size);
    for (const [id, { type }] of long) {
      assert.equal(pending.has(id), true, `request ${id} lost while the table grew`);
      const entry = pending.take(id);
      assert.equal(entry?.type, type);
      entry!.resolve(type);
    }
    assert.equal(pending.size, 0);
    await flushMicrotasks();
    for (const { type, outcome } of long.values()) assert.equal(outcome.value, type, 'a response reached the wrong request');
    // ids taken meanwhile are gone for good
    for (const id of [...long.keys()].slice(0, 100)) assert.equal(pending.take(id), undefined);
  });

  test('take and has only match the exact id, not another id in the same slot', T, () => {
    const pending = new PendingRequests(new ManualClock());
    const { id, promise } = request(pending, 'only');
    watch(promise);
    for (const other of [id + 1024, id + 2048, id + 0x10000, 0]) {
      assert.equal(pending.has(other), false);
      assert.equal(pending.take(other), undefined);
    }
    assert.equal(pending.size, 1);
    assert.equal(pending.take(id)?.type, 'only');
    assert.equal(pending.take(id), undefined, 'a second take of the same id');
    assert.equal(pending.size, 0);
  });
});

describe('deadlines', () => {
  test('mixed timeouts expire at their own deadline, in deadline order, with TIMEOUT', T, async () => {
    const clock = new ManualClock();
    const pending = new PendingRequests(clock);
    const order: string[] = [];
    const outcomes = new Map<string, IOutcome>();
    // [name, added at (ms), timeout (ms)] -> deadline
    const plan: Array<[string, number, number]> = [
      ['a', 0, 300], // 300
      ['b', 0, 100], // 100
      ['h', 0, 121], // 121: 1 ms after d, so expiring d must not take h along
      ['c', 10, 200], // 210
      ['d', 20, 100], // 120
      ['e', 30, 50], // 80
      ['f', 40, 300], // 340
      ['g', 60, 160], // 220
    ];
    for (const [name, at, timeoutMs] of plan) {
      clock.advance(at - clock.now());
      const { promise } = request(pending, name, timeoutMs);
      outcomes.set(name, watch(promise, clock, order, name));
    }
    // 1 ms steps, letting rejections run after each, so each is seen at the time it happened
    while (clock.now() < 400) {
      clock.advance(1);
      await Promise.resolve();
      await Promise.resolve();
    }
    await flushMicrotasks();
    assert.deepEqual(order, ['e', 'b', 'd', 'h', 'c', 'g', 'a', 'f']);
    for (const [name, at, timeoutMs] of plan) {
      const outcome = outcomes.get(name)!;
      assert.ok(outcome.error instanceof IpcError);
      assert.equal(outcome.error.code, 'TIMEOUT');
      assert.match(outcome.error.message, new RegExp(`"${name}" timed out after ${timeoutMs} ms`));
      assert.equal(outcome.at, at + timeoutMs, `${name} expired at ${outcome.at}, its deadline was ${at + timeoutMs}`);
    }
    assert.equal(pending.size, 0);
    assert.equal(clock.pendingTimers, 0, 'the timer stays off once nothing is pending');
  });

  test('one timer for all: it is armed at the earliest deadline and re-armed for the next', T, () => {
    const clock = new ManualClock();
    const pending = new PendingRequests(clock);
    watch(request(pending, 'slow', 500).promise);
    assert.equal(clock.pendingTimers, 1);
    assert.equal(clock.nextDue, 500);
    watch(request(pending, 'slower', 800).promise);
    assert.equal(clock.pendingTimers, 1, 'a later deadline does not add a timer');
    assert.equal(clock.nextDue, 500);
    watch(request(pending, 'fast', 100).promise);
    assert.equal(clock.pendingTimers, 1, 'an earlier deadline replaces the timer');
    assert.equal(clock.nextDue, 100);
    clock.advance(100);
    assert.equal(pending.size, 2);
    assert.equal(clock.nextDue, 500);
    clock.advance(400);
    assert.equal(pending.size, 1);
    assert.equal(clock.nextDue, 800);
  });

  test('a request answered in time does not time out; its deadline passing later does nothing', T, async () => {
    const clock = new ManualClock();
    const pending = new PendingRequests(clock);
    const { id, promise } = request(pending, 'answered', 100);
    const outcome = watch(promise);
    const other = watch(request(pending, 'late', 200).promise);
    clock.advance(50);
    pending.take(id)!.resolve('ok');
    clock.advance(500);
    await flushMicrotasks();
    assert.equal(outcome.value, 'ok');
    assert.equal(outcome.error, undefined);
    assert.equal(other.error?.code, 'TIMEOUT');
  });

  test('timeouts are clamped to Node\'s timer limit (2^31-1 ms), below 0 to 0; Infinity arms no timer and never expires', T, async () => {
    const clock = new ManualClock();
    const pending = new PendingRequests(clock);
    const never = watch(request(pending, 'infinite', Infinity).promise);
    assert.equal(clock.requestedDelays.length, 0, 'no timer for a request without a timeout');
    const huge = request(pending, 'huge', 2 ** 40);
    watch(huge.promise);
    assert.equal(clock.requestedDelays.at(-1), defaults.MAX_TIMER_DELAY_MS);
    assert.equal(pending.take(huge.id)?.timeoutMs, defaults.MAX_TIMER_DELAY_MS);
    const negative = watch(request(pending, 'negative', -5).promise);
    clock.advance(0);
    await flushMicrotasks();
    assert.equal(negative.error?.code, 'TIMEOUT');
    clock.advance(defaults.MAX_TIMER_DELAY_MS * 2);
    await flushMicrotasks();
    assert.equal(never.settled, false, 'Infinity expired');
    assert.equal(pending.size, 1);
  });

  test('with the system clock: small real timeouts expire in deadline order, none before its deadline', T, async () => {
    const pending = new PendingRequests(systemClock);
    const startedAt = performance.now();
    const order: string[] = [];
    const times = new Map<string, number>();
    const all = ([['late', 240], ['early', 30], ['middle', 120]] as const).map(([name, ms]) =>
      pending.add(pending.allocateId(), name, ms).catch((error: IpcError) => {
        order.push(name);
        times.set(name, performance.now() - startedAt);
        assert.equal(error.code, 'TIMEOUT');
      }),
    );
    await withTimeout(Promise.all(all), 5_000, 'real timeouts');
    assert.deepEqual(order, ['early', 'middle', 'late']);
    for (const [name, ms] of [['early', 30], ['middle', 120], ['late', 240]] as const) {
      assert.ok(times.get(name)! >= ms - 1, `${name} expired after ${times.get(name)} ms, before its ${ms} ms`);
    }
    assert.equal(pending.size, 0);
  });

  test('a timer that fires late (blocked event loop) still expires what is due in deadline order', T, async () => {
    const clock = new ManualClock();
    const pending = new PendingRequests(clock);
    const order: string[] = [];
    for (const [name, ms] of [['a300', 300], ['b100', 100], ['c200', 200]] as const) watch(request(pending, name, ms).promise, clock, order, name);
    clock.stall(1_000);
    await flushMicrotasks();
    assert.deepEqual(order, ['b100', 'c200', 'a300']);
  });
});

describe('abort', () => {
  test('an AbortSignal rejects its request with ABORTED (cause: the reason) and leaves the others alone', T, async () => {
    const clock = new ManualClock();
    const pending = new PendingRequests(clock);
    const controller = new AbortController();
    const { id, promise } = request(pending, 'cancel-me', 1_000, controller.signal);
    const other = watch(request(pending, 'keep', 1_000).promise);
    assert.equal(getEventListeners(controller.signal, 'abort').length, 1);
    const reason = new Error('user gave up');
    controller.abort(reason);
    const error = await expectIpcError(promise, 'ABORTED', 1_000);
    assert.equal(error.cause, reason);
    assert.match(error.message, /"cancel-me" was aborted/);
    assert.equal(pending.has(id), false);
    assert.equal(pending.size, 1);
    assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
    clock.advance(2_000);
    await flushMicrotasks();
    assert.equal(other.error?.code, 'TIMEOUT');
  });

  test('the abort listener is removed however the request ends: answered, timed out, rejected by rejectAll', T, async () => {
    const clock = new ManualClock();
    const pending = new PendingRequests(clock);
    const answered = new AbortController();
    const timedOut = new AbortController();
    const dropped = new AbortController();
    const a = request(pending, 'answered', 1_000, answered.signal);
    const t = request(pending, 'timed-out', 100, timedOut.signal);
    const d = request(pending, 'dropped', 1_000, dropped.signal);
    const outcomes = [a, t, d].map((r) => watch(r.promise));
    for (const c of [answered, timedOut, dropped]) assert.equal(getEventListeners(c.signal, 'abort').length, 1);

    pending.take(a.id)!.resolve('done');
    assert.equal(getEventListeners(answered.signal, 'abort').length, 0, 'listener left after a response');
    clock.advance(100);
    assert.equal(getEventListeners(timedOut.signal, 'abort').length, 0, 'listener left after a timeout');
    pending.rejectAll(() => new IpcError('CONNECTION_LOST', 'gone'));
    assert.equal(getEventListeners(dropped.signal, 'abort').length, 0, 'listener left after rejectAll');

    // aborting afterwards changes nothing
    for (const c of [answered, timedOut, dropped]) c.abort();
    await flushMicrotasks();
    assert.equal(outcomes[0].value, 'done');
    assert.equal(outcomes[1].error?.code, 'TIMEOUT');
    assert.equal(outcomes[2].error?.code, 'CONNECTION_LOST');
  });

  test('one signal shared by several requests aborts all of them', T, async () => {
    const pending = new PendingRequests(new ManualClock());
    const controller = new AbortController();
    const promises = [1, 2, 3].map((i) => request(pending, `r${i}`, 1_000, controller.signal).promise);
    controller.abort();
    for (const promise of promises) await expectIpcError(promise, 'ABORTED', 1_000);
    assert.equal(pending.size, 0);
    assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
  });
});

describe('rejectAll', () => {
  test('rejects every pending request in deadline order with the error made for it, stops the timer and leaves nothing', T, async () => {
    const clock = new ManualClock();
    const pending = new PendingRequests(clock);
    const order: string[] = [];
    const outcomes = new Map<string, IOutcome>();
    for (const [name, at, ms] of [['x', 0, 500], ['y', 0, 100], ['z', 50, 100], ['w', 60, 1_000]] as const) {
      clock.advance(at - clock.now());
      outcomes.set(name, watch(request(pending, name, ms).promise, clock, order, name));
    }
    const answered = request(pending, 'answered', 100);
    pending.take(answered.id)!.resolve('ok');
    assert.equal(clock.pendingTimers, 1);
    const seen: IPendingRequest[] = [];
    pending.rejectAll((entry) => {
      seen.push(entry);
      return new IpcError('CONNECTION_LOST', `lost ${entry.type}`);
    });
    // deadlines: y 100, z 150, x 500, w 1060
    assert.deepEqual(seen.map((entry) => entry.type), ['y', 'z', 'x', 'w']);
    assert.ok(seen.every((entry) => entry.settled));
    assert.equal(pending.size, 0);
    assert.equal(clock.pendingTimers, 0, 'the deadline timer still runs after rejectAll');
    for (const entry of seen) assert.equal(pending.has(entry.id), false);
    await flushMicrotasks();
    assert.deepEqual(order, ['y', 'z', 'x', 'w']);
    for (const [name, outcome] of outcomes) {
      assert.equal(outcome.error?.code, 'CONNECTION_LOST');
      assert.equal(outcome.error?.message, `lost ${name}`);
    }
    // A response arriving late finds nothing; time passing finds nothing either.
    for (const entry of seen) assert.equal(pending.take(entry.id), undefined);
    clock.advance(5_000);
    await flushMicrotasks();
    assert.deepEqual(order, ['y', 'z', 'x', 'w']);
  });

  test('after rejectAll the table works as new: a request arms the timer again and times out at its deadline', T, async () => {
    const clock = new ManualClock();
    const pending = new PendingRequests(clock);
    watch(request(pending, 'first', 50).promise);
    pending.rejectAll(() => new IpcError('CONNECTION_LOST', 'gone'));
    clock.advance(10);
    // a later deadline than the one the old timer was armed for
    const next = watch(request(pending, 'next', 200).promise, clock);
    assert.equal(clock.pendingTimers, 1);
    clock.advance(199);
    await flushMicrotasks();
    assert.equal(next.settled, false);
    clock.advance(1);
    await flushMicrotasks();
    assert.equal(next.error?.code, 'TIMEOUT');
    assert.equal(next.at, 210);
  });

  test('rejectAll on an empty table is harmless', T, () => {
    const clock = new ManualClock();
    const pending = new PendingRequests(clock);
    let calls = 0;
    pending.rejectAll(() => {
      calls++;
      return new IpcError('CONNECTION_LOST', 'x');
    });
    assert.equal(calls, 0);
    assert.equal(clock.pendingTimers, 0);
  });
});

describe('disarmIfIdle', () => {
  test('stops the timer when nothing is pending', T, () => {
    const clock = new ManualClock();
    const pending = new PendingRequests(clock);
    const { id, promise } = request(pending, 'answered', 1_000);
    watch(promise);
    pending.take(id)!.resolve('ok');
    // by design the timer is not reset per response: it is still armed for the old deadline
    assert.equal(clock.pendingTimers, 1);
    pending.disarmIfIdle();
    assert.equal(clock.pendingTimers, 0);
  });

  test('keeps the timer while requests are pending, and they still time out', T, async () => {
    const clock = new ManualClock();
    const pending = new PendingRequests(clock);
    const a = request(pending, 'answered', 100);
    const outcome = watch(request(pending, 'waiting', 300).promise, clock);
    watch(a.promise);
    pending.take(a.id)!.resolve('ok');
    pending.disarmIfIdle();
    assert.equal(clock.pendingTimers, 1, 'disarmed while a request was pending');
    clock.advance(300);
    await flushMicrotasks();
    assert.equal(outcome.error?.code, 'TIMEOUT');
    assert.equal(outcome.at, 300);
  });

  test('after disarmIfIdle a new request is armed again', T, async () => {
    const clock = new ManualClock();
    const pending = new PendingRequests(clock);
    const a = request(pending, 'a', 50);
    watch(a.promise);
    pending.take(a.id);
    pending.disarmIfIdle();
    const later = watch(request(pending, 'later', 100).promise);
    assert.equal(clock.pendingTimers, 1);
    clock.advance(100);
    await flushMicrotasks();
    assert.equal(later.error?.code, 'TIMEOUT');
  });
});
