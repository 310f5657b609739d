// Errors are a stable API: one class, one code list, every failure coded. Table-driven: every code
// (class, name, cause, isIpcError, and the round trip over the wire), and every bad argument.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import {
  EFrameKind,
  IPC_ERROR_CODES,
  IpcConnection,
  IpcError,
  SmartIpc,
  FramedLink,
  createDuplexPair,
  Observer,
  isIpcError,
  type IConnectionHost,
  type TIpcErrorCode,
} from '../ts/internal.js';
import { createPair, expectIpcError, isInvalidArgument, uniqueSocketPath } from './helpers/fixtures.js';

/** Two connections over an in-memory Duplex pair: no socket, no handshake (the link is attached directly). */
function connectedPair(serverFeatures: (host: IConnectionHost) => Parameters<IpcConnection['use']>[0][] = () => []) {
  const [left, right] = createDuplexPair();
  const make = (stream: typeof left, peerId: string) => {
    const observer = new Observer(10, () => undefined);
    const connection = new IpcConnection({
      serialization: 'json',
      requestTimeoutMs: 5_000,
      handlers: new Map(),
      metrics: observer.counters,
      observer,
      outbox: { maxMessages: 0, maxBytes: 0 },
      owner: { onDisconnect: () => undefined, onHeartbeatTimeout: () => undefined, onError: () => undefined, onFrameError: () => undefined },
    });
    const link = new FramedLink(stream, { maxMessageSize: 1024 * 1024, description: `memory:${peerId}`, peer: { kind: 'unix' } });
    return { connection, link, peerId };
  };
  const a = make(left, 'b');
  const b = make(right, 'a');
  for (const feature of serverFeatures(b.connection)) b.connection.use(feature);
  for (const side of [a, b]) {
    side.link.setHandler(side.connection);
    side.connection.attach(side.link, side.peerId);
  }
  return { a: a.connection, b: b.connection, close: () => left.destroy() };
}

describe('IpcError', () => {
  test('the code list has no duplicates and contains every code the contract names', () => {
    assert.equal(new Set(IPC_ERROR_CODES).size, IPC_ERROR_CODES.length);
    for (const code of ['TIMEOUT', 'ABORTED', 'NOT_CONNECTED', 'CONNECTION_LOST', 'CLOSED', 'SERVER_UNAVAILABLE', 'REGISTER_TIMEOUT', 'ID_MISMATCH', 'NO_HANDLER', 'HANDLER_ERROR', 'MESSAGE_TOO_LARGE', 'PROTOCOL_ERROR', 'ADDRESS_IN_USE', 'CLIENT_NOT_FOUND', 'STREAM_CANCELLED', 'TOO_MANY_STREAMS', 'TOO_MANY_CLIENTS', 'AUTH_FAILED', 'RATE_LIMITED', 'FORBIDDEN', 'TLS_ERROR', 'INVALID_ARGUMENT', 'SERVICE_NOT_FOUND', 'METHOD_NOT_FOUND', 'MAX_DEPTH_EXCEEDED', 'CIRCUIT_OPEN']) {
      assert.ok((IPC_ERROR_CODES as readonly string[]).includes(code), code);
    }
  });

  for (const code of IPC_ERROR_CODES) {
    test(`${code}: class, name, code, cause and isIpcError`, () => {
      const cause = new Error('underneath');
      const error = new IpcError(code, `something about ${code}`, { cause });
      assert.ok(error instanceof IpcError);
      assert.ok(error instanceof Error);
      assert.equal(error.name, 'IpcError');
      assert.equal(error.code, code);
      assert.equal(error.message, `something about ${code}`);
      assert.equal(error.cause, cause);
      assert.ok(isIpcError(error));
      assert.ok(isIpcError(error, code));
      const other = IPC_ERROR_CODES.find((c) => c !== code)!;
      assert.equal(isIpcError(error, other), false);
      assert.ok(typeof error.stack === 'string' && error.stack.includes('IpcError'));
    });
  }

  test('isIpcError is false for look-alikes', () => {
    assert.equal(isIpcError(Object.assign(new Error('x'), { code: 'TIMEOUT' })), false);
    assert.equal(isIpcError({ code: 'TIMEOUT', message: 'x' }), false);
    assert.equal(isIpcError(undefined), false);
  });

  test('RATE_LIMITED carries retryAfterMs', () => {
    const error = new IpcError('RATE_LIMITED', 'slow down', { retryAfterMs: 250 });
    assert.equal(error.retryAfterMs, 250);
  });

  test('every code crosses the wire unchanged as an error answer (through a feature that claims the request)', async (t) => {
    const { a, close } = connectedPair((host) => [
      {
        frameKinds: [],
        onFrame: () => undefined,
        // A gateway-like feature: it takes every request no handler serves.
        claim: (frame, isRequest) => {
          if (!isRequest) return false;
          const code = frame.type as TIpcErrorCode;
          host.replyError(frame.id, new IpcError(code, `answered with ${code}`, { retryAfterMs: code === 'RATE_LIMITED' ? 99 : undefined }));
          return true;
        },
      },
    ]);
    t.after(close);
    for (const code of IPC_ERROR_CODES) {
      const error = await expectIpcError(a.request(EFrameKind.Request, code, { any: 'data' }), code);
      assert.equal(error.message, `answered with ${code}`);
      if (code === 'RATE_LIMITED') assert.equal(error.retryAfterMs, 99);
    }
  });

  test('a whole connection runs over an in-memory Duplex pair: requests both ways, messages, close', async (t) => {
    const { a, b, close } = connectedPair();
    t.after(close);
    const handlersA = (a as unknown as { config: { handlers: Map<string, unknown> } }).config.handlers;
    const handlersB = (b as unknown as { config: { handlers: Map<string, unknown> } }).config.handlers;
    handlersB.set('add', (data: { x: number; y: number }) => data.x + data.y);
    handlersA.set('whoami', (_data: unknown, peerId: string) => peerId);
    assert.equal(await a.request(EFrameKind.Request, 'add', { x: 2, y: 40 }), 42);
    assert.equal(await b.request(EFrameKind.Request, 'whoami'), 'b', 'a handler learns who sent: the peer of the connection it runs on');
    await expectIpcError(a.request(EFrameKind.Request, 'nobody'), 'NO_HANDLER');
    const closed = b.whenClosed();
    a.close('bye');
    await closed;
    assert.equal(a.isConnected, false);
    await expectIpcError(a.request(EFrameKind.Request, 'add', { x: 1, y: 1 }), 'NOT_CONNECTED');
  });

  test('a handler that throws: HANDLER_ERROR with the thrown error described in `remote` (its own code kept there)', async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    pair.server.onMessage('fail', () => {
      throw Object.assign(new RangeError('out of range'), { code: 'E_RANGE' });
    });
    pair.server.onMessage('fail-ipc', () => {
      throw new IpcError('FORBIDDEN', 'not for you');
    });
    const error = await expectIpcError(pair.client.request('fail'), 'HANDLER_ERROR');
    assert.equal(error.message, 'out of range');
    assert.deepEqual(error.remote, { name: 'RangeError', message: 'out of range', code: 'E_RANGE' });
    const ipc = await expectIpcError(pair.client.request('fail-ipc'), 'HANDLER_ERROR');
    assert.deepEqual(ipc.remote, { name: 'IpcError', message: 'not for you', code: 'FORBIDDEN' });
  });
});

describe('bad arguments are INVALID_ARGUMENT, thrown (or rejected) at once', () => {
  const socketPath = uniqueSocketPath('errors');
  const constructions: Array<[string, () => unknown]> = [
    ['createServer without options', () => SmartIpc.createServer(undefined as never)],
    ['createServer without an endpoint', () => SmartIpc.createServer({ id: 'x' } as never)],
    ['createServer with both endpoints', () => SmartIpc.createServer({ id: 'x', socketPath, port: 1 } as never)],
    ['createServer with an empty id', () => SmartIpc.createServer({ id: '', socketPath })],
    ['a port out of range', () => SmartIpc.createServer({ id: 'x', port: 70_000 })],
    ['maxMessageSize 0', () => SmartIpc.createServer({ id: 'x', socketPath, maxMessageSize: 0 })],
    ['maxClients 1.5', () => SmartIpc.createServer({ id: 'x', socketPath, maxClients: 1.5 })],
    ['socketMode 0o1777', () => SmartIpc.createServer({ id: 'x', socketPath, socketMode: 0o1777 })],
    ['serialization xml', () => SmartIpc.createClient({ id: 'x', socketPath, serialization: 'xml' as never })],
    ['heartbeatInterval a string', () => SmartIpc.createClient({ id: 'x', socketPath, heartbeatInterval: '5' as never })],
    ['heartbeatTimeout not above the interval', () => SmartIpc.createClient({ id: 'x', socketPath, heartbeatInterval: 1_000, heartbeatTimeout: 1_000 })],
    ['requestTimeout -1', () => SmartIpc.createClient({ id: 'x', socketPath, requestTimeout: -1 })],
    ['requestTimeout NaN', () => SmartIpc.createClient({ id: 'x', socketPath, requestTimeout: Number.NaN })],
    ['registerTimeoutMs 0', () => SmartIpc.createClient({ id: 'x', socketPath, registerTimeoutMs: 0 })],
    ['clientId empty', () => SmartIpc.createClient({ id: 'x', socketPath, clientId: '' })],
    ['metadata an array', () => SmartIpc.createClient({ id: 'x', socketPath, metadata: [] as never })],
    ['connectRetry.maxAttempts 0', () => SmartIpc.createClient({ id: 'x', socketPath, connectRetry: { maxAttempts: 0 } })],
    ['reconnect.enabled a string', () => SmartIpc.createClient({ id: 'x', socketPath, reconnect: { enabled: 'yes' as never } })],
    ['outbox.maxBytes -1', () => SmartIpc.createClient({ id: 'x', socketPath, outbox: { maxBytes: -1 } })],
    ['channel role other', () => SmartIpc.createChannel({ id: 'x', socketPath, role: 'other' as never })],
    ['channel requestTimeout -5', () => SmartIpc.createChannel({ id: 'x', socketPath, requestTimeout: -5 })],
    ['channel registerTimeoutMs "soon"', () => SmartIpc.createChannel({ id: 'x', socketPath, registerTimeoutMs: 'soon' as never })],
    ['tls on a socketPath', () => SmartIpc.createClient({ id: 'x', socketPath, tls: {} } as never)],
    ['onMessage with an empty type', () => SmartIpc.createServer({ id: 'x', socketPath }).onMessage('', () => 1)],
    ['onMessage with a reserved type', () => SmartIpc.createServer({ id: 'x', socketPath }).onMessage('$smartipc.stats', () => 1)],
    ['onMessage without a function', () => SmartIpc.createClient({ id: 'x', socketPath }).onMessage('a', 'nope' as never)],
  ];
  for (const [what, make] of constructions) {
    test(what, () => {
      assert.throws(make, isInvalidArgument);
    });
  }

  test('per call: request options, topics, patterns, streams, broadcastTo, stop, waitForServer, fork', async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    const { client, server } = pair;
    server.onMessage('echo', (d) => d);
    for (const options of [{ timeout: -1 }, { timeout: Number.NaN }, { timeout: '5' as never }, { signal: {} as never }, { headers: 'x' as never }, { propagate: 'no' as never }]) {
      await expectIpcError(client.request('echo', 1, options), 'INVALID_ARGUMENT');
    }
    await expectIpcError(client.request(42 as never), 'INVALID_ARGUMENT');
    await expectIpcError(client.sendMessage(undefined as never), 'INVALID_ARGUMENT');
    await expectIpcError(client.publish('a..b', 1), 'INVALID_ARGUMENT');
    await expectIpcError(client.publish('a.*', 1), 'INVALID_ARGUMENT');
    await expectIpcError(client.subscribe('a.>.b', () => undefined), 'INVALID_ARGUMENT');
    await expectIpcError(server.publish('', 1), 'INVALID_ARGUMENT');
    await expectIpcError(client.sendStream(Readable.from([Buffer.from('x')]), { chunkSize: 0 }), 'INVALID_ARGUMENT');
    await expectIpcError(client.sendStream(Readable.from([Buffer.from('x')]), { signal: 'x' as never }), 'INVALID_ARGUMENT');
    await expectIpcError(server.broadcastTo('someone' as never, 'x'), 'INVALID_ARGUMENT');
    await expectIpcError(server.stop({ graceMs: -1 }), 'INVALID_ARGUMENT');
    await expectIpcError(server.start({ readyWhen: 'soon' as never }), 'INVALID_ARGUMENT');
    await expectIpcError(SmartIpc.waitForServer({} as never), 'INVALID_ARGUMENT');
    await expectIpcError(SmartIpc.waitForServer({ socketPath: '/x', timeoutMs: -1 }), 'INVALID_ARGUMENT');
    await expectIpcError(SmartIpc.fork(''), 'INVALID_ARGUMENT');
    assert.equal(await client.request('echo', 'still fine'), 'still fine');
  });
});
