// nats-server killed (SIGKILL) and restarted on the same port: requests in flight reject with
// CONNECTION_LOST at once, what is sent during the outage waits in the outbox and arrives once and
// in order after the restart (also when the exposing host reconnects later than the caller),
// subscriptions are restored, and the outbox bound holds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { SmartIpc, IpcError, type IPublishInfo } from '../ts/index.js';
import { expectIpcError, waitForEvent, waitUntil, withTimeout } from './helpers/fixtures.js';
import { NatsScene, natsServerForFile } from './helpers/nats-fixtures.js';

const nats = natsServerForFile();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function track<T>(promise: Promise<T>) {
  const state = { settled: false, value: undefined as T | undefined, error: undefined as unknown };
  const done = promise.then(
    (value) => {
      state.settled = true;
      state.value = value;
    },
    (error) => {
      state.settled = true;
      state.error = error;
    },
  );
  return { state, done };
}

test('nats-server SIGKILLed and restarted on its port: in-flight requests CONNECTION_LOST at once; outage sends arrive once, in order; subscriptions restored', { timeout: 60_000 }, async (t) => {
  const s = new NatsScene(nats.server);
  t.after(() => s.close());
  // The caller reconnects fast, the exposing host slowly: the caller's outbox must wait for the host.
  const callerBridge = await s.bridge({ reconnectTimeWait: 50 });
  const hostBridge = await s.bridge({ reconnectTimeWait: 700 });
  const server = await s.server();
  const recorded: number[] = [];
  server.onMessage('record', (seq: number) => {
    recorded.push(seq);
    return seq;
  });
  server.onMessage('hang', () => new Promise((resolve) => setTimeout(resolve, 20_000).unref()));
  await hostBridge.expose(server);
  const address = server.getAddress() as { socketPath: string };
  const local = SmartIpc.createClient({ id: server.options.id, socketPath: address.socketPath, clientOnly: true, heartbeat: false });
  await local.connect();
  s.onClose(() => local.disconnect());
  const localGot: Array<[unknown, IPublishInfo]> = [];
  await local.subscribe('ev.*', (data, info) => {
    localGot.push([data, info]);
  });

  const client = await s.client(callerBridge, { id: server.options.id, clientId: 'outage-caller' });
  const listener = await s.client(callerBridge, { id: server.options.id, clientId: 'outage-listener' });
  const natsGot: number[] = [];
  await listener.subscribe('ev.>', (data) => {
    natsGot.push(data as number);
  });
  const errors: IpcError[] = [];
  client.on('error', (error) => errors.push(error));
  const attempts: number[] = [];
  client.on('reconnecting', (attempt) => attempts.push(attempt));
  assert.equal(await client.request('record', 0), 0);

  const pending = Array.from({ length: 20 }, () => client.request('hang', null, { timeout: 30_000 }).then(() => 'resolved', (error: unknown) => error));
  await sleep(100); // they reached the host
  const disconnected = waitForEvent<[IpcError]>(client, 'disconnect', 5_000);
  const killedAt = performance.now();
  await nats.server.stop('SIGKILL');
  const outcomes = await withTimeout(Promise.all(pending), 3_000, 'rejection of the pending requests');
  assert.ok(performance.now() - killedAt < 3_000);
  for (const outcome of outcomes) {
    assert.ok(outcome instanceof IpcError, `expected an IpcError, got ${String(outcome)}`);
    assert.equal(outcome.code, 'CONNECTION_LOST');
  }
  const [reason] = await disconnected;
  assert.equal(reason.code, 'CONNECTION_LOST');
  assert.equal(client.getIsConnected(), false);

  // Sent while NATS is down: they wait instead of failing (NATS itself would drop them).
  const outage: Array<ReturnType<typeof track>> = [];
  for (let seq = 1; seq <= 30; seq++) {
    outage.push(track(client.sendMessage('record', seq)));
    if (seq % 3 === 0) outage.push(track(client.publish(`ev.${seq}`, seq)));
  }
  const outageRequest = track(client.request<number, number>('record', 31, { timeout: 30_000 }));
  await sleep(300);
  assert.ok(outage.every((o) => !o.state.settled) && !outageRequest.state.settled, 'outage sends settled while NATS was down');
  assert.ok(attempts.length >= 1, 'no reconnecting event while NATS was down');

  const reconnected = waitForEvent(client, 'connect', 20_000);
  await nats.server.restart();
  await reconnected;
  await withTimeout(Promise.all([...outage, outageRequest].map((o) => o.done)), 15_000, 'outage sends');
  for (const o of outage) assert.equal(o.state.error, undefined, `outage send failed: ${String(o.state.error)}`);
  assert.equal(outageRequest.state.value, 31);
  assert.deepEqual(recorded, Array.from({ length: 32 }, (_, i) => i), 'outage messages arrive exactly once, in order (the request last)');

  const published = Array.from({ length: 10 }, (_, i) => (i + 1) * 3);
  await waitUntil(() => localGot.length >= 10 && natsGot.length >= 10, 5_000, 'outage publishes');
  await sleep(200);
  assert.deepEqual(localGot.map(([data]) => data), published, 'the local subscriber behind the host got each outage publish once, in order');
  assert.deepEqual(natsGot, published, 'the NATS subscriber got each outage publish once, in order');

  // Subscriptions made before the outage still work, and new ones too.
  await client.publish('ev.after', 'after');
  await waitUntil(() => natsGot.length === 11 && localGot.length === 11, 5_000, 'a publish after the restart');
  const fresh: unknown[] = [];
  await listener.subscribe('fresh.*', (data) => {
    fresh.push(data);
  });
  await client.publish('fresh.one', 1);
  await waitUntil(() => fresh.length === 1, 5_000, 'a new subscription');
  assert.equal(await client.request('record', 32), 32);
  assert.deepEqual(attempts, attempts.map((_, i) => i + 1), 'reconnecting(attempt) counts 1, 2, 3...');
  assert.deepEqual(errors, []);
});

test('the outbox is bounded while NATS is down: past maxMessages a send rejects NOT_CONNECTED at once; what fits goes out', { timeout: 60_000 }, async (t) => {
  const s = new NatsScene(nats.server);
  t.after(() => s.close());
  const bridge = await s.bridge({ reconnectTimeWait: 50 });
  const server = await s.server();
  const recorded: number[] = [];
  server.onMessage('record', (seq: number) => {
    recorded.push(seq);
  });
  await bridge.expose(server);
  const client = await s.client(bridge, { id: server.options.id, outbox: { maxMessages: 5 } });
  const disconnected = waitForEvent(client, 'disconnect', 5_000);
  await nats.server.stop('SIGKILL');
  await disconnected;
  const fits = Array.from({ length: 5 }, (_, i) => client.sendMessage('record', i));
  await expectIpcError(client.sendMessage('record', 5), 'NOT_CONNECTED', 1_000);
  await expectIpcError(client.request('record', 6), 'NOT_CONNECTED', 1_000);
  // Streams need a live connection.
  await expectIpcError(client.sendStream(Readable.from([Buffer.alloc(1)], { objectMode: false })), 'NOT_CONNECTED', 1_000);
  const reconnected = waitForEvent(client, 'connect', 20_000);
  await nats.server.restart();
  await reconnected;
  await withTimeout(Promise.all(fits), 10_000, 'the messages that fit');
  await waitUntil(() => recorded.length === 5, 5_000);
  assert.deepEqual(recorded, [0, 1, 2, 3, 4]);
});

test('services across a nats-server restart: a running handler is aborted with CONNECTION_LOST, providers and imports come back, calls made during the outage go out after it', { timeout: 60_000 }, async (t) => {
  const s = new NatsScene(nats.server);
  t.after(() => s.close());
  const hostBridge = await s.bridge({ reconnectTimeWait: 50 });
  const providerBridge = await s.bridge({ reconnectTimeWait: 50 });
  const callerBridge = await s.bridge({ reconnectTimeWait: 50 });
  const server = await s.server();
  const service = `outage-svc-${process.pid}`;
  const aborts: string[] = [];
  const provider = await s.client(providerBridge, { id: 'p', clientId: 'outage-provider' });
  await provider.provide(service, {
    echo: (n: number) => n,
    hang: (_params: unknown, ctx: { signal: AbortSignal }) => new Promise((resolve) => {
      ctx.signal.addEventListener('abort', () => {
        aborts.push((ctx.signal.reason as IpcError).code);
        resolve(undefined);
      });
    }),
  });
  await hostBridge.expose(server);
  const local = await s.localClient(server);
  await waitUntil(() => server.isServiceAvailable(service), 5_000, 'imported');
  const caller = await s.client(callerBridge, { id: server.options.id });
  assert.equal(await caller.call(service, 'echo', 1), 1);
  assert.equal(await local.call(service, 'echo', 2), 2);

  const hanging = caller.call(service, 'hang', null, { timeout: 30_000 }).catch((error: IpcError) => error.code);
  await sleep(100);
  const reconnected = Promise.all([waitForEvent(caller, 'connect', 20_000), waitForEvent(provider, 'connect', 20_000)]);
  await nats.server.stop('SIGKILL');
  assert.equal(await withTimeout(hanging, 3_000, 'the call in flight'), 'CONNECTION_LOST');
  await waitUntil(() => aborts.length === 1, 3_000, 'the provider aborts the running method');
  assert.deepEqual(aborts, ['CONNECTION_LOST']);
  const duringOutage = caller.call(service, 'echo', 3, { timeout: 20_000 });
  await nats.server.restart();
  await reconnected;
  assert.equal(await withTimeout(duringOutage, 15_000, 'the call made during the outage'), 3);
  assert.equal(await caller.call(service, 'echo', 4), 4);
  // The hub's relay needs its own bridge back (it has no outbox: NOT_CONNECTED while that is down).
  await waitUntil(() => hostBridge.getIsConnected(), 10_000, 'the hub\'s bridge reconnects');
  await waitUntil(() => server.isServiceAvailable(service), 10_000, 'still imported');
  assert.equal(await local.call(service, 'echo', 5), 5);
});
