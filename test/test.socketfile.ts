// Socket ownership: a stale file (its server was killed) may be cleaned up, a file a live server
// answers on (even a frozen one) never is, nor a path that is not a socket; socketMode; readiness.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { SmartIpc, type IpcServer } from '../ts/index.js';
import { expectIpcError, uniqueId, uniqueSocketPath, waitForEvent } from './helpers/fixtures.js';
import { spawnServer, type IChild } from './helpers/resilience-process.js';

function serverOn(socketPath: string, id: string, options: { autoCleanupSocketFile?: boolean; socketMode?: number } = {}): IpcServer {
  const server = SmartIpc.createServer({ id, socketPath, ...options });
  server.onMessage('pid', () => process.pid);
  return server;
}

function clientOn(socketPath: string, id: string) {
  return SmartIpc.createClient({ id, socketPath, clientOnly: true, reconnect: { enabled: false } });
}

test('a socket file left by a SIGKILLed server is stale: refused without autoCleanupSocketFile, replaced with it', { timeout: 40_000 }, async (t) => {
  const socketPath = uniqueSocketPath('stale');
  const id = uniqueId('stale');
  const dead = await spawnServer(socketPath, id);
  const servers: IpcServer[] = [];
  t.after(async () => {
    await dead.kill();
    for (const server of servers) await server.stop({ graceMs: 0 });
    fs.rmSync(socketPath, { force: true });
  });
  await dead.kill('SIGKILL');
  assert.ok(fs.lstatSync(socketPath).isSocket(), 'the killed server left its socket file');

  // A client-only client fails fast, naming the path and the cause.
  const error = await expectIpcError(clientOn(socketPath, id).connect(), 'SERVER_UNAVAILABLE', 5_000);
  assert.ok(error.message.includes(socketPath));
  assert.equal((error.cause as NodeJS.ErrnoException | undefined)?.code, 'ECONNREFUSED');

  const careful = serverOn(socketPath, id);
  servers.push(careful);
  await expectIpcError(careful.start(), 'ADDRESS_IN_USE', 5_000);
  assert.ok(fs.existsSync(socketPath), 'without autoCleanupSocketFile the file stays');
  assert.equal(careful.getIsRunning(), false);

  const cleaning = serverOn(socketPath, id, { autoCleanupSocketFile: true });
  servers.push(cleaning);
  await cleaning.start();
  const client = clientOn(socketPath, id);
  t.after(() => client.disconnect());
  await client.connect();
  assert.equal(await client.request('pid'), process.pid);
});

test('a live server\'s socket file is never removed: start rejects with ADDRESS_IN_USE and the live server keeps serving', { timeout: 40_000 }, async (t) => {
  const socketPath = uniqueSocketPath('live');
  const id = uniqueId('live');
  const live = await spawnServer(socketPath, id);
  const existing = clientOn(socketPath, id);
  const intruder = serverOn(socketPath, id, { autoCleanupSocketFile: true });
  t.after(async () => {
    await existing.disconnect();
    await intruder.stop({ graceMs: 0 });
    await live.kill();
    fs.rmSync(socketPath, { force: true });
  });
  await existing.connect();
  const inode = fs.statSync(socketPath).ino;

  await expectIpcError(intruder.start(), 'ADDRESS_IN_USE', 5_000);
  assert.equal(intruder.getIsRunning(), false);
  assert.equal(fs.statSync(socketPath).ino, inode, 'the live server\'s file is untouched');
  assert.equal(await existing.request('pid'), live.pid, 'the connected client is still served');
  const newcomer = clientOn(socketPath, id);
  t.after(() => newcomer.disconnect());
  await newcomer.connect();
  assert.equal(await newcomer.request('pid'), live.pid, 'new clients still reach the live server');
});

test('a live server that hangs (SIGSTOP) still owns its file: start rejects with ADDRESS_IN_USE', { timeout: 40_000 }, async (t) => {
  const socketPath = uniqueSocketPath('frozen');
  const id = uniqueId('frozen');
  let frozen: IChild | undefined = await spawnServer(socketPath, id);
  const intruder = serverOn(socketPath, id, { autoCleanupSocketFile: true });
  const client = clientOn(socketPath, id);
  t.after(async () => {
    await client.disconnect();
    await intruder.stop({ graceMs: 0 });
    frozen?.child.kill('SIGCONT');
    await frozen?.kill();
    fs.rmSync(socketPath, { force: true });
  });
  const inode = fs.statSync(socketPath).ino;
  frozen.child.kill('SIGSTOP');
  await expectIpcError(intruder.start(), 'ADDRESS_IN_USE', 10_000);
  assert.equal(fs.statSync(socketPath).ino, inode);
  frozen.child.kill('SIGCONT');
  await client.connect();
  assert.equal(await client.request('pid'), frozen.pid);
});

test('a path that is not a socket is never removed by autoCleanupSocketFile', { timeout: 10_000 }, async (t) => {
  const socketPath = uniqueSocketPath('regular');
  fs.writeFileSync(socketPath, 'precious data');
  const server = serverOn(socketPath, uniqueId('regular'), { autoCleanupSocketFile: true });
  t.after(async () => {
    await server.stop({ graceMs: 0 });
    fs.rmSync(socketPath, { force: true });
  });
  await expectIpcError(server.start(), 'ADDRESS_IN_USE', 5_000);
  assert.equal(fs.readFileSync(socketPath, 'utf8'), 'precious data');
});

test('socketMode sets the permissions of the socket file', { timeout: 10_000 }, async (t) => {
  for (const mode of [0o600, 0o660]) {
    const socketPath = uniqueSocketPath('mode');
    const server = serverOn(socketPath, uniqueId('mode'), { socketMode: mode });
    t.after(async () => {
      await server.stop({ graceMs: 0 });
      fs.rmSync(socketPath, { force: true });
    });
    await server.start();
    const stat = fs.lstatSync(socketPath);
    assert.ok(stat.isSocket());
    assert.equal(stat.mode & 0o777, mode, `mode ${mode.toString(8)}`);
  }
});

test('readyWhen accepting: ready is emitted and getIsReady() is true before start resolves, and a connect without retry succeeds at once', { timeout: 20_000 }, async (t) => {
  const socketPath = uniqueSocketPath('ready');
  const id = uniqueId('ready');
  let server: IpcServer | undefined;
  t.after(async () => {
    await server?.stop({ graceMs: 0 });
    fs.rmSync(socketPath, { force: true });
  });
  // Several rounds on the same path: a restart is ready as soon as start() says so.
  for (let round = 0; round < 5; round++) {
    server = serverOn(socketPath, id);
    const events: string[] = [];
    server.on('start', () => events.push('start'));
    server.on('ready', () => events.push(`ready(${server!.getIsReady()})`));
    assert.equal(server.getIsReady(), false);
    await server.start({ readyWhen: 'accepting' });
    assert.deepEqual(events, ['start', 'ready(true)']);
    assert.equal(server.getIsReady(), true);
    const client = clientOn(socketPath, id);
    await client.connect();
    assert.equal(await client.request('pid'), process.pid);
    await client.disconnect();
    const stopped = waitForEvent(server, 'stop', 5_000);
    await server.stop();
    await stopped;
    assert.equal(server.getIsReady(), false);
  }
});
