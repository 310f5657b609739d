// Handler context over NATS against a real nats-server: the remaining budget per hop (no clock
// sync: ms left, measured on arrival), the handler's signal aborting when the caller's budget runs
// out or the caller aborts (a cancel on <ns>.cancel), traceparent in its own NATS header, into the
// handler's headers and on into nested calls; Buffers whole and nested in both serializations with
// the encoding in Sipc-Enc; streams from NATS clients at the server's `stream` listeners with the
// sender's id; subscribeIterator and subscribeObservable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import type { ICallContext, IMessageContext, IStreamInfo, IPublishInfo, IpcError } from '../ts/index.js';
import { NATS_HEADER, type NatsBridge } from '../ts/nats/index.js';
import type { Msg } from '@nats-io/transport-node';
import { expectIpcError, uniqueId, waitUntil, withTimeout } from './helpers/fixtures.js';
import { natsServerForFile } from './helpers/nats-fixtures.js';

const nats = natsServerForFile();

const scene = nats.scene;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every message of the scene's namespace as NATS carries it (subject, headers), for asserting the wire. */
function snoop(bridge: NatsBridge): Array<{ subject: string; headers: Record<string, string>; bytes: number }> {
  const got: Array<{ subject: string; headers: Record<string, string>; bytes: number }> = [];
  bridge.connection.subscribe(`${bridge.namespace}.>`, {
    callback: (_err, msg: Msg) => {
      const headers: Record<string, string> = {};
      if (msg.headers) for (const [key, values] of msg.headers) headers[key] = values[0];
      got.push({ subject: msg.subject, headers, bytes: msg.data.length });
    },
  });
  return got;
}

/** Waits for a signal to abort; resolves with its reason's code and when it happened. */
function aborted(signal: AbortSignal): Promise<{ code: string; at: number }> {
  return new Promise((resolve) => {
    const done = () => resolve({ code: (signal.reason as IpcError)?.code, at: performance.now() });
    if (signal.aborted) done();
    else signal.addEventListener('abort', done, { once: true });
  });
}

test('deadlines: the budget crosses each hop as ms left; the handler\'s signal aborts with TIMEOUT when it runs out; nested calls inherit it', { timeout: 30_000 }, async (t) => {
  const s = scene(t);
  const [hostBridge, callerBridge, providerBridge] = [await s.bridge(), await s.bridge(), await s.bridge()];
  const server = await s.server();
  const wire = snoop(callerBridge);
  const observed: Array<{ remaining: number; deadlineIn: number; signal: Promise<{ code: string; at: number }> }> = [];
  const service = uniqueId('slowsvc');
  const provider = await s.client(providerBridge, { id: 'p', clientId: 'slow-provider' });
  const nested: number[] = [];
  await provider.provide(service, {
    wait: (_params: unknown, ctx: ICallContext) => {
      nested.push(ctx.remainingMs());
      observed.push({ remaining: ctx.remainingMs(), deadlineIn: (ctx.deadline ?? Infinity) - Date.now(), signal: aborted(ctx.signal) });
      return new Promise(() => undefined); // never answers: only the deadline ends it
    },
  });
  const natsFromHost = await s.client(hostBridge, { id: 'p', clientId: 'host-side' });
  server.onMessage('hop', async (_data, _peerId, ctx: IMessageContext) => {
    observed.push({ remaining: ctx.remainingMs(), deadlineIn: (ctx.deadline ?? Infinity) - Date.now(), signal: aborted(ctx.signal) });
    await sleep(100);
    // Nested NATS call inside the handler: its timeout is what the handler has left.
    natsFromHost.call(service, 'wait', null, { timeout: 60_000 }).catch(() => undefined);
    return new Promise(() => undefined); // only the deadline ends it
  });
  await hostBridge.expose(server);
  const caller = await s.client(callerBridge, { id: server.options.id, clientId: 'deadline-caller' });

  const started = performance.now();
  await expectIpcError(caller.request('hop', null, { timeout: 600 }), 'TIMEOUT');
  const timedOutAt = performance.now();
  assert.ok(timedOutAt - started >= 590 && timedOutAt - started < 900, `caller timed out after ${Math.round(timedOutAt - started)} ms`);
  await waitUntil(() => observed.length === 2, 2_000, 'both handlers ran');
  const [hop, leaf] = observed;
  assert.ok(hop.remaining <= 600 && hop.remaining > 450, `the exposed handler saw ${hop.remaining} ms left of 600`);
  assert.ok(leaf.remaining <= hop.remaining - 90 && leaf.remaining > 300, `one hop further, ${leaf.remaining} ms were left (the handler had spent 100 of ${hop.remaining})`);
  assert.ok(Math.abs(leaf.deadlineIn - leaf.remaining) < 20, 'deadline is an epoch ms on the handler\'s own clock');
  const [hopAbort, leafAbort] = await withTimeout(Promise.all([hop.signal, leaf.signal]), 2_000, 'the handlers\' signals abort');
  assert.equal(hopAbort.code, 'TIMEOUT');
  // The leaf is aborted by its own budget (TIMEOUT) or by its caller's cancellation (ABORTED): whichever is first, never before the caller gave up.
  assert.ok(leafAbort.code === 'TIMEOUT' || leafAbort.code === 'ABORTED', leafAbort.code);
  assert.ok(hopAbort.at >= started + 595, 'never before the caller gave up');
  assert.ok(hopAbort.at - timedOutAt < 150, `the handler's signal aborted ${Math.round(hopAbort.at - timedOutAt)} ms after the caller gave up`);
  // On the wire: Sipc-Timeout-Ms is a budget (<= the timeout), not a time.
  const request = wire.find((m) => m.subject.endsWith('.req.' + server.options.id + '.hop'));
  assert.ok(request, 'the request was seen');
  const budget = Number(request.headers[NATS_HEADER.timeoutMs]);
  assert.ok(budget <= 600 && budget > 500, `Sipc-Timeout-Ms ${budget}`);
  assert.equal(request.headers[NATS_HEADER.from], 'deadline-caller');

  // A budget already spent when it arrives is refused without running the handler.
  let ran = 0;
  server.onMessage('never', () => {
    ran++;
  });
  await expectIpcError(caller.request('never', null, { timeout: 0 }), 'TIMEOUT');
  await sleep(50);
  assert.equal(ran, 0);
});

test('cancellation: a caller that aborts tells the handler (its signal aborts with ABORTED), for requests through an exposed hub and for calls to a NATS provider', { timeout: 20_000 }, async (t) => {
  const s = scene(t);
  const [hostBridge, callerBridge] = [await s.bridge(), await s.bridge()];
  const server = await s.server();
  const signals: Array<Promise<{ code: string; at: number }>> = [];
  server.onMessage('forever', (_data, _peerId, ctx) => {
    signals.push(aborted(ctx.signal));
    return new Promise(() => undefined);
  });
  await hostBridge.expose(server);
  const provider = await s.client(hostBridge, { id: 'x', clientId: 'forever-provider' });
  const service = uniqueId('forever');
  await provider.provide(service, {
    run: (_params: unknown, ctx: ICallContext) => {
      signals.push(aborted(ctx.signal));
      return new Promise(() => undefined);
    },
  });
  const caller = await s.client(callerBridge, { id: server.options.id });
  for (const start of [
    (signal: AbortSignal) => caller.request('forever', null, { signal, timeout: 30_000 }),
    (signal: AbortSignal) => caller.call(service, 'run', null, { signal, timeout: 30_000 }),
  ]) {
    const controller = new AbortController();
    const pending = start(controller.signal);
    await waitUntil(() => signals.length > 0, 2_000, 'the handler runs');
    const abortedAt = performance.now();
    controller.abort();
    await expectIpcError(pending, 'ABORTED');
    const outcome = await withTimeout(signals.shift()!, 2_000, 'the handler hears of the abort');
    assert.equal(outcome.code, 'ABORTED');
    assert.ok(outcome.at - abortedAt < 500, `the cancel took ${Math.round(outcome.at - abortedAt)} ms`);
  }
  assert.equal(hostBridge.serving.size, 0, 'nothing is left running');
});

test('traceparent: its own NATS header, in the handler\'s headers, on into nested requests and calls; other headers ride in Sipc-Headers', { timeout: 20_000 }, async (t) => {
  const s = scene(t);
  const [hostBridge, callerBridge] = [await s.bridge(), await s.bridge()];
  const wire = snoop(callerBridge);
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const server = await s.server();
  const seenHeaders: Record<string, Record<string, unknown> | undefined> = {};
  const service = uniqueId('traced');
  const provider = await s.client(callerBridge, { id: 'x', clientId: 'traced-provider' });
  await provider.provide(service, {
    leaf: (_params: unknown, ctx: ICallContext) => {
      seenHeaders.leaf = ctx.headers as Record<string, unknown> | undefined;
      return 'leaf';
    },
  });
  const hostClient = await s.client(hostBridge, { id: server.options.id, clientId: 'host-nats' });
  server.onMessage('traced', async (_data, _peerId, ctx) => {
    seenHeaders.handler = ctx.headers as Record<string, unknown> | undefined;
    // Nested: no headers given; the traceparent comes along.
    return hostClient.call(service, 'leaf');
  });
  await hostBridge.expose(server);
  const local = await s.localClient(server);
  const caller = await s.client(callerBridge, { id: server.options.id });
  assert.equal(await caller.request('traced', null, { headers: { traceparent, tenant: 'acme' } }), 'leaf');
  assert.deepEqual(seenHeaders.handler, { traceparent, tenant: 'acme' });
  assert.equal(seenHeaders.leaf?.traceparent, traceparent, 'nested call carries the traceparent');
  assert.equal(seenHeaders.leaf?.tenant, undefined, 'only the traceparent is inherited');
  const request = wire.find((m) => m.subject.endsWith('.traced'));
  assert.equal(request?.headers.traceparent, traceparent, 'a NATS-aware tracer sees it');
  assert.equal(request?.headers[NATS_HEADER.headers], JSON.stringify({ tenant: 'acme' }));
  const nestedCall = wire.find((m) => m.subject.includes('.svc.'));
  assert.equal(nestedCall?.headers.traceparent, traceparent);
  // Through the hub into an imported NATS service: the local caller's headers, traceparent included.
  await waitUntil(() => server.isServiceAvailable(service), 5_000, 'imported');
  seenHeaders.leaf = undefined;
  assert.equal(await local.call(service, 'leaf', null, { headers: { traceparent } }), 'leaf');
  assert.equal((seenHeaders.leaf as Record<string, unknown> | undefined)?.traceparent, traceparent);
});

test('Buffers whole and nested arrive as Buffers with the same bytes, json and advanced, every direction; the encoding is in Sipc-Enc', { timeout: 30_000 }, async (t) => {
  const s = scene(t);
  const blob = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff));
  const big = Buffer.alloc(600 * 1024, 0xab);
  const shapes: Record<string, unknown> = {
    whole: blob,
    uint8: new Uint8Array([1, 2, 3]),
    empty: Buffer.alloc(0),
    nested: { name: 'n', data: blob, list: [Buffer.from('a'), { deep: Buffer.from('b') }] },
    large: { big },
  };
  const check = (got: unknown, want: unknown, where: string): void => {
    if (want instanceof Uint8Array) {
      assert.ok(Buffer.isBuffer(got), `${where}: a Buffer, got ${Object.prototype.toString.call(got)}`);
      assert.ok(Buffer.from(want).equals(got as Buffer), `${where}: same bytes`);
      return;
    }
    if (Array.isArray(want)) {
      assert.ok(Array.isArray(got), where);
      want.forEach((item, i) => check((got as unknown[])[i], item, `${where}[${i}]`));
      return;
    }
    if (want !== null && typeof want === 'object') {
      for (const key of Object.keys(want)) check((got as Record<string, unknown>)[key], (want as Record<string, unknown>)[key], `${where}.${key}`);
      return;
    }
    assert.deepEqual(got, want, where);
  };
  for (const serialization of ['json', 'advanced'] as const) {
    const [hostBridge, callerBridge] = [await s.bridge(), await s.bridge({ serialization })];
    const wire = snoop(callerBridge);
    const server = await s.server(uniqueId(`bin-${serialization}`), { serialization });
    const received: unknown[] = [];
    server.onMessage('echo', (data) => data);
    server.onMessage('note', (data) => {
      received.push(data);
    });
    await hostBridge.expose(server);
    const local = await s.localClient(server);
    const caller = await s.client(callerBridge, { id: server.options.id, clientId: `bin-${serialization}` });
    const service = uniqueId('binsvc');
    await caller.provide(service, { echo: (params: unknown) => params });
    await waitUntil(() => server.isServiceAvailable(service), 5_000, 'imported');
    const published: unknown[] = [];
    const natsPublished: unknown[] = [];
    await local.subscribe('bin.>', (data) => {
      published.push(data);
    });
    await caller.subscribe('bin.>', (data) => {
      natsPublished.push(data);
    });
    for (const [name, value] of Object.entries(shapes)) {
      const where = `${serialization} ${name}`;
      check(await caller.request('echo', value), value, `${where} request/response`);
      check(await local.call(service, 'echo', value), value, `${where} hub client -> NATS provider -> back`);
      check(await caller.call(service, 'echo', value), value, `${where} NATS call`);
      await caller.sendMessage('note', value);
      await caller.publish(`bin.${name}`, value);
      await local.publish(`bin.${name}.local`, value);
    }
    await waitUntil(() => received.length === 5 && published.length === 5 && natsPublished.length === 5, 5_000, `${serialization}: messages and publishes`);
    Object.values(shapes).forEach((value, i) => {
      check(received[i], value, `${serialization} message ${i}`);
      check(published[i], value, `${serialization} NATS publish -> local subscriber ${i}`);
      check(natsPublished[i], value, `${serialization} local publish -> NATS subscriber ${i}`);
    });
    // The wire names the encoding; a JSON reply carries no headers at all.
    const encodings = new Set(wire.filter((m) => m.subject.includes('.req.')).map((m) => m.headers[NATS_HEADER.encoding]));
    assert.ok(encodings.has('binary'), `${serialization}: whole Buffers travel as binary`);
    assert.ok(encodings.has(serialization === 'json' ? 'json+attachments' : 'v8'), `${serialization}: nested Buffers (${[...encodings].join(', ')})`);
    const largeRequest = wire.find((m) => m.subject.includes('.req.') && m.bytes > big.length);
    assert.ok(largeRequest && largeRequest.bytes - big.length < 128, `a 600 KiB Buffer adds little: ${largeRequest ? largeRequest.bytes - big.length : '?'} bytes`);
  }
  // A plain JSON request and reply: the reply has no headers.
  const bridge = await s.bridge();
  const server = await s.server();
  server.onMessage('plain', () => ({ ok: true }));
  await bridge.expose(server);
  const client = await s.client(bridge, { id: server.options.id });
  const inboxMessages: Msg[] = [];
  bridge.connection.subscribe('_INBOX.>', { callback: (_e, msg) => {
    inboxMessages.push(msg);
  } });
  await bridge.connection.flush();
  assert.deepEqual(await client.request('plain'), { ok: true });
  await waitUntil(() => inboxMessages.length > 0);
  assert.equal(inboxMessages[0].headers, undefined, 'a JSON reply carries no headers');
});

test('streams from a NATS client reach the server\'s stream listeners with the sender\'s id; publishes from NATS carry the remote publisher\'s id locally; iterators and Observables', { timeout: 20_000 }, async (t) => {
  const s = scene(t);
  const [hostBridge, callerBridge] = [await s.bridge(), await s.bridge()];
  const server = await s.server();
  const streams: Array<{ info: IStreamInfo; body: string }> = [];
  server.on('stream', (info, readable) => {
    const chunks: Buffer[] = [];
    readable.on('data', (chunk: Buffer) => chunks.push(chunk));
    readable.on('end', () => streams.push({ info, body: Buffer.concat(chunks).toString('utf8') }));
  });
  await hostBridge.expose(server);
  const local = await s.localClient(server, { clientId: 'local-sub' });
  const localGot: IPublishInfo[] = [];
  await local.subscribe('feed.*', (_data, info) => {
    localGot.push(info);
  });
  const sender = await s.client(callerBridge, { id: server.options.id, clientId: 'stream-sender' });
  await sender.sendStream(Readable.from([Buffer.from('hello '), Buffer.from('server')]), { meta: { name: 'greeting' }, headers: { why: 'test' } });
  assert.equal(streams.length, 1);
  assert.equal(streams[0].body, 'hello server');
  assert.equal(streams[0].info.clientId, 'stream-sender');
  assert.equal(streams[0].info.peerId, 'stream-sender');
  assert.deepEqual(streams[0].info.meta, { name: 'greeting' });
  assert.equal(streams[0].info.headers.why, 'test');

  await sender.publish('feed.one', 1);
  await waitUntil(() => localGot.length === 1);
  assert.deepEqual(localGot[0], { topic: 'feed.one', from: 'stream-sender' });

  // subscribeIterator / subscribeObservable on the NATS client.
  const listener = await s.client(callerBridge, { id: server.options.id, clientId: 'iter' });
  const iterator = listener.subscribeIterator<number>('feed.>');
  const observed: number[] = [];
  const subscription = listener.subscribeObservable<number>('feed.*').subscribe((message) => observed.push(message.data));
  await sleep(100); // both subscriptions reach nats-server
  for (let i = 0; i < 3; i++) await local.publish(`feed.n${i}`, i);
  const got: Array<{ topic: string; from: string; data: number }> = [];
  for await (const message of iterator) {
    got.push(message);
    if (got.length === 3) break;
  }
  assert.deepEqual(got.map((m) => [m.topic, m.from, m.data]), [['feed.n0', 'local-sub', 0], ['feed.n1', 'local-sub', 1], ['feed.n2', 'local-sub', 2]]);
  await waitUntil(() => observed.length === 3);
  assert.deepEqual(observed, [0, 1, 2]);
  subscription.unsubscribe();
  // An iterator ends when the client disconnects.
  const ending = listener.subscribeIterator('feed.>');
  const next = ending.next();
  await sleep(50);
  await listener.disconnect();
  assert.deepEqual(await withTimeout(next, 2_000, 'the iterator ends'), { value: undefined, done: true });
});
