// A client that finds nobody serving its socket path hosts the endpoint itself (clientOnly false),
// unless clientOnly or SMARTIPC_CLIENT_ONLY=1 says it must fail fast.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { SmartIpc } from '../ts/index.js';
import { expectIpcError, uniqueId, uniqueSocketPath, waitForEvent, withTimeout } from './helpers/fixtures.js';

test('a client with no server on its socket path hosts it, emits role, and serves later clients', async (t) => {
  const socketPath = uniqueSocketPath('role');
  const id = uniqueId('hub');
  const first = SmartIpc.createClient({ id, socketPath, clientId: 'first' });
  const later = SmartIpc.createClient({ id, socketPath, clientId: 'later', clientOnly: true });
  t.after(async () => {
    await later.disconnect();
    await first.disconnect();
  });

  const role = waitForEvent<[string]>(first, 'role');
  await withTimeout(first.connect(), 5_000, 'first connect');
  assert.deepEqual(await role, ['server']);
  const hosted = first.getHostedServer();
  assert.ok(hosted, 'the hosting client exposes its server');
  hosted.onMessage('whoami', (_data, clientId) => clientId);

  await later.connect();
  assert.equal(await later.request('whoami'), 'later');
  assert.equal(await first.request('whoami'), 'first', 'the hosting client reaches its own server like any client');
  assert.deepEqual(hosted.getClientIds().sort(), ['first', 'later']);

  await later.disconnect();
  await first.disconnect();
  assert.equal(fs.existsSync(socketPath), false, 'disconnect of the host stops its server and removes the socket file');
});

test('a stale socket file does not stop a client from hosting the endpoint', async (t) => {
  const socketPath = uniqueSocketPath('role-stale');
  t.after(() => fs.rmSync(socketPath, { force: true }));
  // A socket file nobody answers on: bind, then close the handle without unlinking.
  const { spawnSync } = await import('node:child_process');
  const killed = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => process.kill(process.pid, 'SIGKILL'))`], { stdio: 'ignore', timeout: 5_000 });
  assert.equal(killed.signal, 'SIGKILL');
  assert.ok(fs.existsSync(socketPath), 'the stale file exists');
  const client = SmartIpc.createClient({ id: uniqueId('hub'), socketPath });
  t.after(() => client.disconnect());
  const role = waitForEvent(client, 'role');
  await client.connect();
  await role;
  assert.ok(client.getIsConnected());
});

test('clientOnly fails fast with SERVER_UNAVAILABLE and hosts nothing', async () => {
  const socketPath = uniqueSocketPath('role-only');
  const client = SmartIpc.createClient({ id: uniqueId('hub'), socketPath, clientOnly: true });
  let roleEmitted = false;
  client.on('role', () => (roleEmitted = true));
  const error = await expectIpcError(client.connect(), 'SERVER_UNAVAILABLE');
  assert.match(error.message, new RegExp(socketPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), 'the message names the path');
  assert.equal((error.cause as NodeJS.ErrnoException).code, 'ENOENT');
  assert.equal(roleEmitted, false);
  assert.equal(client.getHostedServer(), undefined);
  assert.equal(fs.existsSync(socketPath), false);
});

test('SMARTIPC_CLIENT_ONLY=1 forces client-only behaviour', async (t) => {
  const previous = process.env.SMARTIPC_CLIENT_ONLY;
  process.env.SMARTIPC_CLIENT_ONLY = '1';
  t.after(() => {
    if (previous === undefined) delete process.env.SMARTIPC_CLIENT_ONLY;
    else process.env.SMARTIPC_CLIENT_ONLY = previous;
  });
  const client = SmartIpc.createClient({ id: uniqueId('hub'), socketPath: uniqueSocketPath('role-env'), clientOnly: false });
  await expectIpcError(client.connect(), 'SERVER_UNAVAILABLE');
  assert.equal(client.getHostedServer(), undefined);
});

test('a TCP client never hosts: no server is SERVER_UNAVAILABLE', async () => {
  const probe = await import('node:net');
  const port = await new Promise<number>((resolve) => {
    const s = probe.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
  const client = SmartIpc.createClient({ id: uniqueId('hub'), host: '127.0.0.1', port });
  const error = await expectIpcError(client.connect(), 'SERVER_UNAVAILABLE');
  assert.equal((error.cause as NodeJS.ErrnoException).code, 'ECONNREFUSED');
});
