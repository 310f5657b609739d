// `rateLimit: { messagesPerSecond, burst }`: a token bucket per connection over messages,
// requests, publishes and calls. Past it, requests and calls reject with RATE_LIMITED and a
// retryAfterMs that is right; messages and publishes are dropped and counted; other connections
// go on as if nothing happened, including a quiet client beside a flooder in another process.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { IpcError, serverRefusalsOf } from '../ts/internal.js';
import { TRANSPORTS, expectIpcError, makeClient, spawnChildServer, startServer, uniqueId, waitUntil, withTimeout, type IStartedServer, type TServerOverrides, type TTransportKind } from './helpers/fixtures.js';

const T = { timeout: 20_000 };

async function limitedServer(kind: TTransportKind, options: TServerOverrides) {
  const started = await startServer(kind, options, 'rate');
  const ran: string[] = [];
  started.server.onMessage('echo', (data: unknown) => data);
  started.server.onMessage('note', (data: unknown) => {
    ran.push(String(data));
  });
  await started.server.provide('math', { add: ({ a, b }: { a: number; b: number }) => a + b });
  return { ...started, ran };
}

function client(started: IStartedServer, clientId = uniqueId('rl')) {
  return makeClient(started, { clientId });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

for (const kind of TRANSPORTS) {
  describe(`rate limit over ${kind}`, () => {
    test('requests past the burst reject RATE_LIMITED with a retryAfterMs after which a request succeeds', T, async (t) => {
      const s = await limitedServer(kind, { rateLimit: { messagesPerSecond: 4, burst: 3 } });
      t.after(() => s.stop());
      const c = client(s);
      t.after(() => c.disconnect());
      await c.connect();
      for (let i = 0; i < 3; i++) assert.equal(await c.request('echo', i), i);
      const err = await expectIpcError(c.request('echo', 3), 'RATE_LIMITED');
      t.diagnostic(`retryAfterMs ${err.retryAfterMs} at 4/s`);
      assert.equal(typeof err.retryAfterMs, 'number');
      assert.ok(err.retryAfterMs! > 0 && err.retryAfterMs! <= 250, `retryAfterMs ${err.retryAfterMs} (one token takes 250 ms at 4/s)`);
      // Trying again before then is still refused, with a shorter wait.
      const again = await expectIpcError(c.request('echo', 4), 'RATE_LIMITED');
      assert.ok(again.retryAfterMs! <= err.retryAfterMs!, `${again.retryAfterMs} <= ${err.retryAfterMs}`);
      await new Promise((resolve) => setTimeout(resolve, again.retryAfterMs! + 5));
      assert.equal(await c.request('echo', 5), 5);
      // One token, one request: the next is refused again.
      await expectIpcError(c.request('echo', 6), 'RATE_LIMITED');
      assert.equal(c.getIsConnected(), true);
    });

    test('calls share the bucket and reject RATE_LIMITED; messages and publishes are dropped and counted', T, async (t) => {
      const s = await limitedServer(kind, { rateLimit: { messagesPerSecond: 0.5, burst: 5 } });
      t.after(() => s.stop());
      const flooder = client(s);
      t.after(() => flooder.disconnect());
      await flooder.connect();
      const watcher = makeClient(s, { clientId: uniqueId('watch') });
      t.after(() => watcher.disconnect());
      await watcher.connect();
      const got: unknown[] = [];
      await watcher.subscribe('news.*', (data) => {
        got.push(data);
      });
      // 5 tokens: two calls, then ten messages (three get through), then publishes (none do).
      assert.equal(await flooder.call('math', 'add', { a: 1, b: 2 }), 3);
      assert.equal(await flooder.call('math', 'add', { a: 2, b: 2 }), 4);
      for (let i = 0; i < 10; i++) await flooder.sendMessage('note', i);
      for (let i = 0; i < 4; i++) await flooder.publish('news.x', i);
      const callErr = await expectIpcError(flooder.call('math', 'add', { a: 0, b: 0 }), 'RATE_LIMITED');
      assert.ok(callErr.retryAfterMs! > 0 && callErr.retryAfterMs! <= 2_000, `retryAfterMs ${callErr.retryAfterMs} at 0.5/s`);
      // The watcher's own round trip after the flooder's frames were handled.
      assert.equal(await watcher.request('echo', 'w'), 'w');
      assert.deepEqual(s.ran, ['0', '1', '2']);
      assert.deepEqual(got, []);
      const refusals = serverRefusalsOf(s.server);
      t.diagnostic(`dropped for the rate limit: ${refusals.rateLimited} (7 messages + 4 publishes)`);
      assert.equal(refusals.rateLimited, 11);
      assert.equal(refusals.forbidden, 0);
      // The watcher is unaffected: its own bucket is full (publish, a message, calls).
      await watcher.publish('news.y', 'from watcher');
      await watcher.sendMessage('note', 'w1');
      assert.equal(await watcher.call('math', 'add', { a: 5, b: 5 }), 10);
      await waitUntil(() => s.ran.includes('w1'), 2_000, "the watcher's message");
      assert.equal(flooder.getIsConnected(), true);
    });

    test('each connection has its own bucket: one client spending its burst does not touch another', T, async (t) => {
      const s = await limitedServer(kind, { rateLimit: { messagesPerSecond: 1, burst: 20 } });
      t.after(() => s.stop());
      const a = client(s);
      const b = client(s);
      t.after(() => Promise.all([a.disconnect(), b.disconnect()]));
      await a.connect();
      await b.connect();
      const results = await Promise.allSettled(Array.from({ length: 60 }, (_, i) => a.request('echo', i)));
      const ok = results.filter((r) => r.status === 'fulfilled').length;
      const limited = results.filter((r) => r.status === 'rejected' && (r.reason as IpcError).code === 'RATE_LIMITED').length;
      assert.ok(ok >= 20 && ok <= 21, `a: ${ok} succeeded`);
      assert.equal(ok + limited, 60);
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => b.request('echo', i)));
      assert.deepEqual(answers, Array.from({ length: 20 }, (_, i) => i));
      await expectIpcError(a.request('echo', 0), 'RATE_LIMITED');
    });
  });
}

describe('rate limit under a flood', () => {
  test('a flooder in another process gets about its allowance; a quiet client beside it keeps a low p99', { timeout: 60_000 }, async (t) => {
    const RATE = 200;
    const BURST = 50;
    const DURATION_MS = 3_000;
    const s = await limitedServer('unix', { rateLimit: { messagesPerSecond: RATE, burst: BURST } });
    t.after(() => s.stop());
    const quiet = client(s, uniqueId('quiet'));
    t.after(() => quiet.disconnect());
    await quiet.connect();

    // Baseline p99 of the quiet client without the flood.
    const measure = async (count: number, gapMs: number) => {
      const times: number[] = [];
      const failures: string[] = [];
      for (let i = 0; i < count; i++) {
        const t0 = performance.now();
        try {
          await quiet.request('echo', i, { timeout: 5_000 });
          times.push(performance.now() - t0);
        } catch (err) {
          failures.push((err as IpcError).code);
        }
        await new Promise((resolve) => setTimeout(resolve, gapMs));
      }
      times.sort((x, y) => x - y);
      return { times, failures, p50: percentile(times, 50), p99: percentile(times, 99), max: times.at(-1)! };
    };
    const baseline = await measure(50, 10);

    const flooder = await spawnChildServer('security-flooder.ts', [JSON.stringify({ ...s.endpoint, id: s.id, clientId: uniqueId('flooder') }), String(DURATION_MS), '64']);
    t.after(() => flooder.kill());
    const result = new Promise<{ ok: number; limited: number; other: Record<string, number>; spanMs: number; retryAfterMs: [number, number] }>((resolve) => {
      flooder.child.on('message', (message: { result?: unknown }) => {
        if (message && typeof message === 'object' && 'result' in message) resolve(message.result as never);
      });
    });
    flooder.child.send({ go: true });
    // The quiet client: about 50 requests a second, well under its own allowance, during the flood.
    const during = await measure(Math.floor((DURATION_MS - 200) / 20), 19);
    const flood = await withTimeout(result, 20_000, 'flooder result');
    const allowance = BURST + (RATE * flood.spanMs) / 1000;
    t.diagnostic(`flooder: ${flood.ok} succeeded, ${flood.limited} RATE_LIMITED over ${flood.spanMs.toFixed(0)} ms; bucket allowance ${allowance.toFixed(0)} (burst ${BURST} + ${RATE}/s); retryAfterMs ${flood.retryAfterMs.join('..')}; other ${JSON.stringify(flood.other)}`);
    t.diagnostic(`quiet client: baseline p50 ${baseline.p50.toFixed(2)} ms p99 ${baseline.p99.toFixed(2)} ms; during the flood p50 ${during.p50.toFixed(2)} ms p99 ${during.p99.toFixed(2)} ms max ${during.max.toFixed(2)} ms (${during.times.length} requests, failures ${during.failures.length})`);
    assert.deepEqual(flood.other, {});
    assert.ok(flood.limited > flood.ok, 'the flooder was limited');
    assert.ok(flood.ok <= allowance + 2, `flooder got ${flood.ok}, allowance ${allowance.toFixed(1)}`);
    assert.ok(flood.ok >= allowance * 0.8, `flooder got ${flood.ok} of an allowance of ${allowance.toFixed(1)}: the bucket refills as promised`);
    assert.ok(flood.retryAfterMs[0] >= 1 && flood.retryAfterMs[1] <= Math.ceil(1000 / RATE), `retryAfterMs ${flood.retryAfterMs.join('..')}`);
    assert.deepEqual(during.failures, [], 'the quiet client was never limited');
    assert.ok(during.p99 < 50, `quiet p99 ${during.p99.toFixed(2)} ms during the flood`);
  });
});
