// The heartbeat on its own, against a fake host (IHeartbeatHost): pings at the interval, the initial
// grace period, timeout detection after silence, heardFromPeer resetting it, stop(). Time is a
// ManualClock (one test uses the system clock); no sockets.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Heartbeat, systemClock, type IHeartbeatHost, type IHeartbeatOptions } from '../../ts/internal.js';
import { waitUntil } from '../helpers/fixtures.js';
import { ManualClock } from '../helpers/manualclock.js';

const T = { timeout: 20_000 };

/** A host that records what the heartbeat asked of it, with the clock's time. */
class FakeHost implements IHeartbeatHost {
  public readonly pings: number[] = [];
  public readonly timeouts: Array<{ at: number; silentForMs: number }> = [];
  constructor(private readonly clock: { now(): number }) {}
  public sendPing(): void {
    this.pings.push(this.clock.now());
  }
  public onHeartbeatTimeout(silentForMs: number): void {
    this.timeouts.push({ at: this.clock.now(), silentForMs });
  }
}

function setup(options: IHeartbeatOptions) {
  const clock = new ManualClock();
  const host = new FakeHost(clock);
  const heartbeat = new Heartbeat(host, options, clock);
  return { clock, host, heartbeat };
}

/**
 * Schedules a frame from the peer every `everyMs` up to `untilMs`. Call before `start()`: a frame
 * then arrives just before a check due at the same time (timers due together fire in creation order).
 */
function peerSendsEvery(clock: ManualClock, heartbeat: Heartbeat, everyMs: number, untilMs: number): void {
  for (let at = everyMs; at <= untilMs; at += everyMs) clock.setTimeout(() => heartbeat.heardFromPeer(), at);
}

/** Advances `ms` in `step` ms steps, the peer sending a frame after each step (after a check due then). */
function talk(clock: ManualClock, heartbeat: Heartbeat, ms: number, step: number): void {
  for (let elapsed = 0; elapsed < ms; elapsed += step) {
    clock.advance(Math.min(step, ms - elapsed));
    heartbeat.heardFromPeer();
  }
}

describe('pings', () => {
  test('a ping goes out every interval, whether or not the peer talks', T, () => {
    const { clock, host, heartbeat } = setup({ intervalMs: 100, timeoutMs: 1_000, initialGraceMs: 0 });
    heartbeat.start();
    talk(clock, heartbeat, 1_000, 30);
    assert.deepEqual(host.pings, [100, 200, 300, 400, 500, 600, 700, 800, 900, 1_000]);
    assert.equal(host.timeouts.length, 0);
  });

  test('with a timeout shorter than eight intervals it checks more often, yet pings only once per interval', T, () => {
    // checks every timeout/8 = 50 ms; pings every 300 ms
    const { clock, host, heartbeat } = setup({ intervalMs: 300, timeoutMs: 400, initialGraceMs: 0 });
    clock.advance(1_000); // the interval counts from start(), not from the clock's zero
    heartbeat.start();
    assert.equal(clock.requestedDelays.at(-1), 50);
    talk(clock, heartbeat, 1_200, 50);
    assert.deepEqual(host.pings, [1_300, 1_600, 1_900, 2_200]);
    assert.equal(host.timeouts.length, 0);
  });

  test('no ping before start(), none after stop(), and stop() leaves no timer behind', T, () => {
    const { clock, host, heartbeat } = setup({ intervalMs: 100, timeoutMs: 400, initialGraceMs: 0 });
    clock.advance(1_000);
    assert.deepEqual(host.pings, []);
    heartbeat.start();
    talk(clock, heartbeat, 250, 50);
    assert.deepEqual(host.pings, [1_100, 1_200]);
    heartbeat.stop();
    assert.equal(clock.pendingTimers, 0);
    clock.advance(10_000);
    assert.deepEqual(host.pings, [1_100, 1_200]);
    assert.equal(host.timeouts.length, 0, 'a stopped heartbeat never times out');
    heartbeat.stop(); // twice is harmless
  });

  test('start() again restarts: one timer, one ping per interval, silence counted from the restart', T, () => {
    const { clock, host, heartbeat } = setup({ intervalMs: 100, timeoutMs: 400, initialGraceMs: 0 });
    heartbeat.start();
    clock.advance(350);
    heartbeat.start();
    assert.equal(clock.pendingTimers, 1, 'start() twice runs two timers');
    talk(clock, heartbeat, 300, 50);
    assert.deepEqual(host.pings, [100, 200, 300, 450, 550, 650]);
    assert.equal(host.timeouts.length, 0);
  });
});

describe('timeout detection', () => {
  test('silence longer than timeoutMs is a timeout, reported once; the heartbeat then stops itself', T, () => {
    const { clock, host, heartbeat } = setup({ intervalMs: 100, timeoutMs: 400, initialGraceMs: 0 });
    peerSendsEvery(clock, heartbeat, 100, 1_000);
    heartbeat.start();
    clock.advance(1_000); // the peer's last frame comes just before the check at 1000
    const lastFrameAt = clock.now();
    clock.advance(400);
    assert.equal(host.timeouts.length, 0, 'a timeout after exactly timeoutMs of silence, not longer');
    clock.advance(100);
    assert.equal(host.timeouts.length, 1);
    const { at, silentForMs } = host.timeouts[0];
    assert.ok(at - lastFrameAt > 400, 'timed out before timeoutMs of silence');
    assert.ok(at - lastFrameAt <= 400 + 100, `timed out ${at - lastFrameAt} ms after the last frame (timeout 400 + a quarter)`);
    assert.equal(silentForMs, at - lastFrameAt);
    assert.equal(clock.pendingTimers, 0, 'the heartbeat keeps its timer after a timeout');
    const pings = host.pings.length;
    clock.advance(5_000);
    assert.equal(host.timeouts.length, 1, 'a second timeout was reported');
    assert.equal(host.pings.length, pings, 'pings went on after the timeout');
  });

  test('never before timeoutMs of silence and at most two checks (half a timeout) later, wherever the last frame falls between checks', T, () => {
    for (let offset = 0; offset < 100; offset += 7) {
      const { clock, host, heartbeat } = setup({ intervalMs: 100, timeoutMs: 400, initialGraceMs: 0 });
      heartbeat.start();
      talk(clock, heartbeat, 1_000, 100);
      clock.advance(offset);
      heartbeat.heardFromPeer();
      const lastFrameAt = clock.now();
      for (let i = 0; i < 1_000 && host.timeouts.length === 0; i++) clock.advance(1);
      assert.equal(host.timeouts.length, 1, `offset ${offset}: no timeout`);
      const silence = host.timeouts[0].at - lastFrameAt;
      assert.ok(silence > 400, `offset ${offset}: timed out after ${silence} ms of silence`);
      assert.ok(silence <= 400 + 2 * 100, `offset ${offset}: timed out only after ${silence} ms of silence`);
    }
  });

  test(
    'a frame heard just after a check still times out within timeoutMs + a quarter',
    T,
    () => {
      const { clock, host, heartbeat } = setup({ intervalMs: 100, timeoutMs: 400, initialGraceMs: 0 });
      heartbeat.start();
      talk(clock, heartbeat, 1_000, 100);
      clock.advance(1);
      heartbeat.heardFromPeer();
      const lastFrameAt = clock.now();
      clock.advance(1_000);
      assert.equal(host.timeouts.length, 1);
      assert.ok(host.timeouts[0].at - lastFrameAt <= 500, `timed out ${host.timeouts[0].at - lastFrameAt} ms after the last frame`);
    },
  );

  test('heardFromPeer resets the silence: a peer that talks just often enough never times out', T, () => {
    const { clock, host, heartbeat } = setup({ intervalMs: 100, timeoutMs: 400, initialGraceMs: 0 });
    heartbeat.start();
    // one frame every 300 ms: the silence never exceeds 300 + one check
    talk(clock, heartbeat, 10_000, 300);
    assert.equal(host.timeouts.length, 0);
    assert.equal(host.pings.length, 100);
    // and once it stops talking, the timeout comes
    clock.advance(600);
    assert.equal(host.timeouts.length, 1);
  });

  test('any frame counts, not only pongs: a single heardFromPeer in the window is enough', T, () => {
    const { clock, host, heartbeat } = setup({ intervalMs: 100, timeoutMs: 400, initialGraceMs: 0 });
    heartbeat.start();
    clock.advance(350);
    heartbeat.heardFromPeer();
    clock.advance(400);
    assert.equal(host.timeouts.length, 0, 'timed out although a frame came 400 ms ago');
    clock.advance(200);
    assert.equal(host.timeouts.length, 1);
  });

  test('with the system clock: a silent peer times out after timeoutMs, a talking one does not', T, async (t) => {
    const options = { intervalMs: 50, timeoutMs: 300, initialGraceMs: 0 };
    const host = new FakeHost(performance);
    const silent = new Heartbeat(host, options, systemClock);
    const talker = new FakeHost(performance);
    const talking = new Heartbeat(talker, options); // the default clock
    const keepTalking = setInterval(() => talking.heardFromPeer(), 20);
    t.after(() => {
      clearInterval(keepTalking);
      silent.stop();
      talking.stop();
    });
    const startedAt = performance.now();
    silent.start();
    talking.start();
    await waitUntil(() => host.timeouts.length > 0, 5_000, 'heartbeat timeout');
    const after = host.timeouts[0].at - startedAt;
    assert.ok(after > 300, `timed out after ${Math.round(after)} ms, before the 300 ms timeout`);
    // Pings go out every interval while the loop runs on time (a loaded machine may delay the ticks: at least one).
    assert.ok(host.pings.length >= 1, `only ${host.pings.length} pings in ${Math.round(after)} ms`);
    assert.deepEqual(talker.timeouts, []);
  });
});

describe('initial grace period', () => {
  test('silence right after start is no timeout until initialGraceMs + timeoutMs; pings go out meanwhile', T, () => {
    const { clock, host, heartbeat } = setup({ intervalMs: 100, timeoutMs: 400, initialGraceMs: 1_000 });
    heartbeat.start();
    clock.advance(1_399);
    assert.equal(host.timeouts.length, 0, 'timed out inside the grace period');
    assert.equal(host.pings.length, 13, 'pings stopped during the grace period');
    clock.advance(1 + 100);
    assert.equal(host.timeouts.length, 1, 'no timeout a quarter timeout after the grace period and the timeout');
    assert.ok(host.timeouts[0].at <= 1_400 + 100);
  });

  test('after the grace period silence counts normally', T, () => {
    const { clock, host, heartbeat } = setup({ intervalMs: 100, timeoutMs: 400, initialGraceMs: 1_000 });
    peerSendsEvery(clock, heartbeat, 100, 2_000);
    heartbeat.start();
    clock.advance(2_000);
    assert.equal(host.timeouts.length, 0);
    clock.advance(500);
    assert.equal(host.timeouts.length, 1);
    assert.equal(host.timeouts[0].at, 2_450, 'one check (timeout/8) after the timeout');
  });

  test('with no grace period a silent peer times out one check after timeoutMs', T, () => {
    const { clock, host, heartbeat } = setup({ intervalMs: 100, timeoutMs: 400, initialGraceMs: 0 });
    heartbeat.start();
    clock.advance(400);
    assert.equal(host.timeouts.length, 0);
    clock.advance(50);
    assert.deepEqual(host.timeouts, [{ at: 450, silentForMs: 450 }]);
  });
});

describe('a stall of this process', () => {
  test('a check that comes late (this process stopped or blocked) does not count the stall as the peer\'s silence', T, () => {
    const { clock, host, heartbeat } = setup({ intervalMs: 100, timeoutMs: 400, initialGraceMs: 0 });
    heartbeat.start();
    talk(clock, heartbeat, 200, 30);
    clock.advance(300); // quiet for 300 ms: within the 400 ms timeout
    // 1 s without this process running: the peer's frames wait unread in the socket.
    clock.stall(1_000);
    assert.deepEqual(host.timeouts, [], 'timed out on its own stall');
    heartbeat.heardFromPeer(); // what the peer sent meanwhile, read once the loop runs again
    talk(clock, heartbeat, 1_000, 30);
    assert.deepEqual(host.timeouts, []);
  });

  test('a peer that stays silent after the stall still times out, counted from the stall\'s end', T, () => {
    const { clock, host, heartbeat } = setup({ intervalMs: 100, timeoutMs: 400, initialGraceMs: 0 });
    heartbeat.start();
    talk(clock, heartbeat, 200, 30);
    clock.advance(300);
    clock.stall(1_000); // the check at 1,500 ms forgives the stall, not the 300 ms before it
    assert.equal(host.timeouts.length, 0);
    clock.advance(500);
    assert.equal(host.timeouts.length, 1);
    assert.ok(host.timeouts[0].at <= 1_500 + 100 + 50, `timed out at ${host.timeouts[0].at}: the silence before the stall counts`);
  });
});
