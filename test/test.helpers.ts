// The test helpers SmartIpc.waitForServer and SmartIpc.spawnAndConnect, against real scripts in
// child processes (test/helpers/resilience-server.ts and resilience-faulty.ts). spawnAndConnect
// forks with this process's execArgv, so the .ts scripts run under the same `--import tsx`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { IpcError, SmartIpc, type IpcClient } from '../ts/index.js';
import { expectIpcError, uniqueId, uniqueSocketPath, waitUntil, withTimeout } from './helpers/fixtures.js';
import {
  RESILIENCE_FAULTY_SCRIPT,
  RESILIENCE_SERVER_SCRIPT,
  isAlive,
  sleep,
  spawnServer,
  type IChild,
} from './helpers/resilience-process.js';
import type { ChildProcess } from 'node:child_process';

/** Kills a spawnAndConnect child and waits for it to be gone. */
async function killChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await withTimeout(exited, 10_000, 'child exit');
}

test('waitForServer resolves once a server script in another process serves, and registers no client', { timeout: 40_000 }, async (t) => {
  const socketPath = uniqueSocketPath('wfs');
  const id = uniqueId('wfs');
  let server: IChild | undefined;
  let client: IpcClient | undefined;
  t.after(async () => {
    await client?.disconnect();
    await server?.kill();
    fs.rmSync(socketPath, { force: true });
  });
  let resolved = false;
  const waiting = SmartIpc.waitForServer({ socketPath, id, timeoutMs: 30_000 }).then(() => {
    resolved = true;
  });
  await sleep(300);
  assert.equal(resolved, false, 'resolved before any server existed');
  assert.equal(fs.existsSync(socketPath), false, 'waitForServer must never host the endpoint');
  server = await spawnServer(socketPath, id);
  await withTimeout(waiting, 10_000, 'waitForServer');
  client = SmartIpc.createClient({ id, socketPath, clientOnly: true });
  await client.connect(); // no retry needed
  assert.deepEqual(await client.request('clients'), [client.getClientId()], 'the probe left no registration behind');
  // Any id is fine when none is given.
  await withTimeout(SmartIpc.waitForServer({ socketPath, timeoutMs: 5_000 }), 6_000, 'waitForServer without id');
});

test('waitForServer: a server with another id rejects with ID_MISMATCH at once; no server rejects with TIMEOUT naming the endpoint', { timeout: 40_000 }, async (t) => {
  const socketPath = uniqueSocketPath('wfs-id');
  const server = await spawnServer(socketPath, uniqueId('wfs-right'));
  t.after(async () => {
    await server.kill();
    fs.rmSync(socketPath, { force: true });
  });
  const startedAt = performance.now();
  await expectIpcError(SmartIpc.waitForServer({ socketPath, id: 'someone-else', timeoutMs: 20_000 }), 'ID_MISMATCH', 10_000);
  assert.ok(performance.now() - startedAt < 5_000, 'ID_MISMATCH should not wait for the timeout');

  const nowhere = uniqueSocketPath('wfs-none');
  const waitStart = performance.now();
  const error = await expectIpcError(SmartIpc.waitForServer({ socketPath: nowhere, timeoutMs: 600 }), 'TIMEOUT', 5_000);
  const waitedMs = performance.now() - waitStart;
  assert.ok(waitedMs < 3_000, `TIMEOUT after ${Math.round(waitedMs)} ms for a 600 ms budget`);
  assert.ok(error.message.includes(nowhere), 'the error names the endpoint');
  assert.equal(fs.existsSync(nowhere), false);

  // A stale socket file (its server was killed) is no server either.
  await server.kill('SIGKILL');
  await expectIpcError(SmartIpc.waitForServer({ socketPath, timeoutMs: 500 }), 'TIMEOUT', 5_000);
});

test('spawnAndConnect forks a real server script and returns a connected client and the process', { timeout: 40_000 }, async (t) => {
  const socketPath = uniqueSocketPath('sac');
  const id = uniqueId('sac');
  let result: { client: IpcClient; serverProcess: ChildProcess } | undefined;
  t.after(async () => {
    await result?.client.disconnect();
    await killChild(result?.serverProcess);
    fs.rmSync(socketPath, { force: true });
  });
  result = await SmartIpc.spawnAndConnect({
    serverScript: RESILIENCE_SERVER_SCRIPT,
    args: [socketPath, id],
    env: { RESILIENCE_QUIET: '1' },
    socketPath,
    id,
    clientId: 'spawned-test-client',
    timeoutMs: 30_000,
  });
  const { client, serverProcess } = result;
  assert.equal(client.getIsConnected(), true);
  assert.equal(client.getClientId(), 'spawned-test-client');
  assert.equal(await client.request('pid'), serverProcess.pid);
  assert.equal(await client.request('whoami'), 'spawned-test-client');
  assert.deepEqual(await client.request('echo', { nested: [1, 2] }), { nested: [1, 2] });
});

test('spawnAndConnect: a script that exits before serving rejects at once with its stderr tail', { timeout: 40_000 }, async () => {
  const socketPath = uniqueSocketPath('sac-crash');
  const startedAt = performance.now();
  const error = await expectIpcError(
    SmartIpc.spawnAndConnect({ serverScript: RESILIENCE_FAULTY_SCRIPT, args: ['crash'], socketPath, timeoutMs: 30_000 }),
    'SERVER_UNAVAILABLE',
    35_000,
  );
  assert.ok(performance.now() - startedAt < 20_000, 'a child that died should not make us wait for the timeout');
  assert.ok(error.message.includes('config file is missing'), 'the message carries the child\'s stderr tail');
  assert.equal(fs.existsSync(socketPath), false);
  // It also stopped probing: a listener that appears now hears nothing (probes come every <= 500 ms).
  let probes = 0;
  const listener = net.createServer((socket) => {
    probes++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => listener.listen(socketPath, resolve));
  try {
    await sleep(1_200);
  } finally {
    await new Promise<void>((resolve) => listener.close(() => resolve()));
    fs.rmSync(socketPath, { force: true });
  }
  assert.equal(probes, 0, 'spawnAndConnect kept probing after the child died');
});

test('spawnAndConnect: a script that never serves is killed when timeoutMs runs out, and its stderr tail is reported', { timeout: 40_000 }, async (t) => {
  const socketPath = uniqueSocketPath('sac-stuck');
  const pidFile = path.join(os.tmpdir(), `smartipc-resilience-pid-${process.pid}-${Date.now()}.txt`);
  t.after(() => {
    const pid = Number(fs.readFileSync(pidFile, { encoding: 'utf8', flag: 'a+' }));
    if (pid > 0 && isAlive(pid)) process.kill(pid, 'SIGKILL');
    fs.rmSync(pidFile, { force: true });
  });
  const error = await expectIpcError(
    SmartIpc.spawnAndConnect({ serverScript: RESILIENCE_FAULTY_SCRIPT, args: ['stuck'], env: { RESILIENCE_PID_FILE: pidFile }, socketPath, timeoutMs: 2_500 }),
    'TIMEOUT',
    20_000,
  );
  assert.ok(error instanceof IpcError);
  assert.ok(error.message.includes('a database that never comes'), 'the message carries the child\'s stderr tail');
  const pid = Number(fs.readFileSync(pidFile, 'utf8'));
  assert.ok(pid > 0, 'the stuck child wrote its pid');
  await waitUntil(() => !isAlive(pid), 5_000, `stuck child ${pid} killed`);
});
