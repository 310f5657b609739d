// Who may connect: `auth: { tokens }` and `auth: { authenticate(info) }`. A refusal is AUTH_FAILED
// on the client's connect() (permanent: no retry, no reconnect loop), `authFailed` on the server,
// and no handler ever runs for a connection that was not admitted. Tokens of every shape a peer
// can send never crash the server. Real sockets on both transports.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EFrameKind, EPayloadEncoding, IpcError, SmartIpc, encodeFrame, type IAuthenticateInfo, type IFrame, type IRejectPayload, type IpcServer } from '../ts/internal.js';
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
  waitForClose,
  waitForEvent,
  waitUntil,
  watchConnections,
  withTimeout,
  type IStartedServer,
} from './helpers/fixtures.js';

const T = { timeout: 20_000 };
const TOKEN = 'the-right-token-0123456789';

/** Counts every handler run on a server (messages and requests alike). */
function countingHandlers(server: IpcServer): { runs: string[] } {
  const runs: string[] = [];
  for (const type of ['echo', 'secret', 'note']) {
    server.onMessage(type, (data: unknown) => {
      runs.push(type);
      return data;
    });
  }
  return { runs };
}

/** A request frame as a raw peer would send it. */
function requestFrame(id: number, type: string, data: unknown): Buffer {
  return encodeFrame({ kind: EFrameKind.Request, encoding: EPayloadEncoding.Json, id, type, payload: JSON.stringify(data) });
}

function messageFrame(type: string, data: unknown): Buffer {
  return encodeFrame({ kind: EFrameKind.Message, encoding: EPayloadEncoding.Json, id: 0, type, payload: JSON.stringify(data) });
}

/** What a raw peer got before the server closed its connection. */
async function rawExchange(started: Pick<IStartedServer, 'endpoint'>, bytes: Buffer): Promise<{ frames: IFrame[]; reject?: IRejectPayload }> {
  const socket = await rawConnect(started.endpoint);
  const frames = collectFrames(socket);
  const closed = waitForClose(socket, 8_000);
  socket.on('error', () => undefined);
  socket.write(bytes);
  await closed;
  const reject = frames.find((f) => f.kind === EFrameKind.Reject);
  return { frames, ...(reject ? { reject: JSON.parse(reject.payload.toString('utf8')) as IRejectPayload } : {}) };
}

for (const kind of TRANSPORTS) {
  describe(`auth tokens over ${kind}`, () => {
    test('the right token is admitted; a wrong or missing one is AUTH_FAILED on connect(), with authFailed on the server', T, async (t) => {
      const started = await startServer(kind, { auth: { tokens: ['another-token', TOKEN] } }, 'tokens');
      t.after(() => started.stop());
      const { runs } = countingHandlers(started.server);
      const failures: Array<[string, IpcError]> = [];
      started.server.on('authFailed', (clientId, reason) => failures.push([clientId, reason]));

      const good = makeClient(started, { authToken: TOKEN });
      t.after(() => good.disconnect());
      await good.connect();
      assert.equal(await good.request('echo', 'in'), 'in');
      const second = makeClient(started, { authToken: 'another-token' });
      t.after(() => second.disconnect());
      await second.connect();

      const wrong = makeClient(started, { authToken: 'the-wrong-token', clientId: uniqueId('wrong') });
      t.after(() => wrong.disconnect());
      const err = await expectIpcError(wrong.connect(), 'AUTH_FAILED');
      assert.equal(wrong.getIsConnected(), false);
      assert.doesNotMatch(err.message, new RegExp(TOKEN), 'the refusal does not echo an accepted token');
      const missing = makeClient(started, { clientId: uniqueId('missing') });
      t.after(() => missing.disconnect());
      await expectIpcError(missing.connect(), 'AUTH_FAILED');

      await waitUntil(() => failures.length === 2, 2_000, 'two authFailed events');
      assert.deepEqual(failures.map(([id]) => id), [wrong.getClientId(), missing.getClientId()]);
      for (const [, reason] of failures) {
        assert.ok(reason instanceof IpcError);
        assert.equal(reason.code, 'AUTH_FAILED');
      }
      assert.deepEqual(started.server.getClientIds().sort(), [good.getClientId(), second.getClientId()].sort());
      assert.deepEqual(runs, ['echo'], 'only the admitted client reached a handler');
      assert.equal(await good.request('echo', 'still'), 'still');
    });

    test('tokens of every shape: near misses, long, binary-ish, empty and non-strings are refused without a crash', { timeout: 40_000 }, async (t) => {
      const started = await startServer(kind, { auth: { tokens: [TOKEN] } }, 'shapes');
      t.after(() => started.stop());
      const { runs } = countingHandlers(started.server);
      let authFailed = 0;
      const messageErrors: IpcError[] = [];
      started.server.on('authFailed', () => authFailed++);
      started.server.on('messageError', (error) => messageErrors.push(error));
      const good = makeClient(started, { authToken: TOKEN });
      t.after(() => good.disconnect());
      await good.connect();
      const lost: IpcError[] = [];
      good.on('disconnect', (reason) => lost.push(reason));

      // Through a real client: AUTH_FAILED for each.
      const viaClient: Array<[string, string]> = [
        ['a prefix', TOKEN.slice(0, -1)],
        ['one character more', `${TOKEN}x`],
        ['same length, last character differs', `${TOKEN.slice(0, -1)}X`],
        ['other case', TOKEN.toUpperCase()],
        ['trailing newline', `${TOKEN}\n`],
        ['leading space', ` ${TOKEN}`],
        ['one character', 'x'],
        ['10 KiB', 'k'.repeat(10 * 1024)],
        ['control characters and NUL', `\u0000\u0001\u001f${TOKEN}\u0000`],
        ['lone surrogates and non-characters', '\ud800\udfff\uffff\ufffe'],
        ['emoji and combining marks', 'e\u0301\u{1f600}\u{10ffff}'],
        ['the right token, NFD-normalised differently', `${TOKEN}e\u0301`],
        ['JSON-looking', '{"token":true}'],
      ];
      for (const [name, token] of viaClient) {
        const client = makeClient(started, { authToken: token });
        try {
          await expectIpcError(client.connect(), 'AUTH_FAILED', 5_000);
        } catch (err) {
          throw new Error(`token "${name}": ${(err as Error).message}`);
        } finally {
          await client.disconnect();
        }
      }
      assert.equal(authFailed, viaClient.length);

      // Raw HELLOs the client would never send: an empty token is AUTH_FAILED (a REJECT), a token
      // that is not a string is a malformed HELLO (PROTOCOL_ERROR, closed).
      const empty = await rawExchange(started, helloFrame({ serverId: started.id, token: '' }));
      assert.equal(empty.reject?.code, 'AUTH_FAILED');
      // (null too: a HELLO either has a string token or none.)
      for (const token of [42, { a: 1 }, ['x'], true, null]) {
        const before = messageErrors.length;
        const answer = await rawExchange(started, helloFrame({ serverId: started.id, token: token as unknown as string }));
        assert.equal(answer.reject, undefined, `token ${JSON.stringify(token)}: no REJECT, the HELLO is malformed`);
        await waitUntil(() => messageErrors.length === before + 1, 2_000, `messageError for token ${JSON.stringify(token)}`);
        assert.equal(messageErrors.at(-1)?.code, 'PROTOCOL_ERROR');
      }
      // A token so long that its HELLO is over the handshake frame limit (16 KiB) is cut off
      // before it is buffered: MESSAGE_TOO_LARGE on the server, the connection closed.
      const before = messageErrors.length;
      const huge = makeClient(started, { authToken: 'h'.repeat(1024 * 1024) });
      t.after(() => huge.disconnect());
      const hugeError = await withTimeout(huge.connect().then(() => undefined, (err: unknown) => err as IpcError), 5_000, 'huge token connect');
      t.diagnostic(`1 MiB token: client connect() rejected with ${hugeError?.code}`);
      assert.equal(hugeError?.code, 'CONNECTION_LOST');
      // The server never reads the frame, so the client names the likely reason itself.
      assert.match(hugeError?.message ?? "", /HELLO is \d+ bytes, over the 16384 bytes .* handshakeMaxFrameBytes/);
      assert.notEqual(huge.getIsConnected(), true);
      await waitUntil(() => messageErrors.length === before + 1, 2_000, 'messageError for the huge HELLO');
      assert.equal(messageErrors.at(-1)?.code, 'MESSAGE_TOO_LARGE');

      // Nothing of that reached a handler or disturbed the admitted client.
      assert.deepEqual(runs, []);
      assert.equal(await good.request('echo', 'ok'), 'ok');
      assert.deepEqual(lost, []);
      assert.deepEqual(started.server.getClientIds(), [good.getClientId()]);
      assert.equal(started.server.getIsRunning(), true);
    });

    test('a refused peer reaches no handler: frames sent behind a wrong HELLO are never dispatched', T, async (t) => {
      const started = await startServer(kind, { auth: { tokens: [TOKEN] } }, 'behind');
      t.after(() => started.stop());
      const { runs } = countingHandlers(started.server);
      await started.server.provide('svc', {
        method: () => {
          runs.push('svc.method');
          return 1;
        },
      });
      const watcher = makeClient(started, { authToken: TOKEN });
      t.after(() => watcher.disconnect());
      await watcher.connect();
      const published: string[] = [];
      await watcher.subscribe('>', (_data, info) => {
        published.push(info.topic);
      });
      const burst = Buffer.concat([
        helloFrame({ serverId: started.id, token: 'wrong' }),
        requestFrame(1, 'secret', 1),
        messageFrame('note', 2),
        requestFrame(2, 'echo', 3),
        encodeFrame({ kind: EFrameKind.Publish, encoding: EPayloadEncoding.Json, id: 0, type: 'news.leak', payload: '1' }),
        encodeFrame({ kind: EFrameKind.Subscribe, encoding: EPayloadEncoding.None, id: 3, type: '>' }),
        encodeFrame({ kind: EFrameKind.Call, encoding: EPayloadEncoding.Json, id: 4, type: 'svc\u0000method', payload: '1' }),
        encodeFrame({ kind: EFrameKind.PeerMessage, encoding: EPayloadEncoding.Json, id: 0, type: `${watcher.getClientId()}\u0000note`, payload: '1' }),
      ]);
      let watcherGot = 0;
      watcher.onMessage('note', () => {
        watcherGot++;
      });
      const { frames, reject } = await rawExchange(started, burst);
      assert.equal(reject?.code, 'AUTH_FAILED');
      assert.deepEqual(frames.map((f) => f.kind), [EFrameKind.Reject], 'nothing but the REJECT was answered');
      // A round trip of the watcher: anything forwarded to it would have arrived before this answer.
      assert.equal(await watcher.request('echo', 'barrier'), 'barrier');
      assert.deepEqual(runs, ['echo']);
      assert.deepEqual(published, []);
      assert.equal(watcherGot, 0);
      assert.equal(started.server.getStats().pubsub.published, 0);
    });

    test('a slow authenticate that refuses: frames sent while it decides are never dispatched', T, async (t) => {
      const started = await startServer(kind, {
        auth: { authenticate: () => new Promise((resolve) => setTimeout(() => resolve(false), 200).unref()) },
      }, 'slowno');
      t.after(() => started.stop());
      const { runs } = countingHandlers(started.server);
      const socket = await rawConnect(started.endpoint);
      t.after(() => socket.destroy());
      const frames = collectFrames(socket);
      const closed = waitForClose(socket, 5_000);
      socket.write(helloFrame({ serverId: started.id }));
      // While authenticate runs: requests and messages, in separate writes.
      for (let i = 0; i < 5; i++) {
        socket.write(Buffer.concat([requestFrame(i + 1, 'secret', i), messageFrame('note', i)]));
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await closed;
      assert.deepEqual(frames.map((f) => f.kind), [EFrameKind.Reject]);
      assert.equal((JSON.parse(frames[0].payload.toString()) as IRejectPayload).code, 'AUTH_FAILED');
      assert.deepEqual(runs, []);
    });

    test('frames a peer sends after HELLO and before WELCOME are never dispatched: an admissible peer is then refused with PROTOCOL_ERROR', T, async (t) => {
      const started = await startServer(kind, {
        auth: { tokens: [TOKEN], authenticate: () => new Promise((resolve) => setTimeout(() => resolve(true), 100).unref()) },
      }, 'early');
      t.after(() => started.stop());
      const { runs } = countingHandlers(started.server);
      const errors: IpcError[] = [];
      started.server.on('messageError', (err) => errors.push(err));
      const { frames, reject } = await rawExchange(started, Buffer.concat([helloFrame({ serverId: started.id, token: TOKEN }), requestFrame(1, 'secret', 'early')]));
      assert.equal(reject?.code, 'PROTOCOL_ERROR');
      assert.match(String(reject?.message), /1 frame\(s\) before its handshake was answered/);
      assert.deepEqual(frames.map((f) => f.kind), [EFrameKind.Reject], 'no WELCOME, no answer to the early request');
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.deepEqual(runs, []);
      assert.deepEqual(started.server.getClientIds(), []);
      assert.deepEqual(errors.map((e) => e.code), ['PROTOCOL_ERROR']);
      // A peer that waits for the WELCOME is served.
      const client = makeClient(started, { authToken: TOKEN });
      t.after(() => client.disconnect());
      await client.connect();
      assert.equal(await client.request('echo', 'late'), 'late');
    });

    test('more than 16 frames before WELCOME close the connection (PROTOCOL_ERROR) before any handler runs', T, async (t) => {
      const started = await startServer(kind, {
        auth: { authenticate: () => new Promise((resolve) => setTimeout(() => resolve(true), 100).unref()) },
      }, 'flood');
      t.after(() => started.stop());
      const { runs } = countingHandlers(started.server);
      const burst = Buffer.concat([helloFrame({ serverId: started.id }), ...Array.from({ length: 40 }, (_, i) => requestFrame(i + 1, 'secret', i))]);
      const { frames } = await rawExchange(started, burst);
      assert.equal(frames.find((f) => f.kind === EFrameKind.Response), undefined);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual(runs, []);
      assert.deepEqual(started.server.getClientIds(), []);
    });
  });

  describe(`authenticate(info) over ${kind}`, () => {
    test('info carries clientId, metadata, token and transport; true admits', T, async (t) => {
      const seen: IAuthenticateInfo[] = [];
      const started = await startServer(kind, {
        auth: {
          authenticate: (info) => {
            seen.push(info);
            return info.metadata.role === 'admin';
          },
        },
      }, 'info');
      t.after(() => started.stop());
      const client = makeClient(started, { clientId: uniqueId('admin'), metadata: { role: 'admin', n: 1 }, authToken: 'tok-1' });
      t.after(() => client.disconnect());
      await client.connect();
      assert.equal(seen.length, 1);
      assert.deepEqual(seen[0], { clientId: client.getClientId(), metadata: { role: 'admin', n: 1 }, token: 'tok-1', transport: kind });
      const other = makeClient(started, { metadata: { role: 'guest' } });
      t.after(() => other.disconnect());
      await expectIpcError(other.connect(), 'AUTH_FAILED');
      assert.equal(seen.length, 2);
      assert.equal('token' in seen[1], false, 'no token key when the client has none');
    });

    test('sync and async answers: true, {} and { permissions } admit; false, a throw, a rejection and non-answers refuse', { timeout: 30_000 }, async (t) => {
      type TAnswer = (info: IAuthenticateInfo) => unknown;
      const cases: Array<{ name: string; answer: TAnswer; admitted: boolean }> = [
        { name: 'sync true', answer: () => true, admitted: true },
        { name: 'async true', answer: async () => true, admitted: true },
        { name: 'an empty object', answer: () => ({}), admitted: true },
        { name: 'async { permissions }', answer: async () => ({ permissions: { request: ['echo'] } }), admitted: true },
        { name: 'sync false', answer: () => false, admitted: false },
        { name: 'async false', answer: async () => false, admitted: false },
        { name: 'a sync throw', answer: () => { throw new Error('auth backend down'); }, admitted: false },
        { name: 'a rejection', answer: () => Promise.reject(new Error('auth backend down')), admitted: false },
        { name: 'a thrown non-Error', answer: () => { throw 'just a string'; }, admitted: false },
        { name: 'undefined', answer: () => undefined, admitted: false },
        { name: 'null', answer: () => null, admitted: false },
        { name: 'a truthy non-true', answer: () => 1, admitted: false },
        { name: 'the string "true"', answer: () => 'true', admitted: false },
        { name: 'invalid permissions', answer: () => ({ permissions: { request: ['a..b'] } }), admitted: false },
        { name: 'permissions not an object', answer: () => ({ permissions: 'all' }), admitted: false },
      ];
      let current: TAnswer = () => true;
      const started = await startServer(kind, { auth: { authenticate: (info) => current(info) as boolean } }, 'answers');
      t.after(() => started.stop());
      const { runs } = countingHandlers(started.server);
      let authFailed = 0;
      started.server.on('authFailed', () => authFailed++);
      let refused = 0;
      for (const c of cases) {
        current = c.answer;
        const client = makeClient(started);
        try {
          if (c.admitted) {
            await client.connect();
            assert.equal(await client.request('echo', c.name), c.name, c.name);
          } else {
            refused++;
            await expectIpcError(client.connect(), 'AUTH_FAILED', 5_000);
            assert.equal(authFailed, refused, `authFailed for ${c.name}`);
          }
        } catch (err) {
          throw new Error(`${c.name}: ${(err as Error).message}`);
        } finally {
          await client.disconnect();
        }
      }
      assert.equal(runs.length, cases.filter((c) => c.admitted).length);
      assert.equal(started.server.getIsRunning(), true);
    });

    test('an authenticate slower than handshakeTimeoutMs refuses with AUTH_FAILED in time; its late "true" admits nobody', T, async (t) => {
      let answered = 0;
      const started = await startServer(kind, {
        handshakeTimeoutMs: 300,
        auth: {
          authenticate: () => new Promise((resolve) => setTimeout(() => {
            answered++;
            resolve(true);
          }, 1_000).unref()),
        },
      }, 'slowauth');
      t.after(() => started.stop());
      const connects: string[] = [];
      started.server.on('clientConnect', (clientId) => connects.push(clientId));
      const failed = waitForEvent<[string, IpcError]>(started.server, 'authFailed', 3_000);
      const client = makeClient(started, { registerTimeoutMs: 5_000 });
      t.after(() => client.disconnect());
      const t0 = performance.now();
      await expectIpcError(client.connect(), 'AUTH_FAILED');
      const ms = performance.now() - t0;
      t.diagnostic(`refused after ${ms.toFixed(0)} ms (handshakeTimeoutMs 300, authenticate takes 1000)`);
      assert.ok(ms >= 250 && ms < 900, `refused after ${ms.toFixed(0)} ms`);
      const [clientId, reason] = await failed;
      assert.equal(clientId, client.getClientId());
      assert.equal(reason.code, 'AUTH_FAILED');
      await waitUntil(() => answered === 1, 3_000, 'the slow authenticate to answer');
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(connects, []);
      assert.deepEqual(started.server.getClientIds(), []);
    });

    test('tokens and authenticate together: the token is checked first, authenticate only sees holders of a right one', T, async (t) => {
      const asked: string[] = [];
      const started = await startServer(kind, {
        auth: {
          tokens: [TOKEN],
          authenticate: (info) => {
            asked.push(info.clientId);
            return info.metadata.ok === true;
          },
        },
      }, 'both');
      t.after(() => started.stop());
      const noToken = makeClient(started, { metadata: { ok: true } });
      const wrongToken = makeClient(started, { metadata: { ok: true }, authToken: 'nope' });
      const saysNo = makeClient(started, { metadata: { ok: false }, authToken: TOKEN });
      const good = makeClient(started, { metadata: { ok: true }, authToken: TOKEN });
      t.after(() => Promise.all([noToken, wrongToken, saysNo, good].map((c) => c.disconnect())));
      await expectIpcError(noToken.connect(), 'AUTH_FAILED');
      await expectIpcError(wrongToken.connect(), 'AUTH_FAILED');
      await expectIpcError(saysNo.connect(), 'AUTH_FAILED');
      await good.connect();
      assert.deepEqual(asked, [saysNo.getClientId(), good.getClientId()]);
    });
  });

  describe(`AUTH_FAILED is permanent over ${kind}`, () => {
    test('connect() with connectRetry or waitForReady dials once and does not retry', T, async (t) => {
      const started = await startServer(kind, { auth: { tokens: [TOKEN] } }, 'noretry');
      t.after(() => started.stop());
      const watch = watchConnections(started.endpoint);
      t.after(() => watch.dispose());
      const retrying = makeClient(started, { authToken: 'wrong', connectRetry: { enabled: true, maxAttempts: 10, initialDelay: 20, maxDelay: 50, totalTimeout: 5_000 } });
      t.after(() => retrying.disconnect());
      await expectIpcError(retrying.connect(), 'AUTH_FAILED');
      const waiting = makeClient(started, { authToken: 'wrong' });
      t.after(() => waiting.disconnect());
      await expectIpcError(waiting.connect({ waitForReady: true, waitTimeout: 3_000 }), 'AUTH_FAILED');
      await new Promise((resolve) => setTimeout(resolve, 400));
      t.diagnostic(`dials accepted by the server: ${watch.accepted} (two clients)`);
      assert.equal(watch.accepted, 2, 'one dial per client');
      assert.deepEqual(watch.failedDials, []);
    });

    test('a client whose server comes back requiring a token stops reconnecting after one AUTH_FAILED', T, async (t) => {
      // The same endpoint across the restart: the same socket path, or the same TCP port.
      const endpointOverride = kind === 'unix' ? { socketPath: uniqueSocketPath('reauth') } : {};
      const first = await startServer(kind, endpointOverride, 'reauth');
      const sameEndpoint = kind === 'unix' ? endpointOverride : { port: (first.endpoint as { port: number }).port };
      const client = makeClient(first, { reconnect: { enabled: true, initialDelay: 20, maxDelay: 50 } });
      t.after(() => client.disconnect());
      await client.connect();
      const errors: IpcError[] = [];
      const reconnecting: number[] = [];
      client.on('error', (error) => errors.push(error));
      client.on('reconnecting', (attempt) => reconnecting.push(attempt));
      const dropped = waitForEvent(client, 'disconnect');
      await first.stop();
      await dropped;
      // Watching from before the restart: the new server's own readiness probe is one accepted connection.
      const watch = watchConnections(kind === 'unix' ? (sameEndpoint as { socketPath: string }) : { host: '127.0.0.1', port: (sameEndpoint as { port: number }).port });
      t.after(() => watch.dispose());
      const second = await startServer(kind, { ...sameEndpoint, id: first.id, auth: { tokens: [TOKEN] } }, 'reauth');
      t.after(() => second.stop());
      let authFailed = 0;
      second.server.on('authFailed', () => authFailed++);
      await waitUntil(() => errors.length > 0, 5_000, 'the client to report why it gave up');
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const dials = watch.accepted - 1;
      t.diagnostic(`reconnect attempts ${reconnecting.length} (${watch.failedDials.length} while no server), dials accepted by the token server ${dials}, authFailed ${authFailed}`);
      assert.equal(errors[0].code, 'AUTH_FAILED');
      assert.equal(dials, 1, 'one dial to the token server, none after its AUTH_FAILED');
      assert.equal(authFailed, 1);
      assert.equal(client.getIsConnected(), false);
      await expectIpcError(client.request('echo', 1, { timeout: 1_000 }), 'NOT_CONNECTED');
    });
  });
}

describe('auth options', () => {
  test('invalid auth options are INVALID_ARGUMENT at construction', () => {
    const bad: unknown[] = [null, 'token', {}, { tokens: [] }, { tokens: [''] }, { tokens: 'x' }, { tokens: [1] }, { authenticate: 'yes' }];
    for (const auth of bad) {
      assert.throws(
        () => startServerSync({ auth }),
        (err: unknown) => err instanceof IpcError && err.code === 'INVALID_ARGUMENT',
        `auth ${JSON.stringify(auth)}`,
      );
    }
    assert.throws(() => makeClient({ id: 'x', endpoint: { socketPath: uniqueSocketPath('opt') } }, { authToken: '' }), (err: unknown) => err instanceof IpcError && err.code === 'INVALID_ARGUMENT');
  });

  test('a server without auth admits a client that sends a token anyway', T, async (t) => {
    const pair = await createPair('unix', { client: { authToken: 'unused' } });
    t.after(() => pair.close());
    pair.server.onMessage('echo', (data: unknown) => data);
    assert.equal(await pair.client.request('echo', 1), 1);
  });
});

function startServerSync(options: Record<string, unknown>): void {
  // Construction alone validates; nothing is bound.
  SmartIpc.createServer({ id: 'opts', socketPath: uniqueSocketPath('opts'), ...options } as never);
}
