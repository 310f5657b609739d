// Services through the hub (issue 11): provide / unprovide / call / service<TApi>() on clients and
// on the hub itself, the registry and its events, instance groups (fewest in flight, ties in turn),
// the call context and its chain (depth guard, deadlines, cancellation), bad input from the API
// and from raw sockets, and payloads the hub passes on without decoding. Real Unix sockets and
// TCP; instances that must die for real (SIGKILL) and hubs that restart run in child processes.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import {
  EFrameKind,
  EPayloadEncoding,
  FLAG_HAS_HEADERS,
  IpcError,
  clientConnectionOf,
  encodeFrame,
  observeFrames,
  serverConnectionOf,
  encodeCall,
  type ICallCompletedInfo,
  type ICallContext,
  type ICallRoutedInfo,
  type IFrame,
  type IHelloPayload,
  type IOutgoingFrame,
  type IServiceRegisteredInfo,
  type IServiceUnregisteredInfo,
  type IpcClient,
  type IpcServer,
  type TServiceProxy,
} from '../ts/internal.js';
import {
  HELPERS_DIR,
  TRANSPORTS,
  collectFrames,
  createPair,
  expectIpcError,
  helloFrame,
  isInvalidArgument,
  makeClient,
  rawConnect,
  startServer,
  uniqueId,
  uniqueSocketPath,
  unixTarget,
  waitForClose,
  waitForEvent,
  waitUntil,
  withTimeout,
  type IPair,
  type IStartedServer,
} from './helpers/fixtures.js';
import { forkScript, spawnServer, type IChild } from './helpers/resilience-process.js';

const T = { timeout: 30_000 };
/** "At once": a refusal must come back this fast although the call's timeout is LONG_TIMEOUT_MS. */
const AT_ONCE_MS = 500;
const LONG_TIMEOUT_MS = 10_000;
const PROVIDER_SCRIPT = path.join(HELPERS_DIR, 'services-provider.ts');

// ---- small helpers -----------------------------------------------------------------------------

interface IOutcome<T> {
  ms: number;
  value?: T;
  error?: IpcError;
}

/** Awaits a call and says how it ended and how long it took (never throws). */
async function outcome<T>(promise: Promise<T>): Promise<IOutcome<T>> {
  const startedAt = performance.now();
  try {
    const value = await promise;
    return { ms: performance.now() - startedAt, value };
  } catch (err) {
    assert.ok(err instanceof IpcError, `expected an IpcError, got ${String(err)}`);
    return { ms: performance.now() - startedAt, error: err };
  }
}

/** Tracks whether a promise has settled, without unhandled rejections. */
function track<T>(promise: Promise<T>) {
  const state: { settled: boolean; at?: number; value?: T; error?: IpcError } = { settled: false };
  const done = promise.then(
    (value) => Object.assign(state, { settled: true, at: performance.now(), value }),
    (error: IpcError) => Object.assign(state, { settled: true, at: performance.now(), error }),
  );
  return { state, done };
}

/** Retries an async probe until it resolves, failing after ms (for state reached over the wire). */
async function eventually<T>(probe: () => Promise<T>, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      return await probe();
    } catch (err) {
      last = err;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  throw new Error(`${what} not reached within ${ms} ms; last error: ${String(last)}`);
}

/** A promise and its resolver, for methods a test releases by hand. */
function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}

function collect<T>(emitter: IpcServer, event: 'serviceRegistered' | 'serviceUnregistered' | 'callRouted' | 'callCompleted'): T[] {
  const seen: T[] = [];
  emitter.on(event, (info: unknown) => seen.push(info as T));
  return seen;
}

function countBy(values: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const value of values) counts[value] = (counts[value] ?? 0) + 1;
  return counts;
}

/** A client speaking the wire by hand: what a broken or hostile peer can send. */
interface IRawPeer {
  socket: net.Socket;
  clientId: string;
  frames: IFrame[];
  send(frame: IOutgoingFrame): void;
  /** The first frame (after the WELCOME) answering `id`. */
  answer(id: number, ms?: number): Promise<IFrame>;
}

async function rawPeer(t: TestContext, started: Pick<IStartedServer, 'id' | 'endpoint' | 'server'>, hello: Partial<IHelloPayload> = {}): Promise<IRawPeer> {
  const socket = await rawConnect(started.endpoint);
  t.after(() => socket.destroy());
  socket.on('error', () => undefined);
  const frames = collectFrames(socket);
  const clientId = uniqueId('raw');
  socket.write(helloFrame({ serverId: started.id, clientId, ...hello }));
  await waitUntil(() => frames.length > 0, 5_000, 'WELCOME');
  assert.equal(frames[0].kind, EFrameKind.Welcome);
  await waitUntil(() => started.server.getClientIds().includes(clientId), 5_000, 'raw peer registered');
  const find = (id: number) => frames.find((frame, i) => i > 0 && frame.id === id);
  return {
    socket,
    clientId,
    frames,
    send: (frame) => socket.write(encodeFrame(frame)),
    answer: async (id, ms = 5_000) => {
      await waitUntil(() => find(id) !== undefined, ms, `an answer to frame ${id}`);
      return find(id)!;
    },
  };
}

/** A JSON frame whose headers field holds `headersText` as it is (encodeFrame would only write valid JSON). */
function frameWithRawHeaders(kind: EFrameKind, id: number, type: string, headersText: string, payload: string): Buffer {
  const typeBytes = Buffer.from(type, 'utf8');
  const headerBytes = Buffer.from(headersText, 'utf8');
  const payloadBytes = Buffer.from(payload, 'utf8');
  const fixed = Buffer.alloc(8);
  fixed.writeUInt8(kind, 0);
  fixed.writeUInt8(EPayloadEncoding.Json | FLAG_HAS_HEADERS, 1);
  fixed.writeUInt32BE(id, 2);
  fixed.writeUInt16BE(typeBytes.length, 6);
  const headersLength = Buffer.alloc(4);
  headersLength.writeUInt32BE(headerBytes.length);
  const body = Buffer.concat([fixed, typeBytes, headersLength, headerBytes, payloadBytes]);
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(body.length);
  return Buffer.concat([prefix, body]);
}

/** The code of an ErrorResponse or of a refused Provide / Unprovide; undefined for an empty (positive) answer. */
function codeOf(frame: IFrame): string | undefined {
  if (frame.payloadEnd === frame.payloadStart) return undefined;
  return (JSON.parse(frame.payload.toString('utf8')) as { code: string }).code;
}

/** A good client keeps being served: one call through the hub right now. */
async function assertServed(pair: IPair, caller: IpcClient = pair.client): Promise<void> {
  if (!pair.server.isServiceAvailable('health')) await pair.server.provide('health', { check: () => 'ok' });
  assert.equal(await caller.call('health', 'check'), 'ok');
}

// ---- typed proxies: compile-time checks (tsconfig.test.json type-checks this file) -------------------

interface IUserApi {
  getUserById(params: { id: number }): Promise<{ id: number; name: string }>;
  count(): number;
}

/** Never run: only compiled. Each `@ts-expect-error` fails the type-check if the line compiles. */
export async function typedProxyCompileChecks(api: TServiceProxy<IUserApi>): Promise<void> {
  const user: { id: number; name: string } = await api.getUserById({ id: 1 });
  const total: number = await api.count();
  void [user, total];
  // @ts-expect-error a wrong parameter type
  await api.getUserById({ id: '1' });
  // @ts-expect-error a required parameter left out
  await api.getUserById();
  // @ts-expect-error a wrong use of the result: name is a string
  (await api.getUserById({ id: 1 })).name.toFixed(2);
  // @ts-expect-error the result is a Promise, not the value
  const notAwaited: { id: number } = api.getUserById({ id: 1 });
  // @ts-expect-error a method the API lacks
  await api.deleteUser({ id: 1 });
  // @ts-expect-error options are call options: timeout is a number
  await api.count(undefined, { timeout: 'soon' });
  void notAwaited;
}

// ---- behaviour on both transports --------------------------------------------------------------

for (const kind of TRANSPORTS) {
  describe(`services over ${kind}`, () => {
    test('a call by service name reaches the provider through the hub; the method sees its context; callRouted and callCompleted report it', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const provider = pair.client;
      const caller = await pair.addClient();
      const seen: ICallContext[] = [];
      await provider.provide('user-service', {
        getUserById: (params: { id: number }, ctx: ICallContext) => {
          seen.push(ctx);
          return { id: params.id, name: `user ${params.id}` };
        },
        fail: () => {
          throw new RangeError('no such user');
        },
      });
      const routed = collect<ICallRoutedInfo>(pair.server, 'callRouted');
      const completed = collect<ICallCompletedInfo>(pair.server, 'callCompleted');
      const before = Date.now();
      const user = await caller.call<{ id: number; name: string }>('user-service', 'getUserById', { id: 7 }, { timeout: 5_000, headers: { traceparent: 'tp-1' } });
      assert.deepEqual(user, { id: 7, name: 'user 7' });

      assert.equal(seen.length, 1);
      const ctx = seen[0];
      assert.equal(ctx.service, 'user-service');
      assert.equal(ctx.method, 'getUserById');
      assert.equal(ctx.callerId, caller.getClientId());
      assert.deepEqual([...ctx.chain], ['user-service']);
      assert.equal(ctx.depth, 1);
      assert.equal(typeof ctx.root, 'string');
      assert.ok(ctx.root.length > 0, 'a root id');
      assert.equal(ctx.isRequest, true);
      assert.deepEqual(ctx.headers, { traceparent: 'tp-1' }, 'the user headers arrive; the reserved chain header does not');
      assert.ok(ctx.signal instanceof AbortSignal, 'a signal');
      assert.equal(ctx.signal.aborted, false);
      assert.ok(ctx.deadline !== undefined && ctx.deadline > before && ctx.deadline <= Date.now() + 5_000 + 50, `deadline ${ctx.deadline} follows the 5 s timeout`);
      assert.ok(ctx.remainingMs() > 0 && ctx.remainingMs() <= 5_000, `remainingMs ${ctx.remainingMs()}`);

      assert.deepEqual(routed, [{ from: caller.getClientId(), to: provider.getClientId(), service: 'user-service', method: 'getUserById', root: ctx.root, depth: 1 }]);
      assert.equal(completed.length, 1);
      const { durationMs, ...rest } = completed[0];
      assert.deepEqual(rest, { from: caller.getClientId(), to: provider.getClientId(), service: 'user-service', method: 'getUserById', ok: true });
      assert.ok(Number.isFinite(durationMs) && durationMs >= 0, `durationMs ${durationMs}`);

      // A method that throws: HANDLER_ERROR with what was thrown, and callCompleted says so.
      const error = await expectIpcError(caller.call('user-service', 'fail'), 'HANDLER_ERROR');
      assert.equal(error.message, 'no such user');
      assert.deepEqual(error.remote, { name: 'RangeError', message: 'no such user' });
      assert.equal(completed.length, 2);
      assert.equal(completed[1].ok, false);
      assert.equal(completed[1].code, 'HANDLER_ERROR');
      // Two top-level calls start two chains.
      await caller.call('user-service', 'getUserById', { id: 8 });
      assert.notEqual(seen[1].root, seen[0].root);
    });

    test('service<TApi>() is a typed proxy: api.method(params, opts) is call(service, method, params, opts)', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const timeouts: number[] = [];
      await pair.client.provide('users', {
        getUserById: (params: { id: number }) => ({ id: params.id, name: `user ${params.id}` }),
        count: (_params: undefined, ctx: ICallContext) => {
          timeouts.push(ctx.remainingMs());
          return 42;
        },
      });
      const caller = await pair.addClient();
      const api = caller.service<IUserApi>('users');
      assert.deepEqual(await api.getUserById({ id: 3 }), { id: 3, name: 'user 3' });
      assert.equal(await api.count(undefined, { timeout: 1_000 }), 42);
      assert.ok(timeouts[0] <= 1_000, 'the options reach the call');
      // Not a thenable: awaiting the proxy gives the proxy, and never calls a method named "then".
      assert.equal(await (api as unknown as Promise<unknown>), api);
      // A method the service lacks fails at run time as it does at compile time.
      await expectIpcError((api as unknown as Record<string, () => Promise<unknown>>).deleteUser(), 'METHOD_NOT_FOUND');
      assert.throws(() => caller.service(''), isInvalidArgument);
      void typedProxyCompileChecks;
    });

    test('the hub provides services and calls them; a client calls the hub\'s service and the hub calls a client\'s', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const client = pair.client;
      const hubSeen: ICallContext[] = [];
      await pair.server.provide(
        'clock',
        {
          now: (_params: undefined, ctx: ICallContext) => {
            hubSeen.push(ctx);
            return { callerId: ctx.callerId, chain: [...ctx.chain], depth: ctx.depth };
          },
          broken: async () => {
            throw new TypeError('clock broke');
          },
        },
        { version: '1.2.3', metadata: { tz: 'UTC' } },
      );
      // A client calling the hub's service.
      assert.deepEqual(await client.call('clock', 'now'), { callerId: client.getClientId(), chain: ['clock'], depth: 1 });
      assert.equal(hubSeen[0].service, 'clock');
      assert.equal(hubSeen[0].method, 'now');
      assert.ok(hubSeen[0].deadline !== undefined, 'the hub\'s method has a deadline');
      const broken = await expectIpcError(client.call('clock', 'broken'), 'HANDLER_ERROR');
      assert.deepEqual(broken.remote, { name: 'TypeError', message: 'clock broke' });
      // The hub calling its own service.
      assert.deepEqual(await pair.server.call('clock', 'now'), { callerId: 'server', chain: ['clock'], depth: 1 });
      await expectIpcError(pair.server.call('clock', 'broken'), 'HANDLER_ERROR');
      // The hub calling a client's service.
      const clientSeen: ICallContext[] = [];
      await client.provide('calc', {
        add: (params: { a: number; b: number }, ctx: ICallContext) => {
          clientSeen.push(ctx);
          return params.a + params.b;
        },
      });
      assert.equal(await pair.server.call<number>('calc', 'add', { a: 2, b: 40 }), 42);
      assert.equal(clientSeen[0].callerId, 'server');
      assert.deepEqual([...clientSeen[0].chain], ['calc']);
      assert.equal(clientSeen[0].depth, 1);
      // The registry shows the hub as an instance.
      assert.deepEqual(pair.server.getService('clock'), {
        name: 'clock',
        instances: [{ clientId: 'server', methods: ['now', 'broken'], version: '1.2.3', metadata: { tz: 'UTC' }, inFlight: 0 }],
      });
      await pair.server.unprovide('clock');
      assert.equal(pair.server.isServiceAvailable('clock'), false);
      await expectIpcError(client.call('clock', 'now'), 'SERVICE_NOT_FOUND');
      await expectIpcError(pair.server.call('clock', 'now'), 'SERVICE_NOT_FOUND');
    });

    test('provide before connect resolves at once and is announced on connect', T, async (t) => {
      const started = await startServer(kind);
      t.after(() => started.stop());
      // No hub at all: provide still resolves at once.
      const nowhere = makeClient(unixTarget(uniqueSocketPath('nowhere'), uniqueId('nowhere')));
      const offline = await outcome(nowhere.provide('early', { ping: () => 'pong' }));
      assert.equal(offline.error, undefined);
      assert.ok(offline.ms < 100, `provide without a connection took ${offline.ms} ms`);

      const provider = makeClient(started);
      t.after(() => provider.disconnect());
      const early = await outcome(provider.provide('early', { ping: () => 'pong' }, { version: '0.1', metadata: { at: 'boot' } }));
      assert.equal(early.error, undefined);
      assert.ok(early.ms < 100, `provide before connect took ${early.ms} ms`);
      assert.equal(started.server.isServiceAvailable('early'), false);
      const registered = waitForEvent<[IServiceRegisteredInfo]>(started.server, 'serviceRegistered');
      await provider.connect();
      const [info] = await registered;
      assert.deepEqual(info, { service: 'early', clientId: provider.getClientId(), methods: ['ping'], version: '0.1', metadata: { at: 'boot' } });
      const caller = makeClient(started);
      t.after(() => caller.disconnect());
      await caller.connect();
      assert.equal(await caller.call('early', 'ping'), 'pong');
    });

    test('registry and events follow provide, unprovide and disconnect; client.listServices() agrees with the hub', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const registered = collect<IServiceRegisteredInfo>(pair.server, 'serviceRegistered');
      const unregistered = collect<IServiceUnregisteredInfo>(pair.server, 'serviceUnregistered');
      const a = pair.client;
      const b = await pair.addClient();
      const held = gate();
      await a.provide('inventory', { stock: () => 'a', hold: () => held.promise }, { version: '2.1', metadata: { zone: 'a' } });
      await b.provide('inventory', { stock: () => 'b' });
      assert.deepEqual(registered, [
        { service: 'inventory', clientId: a.getClientId(), methods: ['stock', 'hold'], version: '2.1', metadata: { zone: 'a' } },
        { service: 'inventory', clientId: b.getClientId(), methods: ['stock'], metadata: {} },
      ]);
      const expected = {
        name: 'inventory',
        instances: [
          { clientId: a.getClientId(), methods: ['stock', 'hold'], version: '2.1', metadata: { zone: 'a' }, inFlight: 0 },
          { clientId: b.getClientId(), methods: ['stock'], metadata: {}, inFlight: 0 },
        ],
      };
      assert.deepEqual(pair.server.getService('inventory'), expected);
      assert.deepEqual(pair.server.getServices(), [expected]);
      assert.equal(pair.server.isServiceAvailable('inventory'), true);
      assert.equal(pair.server.isServiceAvailable('nope'), false);
      assert.equal(pair.server.getService('nope'), undefined);
      assert.deepEqual(await b.listServices(), [expected]);

      // A call in flight shows in its instance's inFlight.
      const holding = b.call('inventory', 'hold');
      await waitUntil(() => pair.server.getService('inventory')!.instances[0].inFlight === 1, 5_000, 'inFlight 1');
      assert.equal((await b.listServices())[0].instances[0].inFlight, 1);
      held.open();
      await holding;
      assert.equal(pair.server.getService('inventory')!.instances[0].inFlight, 0);

      // unprovide resolves once the hub has removed it.
      await a.unprovide('inventory');
      assert.deepEqual(unregistered, [{ service: 'inventory', clientId: a.getClientId() }]);
      assert.deepEqual(pair.server.getService('inventory')!.instances.map((i) => i.clientId), [b.getClientId()]);
      assert.equal(await a.call('inventory', 'stock'), 'b');
      await a.unprovide('inventory'); // not provided: nothing to do
      assert.equal(unregistered.length, 1);
      // Provided again after an unprovide.
      await a.provide('inventory', { stock: () => 'a again' });
      assert.equal(pair.server.getService('inventory')!.instances.length, 2);

      // A provider that leaves takes its instances with it.
      const gone = waitForEvent<[IServiceUnregisteredInfo]>(pair.server, 'serviceUnregistered');
      await b.disconnect();
      assert.deepEqual((await gone)[0], { service: 'inventory', clientId: b.getClientId() });
      await a.unprovide('inventory');
      assert.equal(pair.server.isServiceAvailable('inventory'), false);
      assert.deepEqual(pair.server.getServices(), []);
      assert.deepEqual(await a.listServices(), []);
      await expectIpcError(a.call('inventory', 'stock'), 'SERVICE_NOT_FOUND');
    });

    test('no instance: SERVICE_NOT_FOUND at once; a method the instances lack: METHOD_NOT_FOUND at once', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      let invoked = 0;
      await pair.client.provide('orders', {
        list: () => {
          invoked++;
          return [];
        },
      });
      const caller = await pair.addClient();
      const opts = { timeout: LONG_TIMEOUT_MS };
      const cases: Array<[string, () => Promise<unknown>, string]> = [
        ['client, no service', () => caller.call('ghost', 'list', undefined, opts), 'SERVICE_NOT_FOUND'],
        ['client, no method', () => caller.call('orders', 'create', undefined, opts), 'METHOD_NOT_FOUND'],
        ['proxy, no method', () => caller.service<Record<string, (p?: unknown, o?: typeof opts) => Promise<unknown>>>('orders').remove(undefined, opts), 'METHOD_NOT_FOUND'],
        ['hub, no service', () => pair.server.call('ghost', 'list', undefined, opts), 'SERVICE_NOT_FOUND'],
        ['hub, no method', () => pair.server.call('orders', 'create', undefined, opts), 'METHOD_NOT_FOUND'],
      ];
      for (const [what, call, code] of cases) {
        const result = await outcome(call());
        assert.equal(result.error?.code, code, what);
        assert.ok(result.ms < AT_ONCE_MS, `${what}: refused after ${result.ms.toFixed(0)} ms (timeout ${LONG_TIMEOUT_MS})`);
      }
      assert.equal(invoked, 0, 'no instance was bothered');
    });

    test('bad arguments are refused with INVALID_ARGUMENT and the hub goes on', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const client = pair.client;
      const server = pair.server;
      const ok = { m: () => 1 };
      const badNames: unknown[] = ['', 'a\u0000b', 'x'.repeat(257), 42, undefined, null];
      for (const name of badNames) {
        const label = JSON.stringify(name);
        await assert.rejects(client.provide(name as string, ok), isInvalidArgument, `client.provide(${label})`);
        await assert.rejects(server.provide(name as string, ok), isInvalidArgument, `server.provide(${label})`);
        await assert.rejects(client.call(name as string, 'm'), isInvalidArgument, `client.call(${label}, 'm')`);
        await assert.rejects(client.call('svc', name as string), isInvalidArgument, `client.call('svc', ${label})`);
        await assert.rejects(server.call(name as string, 'm'), isInvalidArgument, `server.call(${label}, 'm')`);
        await assert.rejects(server.call('svc', name as string), isInvalidArgument, `server.call('svc', ${label})`);
        assert.throws(() => client.service(name as string), isInvalidArgument, `client.service(${label})`);
      }
      // A name of exactly the longest length is fine.
      await client.provide('n'.repeat(256), ok);
      const badMethods: Array<[string, unknown]> = [
        ['an empty methods object', {}],
        ['null', null],
        ['a string', 'm'],
        ['a non-function method', { m: 42 }],
        ['one good and one non-function method', { m: () => 1, n: 'not a function' }],
        ['a method name with U+0000', { 'a\u0000b': () => 1 }],
        ['an empty method name', { '': () => 1 }],
      ];
      for (const [what, methods] of badMethods) {
        await assert.rejects(client.provide('svc', methods as typeof ok), isInvalidArgument, `client.provide with ${what}`);
        await assert.rejects(server.provide('svc', methods as typeof ok), isInvalidArgument, `server.provide with ${what}`);
      }
      await assert.rejects(client.provide('svc', ok, { version: 42 as unknown as string }), isInvalidArgument, 'a non-string version');
      await assert.rejects(client.provide('svc', ok, { metadata: 'x' as unknown as Record<string, unknown> }), isInvalidArgument, 'non-object metadata');
      await assert.rejects(server.provide('svc', ok, { metadata: 'x' as unknown as Record<string, unknown> }), isInvalidArgument, 'non-object metadata (hub)');
      await assert.rejects(client.call('svc', 'm', undefined, { timeout: -5 }), isInvalidArgument, 'a negative timeout');
      await assert.rejects(server.call('svc', 'm', undefined, { timeout: -5 }), isInvalidArgument, 'a negative timeout (hub)');
      assert.equal(server.isServiceAvailable('svc'), false, 'nothing refused was registered');

      // A duplicate provide of the same service on one connection.
      await client.provide('dup', { first: () => 'first' });
      await assert.rejects(client.provide('dup', { second: () => 'second' }), isInvalidArgument, 'client duplicate');
      await server.provide('dup', { hub: () => 'hub' });
      await assert.rejects(server.provide('dup', { again: () => 'again' }), isInvalidArgument, 'hub duplicate');
      assert.deepEqual(server.getService('dup')!.instances.map((i) => [i.clientId, i.methods]), [[client.getClientId(), ['first']], ['server', ['hub']]]);
      const caller = await pair.addClient();
      assert.equal(await caller.call('dup', 'first'), 'first', 'the first provide still serves');
      // A second connection providing the same service is an instance group, not a duplicate.
      await caller.provide('dup', { first: () => 'caller' });
      assert.equal(server.getService('dup')!.instances.length, 3);

      assert.equal(client.getIsConnected(), true);
      assert.equal(server.getStats().isRunning, true);
      await assertServed(pair, caller);
    });

    test('instance groups: 300 calls one after another go to 3 instances in turn, 100 each', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const instances = [pair.client, await pair.addClient(), await pair.addClient()];
      const ran: string[] = [];
      for (const instance of instances) {
        await instance.provide('jobs', {
          run: () => {
            ran.push(instance.getClientId());
            return instance.getClientId();
          },
        });
      }
      const caller = await pair.addClient();
      const answered: string[] = [];
      for (let i = 0; i < 300; i++) answered.push(await caller.call<string>('jobs', 'run'));
      assert.deepEqual(ran, answered, 'each call ran exactly once, on the instance that answered');
      const counts = countBy(answered);
      assert.deepEqual(Object.values(counts), [100, 100, 100], `distribution ${JSON.stringify(counts)}`);
      // Ties in turn: with nothing in flight the instances take strict turns.
      for (let i = 3; i < answered.length; i++) assert.equal(answered[i], answered[i - 3], `call ${i} breaks the turn`);
      assert.equal(new Set(answered.slice(0, 3)).size, 3);
    });

    test('instance groups: 300 concurrent calls to 3 instances, each call to exactly one, 100 each', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const instances = [pair.client, await pair.addClient(), await pair.addClient()];
      const ran: number[] = [];
      for (const instance of instances) {
        await instance.provide('jobs', {
          run: async (params: { n: number }) => {
            ran.push(params.n);
            await new Promise((resolve) => setImmediate(resolve));
            return instance.getClientId();
          },
        });
      }
      const caller = await pair.addClient();
      const answered = await Promise.all(Array.from({ length: 300 }, (_, n) => caller.call<string>('jobs', 'run', { n })));
      assert.deepEqual([...ran].sort((x, y) => x - y), Array.from({ length: 300 }, (_, n) => n), 'every call ran exactly once');
      const counts = countBy(answered);
      t.diagnostic(`300 concurrent calls over ${kind}: ${JSON.stringify(Object.values(counts))}`);
      assert.equal(Object.keys(counts).length, 3);
      for (const count of Object.values(counts)) assert.ok(count >= 90 && count <= 110, `distribution ${JSON.stringify(counts)}`);
    });

    test('instance groups: the fewest calls in flight first, so a slow instance gets fewer', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const fast = [pair.client, await pair.addClient()];
      const slow = await pair.addClient();
      for (const instance of fast) await instance.provide('jobs', { run: () => instance.getClientId() });
      await slow.provide('jobs', { run: () => new Promise((resolve) => setTimeout(() => resolve('slow'), 25)) });
      const caller = await pair.addClient();
      const answered: string[] = [];
      // 8 callers in parallel, 40 calls each, one after another: 320 calls.
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          for (let i = 0; i < 40; i++) answered.push(await caller.call<string>('jobs', 'run'));
        }),
      );
      const counts = countBy(answered);
      const slowCount = counts.slow ?? 0;
      const fastCounts = fast.map((instance) => counts[instance.getClientId()] ?? 0);
      t.diagnostic(`320 calls, 8 in flight, over ${kind}: slow ${slowCount}, fast ${fastCounts.join(' and ')}`);
      assert.equal(slowCount + fastCounts[0] + fastCounts[1], 320);
      assert.ok(slowCount > 0, 'the slow instance is not starved (it gets its turn when idle)');
      for (const count of fastCounts) assert.ok(slowCount * 3 < count, `slow ${slowCount} should get far fewer than fast ${count}`);
    });

    test('instance groups: a call goes only to instances that have the method', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const full = pair.client;
      const partial = await pair.addClient();
      await full.provide('media', { play: () => 'full', record: () => 'full' });
      await partial.provide('media', { play: () => 'partial' });
      const caller = await pair.addClient();
      const records = await Promise.all(Array.from({ length: 20 }, () => caller.call('media', 'record')));
      assert.deepEqual(new Set(records), new Set(['full']));
      const plays: string[] = [];
      for (let i = 0; i < 10; i++) plays.push(await caller.call<string>('media', 'play'));
      assert.deepEqual(countBy(plays), { full: 5, partial: 5 });
    });

    test('an instance SIGKILLed with calls in flight rejects exactly those with CONNECTION_LOST at once, never retried; later calls go to the others', { timeout: 60_000 }, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const caller = pair.client;
      const ids = [uniqueId('inst-a'), uniqueId('inst-b'), uniqueId('inst-c')];
      const invoked = new Map<string, number[]>(ids.map((id) => [id, []]));
      const children: IChild[] = ids.map((id) => forkScript(PROVIDER_SCRIPT, [JSON.stringify(pair.endpoint), pair.id, id, 'jobs']));
      t.after(async () => {
        for (const child of children) await child.kill();
      });
      children.forEach((child, i) => child.child.on('message', (m: { event: string; tag: number }) => m.event === 'invoked' && invoked.get(ids[i])!.push(m.tag)));
      await Promise.all(children.map((child) => child.next('ready', 20_000)));
      assert.equal(pair.server.getService('jobs')!.instances.length, 3);
      const completed = collect<ICallCompletedInfo>(pair.server, 'callCompleted');

      const calls = Array.from({ length: 9 }, (_, tag) => track(caller.call<{ by: string; tag: number }>('jobs', 'hold', { tag }, { timeout: 30_000 })));
      const total = () => [...invoked.values()].reduce((sum, tags) => sum + tags.length, 0);
      await waitUntil(() => total() === 9, 10_000, 'all 9 calls running');
      for (const id of ids) assert.equal(invoked.get(id)!.length, 3, `fewest in flight: 3 each, got ${JSON.stringify([...invoked])}`);

      const [victimId, ...survivorIds] = [ids[1], ids[0], ids[2]];
      const victimTags = invoked.get(victimId)!;
      const killedAt = performance.now();
      await children[1].kill('SIGKILL');
      await Promise.all(victimTags.map((tag) => calls[tag].done));
      for (const tag of victimTags) {
        const { state } = calls[tag];
        assert.equal(state.error?.code, 'CONNECTION_LOST', `call ${tag} on the killed instance`);
        const delay = state.at! - killedAt;
        assert.ok(delay < 1_000, `call ${tag} rejected ${delay.toFixed(0)} ms after the kill`);
      }
      t.diagnostic(`in-flight calls rejected ${Math.max(...victimTags.map((tag) => calls[tag].state.at! - killedAt)).toFixed(1)} ms after SIGKILL (over ${kind})`);
      const others = calls.filter((_, tag) => !victimTags.includes(tag));
      assert.ok(others.every((call) => !call.state.settled), 'the calls held by the other instances are untouched');
      await waitUntil(() => !pair.server.getClientIds().includes(victimId), 5_000, 'victim gone');
      assert.deepEqual(pair.server.getService('jobs')!.instances.map((i) => i.clientId).sort(), [...survivorIds].sort());
      assert.deepEqual(completed.filter((c) => c.to === victimId).map((c) => [c.ok, c.code]), victimTags.map(() => [false, 'CONNECTION_LOST']));

      // The survivors answer what they held.
      children[0].send({ cmd: 'release' });
      children[2].send({ cmd: 'release' });
      await Promise.all(others.map((call) => call.done));
      for (const [tag, call] of calls.entries()) {
        if (victimTags.includes(tag)) continue;
        assert.equal(call.state.error, undefined, `call ${tag}`);
        assert.equal(call.state.value!.tag, tag);
        assert.ok(invoked.get(call.state.value!.by)!.includes(tag), `call ${tag} answered by the instance that ran it`);
      }
      // Later calls go to the others, 3 each; nothing was retried anywhere.
      const later = await Promise.all(Array.from({ length: 6 }, (_, i) => caller.call<{ by: string }>('jobs', 'work', { tag: 100 + i, ms: 0 })));
      assert.deepEqual(countBy(later.map((r) => r.by)), { [survivorIds[0]]: 3, [survivorIds[1]]: 3 });
      await waitUntil(() => total() === 15, 5_000, 'invocation reports');
      assert.deepEqual(invoked.get(victimId), victimTags, 'the killed instance ran only its 3');
      for (const id of survivorIds) assert.equal(invoked.get(id)!.length, 6, `${id} ran its 3 held calls and 3 later ones, no retries`);

      // The last instances gone: SERVICE_NOT_FOUND at once.
      await children[0].kill('SIGKILL');
      await children[2].kill('SIGKILL');
      await waitUntil(() => !pair.server.isServiceAvailable('jobs'), 5_000, 'no instances left');
      const none = await outcome(caller.call('jobs', 'work', { tag: 999, ms: 0 }, { timeout: LONG_TIMEOUT_MS }));
      assert.equal(none.error?.code, 'SERVICE_NOT_FOUND');
      assert.ok(none.ms < AT_ONCE_MS, `SERVICE_NOT_FOUND after ${none.ms.toFixed(0)} ms`);
    });

    test('a provider whose link dropped reconnects and re-announces its services without user code', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const provider = await pair.addClient({ reconnect: { enabled: true, initialDelay: 20, maxDelay: 100 } });
      await provider.provide('echo-service', { echo: (params: unknown) => params });
      await provider.provide('other-service', { ping: () => 'pong' });
      const caller = pair.client;
      assert.equal(await caller.call('echo-service', 'echo', 1), 1);
      const unregistered = collect<IServiceUnregisteredInfo>(pair.server, 'serviceUnregistered');
      const registered = collect<IServiceRegisteredInfo>(pair.server, 'serviceRegistered');
      const reconnected = waitForEvent(provider, 'connect', 10_000);
      serverConnectionOf(pair.server, provider.getClientId())!.destroy(new IpcError('CONNECTION_LOST', 'the test drops the link'));
      await reconnected;
      await waitUntil(() => registered.length === 2, 5_000, 're-announcement');
      assert.deepEqual(unregistered.map((u) => u.service).sort(), ['echo-service', 'other-service']);
      assert.deepEqual(registered.map((r) => [r.service, r.clientId]).sort(), [['echo-service', provider.getClientId()], ['other-service', provider.getClientId()]]);
      assert.equal(pair.server.getService('echo-service')!.instances.length, 1, 'one instance, not a stale one beside the new');
      assert.equal(await caller.call('echo-service', 'echo', 2), 2);
      assert.equal(await caller.call('other-service', 'ping'), 'pong');
      // What was unprovided stays unprovided across the next reconnect.
      await provider.unprovide('other-service');
      const again = waitForEvent(provider, 'connect', 10_000);
      serverConnectionOf(pair.server, provider.getClientId())!.destroy(new IpcError('CONNECTION_LOST', 'dropped again'));
      await again;
      await waitUntil(() => registered.length === 3, 5_000, 're-announcement');
      assert.equal(registered[2].service, 'echo-service');
      assert.equal(pair.server.isServiceAvailable('other-service'), false);
      assert.equal(await caller.call('echo-service', 'echo', 3), 3);
    });

    test('call context: order -> user -> role gives role the chain [order, user, role], depth 3, one root; callerIds are the calling processes', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const [orderSvc, userSvc, roleSvc, caller] = [pair.client, await pair.addClient(), await pair.addClient(), await pair.addClient()];
      const ctxs: Record<string, ICallContext> = {};
      const snapshot = (ctx: ICallContext) => ({ root: ctx.root, chain: [...ctx.chain], depth: ctx.depth, callerId: ctx.callerId, service: ctx.service, method: ctx.method });
      await orderSvc.provide('order', {
        place: async (params: { item: string }, ctx: ICallContext) => {
          ctxs.order = ctx;
          return { order: params.item, user: await orderSvc.call('user', 'get', { id: 1 }) };
        },
      });
      await userSvc.provide('user', {
        get: async (params: { id: number }, ctx: ICallContext) => {
          ctxs.user = ctx;
          return { id: params.id, role: await userSvc.service<{ of(p: { id: number }): string }>('role').of({ id: params.id }) };
        },
      });
      await roleSvc.provide('role', {
        of: (_params: { id: number }, ctx: ICallContext) => {
          ctxs.role = ctx;
          return 'admin';
        },
      });
      const routed = collect<ICallRoutedInfo>(pair.server, 'callRouted');
      const result = await caller.call('order', 'place', { item: 'book' }, { timeout: 5_000 });
      assert.deepEqual(result, { order: 'book', user: { id: 1, role: 'admin' } });
      const root = ctxs.order.root;
      assert.deepEqual(snapshot(ctxs.order), { root, chain: ['order'], depth: 1, callerId: caller.getClientId(), service: 'order', method: 'place' });
      assert.deepEqual(snapshot(ctxs.user), { root, chain: ['order', 'user'], depth: 2, callerId: orderSvc.getClientId(), service: 'user', method: 'get' });
      assert.deepEqual(snapshot(ctxs.role), { root, chain: ['order', 'user', 'role'], depth: 3, callerId: userSvc.getClientId(), service: 'role', method: 'of' });
      assert.deepEqual(routed.map((r) => [r.service, r.depth, r.root]), [['order', 1, root], ['user', 2, root], ['role', 3, root]]);
      // The deadline follows the chain: never later down it than above it.
      for (const name of ['order', 'user', 'role']) {
        const ctx = ctxs[name];
        assert.ok(ctx.signal instanceof AbortSignal && !ctx.signal.aborted, `${name} signal`);
        assert.ok(ctx.deadline !== undefined, `${name} has a deadline`);
        assert.equal(typeof ctx.remainingMs(), 'number');
        assert.ok(ctx.remainingMs() >= 0 && ctx.remainingMs() <= 5_000, `${name} remainingMs ${ctx.remainingMs()}`);
      }
      assert.ok(ctxs.user.deadline! <= ctxs.order.deadline! + 5, `user deadline ${ctxs.user.deadline} after order's ${ctxs.order.deadline}`);
      assert.ok(ctxs.role.deadline! <= ctxs.user.deadline! + 5, `role deadline ${ctxs.role.deadline} after user's ${ctxs.user.deadline}`);

      // A call made outside any service method (in a plain request handler) starts a new chain.
      orderSvc.onMessage('kick', async () => orderSvc.call('role', 'of', { id: 2 }));
      await pair.server.requestClient(orderSvc.getClientId(), 'kick', undefined);
      assert.deepEqual([...ctxs.role.chain], ['role']);
      assert.equal(ctxs.role.depth, 1);
      assert.notEqual(ctxs.role.root, root);
    });

    test('call context through the hub\'s own service: order (client) -> user (hub) -> role (client) extends one chain', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const [orderSvc, roleSvc, caller] = [pair.client, await pair.addClient(), await pair.addClient()];
      const ctxs: Record<string, ICallContext> = {};
      await orderSvc.provide('order', {
        place: (_params: unknown, ctx: ICallContext) => {
          ctxs.order = ctx;
          return orderSvc.call('user', 'get', {});
        },
      });
      await pair.server.provide('user', {
        get: async (_params: unknown, ctx: ICallContext) => {
          ctxs.user = ctx;
          return pair.server.call('role', 'of', {});
        },
      });
      await roleSvc.provide('role', {
        of: (_params: unknown, ctx: ICallContext) => {
          ctxs.role = ctx;
          return 'admin';
        },
      });
      const routed = collect<ICallRoutedInfo>(pair.server, 'callRouted');
      assert.equal(await caller.call('order', 'place', {}, { timeout: 5_000 }), 'admin');
      const root = ctxs.order.root;
      assert.deepEqual(routed.map((r) => [r.from, r.to, r.service, r.depth, r.root]), [
        [caller.getClientId(), orderSvc.getClientId(), 'order', 1, root],
        [orderSvc.getClientId(), 'server', 'user', 2, root],
      ]);
      assert.deepEqual([ctxs.user.root, [...ctxs.user.chain], ctxs.user.depth, ctxs.user.callerId], [root, ['order', 'user'], 2, orderSvc.getClientId()]);
      assert.deepEqual([ctxs.role.root, [...ctxs.role.chain], ctxs.role.depth, ctxs.role.callerId], [root, ['order', 'user', 'role'], 3, 'server']);
      assert.ok(ctxs.user.deadline! <= ctxs.order.deadline! + 5 && ctxs.role.deadline! <= ctxs.user.deadline! + 5, 'the deadline follows through the hub\'s method');
    });

    test('a recursive method trips MAX_DEPTH_EXCEEDED at the default maxCallDepth of 16', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const svc = pair.client;
      const depths: number[] = [];
      const refusals: Array<{ depth: number; code: string }> = [];
      await svc.provide('loop', {
        down: async (n: number, ctx: ICallContext) => {
          depths.push(ctx.depth);
          try {
            return await svc.call('loop', 'down', n + 1);
          } catch (err) {
            if ((err as IpcError).code !== 'HANDLER_ERROR') refusals.push({ depth: ctx.depth, code: (err as IpcError).code });
            throw err;
          }
        },
      });
      const routed = collect<ICallRoutedInfo>(pair.server, 'callRouted');
      const caller = await pair.addClient();
      const result = await outcome(caller.call('loop', 'down', 1, { timeout: LONG_TIMEOUT_MS }));
      assert.deepEqual(depths, Array.from({ length: 16 }, (_, i) => i + 1), 'the method ran 16 times, once per depth');
      assert.deepEqual(refusals, [{ depth: 16, code: 'MAX_DEPTH_EXCEEDED' }], 'the 17th call was refused');
      assert.equal(routed.length, 16, 'the refused call was never routed');
      // The outermost caller sees the method at depth 1 fail.
      assert.equal(result.error?.code, 'HANDLER_ERROR');
      assert.ok(result.ms < 2_000, `the loop ended after ${result.ms.toFixed(0)} ms`);
    });

    test('a custom maxCallDepth: 3 deep is fine, 4 is refused (client services and the hub\'s own)', T, async (t) => {
      const pair = await createPair(kind, { server: { maxCallDepth: 3 } });
      t.after(() => pair.close());
      const svc = pair.client;
      let deepest = 0;
      await svc.provide('nest', {
        down: async (left: number, ctx: ICallContext) => {
          deepest = Math.max(deepest, ctx.depth);
          return left === 0 ? ctx.depth : svc.call('nest', 'down', left - 1);
        },
      });
      const caller = await pair.addClient();
      assert.equal(await caller.call('nest', 'down', 2), 3, 'depth 3 is allowed');
      deepest = 0;
      const refused = await outcome(caller.call('nest', 'down', 3));
      assert.equal(refused.error?.code, 'HANDLER_ERROR');
      assert.equal(deepest, 3, 'the 4th level never ran');
      // The hub's own recursion: server.call inside a hub method refuses at once.
      const hubCodes: string[] = [];
      let hubRuns = 0;
      await pair.server.provide('hubloop', {
        down: async () => {
          hubRuns++;
          try {
            return await pair.server.call('hubloop', 'down');
          } catch (err) {
            if ((err as IpcError).code !== 'HANDLER_ERROR') hubCodes.push((err as IpcError).code);
            throw err;
          }
        },
      });
      await expectIpcError(pair.server.call('hubloop', 'down'), 'HANDLER_ERROR');
      assert.equal(hubRuns, 3);
      assert.deepEqual(hubCodes, ['MAX_DEPTH_EXCEEDED']);
      hubRuns = 0;
      hubCodes.length = 0;
      await expectIpcError(caller.call('hubloop', 'down'), 'HANDLER_ERROR');
      assert.equal(hubRuns, 3);
      assert.deepEqual(hubCodes, ['MAX_DEPTH_EXCEEDED']);
    });

    test('a deadline cuts a three-level chain: every level rejects within the outer timeout; the innermost method\'s signal aborts', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const [a, b, c, caller] = [pair.client, await pair.addClient(), await pair.addClient(), await pair.addClient()];
      const events: Record<string, { code: string; at: number }> = {};
      let t0 = 0;
      const mark = (what: string, err: unknown) => {
        events[what] = { code: (err as IpcError).code, at: performance.now() - t0 };
      };
      await a.provide('order', {
        place: async () => {
          try {
            return await a.call('user', 'get');
          } catch (err) {
            mark('order->user', err);
            throw err;
          }
        },
      });
      await b.provide('user', {
        get: async () => {
          try {
            return await b.call('role', 'get');
          } catch (err) {
            mark('user->role', err);
            throw err;
          }
        },
      });
      let roleRan = 0;
      let roleDeadline = 0;
      await c.provide('role', {
        get: (_params: unknown, ctx: ICallContext) => {
          roleRan++;
          roleDeadline = ctx.deadline!;
          ctx.signal.addEventListener('abort', () => mark('role signal', ctx.signal.reason));
          // Ignores its signal: its late answer must be dropped.
          return new Promise((resolve) => setTimeout(() => resolve('late'), 1_500).unref());
        },
      });
      const OUTER_MS = 400;
      t0 = performance.now();
      const callStartedAt = Date.now();
      const outer = await outcome(caller.call('order', 'place', undefined, { timeout: OUTER_MS }));
      await waitUntil(() => Object.keys(events).length === 3, 2_000, 'every level reported');
      t.diagnostic(`outer ${outer.error?.code} after ${outer.ms.toFixed(1)} ms; ${JSON.stringify(events)}`);
      assert.equal(roleRan, 1);
      assert.ok(roleDeadline <= callStartedAt + OUTER_MS + 5, `the innermost deadline ${roleDeadline - callStartedAt} ms after the call, its caller\'s was ${OUTER_MS}`);
      assert.equal(outer.error?.code, 'TIMEOUT');
      assert.ok(outer.ms >= OUTER_MS - 5 && outer.ms < OUTER_MS + 250, `outer rejected after ${outer.ms.toFixed(0)} ms`);
      for (const [what, event] of Object.entries(events)) {
        assert.ok(event.code === 'TIMEOUT' || event.code === 'ABORTED', `${what}: ${event.code}`);
        assert.ok(event.at < OUTER_MS + 250, `${what} after ${event.at.toFixed(0)} ms, past the outer timeout`);
      }
      // Nothing is left in flight anywhere, and the late answer changes nothing.
      await waitUntil(() => ['order', 'user', 'role'].every((s) => pair.server.getService(s)!.instances[0].inFlight === 0), 2_000, 'inFlight back to 0');
    });

    test('a deadline cuts a three-level chain: every nested call rejects TIMEOUT, never ABORTED (10 runs)', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const [a, b, c, caller] = [pair.client, await pair.addClient(), await pair.addClient(), await pair.addClient()];
      const codes: string[][] = [];
      let run: string[] = [];
      // After recording a nested failure a method never answers: the outer call ends on its own timer.
      const hangAfter = (label: string) => (err: IpcError) => {
        run.push(`${label} ${err.code}`);
        return new Promise(() => undefined);
      };
      await a.provide('order', { place: () => a.call('user', 'get').catch(hangAfter('order->user')) });
      await b.provide('user', { get: () => b.call('role', 'get').catch(hangAfter('user->role')) });
      await c.provide('role', {
        get: (_params: unknown, ctx: ICallContext) =>
          new Promise((resolve) => {
            ctx.signal.addEventListener('abort', () => run.push(`role signal ${(ctx.signal.reason as IpcError).code}`));
            setTimeout(resolve, 1_000).unref();
          }),
      });
      for (let i = 0; i < 10; i++) {
        run = [];
        const outer = await outcome(caller.call('order', 'place', undefined, { timeout: 150 + 25 * i }));
        run.push(`outer ${outer.error?.code}`);
        await waitUntil(() => run.length === 4, 2_000, 'every level reported');
        codes.push(run.sort());
      }
      const expected = ['order->user TIMEOUT', 'outer TIMEOUT', 'role signal TIMEOUT', 'user->role TIMEOUT'];
      assert.deepEqual(codes, Array.from({ length: 10 }, () => expected));
    });

    test('cancelling the outer call (AbortSignal) cancels the nested ones down the chain', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const [a, b, c, caller] = [pair.client, await pair.addClient(), await pair.addClient(), await pair.addClient()];
      const aborted: Record<string, { code: string; at: number }> = {};
      let abortedAt = 0;
      const watch = (name: string, ctx: ICallContext) =>
        ctx.signal.addEventListener('abort', () => {
          aborted[name] = { code: (ctx.signal.reason as IpcError).code, at: performance.now() - abortedAt };
        });
      const roleStarted = gate();
      await a.provide('order', {
        place: (_p: unknown, ctx: ICallContext) => {
          watch('order', ctx);
          return a.call('user', 'get');
        },
      });
      await b.provide('user', {
        get: (_p: unknown, ctx: ICallContext) => {
          watch('user', ctx);
          return b.call('role', 'get');
        },
      });
      let roleAnswered = false;
      await c.provide('role', {
        get: (_p: unknown, ctx: ICallContext) => {
          watch('role', ctx);
          roleStarted.open();
          return new Promise((resolve) =>
            setTimeout(() => {
              roleAnswered = true;
              resolve('too late');
            }, 3_000).unref(),
          );
        },
      });
      const controller = new AbortController();
      const call = track(caller.call('order', 'place', undefined, { signal: controller.signal, timeout: LONG_TIMEOUT_MS }));
      await withTimeout(roleStarted.promise, 5_000, 'role running');
      abortedAt = performance.now();
      controller.abort();
      await call.done;
      assert.equal(call.state.error?.code, 'ABORTED');
      assert.ok(call.state.at! - abortedAt < 100, 'the caller rejects at once');
      await waitUntil(() => Object.keys(aborted).length === 3, 2_000, 'every level aborted');
      t.diagnostic(`abort reached (over ${kind}): ${Object.entries(aborted).map(([name, a]) => `${name} ${a.at.toFixed(2)} ms (${a.code})`).join(', ')}`);
      for (const [name, event] of Object.entries(aborted)) {
        assert.equal(event.code, 'ABORTED', `${name}'s signal reason`);
        assert.ok(event.at < 200, `${name} aborted ${event.at.toFixed(0)} ms after the caller`);
      }
      assert.ok(aborted.order.at <= aborted.user.at && aborted.user.at <= aborted.role.at, 'the cancel travels down the chain');
      await waitUntil(() => ['order', 'user', 'role'].every((s) => pair.server.getService(s)!.instances[0].inFlight === 0), 2_000, 'inFlight back to 0');
      assert.equal(roleAnswered, false);
    });

    test('cancelling the outer call reaches a client service behind the hub\'s own service', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const roleSvc = pair.client;
      const caller = await pair.addClient();
      const started = gate();
      const aborted = gate<string>();
      await roleSvc.provide('role', {
        get: (_p: unknown, ctx: ICallContext) => {
          ctx.signal.addEventListener('abort', () => aborted.open((ctx.signal.reason as IpcError).code));
          started.open();
          return new Promise(() => undefined);
        },
      });
      let hubSignal: AbortSignal | undefined;
      await pair.server.provide('user', {
        get: (_p: unknown, ctx: ICallContext) => {
          hubSignal = ctx.signal;
          return pair.server.call('role', 'get');
        },
      });
      const controller = new AbortController();
      const call = track(caller.call('user', 'get', undefined, { signal: controller.signal, timeout: LONG_TIMEOUT_MS }));
      await withTimeout(started.promise, 5_000, 'role running');
      const abortedAt = performance.now();
      controller.abort();
      const code = await withTimeout(aborted.promise, 2_000, 'role aborted');
      t.diagnostic(`client -> hub -> client: role aborted ${(performance.now() - abortedAt).toFixed(2)} ms after the caller (over ${kind})`);
      assert.equal(code, 'ABORTED');
      assert.equal(hubSignal!.aborted, true);
      await call.done;
      assert.equal(call.state.error?.code, 'ABORTED');
    });

    test('a Buffer nested in params and in the result arrives intact through the hub, in both serializations', T, async (t) => {
      for (const serialization of ['json', 'advanced'] as const) {
        const pair = await createPair(kind, { server: { serialization }, client: { serialization } });
        t.after(() => pair.close());
        const blob = Buffer.alloc(1024 * 1024);
        for (let i = 0; i < blob.length; i++) blob[i] = (i * 31 + 7) & 0xff;
        const small = Buffer.from([0, 255, 1, 254]);
        const check = (params: { blob: Buffer; deep: { list: unknown[] } }) => ({
          isBuffer: Buffer.isBuffer(params.blob) && Buffer.isBuffer(params.deep.list[1]),
          back: params.blob,
          nested: { inner: [params.deep.list[1]] },
        });
        await pair.client.provide('bytes', { check });
        await pair.server.provide('hubbytes', { check });
        const caller = await pair.addClient();
        const params = { blob, deep: { list: [1, small, 'x'] } };
        for (const [who, call] of [
          ['client -> hub -> client', () => caller.call<ReturnType<typeof check>>('bytes', 'check', params)],
          ['client -> hub service', () => caller.call<ReturnType<typeof check>>('hubbytes', 'check', params)],
          ['hub -> client', () => pair.server.call<ReturnType<typeof check>>('bytes', 'check', params)],
        ] as const) {
          const result = await call();
          assert.equal(result.isBuffer, true, `${serialization}, ${who}: Buffers arrived as Buffers`);
          assert.ok(Buffer.isBuffer(result.back) && result.back.equals(blob), `${serialization}, ${who}: 1 MiB back intact`);
          assert.ok(Buffer.isBuffer(result.nested.inner[0]) && (result.nested.inner[0] as Buffer).equals(small), `${serialization}, ${who}: nested Buffer intact`);
        }
      }
    });

    test('the hub passes a call\'s payload on as it arrived: same bytes at the provider, even bytes it could not decode', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const provider = pair.client;
      const seen: unknown[] = [];
      await provider.provide('raw', { take: (params: unknown) => (seen.push(params), 'taken') });
      const arrived: Buffer[] = [];
      observeFrames(clientConnectionOf(provider), EFrameKind.Call, (frame) => arrived.push(Buffer.from(frame.payload)));
      const peer = await rawPeer(t, pair);
      // JSON nobody would produce: the bytes must arrive exactly so, not re-encoded.
      const odd = '{ "n" :   1 , "s":"\\u00e9t\\u00e9" ,"list":[ 1,2 ]   }';
      const rawTake = encodeCall({ service: 'raw', method: 'take', callerId: '', root: 'r', chain: ['raw'] });
      peer.send({ kind: EFrameKind.Call, encoding: EPayloadEncoding.Json, id: 1, type: rawTake, payload: odd });
      const answer = await peer.answer(1);
      assert.equal(answer.kind, EFrameKind.Response);
      assert.equal(JSON.parse(answer.payload.toString('utf8')), 'taken');
      assert.equal(arrived[0].toString('utf8'), odd, 'byte for byte as sent');
      assert.deepEqual(seen, [{ n: 1, s: 'été', list: [1, 2] }]);
      // A payload that is not JSON at all: the hub does not look, the provider refuses it.
      const hubErrors = pair.server.getStats().metrics.errors;
      const providerErrors = provider.getStats().metrics.errors;
      peer.send({ kind: EFrameKind.Call, encoding: EPayloadEncoding.Json, id: 2, type: rawTake, payload: '{not json' });
      const refused = await peer.answer(2);
      assert.equal(refused.kind, EFrameKind.ErrorResponse);
      assert.equal(codeOf(refused), 'PROTOCOL_ERROR');
      assert.equal(arrived[1].toString('utf8'), '{not json', 'the undecodable bytes reached the provider');
      assert.equal(provider.getStats().metrics.errors, providerErrors + 1, 'the provider failed to decode them');
      assert.equal(pair.server.getStats().metrics.errors, hubErrors, 'the hub never tried');
      assert.equal(seen.length, 1);
    });

    test('a call whose budget is 0 when it reaches the hub is refused with TIMEOUT without dispatch', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      let clientRuns = 0;
      let hubRuns = 0;
      await pair.client.provide('late', { m: () => ++clientRuns });
      await pair.server.provide('hublate', { m: () => ++hubRuns });
      const routed = collect<ICallRoutedInfo>(pair.server, 'callRouted');
      const peer = await rawPeer(t, pair);
      const late = encodeCall({ service: 'late', method: 'm', callerId: '', root: 'r', chain: ['late'] });
      const hubLate = encodeCall({ service: 'hublate', method: 'm', callerId: '', root: 'r', chain: ['hublate'] });
      peer.send({ kind: EFrameKind.Call, encoding: EPayloadEncoding.Json, id: 1, type: late, payload: '1', budgetMs: 0 });
      peer.send({ kind: EFrameKind.Call, encoding: EPayloadEncoding.Json, id: 2, type: hubLate, payload: '1', budgetMs: 0 });
      // The same call with time left is dispatched (the budget is what decides).
      peer.send({ kind: EFrameKind.Call, encoding: EPayloadEncoding.Json, id: 3, type: late, payload: '1', budgetMs: 5_000 });
      for (const id of [1, 2]) {
        const answer = await peer.answer(id);
        assert.equal(answer.kind, EFrameKind.ErrorResponse);
        assert.equal(codeOf(answer), 'TIMEOUT', `call ${id}`);
      }
      assert.equal((await peer.answer(3)).kind, EFrameKind.Response);
      assert.equal(clientRuns, 1, 'only the call with time left ran');
      assert.equal(hubRuns, 0);
      assert.equal(routed.length, 1);
    });

    test('a raw peer sending malformed service frames gets PROTOCOL_ERROR / INVALID_ARGUMENT answers; the hub goes on serving a good client', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const disconnects: unknown[] = [];
      pair.client.on('disconnect', (reason) => disconnects.push(reason));
      let runs = 0;
      await pair.client.provide('target', { m: () => ++runs });
      const peer = await rawPeer(t, pair);
      const provide = (id: number, type: string, payload?: string) =>
        peer.send({ kind: EFrameKind.Provide, encoding: payload === undefined ? EPayloadEncoding.None : EPayloadEncoding.Json, id, type, payload });
      const cases: Array<[string, () => void, number, EFrameKind, string | undefined]> = [
        ['Provide with garbage JSON', () => provide(1, 'rawsvc', '{oops'), 1, EFrameKind.Provide, 'PROTOCOL_ERROR'],
        ['Provide with JSON null', () => provide(2, 'rawsvc', 'null'), 2, EFrameKind.Provide, 'PROTOCOL_ERROR'],
        ['Provide without a payload', () => provide(3, 'rawsvc'), 3, EFrameKind.Provide, 'PROTOCOL_ERROR'],
        ['Provide with no methods', () => provide(4, 'rawsvc', '{"methods":[]}'), 4, EFrameKind.Provide, 'INVALID_ARGUMENT'],
        ['Provide with a non-string method', () => provide(5, 'rawsvc', '{"methods":["a",42]}'), 5, EFrameKind.Provide, 'INVALID_ARGUMENT'],
        ['Provide with methods not a list', () => provide(6, 'rawsvc', '{"methods":"a"}'), 6, EFrameKind.Provide, 'INVALID_ARGUMENT'],
        ['Provide with a U+0000 in the service name', () => provide(7, 'raw\u0000svc', '{"methods":["a"]}'), 7, EFrameKind.Provide, 'INVALID_ARGUMENT'],
        ['Provide with an empty service name', () => provide(8, '', '{"methods":["a"]}'), 8, EFrameKind.Provide, 'INVALID_ARGUMENT'],
        ['Provide, valid', () => provide(9, 'rawsvc', '{"methods":["a"],"metadata":[1]}'), 9, EFrameKind.Provide, undefined],
        ['Provide, duplicate on this connection', () => provide(10, 'rawsvc', '{"methods":["b"]}'), 10, EFrameKind.Provide, 'INVALID_ARGUMENT'],
        ['Call without a U+0000', () => peer.send({ kind: EFrameKind.Call, encoding: EPayloadEncoding.Json, id: 11, type: 'targetm', payload: '1' }), 11, EFrameKind.ErrorResponse, 'PROTOCOL_ERROR'],
        ['Call with an empty method', () => peer.send({ kind: EFrameKind.Call, encoding: EPayloadEncoding.Json, id: 12, type: 'target\u0000', payload: '1' }), 12, EFrameKind.ErrorResponse, 'PROTOCOL_ERROR'],
        ['Call with an empty service', () => peer.send({ kind: EFrameKind.Call, encoding: EPayloadEncoding.Json, id: 13, type: '\u0000m', payload: '1' }), 13, EFrameKind.ErrorResponse, 'PROTOCOL_ERROR'],
        [
          'Call with a chain of 5,000 entries',
          () => peer.send({ kind: EFrameKind.Call, encoding: EPayloadEncoding.Json, id: 14, type: encodeCall({ service: 'target', method: 'm', callerId: '', root: 'r', chain: Array.from({ length: 5_000 }, () => 'target') }), payload: '1' }),
          14,
          EFrameKind.ErrorResponse,
          'MAX_DEPTH_EXCEEDED',
        ],
      ];
      for (const [what, send, id, answerKind, code] of cases) {
        send();
        const answer = await peer.answer(id);
        assert.equal(answer.kind, answerKind, what);
        assert.equal(codeOf(answer), code, what);
      }
      assert.equal(runs, 0, 'no malformed call reached the provider');
      // The one valid provide registered once; its odd metadata became {}.
      assert.deepEqual(pair.server.getService('rawsvc'), { name: 'rawsvc', instances: [{ clientId: peer.clientId, methods: ['a'], metadata: {}, inFlight: 0 }] });

      // Headers that are not JSON: the frame itself is broken; that peer is dropped, nobody else.
      const reported = waitForEvent<[IpcError, string]>(pair.server, 'messageError');
      const closed = waitForClose(peer.socket);
      peer.socket.write(frameWithRawHeaders(EFrameKind.Call, 15, encodeCall({ service: 'target', method: 'm', callerId: '', root: 'r', chain: ['target'] }), '{"broken":', '1'));
      const [error, clientId] = await reported;
      assert.equal(error.code, 'PROTOCOL_ERROR');
      assert.equal(clientId, peer.clientId);
      await closed;
      await waitUntil(() => !pair.server.isServiceAvailable('rawsvc'), 5_000, 'the dropped peer\'s service removed');
      assert.equal(runs, 0);
      assert.equal(await pair.client.call('target', 'm'), 1);
      assert.deepEqual(disconnects, []);
      await assertServed(pair);
    });

    test('a Call with a huge chain: one too deep and long gets its MAX_DEPTH_EXCEEDED answer even when the caller accepts only small frames', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      await pair.client.provide('target', { m: () => 1 });
      const peer = await rawPeer(t, pair, { maxMessageSize: 4 * 1024 });
      const chain = [...Array.from({ length: 5_000 }, () => 'xxxxxxxxxx'), 'target'];
      peer.send({ kind: EFrameKind.Call, encoding: EPayloadEncoding.Json, id: 1, type: encodeCall({ service: 'target', method: 'm', callerId: '', root: 'r', chain }), payload: '1' });
      const answer = await peer.answer(1, 3_000);
      assert.equal(codeOf(answer), 'MAX_DEPTH_EXCEEDED');
      await assertServed(pair);
    });

    test('a Call whose chain entries are not service names (too long, empty chain, a chain not ending in the callee) is refused, not forwarded', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      const seen: ICallContext[] = [];
      await pair.client.provide('target', { m: (_p: unknown, ctx: ICallContext) => (seen.push(ctx), 1) });
      const peer = await rawPeer(t, pair);
      const big = 'x'.repeat(20_000);
      const types = [
        encodeCall({ service: 'target', method: 'm', callerId: '', root: big, chain: [big, 'target'] }),
        encodeCall({ service: 'target', method: 'm', callerId: '', root: 'r', chain: [] }),
        encodeCall({ service: 'target', method: 'm', callerId: '', root: 'r', chain: ['other'] }),
      ];
      for (const [i, type] of types.entries()) {
        peer.send({ kind: EFrameKind.Call, encoding: EPayloadEncoding.Json, id: i + 1, type, payload: '1' });
        const answer = await peer.answer(i + 1);
        const ran = seen.at(-1);
        assert.equal(answer.kind, EFrameKind.ErrorResponse, `call ${i + 1} was dispatched${ran ? ` (ctx.chain of ${ran.chain.map((s) => s.length).join(', ')} chars, depth ${ran.depth})` : ''}`);
        assert.ok(['INVALID_ARGUMENT', 'PROTOCOL_ERROR'].includes(codeOf(answer)!), `call ${i + 1}: ${codeOf(answer)}`);
      }
      assert.equal(seen.length, 0);
    });

    test('a Call frame larger than the hub\'s maxMessageSize is dropped with messageError; the hub goes on', T, async (t) => {
      const pair = await createPair(kind, { server: { maxMessageSize: 256 * 1024 } });
      t.after(() => pair.close());
      let runs = 0;
      await pair.client.provide('target', { m: () => ++runs });
      const peer = await rawPeer(t, pair);
      const reported = waitForEvent<[IpcError, string]>(pair.server, 'messageError');
      const closed = waitForClose(peer.socket);
      peer.send({ kind: EFrameKind.Call, encoding: EPayloadEncoding.Json, id: 1, type: encodeCall({ service: 'target', method: 'm', callerId: '', root: 'r', chain: ['target'] }), payload: JSON.stringify('y'.repeat(300_000)) });
      const [error, clientId] = await reported;
      assert.equal(error.code, 'MESSAGE_TOO_LARGE');
      assert.equal(clientId, peer.clientId);
      await closed;
      assert.equal(runs, 0);
      assert.equal(await pair.client.call('target', 'm'), 1);
    });
  });
}

// ---- the hub itself --------------------------------------------------------------------------

describe('the hub\'s side', () => {
  test('server.service<TApi>() gives the hub a typed proxy too', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    await pair.client.provide('users', { getUserById: (params: { id: number }) => ({ id: params.id, name: `user ${params.id}` }), count: () => 1 });
    const service = (pair.server as unknown as { service?: <TApi>(name: string) => TServiceProxy<TApi> }).service;
    assert.equal(typeof service, 'function', 'server.service exists');
    const api = service!.call(pair.server, 'users') as TServiceProxy<IUserApi>;
    assert.deepEqual(await api.getUserById({ id: 2 }), { id: 2, name: 'user 2' });
  });

  test('server.call of the hub\'s own method that throws synchronously rejects with HANDLER_ERROR', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    await pair.server.provide('clock', {
      broken: () => {
        throw new TypeError('clock broke');
      },
    });
    // A client caller gets HANDLER_ERROR (this part holds today)...
    const viaClient = await expectIpcError(pair.client.call('clock', 'broken'), 'HANDLER_ERROR');
    assert.deepEqual(viaClient.remote, { name: 'TypeError', message: 'clock broke' });
    // ...and so should the hub calling its own service.
    const viaHub = await expectIpcError(pair.server.call('clock', 'broken'), 'HANDLER_ERROR');
    assert.deepEqual(viaHub.remote, { name: 'TypeError', message: 'clock broke' });
  });

  test('server.provide validates its options as client.provide does', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    const ok = { m: () => 1 };
    await assert.rejects(pair.server.provide('a', ok, null as unknown as undefined), isInvalidArgument, 'null options');
    await assert.rejects(pair.server.provide('b', ok, { version: 42 as unknown as string }), isInvalidArgument, 'a non-string version');
    assert.equal(pair.server.isServiceAvailable('b'), false);
  });
});

// ---- a hub that restarts in a child process ------------------------------------------------------

test('a hub restarted in its own process (graceful, then SIGKILL): the provider re-announces without user code and callers reach it again', { timeout: 60_000 }, async (t) => {
  const socketPath = uniqueSocketPath('svc-hub');
  const id = uniqueId('hub');
  let hub = await spawnServer(socketPath, id);
  t.after(async () => {
    await hub.kill();
    fs.rmSync(socketPath, { force: true });
  });
  const reconnect = { enabled: true, initialDelay: 20, maxDelay: 200 };
  const provider = makeClient(unixTarget(socketPath, id), { reconnect });
  const caller = makeClient(unixTarget(socketPath, id), { reconnect });
  t.after(() => provider.disconnect());
  t.after(() => caller.disconnect());
  let calls = 0;
  await provider.provide('inventory', { stock: (params: { item: string }) => ({ item: params.item, n: ++calls }) });
  await provider.connect();
  await caller.connect();
  const reach = (what: string) =>
    eventually(
      async () => {
        const services = await caller.listServices();
        const inventory = services.find((s) => s.name === 'inventory');
        if (inventory === undefined) throw new Error('not yet announced');
        return { inventory, answer: await caller.call<{ item: string; n: number }>('inventory', 'stock', { item: what }, { timeout: 2_000 }) };
      },
      15_000,
      `inventory reachable (${what})`,
    );
  const first = await reach('first');
  assert.deepEqual(first.inventory.instances.map((i) => i.clientId), [provider.getClientId()]);
  assert.equal(first.answer.item, 'first');

  // Graceful: the hub stops and starts again in its process.
  let connects = 0;
  provider.on('connect', () => connects++);
  hub.send({ cmd: 'restart' });
  await hub.next('ready');
  const second = await reach('after restart');
  assert.ok(connects >= 1, 'the provider reconnected');
  assert.deepEqual(second.inventory.instances.map((i) => i.clientId), [provider.getClientId()]);
  assert.equal(second.answer.item, 'after restart');

  // Brutal: the hub process is SIGKILLed and a new one takes the path.
  await hub.kill('SIGKILL');
  hub = await spawnServer(socketPath, id);
  const third = await reach('after SIGKILL');
  assert.ok(connects >= 2, 'the provider reconnected again');
  assert.deepEqual(third.inventory.instances.map((i) => i.clientId), [provider.getClientId()]);
  assert.equal(third.answer.item, 'after SIGKILL');
});
