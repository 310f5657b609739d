// Connecting and the handshake: every refusal a connect can meet, by code, and the
// duplicate-clientId policy (the newest connection wins).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { EFrameKind, IpcError, SmartIpc, type IRejectPayload, type IWelcomePayload } from '../ts/internal.js';
import {
  TRANSPORTS,
  collectFrames,
  createPair,
  expectIpcError,
  helloFrame,
  makeClient,
  rawConnect,
  serverEndpoint,
  spawnChildServer,
  startServer,
  uniqueId,
  uniqueSocketPath,
  waitForClose,
  waitForEvent,
  waitUntil,
  watchConnections,
  type TClientEndpoint,
} from './helpers/fixtures.js';

const T = { timeout: 20_000 };

/** A plain net server that accepts and never says a word (a hung or foreign service). */
async function silentServer(endpoint: TClientEndpoint): Promise<{ endpoint: TClientEndpoint; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen('socketPath' in endpoint ? { path: endpoint.socketPath } : { host: endpoint.host, port: endpoint.port }, resolve));
  const address = server.address();
  const bound: TClientEndpoint = typeof address === 'string' ? { socketPath: address } : { host: '127.0.0.1', port: address!.port };
  return {
    endpoint: bound,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A TCP port nothing listens on right now. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

for (const kind of TRANSPORTS) {
  describe(`handshake over ${kind}`, () => {
    test('ID_MISMATCH when the client asks for another service id', T, async (t) => {
      const started = await startServer(kind);
      t.after(() => started.stop());
      const client = makeClient(started, { id: 'some-other-service' });
      t.after(() => client.disconnect());
      await expectIpcError(client.connect(), 'ID_MISMATCH');
      assert.equal(client.getIsConnected(), false);
      assert.deepEqual(started.server.getClientIds(), []);
      // Not retried: a mismatch is permanent even with connectRetry on.
      const retrying = makeClient(started, { id: 'some-other-service', connectRetry: { enabled: true, initialDelay: 10, maxAttempts: 50 } });
      t.after(() => retrying.disconnect());
      const begun = performance.now();
      await expectIpcError(retrying.connect(), 'ID_MISMATCH');
      assert.ok(performance.now() - begun < 2_000);
    });

    test('PROTOCOL_ERROR when the serializations differ', T, async (t) => {
      const started = await startServer(kind, { serialization: 'json' });
      t.after(() => started.stop());
      const client = makeClient(started, { serialization: 'advanced' });
      t.after(() => client.disconnect());
      await expectIpcError(client.connect(), 'PROTOCOL_ERROR');
      const advanced = await startServer(kind, { serialization: 'advanced' });
      t.after(() => advanced.stop());
      const jsonClient = makeClient(advanced, { serialization: 'json' });
      t.after(() => jsonClient.disconnect());
      await expectIpcError(jsonClient.connect(), 'PROTOCOL_ERROR');
    });

    test('PROTOCOL_ERROR for a HELLO of another protocol version (raw socket)', T, async (t) => {
      const started = await startServer(kind);
      t.after(() => started.stop());
      const socket = await rawConnect(started.endpoint);
      t.after(() => socket.destroy());
      const frames = collectFrames(socket);
      const closed = waitForClose(socket);
      socket.write(helloFrame({ serverId: started.id, protocolVersion: 999 }));
      await closed;
      assert.equal(frames.length, 1);
      assert.equal(frames[0].kind, EFrameKind.Reject);
      const body = JSON.parse(frames[0].payload.toString('utf8')) as IRejectPayload;
      assert.equal(body.code, 'PROTOCOL_ERROR');
      assert.deepEqual(started.server.getClientIds(), []);
      // A correct raw HELLO is welcomed.
      const good = await rawConnect(started.endpoint);
      t.after(() => good.destroy());
      const goodFrames = collectFrames(good);
      good.write(helloFrame({ serverId: started.id, clientId: 'raw-good' }));
      await waitUntil(() => goodFrames.length > 0, 5_000, 'WELCOME');
      assert.equal(goodFrames[0].kind, EFrameKind.Welcome);
      const welcome = JSON.parse(goodFrames[0].payload.toString('utf8')) as IWelcomePayload;
      assert.equal(welcome.serverId, started.id);
      assert.equal(welcome.clientId, 'raw-good');
      await waitUntil(() => started.server.getClientIds().includes('raw-good'), 5_000, 'raw client registered');
    });

    test('TOO_MANY_CLIENTS beyond maxClients; room again once one leaves', T, async (t) => {
      const pair = await createPair(kind, { server: { maxClients: 2 } });
      t.after(() => pair.close());
      const second = await pair.addClient();
      const third = makeClient(pair);
      t.after(() => third.disconnect());
      await expectIpcError(third.connect(), 'TOO_MANY_CLIENTS');
      assert.equal(pair.server.getClientIds().length, 2);
      // The same clientId reconnecting is a replacement, not a third client.
      const replacement = makeClient(pair, { clientId: second.getClientId() });
      t.after(() => replacement.disconnect());
      await replacement.connect();
      assert.equal(pair.server.getClientIds().length, 2);
      const left = waitForEvent(pair.server, 'clientDisconnect');
      await pair.client.disconnect();
      await left;
      await waitUntil(() => pair.server.getClientIds().length === 1, 5_000, 'one client left');
      await third.connect();
      assert.equal(third.getIsConnected(), true);
    });

    test('REGISTER_TIMEOUT when the endpoint accepts but never answers the handshake', T, async (t) => {
      const silent = await silentServer(serverEndpoint(kind, 'silent'));
      t.after(() => silent.close());
      const client = SmartIpc.createClient({ ...silent.endpoint, id: uniqueId('silent'), clientOnly: true, registerTimeoutMs: 200 } as Parameters<typeof SmartIpc.createClient>[0]);
      t.after(() => client.disconnect());
      const begun = performance.now();
      await expectIpcError(client.connect(), 'REGISTER_TIMEOUT', 5_000);
      assert.ok(performance.now() - begun >= 150, 'not before registerTimeoutMs');
      assert.equal(client.getIsConnected(), false);
    });

    test('the server drops a connection that never sends its HELLO (registerTimeoutMs)', T, async (t) => {
      const started = await startServer(kind, { registerTimeoutMs: 200 });
      t.after(() => started.stop());
      let connects = 0;
      started.server.on('clientConnect', () => connects++);
      const socket = await rawConnect(started.endpoint);
      t.after(() => socket.destroy());
      await waitForClose(socket, 5_000);
      assert.equal(connects, 0);
      // The server still serves.
      const client = makeClient(started);
      t.after(() => client.disconnect());
      await client.connect();
    });

    test('duplicate clientId: the newer connection wins, the older client sees disconnect', T, async (t) => {
      const started = await startServer(kind);
      t.after(() => started.stop());
      const clientId = uniqueId('dup');
      const older = makeClient(started, { clientId });
      const newer = makeClient(started, { clientId });
      t.after(() => older.disconnect());
      t.after(() => newer.disconnect());
      older.onMessage('who', () => 'older');
      newer.onMessage('who', () => 'newer');
      await older.connect();
      assert.equal(await started.server.requestClient(clientId, 'who'), 'older');
      const olderLost = waitForEvent<[IpcError]>(older, 'disconnect');
      await newer.connect();
      const [reason] = await olderLost;
      assert.ok(reason instanceof IpcError);
      assert.equal(reason.code, 'CONNECTION_LOST');
      assert.equal(older.getIsConnected(), false);
      assert.equal(newer.getIsConnected(), true);
      // Give the old connection's close time to be processed on the server too.
      started.server.onMessage('sync', () => true);
      await newer.request('sync');
      assert.deepEqual(started.server.getClientIds(), [clientId]);
      assert.equal(await started.server.requestClient(clientId, 'who'), 'newer');
      await expectIpcError(older.request('sync'), 'NOT_CONNECTED');
    });

    test('duplicate clientId: the server reports the old one leaving before the new one arrives, and the replaced client does not fight back', T, async (t) => {
      const started = await startServer(kind);
      t.after(() => started.stop());
      const clientId = uniqueId('dup');
      const events: string[] = [];
      started.server.on('clientConnect', (id) => events.push(`connect:${id}`));
      started.server.on('clientDisconnect', (id) => events.push(`disconnect:${id}`));
      // Both would reconnect by default; the replaced one must not, or the two would evict each other forever.
      const older = makeClient(started, { clientId, reconnect: { enabled: true, initialDelay: 10, maxDelay: 20 } });
      const newer = makeClient(started, { clientId, reconnect: { enabled: true, initialDelay: 10, maxDelay: 20 } });
      t.after(() => older.disconnect());
      t.after(() => newer.disconnect());
      let olderReconnects = 0;
      older.on('reconnecting', () => olderReconnects++);
      await older.connect();
      const [reason] = await Promise.all([waitForEvent<[IpcError]>(older, 'disconnect'), newer.connect()]).then(([args]) => args);
      assert.equal(reason.code, 'CONNECTION_LOST');
      assert.match(reason.message, /replaced/);
      assert.deepEqual(events, [`connect:${clientId}`, `disconnect:${clientId}`, `connect:${clientId}`]);
      // Well past the reconnect delays: still no reconnect attempt, and no late disconnect event.
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(olderReconnects, 0);
      assert.equal(older.getIsConnected(), false);
      assert.equal(newer.getIsConnected(), true);
      assert.deepEqual(events, [`connect:${clientId}`, `disconnect:${clientId}`, `connect:${clientId}`]);
      assert.deepEqual(started.server.getClientIds(), [clientId]);
    });
  });
}

describe('connect failures', () => {
  test('SERVER_UNAVAILABLE when no server listens (socket path: ENOENT)', T, async () => {
    const client = SmartIpc.createClient({ id: uniqueId('none'), socketPath: uniqueSocketPath('none'), clientOnly: true });
    const err = await expectIpcError(client.connect(), 'SERVER_UNAVAILABLE');
    assert.equal((err.cause as NodeJS.ErrnoException | undefined)?.code, 'ENOENT');
    await client.disconnect();
  });

  test('SERVER_UNAVAILABLE when no server listens (TCP: ECONNREFUSED)', T, async () => {
    const port = await closedPort();
    const client = SmartIpc.createClient({ id: uniqueId('none'), host: '127.0.0.1', port, clientOnly: true });
    const err = await expectIpcError(client.connect(), 'SERVER_UNAVAILABLE');
    assert.equal((err.cause as NodeJS.ErrnoException | undefined)?.code, 'ECONNREFUSED');
    await client.disconnect();
  });

  test('SERVER_UNAVAILABLE after connectRetry is spent: exactly maxAttempts real dials, then none', T, async (t) => {
    const socketPath = uniqueSocketPath('none');
    const dials = watchConnections({ socketPath });
    t.after(() => dials.dispose());
    const client = SmartIpc.createClient({
      id: uniqueId('none'),
      socketPath,
      clientOnly: true,
      connectRetry: { enabled: true, initialDelay: 10, maxDelay: 20, maxAttempts: 3 },
    });
    const err = await expectIpcError(client.connect(), 'SERVER_UNAVAILABLE', 5_000);
    assert.match(err.message, /gave up after 3 attempts/);
    assert.equal((err.cause as NodeJS.ErrnoException | undefined)?.code, 'ENOENT');
    await waitUntil(() => dials.failedDials.length >= 3, 2_000, 'three dials seen');
    // well past maxDelay: a fourth dial would have happened by now
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(dials.failedDials, ['ENOENT', 'ENOENT', 'ENOENT']);
    await client.disconnect();
  });

  test('SERVER_UNAVAILABLE for a socket file nobody answers on (ECONNREFUSED)', { timeout: 30_000 }, async (t) => {
    const socketPath = uniqueSocketPath('stale');
    t.after(() => fs.rmSync(socketPath, { force: true }));
    const child = await spawnChildServer('child.hangserver.ts', [uniqueId('stale'), socketPath]);
    await child.kill();
    assert.ok(fs.existsSync(socketPath), 'a killed server leaves its socket file behind');
    const client = SmartIpc.createClient({ id: 'stale', socketPath, clientOnly: true });
    const err = await expectIpcError(client.connect(), 'SERVER_UNAVAILABLE');
    assert.equal((err.cause as NodeJS.ErrnoException | undefined)?.code, 'ECONNREFUSED');
    await client.disconnect();
  });
});

describe('binding the endpoint', () => {
  test('ADDRESS_IN_USE for a second server on a live socket path; the first keeps serving', T, async (t) => {
    const first = await startServer('unix');
    t.after(() => first.stop());
    const socketPath = (first.endpoint as { socketPath: string }).socketPath;
    for (const autoCleanupSocketFile of [false, true]) {
      const second = SmartIpc.createServer({ id: uniqueId('second'), socketPath, autoCleanupSocketFile });
      await expectIpcError(second.start(), 'ADDRESS_IN_USE');
      assert.equal(second.getIsReady(), false);
    }
    assert.ok(fs.existsSync(socketPath), 'the live server\'s socket file is left alone');
    first.server.onMessage('ok', () => 'still serving');
    const client = makeClient(first);
    t.after(() => client.disconnect());
    await client.connect();
    assert.equal(await client.request('ok'), 'still serving');
  });

  test('ADDRESS_IN_USE for a second server on a bound TCP port', T, async (t) => {
    const first = await startServer('tcp');
    t.after(() => first.stop());
    const port = (first.endpoint as { port: number }).port;
    const second = SmartIpc.createServer({ id: uniqueId('second'), host: '127.0.0.1', port });
    await expectIpcError(second.start(), 'ADDRESS_IN_USE');
  });

  test('a stale socket file: ADDRESS_IN_USE without autoCleanupSocketFile, removed with it', { timeout: 30_000 }, async (t) => {
    const socketPath = uniqueSocketPath('stale');
    t.after(() => fs.rmSync(socketPath, { force: true }));
    const child = await spawnChildServer('child.hangserver.ts', [uniqueId('stale'), socketPath]);
    await child.kill();
    assert.ok(fs.existsSync(socketPath));
    const strict = SmartIpc.createServer({ id: uniqueId('strict'), socketPath });
    await expectIpcError(strict.start(), 'ADDRESS_IN_USE');
    const cleaning = SmartIpc.createServer({ id: uniqueId('cleaning'), socketPath, autoCleanupSocketFile: true });
    await cleaning.start();
    t.after(() => cleaning.stop({ graceMs: 0 }));
    assert.equal(cleaning.getIsReady(), true);
  });

  test('getAddress gives the real port for port 0 and the path for a socket', T, async (t) => {
    const tcp = await startServer('tcp');
    t.after(() => tcp.stop());
    const address = tcp.server.getAddress();
    assert.ok(address && 'port' in address && address.port > 0);
    const unix = await startServer('unix');
    t.after(() => unix.stop());
    assert.deepEqual(unix.server.getAddress(), unix.endpoint);
  });
});
