// Observability on real Unix sockets and TCP: dead letters for every way an accepted message can
// go undelivered, the diagnostics_channel tracing channels (TracingChannel semantics, header
// injection, traceparent through hops and nested calls, nothing built or left behind when nobody
// listens), latency per type and service.method, and the timeouts / reconnects / rateLimited
// counters.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as diagnosticsChannel from 'node:diagnostics_channel';
import * as stream from 'node:stream';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import {
  EFrameKind,
  EPayloadEncoding,
  IpcError,
  defaults,
  encodeFrame,
  requestChannel,
  handleChannel,
  passThrough,
  type IDeadLetter,
  type IpcClient,
  type IpcServer,
  type ITraceContext,
} from '../ts/internal.js';
import {
  TRANSPORTS,
  collectFrames,
  createPair,
  expectIpcError,
  helloFrame,
  makeClient,
  rawConnect,
  startServer,
  startServerAt,
  uniqueId,
  uniqueSocketPath,
  waitForEvent,
  waitUntil,
  withTimeout,
} from './helpers/fixtures.js';

const T = { timeout: 30_000 };

// ---- helpers -----------------------------------------------------------------------------------

/** Every `deadLetter` an emitter reports, in order. */
function collectLetters(emitter: IpcServer | IpcClient): IDeadLetter[] {
  const seen: IDeadLetter[] = [];
  (emitter as IpcServer).on('deadLetter', (letter: IDeadLetter) => seen.push(letter));
  return seen;
}

/** A letter without its timestamp (checked to be a plausible epoch ms). */
function shape(letter: IDeadLetter): Omit<IDeadLetter, 'at'> {
  const { at, ...rest } = letter;
  assert.equal(typeof at, 'number', 'a dead letter has a numeric `at`');
  assert.ok(Math.abs(Date.now() - at) < 60_000, `dead letter at ${at} is an epoch ms of now`);
  return rest;
}

/** A real gc() without --expose-gc (as test.soak.ts does), so heap readings are not noise. */
function getGc(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

function heapAfterGc(gc: () => void): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

const nextMacrotask = () => new Promise<void>((resolve) => setImmediate(resolve));

for (const kind of TRANSPORTS) {
  describe(`dead letters over ${kind}`, () => {
    test('a message with no handler is a NO_HANDLER dead letter with its data, on the server and on the client', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const onServer = collectLetters(pair.server);
      const onClient = collectLetters(pair.client);
      await pair.client.sendMessage('nobody.listens', { n: 1 });
      await waitUntil(() => onServer.length === 1, 5_000, 'server dead letter');
      assert.deepEqual(shape(onServer[0]), { reason: 'noHandler', type: 'nobody.listens', peerId: pair.client.getClientId(), data: { n: 1 }, code: 'NO_HANDLER' });
      assert.equal(pair.server.getStats().metrics.deadLetters, 1);
      assert.deepEqual(pair.server.getDeadLetters(), onServer);

      await pair.server.sendToClient(pair.client.getClientId(), 'client.nobody', 'x');
      await waitUntil(() => onClient.length === 1, 5_000, 'client dead letter');
      assert.deepEqual(shape(onClient[0]), { reason: 'noHandler', type: 'client.nobody', peerId: pair.id, data: 'x', code: 'NO_HANDLER' });
      assert.equal(pair.client.getStats().metrics.deadLetters, 1);
      assert.deepEqual(pair.client.getDeadLetters(), onClient);
      // A request with no handler is answered (NO_HANDLER), not a dead letter.
      await expectIpcError(pair.client.request('nobody.listens'), 'NO_HANDLER');
      assert.equal(pair.server.getStats().metrics.deadLetters, 1);
    });

    test('a message handler that throws (or rejects) is a HANDLER_ERROR dead letter, and `error` still fires', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const letters = collectLetters(pair.server);
      const errors: Array<[IpcError, string | undefined]> = [];
      pair.server.on('error', (error, clientId) => errors.push([error as IpcError, clientId]));
      pair.server.onMessage('throws', () => {
        throw new Error('sync boom');
      });
      pair.server.onMessage('rejects', async () => {
        await nextMacrotask();
        throw new Error('async boom');
      });
      await pair.client.sendMessage('throws', { a: 1 });
      await pair.client.sendMessage('rejects', [2]);
      await waitUntil(() => letters.length === 2 && errors.length === 2, 5_000, 'two dead letters and two errors');
      const clientId = pair.client.getClientId();
      assert.deepEqual(letters.map(shape), [
        { reason: 'handlerError', type: 'throws', peerId: clientId, data: { a: 1 }, code: 'HANDLER_ERROR' },
        { reason: 'handlerError', type: 'rejects', peerId: clientId, data: [2], code: 'HANDLER_ERROR' },
      ]);
      assert.deepEqual(errors.map(([e, id]) => [e.code, id]), [['HANDLER_ERROR', clientId], ['HANDLER_ERROR', clientId]]);
      assert.equal(pair.server.getStats().metrics.deadLetters, 2);
      // A request whose handler throws is answered HANDLER_ERROR: the caller knows, no dead letter.
      await expectIpcError(pair.client.request('throws'), 'HANDLER_ERROR');
      assert.equal(pair.server.getStats().metrics.deadLetters, 2);
    });

    test('a peer message to an unknown clientId is a CLIENT_NOT_FOUND dead letter on the hub; a peer request is answered CLIENT_NOT_FOUND', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const letters = collectLetters(pair.server);
      await pair.client.sendToPeer('ghost-client', 'hello', { hi: true });
      await waitUntil(() => letters.length === 1, 5_000, 'dead letter on the hub');
      assert.deepEqual(shape(letters[0]), { reason: 'unknownPeer', type: 'hello', peerId: pair.client.getClientId(), data: { hi: true }, code: 'CLIENT_NOT_FOUND' });
      await expectIpcError(pair.client.requestPeer('ghost-client', 'hello', 1), 'CLIENT_NOT_FOUND');
      assert.equal(pair.server.getStats().metrics.deadLetters, 1);
    });
  });
}

describe('dead letters: every other case', () => {
  test(
    'a peer message to a connected client without a handler for it is a NO_HANDLER dead letter on that client',
    T,
    async (t) => {
      const pair = await createPair('unix');
      t.after(() => pair.close());
      const bee = await pair.addClient();
      const onBee = collectLetters(bee);
      const onHub = collectLetters(pair.server);
      await pair.client.sendToPeer(bee.getClientId(), 'unhandled.peer', 7);
      // Proof it arrived and was processed: a handled peer message sent after it.
      const handled = new Promise<void>((resolve) => bee.onMessage('handled.peer', () => resolve()));
      await pair.client.sendToPeer(bee.getClientId(), 'handled.peer', 8);
      await withTimeout(handled, 5_000, 'the handled peer message');
      assert.equal(onHub.length, 0, 'the hub routed it: not its dead letter');
      assert.equal(onBee.length, 1, 'the receiving client reports the unhandled peer message');
      assert.deepEqual(shape(onBee[0]), { reason: 'noHandler', type: 'unhandled.peer', peerId: pair.client.getClientId(), data: 7, code: 'NO_HANDLER' });
      assert.equal(bee.getStats().metrics.deadLetters, 1);
    },
  );

  test('a message whose payload does not decode is an `undecodable` dead letter (no data) and an `error`', T, async (t) => {
    const started = await startServer('unix', {}, 'undecodable');
    t.after(() => started.stop());
    const letters = collectLetters(started.server);
    const errors: IpcError[] = [];
    started.server.on('error', (error) => errors.push(error as IpcError));
    started.server.onMessage('broken', () => assert.fail('the handler must not run for an undecodable message'));
    started.server.onMessage('fine', () => 'ok');
    const socket = await rawConnect(started.endpoint);
    t.after(() => socket.destroy());
    const frames = collectFrames(socket);
    const clientId = uniqueId('raw');
    socket.write(helloFrame({ serverId: started.id, clientId }));
    await waitUntil(() => frames.some((f) => f.kind === EFrameKind.Welcome), 5_000, 'welcome');
    socket.write(encodeFrame({ kind: EFrameKind.Message, encoding: EPayloadEncoding.Json, id: 0, type: 'broken', payload: '{"not json' }));
    // The connection stays usable: a request after it is answered.
    socket.write(encodeFrame({ kind: EFrameKind.Request, encoding: EPayloadEncoding.Json, id: 9, type: 'fine', payload: '1' }));
    await waitUntil(() => frames.some((f) => f.kind === EFrameKind.Response && f.id === 9), 5_000, 'answer to the request after it');
    assert.equal(letters.length, 1);
    const letter = shape(letters[0]);
    assert.deepEqual({ ...letter, code: undefined }, { reason: 'undecodable', type: 'broken', peerId: clientId, code: undefined });
    assert.equal(letter.code, 'PROTOCOL_ERROR');
    assert.ok(!('data' in letter), 'an undecodable letter carries no data');
    assert.equal(errors.length, 1, 'the error event fired');
    assert.equal(errors[0].code, 'PROTOCOL_ERROR');
    assert.equal(started.server.getStats().metrics.deadLetters, 1);
  });

  test('a publish that does not decode on a subscriber is an `undecodable` dead letter there', T, async (t) => {
    const started = await startServer('unix', {}, 'undecodable-pub');
    t.after(() => started.stop());
    const subscriber = makeClient(started);
    t.after(() => subscriber.disconnect());
    await subscriber.connect();
    subscriber.on('error', () => undefined);
    const letters = collectLetters(subscriber);
    const got: unknown[] = [];
    await subscriber.subscribe('raw.*', (data) => void got.push(data));
    const socket = await rawConnect(started.endpoint);
    t.after(() => socket.destroy());
    const frames = collectFrames(socket);
    const publisherId = uniqueId('rawpub');
    socket.write(helloFrame({ serverId: started.id, clientId: publisherId }));
    await waitUntil(() => frames.some((f) => f.kind === EFrameKind.Welcome), 5_000, 'welcome');
    socket.write(encodeFrame({ kind: EFrameKind.Publish, encoding: EPayloadEncoding.Json, id: 0, type: 'raw.bad', payload: '[1,' }));
    socket.write(encodeFrame({ kind: EFrameKind.Publish, encoding: EPayloadEncoding.Json, id: 0, type: 'raw.good', payload: '2' }));
    await waitUntil(() => got.length === 1, 5_000, 'the good publish');
    assert.deepEqual(got, [2]);
    assert.equal(letters.length, 1);
    assert.deepEqual(shape(letters[0]), { reason: 'undecodable', type: 'raw.bad', peerId: publisherId, code: 'PROTOCOL_ERROR' });
    assert.equal(subscriber.getStats().metrics.deadLetters, 1);
  });

  test('a subscription handler that throws is a HANDLER_ERROR dead letter on the subscriber', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    pair.client.on('error', () => undefined);
    const letters = collectLetters(pair.client);
    await pair.client.subscribe('boom.*', () => {
      throw new Error('subscriber failed');
    });
    await pair.server.publish('boom.now', { v: 1 });
    await waitUntil(() => letters.length === 1, 5_000, 'dead letter');
    assert.deepEqual(shape(letters[0]), { reason: 'handlerError', type: 'boom.now', peerId: 'server', data: { v: 1 }, code: 'HANDLER_ERROR' });
  });

  test('a subscription handler that returns null (or any value that is not a promise) has not failed', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    const errors: unknown[] = [];
    pair.client.on('error', (err) => errors.push(err));
    const letters = collectLetters(pair.client);
    const got: unknown[] = [];
    const handler = (data: unknown) => {
      got.push(data);
      return null;
    };
    // TypeScript refuses it; JavaScript, or a handler typed loosely, does not.
    await pair.client.subscribe('ret.*', handler as unknown as () => void);
    await pair.server.publish('ret.a', 1);
    await pair.server.publish('ret.b', 2);
    await waitUntil(() => got.length === 2, 5_000, 'both publishes');
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(got, [1, 2]);
    assert.deepEqual(letters, []);
    assert.deepEqual(errors, []);
    assert.equal(pair.client.getStats().metrics.deadLetters, 0);
  });

  test('publishes dropped for a slow consumer are dead letters naming the subscriber (server); the others still get them', { timeout: 60_000 }, async (t) => {
    const maxQueued = 256 * 1024;
    const started = await startServer('unix', { heartbeat: false, pubsubMaxQueuedBytes: maxQueued }, 'slowdl');
    t.after(() => started.stop());
    const letters = collectLetters(started.server);
    const fast = makeClient(started);
    t.after(() => fast.disconnect());
    await fast.connect();
    let fastGot = 0;
    await fast.subscribe('flood.>', () => void fastGot++);
    // The slow subscriber: a raw connection that subscribes, then stops reading.
    const slowId = uniqueId('slow');
    const socket = await rawConnect(started.endpoint);
    t.after(() => socket.destroy());
    const frames = collectFrames(socket);
    socket.write(helloFrame({ serverId: started.id, clientId: slowId }));
    // A peer may send only once it is admitted: what comes before the WELCOME is dropped.
    await waitUntil(() => frames.some((f) => f.kind === EFrameKind.Welcome), 5_000, 'WELCOME');
    socket.write(encodeFrame({ kind: EFrameKind.Subscribe, encoding: EPayloadEncoding.None, id: 1, type: 'flood.>' }));
    await waitUntil(() => frames.some((f) => f.kind === EFrameKind.Subscribe && f.id === 1), 5_000, 'subscribe acknowledged');
    socket.pause();
    const pad = 'p'.repeat(16 * 1024);
    const total = 400; // ~6.4 MB for a 256 KiB bound (plus the kernel's socket buffers)
    for (let i = 0; i < total; i++) {
      await started.server.publish(`flood.n${i % 4}`, { i, pad });
      // The fast subscriber (in this process) reads between batches, so only the stalled one falls behind.
      if (i % 8 === 7) await waitUntil(() => fastGot === i + 1, 5_000, `fast subscriber at ${i + 1}`);
    }
    await waitUntil(() => fastGot === total, 15_000, 'the fast subscriber got everything');
    const dropped = started.server.getStats().pubsub.dropped;
    assert.ok(dropped > 0, 'the slow subscriber lost publishes');
    assert.equal(letters.length, dropped, 'one dead letter per dropped publish');
    for (const letter of letters) {
      const { type, ...rest } = shape(letter);
      assert.match(type, /^flood\.n[0-3]$/);
      // A flood must not decode what it drops: no data.
      assert.deepEqual(rest, { reason: 'slowConsumer', peerId: 'server', to: slowId, code: 'RATE_LIMITED' });
    }
    assert.equal(started.server.getStats().metrics.deadLetters, dropped);
  });

  test('publishes dropped from a full subscribeIterator buffer are dead letters on the client, oldest first out', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    const letters = collectLetters(pair.client);
    const iterator = pair.client.subscribeIterator<{ i: number }>('it.*', { maxBuffered: 2 });
    t.after(() => iterator.return?.());
    // The subscription is live once the server acknowledged it: wait for its stats.
    await waitUntil(() => pair.server.getStats().pubsub.subscriptions === 1, 5_000, 'subscription on the server');
    for (let i = 0; i < 5; i++) await pair.server.publish(`it.t${i}`, { i });
    await waitUntil(() => letters.length === 3, 5_000, 'three dead letters');
    assert.deepEqual(letters.map(shape), [0, 1, 2].map((i) => ({ reason: 'slowConsumer', type: `it.t${i}`, peerId: 'server', data: { i }, code: 'RATE_LIMITED' })));
    // The two newest are still there to read.
    const first = await withTimeout(iterator.next(), 2_000, 'next');
    const second = await withTimeout(iterator.next(), 2_000, 'next');
    assert.deepEqual([first.value?.data, second.value?.data], [{ i: 3 }, { i: 4 }]);
    assert.equal(pair.client.getStats().metrics.deadLetters, 3);
    assert.equal(pair.client.getStats().pubsub.droppedLocally, 3);
  });

  test('a publish too large for one subscriber is a MESSAGE_TOO_LARGE dead letter for it; the others get it', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    pair.server.on('error', () => undefined);
    const letters = collectLetters(pair.server);
    const small = await pair.addClient({ maxMessageSize: 1024 });
    const smallGot: unknown[] = [];
    const bigGot: unknown[] = [];
    await small.subscribe('big.*', (data) => void smallGot.push(data));
    await pair.client.subscribe('big.*', (data) => void bigGot.push(data));
    const publisher = await pair.addClient();
    await publisher.publish('big.one', 'x'.repeat(4096));
    await publisher.publish('big.two', 'fits');
    await waitUntil(() => bigGot.length === 2 && smallGot.length === 1, 5_000, 'deliveries');
    assert.deepEqual(smallGot, ['fits']);
    assert.equal(letters.length, 1);
    assert.deepEqual(shape(letters[0]), { reason: 'tooLarge', type: 'big.one', peerId: publisher.getClientId(), to: small.getClientId(), code: 'MESSAGE_TOO_LARGE' });
  });

  test('messages and publishes refused by a permission are FORBIDDEN dead letters; requests are answered FORBIDDEN', T, async (t) => {
    const pair = await createPair('unix', { server: { permissions: { '*': { send: ['ok.*'], publish: ['news.>'], request: ['echo'] } } } });
    t.after(() => pair.close());
    const letters = collectLetters(pair.server);
    const got: string[] = [];
    pair.server.onMessage('ok.go', () => void got.push('ok.go'));
    pair.server.onMessage('secret', () => assert.fail('a forbidden message must not reach its handler'));
    pair.server.onMessage('echo', (data) => data);
    await pair.client.sendMessage('secret', { s: 1 });
    await pair.client.publish('gossip.x', { g: 2 });
    await pair.client.sendMessage('ok.go');
    await expectIpcError(pair.client.request('secret'), 'FORBIDDEN');
    assert.equal(await pair.client.request('echo', 5), 5);
    assert.deepEqual(got, ['ok.go']);
    const clientId = pair.client.getClientId();
    assert.deepEqual(letters.map(shape), [
      { reason: 'forbidden', type: 'secret', peerId: clientId, data: { s: 1 }, code: 'FORBIDDEN' },
      { reason: 'forbidden', type: 'gossip.x', peerId: clientId, data: { g: 2 }, code: 'FORBIDDEN' },
    ]);
    assert.equal(pair.server.getStats().metrics.deadLetters, 2);
    assert.equal(pair.server.getStats().metrics.rateLimited, 0);
  });

  test('messages and publishes past the rate limit are RATE_LIMITED dead letters and counted; a request gets RATE_LIMITED with retryAfterMs', T, async (t) => {
    const pair = await createPair('unix', { server: { rateLimit: { messagesPerSecond: 1, burst: 3 } } });
    t.after(() => pair.close());
    const letters = collectLetters(pair.server);
    const got: number[] = [];
    pair.server.onMessage('tick', (data: number) => void got.push(data));
    for (let i = 0; i < 5; i++) await pair.client.sendMessage('tick', i);
    await pair.client.publish('limited.topic', 'p');
    const refused = await expectIpcError(pair.client.request('tick', 99), 'RATE_LIMITED');
    assert.equal(typeof refused.retryAfterMs, 'number');
    assert.ok(refused.retryAfterMs! > 0 && refused.retryAfterMs! <= 1_000, `retryAfterMs ${refused.retryAfterMs}`);
    assert.deepEqual(got, [0, 1, 2]);
    const clientId = pair.client.getClientId();
    assert.deepEqual(letters.map(shape), [
      { reason: 'rateLimited', type: 'tick', peerId: clientId, data: 3, code: 'RATE_LIMITED' },
      { reason: 'rateLimited', type: 'tick', peerId: clientId, data: 4, code: 'RATE_LIMITED' },
      { reason: 'rateLimited', type: 'limited.topic', peerId: clientId, data: 'p', code: 'RATE_LIMITED' },
    ]);
    const serverMetrics = pair.server.getStats().metrics;
    assert.equal(serverMetrics.rateLimited, 4, 'two messages, one publish, one request refused');
    assert.equal(serverMetrics.deadLetters, 3);
    assert.equal(pair.client.getStats().metrics.rateLimited, 1, 'the client counts the RATE_LIMITED answer it got');
  });

  test('getDeadLetters() keeps the last deadLetterCapacity (oldest out); metrics.deadLetters counts all', T, async (t) => {
    const pair = await createPair('unix', { server: { deadLetterCapacity: 3 } });
    t.after(() => pair.close());
    for (let i = 0; i < 7; i++) await pair.client.sendMessage('void', i);
    await waitUntil(() => pair.server.getStats().metrics.deadLetters === 7, 5_000, 'seven dead letters');
    assert.deepEqual(pair.server.getDeadLetters().map((l) => l.data), [4, 5, 6]);
    // The list is a copy: changing it changes nothing inside.
    pair.server.getDeadLetters().length = 0;
    assert.equal(pair.server.getDeadLetters().length, 3);

    const none = await createPair('unix', { server: { deadLetterCapacity: 0 } });
    t.after(() => none.close());
    const seen = collectLetters(none.server);
    for (let i = 0; i < 3; i++) await none.client.sendMessage('void', i);
    await waitUntil(() => none.server.getStats().metrics.deadLetters === 3, 5_000, 'three dead letters');
    assert.deepEqual(none.server.getDeadLetters(), []);
    assert.equal(seen.length, 3, 'capacity 0 keeps none, still emits every one');
    assert.ok(defaults.DEFAULT_DEAD_LETTER_CAPACITY === 1_000, 'default capacity 1000');
  });

  test('the default capacity is 1000', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    for (let i = 0; i < 1_005; i++) void pair.client.sendMessage('void', i);
    await waitUntil(() => pair.server.getStats().metrics.deadLetters === 1_005, 10_000, '1005 dead letters');
    const kept = pair.server.getDeadLetters();
    assert.equal(kept.length, 1_000);
    assert.deepEqual([kept[0].data, kept[999].data], [5, 1_004]);
  });

  test('a throwing deadLetter listener breaks nothing: the letter is kept and counted, the connection goes on', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    let calls = 0;
    pair.server.on('deadLetter', () => {
      calls++;
      throw new Error('listener bug');
    });
    const clientLetters: IDeadLetter[] = [];
    pair.client.on('deadLetter', (letter) => {
      clientLetters.push(letter);
      throw new Error('client listener bug');
    });
    pair.server.onMessage('echo', (data) => data);
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.on('uncaughtException', onUncaught);
    t.after(() => process.off('uncaughtException', onUncaught));
    await pair.client.sendMessage('void', 1);
    await pair.client.sendMessage('void', 2);
    assert.equal(await pair.client.request('echo', 'still here'), 'still here');
    await pair.server.sendToClient(pair.client.getClientId(), 'void', 3);
    await waitUntil(() => clientLetters.length === 1, 5_000, 'client dead letter');
    assert.equal(calls, 2);
    assert.equal(pair.server.getStats().metrics.deadLetters, 2);
    assert.deepEqual(pair.server.getDeadLetters().map((l) => l.data), [1, 2]);
    assert.equal(await pair.client.request('echo', 'and here'), 'and here');
    assert.ok(pair.client.getIsConnected(), 'the client is still connected');
    assert.deepEqual(uncaught, []);
  });

  test('a send whose own promise rejected (past the outbox bound) is not a dead letter', T, async (t) => {
    const socketPath = uniqueSocketPath('outbox');
    const id = uniqueId('outbox');
    const server = await startServerAt(socketPath, id);
    t.after(() => server.stop());
    const client = makeClient({ id, endpoint: { socketPath } }, { reconnect: { enabled: true, initialDelay: 60_000, maxDelay: 60_000 }, outbox: { maxMessages: 2 } });
    t.after(() => client.disconnect());
    await client.connect();
    const letters = collectLetters(client);
    const serverLetters = collectLetters(server.server);
    const disconnected = waitForEvent(client, 'disconnect');
    await server.stop();
    await disconnected;
    const held = [client.sendMessage('void', 1), client.sendMessage('void', 2)];
    const overflow = await expectIpcError(client.sendMessage('void', 3), 'NOT_CONNECTED');
    assert.ok(overflow instanceof IpcError, 'the third send was refused');
    await expectIpcError(client.request('echo', 4), 'NOT_CONNECTED');
    // disconnect() fails what waits in the outbox: those promises reject too.
    await client.disconnect();
    for (const p of held) await expectIpcError(p, 'NOT_CONNECTED');
    assert.deepEqual(letters, []);
    assert.equal(client.getStats().metrics.deadLetters, 0);
    assert.deepEqual(serverLetters, []);
  });
});

// ---- tracing -----------------------------------------------------------------------------------

type TTraceEvent = 'start' | 'end' | 'asyncStart' | 'asyncEnd' | 'error';

interface ITraceRecorder<C> {
  /** Every event in order, with the context object it carried. */
  events: Array<{ event: TTraceEvent; ctx: C }>;
  /** The event names of the contexts that pass `filter`, one list per context object (in start order). */
  sequences(filter?: (ctx: C) => boolean): Array<{ ctx: C; events: TTraceEvent[] }>;
  dispose(): void;
}

/** Subscribes to all five events of a tracing channel; `onStart` may change the context (inject headers). */
function recordTracing<C extends object>(name: string, onStart?: (ctx: C) => void): ITraceRecorder<C> {
  const channel = diagnosticsChannel.tracingChannel<C, C>(name);
  const events: Array<{ event: TTraceEvent; ctx: C }> = [];
  const subscribers = {
    start: (ctx: C) => {
      events.push({ event: 'start', ctx });
      onStart?.(ctx);
    },
    end: (ctx: C) => void events.push({ event: 'end', ctx }),
    asyncStart: (ctx: C) => void events.push({ event: 'asyncStart', ctx }),
    asyncEnd: (ctx: C) => void events.push({ event: 'asyncEnd', ctx }),
    error: (ctx: C) => void events.push({ event: 'error', ctx }),
  };
  channel.subscribe(subscribers);
  let disposed = false;
  return {
    events,
    sequences: (filter = () => true) => {
      const byCtx = new Map<C, TTraceEvent[]>();
      for (const { event, ctx } of events) {
        if (!filter(ctx)) continue;
        let list = byCtx.get(ctx);
        if (list === undefined) byCtx.set(ctx, (list = []));
        list.push(event);
      }
      return [...byCtx].map(([ctx, list]) => ({ ctx, events: list }));
    },
    dispose: () => {
      if (disposed) return;
      disposed = true;
      channel.unsubscribe(subscribers);
    },
  };
}

/** Messages published on a plain channel while recording. */
function recordChannel<M>(name: string): { messages: M[]; dispose(): void } {
  const messages: M[] = [];
  const onMessage = (message: unknown) => void messages.push(message as M);
  diagnosticsChannel.subscribe(name, onMessage);
  return { messages, dispose: () => diagnosticsChannel.unsubscribe(name, onMessage) };
}

/** Whether `marker` occurs anywhere inside `value` (strings, Buffers, nested objects and arrays). */
function containsMarker(value: unknown, marker: string, seen = new Set<unknown>()): boolean {
  if (typeof value === 'string') return value.includes(marker);
  if (value === null || typeof value !== 'object' || seen.has(value)) return false;
  seen.add(value);
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).includes(marker);
  if (value instanceof Map) return [...value].some(([k, v]) => containsMarker(k, marker, seen) || containsMarker(v, marker, seen));
  return Reflect.ownKeys(value).some((key) => containsMarker((value as Record<PropertyKey, unknown>)[key], marker, seen));
}

const COMPLETE: TTraceEvent[] = ['start', 'end', 'asyncStart', 'asyncEnd'];
const FAILED: TTraceEvent[] = ['start', 'end', 'error', 'asyncStart', 'asyncEnd'];
const TP = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

describe('tracing: smartipc:request, smartipc:handle, smartipc:stream', () => {
  for (const kind of TRANSPORTS) {
    test(`over ${kind}: a request is start, end, asyncStart, asyncEnd on one context object; its handler likewise on smartipc:handle`, T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const requests = recordTracing<ITraceContext>('smartipc:request');
      t.after(() => requests.dispose());
      const handles = recordTracing<ITraceContext>('smartipc:handle');
      t.after(() => handles.dispose());
      pair.server.onMessage('traced.echo', (data) => data);
      pair.server.onMessage('traced.fails', () => {
        throw new Error('handler failed');
      });
      // Asynchronous handlers too: a synchronous answer is traced without a promise, a later one with.
      pair.server.onMessage('traced.later', async (data) => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        return data;
      });
      pair.server.onMessage('traced.laterFails', async () => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        throw new Error('later failed');
      });
      assert.deepEqual(await pair.client.request('traced.echo', { v: 1 }, { headers: { tenant: 'a' } }), { v: 1 });
      await expectIpcError(pair.client.request('traced.fails'), 'HANDLER_ERROR');
      await expectIpcError(pair.client.request('traced.nobody'), 'NO_HANDLER');
      assert.equal(await pair.client.request('traced.later', 7), 7);
      await expectIpcError(pair.client.request('traced.laterFails'), 'HANDLER_ERROR');

      const req = requests.sequences((ctx) => ctx.type.startsWith('traced.'));
      assert.deepEqual(req.map((s) => [s.ctx.type, s.events]), [
        ['traced.echo', COMPLETE],
        ['traced.fails', FAILED],
        ['traced.nobody', FAILED],
        ['traced.later', COMPLETE],
        ['traced.laterFails', FAILED],
      ]);
      const [ok, failed, nobody] = req.map((s) => s.ctx);
      assert.equal(ok.peerId, pair.id);
      assert.ok(ok.id > 0, `the request id is set once sent (${ok.id})`);
      assert.ok(ok.bytes > 0, `bytes sent are set (${ok.bytes})`);
      assert.deepEqual(ok.headers, { tenant: 'a' });
      assert.equal(ok.service, undefined);
      assert.ok(failed.error instanceof IpcError && failed.error.code === 'HANDLER_ERROR', 'the error is on the context');
      assert.ok(nobody.error instanceof IpcError && nobody.error.code === 'NO_HANDLER', 'NO_HANDLER is on the context');

      const handled = handles.sequences((ctx) => ctx.type.startsWith('traced.'));
      assert.deepEqual(handled.map((s) => [s.ctx.type, s.events]), [
        ['traced.echo', COMPLETE],
        ['traced.fails', FAILED],
        ['traced.later', COMPLETE],
        ['traced.laterFails', FAILED],
      ]);
      const [hOk, hFailed, , hLaterFailed] = handled.map((s) => s.ctx);
      assert.ok(hLaterFailed.error instanceof Error && (hLaterFailed.error as Error).message === 'later failed', 'the rejection is on the handle context');
      assert.equal(hOk.peerId, pair.client.getClientId());
      assert.equal(hOk.id, ok.id, 'the handler side sees the same request id');
      assert.ok(hOk.bytes > 0, 'bytes received are set');
      assert.deepEqual(hOk.headers, { tenant: 'a' });
      assert.ok(hFailed.error instanceof Error && (hFailed.error as Error).message === 'handler failed', 'the thrown error is on the handle context');
    });
  }

  test('a fire-and-forget message handler is traced on smartipc:handle (id 0); a message with no handler is not', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    const handles = recordTracing<ITraceContext>('smartipc:handle');
    t.after(() => handles.dispose());
    const done = new Promise<void>((resolve) => pair.server.onMessage('traced.msg', () => resolve()));
    await pair.client.sendMessage('traced.msg', 1);
    await pair.client.sendMessage('traced.unhandled', 1);
    await withTimeout(done, 5_000, 'message handled');
    await waitUntil(() => pair.server.getStats().metrics.deadLetters === 1, 5_000, 'the unhandled one arrived');
    await nextMacrotask();
    const seqs = handles.sequences((ctx) => ctx.type.startsWith('traced.'));
    assert.deepEqual(seqs.map((s) => [s.ctx.type, s.ctx.id, s.events]), [['traced.msg', 0, COMPLETE]]);
  });

  test('a service call is traced with service and method on both ends; the provider sees the call on smartipc:handle', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    const provider = await pair.addClient();
    await provider.provide('calc', { add: (p: { a: number; b: number }) => p.a + p.b, fail: () => { throw new Error('no'); } });
    const requests = recordTracing<ITraceContext>('smartipc:request');
    t.after(() => requests.dispose());
    const handles = recordTracing<ITraceContext>('smartipc:handle');
    t.after(() => handles.dispose());
    assert.equal(await pair.client.call('calc', 'add', { a: 1, b: 2 }), 3);
    await expectIpcError(pair.client.call('calc', 'fail'), 'HANDLER_ERROR');
    await expectIpcError(pair.client.call('nosuch', 'm'), 'SERVICE_NOT_FOUND');
    const req = requests.sequences((ctx) => ctx.peerId === pair.id);
    assert.deepEqual(req.map((s) => [s.ctx.type, s.ctx.service, s.ctx.method, s.events]), [
      ['calc.add', 'calc', 'add', COMPLETE],
      ['calc.fail', 'calc', 'fail', FAILED],
      ['nosuch.m', 'nosuch', 'm', FAILED],
    ]);
    // Two handler sides: the hub that routes it and the provider that runs it.
    const sides = handles.sequences((ctx) => ctx.type === 'calc.add' && ctx.service === 'calc');
    assert.equal(sides.length, 2, 'the hub and the provider traced the call once each');
    for (const side of sides) assert.deepEqual([side.ctx.method, side.events], ['add', COMPLETE]);
  });

  test(
    'the hub traces a routed call as service.method (no U+0000), with service and method, and keeps its latency under that key',
    T,
    async (t) => {
      const pair = await createPair('unix');
      t.after(() => pair.close());
      const provider = await pair.addClient();
      await provider.provide('calc', { add: (p: { a: number; b: number }) => p.a + p.b });
      const handles = recordTracing<ITraceContext>('smartipc:handle');
      t.after(() => handles.dispose());
      await pair.client.call('calc', 'add', { a: 1, b: 2 });
      // Two handler sides: the hub that routes it and the provider that runs it.
      const sides = handles.sequences((ctx) => ctx.type.includes('add'));
      assert.equal(sides.length, 2, 'the hub and the provider traced the call');
      for (const side of sides) assert.deepEqual([side.ctx.type, side.ctx.service, side.ctx.method, side.events], ['calc.add', 'calc', 'add', COMPLETE]);
      assert.deepEqual(Object.keys(pair.server.getStats().metrics.latency.handlers), ['calc.add']);
    },
  );

  test('a peer request is traced on smartipc:request (start .. asyncEnd), its handler on the receiving client', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    const bee = await pair.addClient();
    bee.onMessage('peer.ask', (data: number) => data * 2);
    const requests = recordTracing<ITraceContext>('smartipc:request');
    t.after(() => requests.dispose());
    const handles = recordTracing<ITraceContext>('smartipc:handle');
    t.after(() => handles.dispose());
    assert.equal(await pair.client.requestPeer(bee.getClientId(), 'peer.ask', 21), 42);
    await expectIpcError(pair.client.requestPeer('ghost', 'peer.ask', 1), 'CLIENT_NOT_FOUND');
    const req = requests.sequences((ctx) => ctx.type.includes('peer.ask'));
    assert.deepEqual(req.map((s) => s.events), [COMPLETE, FAILED]);
    // The hub that routes it and the client that answers it, both naming the sender.
    const sides = handles.sequences((ctx) => ctx.type === 'peer.ask');
    assert.deepEqual(sides.map((s) => [s.ctx.peerId, s.events]), [[pair.client.getClientId(), COMPLETE], [pair.client.getClientId(), COMPLETE]]);
  });

  test(
    'a peer request\'s context names the message type, not the wire form "target\\u0000type"',
    T,
    async (t) => {
      const pair = await createPair('unix');
      t.after(() => pair.close());
      const bee = await pair.addClient();
      bee.onMessage('peer.ask', (data: number) => data * 2);
      const requests = recordTracing<ITraceContext>('smartipc:request');
      t.after(() => requests.dispose());
      await pair.client.requestPeer(bee.getClientId(), 'peer.ask', 21);
      const [seq] = requests.sequences((ctx) => ctx.type.includes('peer.ask'));
      assert.equal(seq.ctx.type, 'peer.ask');
    },
  );

  test('a stream is traced on smartipc:stream: start .. asyncEnd when the receiver has it all, error when cancelled', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    const streams = recordTracing<{ streamId: string; peerId: string; meta: Record<string, unknown>; error?: unknown }>('smartipc:stream');
    t.after(() => streams.dispose());
    pair.server.on('stream', (info, readable) => {
      if (info.meta.cancel) {
        readable.once('data', () => pair.server.cancelIncomingStreamFromClient(info.clientId!, info.streamId));
        readable.on('error', () => undefined);
      }
      readable.resume();
    });
    await pair.client.sendStream(stream.Readable.from([Buffer.alloc(1000, 1), Buffer.alloc(1000, 2)]), { streamId: 'trace-s1', meta: { name: 'a' } });
    const endless = new stream.Readable({ read() { this.push(Buffer.alloc(16 * 1024)); } });
    await expectIpcError(pair.client.sendStream(endless, { streamId: 'trace-s2', meta: { cancel: true } }), 'STREAM_CANCELLED');
    const seqs = streams.sequences();
    assert.deepEqual(seqs.map((s) => [s.ctx.streamId, s.ctx.peerId, s.events]), [
      ['trace-s1', pair.id, COMPLETE],
      ['trace-s2', pair.id, FAILED],
    ]);
    assert.deepEqual(seqs[0].ctx.meta, { name: 'a' });
    assert.ok(seqs[1].ctx.error instanceof IpcError && seqs[1].ctx.error.code === 'STREAM_CANCELLED', 'the cancel is on the context');
  });

  test('the plain channels: smartipc:connect, :disconnect, :message, :publish, :deadLetter', T, async (t) => {
    const started = await startServer('unix', {}, 'plain');
    t.after(() => started.stop());
    const connects = recordChannel<{ side: string; peerId: string; transport: string }>('smartipc:connect');
    t.after(() => connects.dispose());
    const disconnects = recordChannel<{ side: string; peerId: string; transport: string; code?: string }>('smartipc:disconnect');
    t.after(() => disconnects.dispose());
    const messages = recordChannel<{ direction: string; type: string; peerId: string }>('smartipc:message');
    t.after(() => messages.dispose());
    const publishes = recordChannel<{ topic: string; from: string; deliveredTo: number }>('smartipc:publish');
    t.after(() => publishes.dispose());
    const letters = recordChannel<Record<string, unknown>>('smartipc:deadLetter');
    t.after(() => letters.dispose());

    const client = makeClient(started);
    const other = makeClient(started);
    t.after(() => Promise.all([client.disconnect(), other.disconnect()]));
    await client.connect();
    await other.connect();
    const clientId = client.getClientId();
    assert.deepEqual(connects.messages.filter((m) => m.peerId === clientId || (m.side === 'client' && m.peerId === started.id)).slice(0, 2).sort((a, b) => a.side.localeCompare(b.side)), [
      { side: 'client', peerId: started.id, transport: 'unix' },
      { side: 'server', peerId: clientId, transport: 'unix' },
    ]);

    const got = new Promise<void>((resolve) => started.server.onMessage('plain.msg', () => resolve()));
    await client.sendMessage('plain.msg', { secret: 'MARK-plain' });
    await withTimeout(got, 5_000, 'message handled');
    assert.deepEqual(messages.messages.filter((m) => m.type === 'plain.msg'), [
      { direction: 'sent', type: 'plain.msg', peerId: started.id },
      { direction: 'received', type: 'plain.msg', peerId: clientId },
    ]);

    let delivered = 0;
    await other.subscribe('plain.topic.*', () => void delivered++);
    await client.publish('plain.topic.x', { secret: 'MARK-plain' });
    await waitUntil(() => delivered === 1 && publishes.messages.length >= 1, 5_000, 'publish delivered and traced');
    assert.deepEqual(publishes.messages, [{ topic: 'plain.topic.x', from: clientId, deliveredTo: 1 }]);

    await client.sendMessage('plain.unhandled', { secret: 'MARK-plain' });
    await waitUntil(() => letters.messages.length === 1, 5_000, 'dead letter traced');
    const { at, ...letter } = letters.messages[0];
    assert.equal(typeof at, 'number');
    assert.deepEqual(letter, { reason: 'noHandler', type: 'plain.unhandled', peerId: clientId, code: 'NO_HANDLER' });
    // The event keeps the data; the channel never carries it.
    assert.deepEqual(started.server.getDeadLetters()[0].data, { secret: 'MARK-plain' });

    const serverSaw = waitForEvent(started.server, 'clientDisconnect');
    await client.disconnect();
    await serverSaw;
    const gone = disconnects.messages.filter((m) => m.peerId === clientId || (m.side === 'client' && m.peerId === started.id));
    assert.deepEqual(gone.map((m) => m.side).sort(), ['client', 'server']);
    assert.equal(gone.find((m) => m.side === 'client')!.code, 'CLOSED');
    assert.equal(typeof gone.find((m) => m.side === 'server')!.code, 'string');
    for (const m of [...connects.messages, ...disconnects.messages, ...messages.messages, ...publishes.messages, ...letters.messages]) {
      assert.ok(!containsMarker(m, 'MARK-plain'), `no payload on a plain channel: ${JSON.stringify(m)}`);
    }
  });

  test('context objects never carry the request data', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    const provider = await pair.addClient();
    await provider.provide('vault', { open: (p: unknown) => ({ back: 'ok', p: typeof p }) });
    pair.server.onMessage('vault.req', () => 'fine');
    const snapshots: unknown[] = [];
    const requests = recordTracing<ITraceContext>('smartipc:request');
    const handles = recordTracing<ITraceContext>('smartipc:handle');
    t.after(() => requests.dispose());
    t.after(() => handles.dispose());
    const marker = 'MARK-REQUEST-DATA';
    await pair.client.request('vault.req', { secret: marker, bin: Buffer.from(marker) });
    await pair.client.call('vault', 'open', { secret: marker });
    await pair.client.sendMessage('vault.req', { secret: marker });
    await waitUntil(() => handles.events.filter((e) => e.event === 'asyncEnd').length >= 4, 5_000, 'all handlers traced');
    for (const { event, ctx } of [...requests.events, ...handles.events]) {
      snapshots.push(ctx);
      assert.ok(!containsMarker(ctx, marker), `${event} context of ${ctx.type} carries request data`);
      const allowed = ['type', 'peerId', 'id', 'service', 'method', 'headers', 'bytes', 'result', 'error'];
      for (const key of Object.keys(ctx)) assert.ok(allowed.includes(key), `unexpected context field ${key}`);
    }
    assert.ok(snapshots.length >= 16, `contexts seen: ${snapshots.length}`);
  });

  test(
    'context objects never carry response data either (a resolved request or handler leaves no `result` payload on them)',
    T,
    async (t) => {
      const pair = await createPair('unix');
      t.after(() => pair.close());
      const marker = 'MARK-RESPONSE-DATA';
      pair.server.onMessage('vault.resp', () => ({ secret: marker }));
      const requests = recordTracing<ITraceContext>('smartipc:request');
      const handles = recordTracing<ITraceContext>('smartipc:handle');
      t.after(() => requests.dispose());
      t.after(() => handles.dispose());
      await pair.client.request('vault.resp');
      for (const { event, ctx } of [...requests.events, ...handles.events]) assert.ok(!containsMarker(ctx, marker), `the context of ${ctx.type} (seen at ${event}) carries the response`);
    },
  );
});

describe('tracing: headers and traceparent', () => {
  test('a start subscriber that writes headers.traceparent makes it arrive in the handler context (the caller\'s headers kept, its object untouched)', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    const seen: Array<Record<string, unknown> | undefined> = [];
    pair.server.onMessage('tp.req', (_data, _clientId, context) => void seen.push(context.headers));
    const requests = recordTracing<ITraceContext>('smartipc:request', (ctx) => {
      if (ctx.type === 'tp.req') ctx.headers.traceparent = TP;
    });
    t.after(() => requests.dispose());
    const mine = { tenant: 'a' };
    await pair.client.request('tp.req', 1, { headers: mine });
    await pair.client.request('tp.req', 2);
    assert.deepEqual(seen, [{ tenant: 'a', traceparent: TP }, { traceparent: TP }]);
    assert.deepEqual(mine, { tenant: 'a' }, 'the caller\'s headers object is not written to');
  });

  /**
   * order.place (provided by `orders`) calls user.get (provided by `users`), which requests `audit`
   * from the hub: each step reports the traceparent it saw.
   */
  async function serviceChain(t: { after(fn: () => unknown): void }) {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    const seen: Record<string, unknown> = {};
    const orders = await pair.addClient();
    const users = await pair.addClient();
    pair.server.onMessage('audit', (_data, _clientId, context) => {
      seen.audit = context.headers?.traceparent;
      return 'audited';
    });
    await users.provide('user', {
      get: async (_p: unknown, ctx: { headers?: Record<string, unknown> }) => {
        seen.user = ctx.headers?.traceparent;
        return users.request('audit');
      },
    });
    await orders.provide('order', {
      place: async (_p: unknown, ctx: { headers?: Record<string, unknown> }) => {
        seen.order = ctx.headers?.traceparent;
        return orders.call('user', 'get');
      },
    });
    return { pair, seen };
  }

  test('a traceparent set by the caller goes through the hub to the provider and into the nested calls and requests it makes', T, async (t) => {
    const { pair, seen } = await serviceChain(t);
    assert.equal(await pair.client.call('order', 'place', {}, { headers: { traceparent: TP } }), 'audited');
    assert.deepEqual(seen, { order: TP, user: TP, audit: TP });
  });

  test('a traceparent written by a start subscriber goes the same way (written for the outer call only)', T, async (t) => {
    const { pair, seen } = await serviceChain(t);
    const requests = recordTracing<ITraceContext>('smartipc:request', (ctx) => {
      if (ctx.type === 'order.place') ctx.headers.traceparent = TP;
    });
    t.after(() => requests.dispose());
    await pair.client.call('order', 'place', {});
    assert.deepEqual(seen, { order: TP, user: TP, audit: TP });
    // Every hop was a traced request of its own.
    const types = requests.sequences().map((s) => [s.ctx.type, s.events]);
    for (const type of ['order.place', 'user.get', 'audit']) assert.ok(types.some(([ty, ev]) => ty === type && JSON.stringify(ev) === JSON.stringify(COMPLETE)), `${type} traced: ${JSON.stringify(types)}`);
    // A nested call that brings its own traceparent keeps it.
    const own = '00-11111111111111111111111111111111-2222222222222222-01';
    const got: unknown[] = [];
    pair.server.onMessage('inner.own', (_d, _c, context) => void got.push(context.headers?.traceparent));
    const outerClient = pair.clients[1];
    await outerClient.provide('wrap', { go: () => outerClient.request('inner.own', null, { headers: { traceparent: own } }) });
    await pair.client.call('wrap', 'go', {}, { headers: { traceparent: TP } });
    assert.deepEqual(got, [own]);
  });

  test('a request a server handler makes to a client (requestClient) and a hub call it makes carry the handler\'s traceparent', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    const seen: Record<string, unknown> = {};
    pair.client.onMessage('inner', (_d, _s, context) => {
      seen.inner = context.headers?.traceparent;
      return 'i';
    });
    const provider = await pair.addClient();
    await provider.provide('leaf', { hit: (_p: unknown, ctx: { headers?: Record<string, unknown> }) => void (seen.leaf = ctx.headers?.traceparent) });
    pair.server.onMessage('outer', async (_d, clientId) => {
      await pair.server.requestClient(clientId, 'inner');
      await pair.server.call('leaf', 'hit');
      return 'o';
    });
    await pair.client.request('outer', null, { headers: { traceparent: TP } });
    assert.deepEqual(seen, { inner: TP, leaf: TP });
  });

  test(
    'a hub-local service called from inside a handler sees the handler\'s traceparent',
    T,
    async (t) => {
      const pair = await createPair('unix');
      t.after(() => pair.close());
      let seen: unknown = 'not called';
      await pair.server.provide('local', { hit: (_p: unknown, ctx: { headers?: Record<string, unknown> }) => void (seen = ctx.headers?.traceparent) });
      pair.server.onMessage('outer.local', async () => {
        await pair.server.call('local', 'hit');
        return 'o';
      });
      await pair.client.request('outer.local', null, { headers: { traceparent: TP } });
      assert.equal(seen, TP);
    },
  );
});

describe('tracing: nothing built, nothing left behind', () => {
  /** Counts the library's tracePromise calls on a channel (each one builds a context object). */
  /** Counts traces begun on a tracing channel (every trace runs its `start` channel's stores once). */
  function spyTracePromise(channel: typeof requestChannel): { readonly calls: number; restore(): void } {
    const start = channel.start as unknown as { runStores: (...a: unknown[]) => unknown };
    const original = start.runStores;
    let calls = 0;
    start.runStores = function (this: unknown, ...args: unknown[]) {
      calls++;
      return original.apply(this, args);
    };
    return {
      get calls() {
        return calls;
      },
      restore: () => {
        delete (start as { runStores?: unknown }).runStores;
      },
    };
  }

  async function requests(client: IpcClient, n: number, batch = 500): Promise<void> {
    for (let done = 0; done < n; done += batch) {
      const round: Promise<unknown>[] = [];
      for (let i = 0; i < batch && done + i < n; i++) round.push(client.request('nt.echo', done + i));
      await Promise.all(round);
    }
  }

  const TRACE_EVENTS = ['start', 'end', 'asyncStart', 'asyncEnd', 'error'] as const;
  const anySubscriber = (name: string) => TRACE_EVENTS.some((e) => diagnosticsChannel.channel(`tracing:${name}:${e}`).hasSubscribers);

  test('with no subscriber no context object is built: hasSubscribers is false and tracePromise is never called', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    pair.server.onMessage('nt.echo', (data) => data);
    const req = spyTracePromise(requestChannel);
    const handle = spyTracePromise(handleChannel);
    t.after(() => req.restore());
    t.after(() => handle.restore());
    assert.equal(requestChannel.hasSubscribers, false);
    assert.equal(handleChannel.hasSubscribers, false);
    await requests(pair.client, 1_000);
    assert.deepEqual([req.calls, handle.calls], [0, 0]);
    const recorder = recordTracing<ITraceContext>('smartipc:request');
    await requests(pair.client, 100);
    recorder.dispose();
    assert.equal(req.calls, 100, 'traced while subscribed');
    assert.equal(handle.calls, 0, 'the handle channel has no subscriber of its own');
    assert.equal(requestChannel.hasSubscribers, false, 'false again after unsubscribing');
    await requests(pair.client, 1_000);
    assert.equal(req.calls, 100);
  });

  test('100,000 requests with a subscriber attached, then 100,000 detached: no listener and no context left behind, heap flat', { timeout: 120_000 }, async (t) => {
    const gc = getGc();
    const pair = await createPair('unix', { server: { heartbeat: false }, client: { heartbeat: false } });
    t.after(() => pair.close());
    pair.server.onMessage('nt.echo', (data) => data);
    await requests(pair.client, 2_000); // warm up
    assert.ok(!anySubscriber('smartipc:request') && !anySubscriber('smartipc:handle'), 'nobody subscribes before');

    // Attached: every context is seen; a sample of them is watched for collection.
    const contexts = { request: 0, handle: 0 };
    const sample: WeakRef<object>[] = [];
    const req = recordTracing<ITraceContext>('smartipc:request', (ctx) => {
      if (contexts.request++ % 1_000 === 0) sample.push(new WeakRef(ctx));
    });
    const handle = recordTracing<ITraceContext>('smartipc:handle', () => void contexts.handle++);
    // The recorders keep every event; drop them as we go so only the library could hold contexts.
    const trim = setInterval(() => {
      req.events.length = 0;
      handle.events.length = 0;
    }, 50);
    const attachedStart = performance.now();
    await requests(pair.client, 100_000);
    const attachedMs = performance.now() - attachedStart;
    clearInterval(trim);
    req.dispose();
    handle.dispose();
    req.events.length = 0;
    handle.events.length = 0;
    assert.deepEqual(contexts, { request: 100_000, handle: 100_000 });
    assert.ok(!anySubscriber('smartipc:request') && !anySubscriber('smartipc:handle'), 'no listener left on any of the ten channels');

    const heapBefore = heapAfterGc(gc);
    const spyReq = spyTracePromise(requestChannel);
    const spyHandle = spyTracePromise(handleChannel);
    t.after(() => spyReq.restore());
    t.after(() => spyHandle.restore());
    const detachedStart = performance.now();
    await requests(pair.client, 100_000);
    const detachedMs = performance.now() - detachedStart;
    assert.deepEqual([spyReq.calls, spyHandle.calls], [0, 0], 'no context object built once detached');
    const heapAfter = heapAfterGc(gc);
    await nextMacrotask();
    gc();
    const alive = sample.filter((ref) => ref.deref() !== undefined).length;
    assert.equal(alive, 0, `${alive} of ${sample.length} sampled contexts are still reachable`);
    const growth = heapAfter - heapBefore;
    assert.ok(growth < 4 * 1024 * 1024, `heap grew by ${growth} bytes over 100,000 untraced requests`);
    assert.equal(pair.client.getStats().metrics.requestsInFlight, 0);
    t.diagnostic(`100k requests traced ${Math.round(attachedMs)} ms, untraced ${Math.round(detachedMs)} ms; heap growth untraced ${(growth / 1024).toFixed(0)} KiB; sampled contexts ${sample.length}, alive ${alive}`);
  });
});

// ---- latency and counters ----------------------------------------------------------------------

/** A handler or method that answers after `ms` (unref'd, so a test that gives up does not hang). */
const napFor = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

function assertOrdered(summary: { count: number; p50: number; p90: number; p99: number; max: number } | undefined, what: string): void {
  assert.ok(summary !== undefined, `${what}: no latency summary`);
  assert.ok(summary.p50 <= summary.p90 && summary.p90 <= summary.p99 && summary.p99 <= summary.max, `${what}: p50 <= p90 <= p99 <= max, got ${JSON.stringify(summary)}`);
}

describe('latency per type and service.method', () => {
  for (const kind of TRANSPORTS) {
    test(`over ${kind}: a handler that sleeps 20 ms: caller round trip and handler time, p50 <= p90 <= p99 <= max, plausible`, T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      assert.deepEqual(pair.client.getStats().metrics.latency, { requests: {}, handlers: {} });
      pair.server.onMessage('lat.nap', async () => {
        await napFor(20);
        return 'rested';
      });
      pair.server.onMessage('lat.quick', () => 'now');
      for (let round = 0; round < 3; round++) await Promise.all(Array.from({ length: 10 }, () => pair.client.request('lat.nap')));
      for (let i = 0; i < 30; i++) await pair.client.request('lat.quick');
      const caller = pair.client.getStats().metrics.latency;
      const handler = pair.server.getStats().metrics.latency;
      assert.deepEqual(Object.keys(caller.requests).sort(), ['lat.nap', 'lat.quick']);
      assert.deepEqual(caller.handlers, {});
      assert.deepEqual(Object.keys(handler.handlers).sort(), ['lat.nap', 'lat.quick']);
      assert.deepEqual(handler.requests, {});
      const rt = caller.requests['lat.nap'];
      const ht = handler.handlers['lat.nap'];
      assertOrdered(rt, 'caller lat.nap');
      assertOrdered(ht, 'handler lat.nap');
      assert.equal(rt.count, 30);
      assert.equal(ht.count, 30);
      // setTimeout(20) waits at least ~20 ms; buckets are about 4 % wide and report their upper bound.
      assert.ok(ht.p50 >= 19 && ht.p50 < 20 * 1.05 + 60, `handler p50 ${ht.p50} ms for a 20 ms sleep`);
      assert.ok(rt.p50 >= ht.p50, `round trip p50 ${rt.p50} >= handler p50 ${ht.p50}`);
      assert.ok(rt.p99 >= ht.p99 && rt.max >= ht.max * 0.999, 'round trips contain handler times');
      assert.ok(rt.max < 500, `round trip max ${rt.max} ms`);
      const quick = caller.requests['lat.quick'];
      assertOrdered(quick, 'caller lat.quick');
      assert.ok(quick.p50 < ht.p50 / 2, `a handler that does not sleep answers much faster (${quick.p50} ms)`);
      assert.ok(handler.handlers['lat.quick'].p50 < 5, `handler time of a synchronous handler: ${handler.handlers['lat.quick'].p50} ms`);
      t.diagnostic(`${kind}: lat.nap round trip ${JSON.stringify(rt)}, handler ${JSON.stringify(ht)}; lat.quick ${JSON.stringify(quick)}`);
    });
  }

  test('service calls are keyed service.method on the caller and on the provider; messages on the handler side', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    const provider = await pair.addClient();
    await provider.provide('lat', { nap: async () => napFor(20), fail: () => { throw new Error('no'); } });
    for (let i = 0; i < 10; i++) await pair.client.call('lat', 'nap');
    await expectIpcError(pair.client.call('lat', 'fail'), 'HANDLER_ERROR');
    const done = new Promise<void>((resolve) => pair.server.onMessage('lat.msg', async () => {
      await napFor(5);
      resolve();
    }));
    await pair.client.sendMessage('lat.msg');
    await withTimeout(done, 5_000, 'message handler');
    await nextMacrotask();
    const caller = pair.client.getStats().metrics.latency.requests;
    const onProvider = provider.getStats().metrics.latency.handlers;
    assert.deepEqual(Object.keys(caller).sort(), ['lat.fail', 'lat.nap'], 'failed calls are timed too');
    assert.deepEqual(Object.keys(onProvider).sort(), ['lat.fail', 'lat.nap']);
    assert.equal(caller['lat.nap'].count, 10);
    assert.equal(onProvider['lat.nap'].count, 10);
    assertOrdered(caller['lat.nap'], 'caller lat.nap');
    assertOrdered(onProvider['lat.nap'], 'provider lat.nap');
    assert.ok(onProvider['lat.nap'].p50 >= 19, `provider p50 ${onProvider['lat.nap'].p50}`);
    assert.ok(caller['lat.nap'].p50 >= onProvider['lat.nap'].p50, 'the caller\'s round trip includes the method');
    const msg = pair.server.getStats().metrics.latency.handlers['lat.msg'];
    assert.ok(msg !== undefined && msg.count === 1 && msg.max >= 4.5, `message handler time: ${JSON.stringify(msg)}`);
  });

  test('metrics.timeouts counts the requests this side made that timed out (client and server side), not aborts', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    pair.server.onMessage('lat.hang', () => napFor(2_000));
    pair.client.onMessage('client.hang', () => napFor(2_000));
    assert.equal(pair.client.getStats().metrics.timeouts, 0);
    await expectIpcError(pair.server.requestClient(pair.client.getClientId(), 'client.hang', null, { timeout: 30 }), 'TIMEOUT');
    assert.equal(pair.server.getStats().metrics.timeouts, 1, 'the server counts its own request');
    assert.equal(pair.client.getStats().metrics.timeouts, 0, 'the client did not make that request');
    await expectIpcError(pair.client.request('lat.hang', null, { timeout: 30 }), 'TIMEOUT');
    await expectIpcError(pair.client.request('lat.hang', null, { timeout: 0 }), 'TIMEOUT');
    await expectIpcError(pair.client.request('lat.hang', null, { signal: AbortSignal.abort() }), 'ABORTED');
    const aborter = new AbortController();
    const aborted = pair.client.request('lat.hang', null, { signal: aborter.signal });
    aborter.abort();
    await expectIpcError(aborted, 'ABORTED');
    assert.equal(pair.client.getStats().metrics.timeouts, 2, 'aborts are not timeouts');
    assert.equal(pair.server.getStats().metrics.timeouts, 1);
    // A timed-out request is not a latency sample.
    assert.equal(pair.client.getStats().metrics.latency.requests['lat.hang'], undefined);
  });

  test(
    'a call that fails with TIMEOUT counts in the caller\'s metrics.timeouts also when the hub\'s answer (its forwarded budget ran out) comes first',
    T,
    async (t) => {
      const pair = await createPair('unix');
      t.after(() => pair.close());
      // The hub relays an expired forwarded call with its code, exactly like this (pass-through):
      pair.server.onMessage('relayed.timeout', () => {
        throw passThrough(new IpcError('TIMEOUT', 'forwarded "x" timed out'));
      });
      await expectIpcError(pair.client.request('relayed.timeout', null, { timeout: 5_000 }), 'TIMEOUT');
      assert.equal(pair.client.getStats().metrics.timeouts, 1, 'a request that rejected with TIMEOUT is a timeout');
    },
  );

  test('metrics.reconnects counts successful reconnections (the server restarted twice)', T, async (t) => {
    const socketPath = uniqueSocketPath('reconn');
    const id = uniqueId('reconn');
    let server = await startServerAt(socketPath, id);
    t.after(() => server.stop());
    const client = makeClient({ id, endpoint: { socketPath } }, { reconnect: { enabled: true, initialDelay: 20, maxDelay: 50 } });
    t.after(() => client.disconnect());
    await client.connect();
    assert.equal(client.getStats().metrics.reconnects, 0);
    for (let restart = 1; restart <= 2; restart++) {
      const lost = waitForEvent(client, 'disconnect');
      await server.stop();
      await lost;
      const back = waitForEvent(client, 'connect', 10_000);
      server = await startServerAt(socketPath, id);
      await back;
      assert.equal(client.getStats().metrics.reconnects, restart);
      assert.equal(await client.request('echo', restart), restart);
    }
    assert.ok(client.getStats().reconnectAttempts >= 2, 'attempts count every try, reconnects only successes');
  });
});
