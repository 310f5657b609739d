// Peers (issue 11): sendToPeer, requestPeer and listPeers, routed by clientId through the hub. The
// receiving handler's peerId is the sender's clientId (the hub sets it: a sender cannot pose as
// another), an unknown clientId is CLIENT_NOT_FOUND, cancellation follows the request, and bad
// peer frames from a raw socket are refused while the hub goes on. Real Unix sockets and TCP.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { EFrameKind, EPayloadEncoding, IpcError, encodeFrame, type IFrame, type IMessageContext, type IpcClient } from '../ts/internal.js';
import {
  TRANSPORTS,
  collectFrames,
  createPair,
  expectIpcError,
  helloFrame,
  isInvalidArgument,
  rawConnect,
  uniqueId,
  waitForEvent,
  waitUntil,
  withTimeout,
  type IPair,
} from './helpers/fixtures.js';

const T = { timeout: 30_000 };
const AT_ONCE_MS = 500;
const LONG_TIMEOUT_MS = 10_000;

function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}

async function timedRejection(promise: Promise<unknown>): Promise<{ error: IpcError; ms: number }> {
  const startedAt = performance.now();
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof IpcError, `expected an IpcError, got ${String(err)}`);
    return { error: err, ms: performance.now() - startedAt };
  }
  assert.fail('expected a rejection');
}

interface IRawPeer {
  socket: net.Socket;
  clientId: string;
  frames: IFrame[];
  answer(id: number, ms?: number): Promise<IFrame>;
}

async function rawPeer(t: TestContext, pair: IPair): Promise<IRawPeer> {
  const socket = await rawConnect(pair.endpoint);
  t.after(() => socket.destroy());
  socket.on('error', () => undefined);
  const frames = collectFrames(socket);
  const clientId = uniqueId('raw');
  socket.write(helloFrame({ serverId: pair.id, clientId }));
  await waitUntil(() => frames.length > 0, 5_000, 'WELCOME');
  assert.equal(frames[0].kind, EFrameKind.Welcome);
  await waitUntil(() => pair.server.getClientIds().includes(clientId), 5_000, 'raw peer registered');
  const find = (id: number) => frames.find((frame, i) => i > 0 && frame.id === id);
  return {
    socket,
    clientId,
    frames,
    answer: async (id, ms = 5_000) => {
      await waitUntil(() => find(id) !== undefined, ms, `an answer to frame ${id}`);
      return find(id)!;
    },
  };
}

function codeOf(frame: IFrame): string {
  return (JSON.parse(frame.payload.toString('utf8')) as { code: string }).code;
}

for (const kind of TRANSPORTS) {
  describe(`peers over ${kind}`, () => {
    test('sendToPeer reaches another client\'s onMessage handler, in order; its peerId is the sender\'s clientId', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const [a, b] = [pair.client, await pair.addClient()];
      const received: Array<{ seq: number; peerId: string; isRequest: boolean; blob: boolean }> = [];
      b.onMessage('note', (data: { seq: number; blob: Buffer }, peerId: string, ctx: IMessageContext) => {
        received.push({ seq: data.seq, peerId, isRequest: ctx.isRequest, blob: Buffer.isBuffer(data.blob) && data.blob.equals(Buffer.from([1, 2, 3])) });
      });
      for (let seq = 0; seq < 200; seq++) await a.sendToPeer(b.getClientId(), 'note', { seq, blob: Buffer.from([1, 2, 3]) });
      await waitUntil(() => received.length === 200, 5_000, '200 notes');
      assert.deepEqual(received.map((r) => r.seq), Array.from({ length: 200 }, (_, i) => i), 'in the order sent');
      assert.ok(received.every((r) => r.peerId === a.getClientId() && r.isRequest === false && r.blob), 'peerId, isRequest and the Buffer of every note');
      // Not to anyone else.
      const c = await pair.addClient();
      let cGot = 0;
      c.onMessage('note', () => void cGot++);
      await a.sendToPeer(b.getClientId(), 'note', { seq: 200, blob: Buffer.from([1, 2, 3]) });
      await waitUntil(() => received.length === 201, 5_000, 'one more note');
      assert.equal(cGot, 0);
    });

    test('requestPeer gets the handler\'s answer; the handler sees the sender\'s clientId, headers, a deadline and a signal', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const [a, b] = [pair.client, await pair.addClient()];
      const seen: Array<{ peerId: string; ctx: IMessageContext }> = [];
      b.onMessage('add', (data: { a: number; b: number; blob: Buffer }, peerId: string, ctx: IMessageContext) => {
        seen.push({ peerId, ctx });
        return { sum: data.a + data.b, blob: data.blob };
      });
      const blob = Buffer.alloc(100_000, 7);
      const answer = await a.requestPeer<unknown, { sum: number; blob: Buffer }>(b.getClientId(), 'add', { a: 2, b: 40, blob }, { timeout: 3_000, headers: { trace: 't1' } });
      assert.equal(answer.sum, 42);
      assert.ok(Buffer.isBuffer(answer.blob) && answer.blob.equals(blob), 'a Buffer went there and back intact');
      assert.equal(seen.length, 1);
      assert.equal(seen[0].peerId, a.getClientId());
      assert.equal(seen[0].ctx.isRequest, true);
      assert.equal(seen[0].ctx.type, 'add');
      assert.deepEqual(seen[0].ctx.headers, { trace: 't1' });
      assert.ok(seen[0].ctx.deadline !== undefined && seen[0].ctx.remainingMs() <= 3_000, `remainingMs ${seen[0].ctx.remainingMs()}`);
      assert.equal(seen[0].ctx.signal.aborted, false);
      // Both ways, and to oneself through the hub.
      a.onMessage('whoami', (_data: unknown, peerId: string) => peerId);
      b.onMessage('whoami', (_data: unknown, peerId: string) => peerId);
      assert.equal(await b.requestPeer(a.getClientId(), 'whoami'), b.getClientId());
      assert.equal(await a.requestPeer(a.getClientId(), 'whoami'), a.getClientId());
      // A handler that throws, a type nobody handles.
      b.onMessage('boom', () => {
        throw new RangeError('peer broke');
      });
      const broken = await expectIpcError(a.requestPeer(b.getClientId(), 'boom'), 'HANDLER_ERROR');
      assert.deepEqual(broken.remote, { name: 'RangeError', message: 'peer broke' });
      await expectIpcError(a.requestPeer(b.getClientId(), 'nobody-handles-this'), 'NO_HANDLER');
    });

    test('an unknown clientId: CLIENT_NOT_FOUND at once; invalid ids and types: INVALID_ARGUMENT', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const a = pair.client;
      const refused = await timedRejection(a.requestPeer('nobody-here', 'x', 1, { timeout: LONG_TIMEOUT_MS }));
      assert.equal(refused.error.code, 'CLIENT_NOT_FOUND');
      assert.ok(refused.ms < AT_ONCE_MS, `refused after ${refused.ms.toFixed(0)} ms`);
      // A peer that has left is unknown too.
      const b = await pair.addClient();
      const bId = b.getClientId();
      await b.disconnect();
      await waitUntil(() => !pair.server.getClientIds().includes(bId), 5_000, 'b gone');
      await expectIpcError(a.requestPeer(bId, 'x'), 'CLIENT_NOT_FOUND');
      // Fire-and-forget to nobody: nothing to answer, and nothing breaks.
      await a.sendToPeer('nobody-here', 'x', 1);
      for (const bad of ['', 'a\u0000b', 'x'.repeat(257), 42 as unknown as string]) {
        await assert.rejects(a.requestPeer(bad, 'x'), isInvalidArgument, `clientId ${JSON.stringify(bad)}`);
        await assert.rejects(a.sendToPeer(bad, 'x'), isInvalidArgument, `clientId ${JSON.stringify(bad)}`);
        await assert.rejects(a.requestPeer(pair.client.getClientId(), bad), isInvalidArgument, `type ${JSON.stringify(bad)}`);
        await assert.rejects(a.sendToPeer(pair.client.getClientId(), bad), isInvalidArgument, `type ${JSON.stringify(bad)}`);
      }
      a.onMessage('ping', () => 'pong');
      assert.equal(await a.requestPeer(a.getClientId(), 'ping'), 'pong');
    });

    test('listPeers() returns the connected clientIds and follows connects and disconnects', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const a = pair.client;
      assert.deepEqual(await a.listPeers(), [a.getClientId()]);
      const b = await pair.addClient({ clientId: uniqueId('peer-b') });
      const c = await pair.addClient({ clientId: uniqueId('peer-c') });
      assert.deepEqual((await a.listPeers()).sort(), [a, b, c].map((x) => x.getClientId()).sort());
      assert.deepEqual((await c.listPeers()).sort(), pair.server.getClientIds().sort());
      const left = waitForEvent(pair.server, 'clientDisconnect');
      await b.disconnect();
      await left;
      assert.deepEqual((await a.listPeers()).sort(), [a, c].map((x) => x.getClientId()).sort());
    });

    test('a peer request is cancelled when its caller aborts: the handler\'s signal aborts promptly, its late answer is dropped', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const [a, b] = [pair.client, await pair.addClient()];
      const started = gate();
      const aborted = gate<{ code: string; at: number }>();
      let answered = false;
      b.onMessage('slow', (_data: unknown, _peerId: string, ctx: IMessageContext) => {
        ctx.signal.addEventListener('abort', () => aborted.open({ code: (ctx.signal.reason as IpcError).code, at: performance.now() }));
        started.open();
        return new Promise((resolve) =>
          setTimeout(() => {
            answered = true;
            resolve('late');
          }, 2_000).unref(),
        );
      });
      const controller = new AbortController();
      const request = a.requestPeer(b.getClientId(), 'slow', undefined, { signal: controller.signal, timeout: LONG_TIMEOUT_MS });
      const rejection = timedRejection(request);
      await withTimeout(started.promise, 5_000, 'handler running');
      const abortedAt = performance.now();
      controller.abort();
      const { error, ms } = await rejection;
      assert.equal(error.code, 'ABORTED');
      assert.ok(ms < AT_ONCE_MS, `the caller rejected after ${ms.toFixed(0)} ms`);
      const handler = await withTimeout(aborted.promise, 2_000, 'handler signal');
      t.diagnostic(`peer request abort reached the handler after ${(handler.at - abortedAt).toFixed(2)} ms (over ${kind})`);
      assert.equal(handler.code, 'ABORTED');
      assert.ok(handler.at - abortedAt < 200, `the handler's signal aborted after ${(handler.at - abortedAt).toFixed(0)} ms`);
      assert.equal(answered, false);

      // A timeout reaches the handler the same way, as TIMEOUT.
      const timedOut = gate<string>();
      b.onMessage('slower', (_data: unknown, _peerId: string, ctx: IMessageContext) => {
        ctx.signal.addEventListener('abort', () => timedOut.open((ctx.signal.reason as IpcError).code));
        return new Promise(() => undefined);
      });
      const late = await timedRejection(a.requestPeer(b.getClientId(), 'slower', undefined, { timeout: 150 }));
      assert.equal(late.error.code, 'TIMEOUT');
      assert.ok(late.ms >= 145 && late.ms < 650, `timed out after ${late.ms.toFixed(0)} ms`);
      assert.equal(await withTimeout(timedOut.promise, 2_000, 'handler signal on timeout'), 'TIMEOUT');
    });

    test('a peer that leaves with a request in flight: the caller gets CONNECTION_LOST at once', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const [a, b] = [pair.client, await pair.addClient()];
      const started = gate();
      b.onMessage('hang', () => {
        started.open();
        return new Promise(() => undefined);
      });
      const rejection = timedRejection(a.requestPeer(b.getClientId(), 'hang', undefined, { timeout: LONG_TIMEOUT_MS }));
      await withTimeout(started.promise, 5_000, 'handler running');
      void b.disconnect();
      const { error, ms } = await rejection;
      assert.equal(error.code, 'CONNECTION_LOST');
      assert.ok(ms < LONG_TIMEOUT_MS / 2, `rejected after ${ms.toFixed(0)} ms`);
    });

    test('requestPeer in the advanced serialization keeps Buffers, Maps and Dates', T, async (t) => {
      const pair = await createPair(kind, { server: { serialization: 'advanced' }, client: { serialization: 'advanced' } });
      t.after(() => pair.close());
      const [a, b] = [pair.client, await pair.addClient()];
      b.onMessage('mirror', (data: unknown) => data);
      const data = { blob: Buffer.from([9, 8, 7]), map: new Map([['k', 1]]), at: new Date(1_700_000_000_000) };
      const back = await a.requestPeer<typeof data, typeof data>(b.getClientId(), 'mirror', data);
      assert.ok(Buffer.isBuffer(back.blob) && back.blob.equals(data.blob), 'the Buffer came back intact');
      assert.deepEqual(back.map, data.map);
      assert.deepEqual(back.at, data.at);
    });

    test('raw peer frames: no U+0000 is PROTOCOL_ERROR, an unknown target CLIENT_NOT_FOUND; the sender cannot pose as another client; the hub goes on', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const good: IpcClient = pair.client;
      const disconnects: unknown[] = [];
      good.on('disconnect', (reason) => disconnects.push(reason));
      const peerIds: string[] = [];
      good.onMessage('whoami', (_data: unknown, peerId: string) => {
        peerIds.push(peerId);
        return peerId;
      });
      const peer = await rawPeer(t, pair);
      const send = (kind: EFrameKind, id: number, type: string, payload = '1') => peer.socket.write(encodeFrame({ kind, encoding: EPayloadEncoding.Json, id, type, payload }));
      send(EFrameKind.PeerRequest, 1, 'no-separator');
      const noSeparator = await peer.answer(1);
      assert.equal(noSeparator.kind, EFrameKind.ErrorResponse);
      assert.equal(codeOf(noSeparator), 'PROTOCOL_ERROR');
      send(EFrameKind.PeerRequest, 2, 'nobody\u0000whoami');
      assert.equal(codeOf(await peer.answer(2)), 'CLIENT_NOT_FOUND');
      send(EFrameKind.PeerMessage, 0, 'no-separator');
      send(EFrameKind.PeerMessage, 0, `${good.getClientId()}\u0000`);
      // The type names the target; the hub tells the target who really sent it.
      send(EFrameKind.PeerRequest, 3, `${good.getClientId()}\u0000whoami`);
      const answer = await peer.answer(3);
      assert.equal(answer.kind, EFrameKind.Response);
      assert.equal(JSON.parse(answer.payload.toString('utf8')), peer.clientId);
      assert.deepEqual(peerIds, [peer.clientId]);
      // Still there, and the good client never noticed.
      assert.ok(pair.server.getClientIds().includes(peer.clientId), 'the raw peer is still connected');
      assert.deepEqual(disconnects, []);
      assert.equal(await good.requestPeer(good.getClientId(), 'whoami'), good.getClientId());
    });
  });
}
