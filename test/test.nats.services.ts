// Services over NATS against a real nats-server: NATS clients providing and calling across two
// bridges, an exposed hub's services (its own and its clients') callable over NATS, NATS-provided
// services callable by the hub's clients (imported), load spread through queue groups,
// SERVICE_NOT_FOUND / METHOD_NOT_FOUND at once, call chains and the hub's depth guard across hops,
// listServices.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ICallContext } from '../ts/index.js';
import { expectIpcError, uniqueId, waitUntil } from './helpers/fixtures.js';
import { natsServerForFile } from './helpers/nats-fixtures.js';

const nats = natsServerForFile();

const scene = nats.scene;

interface ISeen {
  callerId: string;
  root: string;
  chain: string[];
  depth: number;
}
const seen = (ctx: ICallContext): ISeen => ({ callerId: ctx.callerId, root: ctx.root, chain: [...ctx.chain], depth: ctx.depth });

interface IMathApi {
  add(params: { a: number; b: number }): number;
  whoami(): ISeen;
}

test('a NATS client provides, another on a second bridge calls: result, typed proxy, HANDLER_ERROR with remote, context, SERVICE_NOT_FOUND and METHOD_NOT_FOUND at once', { timeout: 20_000 }, async (t) => {
  const s = scene(t);
  const [bridgeA, bridgeB] = [await s.bridge(), await s.bridge()];
  const provider = await s.client(bridgeA, { id: 'any', clientId: 'math-provider' });
  const service = uniqueId('math');
  await provider.provide(service, {
    add: ({ a, b }: { a: number; b: number }) => a + b,
    whoami: (_params: unknown, ctx: ICallContext) => seen(ctx),
    boom: () => {
      throw Object.assign(new Error('no math today'), { code: 'E_MATH' });
    },
  }, { version: '1.2.0', metadata: { region: 'eu' } });
  const caller = await s.client(bridgeB, { id: 'other', clientId: 'math-caller' });

  assert.equal(await caller.call(service, 'add', { a: 2, b: 3 }), 5);
  const api = caller.service<IMathApi>(service);
  assert.equal(await api.add({ a: 40, b: 2 }), 42);
  const who = await api.whoami();
  assert.equal(who.callerId, 'math-caller', 'the method sees the NATS caller');
  assert.deepEqual(who.chain, [service]);
  assert.equal(who.depth, 1);
  assert.ok(who.root.length > 0);
  const error = await expectIpcError(caller.call(service, 'boom'), 'HANDLER_ERROR');
  assert.equal(error.message, 'no math today');
  assert.deepEqual(error.remote, { name: 'Error', message: 'no math today', code: 'E_MATH' });

  let started = performance.now();
  await expectIpcError(caller.call(uniqueId('nobody'), 'x', null, { timeout: 10_000 }), 'SERVICE_NOT_FOUND');
  assert.ok(performance.now() - started < 1_000, 'SERVICE_NOT_FOUND at once, not after the timeout');
  started = performance.now();
  await expectIpcError(caller.call(service, 'divide', null, { timeout: 10_000 }), 'METHOD_NOT_FOUND');
  assert.ok(performance.now() - started < 1_000, 'METHOD_NOT_FOUND at once');

  // listServices: the provider's instance with its methods, version, metadata.
  const listed = await caller.listServices();
  const entry = listed.find((info) => info.name === service);
  assert.ok(entry, 'the service is listed');
  assert.equal(entry.instances.length, 1);
  assert.equal(entry.instances[0].clientId, 'math-provider');
  assert.deepEqual([...entry.instances[0].methods].sort(), ['add', 'boom', 'whoami']);
  assert.equal(entry.instances[0].version, '1.2.0');
  assert.deepEqual(entry.instances[0].metadata, { region: 'eu' });
  assert.equal(entry.instances[0].hub, undefined);

  // unprovide: gone at once.
  await provider.unprovide(service);
  await expectIpcError(caller.call(service, 'add', { a: 1, b: 1 }), 'SERVICE_NOT_FOUND');
  // provide before connect: subscribed by connect().
  const late = bridgeA.createClient({ id: 'any', clientId: 'late-provider' });
  await late.provide(service, { add: ({ a, b }: { a: number; b: number }) => a * 100 + b });
  s.onClose(() => late.disconnect());
  await late.connect();
  assert.equal(await caller.call(service, 'add', { a: 1, b: 2 }), 102);
  await late.disconnect();
  await expectIpcError(caller.call(service, 'add', { a: 1, b: 2 }), 'SERVICE_NOT_FOUND');
});

test('load spread: two NATS providers and two exposed hubs (a local client each) share one service; every call answered once', { timeout: 30_000 }, async (t) => {
  const s = scene(t);
  const callerBridge = await s.bridge();
  const service = uniqueId('work');
  const counts: Record<string, number> = {};
  const method = (name: string) => ({
    run: (n: number) => {
      counts[name] = (counts[name] ?? 0) + 1;
      return { by: name, n };
    },
  });
  for (const name of ['nats-1', 'nats-2']) {
    const client = await s.client(await s.bridge(), { id: 'any', clientId: name });
    await client.provide(service, method(name));
  }
  for (const name of ['hub-1', 'hub-2']) {
    const bridge = await s.bridge();
    const server = await s.server(uniqueId(name));
    const local = await s.localClient(server, { clientId: `${name}-worker` });
    await local.provide(service, method(name));
    await bridge.expose(server);
  }
  const caller = await s.client(callerBridge, { id: 'any' });
  const answers = await Promise.all(Array.from({ length: 400 }, (_, n) => caller.call<{ by: string; n: number }>(service, 'run', n)));
  assert.deepEqual(answers.map((a) => a.n), Array.from({ length: 400 }, (_, n) => n));
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  assert.equal(total, 400, 'every call handled exactly once');
  for (const name of ['nats-1', 'nats-2', 'hub-1', 'hub-2']) assert.ok((counts[name] ?? 0) > 30, `load not spread: ${JSON.stringify(counts)}`);
  const listed = (await caller.listServices()).find((info) => info.name === service);
  assert.ok(listed);
  assert.deepEqual(listed.instances.filter((i) => i.hub === undefined).map((i) => i.clientId).sort(), ['nats-1', 'nats-2']);
  const behindHubs = listed.instances.filter((i) => i.hub !== undefined);
  assert.deepEqual(behindHubs.map((i) => i.clientId).sort(), ['hub-1-worker', 'hub-2-worker'], 'each hub lists its client\'s instance');
  assert.equal(new Set(behindHubs.map((i) => i.hub)).size, 2);
});

test('through an exposed hub: a local client\'s service and the hub\'s own are callable over NATS; a NATS client\'s service is callable by the hub\'s clients', { timeout: 30_000 }, async (t) => {
  const s = scene(t);
  const [hostBridge, natsBridge] = [await s.bridge(), await s.bridge()];
  const server = await s.server();
  const userService = uniqueId('user');
  const hubService = uniqueId('hubsvc');
  const billing = uniqueId('billing');
  const local = await s.localClient(server, { clientId: 'local-user-provider' });
  await local.provide(userService, {
    get: ({ id }: { id: string }, ctx: ICallContext) => ({ id, name: 'Ada', ctx: seen(ctx) }),
  });
  await server.provide(hubService, { ping: () => 'pong from the hub' });
  await hostBridge.expose(server);

  const natsClient = await s.client(natsBridge, { id: server.options.id, clientId: 'nats-caller' });
  const user = await natsClient.call<{ id: string; name: string; ctx: ISeen }>(userService, 'get', { id: '42' });
  assert.equal(user.name, 'Ada');
  assert.deepEqual(user.ctx.chain, [userService]);
  assert.equal(user.ctx.depth, 1);
  assert.equal(await natsClient.call(hubService, 'ping'), 'pong from the hub');
  await expectIpcError(natsClient.call(userService, 'delete'), 'METHOD_NOT_FOUND');

  // A NATS client provides billing; the hub imports it, so its local clients call it like a local one.
  const provider = await s.client(natsBridge, { id: 'elsewhere', clientId: 'billing-provider' });
  await provider.provide(billing, {
    charge: ({ cents }: { cents: number }, ctx: ICallContext) => ({ charged: cents, ctx: seen(ctx) }),
    fail: () => {
      throw new Error('card declined');
    },
  });
  await waitUntil(() => server.isServiceAvailable(billing), 5_000, 'the hub imports the NATS service');
  const info = server.getService(billing)!;
  assert.equal(info.instances.length, 1);
  assert.equal(info.instances[0].clientId, 'server');
  assert.deepEqual((info.instances[0].metadata as { nats?: { imported?: boolean } }).nats?.imported, true);
  const charged = await local.call<{ charged: number; ctx: ISeen }>(billing, 'charge', { cents: 250 });
  assert.equal(charged.charged, 250);
  assert.equal(charged.ctx.callerId, 'local-user-provider', 'the NATS provider sees the hub client that called');
  assert.deepEqual(charged.ctx.chain, [billing]);
  const declined = await expectIpcError(local.call(billing, 'fail'), 'HANDLER_ERROR');
  assert.equal(declined.message, 'card declined', 'the failure crosses both legs with its message');
  assert.equal(declined.remote?.message, 'card declined');
  await expectIpcError(local.call(billing, 'refund'), 'METHOD_NOT_FOUND');
  // The import is not exported back: over NATS only the real provider answers (no loop), and the hub lists only its own.
  const listed = await natsClient.listServices();
  assert.deepEqual(listed.find((entry) => entry.name === billing)?.instances.map((i) => i.clientId), ['billing-provider']);
  assert.equal(listed.find((entry) => entry.name === userService)?.instances[0].hub, server.options.id);
  for (let i = 0; i < 20; i++) assert.equal((await natsClient.call<{ charged: number }>(billing, 'charge', { cents: i })).charged, i);
  // The provider leaves: the import goes, the hub's client gets SERVICE_NOT_FOUND.
  await provider.unprovide(billing);
  await waitUntil(() => !server.isServiceAvailable(billing), 5_000, 'the import is withdrawn');
  await expectIpcError(local.call(billing, 'charge', { cents: 1 }), 'SERVICE_NOT_FOUND');
});

test('call chains across hops: NATS caller -> hub client -> NATS provider keeps one root and grows the chain; the exposed hub\'s maxCallDepth guards', { timeout: 30_000 }, async (t) => {
  const s = scene(t);
  const [hostBridge, natsBridge] = [await s.bridge(), await s.bridge()];
  const server = await s.server(uniqueId('chain'), { maxCallDepth: 2 });
  const order = uniqueId('order');
  const stock = uniqueId('stock');
  const audit = uniqueId('audit');
  const records: Record<string, ISeen> = {};
  const local = await s.localClient(server, { clientId: 'order-service' });
  await local.provide(order, {
    place: async (_params: unknown, ctx: ICallContext) => {
      records.order = seen(ctx);
      return local.call(stock, 'reserve');
    },
  });
  await hostBridge.expose(server);
  const stockProvider = await s.client(natsBridge, { id: 'x', clientId: 'stock-service' });
  await stockProvider.provide(stock, {
    reserve: async (_params: unknown, ctx: ICallContext) => {
      records.stock = seen(ctx);
      return 'reserved';
    },
    reserveAudited: async () => stockProvider.call(audit, 'log'),
  });
  await stockProvider.provide(audit, { log: (_params: unknown, ctx: ICallContext) => seen(ctx) });
  await waitUntil(() => server.isServiceAvailable(stock), 5_000, 'stock imported into the hub');

  const caller = await s.client(natsBridge, { id: 'y', clientId: 'shop' });
  assert.equal(await caller.call(order, 'place'), 'reserved');
  assert.deepEqual(records.order.chain, [order]);
  assert.equal(records.order.callerId, 'server', 'a call that came over NATS reaches the hub\'s client from the hub');
  assert.deepEqual(records.stock.chain, [order, stock], 'the chain grows across the NATS hop');
  assert.equal(records.stock.depth, 2);
  assert.equal(records.stock.root, records.order.root, 'one root along the chain');
  assert.equal(records.stock.callerId, 'order-service');

  // A NATS provider's nested call extends the chain too.
  const audited = await caller.call<ISeen>(stock, 'reserveAudited');
  assert.deepEqual(audited.chain, [stock, audit]);
  assert.equal(audited.callerId, 'stock-service');

  // The hub's depth guard (maxCallDepth 2) sees the chain that arrived over NATS.
  const deep = uniqueId('deep');
  await local.provide(deep, { x: () => 'deep' });
  const middle = uniqueId('middle');
  await stockProvider.provide(middle, { hop: () => stockProvider.call(deep, 'x') }); // chain [first, middle, deep]
  const first = uniqueId('first');
  await stockProvider.provide(first, { go: () => stockProvider.call(middle, 'hop') });
  assert.equal(await caller.call(middle, 'hop'), 'deep', 'depth 2 is allowed');
  // The refusal surfaces through both methods (each rethrows it: HANDLER_ERROR, as through a local hub) with the hub's words.
  const error = await expectIpcError(caller.call(first, 'go'), 'HANDLER_ERROR');
  assert.match(error.message, /would be 3 deep, over maxCallDepth 2/);
  // A NATS provider's own maxCallDepth guards its methods.
  const shallowBridge = await s.bridge();
  const shallow = await s.client(shallowBridge, { id: 'z', clientId: 'shallow', maxCallDepth: 1 });
  const shallowService = uniqueId('shallow');
  await shallow.provide(shallowService, { x: () => 1 });
  const viaChain = uniqueId('via');
  await stockProvider.provide(viaChain, { x: () => stockProvider.call(shallowService, 'x') });
  assert.equal(await caller.call(shallowService, 'x'), 1);
  const refused = await expectIpcError(caller.call(viaChain, 'x'), 'HANDLER_ERROR');
  assert.equal(refused.remote?.code, 'MAX_DEPTH_EXCEEDED');
});
