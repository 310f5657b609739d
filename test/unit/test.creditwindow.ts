// Stream flow control on its own: SendCredit (the sender's side) and ReceiveWindow (the
// receiver's side), alone and together in a simulated sender/receiver loop. No sockets.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ReceiveWindow, SendCredit } from '../../ts/internal.js';
import { flushMicrotasks } from '../helpers/manualclock.js';

const T = { timeout: 20_000 };

/** Whether `promise` has settled after queued reactions ran. */
async function isSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void promise.then(() => (settled = true));
  await flushMicrotasks();
  return settled;
}

describe('SendCredit', () => {
  test('starts without credit; a grant gives credit and wakes the waiting sender', T, async () => {
    const credit = new SendCredit();
    assert.equal(credit.hasCredit, false);
    const waiting = credit.whenAvailable();
    assert.equal(await isSettled(waiting), false, 'woke without a grant');
    credit.grant(100);
    assert.equal(credit.hasCredit, true);
    assert.equal(await isSettled(waiting), true);
    assert.equal(await isSettled(credit.whenAvailable()), true, 'with credit whenAvailable resolves at once');
  });

  test('spending exactly the credit leaves none; the last chunk may overdraw it', T, async () => {
    const credit = new SendCredit();
    credit.grant(100);
    credit.spend(60);
    assert.equal(credit.hasCredit, true);
    credit.spend(40);
    assert.equal(credit.hasCredit, false, 'credit left after spending all of it');
    credit.grant(100);
    credit.spend(60);
    credit.spend(64); // the chunk that overdraws: 40 left, 64 sent
    assert.equal(credit.hasCredit, false);
    assert.equal(await isSettled(credit.whenAvailable()), false);
  });

  test('after an overdraw a grant must cover the debt before the sender wakes', T, async () => {
    const credit = new SendCredit();
    credit.grant(100);
    credit.spend(150); // 50 in debt
    const waiting = credit.whenAvailable();
    credit.grant(30);
    assert.equal(credit.hasCredit, false);
    assert.equal(await isSettled(waiting), false, 'woke while still in debt');
    credit.grant(20); // exactly even: still nothing to send with
    assert.equal(credit.hasCredit, false);
    assert.equal(await isSettled(waiting), false, 'woke with zero credit');
    credit.grant(1);
    assert.equal(credit.hasCredit, true);
    assert.equal(await isSettled(waiting), true);
  });
});

describe('ReceiveWindow', () => {
  test('the first grant is the whole window; nothing is granted twice for the same room', T, () => {
    const window = new ReceiveWindow(1_000);
    assert.equal(window.size, 1_000);
    assert.equal(window.grantFor(0), 1_000);
    assert.equal(window.grantFor(0), 0, 'granted again while the first grant is unused');
  });

  test('accept() takes chunks within the credit, the last one may overdraw it, the next is refused', T, () => {
    const window = new ReceiveWindow(1_000);
    assert.equal(window.accept(1), false, 'a chunk before any grant');
    window.grantFor(0);
    assert.equal(window.accept(400), true);
    assert.equal(window.accept(400), true);
    assert.equal(window.accept(400), true, 'the chunk that overdraws (800 of 1000 used) is allowed');
    assert.equal(window.accept(1), false, 'a chunk beyond the credit');
    assert.equal(window.accept(1), false);
  });

  test('a refused chunk is not counted: the next grant restores exactly the window', T, () => {
    const window = new ReceiveWindow(1_000);
    window.grantFor(0);
    assert.equal(window.accept(1_000), true);
    assert.equal(window.accept(500), false);
    // the reader consumed everything: in flight 0, so the whole window again
    assert.equal(window.grantFor(0), 1_000);
    assert.equal(window.accept(999), true);
    assert.equal(window.accept(1), true);
    assert.equal(window.accept(1), false);
  });

  test('grants are batched: nothing until a quarter window is free while the sender still has credit', T, () => {
    const window = new ReceiveWindow(1_000);
    window.grantFor(0);
    window.accept(100);
    assert.equal(window.grantFor(0), 0, 'a grant of 100 (< a quarter) while 900 is still in flight');
    window.accept(149);
    assert.equal(window.grantFor(0), 0, 'a grant of 249 (< a quarter) while 751 is still in flight');
    window.accept(1);
    assert.equal(window.grantFor(0), 250, 'a quarter window free');
    assert.equal(window.grantFor(0), 0);
  });

  test('unread bytes count against the window: the grant is what is left after them', T, () => {
    const window = new ReceiveWindow(1_000);
    window.grantFor(0);
    window.accept(600);
    // 600 received, the reader has not taken any: 400 in flight + 600 buffered = full
    assert.equal(window.grantFor(600), 0);
    // the reader took 400: 200 buffered, 400 in flight -> 400 free
    assert.equal(window.grantFor(200), 400);
    assert.equal(window.accept(800), true);
    assert.equal(window.accept(1), false);
  });

  test('a sender with no credit left is never left stalled: a small grant goes out at once', T, () => {
    const window = new ReceiveWindow(1_000);
    window.grantFor(0);
    window.accept(1_000); // all credit used, nothing in flight
    assert.equal(window.grantFor(900), 100, 'the sender has nothing in flight: a grant below a quarter must still go');
    window.accept(100);
    assert.equal(window.grantFor(1_000), 0, 'buffer full: no room to grant');
  });

  test('after an overdraw the next grant pays the debt first, so the sender is back to exactly one window', T, () => {
    const window = new ReceiveWindow(1_000);
    const credit = new SendCredit();
    credit.grant(window.grantFor(0));
    for (const chunk of [900, 300]) {
      assert.equal(credit.hasCredit, true);
      credit.spend(chunk);
      assert.equal(window.accept(chunk), true);
    }
    // 200 over; the reader has taken nothing yet
    assert.equal(window.grantFor(1_200), 0);
    const grant = window.grantFor(0);
    assert.equal(grant, 1_200, 'the reader took all 1200: 200 debt + a full window');
    credit.grant(grant);
    // the sender now has exactly 1000 to spend: 999, then 1 (the last within credit), then nothing
    assert.equal(window.accept(999), true);
    credit.spend(999);
    assert.equal(credit.hasCredit, true);
    assert.equal(window.accept(1), true);
    credit.spend(1);
    assert.equal(credit.hasCredit, false);
    assert.equal(window.accept(1), false);
  });
});

describe('SendCredit and ReceiveWindow together', () => {
  test('a sender that honours its credit is never refused, the unread + in flight bytes stay within window + one chunk, and everything arrives', { timeout: 60_000 }, () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 64, max: 10_000 }), // window
        fc.integer({ min: 1, max: 4_000 }), // largest chunk
        fc.array(fc.record({ chunk: fc.integer({ min: 1, max: 1_000_000 }), read: fc.integer({ min: 0, max: 1_000_000 }) }), { minLength: 1, maxLength: 200 }),
        (size, maxChunk, steps) => {
          const window = new ReceiveWindow(size);
          const credit = new SendCredit();
          credit.grant(window.grantFor(0));
          const total = steps.reduce((sum, s) => sum + 1 + (s.chunk % maxChunk), 0);
          let sent = 0;
          let buffered = 0;
          let consumed = 0;
          const flying: number[] = [];
          for (let round = 0; consumed < total; round++) {
            assert.ok(round < 4 * total + 1_000, `no progress: sent ${sent}/${total}, buffered ${buffered}, credit ${credit.hasCredit}`);
            const step = steps[round % steps.length];
            // the sender sends while it has credit
            while (credit.hasCredit && sent < total) {
              const chunk = Math.min(1 + (step.chunk % maxChunk), total - sent);
              credit.spend(chunk);
              sent += chunk;
              flying.push(chunk);
            }
            // what is in flight arrives, chunk by chunk
            for (const chunk of flying.splice(0)) {
              assert.equal(window.accept(chunk), true, 'a chunk within the credit was refused');
              buffered += chunk;
            }
            assert.ok(buffered < size + maxChunk, `${buffered} bytes unread exceed the window ${size} + one chunk ${maxChunk}`);
            // the reader takes some (all of it once the sender is done)
            const read = sent === total ? buffered : Math.min(buffered, 1 + (step.read % size));
            buffered -= read;
            consumed += read;
            const grant = window.grantFor(buffered);
            assert.ok(grant >= 0);
            if (grant > 0) credit.grant(grant);
          }
          assert.equal(consumed, total);
        },
      ),
      { numRuns: 200 },
    );
  });
});
