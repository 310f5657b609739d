// Pub/sub through the server as broker, on real sockets: delivery and wildcards, own-message
// suppression, unsubscribe, restore after a server restart, async iterators and Observables,
// per-pattern metrics, fan-out to many clients, and a slow subscriber under a 100k burst.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { setImmediate as nextMacrotask } from 'node:timers/promises';
import { rxjs } from '@push.rocks/smartrx';
import {
  EFrameKind,
  EPayloadEncoding,
  IpcError,
  SmartIpc,
  encodeFrame,
  serverConnectionOf,
  type IPublishInfo,
  type IpcClient,
  type IpcServer,
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
  uniqueId,
  uniqueSocketPath,
  waitForEvent,
  waitUntil,
  withTimeout,
  isInvalidArgument,
} from './helpers/fixtures.js';

const { ops } = rxjs;
const T = { timeout: 20_000 };

interface IReceived<T> extends IPublishInfo {
  data: T;
}

/** A subscribe handler that records what it gets and lets a test await a count. */
function inbox<T = unknown>() {
  const messages: IReceived<T>[] = [];
  let waiters: Array<{ count: number; resolve: () => void }> = [];
  const handler = (data: T, info: IPublishInfo) => {
    messages.push({ data, topic: info.topic, from: info.from });
    if (waiters.length === 0) return;
    const ready = waiters.filter((w) => messages.length >= w.count);
    waiters = waiters.filter((w) => messages.length < w.count);
    for (const w of ready) w.resolve();
  };
  const until = (count: number, ms = 5_000): Promise<void> => {
    if (messages.length >= count) return Promise.resolve();
    return withTimeout(new Promise<void>((resolve) => waiters.push({ count, resolve })), ms, `${count} messages (have ${messages.length})`);
  };
  const topics = () => messages.map((m) => m.topic);
  return { messages, handler, until, topics };
}

/**
 * Publishes from one connection reach each subscriber in order, so a final 'barrier.<n>' message
 * seen by a subscriber proves every earlier publish has been delivered to it (or never will be).
 */
async function barrier(publisher: IpcClient | IpcServer, subscribers: IpcClient[]): Promise<void> {
  const marker = `barrier.${uniqueId('b').replace(/[^a-z0-9-]/gi, '')}`;
  const seen = subscribers.map((s) => {
    const box = inbox();
    return { s, box, ready: s.subscribe(marker, box.handler) };
  });
  await Promise.all(seen.map((x) => x.ready));
  await publisher.publish(marker, null);
  await Promise.all(seen.map((x) => x.box.until(1)));
  await Promise.all(seen.map((x) => x.s.unsubscribe(marker)));
}

/** A server and a raw socket that has completed the handshake by hand; its frames are collected. */
async function rawPeer(t: { after(fn: () => unknown): void }, name: string) {
  const started = await startServer('unix', {}, name);
  t.after(() => started.stop());
  const socket = await rawConnect(started.endpoint);
  t.after(() => socket.destroy());
  const frames = collectFrames(socket);
  socket.write(helloFrame({ serverId: started.id }));
  await waitUntil(() => frames.some((f) => f.kind === EFrameKind.Welcome), 5_000, 'welcome');
  return { started, socket, frames };
}

for (const kind of TRANSPORTS) {
  describe(`pub/sub over ${kind}`, () => {
    test('two subscribers and a publisher, as in the readme', T, async (t) => {
      const pair = await createPair(kind, { name: 'pubsub' });
      t.after(() => pair.close());
      const subscriber1 = pair.client;
      const subscriber2 = await pair.addClient();
      const publisher = await pair.addClient();
      const box1 = inbox<{ userId: string }>();
      const box2 = inbox<{ userId: string }>();
      await subscriber1.subscribe('user.login', box1.handler);
      await subscriber2.subscribe('user.login', box2.handler);
      // subscribe resolved: the server has the subscription, so this publish is delivered.
      const event = { userId: '123', ip: '192.168.1.1', timestamp: Date.now() };
      await publisher.publish('user.login', event);
      await Promise.all([box1.until(1), box2.until(1)]);
      for (const box of [box1, box2]) {
        assert.deepEqual(box.messages, [{ data: event, topic: 'user.login', from: publisher.getClientId() }]);
      }
      const stats = pair.server.getStats().pubsub!;
      assert.equal(stats.published, 1);
      assert.equal(stats.delivered, 2);
      assert.equal(stats.dropped, 0);
      assert.equal(stats.subscriptions, 2);
      assert.deepEqual(stats.patterns['user.login'], { subscribers: 2, published: 1, delivered: 2, dropped: 0 });
      assert.equal(publisher.getStats().pubsub!.published, 1);
      assert.equal(subscriber1.getStats().pubsub!.received, 1);
    });
  });
}

describe('pub/sub semantics', () => {
  test('wildcards: * is exactly one segment, > is one or more, literals must be equal', T, async (t) => {
    const pair = await createPair('unix', { name: 'wild' });
    t.after(() => pair.close());
    const patterns = ['user.*', 'user.>', '*.login', 'user.login', 'user.*.created', '>'];
    const subscribers: IpcClient[] = [];
    const boxes = new Map<string, ReturnType<typeof inbox>>();
    for (const pattern of patterns) {
      const client = await pair.addClient();
      const box = inbox();
      await client.subscribe(pattern, box.handler);
      subscribers.push(client);
      boxes.set(pattern, box);
    }
    const publisher = pair.client;
    const topics = ['user.login', 'user.a.b', 'user', 'users.login', 'admin.login', 'user.7.created', 'user.7.deleted', 'login'];
    for (const topic of topics) await publisher.publish(topic, topic);
    await barrier(publisher, subscribers);
    const expected: Record<string, string[]> = {
      'user.*': ['user.login'],
      'user.>': ['user.login', 'user.a.b', 'user.7.created', 'user.7.deleted'],
      '*.login': ['user.login', 'users.login', 'admin.login'],
      'user.login': ['user.login'],
      'user.*.created': ['user.7.created'],
      '>': topics,
    };
    for (const pattern of patterns) {
      const seen = boxes.get(pattern)!.topics().filter((topic) => !topic.startsWith('barrier.'));
      assert.deepEqual(seen, expected[pattern], `pattern ${pattern}`);
      for (const m of boxes.get(pattern)!.messages) if (!m.topic.startsWith('barrier.')) assert.equal(m.data, m.topic);
    }
  });

  test('a client subscribed to several matching patterns gets one frame, every matching handler runs', T, async (t) => {
    const pair = await createPair('unix', { name: 'overlap' });
    t.after(() => pair.close());
    const subscriber = await pair.addClient();
    const a = inbox();
    const b = inbox();
    const c = inbox();
    await subscriber.subscribe('order.*', a.handler);
    await subscriber.subscribe('order.>', b.handler);
    await subscriber.subscribe('order.*', c.handler);
    await pair.client.publish('order.1', 1);
    await barrier(pair.client, [subscriber]);
    assert.equal(a.messages.length, 1);
    assert.equal(b.messages.length, 1);
    assert.equal(c.messages.length, 1);
    const stats = pair.server.getStats().pubsub!;
    assert.equal(stats.delivered, 2, 'one frame for order.1, one for the barrier');
    assert.equal(stats.patterns['order.*'].delivered, 1);
    assert.equal(stats.patterns['order.>'].delivered, 1);
    assert.equal(stats.patterns['order.*'].subscribers, 1, 'two handlers, one subscription on the server');
    assert.equal(subscriber.getStats().pubsub!.subscriptions, 2);
  });

  test('a publisher does not receive its own message; server.publish reaches everyone as from "server"', T, async (t) => {
    const pair = await createPair('unix', { name: 'own' });
    t.after(() => pair.close());
    const alice = pair.client;
    const bob = await pair.addClient();
    const aliceBox = inbox();
    const bobBox = inbox();
    await alice.subscribe('chat.>', aliceBox.handler);
    await bob.subscribe('chat.>', bobBox.handler);
    await alice.publish('chat.room1', 'from alice');
    await bob.publish('chat.room1', 'from bob');
    await pair.server.publish('chat.room1', 'from server');
    // Order holds per publisher, not across publishers: wait for each one's traffic, compare as sets.
    await barrier(alice, [bob]);
    await barrier(bob, [alice]);
    await barrier(pair.server, [alice, bob]);
    assert.deepEqual(aliceBox.messages.map((m) => [m.data, m.from]).sort(), [['from bob', bob.getClientId()], ['from server', 'server']]);
    assert.deepEqual(bobBox.messages.map((m) => [m.data, m.from]).sort(), [['from alice', alice.getClientId()], ['from server', 'server']]);
  });

  test('unsubscribe one handler, then the pattern; the server forgets it; a client that leaves takes its subscriptions along', T, async (t) => {
    const pair = await createPair('unix', { name: 'unsub' });
    t.after(() => pair.close());
    const subscriber = await pair.addClient();
    const keep = inbox();
    const drop = inbox();
    await subscriber.subscribe('news.*', keep.handler);
    await subscriber.subscribe('news.*', drop.handler);
    await pair.client.publish('news.a', 1);
    await barrier(pair.client, [subscriber]);
    await subscriber.unsubscribe('news.*', drop.handler);
    assert.equal(pair.server.getStats().pubsub!.patterns['news.*'].subscribers, 1, 'one handler left: still subscribed');
    await pair.client.publish('news.b', 2);
    await barrier(pair.client, [subscriber]);
    assert.deepEqual(keep.topics(), ['news.a', 'news.b']);
    assert.deepEqual(drop.topics(), ['news.a']);
    await subscriber.unsubscribe('news.*');
    assert.equal(pair.server.getStats().pubsub!.patterns['news.*'], undefined, 'the server dropped the pattern');
    await pair.client.publish('news.c', 3);
    await barrier(pair.client, [subscriber]);
    assert.deepEqual(keep.topics(), ['news.a', 'news.b']);
    // Unknown patterns and handlers: nothing to do.
    await subscriber.unsubscribe('never.subscribed');
    await subscriber.unsubscribe('news.*', keep.handler);
    // A leaving client's subscriptions are gone from the server.
    await subscriber.subscribe('leaving.>', () => undefined);
    assert.equal(pair.server.getStats().pubsub!.subscriptions, 1);
    await subscriber.disconnect();
    await waitUntil(() => pair.server.getStats().pubsub!.subscriptions === 0, 5_000, 'subscriptions dropped');
    assert.deepEqual(pair.server.getStats().pubsub!.patterns, {});
  });

  test('invalid topics are INVALID_ARGUMENT at the caller; subscribing needs a connection', T, async (t) => {
    const pair = await createPair('unix', { name: 'invalid' });
    t.after(() => pair.close());
    const client = pair.client;
    for (const bad of ['', 'a..b', '.a', 'a.', 'a.>.b', 'us*r']) {
      await assert.rejects(client.subscribe(bad, () => undefined), isInvalidArgument, `subscribe "${bad}"`);
      await assert.rejects(client.unsubscribe(bad), isInvalidArgument, `unsubscribe "${bad}"`);
      assert.throws(() => client.subscribeIterator(bad), isInvalidArgument);
      assert.throws(() => client.subscribeObservable(bad), isInvalidArgument);
    }
    for (const bad of ['', 'a.*', 'a.>', 'a..b']) {
      await assert.rejects(client.publish(bad, 1), isInvalidArgument, `publish "${bad}"`);
      await assert.rejects(pair.server.publish(bad, 1), isInvalidArgument, `server.publish "${bad}"`);
    }
    await assert.rejects(client.subscribe('a', 'not a function' as never), isInvalidArgument);
    assert.equal(client.getStats().pubsub!.subscriptions, 0, 'failed calls leave nothing behind');
    // Data JSON cannot carry: PROTOCOL_ERROR, nothing sent.
    await expectIpcError(client.publish('a.b', { n: 1n }), 'PROTOCOL_ERROR');
    const never = makeClient(pair);
    await expectIpcError(never.subscribe('a.b', () => undefined), 'NOT_CONNECTED');
    await expectIpcError(never.publish('a.b', 1), 'NOT_CONNECTED');
    await assert.rejects(client.request('still-works-after-errors'), (err: IpcError) => err.code === 'NO_HANDLER');
  });

  test('a raw client that sends a bad pattern gets a PROTOCOL_ERROR acknowledgement and keeps its connection', T, async (t) => {
    const { started, socket, frames } = await rawPeer(t, 'rawbad');
    socket.write(encodeFrame({ kind: EFrameKind.Subscribe, encoding: EPayloadEncoding.None, id: 7, type: 'a.>.b' }));
    socket.write(encodeFrame({ kind: EFrameKind.Subscribe, encoding: EPayloadEncoding.None, id: 8, type: 'a.*' }));
    await waitUntil(() => frames.filter((f) => f.kind === EFrameKind.Subscribe).length === 2, 5_000, 'two acknowledgements');
    const [refused, accepted] = frames.filter((f) => f.kind === EFrameKind.Subscribe);
    assert.equal(refused.id, 7);
    assert.equal(JSON.parse(refused.payload.toString()).code, 'PROTOCOL_ERROR');
    assert.equal(accepted.id, 8);
    assert.equal(accepted.payload.length, 0);
    // A publish to a wildcard topic is reported on the server and ignored.
    const errorSeen = waitForEvent<[IpcError]>(started.server, 'error');
    socket.write(encodeFrame({ kind: EFrameKind.Publish, encoding: EPayloadEncoding.Json, id: 0, type: 'a.*', payload: '1' }));
    const [error] = await errorSeen;
    assert.equal(error.code, 'PROTOCOL_ERROR');
    await started.server.publish('a.x', 'still here');
    await waitUntil(() => frames.some((f) => f.kind === EFrameKind.Publish), 5_000, 'publish delivered');
    const delivered = frames.find((f) => f.kind === EFrameKind.Publish)!;
    assert.equal(delivered.type, 'a.x');
    assert.equal(JSON.parse(delivered.payload.toString()), 'still here');
  });

  test('on the wire a client publish carries "topic\\u0000from" as its type, a server publish the topic alone', T, async (t) => {
    const { started, socket, frames } = await rawPeer(t, 'rawfrom');
    socket.write(encodeFrame({ kind: EFrameKind.Subscribe, encoding: EPayloadEncoding.None, id: 1, type: 'feed.*' }));
    await waitUntil(() => frames.some((f) => f.kind === EFrameKind.Subscribe), 5_000, 'acknowledgement');
    const publisher = makeClient(started, { clientId: 'pub-ü' });
    t.after(() => publisher.disconnect());
    await publisher.connect();
    await publisher.publish('feed.a', { n: 1 });
    await started.server.publish('feed.b', { n: 2 });
    await waitUntil(() => frames.filter((f) => f.kind === EFrameKind.Publish).length === 2, 5_000, 'two publishes');
    // No order across publishers: tell the two apart by their payload.
    const publishes = frames.filter((f) => f.kind === EFrameKind.Publish);
    const fromClient = publishes.find((f) => JSON.parse(f.payload.toString()).n === 1)!;
    const fromServer = publishes.find((f) => JSON.parse(f.payload.toString()).n === 2)!;
    assert.equal(fromClient.type, 'feed.a\u0000pub-ü');
    assert.deepEqual(JSON.parse(fromClient.payload.toString()), { n: 1 });
    assert.equal(fromClient.headers, undefined, 'no JSON headers per delivery');
    assert.equal(fromServer.type, 'feed.b');
  });

  test('U+0000 is refused in topics and patterns (it separates topic and publisher on the wire)', T, async (t) => {
    const pair = await createPair('unix', { name: 'nul' });
    t.after(() => pair.close());
    await assert.rejects(pair.client.publish('a\u0000b', 1), isInvalidArgument);
    await assert.rejects(pair.client.subscribe('a.\u0000', () => undefined), isInvalidArgument);
    await assert.rejects(pair.server.publish('a\u0000b', 1), isInvalidArgument);
  });

  test('changing subscriptions between publishes always reaches exactly the current handlers', T, async (t) => {
    const pair = await createPair('unix', { name: 'cache' });
    t.after(() => pair.close());
    const subscriber = await pair.addClient();
    const one = inbox();
    const two = inbox();
    await subscriber.subscribe('x.*', one.handler);
    await pair.client.publish('x.1', 'a');
    await one.until(1);
    await subscriber.subscribe('x.>', two.handler);
    await pair.client.publish('x.1', 'b');
    await two.until(1);
    await one.until(2);
    await subscriber.unsubscribe('x.*', one.handler);
    await pair.client.publish('x.1', 'c');
    await two.until(2);
    await barrier(pair.client, [subscriber]);
    assert.deepEqual(one.messages.map((m) => m.data), ['a', 'b']);
    assert.deepEqual(two.messages.map((m) => m.data), ['b', 'c']);
  });

  test('a throwing handler is reported as HANDLER_ERROR; other handlers still run', T, async (t) => {
    const pair = await createPair('unix', { name: 'throw' });
    t.after(() => pair.close());
    const subscriber = await pair.addClient();
    const errors: IpcError[] = [];
    subscriber.on('error', (err) => errors.push(err));
    const box = inbox();
    await subscriber.subscribe('job.*', () => {
      throw new Error('sync boom');
    });
    await subscriber.subscribe('job.*', async () => {
      throw new Error('async boom');
    });
    await subscriber.subscribe('job.*', box.handler);
    await pair.client.publish('job.done', 1);
    await box.until(1);
    await waitUntil(() => errors.length === 2, 5_000, 'two handler errors');
    assert.deepEqual(errors.map((e) => e.code), ['HANDLER_ERROR', 'HANDLER_ERROR']);
  });

  test('a publish too large for one subscriber is dropped for it and reported; the others get it', T, async (t) => {
    const pair = await createPair('unix', { name: 'toolarge' });
    t.after(() => pair.close());
    const small = await pair.addClient({ maxMessageSize: 1024 });
    const large = await pair.addClient();
    const smallBox = inbox();
    const largeBox = inbox();
    await small.subscribe('blob.*', smallBox.handler);
    await large.subscribe('blob.*', largeBox.handler);
    const reported = waitForEvent<[IpcError, string]>(pair.server, 'error');
    await pair.client.publish('blob.big', 'y'.repeat(4096));
    const [error, clientId] = await reported;
    assert.equal(error.code, 'MESSAGE_TOO_LARGE');
    assert.equal(clientId, small.getClientId());
    await largeBox.until(1);
    await pair.client.publish('blob.small', 'ok');
    await smallBox.until(1);
    assert.deepEqual(smallBox.topics(), ['blob.small']);
    assert.equal(pair.server.getStats().pubsub!.patterns['blob.*'].dropped, 1);
  });

  test("serialization 'advanced' carries Map, Date, Buffer and BigInt through the broker untouched", T, async (t) => {
    const pair = await createPair('unix', { name: 'adv', server: { serialization: 'advanced' }, client: { serialization: 'advanced' } });
    t.after(() => pair.close());
    const subscriber = await pair.addClient();
    const box = inbox<{ m: Map<string, number>; d: Date; b: Buffer; n: bigint }>();
    await subscriber.subscribe('rich.*', box.handler);
    const big = Buffer.alloc(100_000, 7); // over the copy threshold: forwarded by reference
    await pair.client.publish('rich.value', { m: new Map([['a', 1]]), d: new Date(5), b: big, n: 2n ** 70n });
    await box.until(1);
    const data = box.messages[0].data;
    assert.deepEqual(data.m, new Map([['a', 1]]));
    assert.equal(data.d.getTime(), 5);
    assert.ok(Buffer.from(data.b).equals(big));
    assert.equal(data.n, 2n ** 70n);
  });
});

describe('pub/sub across reconnects', () => {
  test('subscriptions, iterators and Observables are restored after a server restart without user code', T, async (t) => {
    const socketPath = uniqueSocketPath('restart');
    const id = uniqueId('restart');
    const servers: IpcServer[] = [];
    const clients: IpcClient[] = [];
    t.after(async () => {
      await Promise.all(clients.map((c) => c.disconnect()));
      await Promise.all(servers.map((s) => s.stop({ graceMs: 0 })));
      fs.rmSync(socketPath, { force: true });
    });
    const startOne = async () => {
      const server = SmartIpc.createServer({ id, socketPath });
      servers.push(server);
      await server.start();
      return server;
    };
    const first = await startOne();
    const connectOne = async (reconnect: boolean) => {
      const client = SmartIpc.createClient({ id, socketPath, clientOnly: true, reconnect: { enabled: reconnect, initialDelay: 20, maxDelay: 100 } });
      clients.push(client);
      await client.connect();
      return client;
    };
    const subscriber = await connectOne(true);
    const box = inbox();
    await subscriber.subscribe('svc.*.ready', box.handler);
    const iterator = subscriber.subscribeIterator<number>('svc.>');
    const observed: number[] = [];
    const observation = subscriber.subscribeObservable<number>('svc.count').subscribe((m) => observed.push(m.data));
    t.after(() => observation.unsubscribe());
    await waitUntil(() => first.getStats().pubsub!.subscriptions === 3, 5_000, 'three patterns on the first server');

    const dropped = waitForEvent(subscriber, 'disconnect');
    await first.stop({ graceMs: 0 });
    await dropped;
    // Subscribing while reconnecting resolves once the restore is acknowledged.
    const late = inbox();
    const lateSubscribed = subscriber.subscribe('late.topic', late.handler);
    const reconnected = waitForEvent(subscriber, 'connect', 10_000);
    const second = await startOne();
    await reconnected;
    await withTimeout(lateSubscribed, 5_000, 'subscribe made while reconnecting');
    await waitUntil(() => second.getStats().pubsub!.subscriptions === 4, 5_000, 'every pattern restored on the new server');

    const publisher = await connectOne(false);
    await publisher.publish('svc.db.ready', 1);
    await publisher.publish('svc.count', 2);
    await publisher.publish('late.topic', 3);
    await box.until(1);
    await late.until(1);
    assert.deepEqual(box.messages.map((m) => [m.topic, m.data]), [['svc.db.ready', 1]]);
    const fromIterator = [await iterator.next(), await iterator.next()];
    assert.deepEqual(fromIterator.map((r) => r.value?.topic), ['svc.db.ready', 'svc.count']);
    await waitUntil(() => observed.length === 1, 5_000, 'observable value');
    assert.deepEqual(observed, [2]);
    await iterator.return!();
  });

  test('with reconnect off, a lost connection ends iterators and completes Observables; plain handlers come back on connect()', T, async (t) => {
    const pair = await createPair('unix', { name: 'lost' });
    t.after(() => pair.close());
    const subscriber = await pair.addClient();
    const box = inbox();
    await subscriber.subscribe('x.*', box.handler);
    const iterator = subscriber.subscribeIterator('x.>');
    let completed = false;
    subscriber.subscribeObservable('x.y').subscribe({ complete: () => (completed = true) });
    await waitUntil(() => pair.server.getStats().pubsub!.subscriptions === 3, 5_000, 'subscribed');
    const loop = (async () => {
      const got: string[] = [];
      for await (const message of iterator) got.push(message.topic);
      return got;
    })();
    await pair.client.publish('x.y', 1);
    await box.until(1);
    const lost = waitForEvent(subscriber, 'disconnect');
    serverConnectionOf(pair.server, subscriber.getClientId())!.destroy(new IpcError('CONNECTION_LOST', 'test drops the link'));
    await lost;
    assert.deepEqual(await withTimeout(loop, 5_000, 'iterator end'), ['x.y']);
    await waitUntil(() => completed, 5_000, 'observable complete');
    // connect() again: the plain handler is restored, the iterator and Observable are gone.
    await subscriber.connect();
    await waitUntil(() => pair.server.getStats().pubsub!.subscriptions === 1, 5_000, 'restored on connect()');
    await pair.client.publish('x.z', 2);
    await box.until(2);
  });
});

describe('async iterator and Observable', () => {
  test('for await receives in order, break unsubscribes; unsubscribe() and disconnect() end a loop cleanly', T, async (t) => {
    const pair = await createPair('unix', { name: 'iter' });
    t.after(() => pair.close());
    const subscriber = await pair.addClient();
    const iterator = subscriber.subscribeIterator<number>('user.*');
    const first = iterator.next(); // the first next() also waits for the subscription
    await waitUntil(() => pair.server.getStats().pubsub!.subscriptions === 1, 5_000, 'subscribed');
    for (let i = 0; i < 5; i++) await pair.client.publish(`user.e${i}`, i);
    assert.deepEqual((await first).value, { topic: 'user.e0', from: pair.client.getClientId(), data: 0 });
    const rest: number[] = [];
    for await (const message of iterator) {
      rest.push(message.data);
      if (rest.length === 3) break;
    }
    assert.deepEqual(rest, [1, 2, 3]);
    await waitUntil(() => pair.server.getStats().pubsub!.subscriptions === 0, 5_000, 'break unsubscribed');
    assert.deepEqual(await iterator.next(), { value: undefined, done: true });

    // unsubscribe(pattern) ends a running loop.
    const viaUnsubscribe = subscriber.subscribeIterator<number>('a.*');
    const loopA = (async () => {
      const got: number[] = [];
      for await (const m of viaUnsubscribe) got.push(m.data);
      return got;
    })();
    await waitUntil(() => pair.server.getStats().pubsub!.subscriptions === 1, 5_000, 'a.* subscribed');
    await pair.client.publish('a.1', 1);
    await waitUntil(() => subscriber.getStats().pubsub!.received >= 6, 5_000, 'a.1 received');
    await subscriber.unsubscribe('a.*');
    assert.deepEqual(await withTimeout(loopA, 5_000, 'loop ended by unsubscribe'), [1]);

    // disconnect() ends a running loop without an error.
    const viaDisconnect = subscriber.subscribeIterator('b.*');
    const loopB = (async () => {
      for await (const _ of viaDisconnect) void _;
      return 'ended';
    })();
    await waitUntil(() => pair.server.getStats().pubsub!.subscriptions === 1, 5_000, 'b.* subscribed');
    await subscriber.disconnect();
    assert.equal(await withTimeout(loopB, 5_000, 'loop ended by disconnect'), 'ended');
  });

  test('an iterator keeps at most maxBuffered messages, dropping the oldest and counting them', T, async (t) => {
    const pair = await createPair('unix', { name: 'iterbuf' });
    t.after(() => pair.close());
    const subscriber = await pair.addClient();
    const iterator = subscriber.subscribeIterator<number>('tick', { maxBuffered: 5 });
    const box = inbox();
    await subscriber.subscribe('tick', box.handler); // resolves once the pattern is acknowledged
    for (let i = 0; i < 20; i++) await pair.client.publish('tick', i);
    await box.until(20);
    assert.equal(subscriber.getStats().pubsub!.droppedLocally, 15);
    const got: number[] = [];
    for (let i = 0; i < 5; i++) got.push((await iterator.next()).value!.data);
    assert.deepEqual(got, [15, 16, 17, 18, 19]);
    await iterator.return!();
    assert.throws(() => subscriber.subscribeIterator('tick', { maxBuffered: 0 }), isInvalidArgument);
  });

  test('a failed subscribe rejects the first next() and errors the Observable', T, async (t) => {
    const pair = await createPair('unix', { name: 'iterfail' });
    t.after(() => pair.close());
    const never = makeClient(pair);
    await expectIpcError(never.subscribeIterator('a.b').next(), 'NOT_CONNECTED');
    const observableError = new Promise<unknown>((resolve, reject) => {
      never.subscribeObservable('a.b').subscribe({ next: () => reject(new Error('no value expected')), error: reject, complete: () => resolve('completed') });
    });
    await expectIpcError(observableError, 'NOT_CONNECTED');
  });

  test('an Observable works with rxjs operators and unsubscribes when rxjs is done', T, async (t) => {
    const pair = await createPair('unix', { name: 'rx' });
    t.after(() => pair.close());
    const subscriber = await pair.addClient();
    const values: Array<[string, number, string]> = [];
    const subscription = subscriber
      .subscribeObservable<number>('metric.>')
      .pipe(
        ops.filter((m) => m.data !== 10),
        ops.map((m): [string, number, string] => [m.topic, m.data * 2, m.from]),
      )
      .subscribe((value) => {
        values.push(value);
        if (values.length === 3) subscription.unsubscribe();
      });
    await waitUntil(() => pair.server.getStats().pubsub!.subscriptions === 1, 5_000, 'subscribed');
    for (let i = 0; i < 6; i++) await pair.client.publish(`metric.cpu.${i}`, i * 10);
    await waitUntil(() => pair.server.getStats().pubsub!.subscriptions === 0, 5_000, 'unsubscribed when rxjs was done');
    const from = pair.client.getClientId();
    assert.deepEqual(values, [
      ['metric.cpu.0', 0, from],
      ['metric.cpu.2', 40, from],
      ['metric.cpu.3', 60, from],
    ]);
    // unsubscribe(pattern) completes a live Observable.
    let completed = false;
    subscriber.subscribeObservable('z.*').subscribe({ complete: () => (completed = true) });
    await waitUntil(() => pair.server.getStats().pubsub!.subscriptions === 1, 5_000, 'z.* subscribed');
    await subscriber.unsubscribe('z.*');
    assert.equal(completed, true);
  });
});

describe('fan-out and backpressure', () => {
  test('sendToClient, broadcast and broadcastTo with four clients beside pub/sub', T, async (t) => {
    const pair = await createPair('unix', { name: 'fanout' });
    t.after(() => pair.close());
    const clients = [pair.client, await pair.addClient(), await pair.addClient(), await pair.addClient()];
    const got = new Map<IpcClient, string[]>(clients.map((c) => [c, []]));
    for (const c of clients) {
      c.onMessage('note', (data: string) => void got.get(c)!.push(`msg:${data}`));
      await c.subscribe('note.*', (data: string) => void got.get(c)!.push(`pub:${data}`));
    }
    const ids = clients.map((c) => c.getClientId());
    await pair.server.broadcast('note', 'all');
    await pair.server.broadcastTo([ids[1], ids[3]], 'note', 'odd');
    await pair.server.sendToClient(ids[2], 'note', 'two');
    await expectIpcError(pair.server.broadcastTo([ids[0], 'ghost'], 'note', 'partial'), 'CLIENT_NOT_FOUND');
    await pair.server.publish('note.x', 'topic');
    await barrier(pair.server, clients);
    assert.deepEqual(got.get(clients[0]), ['msg:all', 'msg:partial', 'pub:topic']);
    assert.deepEqual(got.get(clients[1]), ['msg:all', 'msg:odd', 'pub:topic']);
    assert.deepEqual(got.get(clients[2]), ['msg:all', 'msg:two', 'pub:topic']);
    assert.deepEqual(got.get(clients[3]), ['msg:all', 'msg:odd', 'pub:topic']);
  });

  test('10,000 subscriptions across 100 clients: each publish reaches exactly its subscribers', { timeout: 30_000 }, async (t) => {
    const pair = await createPair('unix', { name: 'many' });
    t.after(() => pair.close());
    const clients = await Promise.all(Array.from({ length: 100 }, () => pair.addClient()));
    const received = new Map<IpcClient, string[]>(clients.map((c) => [c, []]));
    await Promise.all(
      clients.map(async (client, c) => {
        const handler = (_: unknown, info: IPublishInfo) => void received.get(client)!.push(info.topic);
        const subscribes: Promise<void>[] = [];
        for (let i = 0; i < 99; i++) subscribes.push(client.subscribe(`svc${c}.t${i}`, handler));
        subscribes.push(client.subscribe(`all.*`, handler));
        await Promise.all(subscribes);
      }),
    );
    assert.equal(pair.server.getStats().pubsub!.subscriptions, 9_900 + 100);
    for (let c = 0; c < 100; c += 7) await pair.server.publish(`svc${c}.t${c % 99}`, c);
    await pair.server.publish('all.hands', null);
    await waitUntil(() => clients.every((client) => received.get(client)!.includes('all.hands')), 10_000, 'all.hands everywhere');
    clients.forEach((client, c) => {
      const expected = c % 7 === 0 ? [`svc${c}.t${c % 99}`, 'all.hands'] : ['all.hands'];
      assert.deepEqual(received.get(client), expected, `client ${c}`);
    });
  });

  test('a slow subscriber under a 100k burst: the others get everything, the server queue stays bounded, drops are counted', { timeout: 60_000 }, async (t) => {
    const maxQueued = 2 * 1024 * 1024;
    const started = await startServer('unix', { heartbeat: false, pubsubMaxQueuedBytes: maxQueued }, 'slow');
    t.after(() => started.stop());
    const fast = [makeClient(started), makeClient(started)];
    t.after(() => Promise.all(fast.map((c) => c.disconnect())));
    const counts = [0, 0];
    let outOfOrder = 0;
    const waiters: Array<() => void> = [];
    for (const [k, client] of fast.entries()) {
      await client.connect();
      await client.subscribe('burst.>', (data: { i: number }) => {
        if (data.i !== counts[k]) outOfOrder++;
        counts[k]++;
        while (waiters.length > 0) waiters.pop()!();
      });
    }
    // The slow subscriber: a raw connection that subscribes, then stops reading.
    const slowId = uniqueId('slow');
    const socket = await rawConnect(started.endpoint);
    t.after(() => socket.destroy());
    const slowFrames = collectFrames(socket);
    socket.write(helloFrame({ serverId: started.id, clientId: slowId }));
    // A peer may send only once it is admitted: what comes before the WELCOME is dropped.
    await waitUntil(() => slowFrames.some((f) => f.kind === EFrameKind.Welcome), 5_000, 'WELCOME');
    socket.write(encodeFrame({ kind: EFrameKind.Subscribe, encoding: EPayloadEncoding.None, id: 1, type: 'burst.>' }));
    await waitUntil(() => slowFrames.some((f) => f.kind === EFrameKind.Subscribe && f.id === 1), 5_000, 'slow subscriber acknowledged');
    socket.pause();
    const slowEvents: string[] = [];
    started.server.on('slowConsumer', (clientId) => slowEvents.push(clientId));

    const total = 100_000;
    const batch = 500;
    const maxLag = 1_000; // fast subscribers are fast: they stay within this many messages
    const pad = 'x'.repeat(400);
    const slowChannel = serverConnectionOf(started.server, slowId)!;
    let maxSlowQueued = 0;
    const memoryBefore = process.memoryUsage();
    let peakExternal = 0;
    const startedAt = performance.now();
    for (let sent = 0; sent < total; ) {
      for (const end = sent + batch; sent < end; sent++) await started.server.publish(`burst.n${sent % 10}`, { i: sent, pad });
      maxSlowQueued = Math.max(maxSlowQueued, slowChannel.queuedBytes);
      peakExternal = Math.max(peakExternal, process.memoryUsage().arrayBuffers);
      const target = sent - maxLag;
      while (Math.min(...counts) < target) {
        await withTimeout(new Promise<void>((resolve) => waiters.push(resolve)), 10_000, `fast subscribers at ${target}`);
      }
      await nextMacrotask();
    }
    await waitUntil(() => counts.every((c) => c === total), 15_000, 'fast subscribers got every message');
    const elapsedMs = performance.now() - startedAt;
    assert.equal(outOfOrder, 0, 'fast subscribers saw every message in order');

    const stats = started.server.getStats().pubsub!;
    assert.equal(stats.published, total);
    assert.ok(stats.dropped > 0, 'the slow subscriber lost messages');
    assert.ok(stats.dropped < total);
    const slowDelivered = total - stats.dropped;
    assert.equal(stats.delivered, 2 * total + slowDelivered);
    assert.deepEqual(stats.patterns['burst.>'], { subscribers: 3, published: total, delivered: 2 * total + slowDelivered, dropped: stats.dropped });
    assert.ok(slowEvents.includes(slowId), 'slowConsumer was emitted for the slow client');
    assert.ok(maxSlowQueued <= maxQueued, `slow client queue peaked at ${maxSlowQueued} bytes (bound ${maxQueued})`);
    // Unbounded, the slow client's queue alone would hold ~45 MB of the 100k ~450-byte frames.
    const externalGrowth = peakExternal - memoryBefore.arrayBuffers;
    assert.ok(externalGrowth < 24 * 1024 * 1024, `buffer memory grew by ${externalGrowth} bytes`);

    // The slow subscriber reads again: it gets exactly what was queued for it, in order, then live traffic.
    socket.resume();
    const published = () => slowFrames.filter((f) => f.kind === EFrameKind.Publish);
    await waitUntil(() => published().length === slowDelivered, 15_000, `slow subscriber read its ${slowDelivered} queued messages`);
    const seq = published().map((f) => (JSON.parse(f.payload.toString()) as { i: number }).i);
    assert.ok(seq.every((v, i) => i === 0 || v > seq[i - 1]), 'in order, with a gap where messages were dropped');
    await waitUntil(() => started.server.getStats().pubsub!.slowConsumers === 0, 5_000, 'no longer a slow consumer');
    await started.server.publish('burst.after', { i: -1 });
    await waitUntil(() => published().length === slowDelivered + 1, 5_000, 'live traffic after draining');
    t.diagnostic(`100k burst with a stalled subscriber: ${Math.round(elapsedMs)} ms, dropped ${stats.dropped}, slow queue peak ${maxSlowQueued} B, buffer growth ${externalGrowth} B`);
  });
});
