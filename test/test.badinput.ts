// Hostile or broken peers: bytes that are not frames, before and after a valid handshake, from a
// raw socket. The server reports messageError, drops only that connection and goes on serving;
// a well-behaved client connected at the same time does not notice.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { EFrameKind, EPayloadEncoding, IpcError, SmartIpc, encodeFrame, type IIpcClientOptions, type TIpcErrorCode } from '../ts/internal.js';
import {
  TRANSPORTS,
  collectFrames,
  createPair,
  expectIpcError,
  helloFrame,
  rawConnect,
  serverEndpoint,
  uniqueId,
  waitForClose,
  waitForEvent,
  waitUntil,
  withTimeout,
  type IPair,
  type TClientEndpoint,
} from './helpers/fixtures.js';

const T = { timeout: 20_000 };

function prefix(length: number): Buffer {
  const buf = Buffer.alloc(4);
  buf.writeUInt32BE(length >>> 0);
  return buf;
}

/** Inputs that are not valid frames, and the code the server must report for each. */
const GARBAGE: Array<{ name: string; bytes: Buffer; code: TIpcErrorCode }> = [
  { name: 'a 0xFFFFFFFF length prefix', bytes: Buffer.concat([prefix(0xffffffff), Buffer.alloc(1_000, 0x41)]), code: 'MESSAGE_TOO_LARGE' },
  { name: 'an HTTP request', bytes: Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), code: 'MESSAGE_TOO_LARGE' },
  { name: 'a length shorter than the header', bytes: Buffer.concat([prefix(3), Buffer.from([1, 2, 3])]), code: 'PROTOCOL_ERROR' },
  { name: 'an unknown frame kind', bytes: Buffer.concat([prefix(8), Buffer.from([0xee, 0, 0, 0, 0, 1, 0, 0])]), code: 'PROTOCOL_ERROR' },
  { name: 'unknown flag bits', bytes: Buffer.concat([prefix(8), Buffer.from([EFrameKind.Message, 0xf0, 0, 0, 0, 1, 0, 0])]), code: 'PROTOCOL_ERROR' },
];

/** Starts a slow request on the good client, so the test can prove it survives the bad peer. */
function inFlightOnGoodClient(pair: IPair): { result: Promise<string>; release: () => void } {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  pair.server.onMessage('slow', async (n: number) => {
    await released;
    return `slow ${n}`;
  });
  return { result: pair.client.request<number, string>('slow', 1, { timeout: 10_000 }), release };
}

async function assertGoodClientUnaffected(pair: IPair, inFlight: { result: Promise<string>; release: () => void }, disconnects: unknown[]): Promise<void> {
  inFlight.release();
  assert.equal(await inFlight.result, 'slow 1');
  pair.server.onMessage('echo', (data: unknown) => data);
  const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => pair.client.request('echo', i)));
  assert.deepEqual(answers, Array.from({ length: 50 }, (_, i) => i));
  assert.deepEqual(disconnects, [], 'the good client was never disconnected');
  assert.equal(pair.client.getIsConnected(), true);
}

for (const kind of TRANSPORTS) {
  describe(`bad input over ${kind}`, () => {
    for (const garbage of GARBAGE) {
      test(`before the handshake: ${garbage.name}`, T, async (t) => {
        const pair = await createPair(kind);
        t.after(() => pair.close());
        const disconnects: unknown[] = [];
        pair.client.on('disconnect', (reason) => disconnects.push(reason));
        const inFlight = inFlightOnGoodClient(pair);
        const reported = waitForEvent<[IpcError, string | undefined]>(pair.server, 'messageError');
        const socket = await rawConnect(pair.endpoint);
        t.after(() => socket.destroy());
        const closed = waitForClose(socket);
        socket.write(garbage.bytes);
        const [error, clientId] = await reported;
        assert.ok(error instanceof IpcError);
        assert.equal(error.code, garbage.code);
        assert.equal(clientId, undefined);
        await closed;
        assert.deepEqual(pair.server.getClientIds(), [pair.client.getClientId()]);
        await assertGoodClientUnaffected(pair, inFlight, disconnects);
      });

      test(`after a valid handshake: ${garbage.name}`, T, async (t) => {
        const pair = await createPair(kind);
        t.after(() => pair.close());
        const disconnects: unknown[] = [];
        pair.client.on('disconnect', (reason) => disconnects.push(reason));
        const inFlight = inFlightOnGoodClient(pair);
        const socket = await rawConnect(pair.endpoint);
        t.after(() => socket.destroy());
        const frames = collectFrames(socket);
        const rawId = uniqueId('raw');
        const registered = waitForEvent<[string]>(pair.server, 'clientConnect');
        socket.write(helloFrame({ serverId: pair.id, clientId: rawId }));
        assert.equal((await registered)[0], rawId);
        await waitUntil(() => frames.length > 0, 5_000, 'WELCOME');
        assert.equal(frames[0].kind, EFrameKind.Welcome);

        const reported = waitForEvent<[IpcError, string | undefined]>(pair.server, 'messageError');
        const dropped = waitForEvent<[string, IpcError]>(pair.server, 'clientDisconnect');
        const closed = waitForClose(socket);
        socket.write(garbage.bytes);
        const [error, clientId] = await reported;
        assert.equal(error.code, garbage.code);
        assert.equal(clientId, rawId);
        const [droppedId] = await dropped;
        assert.equal(droppedId, rawId);
        await closed;
        assert.deepEqual(pair.server.getClientIds(), [pair.client.getClientId()]);
        await assertGoodClientUnaffected(pair, inFlight, disconnects);
      });
    }

    test('before the handshake: a well-formed frame that is not a HELLO', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const reported = waitForEvent<[IpcError, string | undefined]>(pair.server, 'messageError');
      const socket = await rawConnect(pair.endpoint);
      t.after(() => socket.destroy());
      const closed = waitForClose(socket);
      socket.write(encodeFrame({ kind: EFrameKind.Request, encoding: EPayloadEncoding.Json, id: 1, type: 'sneaky', payload: '{}' }));
      const [error] = await reported;
      assert.equal(error.code, 'PROTOCOL_ERROR');
      await closed;
      pair.server.onMessage('ok', () => 'ok');
      assert.equal(await pair.client.request('ok'), 'ok');
    });

    test('a payload that does not decode: PROTOCOL_ERROR answer for a request, error event for a message; the peer stays', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      let calls = 0;
      pair.server.onMessage('data', () => {
        calls++;
        return 'handled';
      });
      const socket = await rawConnect(pair.endpoint);
      t.after(() => socket.destroy());
      const frames = collectFrames(socket);
      const registered = waitForEvent(pair.server, 'clientConnect');
      socket.write(helloFrame({ serverId: pair.id }));
      await registered;
      await waitUntil(() => frames.length === 1, 5_000, 'WELCOME');

      socket.write(encodeFrame({ kind: EFrameKind.Request, encoding: EPayloadEncoding.Json, id: 77, type: 'data', payload: '{not json' }));
      await waitUntil(() => frames.length === 2, 5_000, 'error response');
      assert.equal(frames[1].kind, EFrameKind.ErrorResponse);
      assert.equal(frames[1].id, 77);
      assert.equal(JSON.parse(frames[1].payload.toString('utf8')).code, 'PROTOCOL_ERROR');

      const reported = waitForEvent<[IpcError]>(pair.server, 'error');
      socket.write(encodeFrame({ kind: EFrameKind.Message, encoding: EPayloadEncoding.Json, id: 0, type: 'data', payload: '{still not json' }));
      assert.equal((await reported)[0].code, 'PROTOCOL_ERROR');
      assert.equal(calls, 0, 'the handler never saw undecodable data');

      // The raw peer is still connected and served.
      socket.write(encodeFrame({ kind: EFrameKind.Request, encoding: EPayloadEncoding.Json, id: 78, type: 'data', payload: '1' }));
      await waitUntil(() => frames.length === 3, 5_000, 'response');
      assert.equal(frames[2].kind, EFrameKind.Response);
      assert.equal(JSON.parse(frames[2].payload.toString('utf8')), 'handled');
    });

    test('a client drops a server that sends garbage after the WELCOME and reports it', T, async (t) => {
      const id = uniqueId('evil');
      const sockets = new Set<net.Socket>();
      const evil = net.createServer((socket) => {
        sockets.add(socket);
        socket.on('error', () => undefined);
        socket.once('data', () => {
          socket.write(encodeFrame({
            kind: EFrameKind.Welcome,
            encoding: EPayloadEncoding.Json,
            id: 0,
            type: '',
            payload: JSON.stringify({ serverId: id, clientId: 'x', protocolVersion: 1, serialization: 'json', maxMessageSize: 1024 * 1024 }),
          }));
          setTimeout(() => socket.write(Buffer.concat([prefix(0xffffffff), Buffer.alloc(64)])), 20);
        });
      });
      const endpoint = serverEndpoint(kind, 'evil');
      await new Promise<void>((resolve) => evil.listen('socketPath' in endpoint ? { path: endpoint.socketPath } : { host: endpoint.host, port: 0 }, resolve));
      t.after(async () => {
        for (const socket of sockets) socket.destroy();
        await new Promise<void>((resolve) => evil.close(() => resolve()));
      });
      const address = evil.address();
      const target: TClientEndpoint = typeof address === 'string' ? { socketPath: address } : { host: '127.0.0.1', port: address!.port };
      const client = SmartIpc.createClient({ ...target, id, clientOnly: true, reconnect: { enabled: false } } as IIpcClientOptions);
      t.after(() => client.disconnect());
      const reported = waitForEvent<[IpcError]>(client, 'error');
      const lost = waitForEvent<[IpcError]>(client, 'disconnect');
      await client.connect();
      const [error] = await reported;
      assert.equal(error.code, 'MESSAGE_TOO_LARGE');
      await lost;
      assert.equal(client.getIsConnected(), false);
      await expectIpcError(client.request('x'), 'NOT_CONNECTED');
    });

    test('many bad peers at once do not disturb a good client', { timeout: 30_000 }, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      let messageErrors = 0;
      pair.server.on('messageError', () => messageErrors++);
      pair.server.onMessage('echo', (data: unknown) => data);
      const bad = await Promise.all(Array.from({ length: 20 }, () => rawConnect(pair.endpoint)));
      t.after(() => bad.forEach((s) => s.destroy()));
      const closed = bad.map((s) => waitForClose(s, 10_000));
      const traffic = Promise.all(Array.from({ length: 200 }, (_, i) => pair.client.request('echo', i)));
      bad.forEach((socket, i) => socket.write(GARBAGE[i % GARBAGE.length].bytes));
      await withTimeout(Promise.all(closed), 10_000, 'bad peers dropped');
      assert.deepEqual(await traffic, Array.from({ length: 200 }, (_, i) => i));
      await waitUntil(() => messageErrors === bad.length, 5_000, 'one messageError per bad peer');
      assert.ok(pair.server.getStats().metrics.errors >= bad.length);
      assert.equal(pair.server.getStats().isRunning, true);
    });
  });
}
