// Requests, messages, server-to-client traffic, stats and events, and every request-time error
// code, on real Unix sockets and real TCP (port 0).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { IpcError, SmartIpc, type IpcClient } from '../ts/index.js';
import {
  TRANSPORTS,
  createPair,
  expectIpcError,
  makeClient,
  spawnChildServer,
  startServer,
  uniqueId,
  uniqueSocketPath,
  waitForEvent,
  waitUntil,
  withTimeout,
  type TClientEndpoint,
} from './helpers/fixtures.js';

const T = { timeout: 20_000 };

/** A promise and its resolver, for handlers a test releases by hand. */
function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}

for (const kind of TRANSPORTS) {
  describe(`requests and messages over ${kind}`, () => {
    test('a request gets its handler\'s return value; the handler sees clientId, headers and isRequest', T, async (t) => {
      const pair = await createPair(kind, { client: { metadata: { role: 'tester' } } });
      t.after(() => pair.close());
      const seen: unknown[] = [];
      pair.server.onMessage('add', (data: { a: number; b: number }, clientId, context) => {
        seen.push({ clientId, headers: context.headers, isRequest: context.isRequest, type: context.type });
        return { sum: data.a + data.b };
      });
      const result = await pair.client.request<{ a: number; b: number }, { sum: number }>('add', { a: 2, b: 40 }, { headers: { trace: 'x1' } });
      assert.deepEqual(result, { sum: 42 });
      assert.deepEqual(seen, [{ clientId: pair.client.getClientId(), headers: { trace: 'x1' }, isRequest: true, type: 'add' }]);
      // An async handler, undefined data, and an undefined answer.
      pair.server.onMessage('later', async (data: unknown) => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        return data === undefined ? 'no data' : 'data';
      });
      assert.equal(await pair.client.request('later'), 'no data');
      pair.server.onMessage('nothing', () => undefined);
      assert.equal(await pair.client.request('nothing', 1), undefined);
    });

    test('2,000 concurrent requests each get their own answer', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      pair.server.onMessage('echo', async (data: { i: number }, clientId) => {
        // Answer out of order.
        if (data.i % 3 === 0) await new Promise((resolve) => setImmediate(resolve));
        if (data.i % 7 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
        return { i: data.i, doubled: data.i * 2, clientId };
      });
      const count = 2_000;
      const answers = await withTimeout(
        Promise.all(Array.from({ length: count }, (_, i) => pair.client.request<{ i: number }, { i: number; doubled: number; clientId: string }>('echo', { i }))),
        15_000,
        '2,000 requests',
      );
      for (let i = 0; i < count; i++) assert.deepEqual(answers[i], { i, doubled: i * 2, clientId: pair.client.getClientId() });
      assert.equal(pair.client.getStats().metrics.requestsInFlight, 0);
    });

    test('10,000 fire-and-forget messages arrive in the order sent, both directions', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const count = 10_000;
      const atServer: number[] = [];
      const atClient: number[] = [];
      pair.server.onMessage('seq', (n: number) => {
        atServer.push(n);
      });
      pair.client.onMessage('seq', (n: number) => {
        atClient.push(n);
      });
      const sends: Promise<void>[] = [];
      for (let i = 0; i < count; i++) {
        sends.push(pair.client.sendMessage('seq', i));
        sends.push(pair.server.sendToClient(pair.client.getClientId(), 'seq', i));
      }
      await Promise.all(sends);
      await waitUntil(() => atServer.length === count && atClient.length === count, 15_000, 'all messages delivered');
      for (let i = 0; i < count; i++) {
        if (atServer[i] !== i) assert.fail(`server got ${atServer[i]} at position ${i}`);
        if (atClient[i] !== i) assert.fail(`client got ${atClient[i]} at position ${i}`);
      }
    });

    test('the server requests a client; the client\'s handler answers or fails', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      pair.client.onMessage('whoami', (data: { nonce: number }, serverId, context) => ({ nonce: data.nonce, serverId, isRequest: context.isRequest }));
      pair.client.onMessage('boom', () => {
        throw new RangeError('client says no');
      });
      const answer = await pair.server.requestClient(pair.client.getClientId(), 'whoami', { nonce: 5 });
      assert.deepEqual(answer, { nonce: 5, serverId: pair.id, isRequest: true });
      const err = await expectIpcError(pair.server.requestClient(pair.client.getClientId(), 'boom', {}), 'HANDLER_ERROR');
      assert.equal(err.remote?.name, 'RangeError');
      await expectIpcError(pair.server.requestClient(pair.client.getClientId(), 'unknown-type', {}), 'NO_HANDLER');
      await expectIpcError(pair.server.requestClient(pair.client.getClientId(), 'whoami', { nonce: 1 }, { timeout: 50, signal: AbortSignal.abort() }), 'ABORTED');
      // Interleaved with client->server requests on the same connection.
      pair.server.onMessage('ping', () => 'pong');
      const [a, b] = await Promise.all([pair.client.request('ping'), pair.server.requestClient(pair.client.getClientId(), 'whoami', { nonce: 9 })]);
      assert.equal(a, 'pong');
      assert.deepEqual(b, { nonce: 9, serverId: pair.id, isRequest: true });
    });

    test('sendToClient, broadcast and broadcastTo reach exactly the clients meant', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const c2 = await pair.addClient();
      const c3 = await pair.addClient();
      const clients = [pair.client, c2, c3];
      const inbox = new Map<IpcClient, Array<[string, unknown]>>(clients.map((c) => [c, []]));
      for (const c of clients) {
        for (const type of ['direct', 'all', 'some']) c.onMessage(type, (data: unknown) => void inbox.get(c)!.push([type, data]));
      }
      await pair.server.sendToClient(c2.getClientId(), 'direct', { to: 2 });
      await pair.server.broadcast('all', 'everyone');
      const partial = pair.server.broadcastTo([pair.client.getClientId(), c3.getClientId(), 'nobody-here'], 'some', 13);
      await expectIpcError(partial, 'CLIENT_NOT_FOUND');
      await expectIpcError(pair.server.sendToClient('nobody-here', 'direct', 1), 'CLIENT_NOT_FOUND');
      await expectIpcError(pair.server.requestClient('nobody-here', 'direct', 1), 'CLIENT_NOT_FOUND');
      // A round trip on each connection proves everything sent before it has arrived.
      pair.server.onMessage('sync', () => true);
      await Promise.all(clients.map((c) => c.request('sync')));
      assert.deepEqual(inbox.get(pair.client), [['all', 'everyone'], ['some', 13]]);
      assert.deepEqual(inbox.get(c2), [['direct', { to: 2 }], ['all', 'everyone']]);
      assert.deepEqual(inbox.get(c3), [['all', 'everyone'], ['some', 13]]);
    });

    test('getClientIds and getClientInfo describe the connected clients', T, async (t) => {
      const pair = await createPair(kind, { client: { metadata: { name: 'first', n: 1 } } });
      t.after(() => pair.close());
      const before = Date.now();
      const c2 = await pair.addClient({ clientId: uniqueId('named'), metadata: { name: 'second' } });
      assert.deepEqual(new Set(pair.server.getClientIds()), new Set([pair.client.getClientId(), c2.getClientId()]));
      const info = pair.server.getClientInfo(c2.getClientId());
      assert.ok(info);
      assert.equal(info.clientId, c2.getClientId());
      assert.deepEqual(info.metadata, { name: 'second' });
      assert.ok(info.connectedAt >= before - 1_000 && info.connectedAt <= Date.now());
      assert.deepEqual(pair.server.getClientInfo(pair.client.getClientId())?.metadata, { name: 'first', n: 1 });
      assert.equal(pair.server.getClientInfo('nobody'), undefined);
      // lastActivity moves with traffic.
      pair.server.onMessage('touch', () => true);
      await new Promise((resolve) => setTimeout(resolve, 15));
      await c2.request('touch');
      assert.ok(pair.server.getClientInfo(c2.getClientId())!.lastActivity > info.connectedAt);
      // A client that leaves is no longer listed.
      const gone = waitForEvent(pair.server, 'clientDisconnect');
      await c2.disconnect();
      await gone;
      assert.deepEqual(pair.server.getClientIds(), [pair.client.getClientId()]);
      assert.equal(pair.server.getClientInfo(c2.getClientId()), undefined);
    });

    test('getStats counts messages, bytes, errors and requests in flight', T, async (t) => {
      const pair = await createPair(kind, { server: { heartbeat: false }, client: { heartbeat: false } });
      t.after(() => pair.close());
      const held = gate();
      pair.server.onMessage('ok', () => 'fine');
      pair.server.onMessage('note', () => undefined);
      pair.server.onMessage('slow', () => held.promise);
      pair.server.onMessage('fail', () => {
        throw new Error('nope');
      });
      const serverStart = pair.server.getStats();
      assert.equal(serverStart.isRunning, true);
      assert.equal(serverStart.connectedClients, 1);
      assert.ok(serverStart.totalConnections >= 1);
      assert.ok(serverStart.uptime >= 0);
      const clientStart = pair.client.getStats();
      assert.equal(clientStart.connected, true);
      assert.equal(clientStart.clientId, pair.client.getClientId());

      for (let i = 0; i < 5; i++) await pair.client.request('ok');
      await pair.client.sendMessage('note', 1);
      await pair.client.sendMessage('note', 2);
      const slow = [pair.client.request('slow'), pair.client.request('slow'), pair.client.request('slow')];
      await waitUntil(() => pair.server.getStats().metrics.requestsInFlight === 3, 5_000, 'server sees 3 requests in flight');
      assert.equal(pair.client.getStats().metrics.requestsInFlight, 3);
      held.open();
      await Promise.all(slow);
      await expectIpcError(pair.client.request('fail'), 'HANDLER_ERROR');

      const server = pair.server.getStats().metrics;
      const client = pair.client.getStats().metrics;
      // 5 ok + 2 notes + 3 slow + 1 fail
      assert.equal(client.messagesSent - clientStart.metrics.messagesSent, 11);
      assert.equal(server.messagesReceived - serverStart.metrics.messagesReceived, 11);
      assert.equal(server.messagesSent - serverStart.metrics.messagesSent, 9);
      assert.equal(client.messagesReceived - clientStart.metrics.messagesReceived, 9);
      assert.equal(server.requestsInFlight, 0);
      assert.equal(client.requestsInFlight, 0);
      assert.equal(server.errors - serverStart.metrics.errors, 1, 'a handler failure counts as a server error');
      assert.ok(client.bytesSent > clientStart.metrics.bytesSent);
      assert.ok(client.bytesReceived > clientStart.metrics.bytesReceived);
      assert.ok(server.bytesReceived - serverStart.metrics.bytesReceived >= client.bytesSent - clientStart.metrics.bytesSent);
      assert.ok(client.bytesReceived - clientStart.metrics.bytesReceived >= server.bytesSent - serverStart.metrics.bytesSent);
    });

    test('events: clientConnect, connect, disconnect and clientDisconnect', T, async (t) => {
      const started = await startServer(kind);
      t.after(() => started.stop());
      const client = makeClient(started, { metadata: { hello: 'world' } });
      t.after(() => client.disconnect());
      const serverSaw = waitForEvent<[string, Record<string, unknown>]>(started.server, 'clientConnect');
      const clientSaw = waitForEvent(client, 'connect');
      await client.connect();
      const [clientId, metadata] = await serverSaw;
      await clientSaw;
      assert.equal(clientId, client.getClientId());
      assert.deepEqual(metadata, { hello: 'world' });
      assert.equal(client.getIsConnected(), true);

      const serverLost = waitForEvent<[string, IpcError]>(started.server, 'clientDisconnect');
      const clientLost = waitForEvent<[IpcError]>(client, 'disconnect');
      await client.disconnect();
      const [lostId, reason] = await serverLost;
      assert.equal(lostId, client.getClientId());
      assert.ok(reason instanceof IpcError);
      assert.equal(reason.code, 'CONNECTION_LOST');
      const [clientReason] = await clientLost;
      assert.ok(clientReason instanceof IpcError);
      // This side's own disconnect(): CLOSED, not a lost connection. The server saw it leave: CONNECTION_LOST.
      assert.equal(clientReason.code, 'CLOSED');
      assert.equal(client.getIsConnected(), false);

      // Seen from the client, a server that stops is a disconnect with CONNECTION_LOST.
      const again = makeClient(started);
      t.after(() => again.disconnect());
      await again.connect();
      const dropped = waitForEvent<[IpcError]>(again, 'disconnect');
      await started.server.stop({ graceMs: 0 });
      const [dropReason] = await dropped;
      assert.equal(dropReason.code, 'CONNECTION_LOST');
    });
  });

  describe(`request errors over ${kind}`, () => {
    test('HANDLER_ERROR carries what the handler threw (name, message, code)', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      pair.server.onMessage('coded', () => {
        const err = new Error('disk is full') as Error & { code: string };
        err.code = 'ENOSPC';
        throw err;
      });
      pair.server.onMessage('typed', async () => {
        throw new TypeError('bad type');
      });
      pair.server.onMessage('string', () => {
        throw 'just a string';
      });
      const coded = await expectIpcError(pair.client.request('coded'), 'HANDLER_ERROR');
      assert.equal(coded.message, 'disk is full');
      assert.deepEqual(coded.remote, { name: 'Error', message: 'disk is full', code: 'ENOSPC' });
      const typed = await expectIpcError(pair.client.request('typed'), 'HANDLER_ERROR');
      assert.deepEqual(typed.remote, { name: 'TypeError', message: 'bad type' });
      const str = await expectIpcError(pair.client.request('string'), 'HANDLER_ERROR');
      assert.equal(str.remote?.message, 'just a string');
      // The connection is fine afterwards.
      pair.server.onMessage('ok', () => 1);
      assert.equal(await pair.client.request('ok'), 1);
    });

    test('a throwing message handler is reported as a server error event, not to the sender', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      pair.server.onMessage('oops', () => {
        throw new Error('handler broke');
      });
      const reported = waitForEvent<[IpcError, string]>(pair.server, 'error');
      await pair.client.sendMessage('oops', 1);
      const [error, clientId] = await reported;
      assert.equal(error.code, 'HANDLER_ERROR');
      assert.equal(clientId, pair.client.getClientId());
    });

    test('NO_HANDLER for a request type nobody handles', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      await expectIpcError(pair.client.request('nobody.handles.this', 1), 'NO_HANDLER');
      // An unhandled fire-and-forget message is dropped quietly; the link goes on.
      await pair.client.sendMessage('nobody.handles.this', 1);
      pair.server.onMessage('ok', () => 'ok');
      assert.equal(await pair.client.request('ok'), 'ok');
    });

    test('TIMEOUT from the timeout option and from the client\'s requestTimeout; a late answer is ignored', T, async (t) => {
      const pair = await createPair(kind, { client: { requestTimeout: 150 } });
      t.after(() => pair.close());
      const release = gate();
      pair.server.onMessage('slow', async () => {
        await release.promise;
        return 'late';
      });
      pair.server.onMessage('ok', () => 'ok');
      const started = performance.now();
      await expectIpcError(pair.client.request('slow', undefined, { timeout: 100 }), 'TIMEOUT');
      assert.ok(performance.now() - started >= 90, 'not before its timeout');
      await expectIpcError(pair.client.request('slow'), 'TIMEOUT', 5_000);
      release.open();
      // The late answers arrive and are dropped; the connection stays usable.
      assert.equal(await pair.client.request('ok', undefined, { timeout: 5_000 }), 'ok');
      assert.equal(pair.client.getStats().metrics.requestsInFlight, 0);
    });

    test('ABORTED for a signal aborted before sending and during the request', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      let calls = 0;
      const release = gate();
      pair.server.onMessage('slow', async () => {
        calls++;
        await release.promise;
        return 'done';
      });
      await expectIpcError(pair.client.request('slow', 1, { signal: AbortSignal.abort() }), 'ABORTED');
      const controller = new AbortController();
      const during = pair.client.request('slow', 2, { signal: controller.signal, timeout: 10_000 });
      await waitUntil(() => calls === 1, 5_000, 'handler called');
      controller.abort();
      const started = performance.now();
      await expectIpcError(during, 'ABORTED');
      assert.ok(performance.now() - started < 1_000);
      assert.equal(calls, 1, 'the request aborted before sending never reached the server');
      release.open();
      assert.equal(await pair.client.request('slow', 3), 'done');
    });

    test('CONNECTION_LOST at once for requests pending when the server stops', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      let calls = 0;
      pair.server.onMessage('hang', () => {
        calls++;
        return new Promise(() => undefined);
      });
      const started = performance.now();
      const pending = [1, 2, 3].map((i) => expectIpcError(pair.client.request('hang', i, { timeout: 30_000 }), 'CONNECTION_LOST', 5_000));
      await waitUntil(() => calls === 3, 5_000, 'handlers running');
      await pair.server.stop({ graceMs: 0 });
      await Promise.all(pending);
      assert.ok(performance.now() - started < 5_000, 'well before the 30 s timeout');
    });

    test('CONNECTION_LOST at once for requests pending when the server process is killed', { timeout: 30_000 }, async (t) => {
      const id = uniqueId('killed');
      const where = kind === 'unix' ? uniqueSocketPath('killed') : 'tcp:0';
      // A SIGKILLed server cannot remove its socket file: the test does.
      if (kind === 'unix') t.after(() => fs.rmSync(where, { force: true }));
      const child = await spawnChildServer('child.hangserver.ts', [id, where]);
      t.after(() => child.kill());
      const address = child.ready as TClientEndpoint;
      const endpoint: TClientEndpoint = 'socketPath' in address ? address : { host: '127.0.0.1', port: address.port };
      const client = makeClient({ id, endpoint }, { heartbeat: false });
      t.after(() => client.disconnect());
      await client.connect();
      assert.equal(await client.request('echo', 'alive'), 'alive');
      const started = performance.now();
      const pending = [1, 2].map((i) => expectIpcError(client.request('hang', i, { timeout: 30_000 }), 'CONNECTION_LOST', 10_000));
      const lost = waitForEvent<[IpcError]>(client, 'disconnect', 10_000);
      // A round trip after them proves the requests reached the child before it dies.
      assert.equal(await client.request('echo', 'still here'), 'still here');
      await child.kill();
      await Promise.all(pending);
      assert.ok(performance.now() - started < 10_000, 'well before the 30 s timeout');
      const [reason] = await lost;
      assert.ok(reason instanceof IpcError);
      assert.equal(reason.code, 'CONNECTION_LOST');
    });

    test('NOT_CONNECTED before connect and after a disconnect with reconnect disabled', T, async (t) => {
      const started = await startServer(kind);
      t.after(() => started.stop());
      const client = makeClient(started);
      t.after(() => client.disconnect());
      await expectIpcError(client.request('x', 1), 'NOT_CONNECTED');
      await expectIpcError(client.sendMessage('x', 1), 'NOT_CONNECTED');
      await client.connect();
      started.server.onMessage('x', () => 'y');
      assert.equal(await client.request('x'), 'y');
      await client.disconnect();
      await expectIpcError(client.request('x', 1), 'NOT_CONNECTED');
      await expectIpcError(client.sendMessage('x', 1), 'NOT_CONNECTED');

      // The server goes away and the client does not reconnect.
      const other = makeClient(started, { reconnect: { enabled: false } });
      t.after(() => other.disconnect());
      await other.connect();
      const dropped = waitForEvent(other, 'disconnect');
      await started.server.stop({ graceMs: 0 });
      await dropped;
      await expectIpcError(other.request('x', 1), 'NOT_CONNECTED');
      await expectIpcError(other.sendMessage('x', 1), 'NOT_CONNECTED');
      assert.equal(other.getIsConnected(), false);
    });

    test('MESSAGE_TOO_LARGE: an oversized send is refused locally and the connection stays usable', T, async (t) => {
      const limit = 64 * 1024;
      const pair = await createPair(kind, { server: { maxMessageSize: limit }, client: { maxMessageSize: limit } });
      t.after(() => pair.close());
      const received: number[] = [];
      pair.server.onMessage('size', (data: string) => {
        received.push(data.length);
        return data.length;
      });
      pair.client.onMessage('size', (data: string) => data.length);
      const big = 'x'.repeat(limit + 1);
      const disconnects: unknown[] = [];
      pair.client.on('disconnect', (reason) => disconnects.push(reason));
      await expectIpcError(pair.client.request('size', big), 'MESSAGE_TOO_LARGE');
      await expectIpcError(pair.client.sendMessage('size', big), 'MESSAGE_TOO_LARGE');
      await expectIpcError(pair.server.sendToClient(pair.client.getClientId(), 'size', big), 'MESSAGE_TOO_LARGE');
      await expectIpcError(pair.server.requestClient(pair.client.getClientId(), 'size', big), 'MESSAGE_TOO_LARGE');
      assert.equal(pair.client.getStats().metrics.requestsInFlight, 0);
      // Just under the limit still goes through, both ways.
      const fits = 'y'.repeat(limit - 1_024);
      assert.equal(await pair.client.request('size', fits), fits.length);
      assert.equal(await pair.server.requestClient(pair.client.getClientId(), 'size', fits), fits.length);
      assert.deepEqual(received, [fits.length]);
      assert.deepEqual(disconnects, []);
      assert.equal(pair.client.getIsConnected(), true);
    });

    test('MESSAGE_TOO_LARGE: a response over the requester\'s limit rejects that request only', T, async (t) => {
      const pair = await createPair(kind, { client: { maxMessageSize: 32 * 1024 } });
      t.after(() => pair.close());
      pair.server.onMessage('blob', (size: number) => 'z'.repeat(size));
      await expectIpcError(pair.client.request('blob', 100 * 1024, { timeout: 10_000 }), 'MESSAGE_TOO_LARGE');
      assert.equal((await pair.client.request<number, string>('blob', 1_000)).length, 1_000);
      assert.equal(pair.client.getIsConnected(), true);
    });
  });
}

describe('request errors independent of the transport', () => {
  test('requests to a client-only client fail with NOT_CONNECTED when no server ever answered', T, async () => {
    const client = SmartIpc.createClient({ id: uniqueId('none'), socketPath: uniqueSocketPath('none'), clientOnly: true });
    await expectIpcError(client.connect(), 'SERVER_UNAVAILABLE');
    await expectIpcError(client.request('x'), 'NOT_CONNECTED');
    await client.disconnect();
  });
});
