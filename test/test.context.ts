// The handler context (issue 10): every handler gets one; its signal follows the caller (abort,
// timeout, lost connection, a caller process SIGKILLed) promptly; its deadline is the caller's;
// nested requests made while a handler runs inherit both unless `propagate: false`; late results
// are dropped quietly; 10,000 aborted requests leave nothing behind. Real Unix sockets and TCP,
// both serializations.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as asyncHooks from 'node:async_hooks';
import { getEventListeners, setMaxListeners } from 'node:events';
import {
  EFrameKind,
  EPayloadEncoding,
  IpcError,
  clientConnectionOf,
  serverConnectionOf,
  type IMessageContext,
  type IpcConnection,
  type TIpcErrorCode,
  type TSerialization,
} from '../ts/internal.js';
import {
  TRANSPORTS,
  createPair,
  expectIpcError,
  spawnChildServer,
  waitUntil,
  withTimeout,
  type IPair,
  type TClientOverrides,
  type TServerOverrides,
  type TTransportKind,
} from './helpers/fixtures.js';
import { connectRawPeer, rawFrame } from './helpers/rawpeer.js';

const T = { timeout: 30_000 };
const SERIALIZATIONS: readonly TSerialization[] = ['json', 'advanced'];
/** Slack for wall-clock comparisons: Date.now() has 1 ms steps and the deadline is taken per socket chunk. */
const SLACK_MS = 15;
/** The bound the brief asks for on "promptly". */
const PROMPT_MS = 200;

function pairOf(kind: TTransportKind, serialization: TSerialization, server: TServerOverrides = {}, client: TClientOverrides = {}): Promise<IPair> {
  return createPair(kind, { server: { serialization, ...server }, client: { serialization, ...client } });
}

function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** When (performance.now()) and why a signal aborted; listens at once, so call it when the handler starts. */
function abortOf(signal: AbortSignal): Promise<{ at: number; reason: unknown }> {
  if (signal.aborted) return Promise.resolve({ at: performance.now(), reason: signal.reason });
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve({ at: performance.now(), reason: signal.reason }), { once: true }));
}

function assertReason(reason: unknown, code: TIpcErrorCode): void {
  assert.ok(reason instanceof IpcError, `signal.reason is not an IpcError: ${String(reason)}`);
  assert.equal(reason.code, code, `signal.reason has code ${reason.code}: ${reason.message}`);
}

/** A handler that reports its context when it starts and then waits for its signal (or forever, when `ignore`). */
function parking(): {
  handler: (data: unknown, peerId: string, context: IMessageContext) => Promise<string>;
  entered: Promise<IMessageContext>;
  aborted: Promise<{ at: number; reason: unknown }>;
} {
  const entered = deferred<IMessageContext>();
  const aborted = deferred<{ at: number; reason: unknown }>();
  return {
    entered: entered.promise,
    aborted: aborted.promise,
    handler: async (_data, _peerId, context) => {
      const abort = abortOf(context.signal);
      entered.resolve(context);
      aborted.resolve(await abort);
      return 'late';
    },
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** The cancel delays measured in this run (caller's abort to the handler's signal), by transport and serialization. */
const cancelDelays: string[] = [];

for (const kind of TRANSPORTS) {
  for (const serialization of SERIALIZATIONS) {
    describe(`handler context over ${kind}, serialization '${serialization}'`, () => {
      // ---- the context itself ---------------------------------------------------------------------

      test('every handler gets its context, also when declared with fewer parameters or as a (...args) wrapper', T, async (t) => {
        const pair = await pairOf(kind, serialization);
        t.after(() => pair.close());
        const seen = new Map<string, { count: number; context: IMessageContext }>();
        const inner = (name: string, args: unknown[]) => {
          seen.set(name, { count: args.length, context: args[2] as IMessageContext });
          return name;
        };
        // Server side: no parameters, one parameter, a rest-args wrapper.
        pair.server.onMessage('none', function (this: unknown) {
          // eslint-disable-next-line prefer-rest-params
          return inner('none', [...arguments]);
        });
        pair.server.onMessage('one', function (this: unknown, _data: unknown) {
          // eslint-disable-next-line prefer-rest-params
          return inner('one', [...arguments]);
        });
        pair.server.onMessage('wrapped', (...args: unknown[]) => inner('wrapped', args));
        pair.server.onMessage('note', (...args: unknown[]) => void inner('note', args));
        // Client side (server-initiated): a wrapper and a no-parameter function.
        pair.client.onMessage('c-wrapped', (...args: unknown[]) => inner('c-wrapped', args));
        pair.client.onMessage('c-note', function (this: unknown) {
          // eslint-disable-next-line prefer-rest-params
          inner('c-note', [...arguments]);
        });

        const clientId = pair.client.getClientId();
        assert.equal(await pair.client.request('none', 1, { headers: { trace: 'n-1' } }), 'none');
        assert.equal(await pair.client.request('one', 2), 'one');
        assert.equal(await pair.client.request('wrapped', 3, { headers: { trace: 'w-1', n: 2 } }), 'wrapped');
        await pair.client.sendMessage('note', 4);
        assert.equal(await pair.server.requestClient(clientId, 'c-wrapped', 5, { headers: { from: 'server' } }), 'c-wrapped');
        await pair.server.sendToClient(clientId, 'c-note', 6);
        await waitUntil(() => seen.has('note') && seen.has('c-note'), 5_000, 'messages handled');

        const expected: Record<string, { type: string; isRequest: boolean; headers: unknown; peerId: string; deadline: boolean }> = {
          none: { type: 'none', isRequest: true, headers: { trace: 'n-1' }, peerId: clientId, deadline: true },
          one: { type: 'one', isRequest: true, headers: undefined, peerId: clientId, deadline: true },
          wrapped: { type: 'wrapped', isRequest: true, headers: { trace: 'w-1', n: 2 }, peerId: clientId, deadline: true },
          note: { type: 'note', isRequest: false, headers: undefined, peerId: clientId, deadline: false },
          'c-wrapped': { type: 'c-wrapped', isRequest: true, headers: { from: 'server' }, peerId: pair.id, deadline: true },
          'c-note': { type: 'c-note', isRequest: false, headers: undefined, peerId: pair.id, deadline: false },
        };
        for (const [name, want] of Object.entries(expected)) {
          const got = seen.get(name);
          assert.ok(got, `${name} was not handled`);
          assert.equal(got.count, 3, `${name}: called with ${got.count} arguments`);
          const context = got.context;
          assert.equal(context.type, want.type, name);
          assert.equal(context.isRequest, want.isRequest, name);
          assert.deepEqual(context.headers, want.headers, name);
          assert.equal(context.peerId, want.peerId, name);
          assert.ok(context.signal instanceof AbortSignal, `${name}: signal`);
          assert.equal(context.signal.aborted, false, `${name}: signal aborted after a normal answer`);
          assert.equal(typeof context.remainingMs, 'function', name);
          if (want.deadline) {
            assert.equal(typeof context.deadline, 'number', `${name}: deadline`);
            assert.ok(context.remainingMs() > 0, `${name}: remainingMs`);
          } else {
            assert.equal(context.deadline, undefined, `${name}: a message has no deadline`);
            assert.equal(context.remainingMs(), Infinity, `${name}: remainingMs of a message`);
          }
        }
      });

      test("deadline is about now + the caller's timeout (undefined for timeout: Infinity); remainingMs() never negative", T, async (t) => {
        const pair = await pairOf(kind, serialization, {}, { requestTimeout: 7_000 });
        t.after(() => pair.close());
        let last: { context: IMessageContext; at: number; remaining: number } | undefined;
        const record = (_data: unknown, _peer: string, context: IMessageContext) => {
          last = { context, at: Date.now(), remaining: context.remainingMs() };
          return null;
        };
        pair.server.onMessage('d', record);
        pair.client.onMessage('d', record);
        const check = async (what: string, timeoutMs: number, call: () => Promise<unknown>) => {
          const before = Date.now();
          await call();
          const { context, at, remaining } = last!;
          assert.equal(typeof context.deadline, 'number', what);
          assert.ok(context.deadline! >= before + timeoutMs - SLACK_MS && context.deadline! <= at + timeoutMs + SLACK_MS, `${what}: deadline ${context.deadline! - before} ms after the call, expected about ${timeoutMs}`);
          assert.ok(remaining > timeoutMs - 1_000 && remaining <= timeoutMs + SLACK_MS, `${what}: remainingMs ${remaining}`);
        };
        await check('explicit timeout', 5_000, () => pair.client.request('d', 1, { timeout: 5_000 }));
        await check("the client's requestTimeout", 7_000, () => pair.client.request('d', 1));
        await check('requestClient, explicit timeout', 4_000, () => pair.server.requestClient(pair.client.getClientId(), 'd', 1, { timeout: 4_000 }));
        await check("requestClient, the server's default requestTimeout (30 s)", 30_000, () => pair.server.requestClient(pair.client.getClientId(), 'd', 1));

        await pair.client.request('d', 1, { timeout: Infinity });
        assert.equal(last!.context.deadline, undefined, 'timeout: Infinity has no deadline');
        assert.equal(last!.context.remainingMs(), Infinity);

        // A handler that outlives its caller's deadline: remainingMs() reaches 0 and stays there.
        const reads: number[] = [];
        const done = deferred();
        pair.server.onMessage('outlive', async (_data, _peer, context) => {
          reads.push(context.remainingMs());
          await abortOf(context.signal);
          await sleep(30);
          reads.push(context.remainingMs());
          done.resolve();
        });
        await expectIpcError(pair.client.request('outlive', 1, { timeout: 60 }), 'TIMEOUT');
        await withTimeout(done.promise, 5_000, 'handler finishing');
        assert.ok(reads[0] > 0 && reads[0] <= 60, `remainingMs at the start: ${reads[0]}`);
        assert.equal(reads[1], 0, `remainingMs after the deadline: ${reads[1]}`);
      });

      // ---- cancellation reaches the handler -------------------------------------------------------

      test("the caller's abort (AbortController) aborts the handler's signal with ABORTED, promptly", T, async (t) => {
        const pair = await pairOf(kind, serialization);
        t.after(() => pair.close());
        const delays: number[] = [];
        for (let i = 0; i < 20; i++) {
          const park = parking();
          pair.server.onMessage('park', park.handler);
          const controller = new AbortController();
          const request = pair.client.request('park', i, { signal: controller.signal, timeout: 10_000 });
          await withTimeout(park.entered, 5_000, 'handler entered');
          const abortedAt = performance.now();
          controller.abort();
          await expectIpcError(request, 'ABORTED');
          const { at, reason } = await withTimeout(park.aborted, 5_000, "handler's signal");
          assertReason(reason, 'ABORTED');
          delays.push(at - abortedAt);
        }
        const summary = `${kind}/${serialization}: median ${median(delays).toFixed(2)} ms, max ${Math.max(...delays).toFixed(2)} ms over ${delays.length}`;
        cancelDelays.push(summary);
        t.diagnostic(`cancel delay (caller's abort to handler's signal) ${summary}`);
        assert.ok(Math.max(...delays) < PROMPT_MS, summary);

        // Aborted in the same tick it was sent: the handler still learns it.
        const park = parking();
        pair.server.onMessage('park', park.handler);
        const controller = new AbortController();
        const request = pair.client.request('park', 'x', { signal: controller.signal });
        controller.abort();
        await expectIpcError(request, 'ABORTED');
        assertReason((await withTimeout(park.aborted, 5_000, "handler's signal")).reason, 'ABORTED');
        assert.equal(pair.server.getStats().metrics.requestsInFlight, 0);
      });

      test("the caller's timeout aborts the handler's signal with TIMEOUT, promptly", T, async (t) => {
        const pair = await pairOf(kind, serialization);
        t.after(() => pair.close());
        const park = parking();
        pair.server.onMessage('park', park.handler);
        pair.client.onMessage('park', park.handler);
        const rejected = pair.client.request('park', 1, { timeout: 100 }).catch((err: unknown) => ({ err, at: performance.now() }));
        const { err, at: rejectedAt } = (await rejected) as { err: IpcError; at: number };
        assert.equal(err.code, 'TIMEOUT');
        const { at, reason } = await withTimeout(park.aborted, 5_000, "handler's signal");
        assertReason(reason, 'TIMEOUT');
        t.diagnostic(`timeout to handler's signal: ${(at - rejectedAt).toFixed(2)} ms`);
        assert.ok(at - rejectedAt < PROMPT_MS, `timeout reached the handler after ${(at - rejectedAt).toFixed(1)} ms`);

        // The other direction: requestClient's timeout reaches the client's handler.
        const back = parking();
        pair.client.onMessage('park', back.handler);
        await expectIpcError(pair.server.requestClient(pair.client.getClientId(), 'park', 1, { timeout: 80 }), 'TIMEOUT');
        assertReason((await withTimeout(back.aborted, 5_000, "client handler's signal")).reason, 'TIMEOUT');
      });

      test("the caller's connection dropping aborts the handler's signal with CONNECTION_LOST (clean close and abrupt)", T, async (t) => {
        const pair = await pairOf(kind, serialization);
        t.after(() => pair.close());
        // A clean disconnect while a request and an async message handler are running.
        const request = parking();
        const message = parking();
        pair.server.onMessage('park', request.handler);
        pair.server.onMessage('parkMessage', message.handler);
        const pending = pair.client.request('park', 1, { timeout: 10_000 });
        await pair.client.sendMessage('parkMessage', 1);
        await withTimeout(Promise.all([request.entered, message.entered]), 5_000, 'handlers entered');
        await pair.client.disconnect();
        await expectIpcError(pending, 'CONNECTION_LOST');
        assertReason((await withTimeout(request.aborted, 5_000, 'request handler')).reason, 'CONNECTION_LOST');
        assertReason((await withTimeout(message.aborted, 5_000, 'message handler')).reason, 'CONNECTION_LOST');

        // An abrupt drop: the socket is destroyed, no goodbye.
        const second = await pair.addClient();
        const abrupt = parking();
        pair.server.onMessage('park', abrupt.handler);
        const lost = second.request('park', 2, { timeout: 10_000 }).catch(() => undefined);
        await withTimeout(abrupt.entered, 5_000, 'handler entered');
        clientConnectionOf(second).destroy(new IpcError('CONNECTION_LOST', 'test: socket destroyed'));
        await lost;
        assertReason((await withTimeout(abrupt.aborted, 5_000, 'handler after an abrupt drop')).reason, 'CONNECTION_LOST');

        // The server going away aborts a client handler serving requestClient.
        const third = await pair.addClient();
        const clientSide = parking();
        third.onMessage('park', clientSide.handler);
        const serverRequest = pair.server.requestClient(third.getClientId(), 'park', 3, { timeout: 10_000 }).catch((err: IpcError) => err.code);
        await withTimeout(clientSide.entered, 5_000, 'client handler entered');
        await pair.server.stop({ graceMs: 0 });
        assertReason((await withTimeout(clientSide.aborted, 5_000, 'client handler when the server stops')).reason, 'CONNECTION_LOST');
        assert.equal(await serverRequest, 'CONNECTION_LOST');
        await waitUntil(() => pair.server.getStats().metrics.requestsInFlight === 0, 2_000, 'nothing in flight');
      });

      test('late results after a cancel are dropped without noise; the connection keeps working', T, async (t) => {
        const pair = await pairOf(kind, serialization);
        t.after(() => pair.close());
        const noise: unknown[] = [];
        const onUnhandled = (reason: unknown) => noise.push({ unhandledRejection: reason });
        process.on('unhandledRejection', onUnhandled);
        t.after(() => process.off('unhandledRejection', onUnhandled));
        pair.server.on('error', (error) => noise.push({ serverError: error }));
        pair.client.on('error', (error: unknown) => noise.push({ clientError: error }));
        pair.server.on('messageError', (error) => noise.push({ messageError: error }));

        const release = deferred();
        let entered = 0;
        // Handlers that ignore their signal: one answers late, one throws late.
        pair.server.onMessage('lateValue', async () => {
          entered++;
          await release.promise;
          return { late: Buffer.from('value') };
        });
        pair.server.onMessage('lateThrow', async () => {
          entered++;
          await release.promise;
          throw new Error('late failure');
        });
        pair.client.onMessage('lateValue', async () => {
          entered++;
          await release.promise;
          return 'late';
        });
        const controller = new AbortController();
        const calls = [
          expectIpcError(pair.client.request('lateValue', 1, { signal: controller.signal }), 'ABORTED'),
          expectIpcError(pair.client.request('lateThrow', 1, { signal: controller.signal }), 'ABORTED'),
          expectIpcError(pair.client.request('lateValue', 2, { timeout: 50 }), 'TIMEOUT'),
          expectIpcError(pair.client.request('lateThrow', 2, { timeout: 50 }), 'TIMEOUT'),
          expectIpcError(pair.server.requestClient(pair.client.getClientId(), 'lateValue', 3, { timeout: 50 }), 'TIMEOUT'),
        ];
        await waitUntil(() => entered === 5, 5_000, 'handlers entered');
        controller.abort();
        await Promise.all(calls);
        await waitUntil(() => pair.server.getStats().metrics.requestsInFlight === 0 && pair.client.getStats().metrics.requestsInFlight === 0, 2_000, 'cancelled handlers no longer in flight');
        const serverBefore = pair.server.getStats().metrics;
        const clientBefore = pair.client.getStats().metrics;
        release.resolve();
        await sleep(50);
        const serverAfter = pair.server.getStats().metrics;
        const clientAfter = pair.client.getStats().metrics;
        assert.equal(serverAfter.messagesSent, serverBefore.messagesSent, 'the server sent nothing for the late results');
        assert.equal(clientAfter.messagesSent, clientBefore.messagesSent, 'the client sent nothing for the late result');
        assert.equal(serverAfter.errors, serverBefore.errors, 'a late throw is not counted as an error');
        assert.equal(clientAfter.messagesReceived, clientBefore.messagesReceived);
        assert.deepEqual(noise, []);
        pair.server.onMessage('echo', (data) => data);
        assert.deepStrictEqual(await pair.client.request('echo', [Buffer.from('still working')]), [Buffer.from('still working')]);
        assert.equal(pair.client.getIsConnected(), true);
      });

      test("a handler that never answers: once its caller gave up, requestsInFlight returns to 0 and stop({ graceMs: 5000 }) does not wait for it", T, async (t) => {
        const pair = await pairOf(kind, serialization);
        t.after(() => pair.close());
        let entered = 0;
        pair.server.onMessage('never', () => {
          entered++;
          return new Promise(() => undefined);
        });
        const controller = new AbortController();
        const timedOut = expectIpcError(pair.client.request('never', 1, { timeout: 100 }), 'TIMEOUT');
        const aborted = expectIpcError(pair.client.request('never', 2, { signal: controller.signal }), 'ABORTED');
        await waitUntil(() => entered === 2, 5_000, 'handlers entered');
        assert.equal(pair.server.getStats().metrics.requestsInFlight, 2);
        controller.abort();
        await Promise.all([timedOut, aborted]);
        await waitUntil(() => pair.server.getStats().metrics.requestsInFlight === 0, 2_000, 'server requestsInFlight back to 0');
        assert.equal(serverConnectionOf(pair.server, pair.client.getClientId())!.activeHandlerCount, 0);
        const started = performance.now();
        await pair.server.stop({ graceMs: 5_000 });
        const elapsed = performance.now() - started;
        t.diagnostic(`stop took ${elapsed.toFixed(1)} ms`);
        assert.ok(elapsed < 1_000, `stop waited ${elapsed.toFixed(0)} ms for handlers whose callers had gone`);
      });

      test('control: a handler whose caller still waits holds stop() for the grace period', T, async (t) => {
        const pair = await pairOf(kind, serialization);
        t.after(() => pair.close());
        const park = parking();
        pair.server.onMessage('never', park.handler);
        const pending = pair.client.request('never', 1, { timeout: 10_000 }).catch((err: IpcError) => err.code);
        await withTimeout(park.entered, 5_000, 'handler entered');
        const started = performance.now();
        await pair.server.stop({ graceMs: 300 });
        const elapsed = performance.now() - started;
        assert.ok(elapsed >= 280, `stop returned after ${elapsed.toFixed(0)} ms, before the grace`);
        assert.equal(await pending, 'CONNECTION_LOST');
      });

      test('an async message handler still running is not counted in requestsInFlight', T, async (t) => {
        const pair = await pairOf(kind, serialization);
        t.after(() => pair.close());
        const release = deferred();
        const entered = deferred();
        pair.server.onMessage('work', async () => {
          entered.resolve();
          await release.promise;
        });
        t.after(() => release.resolve());
        await pair.client.sendMessage('work', 1);
        await withTimeout(entered.promise, 5_000, 'message handler entered');
        assert.equal(pair.server.getStats().metrics.requestsInFlight, 0);
      });

      // ---- propagation into nested calls ----------------------------------------------------------

      test('a request made inside a handler (before and after an await) inherits the remaining deadline', T, async (t) => {
        const pair = await pairOf(kind, serialization);
        t.after(() => pair.close());
        const b = await pair.addClient();
        const deadlines: Record<string, number | undefined> = {};
        const recordInner = (name: string) => (_data: unknown, _peer: string, context: IMessageContext) => {
          deadlines[name] = context.deadline;
          return name;
        };
        // server.requestClient inside a server handler (the caller: client A)
        b.onMessage('inner', recordInner('viaServer'));
        pair.server.onMessage('outer', async (data: { wait: boolean; own?: number }, _peer, context) => {
          deadlines.outer = context.deadline;
          if (data.wait) await sleep(30);
          return pair.server.requestClient(b.getClientId(), 'inner', null, { timeout: data.own ?? 10_000 });
        });
        for (const wait of [false, true]) {
          assert.equal(await pair.client.request('outer', { wait }, { timeout: 1_000 }), 'viaServer');
          assert.ok(Math.abs(deadlines.viaServer! - deadlines.outer!) <= SLACK_MS, `requestClient${wait ? ' after an await' : ''}: inner deadline ${deadlines.viaServer! - deadlines.outer!} ms from the outer one`);
        }
        // Its own timeout is smaller: that one counts.
        const before = Date.now();
        await pair.client.request('outer', { wait: false, own: 200 }, { timeout: 1_000 });
        assert.ok(deadlines.viaServer! <= Date.now() + 200 + SLACK_MS && deadlines.viaServer! >= before + 200 - SLACK_MS && deadlines.viaServer! < deadlines.outer! - 500, `own smaller timeout: ${deadlines.viaServer! - before} ms`);

        // client.request inside a client handler (the caller: the server, via requestClient)
        pair.server.onMessage('innerOnServer', recordInner('viaClient'));
        pair.client.onMessage('outerOnClient', async (data: { wait: boolean }, _peer, context) => {
          deadlines.outerOnClient = context.deadline;
          if (data.wait) await sleep(30);
          return pair.client.request('innerOnServer', null, { timeout: 10_000 });
        });
        for (const wait of [false, true]) {
          assert.equal(await pair.server.requestClient(pair.client.getClientId(), 'outerOnClient', { wait }, { timeout: 1_000 }), 'viaClient');
          assert.ok(Math.abs(deadlines.viaClient! - deadlines.outerOnClient!) <= SLACK_MS, `client.request${wait ? ' after an await' : ''}: inner deadline ${deadlines.viaClient! - deadlines.outerOnClient!} ms from the outer one`);
        }
      });

      test("a nested request's effective timeout is the caller's remaining budget: it rejects TIMEOUT then, not after its own 10 s", T, async (t) => {
        const pair = await pairOf(kind, serialization);
        t.after(() => pair.close());
        const hang = parking();
        pair.client.onMessage('hang', hang.handler);
        const nested = deferred<{ code: string; elapsed: number }>();
        pair.server.onMessage('outer', async () => {
          const started = performance.now();
          try {
            await pair.server.requestClient(pair.client.getClientId(), 'hang', null, { timeout: 10_000 });
            nested.resolve({ code: 'resolved', elapsed: performance.now() - started });
          } catch (err) {
            nested.resolve({ code: (err as IpcError).code, elapsed: performance.now() - started });
          }
        });
        // The outer caller is a raw peer with a 300 ms budget that never cancels: only the budget can end the nested call.
        const peer = await connectRawPeer(pair.endpoint, pair.id, serialization);
        t.after(() => peer.destroy());
        peer.write(rawFrame({ kind: EFrameKind.Request, flags: EPayloadEncoding.None, id: 1, type: 'outer', budgetMs: 300 }));
        const { code, elapsed } = await withTimeout(nested.promise, 5_000, 'nested request');
        assert.equal(code, 'TIMEOUT');
        assert.ok(elapsed >= 250 && elapsed < 1_500, `nested request gave up after ${elapsed.toFixed(0)} ms`);
        assertReason((await withTimeout(hang.aborted, 5_000, 'inner handler')).reason, 'TIMEOUT');
      });

      test('a nested request is aborted when the outer caller aborts or its connection drops (both directions)', T, async (t) => {
        const pair = await pairOf(kind, serialization);
        t.after(() => pair.close());
        const b = await pair.addClient();
        // A -> server handler -> requestClient(B), A aborts.
        let hang = parking();
        b.onMessage('hang', (...args) => hang.handler(...args));
        let nested = deferred<string>();
        pair.server.onMessage('outer', async () => {
          await sleep(5);
          try {
            return await pair.server.requestClient(b.getClientId(), 'hang', null, { timeout: 10_000 });
          } catch (err) {
            nested.resolve((err as IpcError).code);
            throw err;
          }
        });
        const controller = new AbortController();
        const outer = pair.client.request('outer', null, { signal: controller.signal, timeout: 10_000 });
        await withTimeout(hang.entered, 5_000, 'inner handler entered');
        const abortedAt = performance.now();
        controller.abort();
        await expectIpcError(outer, 'ABORTED');
        assert.equal(await withTimeout(nested.promise, 5_000, 'nested request'), 'ABORTED');
        const inner = await withTimeout(hang.aborted, 5_000, 'inner handler');
        assertReason(inner.reason, 'ABORTED');
        t.diagnostic(`two hops: caller's abort to the nested handler's signal ${(inner.at - abortedAt).toFixed(2)} ms`);
        assert.ok(inner.at - abortedAt < PROMPT_MS * 2, `two hops took ${(inner.at - abortedAt).toFixed(1)} ms`);

        // The same when the outer caller's connection drops.
        hang = parking();
        nested = deferred<string>();
        const c = await pair.addClient();
        const lost = c.request('outer', null, { timeout: 10_000 }).catch(() => undefined);
        await withTimeout(hang.entered, 5_000, 'inner handler entered');
        await c.disconnect();
        await lost;
        assert.equal(await withTimeout(nested.promise, 5_000, 'nested request'), 'ABORTED');
        assertReason((await withTimeout(hang.aborted, 5_000, 'inner handler')).reason, 'ABORTED');

        // server requestClient(A) -> A's handler -> client.request to the server, the server aborts.
        const serverSide = parking();
        pair.server.onMessage('hangOnServer', serverSide.handler);
        const nestedOnClient = deferred<string>();
        pair.client.onMessage('outerOnClient', async () => {
          await sleep(5);
          return pair.client.request('hangOnServer', null, { timeout: 10_000 }).catch((err: IpcError) => {
            nestedOnClient.resolve(err.code);
            throw err;
          });
        });
        const serverController = new AbortController();
        const fromServer = pair.server.requestClient(pair.client.getClientId(), 'outerOnClient', null, { signal: serverController.signal });
        await withTimeout(serverSide.entered, 5_000, 'server handler entered');
        serverController.abort();
        await expectIpcError(fromServer, 'ABORTED');
        assert.equal(await withTimeout(nestedOnClient.promise, 5_000, 'nested client request'), 'ABORTED');
        assertReason((await withTimeout(serverSide.aborted, 5_000, 'server handler')).reason, 'ABORTED');

        // A request made after the handler was cancelled is refused at once and never sent.
        let innerCalls = 0;
        pair.server.onMessage('innerCount', () => void innerCalls++);
        const later = deferred<string>();
        pair.client.onMessage('outerLate', async (_d, _p, context) => {
          await abortOf(context.signal);
          later.resolve(await pair.client.request('innerCount', null).then(() => 'sent', (err: IpcError) => err.code));
        });
        await expectIpcError(pair.server.requestClient(pair.client.getClientId(), 'outerLate', null, { timeout: 50 }), 'TIMEOUT');
        assert.equal(await withTimeout(later.promise, 5_000, 'request after cancel'), 'TIMEOUT');
        assert.equal(innerCalls, 0);
      });

      test('{ propagate: false } opts out: own deadline, not aborted with the outer caller (client.request and requestClient)', T, async (t) => {
        const pair = await pairOf(kind, serialization);
        t.after(() => pair.close());
        const b = await pair.addClient();
        const release = deferred();
        let innerContext: IMessageContext | undefined;
        const innerEntered = deferred();
        const inner = async (_data: unknown, _peer: string, context: IMessageContext) => {
          innerContext = context;
          innerEntered.resolve();
          await release.promise;
          return 'finished anyway';
        };
        b.onMessage('inner', inner);
        const nested = deferred<unknown>();
        pair.server.onMessage('outer', async () => {
          await sleep(5);
          const value = await pair.server.requestClient(b.getClientId(), 'inner', null, { timeout: 10_000, propagate: false }).catch((err: IpcError) => err.code);
          nested.resolve(value);
          return value;
        });
        const controller = new AbortController();
        const before = Date.now();
        const outer = pair.client.request('outer', null, { signal: controller.signal, timeout: 1_000 });
        await withTimeout(innerEntered.promise, 5_000, 'inner entered');
        assert.ok(innerContext!.deadline! >= before + 10_000 - SLACK_MS, `propagate false: inner deadline ${innerContext!.deadline! - before} ms, expected its own 10 s`);
        controller.abort();
        await expectIpcError(outer, 'ABORTED');
        await sleep(50);
        assert.equal(innerContext!.signal.aborted, false, 'the opted-out request was cancelled with the outer caller');
        release.resolve();
        assert.equal(await withTimeout(nested.promise, 5_000, 'nested result'), 'finished anyway');

        // client.request with propagate: false inside a client handler.
        let serverInner: IMessageContext | undefined;
        const serverRelease = deferred();
        const serverEntered = deferred();
        pair.server.onMessage('innerOnServer', async (_d, _p, context) => {
          serverInner = context;
          serverEntered.resolve();
          await serverRelease.promise;
          return 'server finished';
        });
        const nestedOnClient = deferred<unknown>();
        pair.client.onMessage('outerOnClient', async () => {
          const value = await pair.client.request('innerOnServer', null, { timeout: 10_000, propagate: false }).catch((err: IpcError) => err.code);
          nestedOnClient.resolve(value);
        });
        const serverController = new AbortController();
        const at = Date.now();
        const fromServer = pair.server.requestClient(pair.client.getClientId(), 'outerOnClient', null, { signal: serverController.signal, timeout: 1_000 });
        await withTimeout(serverEntered.promise, 5_000, 'server inner entered');
        assert.ok(serverInner!.deadline! >= at + 10_000 - SLACK_MS, `propagate false: inner deadline ${serverInner!.deadline! - at} ms, expected its own 10 s`);
        serverController.abort();
        await expectIpcError(fromServer, 'ABORTED');
        await sleep(50);
        assert.equal(serverInner!.signal.aborted, false);
        serverRelease.resolve();
        assert.equal(await withTimeout(nestedOnClient.promise, 5_000, 'nested client result'), 'server finished');
      });

      test('a request made later by work a handler left behind (after it answered) does not inherit its expired deadline', T, async (t) => {
        const pair = await pairOf(kind, serialization);
        t.after(() => pair.close());
        pair.server.onMessage('report', async () => {
          await sleep(20);
          return 'reported';
        });
        const background = deferred<string>();
        pair.client.onMessage('kick', () => {
          // Answer now, report in the background once the caller's 50 ms are long gone.
          setTimeout(() => {
            pair.client.request('report', null, { timeout: 5_000 }).then(
              (value) => background.resolve(String(value)),
              (err: IpcError) => background.resolve(err.code),
            );
          }, 200);
          return 'accepted';
        });
        assert.equal(await pair.server.requestClient(pair.client.getClientId(), 'kick', null, { timeout: 50 }), 'accepted');
        assert.equal(await withTimeout(background.promise, 5_000, 'background request'), 'reported');
      });

      // ---- options -------------------------------------------------------------------------------

      test("the server's requestTimeout is the default of requestClient; a per-call timeout overrides it", T, async (t) => {
        const pair = await pairOf(kind, serialization, { requestTimeout: 150 });
        t.after(() => pair.close());
        const hang = parking();
        pair.client.onMessage('hang', hang.handler);
        const before = Date.now();
        const started = performance.now();
        await expectIpcError(pair.server.requestClient(pair.client.getClientId(), 'hang', null), 'TIMEOUT');
        const elapsed = performance.now() - started;
        assert.ok(elapsed >= 140 && elapsed < 2_000, `requestClient timed out after ${elapsed.toFixed(0)} ms, expected about 150`);
        const context = await hang.entered;
        assert.ok(Math.abs(context.deadline! - (before + 150)) <= SLACK_MS, `client handler deadline ${context.deadline! - before} ms`);
        assertReason((await withTimeout(hang.aborted, 5_000, 'client handler')).reason, 'TIMEOUT');

        let last: IMessageContext | undefined;
        pair.client.onMessage('d', (_d, _p, c) => void (last = c));
        const at = Date.now();
        await pair.server.requestClient(pair.client.getClientId(), 'd', null, { timeout: 600 });
        assert.ok(Math.abs(last!.deadline! - (at + 600)) <= SLACK_MS, `per-call timeout: deadline ${last!.deadline! - at} ms`);
      });

      test('requestTimeout: Infinity works on both sides: no deadline, no timer, subscribe does not fail', T, async (t) => {
        const pair = await pairOf(kind, serialization, { requestTimeout: Infinity }, { requestTimeout: Infinity });
        t.after(() => pair.close());
        let last: IMessageContext | undefined;
        const slow = async (_d: unknown, _p: string, context: IMessageContext) => {
          last = context;
          await sleep(60);
          return 'slow answer';
        };
        pair.server.onMessage('slow', slow);
        pair.client.onMessage('slow', slow);

        // No timer is started for a request without a timeout (the spy itself is checked on a finite one).
        const timerDelays = (call: () => Promise<unknown>): { delays: number[]; result: Promise<unknown> } => {
          const delays: number[] = [];
          const original = globalThis.setTimeout;
          globalThis.setTimeout = ((fn: () => void, ms?: number) => {
            delays.push(ms ?? 0);
            return original(fn, ms);
          }) as typeof setTimeout;
          try {
            return { delays, result: call() };
          } finally {
            globalThis.setTimeout = original;
          }
        };
        const infinite = timerDelays(() => pair.client.request('slow'));
        assert.equal(await infinite.result, 'slow answer');
        assert.deepEqual(infinite.delays, [], 'a request with requestTimeout: Infinity started a timer');
        assert.equal(last!.deadline, undefined);
        assert.equal(last!.remainingMs(), Infinity);
        const fromServer = timerDelays(() => pair.server.requestClient(pair.client.getClientId(), 'slow'));
        assert.equal(await fromServer.result, 'slow answer');
        assert.deepEqual(fromServer.delays, [], 'a requestClient with requestTimeout: Infinity started a timer');
        assert.equal(last!.deadline, undefined);
        const control = timerDelays(() => pair.client.request('slow', null, { timeout: 5_000 }));
        assert.equal(await control.result, 'slow answer');
        assert.ok(control.delays.length > 0, 'control: the spy sees the timer of a finite timeout');

        const received: unknown[] = [];
        const subscribed = timerDelays(() => pair.client.subscribe('inf.topic', (data) => void received.push(data)));
        await subscribed.result;
        assert.deepEqual(subscribed.delays, [], 'subscribe with requestTimeout: Infinity started a timer');
        await sleep(20);
        await pair.server.publish('inf.topic', 'after 20 ms');
        await waitUntil(() => received.length === 1, 5_000, 'publish delivered');
        assert.deepEqual(received, ['after 20 ms']);
      });

      test("a per-call timeout that is not a non-negative number rejects INVALID_ARGUMENT and sends nothing", T, async (t) => {
        const pair = await pairOf(kind, serialization);
        t.after(() => pair.close());
        let calls = 0;
        pair.server.onMessage('x', () => void calls++);
        pair.client.onMessage('x', () => void calls++);
        for (const timeout of [NaN, -1, -Infinity, '5', true, {}] as unknown[]) {
          await expectIpcError(pair.client.request('x', 1, { timeout: timeout as number }), 'INVALID_ARGUMENT');
          await expectIpcError(pair.server.requestClient(pair.client.getClientId(), 'x', 1, { timeout: timeout as number }), 'INVALID_ARGUMENT');
        }
        assert.equal(calls, 0);
        assert.equal(clientConnectionOf(pair.client).pendingRequests, 0);
        assert.notEqual(await pair.client.request('x', 1, { timeout: 0 }).then(() => 'answered', (err: IpcError) => err.code), 'INVALID_ARGUMENT', 'timeout 0 is a valid timeout');
        assert.equal(await pair.client.request('x', 1, { timeout: 5_000 }), undefined);
      });
    });
  }
}

// ---- a caller in another process, SIGKILLed --------------------------------------------------------

for (const kind of TRANSPORTS) {
  describe(`a caller process killed mid-request over ${kind}`, () => {
    test("a caller SIGKILLed while its request is handled: the handler's signal aborts with CONNECTION_LOST", T, async (t) => {
      const pair = await pairOf(kind, 'json');
      t.after(() => pair.close());
      const park = parking();
      pair.server.onMessage('hang', park.handler);
      const where = 'socketPath' in pair.endpoint ? pair.endpoint.socketPath : `tcp:${pair.endpoint.port}`;
      const child = await spawnChildServer('child.requester.ts', [pair.id, where, 'hang', '60000']);
      t.after(() => child.kill());
      const context = await withTimeout(park.entered, 10_000, 'handler entered');
      assert.equal(context.peerId, child.ready);
      assert.equal(pair.server.getStats().metrics.requestsInFlight, 1);
      const killedAt = performance.now();
      child.child.kill('SIGKILL');
      const { at, reason } = await withTimeout(park.aborted, 10_000, "handler's signal after SIGKILL");
      assertReason(reason, 'CONNECTION_LOST');
      t.diagnostic(`SIGKILL to handler's signal: ${(at - killedAt).toFixed(1)} ms`);
      assert.equal(pair.server.getStats().metrics.requestsInFlight, 0);
    });
  });
}

// ---- leaks -------------------------------------------------------------------------------------------

/**
 * Watches Timeout objects (any timer, unref'd ones included) created while enabled; `armed()` counts
 * those not yet fired or cleared (Node marks a Timeout `_destroyed` then; the destroy hook itself comes later).
 */
function timerWatch(): { armed(): number; stop(): void } {
  const timers = new Set<{ _destroyed?: boolean }>();
  const hook = asyncHooks
    .createHook({
      init(_id, type, _trigger, resource) {
        if (type === 'Timeout') timers.add(resource as { _destroyed?: boolean });
      },
    })
    .enable();
  return { armed: () => [...timers].filter((timer) => timer._destroyed !== true).length, stop: () => hook.disable() };
}

/** The server-side table of running handlers (by request id); read for the leak check only. */
function runningHandlers(connection: IpcConnection): number {
  return (connection as unknown as { running: { size: number } }).running.size;
}

const N = 10_000;

for (const kind of TRANSPORTS) {
  for (const serialization of SERIALIZATIONS) {
    describe(`no leaks over ${kind}, serialization '${serialization}'`, () => {
      test(`${N.toLocaleString('en')} requests aborted by their callers leave no pending entries, no listeners and no timer but the one shared deadline timer, on either side`, T, async (t) => {
        const pair = await pairOf(kind, serialization, { heartbeat: false }, { heartbeat: false });
        t.after(() => pair.close());
        const serverConnection = serverConnectionOf(pair.server, pair.client.getClientId())!;
        const signals: AbortSignal[] = [];
        let entered = 0;
        pair.server.onMessage('park', async (data: number, _peer, context) => {
          entered++;
          // Half the handlers wait for their signal, half ignore it and never settle.
          if (data % 2 === 0) {
            signals.push(context.signal);
            await abortOf(context.signal);
          } else {
            await new Promise(() => undefined);
          }
        });
        const timers = timerWatch();
        const controllers = Array.from({ length: N }, () => new AbortController());
        // Outcomes are taken at once: half of them reject in this tick.
        const requests = controllers.map((controller, i) => pair.client.request('park', i, { signal: controller.signal }).then(() => 'resolved', (err: IpcError) => err.code));
        // Half aborted at once (the cancel follows the request on the wire), half once their handlers run.
        for (let i = 0; i < N; i += 2) controllers[i + 1].abort();
        await waitUntil(() => entered === N, 20_000, 'every handler entered');
        for (let i = 0; i < N; i += 2) controllers[i].abort();
        const outcomes = await Promise.all(requests);
        assert.ok(outcomes.every((code) => code === 'ABORTED'), 'every request rejected ABORTED');
        await waitUntil(() => serverConnection.activeHandlerCount === 0, 10_000, 'no handler counted as running');
        await waitUntil(() => signals.every((s) => s.aborted), 5_000, 'every waiting handler aborted');
        await sleep(20);
        const liveTimers = timers.armed();
        timers.stop();

        assert.equal(clientConnectionOf(pair.client).pendingRequests, 0, 'client: pending entries left');
        assert.equal(pair.client.getStats().metrics.requestsInFlight, 0);
        assert.equal(runningHandlers(serverConnection), 0, 'server: running-handler entries left');
        assert.equal(pair.server.getStats().metrics.requestsInFlight, 0);
        const clientListeners = controllers.reduce((sum, c) => sum + getEventListeners(c.signal, 'abort').length, 0);
        assert.equal(clientListeners, 0, 'client: abort listeners left on the callers\' signals');
        const serverListeners = signals.reduce((sum, s) => sum + getEventListeners(s, 'abort').length, 0);
        assert.equal(serverListeners, 0, "server: abort listeners left on the handlers' signals");
        for (const s of signals) assertReason(s.reason, 'ABORTED');
        t.diagnostic(`timers created during the burst and still armed: ${liveTimers}`);
        // The pending table has one shared timer for all deadlines (not one per request); it may stay armed until the first deadline.
        assert.ok(liveTimers <= 1, `${liveTimers} timers left armed after ${N} aborted requests`);
        // Still usable.
        pair.server.onMessage('echo', (data) => data);
        assert.equal(await pair.client.request('echo', 'after'), 'after');
      });

      test(`${N.toLocaleString('en')} requests sharing one signal: no listener accumulates while answered, and one abort cancels the rest`, T, async (t) => {
        const pair = await pairOf(kind, serialization, { heartbeat: false }, { heartbeat: false });
        t.after(() => pair.close());
        pair.server.onMessage('echo', (data) => data);
        const shared = new AbortController();
        // One signal for a whole batch is a legitimate pattern: one listener serves every request on it (no MaxListenersExceededWarning).
        const answers = await Promise.all(Array.from({ length: N }, (_, i) => pair.client.request('echo', i, { signal: shared.signal })));
        assert.equal(answers.length, N);
        assert.equal(getEventListeners(shared.signal, 'abort').length, 0, 'listeners left on a shared signal after its requests were answered');

        let entered = 0;
        pair.server.onMessage('park', async (_d, _p, context) => {
          entered++;
          await abortOf(context.signal);
        });
        const requests = Array.from({ length: 1_000 }, (_, i) => pair.client.request('park', i, { signal: shared.signal }).then(() => 'resolved', (err: IpcError) => err.code));
        await waitUntil(() => entered === 1_000, 10_000, 'handlers entered');
        assert.equal(getEventListeners(shared.signal, 'abort').length, 1, 'one listener for the 1,000 requests in flight');
        shared.abort();
        assert.ok((await Promise.all(requests)).every((code) => code === 'ABORTED'), 'every request rejected ABORTED');
        assert.equal(getEventListeners(shared.signal, 'abort').length, 0);
        await waitUntil(() => pair.server.getStats().metrics.requestsInFlight === 0, 5_000, 'server handlers cancelled');
      });

      test('nested requests that complete leave no cancellation hooks on the handler they were made in', T, async (t) => {
        const pair = await pairOf(kind, serialization, { heartbeat: false }, { heartbeat: false });
        t.after(() => pair.close());
        const b = await pair.addClient();
        b.onMessage('inner', (n: number) => n);
        let outerContext: IMessageContext | undefined;
        pair.server.onMessage('outer', async (_d, _p, context) => {
          outerContext = context;
          const results = await Promise.all(Array.from({ length: 2_000 }, (_, i) => pair.server.requestClient(b.getClientId(), 'inner', i)));
          // And some that are aborted by their own signal.
          const own = new AbortController();
          setMaxListeners(1_000, own.signal);
          const aborted = Array.from({ length: 500 }, (_, i) => pair.server.requestClient(b.getClientId(), 'inner', i, { signal: own.signal }).catch((err: IpcError) => err.code));
          own.abort();
          return { ok: results.length, aborted: (await Promise.all(aborted)).filter((c) => c === 'ABORTED').length };
        });
        assert.deepEqual(await pair.client.request('outer', null, { timeout: 20_000 }), { ok: 2_000, aborted: 500 });
        const hooks = (outerContext as unknown as { onAbortCallbacks?: Set<unknown> }).onAbortCallbacks;
        assert.equal(hooks?.size ?? 0, 0, 'cancellation callbacks of finished nested requests left on the outer context');
        assert.equal(serverConnectionOf(pair.server, b.getClientId())!.pendingRequests, 0);
      });
    });
  }
}

test('cancel delays measured in this run', (t) => {
  assert.ok(cancelDelays.length > 0, 'no cancel delay was measured');
  for (const line of cancelDelays) t.diagnostic(`cancel delay ${line}`);
});
