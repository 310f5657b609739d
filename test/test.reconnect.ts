// Reconnection: connectRetry for the first connect, reconnect with backoff after a drop, the
// bounded outbox, CONNECTION_LOST for requests in flight, and what clients see of a graceful stop.
// Servers that die for real run in child processes (test/helpers/resilience-server.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { IpcError } from '../ts/index.js';
import {
  expectIpcError,
  makeClient,
  startServerAt,
  uniqueId,
  uniqueSocketPath,
  unixTarget,
  waitForEvent,
  waitUntil,
  withTimeout,
  type ITestServer,
} from './helpers/fixtures.js';
import { sleep, spawnServer } from './helpers/resilience-process.js';

/** Tracks whether a promise has settled, without unhandled rejections. */
function track<T>(promise: Promise<T>) {
  const state = { settled: false, value: undefined as T | undefined, error: undefined as unknown };
  const done = promise.then(
    (value) => {
      state.settled = true;
      state.value = value;
    },
    (error) => {
      state.settled = true;
      state.error = error;
    },
  );
  return { state, done };
}

function cleanup(socketPath: string, ...closers: Array<() => Promise<unknown> | undefined>) {
  return async () => {
    for (const close of closers) await close()?.catch(() => undefined);
    fs.rmSync(socketPath, { force: true });
  };
}

// ---- a server process that dies --------------------------------------------------------------

test('SIGKILL of the server: 100 pending requests reject with CONNECTION_LOST at once; the client reconnects to the restarted server and the outage sends arrive once, in order', { timeout: 60_000 }, async (t) => {
  const socketPath = uniqueSocketPath('reconnect-kill');
  const id = uniqueId('kill');
  let serverProcess = await spawnServer(socketPath, id);
  const client = makeClient(unixTarget(socketPath, id), { reconnect: { initialDelay: 50, maxDelay: 400 } });
  t.after(cleanup(socketPath, () => client.disconnect(), () => serverProcess.kill()));
  const errors: IpcError[] = [];
  client.on('error', (error) => errors.push(error));
  const attempts: number[] = [];
  client.on('reconnecting', (attempt) => attempts.push(attempt));

  await client.connect();
  const pending = Array.from({ length: 100 }, (_, i) => client.request('hang', i).then(() => 'resolved', (error: unknown) => error));
  // Answered in order behind them: the server holds all 100.
  assert.equal(await client.request('hanging'), 100);

  const disconnected = waitForEvent<[IpcError]>(client, 'disconnect', 5_000);
  const killedAt = performance.now();
  await serverProcess.kill('SIGKILL');
  const outcomes = await withTimeout(Promise.all(pending), 2_000, 'rejection of the 100 pending requests');
  const elapsedMs = performance.now() - killedAt;
  for (const outcome of outcomes) {
    assert.ok(outcome instanceof IpcError, `expected an IpcError, got ${String(outcome)}`);
    assert.equal(outcome.code, 'CONNECTION_LOST');
  }
  assert.ok(elapsedMs < 2_000, `pending requests took ${Math.round(elapsedMs)} ms to reject`);
  const [reason] = await disconnected;
  assert.equal(reason.code, 'CONNECTION_LOST');

  // Sent while nobody serves: they wait instead of failing.
  const outage = [
    ...Array.from({ length: 20 }, (_, i) => track(client.sendMessage('record', { seq: i + 1 }))),
    track(client.request<unknown, number>('record', { seq: 21 })),
  ];
  await sleep(300);
  assert.equal(client.getIsConnected(), false);
  assert.ok(outage.every((o) => !o.state.settled), 'outage sends settled before any server was back');
  assert.ok(attempts.length >= 1, 'no reconnecting event while the server was down');

  const reconnected = waitForEvent(client, 'connect', 20_000);
  serverProcess = await spawnServer(socketPath, id); // the SIGKILLed server left its socket file behind
  await reconnected;
  await withTimeout(Promise.all(outage.map((o) => o.done)), 5_000, 'outage sends');
  for (const o of outage) assert.equal(o.state.error, undefined, `outage send failed: ${String(o.state.error)}`);
  assert.equal(outage[20].state.value, 21);

  const log = await client.request<unknown, { seqs: number[]; violations: number }>('log');
  assert.deepEqual(log.seqs, Array.from({ length: 21 }, (_, i) => i + 1), 'outage sends must arrive exactly once, in order');
  assert.equal(log.violations, 0);
  assert.equal(await client.request('whoami'), client.getClientId(), 're-registered under the same clientId');
  assert.deepEqual(await client.request('clients'), [client.getClientId()]);
  assert.equal(await client.request('echo', 'after the restart'), 'after the restart');
  assert.deepEqual(attempts, attempts.map((_, i) => i + 1), 'reconnecting(attempt) counts 1, 2, 3...');
  assert.ok(client.getStats().reconnectAttempts >= 1);
  assert.deepEqual(errors, []);
});

test('a server process restarted again and again: the client re-registers with the same clientId each time', { timeout: 60_000 }, async (t) => {
  const socketPath = uniqueSocketPath('reconnect-restarts');
  const id = uniqueId('restarts');
  const serverProcess = await spawnServer(socketPath, id);
  const client = makeClient(unixTarget(socketPath, id), { clientId: 'steady-client', reconnect: { initialDelay: 20, maxDelay: 200 } });
  t.after(cleanup(socketPath, () => client.disconnect(), () => serverProcess.kill()));
  await client.connect();
  let connects = 0;
  client.on('connect', () => connects++);
  for (let round = 1; round <= 3; round++) {
    const reconnected = waitForEvent(client, 'connect', 15_000);
    serverProcess.send({ cmd: 'restart', graceMs: 0 });
    await serverProcess.next('ready');
    await reconnected;
    assert.equal(await client.request('whoami'), 'steady-client');
    assert.deepEqual(await client.request('clients'), ['steady-client']);
  }
  assert.equal(connects, 3);
});

// ---- the first connect -----------------------------------------------------------------------

test('connectRetry: a server that starts 500 ms after the client is reached', { timeout: 20_000 }, async (t) => {
  const socketPath = uniqueSocketPath('retry-late');
  const id = uniqueId('late');
  let started: ITestServer | undefined;
  const client = makeClient(unixTarget(socketPath, id), { connectRetry: { enabled: true, initialDelay: 50, maxDelay: 200, maxAttempts: 1_000, totalTimeout: 10_000 } });
  t.after(cleanup(socketPath, () => client.disconnect(), () => started?.server.stop({ graceMs: 0 })));
  const connecting = track(client.connect());
  await sleep(500);
  assert.equal(connecting.state.settled, false, 'connect settled before the server existed');
  started = await startServerAt(socketPath, id);
  await withTimeout(connecting.done, 5_000, 'connect after the server started');
  assert.equal(connecting.state.error, undefined, `connect failed: ${String(connecting.state.error)}`);
  assert.equal(await client.request('echo', 1), 1);
});

test('without connectRetry (clientOnly) a missing server fails fast with SERVER_UNAVAILABLE naming the path', { timeout: 10_000 }, async () => {
  const socketPath = uniqueSocketPath('retry-off');
  const client = makeClient(unixTarget(socketPath, uniqueId('off')));
  const startedAt = performance.now();
  const error = await expectIpcError(client.connect(), 'SERVER_UNAVAILABLE', 5_000);
  assert.ok(performance.now() - startedAt < 2_000, 'a single attempt should fail at once');
  assert.ok(error.message.includes(socketPath), 'the error names the socket path');
  assert.equal((error.cause as NodeJS.ErrnoException | undefined)?.code, 'ENOENT');
});

test('connectRetry.maxAttempts bounds the number of dials', { timeout: 15_000 }, async (t) => {
  const socketPath = uniqueSocketPath('retry-attempts');
  let dials = 0;
  // Accepts and hangs up at once: every attempt reaches it and fails.
  const rude = net.createServer((socket) => {
    dials++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => rude.listen(socketPath, resolve));
  t.after(cleanup(socketPath, () => new Promise<void>((resolve) => rude.close(() => resolve()))));
  const client = makeClient(unixTarget(socketPath, uniqueId('attempts')), { connectRetry: { enabled: true, initialDelay: 10, maxDelay: 20, maxAttempts: 3 } });
  // The dial succeeds and the handshake is cut off: the last attempt's CONNECTION_LOST is what connect rejects with.
  await expectIpcError(client.connect(), 'CONNECTION_LOST', 10_000);
  assert.equal(dials, 3);
});

test('connectRetry.totalTimeout bounds the time spent retrying', { timeout: 15_000 }, async () => {
  const socketPath = uniqueSocketPath('retry-total');
  const client = makeClient(unixTarget(socketPath, uniqueId('total')), { connectRetry: { enabled: true, initialDelay: 100, maxDelay: 100, maxAttempts: 10_000, totalTimeout: 600 } });
  const startedAt = performance.now();
  const error = await expectIpcError(client.connect(), 'SERVER_UNAVAILABLE', 8_000);
  const elapsedMs = performance.now() - startedAt;
  assert.ok(elapsedMs >= 400, `gave up after ${Math.round(elapsedMs)} ms, before the budget was spent`);
  assert.ok(elapsedMs < 4_000, `gave up after ${Math.round(elapsedMs)} ms, long after the 600 ms budget`);
  assert.ok(error.message.includes(socketPath));
});

test('connect({ waitForReady }) waits for a late server; waitTimeout bounds the wait', { timeout: 20_000 }, async (t) => {
  const socketPath = uniqueSocketPath('wait-ready');
  const id = uniqueId('wait');
  let started: ITestServer | undefined;
  const client = makeClient(unixTarget(socketPath, id)); // connectRetry stays disabled
  t.after(cleanup(socketPath, () => client.disconnect(), () => started?.server.stop({ graceMs: 0 })));

  const lonely = makeClient(unixTarget(uniqueSocketPath('wait-none'), id));
  const startedAt = performance.now();
  await expectIpcError(lonely.connect({ waitForReady: true, waitTimeout: 500 }), 'SERVER_UNAVAILABLE', 8_000);
  const elapsedMs = performance.now() - startedAt;
  assert.ok(elapsedMs < 4_000, `waitTimeout 500 gave up after ${Math.round(elapsedMs)} ms`);

  const connecting = track(client.connect({ waitForReady: true, waitTimeout: 10_000 }));
  await sleep(400);
  assert.equal(connecting.state.settled, false);
  started = await startServerAt(socketPath, id);
  await withTimeout(connecting.done, 5_000, 'connect({ waitForReady })');
  assert.equal(connecting.state.error, undefined, `connect failed: ${String(connecting.state.error)}`);
  assert.equal(client.getIsConnected(), true);
});

test('waitTimeout: a server that appears before the deadline is reached even when the next backoff step would overshoot it', { timeout: 20_000 }, async (t) => {
  const socketPath = uniqueSocketPath('wait-deadline');
  const id = uniqueId('deadline');
  let started: ITestServer | undefined;
  // Attempts at 0 and 800..1200 ms; the next one (1600 ms or later) would overshoot the 1500 ms budget.
  const client = makeClient(unixTarget(socketPath, id), { connectRetry: { initialDelay: 1_000, maxDelay: 1_000 } });
  t.after(cleanup(socketPath, () => client.disconnect(), () => started?.server.stop({ graceMs: 0 })));
  const connecting = track(client.connect({ waitForReady: true, waitTimeout: 1_500 }));
  await sleep(1_250);
  started = await startServerAt(socketPath, id);
  await withTimeout(connecting.done, 5_000, 'connect({ waitForReady })');
  assert.equal(connecting.state.error, undefined, `the server was up about 250 ms before the deadline, yet connect failed: ${String(connecting.state.error)}`);
});

// ---- after a drop ----------------------------------------------------------------------------

test('reconnect: exponential backoff with jitter, reconnecting(attempt, delay) per attempt, connect again when back', { timeout: 20_000 }, async (t) => {
  const socketPath = uniqueSocketPath('backoff');
  const id = uniqueId('backoff');
  let started = await startServerAt(socketPath, id);
  const client = makeClient(unixTarget(socketPath, id), { reconnect: { initialDelay: 40, maxDelay: 160 } });
  t.after(cleanup(socketPath, () => client.disconnect(), () => started.server.stop({ graceMs: 0 })));
  await client.connect();
  const seen: Array<[number, number]> = [];
  client.on('reconnecting', (attempt, delayMs) => seen.push([attempt, delayMs]));
  await started.server.stop({ graceMs: 0 });
  await waitUntil(() => seen.length >= 6, 10_000, 'six reconnect attempts');
  const bases = [40, 80, 160, 160, 160, 160];
  seen.slice(0, 6).forEach(([attempt, delayMs], i) => {
    assert.equal(attempt, i + 1);
    assert.ok(delayMs >= bases[i] * 0.8 - 1 && delayMs <= Math.min(160, bases[i] * 1.2) + 1, `attempt ${attempt}: delay ${delayMs} ms outside ${bases[i]} ms +-20% (max 160)`);
  });
  const reconnected = waitForEvent(client, 'connect', 5_000);
  started = await startServerAt(socketPath, id);
  await reconnected;
  assert.equal(await client.request('echo', 'back'), 'back');
});

test('a replaced connection keeps one registration per clientId on the server', { timeout: 20_000 }, async (t) => {
  const socketPath = uniqueSocketPath('same-id');
  const id = uniqueId('same');
  let started = await startServerAt(socketPath, id);
  const client = makeClient(unixTarget(socketPath, id), { clientId: 'same-id-client', reconnect: { initialDelay: 20, maxDelay: 100 } });
  t.after(cleanup(socketPath, () => client.disconnect(), () => started.server.stop({ graceMs: 0 })));
  await client.connect();
  await started.server.stop({ graceMs: 0 });
  let registered!: Promise<[string]>;
  started = await startServerAt(socketPath, id, { beforeStart: (server) => (registered = waitForEvent<[string]>(server, 'clientConnect', 10_000)) });
  const [clientId] = await registered;
  assert.equal(clientId, 'same-id-client');
  assert.deepEqual(started.server.getClientIds(), ['same-id-client']);
  await waitUntil(() => client.getIsConnected(), 5_000, 'client connected');
  assert.equal(await client.request('whoami'), 'same-id-client');
});

test('outbox: by default 1000 messages wait during a reconnect and go out in order; the 1001st rejects with NOT_CONNECTED', { timeout: 20_000 }, async (t) => {
  const socketPath = uniqueSocketPath('outbox-default');
  const id = uniqueId('outbox');
  const recorded: number[] = [];
  let started = await startServerAt(socketPath, id, { recorded });
  const client = makeClient(unixTarget(socketPath, id), { reconnect: { initialDelay: 20, maxDelay: 100 } });
  t.after(cleanup(socketPath, () => client.disconnect(), () => started.server.stop({ graceMs: 0 })));
  assert.deepEqual(client.options.outbox, { maxMessages: 1000, maxBytes: 16 * 1024 * 1024 });
  await client.connect();
  const disconnected = waitForEvent(client, 'disconnect', 5_000);
  await started.server.stop({ graceMs: 0 });
  await disconnected;

  const held = Array.from({ length: 1000 }, (_, i) => track(client.sendMessage('record', { seq: i })));
  await expectIpcError(client.sendMessage('record', { seq: 1000 }), 'NOT_CONNECTED', 1_000);
  await expectIpcError(client.request('record', { seq: 1001 }), 'NOT_CONNECTED', 1_000);
  await sleep(50);
  assert.ok(held.every((h) => !h.state.settled), 'held messages settled while disconnected');

  started = await startServerAt(socketPath, id, { recorded });
  await withTimeout(Promise.all(held.map((h) => h.done)), 10_000, 'outbox flush');
  for (const h of held) assert.equal(h.state.error, undefined);
  // A request behind the flushed messages is answered after all of them arrived.
  assert.equal(await client.request('echo', 'fence'), 'fence');
  assert.deepEqual(recorded, Array.from({ length: 1000 }, (_, i) => i));
});

test('outbox: the byte bound rejects what does not fit with NOT_CONNECTED; what fits still goes out', { timeout: 20_000 }, async (t) => {
  const socketPath = uniqueSocketPath('outbox-bytes');
  const id = uniqueId('bytes');
  const recorded: number[] = [];
  let started = await startServerAt(socketPath, id, { recorded });
  const client = makeClient(unixTarget(socketPath, id), { outbox: { maxBytes: 4_096 }, reconnect: { initialDelay: 20, maxDelay: 100 } });
  t.after(cleanup(socketPath, () => client.disconnect(), () => started.server.stop({ graceMs: 0 })));
  await client.connect();
  const disconnected = waitForEvent(client, 'disconnect', 5_000);
  await started.server.stop({ graceMs: 0 });
  await disconnected;
  const small = track(client.sendMessage('record', { seq: 1 }));
  await expectIpcError(client.sendMessage('record', { seq: 2, pad: 'x'.repeat(8_192) }), 'NOT_CONNECTED', 1_000);
  const alsoSmall = track(client.sendMessage('record', { seq: 3 }));
  started = await startServerAt(socketPath, id, { recorded });
  await withTimeout(Promise.all([small.done, alsoSmall.done]), 10_000, 'outbox flush');
  assert.equal(await client.request('echo', 'fence'), 'fence');
  assert.deepEqual(recorded, [1, 3]);
});

test('a request waiting in the outbox still honours its timeout, and is not sent once it timed out', { timeout: 20_000 }, async (t) => {
  const socketPath = uniqueSocketPath('outbox-timeout');
  const id = uniqueId('otimeout');
  const recorded: number[] = [];
  let started = await startServerAt(socketPath, id, { recorded });
  const client = makeClient(unixTarget(socketPath, id), { reconnect: { initialDelay: 20, maxDelay: 100 } });
  t.after(cleanup(socketPath, () => client.disconnect(), () => started.server.stop({ graceMs: 0 })));
  await client.connect();
  const disconnected = waitForEvent(client, 'disconnect', 5_000);
  await started.server.stop({ graceMs: 0 });
  await disconnected;
  await expectIpcError(client.request('record', { seq: 1 }, { timeout: 200 }), 'TIMEOUT', 5_000);
  const kept = client.request('record', { seq: 2 });
  started = await startServerAt(socketPath, id, { recorded });
  assert.equal(await withTimeout(kept, 10_000, 'request after reconnect'), 2);
  assert.deepEqual(recorded, [2]);
});

test('reconnect gives up after maxAttempts: queued sends reject with NOT_CONNECTED and error is emitted', { timeout: 20_000 }, async (t) => {
  const socketPath = uniqueSocketPath('give-up');
  const id = uniqueId('giveup');
  const started = await startServerAt(socketPath, id);
  const client = makeClient(unixTarget(socketPath, id), { reconnect: { initialDelay: 200, maxDelay: 200, maxAttempts: 2 } });
  t.after(cleanup(socketPath, () => client.disconnect(), () => started.server.stop({ graceMs: 0 })));
  await client.connect();
  const attempts: number[] = [];
  client.on('reconnecting', (attempt) => attempts.push(attempt));
  const failed = waitForEvent<[IpcError]>(client, 'error', 10_000);
  const disconnected = waitForEvent(client, 'disconnect', 5_000);
  await started.server.stop({ graceMs: 0 });
  await disconnected;
  const message = client.sendMessage('echo', 1);
  const request = client.request('echo', 2);
  await expectIpcError(message, 'NOT_CONNECTED', 10_000);
  await expectIpcError(request, 'NOT_CONNECTED', 10_000);
  const [error] = await failed;
  assert.equal(error.code, 'NOT_CONNECTED');
  assert.deepEqual(attempts, [1, 2]);
  // Given up: later sends fail at once instead of queueing.
  await expectIpcError(client.sendMessage('echo', 3), 'NOT_CONNECTED', 1_000);
  assert.equal(client.getIsConnected(), false);
});

test('disconnect() while reconnecting rejects what waits with NOT_CONNECTED and stops reconnecting', { timeout: 20_000 }, async (t) => {
  const socketPath = uniqueSocketPath('disconnect-reconnecting');
  const id = uniqueId('dr');
  const started = await startServerAt(socketPath, id);
  const client = makeClient(unixTarget(socketPath, id), { reconnect: { initialDelay: 50, maxDelay: 50 } });
  t.after(cleanup(socketPath, () => client.disconnect(), () => started.server.stop({ graceMs: 0 })));
  await client.connect();
  let attempts = 0;
  client.on('reconnecting', () => attempts++);
  await started.server.stop({ graceMs: 0 });
  await waitUntil(() => attempts >= 2, 5_000, 'reconnect attempts');
  const message = client.sendMessage('echo', 1);
  const request = client.request('echo', 2);
  await withTimeout(client.disconnect(), 2_000, 'disconnect');
  await expectIpcError(message, 'NOT_CONNECTED', 1_000);
  await expectIpcError(request, 'NOT_CONNECTED', 1_000);
  const after = attempts;
  await sleep(300);
  assert.equal(attempts, after, 'reconnecting went on after disconnect()');
});

// ---- graceful stop ---------------------------------------------------------------------------

test('graceful stop: in-flight handlers finish, new connections are refused, clients see a clean close', { timeout: 20_000 }, async (t) => {
  const socketPath = uniqueSocketPath('graceful');
  const id = uniqueId('graceful');
  const started = await startServerAt(socketPath, id);
  const client = makeClient(unixTarget(socketPath, id), { reconnect: { enabled: false } });
  t.after(cleanup(socketPath, () => client.disconnect(), () => started.server.stop({ graceMs: 0 })));
  const errors: IpcError[] = [];
  client.on('error', (error) => errors.push(error));
  await client.connect();
  const disconnected = waitForEvent<[IpcError]>(client, 'disconnect', 10_000);
  const slow = client.request('slow', { ms: 400, value: 'finished' });
  assert.equal(await client.request('echo', 'fence'), 'fence'); // the slow handler is running now
  const stopping = started.server.stop({ graceMs: 5_000 });
  assert.equal(started.server.getIsReady(), false);
  // No new connections while stopping.
  const late = makeClient(unixTarget(socketPath, id));
  await expectIpcError(late.connect(), 'SERVER_UNAVAILABLE', 5_000);
  assert.equal(await withTimeout(slow, 5_000, 'in-flight request'), 'finished');
  await withTimeout(stopping, 5_000, 'stop');
  const [reason] = await disconnected;
  assert.equal(reason.code, 'CONNECTION_LOST');
  assert.equal(reason.cause, undefined, 'a graceful close is not a socket error');
  assert.deepEqual(errors, [], 'a graceful stop is no error');
  assert.equal(fs.existsSync(socketPath), false, 'stop() removes the socket file');
});

test('graceful stop is bounded: a handler slower than graceMs loses its request with CONNECTION_LOST', { timeout: 20_000 }, async (t) => {
  const socketPath = uniqueSocketPath('graceful-bound');
  const id = uniqueId('gbound');
  const started = await startServerAt(socketPath, id);
  const client = makeClient(unixTarget(socketPath, id), { reconnect: { enabled: false } });
  t.after(cleanup(socketPath, () => client.disconnect(), () => started.server.stop({ graceMs: 0 })));
  await client.connect();
  const slow = track(client.request('slow', { ms: 10_000, value: 'too late' }));
  assert.equal(await client.request('echo', 'fence'), 'fence');
  const startedAt = performance.now();
  await withTimeout(started.server.stop({ graceMs: 200 }), 5_000, 'stop');
  assert.ok(performance.now() - startedAt < 3_000, 'stop waited far past graceMs');
  await withTimeout(slow.done, 2_000, 'the slow request');
  assert.ok(slow.state.error instanceof IpcError, `expected an IpcError, got ${String(slow.state.error)}`);
  assert.equal(slow.state.error.code, 'CONNECTION_LOST');
});
