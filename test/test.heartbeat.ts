// Heartbeat both ways: a peer frozen with SIGSTOP keeps its socket open and says nothing; it must be
// noticed within heartbeatTimeout, dropped (emitted, not thrown, by default) and, on the client
// side, reconnected once it thaws. Frozen peers run in child processes (test/helpers/resilience-*.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { IpcError, SmartIpc } from '../ts/index.js';
import { isInvalidArgument, makeClient, startServerAt, uniqueId, uniqueSocketPath, unixTarget, waitForEvent, waitUntil, withTimeout } from './helpers/fixtures.js';
import { sleep, spawnClient, spawnServer, type IChild } from './helpers/resilience-process.js';

/** Fast heartbeat so a frozen peer is found in about a second. */
const FAST = { heartbeatInterval: 200, heartbeatTimeout: 1_000, heartbeatInitialGracePeriodMs: 0 };
/** Generous slack for a loaded 2-core machine: detection must come within heartbeatTimeout plus this. */
const SLACK_MS = 2_000;

/** Frees a frozen child so it can be killed, then kills it. */
async function thawAndKill(child: IChild | undefined): Promise<void> {
  if (!child) return;
  child.child.kill('SIGCONT');
  await child.kill('SIGKILL');
}

/** Keeps one client busy with requests; counts what succeeded and what failed. */
function keepBusy(request: () => Promise<unknown>) {
  const counts = { ok: 0, failed: [] as unknown[] };
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        await request();
        counts.ok++;
      } catch (err) {
        counts.failed.push(err);
      }
      await sleep(20);
    }
  })();
  return {
    counts,
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

test('a client frozen with SIGSTOP: the server emits heartbeatTimeout within heartbeatTimeout, drops it and keeps serving the others', { timeout: 40_000 }, async (t) => {
  const socketPath = uniqueSocketPath('hb-frozen-client');
  const id = uniqueId('hbclient');
  const server = (await startServerAt(socketPath, id, { server: FAST })).server;
  const other = makeClient(unixTarget(socketPath, id), FAST);
  let frozen: IChild | undefined;
  t.after(async () => {
    await thawAndKill(frozen);
    await other.disconnect();
    await server.stop({ graceMs: 0 });
    fs.rmSync(socketPath, { force: true });
  });
  const errors: unknown[] = [];
  server.on('error', (error) => errors.push(error));
  await other.connect();
  frozen = await spawnClient(socketPath, id, 'frozen-client', FAST);
  await waitUntil(() => server.getClientIds().includes('frozen-client'), 5_000, 'frozen-client registered');

  const busy = keepBusy(() => other.request('echo', 'still here'));
  const timedOut = waitForEvent<[string]>(server, 'heartbeatTimeout', FAST.heartbeatTimeout + SLACK_MS + 1_000);
  const dropped = waitForEvent<[string, IpcError]>(server, 'clientDisconnect', FAST.heartbeatTimeout + SLACK_MS + 2_000);
  const frozenAt = performance.now();
  frozen.child.kill('SIGSTOP');
  const [clientId] = await timedOut;
  const detectedAfterMs = performance.now() - frozenAt;
  assert.equal(clientId, 'frozen-client');
  assert.ok(detectedAfterMs <= FAST.heartbeatTimeout + SLACK_MS, `detected after ${Math.round(detectedAfterMs)} ms`);
  const [droppedId] = await dropped;
  assert.equal(droppedId, 'frozen-client');
  assert.deepEqual(server.getClientIds(), [other.getClientId()]);

  await sleep(300);
  await busy.stop();
  assert.deepEqual(busy.counts.failed, [], 'the other client was not served throughout');
  assert.ok(busy.counts.ok > 5, `only ${busy.counts.ok} requests of the other client went through`);
  assert.equal(await other.request('echo', 'after'), 'after');
  assert.equal(server.getIsRunning(), true);
  assert.deepEqual(errors, [], 'heartbeatThrowOnTimeout defaults to false: no error event');
});

test('heartbeatThrowOnTimeout: true also emits error (TIMEOUT, clientId) on the server, which keeps running', { timeout: 40_000 }, async (t) => {
  const socketPath = uniqueSocketPath('hb-throw-server');
  const id = uniqueId('hbthrow');
  const server = (await startServerAt(socketPath, id, { server: { ...FAST, heartbeatThrowOnTimeout: true } })).server;
  let frozen: IChild | undefined;
  t.after(async () => {
    await thawAndKill(frozen);
    await server.stop({ graceMs: 0 });
    fs.rmSync(socketPath, { force: true });
  });
  frozen = await spawnClient(socketPath, id, 'frozen-thrower', FAST);
  await waitUntil(() => server.getClientIds().includes('frozen-thrower'), 5_000, 'client registered');
  const failed = waitForEvent<[IpcError, string | undefined]>(server, 'error', FAST.heartbeatTimeout + SLACK_MS + 1_000);
  const timedOut = waitForEvent<[string]>(server, 'heartbeatTimeout', FAST.heartbeatTimeout + SLACK_MS + 1_000);
  frozen.child.kill('SIGSTOP');
  const [error, clientId] = await failed;
  assert.ok(error instanceof IpcError);
  assert.equal(error.code, 'TIMEOUT');
  assert.equal(clientId, 'frozen-thrower');
  await timedOut;
  assert.equal(server.getIsRunning(), true);
  await waitUntil(() => server.getClientIds().length === 0, 3_000, 'frozen client dropped');
});

test('a server frozen with SIGSTOP: the client emits heartbeatTimeout, rejects its pending request with CONNECTION_LOST, and reconnects once the server thaws', { timeout: 60_000 }, async (t) => {
  const socketPath = uniqueSocketPath('hb-frozen-server');
  const id = uniqueId('hbserver');
  const serverProcess = await spawnServer(socketPath, id, FAST);
  const client = makeClient(unixTarget(socketPath, id), { ...FAST, registerTimeoutMs: 1_000, reconnect: { initialDelay: 100, maxDelay: 500 } });
  t.after(async () => {
    await client.disconnect();
    await thawAndKill(serverProcess);
    fs.rmSync(socketPath, { force: true });
  });
  const errors: unknown[] = [];
  client.on('error', (error) => errors.push(error));
  await client.connect();
  assert.equal(await client.request('echo', 'before'), 'before');

  const timedOut = waitForEvent<[IpcError]>(client, 'heartbeatTimeout', FAST.heartbeatTimeout + SLACK_MS + 1_000);
  const disconnected = waitForEvent<[IpcError]>(client, 'disconnect', FAST.heartbeatTimeout + SLACK_MS + 2_000);
  const reconnecting = waitForEvent<[number]>(client, 'reconnecting', FAST.heartbeatTimeout + SLACK_MS + 3_000);
  const frozenAt = performance.now();
  serverProcess.child.kill('SIGSTOP');
  const pending = client.request('echo', 'into the void').then(() => undefined, (err: unknown) => err);
  const [timeoutError] = await timedOut;
  const detectedAfterMs = performance.now() - frozenAt;
  assert.ok(timeoutError instanceof IpcError);
  assert.equal(timeoutError.code, 'TIMEOUT');
  assert.ok(detectedAfterMs <= FAST.heartbeatTimeout + SLACK_MS, `detected after ${Math.round(detectedAfterMs)} ms`);
  const lost = await withTimeout(pending, 2_000, 'the pending request');
  assert.ok(lost instanceof IpcError, `expected an IpcError, got ${String(lost)}`);
  assert.equal(lost.code, 'CONNECTION_LOST');
  await disconnected;
  const [attempt] = await reconnecting;
  assert.equal(attempt, 1);

  // Frozen servers accept connections in the kernel but never answer: attempts time out and retry.
  await sleep(1_500);
  assert.equal(client.getIsConnected(), false);
  const reconnected = waitForEvent(client, 'connect', 15_000);
  serverProcess.child.kill('SIGCONT');
  await reconnected;
  assert.equal(await client.request('echo', 'thawed'), 'thawed');
  assert.equal(await client.request('whoami'), client.getClientId());
  assert.deepEqual(errors, [], 'heartbeatThrowOnTimeout defaults to false: no error event');
});

test('heartbeatThrowOnTimeout: true on the client emits error with TIMEOUT when the server freezes', { timeout: 40_000 }, async (t) => {
  const socketPath = uniqueSocketPath('hb-throw-client');
  const id = uniqueId('hbthrowc');
  const serverProcess = await spawnServer(socketPath, id, FAST);
  const client = makeClient(unixTarget(socketPath, id), { ...FAST, heartbeatThrowOnTimeout: true, reconnect: { enabled: false } });
  t.after(async () => {
    await client.disconnect();
    await thawAndKill(serverProcess);
    fs.rmSync(socketPath, { force: true });
  });
  await client.connect();
  const failed = waitForEvent<[IpcError]>(client, 'error', FAST.heartbeatTimeout + SLACK_MS + 1_000);
  serverProcess.child.kill('SIGSTOP');
  const [error] = await failed;
  assert.ok(error instanceof IpcError);
  assert.equal(error.code, 'TIMEOUT');
  await waitUntil(() => !client.getIsConnected(), 2_000, 'client disconnected');
});

test('heartbeatInitialGracePeriodMs: silence right after connecting is not a timeout until the grace period is over', { timeout: 40_000 }, async (t) => {
  const socketPath = uniqueSocketPath('hb-grace');
  const id = uniqueId('hbgrace');
  const serverProcess = await spawnServer(socketPath, id, FAST);
  const graceMs = 1_500;
  const client = makeClient(unixTarget(socketPath, id), { ...FAST, heartbeatInterval: 100, heartbeatTimeout: 400, heartbeatInitialGracePeriodMs: graceMs, reconnect: { enabled: false } });
  t.after(async () => {
    await client.disconnect();
    await thawAndKill(serverProcess);
    fs.rmSync(socketPath, { force: true });
  });
  const connected = waitForEvent(client, 'connect', 5_000);
  const connecting = client.connect();
  await connected;
  const connectedAt = performance.now();
  serverProcess.child.kill('SIGSTOP');
  await connecting;
  await waitForEvent(client, 'heartbeatTimeout', graceMs + 400 + SLACK_MS + 1_000);
  const afterMs = performance.now() - connectedAt;
  // Load can only make it later, never earlier.
  assert.ok(afterMs >= graceMs, `timed out ${Math.round(afterMs)} ms after connecting, inside the ${graceMs} ms grace period`);
  assert.ok(afterMs <= graceMs + 400 + SLACK_MS, `timed out only ${Math.round(afterMs)} ms after connecting`);
});

test('an idle connection outlives heartbeatTimeout: pings keep it alive, also towards a peer whose own heartbeat is off', { timeout: 20_000 }, async (t) => {
  const socketPath = uniqueSocketPath('hb-idle');
  const id = uniqueId('hbidle');
  const server = (await startServerAt(socketPath, id, { server: { ...FAST, heartbeatInterval: 100, heartbeatTimeout: 600 } })).server;
  const both = makeClient(unixTarget(socketPath, id), { ...FAST, heartbeatInterval: 100, heartbeatTimeout: 600 });
  const silent = makeClient(unixTarget(socketPath, id), { ...FAST, heartbeat: false });
  t.after(async () => {
    await both.disconnect();
    await silent.disconnect();
    await server.stop({ graceMs: 0 });
    fs.rmSync(socketPath, { force: true });
  });
  const events: string[] = [];
  server.on('heartbeatTimeout', (clientId) => events.push(`server timeout ${clientId}`));
  server.on('clientDisconnect', (clientId) => events.push(`server lost ${clientId}`));
  for (const client of [both, silent]) {
    client.on('heartbeatTimeout', () => events.push(`client timeout ${client.getClientId()}`));
    client.on('disconnect', () => events.push(`client lost ${client.getClientId()}`));
  }
  await both.connect();
  await silent.connect();
  await sleep(2_000); // more than three heartbeat timeouts without a single message
  assert.deepEqual(events, []);
  assert.equal(await both.request('echo', 1), 1);
  assert.equal(await silent.request('echo', 2), 2);
});

test('heartbeatTimeout must be longer than heartbeatInterval (INVALID_ARGUMENT at construction)', () => {
  const socketPath = uniqueSocketPath('hb-options');
  assert.throws(() => SmartIpc.createClient({ id: 'x', socketPath, heartbeatInterval: 1_000, heartbeatTimeout: 1_000 }), isInvalidArgument);
  assert.throws(() => SmartIpc.createServer({ id: 'x', socketPath, heartbeatInterval: 2_000, heartbeatTimeout: 500 }), isInvalidArgument);
  assert.doesNotThrow(() => SmartIpc.createClient({ id: 'x', socketPath, heartbeat: false, heartbeatInterval: 2_000, heartbeatTimeout: 500 }));
});
