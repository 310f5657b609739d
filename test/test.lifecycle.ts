// Starting, stopping and cleaning up: the socket file goes away, no handle or timer of the library
// outlives a session (async_hooks sees unref'd timers too), a graceful stop lets running handlers
// finish, and a process that used the library exits by itself.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHook } from 'node:async_hooks';
import * as childProcess from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { IpcError, SmartIpc } from '../ts/index.js';
import {
  HELPERS_DIR,
  TRANSPORTS,
  createPair,
  expectIpcError,
  makeClient,
  rawConnect,
  startServer,
  uniqueId,
  uniqueSocketPath,
  waitForClose,
  waitForEvent,
  watchConnections,
  withTimeout,
  type TClientEndpoint,
} from './helpers/fixtures.js';

const T = { timeout: 20_000 };

/** Handle and timer types a leak would show up as. */
const TRACKED_TYPES = new Set(['Timeout', 'TCPWRAP', 'TCPSERVERWRAP', 'PIPEWRAP', 'PIPESERVERWRAP', 'TLSWRAP']);

/**
 * Records every tracked resource created while enabled and drops it when destroyed, so what is
 * left at the end was created by the code under test and never closed (unref'd timers included,
 * which process.getActiveResourcesInfo() does not list).
 */
function trackResources() {
  const live = new Map<number, { type: string; stack: string }>();
  const hook = createHook({
    init(asyncId, type) {
      if (TRACKED_TYPES.has(type)) live.set(asyncId, { type, stack: new Error().stack ?? '' });
    },
    destroy(asyncId) {
      live.delete(asyncId);
    },
  });
  hook.enable();
  return {
    /** Lets pending closes and destroy hooks run, then reports what is still alive. */
    async leftovers(): Promise<Array<{ type: string; stack: string }>> {
      await new Promise((resolve) => setTimeout(resolve, 50));
      for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
      hook.disable();
      return [...live.values()];
    },
  };
}

function countByType(list: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const type of list) counts[type] = (counts[type] ?? 0) + 1;
  return counts;
}

function describeLeaks(leaks: Array<{ type: string; stack: string }>): string {
  return leaks.map((l) => `${l.type}\n${l.stack.split('\n').filter((line) => line.includes('/ts/')).slice(0, 4).join('\n')}`).join('\n---\n');
}

for (const kind of TRANSPORTS) {
  describe(`lifecycle over ${kind}`, () => {
    test('after disconnect and stop nothing of the library is left: no handle, no timer, no socket file', T, async () => {
      const activeBefore = countByType(process.getActiveResourcesInfo());
      const tracker = trackResources();
      const pair = await createPair(kind, {
        server: { heartbeatInterval: 50, heartbeatTimeout: 300 },
        client: { heartbeatInterval: 50, heartbeatTimeout: 300, requestTimeout: 5_000, reconnect: { enabled: true } },
      });
      const second = await pair.addClient({ reconnect: { enabled: false } });
      pair.server.onMessage('echo', (data: unknown) => data);
      // Handlers wait on a gate, not a timer of their own, so every timer seen here is the library's.
      let release!: (value: string) => void;
      const gate = new Promise<string>((resolve) => (release = resolve));
      pair.server.onMessage('slow', () => gate);
      pair.client.onMessage('echo', (data: unknown) => data);
      assert.equal(await pair.client.request('echo', 1), 1);
      assert.equal(await pair.server.requestClient(pair.client.getClientId(), 'echo', 2), 2);
      await expectIpcError(pair.client.request('slow', 1, { timeout: 10 }), 'TIMEOUT');
      await expectIpcError(pair.client.request('slow', 1, { signal: AbortSignal.timeout(10) }), 'ABORTED');
      await expectIpcError(pair.client.request('none'), 'NO_HANDLER');
      // Let a few heartbeats pass so their timers are really running.
      await new Promise((resolve) => setTimeout(resolve, 120));
      const pendingAtClose = expectIpcError(second.request('slow', 1, { timeout: 5_000 }), 'CONNECTION_LOST');
      await second.disconnect();
      await pendingAtClose;
      release('slow');
      await pair.close();
      if ('socketPath' in pair.endpoint) assert.equal(fs.existsSync(pair.endpoint.socketPath), false, 'socket file removed');
      const leaks = await tracker.leftovers();
      assert.deepEqual(leaks.map((l) => l.type), [], `left behind:\n${describeLeaks(leaks)}`);
      // Nothing new keeps the loop alive (handles of earlier tests may still be closing: fewer is fine).
      const activeAfter = countByType(process.getActiveResourcesInfo());
      for (const [type, count] of Object.entries(activeAfter)) {
        assert.ok(count <= (activeBefore[type] ?? 0), `${count} active ${type} now, ${activeBefore[type] ?? 0} before`);
      }
    });

    test('a client with reconnect on leaves nothing behind when disconnected while reconnecting', T, async () => {
      const tracker = trackResources();
      const started = await startServer(kind);
      const client = makeClient(started, { reconnect: { enabled: true, initialDelay: 50, maxDelay: 100 } });
      await client.connect();
      const reconnecting = waitForEvent(client, 'reconnecting');
      await started.stop();
      await reconnecting;
      // Sends wait in the outbox meanwhile; disconnect fails them.
      const held = expectIpcError(client.request('x', 1), 'NOT_CONNECTED');
      await client.disconnect();
      await held;
      const leaks = await tracker.leftovers();
      assert.deepEqual(leaks.map((l) => l.type), [], `left behind:\n${describeLeaks(leaks)}`);
    });

    test('failed connects leave nothing behind (no server, retries, register timeout)', T, async (t) => {
      const tracker = trackResources();
      const none = kind === 'unix' ? { socketPath: uniqueSocketPath('none') } : { host: '127.0.0.1', port: 1 };
      const noServer = SmartIpc.createClient({ ...none, id: uniqueId('none'), clientOnly: true, connectRetry: { enabled: true, initialDelay: 5, maxDelay: 10, maxAttempts: 3 } });
      await expectIpcError(noServer.connect(), 'SERVER_UNAVAILABLE');
      await noServer.disconnect();
      // A server that never answers the handshake.
      const net = await import('node:net');
      const sockets = new Set<import('node:net').Socket>();
      const silent = net.createServer((s) => {
        sockets.add(s);
        s.on('error', () => undefined);
      });
      const listenOn = kind === 'unix' ? { path: uniqueSocketPath('silent') } : { host: '127.0.0.1', port: 0 };
      await new Promise<void>((resolve) => silent.listen(listenOn, resolve));
      const address = silent.address();
      const endpoint: TClientEndpoint = typeof address === 'string' ? { socketPath: address } : { host: '127.0.0.1', port: address!.port };
      const hung = SmartIpc.createClient({ ...endpoint, id: uniqueId('silent'), clientOnly: true, registerTimeoutMs: 100 } as Parameters<typeof SmartIpc.createClient>[0]);
      await expectIpcError(hung.connect(), 'REGISTER_TIMEOUT');
      await hung.disconnect();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
      const leaks = await tracker.leftovers();
      assert.deepEqual(leaks.map((l) => l.type), [], `left behind:\n${describeLeaks(leaks)}`);
      t.diagnostic('no leftovers after failed connects');
    });

    test('stop() lets a running handler finish within graceMs; the client gets its answer, then a clean disconnect', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      let finished = false;
      let entered!: () => void;
      const handlerEntered = new Promise<void>((resolve) => (entered = resolve));
      pair.server.onMessage('work', async () => {
        entered();
        await new Promise((resolve) => setTimeout(resolve, 300));
        finished = true;
        return 'done';
      });
      const answer = pair.client.request('work', undefined, { timeout: 10_000 });
      const lost = waitForEvent<[IpcError]>(pair.client, 'disconnect', 10_000);
      await handlerEntered;
      const stopped = pair.server.stop({ graceMs: 5_000 });
      assert.equal(await answer, 'done');
      assert.equal(finished, true);
      const [reason] = await lost;
      await withTimeout(stopped, 5_000, 'stop');
      assert.ok(reason instanceof IpcError);
      assert.equal(reason.code, 'CONNECTION_LOST');
      assert.equal(reason.cause, undefined, 'a goodbye, not a socket error');
      assert.equal(pair.server.getIsReady(), false);
      assert.equal(pair.server.getStats().isRunning, false);
      if ('socketPath' in pair.endpoint) assert.equal(fs.existsSync(pair.endpoint.socketPath), false);
    });

    test('stop() does not wait past graceMs for a handler that never finishes', T, async (t) => {
      const pair = await createPair(kind);
      t.after(() => pair.close());
      let entered!: () => void;
      const handlerEntered = new Promise<void>((resolve) => (entered = resolve));
      pair.server.onMessage('forever', () => {
        entered();
        return new Promise(() => undefined);
      });
      const request = expectIpcError(pair.client.request('forever', undefined, { timeout: 30_000 }), 'CONNECTION_LOST');
      await handlerEntered;
      const begun = performance.now();
      await withTimeout(pair.server.stop({ graceMs: 200 }), 5_000, 'stop');
      const took = performance.now() - begun;
      assert.ok(took >= 150, `stop waited ${took} ms for the handler`);
      await request;
    });

    test('stop() is quick when idle, even with a connection that never finished its handshake', T, async (t) => {
      const started = await startServer(kind);
      t.after(() => started.stop());
      const raw = await rawConnect(started.endpoint);
      t.after(() => raw.destroy());
      const client = makeClient(started);
      t.after(() => client.disconnect());
      await client.connect();
      const lost = waitForEvent(client, 'disconnect');
      const stopEvent = waitForEvent(started.server, 'stop');
      const begun = performance.now();
      await withTimeout(started.server.stop(), 3_000, 'stop with default graceMs');
      assert.ok(performance.now() - begun < 2_000);
      await lost;
      await stopEvent;
      await waitForClose(raw);
    });

    test('a stopped server can start again on the same endpoint', T, async (t) => {
      const started = await startServer(kind);
      t.after(() => started.stop());
      started.server.onMessage('n', () => 'again');
      await started.server.stop();
      assert.equal(started.server.getIsReady(), false);
      // TCP: the same port number if it is still free, else a fresh one.
      await started.server.start();
      assert.equal(started.server.getIsReady(), true);
      const client = SmartIpc.createClient({ ...(kind === 'unix' ? started.endpoint : { host: '127.0.0.1', port: (started.server.getAddress() as { port: number }).port }), id: started.id, clientOnly: true } as Parameters<typeof SmartIpc.createClient>[0]);
      t.after(() => client.disconnect());
      await client.connect();
      assert.equal(await client.request('n'), 'again');
    });

    test('start and stop emit start, ready and stop; stop twice is harmless', T, async (t) => {
      const endpoint = kind === 'unix' ? { socketPath: uniqueSocketPath('events') } : { host: '127.0.0.1', port: 0 };
      const server = SmartIpc.createServer({ ...endpoint, id: uniqueId('events') } as Parameters<typeof SmartIpc.createServer>[0]);
      t.after(() => server.stop({ graceMs: 0 }));
      const events: string[] = [];
      for (const name of ['start', 'ready', 'stop'] as const) server.on(name, () => events.push(name));
      assert.equal(server.getIsReady(), false);
      await server.start();
      assert.equal(server.getIsReady(), true);
      await Promise.all([server.stop(), server.stop()]);
      await server.stop();
      assert.deepEqual(events, ['start', 'ready', 'stop']);
    });
  });
}

describe('lifecycle of the socket file', () => {
  test('socketMode sets the file mode; stop removes the file', T, async () => {
    const started = await startServer('unix', { socketMode: 0o600 });
    const socketPath = (started.endpoint as { socketPath: string }).socketPath;
    assert.equal(fs.statSync(socketPath).mode & 0o777, 0o600);
    await started.server.stop();
    assert.equal(fs.existsSync(socketPath), false);
  });

  test('readyWhen listening resolves once bound and makes no readiness probe; accepting (the default) makes exactly one', T, async (t) => {
    const cases: Array<[readyWhen: 'listening' | 'accepting' | undefined, probes: number]> = [['listening', 0], ['accepting', 1], [undefined, 1]];
    for (const [readyWhen, probes] of cases) {
      const socketPath = uniqueSocketPath('listening');
      const connections = watchConnections({ socketPath });
      t.after(() => connections.dispose());
      const server = SmartIpc.createServer({ id: uniqueId('listening'), socketPath });
      t.after(() => server.stop({ graceMs: 0 }));
      await server.start(readyWhen ? { readyWhen } : {});
      assert.ok(fs.existsSync(socketPath));
      assert.equal(server.getIsReady(), true);
      // A fence: connections are accepted in order, so once this client is registered any probe
      // made by start() has been accepted (and counted) before it.
      const client = makeClient({ id: server.options.id, endpoint: { socketPath } });
      t.after(() => client.disconnect());
      await client.connect();
      assert.equal(connections.accepted - 1, probes, `readyWhen ${String(readyWhen)}: ${connections.accepted - 1} probe connection(s), expected ${probes}`);
      await client.disconnect();
    }
  });
});

describe('process exit', () => {
  test('a process that used server and clients exits by itself afterwards', { timeout: 30_000 }, async (t) => {
    const socketPath = uniqueSocketPath('exit');
    t.after(() => fs.rmSync(socketPath, { force: true }));
    const child = childProcess.fork(path.join(HELPERS_DIR, 'child.lifecycle.ts'), [socketPath], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let done = false;
    child.on('message', (message) => {
      if ((message as { done?: boolean }).done) done = true;
    });
    const [code, signal] = await withTimeout(
      new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('exit', (c, s) => resolve([c, s]))),
      20_000,
      'child exit (something keeps its event loop alive)',
    );
    assert.equal(done, true, 'the session ran to its end');
    assert.equal(signal, null);
    assert.equal(code, 0);
    assert.equal(fs.existsSync(socketPath), false);
  });
});
