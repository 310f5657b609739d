// What a peer can make the server hold: a frame before the handshake (a few KiB at most), frames
// that never finish (a deadline and a server-wide budget), connections that never speak (a
// deadline and a cap). Each defect measured against the old build is reproduced here with the
// limits lifted, then shown bounded with the defaults. Real sockets; memory measured on a server
// in its own process.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type * as net from 'node:net';
import { EFrameKind, EPayloadEncoding, IpcError, SmartIpc, defaults, encodeFrame, pendingHandshakesOf, serverConnectionOf, type IFrame } from '../ts/internal.js';
import {
  TRANSPORTS,
  collectFrames,
  helloFrame,
  makeClient,
  rawConnect,
  spawnChildServer,
  startServer,
  uniqueId,
  uniqueSocketPath,
  waitForClose,
  waitForEvent,
  waitUntil,
  withTimeout,
  type IChildServer,
  type TClientEndpoint,
} from './helpers/fixtures.js';

const T = { timeout: 30_000 };
const MiB = 1024 * 1024;

function prefix(length: number): Buffer {
  const buf = Buffer.alloc(4);
  buf.writeUInt32BE(length);
  return buf;
}

function requestFrame(id: number, type: string, data: unknown): Buffer {
  return encodeFrame({ kind: EFrameKind.Request, encoding: EPayloadEncoding.Json, id, type, payload: JSON.stringify(data) });
}

/** A raw peer that completed a proper handshake (HELLO answered by WELCOME). */
async function rawAdmitted(endpoint: TClientEndpoint, serverId: string): Promise<{ socket: net.Socket; frames: IFrame[]; clientId: string }> {
  const socket = await rawConnect(endpoint);
  socket.on('error', () => undefined);
  const frames = collectFrames(socket);
  const clientId = uniqueId('raw');
  socket.write(helloFrame({ serverId, clientId }));
  await waitUntil(() => frames.some((f) => f.kind === EFrameKind.Welcome), 3_000, 'WELCOME');
  return { socket, frames, clientId };
}

/** A server in a child process, with a way to ask for its RSS. */
async function childServer(options: Record<string, unknown>): Promise<IChildServer & { endpoint: TClientEndpoint; id: string; rss(): Promise<number> }> {
  const id = uniqueId('memsrv');
  const socketPath = uniqueSocketPath('memsrv');
  const child = await spawnChildServer('security-server.ts', [JSON.stringify({ id, socketPath, ...options })]);
  const rss = () =>
    withTimeout(
      new Promise<number>((resolve) => {
        const onMessage = (message: { rss?: number }) => {
          if (typeof message?.rss !== 'number') return;
          child.child.off('message', onMessage);
          resolve(message.rss);
        };
        child.child.on('message', onMessage);
        child.child.send({ rss: true });
      }),
      5_000,
      'child rss',
    );
  return { ...child, endpoint: { socketPath }, id, rss };
}

interface IPartialFlood {
  /** ms from the write to the close, per connection closed within the window (undefined: still open). */
  closedAfterMs: Array<number | undefined>;
  /** The largest RSS growth of the server seen during the window, bytes. */
  peakGrowth: number;
  /** A legitimate client's connect + first request during the flood, ms, and how it ended ('served' or a code). */
  legitimateMs: number;
  legitimate: string;
}

/**
 * 64 raw connections each send the prefix of an almost-8-MiB frame and all of it but 100 bytes,
 * before any handshake. Watches for `windowMs` how many the server closes and what its RSS does,
 * while a legitimate client connects and makes a request.
 */
async function partialFrameFlood(server: Awaited<ReturnType<typeof childServer>>, connections: number, windowMs: number): Promise<IPartialFlood> {
  const length = defaults.DEFAULT_MAX_MESSAGE_SIZE_BYTES - 16;
  const body = Buffer.alloc(length - 100, 0x61);
  const baseline = await server.rss();
  const sockets = await Promise.all(Array.from({ length: connections }, () => rawConnect(server.endpoint)));
  const closedAfterMs: Array<number | undefined> = new Array(connections).fill(undefined);
  const t0 = performance.now();
  sockets.forEach((socket, i) => {
    socket.on('error', () => undefined);
    socket.once('close', () => (closedAfterMs[i] = performance.now() - t0));
    socket.write(prefix(length));
    socket.write(body);
  });
  const legitimate = (async () => {
    const started = performance.now();
    const client = makeClient({ id: server.id, endpoint: server.endpoint }, { registerTimeoutMs: 5_000 });
    let outcome = 'served';
    try {
      await client.connect();
      assert.equal(await client.request('echo', 'served', { timeout: 5_000 }), 'served');
    } catch (err) {
      outcome = (err as IpcError).code ?? String(err);
    } finally {
      await client.disconnect();
    }
    return { ms: performance.now() - started, outcome };
  })();
  let peak = baseline;
  const deadline = t0 + windowMs;
  while (performance.now() < deadline) {
    peak = Math.max(peak, await server.rss());
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const { ms: legitimateMs, outcome } = await withTimeout(legitimate, 10_000, 'legitimate client');
  const snapshot = [...closedAfterMs];
  for (const socket of sockets) socket.destroy();
  return { closedAfterMs: snapshot, peakGrowth: peak - baseline, legitimateMs, legitimate: outcome };
}

function summary(flood: IPartialFlood): string {
  const closed = flood.closedAfterMs.filter((ms): ms is number => ms !== undefined);
  const slowest = closed.length ? Math.max(...closed).toFixed(0) : '-';
  return `${closed.length}/${flood.closedAfterMs.length} closed (last after ${slowest} ms), server RSS +${(flood.peakGrowth / MiB).toFixed(1)} MiB, legitimate client ${flood.legitimate} in ${flood.legitimateMs.toFixed(0)} ms`;
}

describe('security limits: defaults and options', () => {
  test('the documented defaults', () => {
    const server = SmartIpc.createServer({ id: uniqueId('defaults'), socketPath: uniqueSocketPath('defaults') });
    const security = server.options.security;
    assert.equal(security.handshakeTimeoutMs, 5_000);
    assert.equal(security.maxPendingHandshakes, 64);
    assert.equal(security.handshakeMaxFrameBytes, 16 * 1024);
    assert.equal(security.frameTimeoutMs, 10_000);
    assert.equal(security.maxPartialFrameBytes, 256 * MiB);
    assert.equal(server.options.maxJsonDepth, 1_000);
    assert.equal(security.rateLimit, undefined);
    assert.equal(security.authenticator, undefined);
    assert.equal(security.permissions, undefined);
    // registerTimeoutMs alone still sets the handshake deadline (the older name).
    const older = SmartIpc.createServer({ id: uniqueId('defaults'), socketPath: uniqueSocketPath('defaults'), registerTimeoutMs: 1_234 });
    assert.equal(older.options.security.handshakeTimeoutMs, 1_234);
  });

  test('bad values are INVALID_ARGUMENT at construction', () => {
    const bad: Array<Record<string, unknown>> = [
      { handshakeTimeoutMs: 0 },
      { handshakeTimeoutMs: -1 },
      { maxPendingHandshakes: -1 },
      { maxPendingHandshakes: 1.5 },
      { handshakeMaxFrameBytes: 'big' },
      { frameTimeoutMs: 0 },
      { maxPartialFrameBytes: -5 },
      { maxJsonDepth: Number.NaN },
      { rateLimit: { messagesPerSecond: 0 } },
      { rateLimit: { messagesPerSecond: Infinity } },
      { rateLimit: { messagesPerSecond: 10, burst: 0.5 } },
      { rateLimit: 5 },
    ];
    for (const options of bad) {
      assert.throws(
        () => SmartIpc.createServer({ id: 'bad', socketPath: uniqueSocketPath('bad'), ...options } as never),
        (err: unknown) => err instanceof IpcError && err.code === 'INVALID_ARGUMENT',
        JSON.stringify(options),
      );
    }
  });
});

describe('memory before the handshake', () => {
  test('reproduced with the limits lifted: 64 almost-8-MiB partial frames make the server hold hundreds of MiB', { timeout: 60_000 }, async (t) => {
    // What the old build did: the pre-handshake frame limit was maxMessageSize, no budget, no cap
    // on pending handshakes (with the cap the 64 would hold every slot: see the todo below).
    const server = await childServer({ handshakeMaxFrameBytes: 8 * MiB, maxPartialFrameBytes: 4096 * MiB, maxPendingHandshakes: 1_000 });
    t.after(() => server.kill());
    const flood = await partialFrameFlood(server, 64, 1_500);
    t.diagnostic(`limits lifted: ${summary(flood)}`);
    assert.ok(flood.peakGrowth > 256 * MiB, `RSS grew ${(flood.peakGrowth / MiB).toFixed(0)} MiB`);
    assert.equal(flood.closedAfterMs.filter((ms) => ms !== undefined).length, 0, 'nothing closed them within 1.5 s');
    assert.equal(flood.legitimate, 'served');
  });

  test('with the defaults: each is closed at once (frame over the handshake limit), RSS growth is small, a legitimate client is served', { timeout: 60_000 }, async (t) => {
    const server = await childServer({});
    t.after(() => server.kill());
    const flood = await partialFrameFlood(server, 64, 1_500);
    t.diagnostic(`defaults (handshakeMaxFrameBytes ${defaults.DEFAULT_HANDSHAKE_MAX_FRAME_BYTES}): ${summary(flood)}`);
    const closed = flood.closedAfterMs.filter((ms): ms is number => ms !== undefined);
    assert.equal(closed.length, 64);
    assert.ok(Math.max(...closed) < 1_000, `the last one closed after ${Math.max(...closed).toFixed(0)} ms`);
    assert.ok(flood.peakGrowth < 64 * MiB, `RSS grew ${(flood.peakGrowth / MiB).toFixed(1)} MiB`);
    assert.equal(flood.legitimate, 'served');
    assert.ok(flood.legitimateMs < 1_000, `legitimate client took ${flood.legitimateMs.toFixed(0)} ms`);
  });

  test('the server-wide budget alone (handshake limit lifted) caps what they hold at maxPartialFrameBytes', { timeout: 60_000 }, async (t) => {
    const server = await childServer({ handshakeMaxFrameBytes: 8 * MiB, maxPartialFrameBytes: 128 * MiB, maxPendingHandshakes: 1_000 });
    t.after(() => server.kill());
    const flood = await partialFrameFlood(server, 64, 1_500);
    t.diagnostic(`budget 128 MiB, handshake limit lifted: ${summary(flood)}`);
    const closed = flood.closedAfterMs.filter((ms) => ms !== undefined).length;
    assert.ok(closed >= 40, `${closed} closed by the budget`);
    assert.ok(flood.peakGrowth < 128 * MiB + 96 * MiB, `RSS grew ${(flood.peakGrowth / MiB).toFixed(0)} MiB`);
    assert.equal(flood.legitimate, 'served');
  });

  for (const kind of TRANSPORTS) {
    test(`over ${kind}: a frame over handshakeMaxFrameBytes before the HELLO is MESSAGE_TOO_LARGE at its prefix; one at the limit is read`, T, async (t) => {
      const started = await startServer(kind, { handshakeMaxFrameBytes: 4096 }, 'hslimit');
      t.after(() => started.stop());
      const errors: IpcError[] = [];
      started.server.on('messageError', (error) => errors.push(error));
      const over = await rawConnect(started.endpoint);
      t.after(() => over.destroy());
      const closed = waitForClose(over, 2_000);
      over.write(prefix(4097));
      await closed;
      await waitUntil(() => errors.length === 1, 2_000, 'messageError');
      assert.equal(errors[0].code, 'MESSAGE_TOO_LARGE');
      // A HELLO padded to exactly the limit is a HELLO.
      const clientId = uniqueId('padded');
      const padded = (pad: number) => helloFrame({ serverId: started.id, clientId, metadata: { pad: 'p'.repeat(pad) } });
      const base = padded(0).length - 4;
      const atLimit = padded(4096 - base);
      assert.equal(atLimit.length - 4, 4096);
      const socket = await rawConnect(started.endpoint);
      t.after(() => socket.destroy());
      const frames = collectFrames(socket);
      socket.write(atLimit);
      await waitUntil(() => frames.some((f) => f.kind === EFrameKind.Welcome), 2_000, 'WELCOME for a HELLO at the limit');
      // Once admitted, the full maxMessageSize applies.
      socket.write(requestFrame(1, 'big', 'x'.repeat(64 * 1024)));
      started.server.onMessage('big', (data: string) => data.length);
      await waitUntil(() => frames.some((f) => f.kind === EFrameKind.Response || f.kind === EFrameKind.ErrorResponse), 2_000, 'the answer to a 64 KiB request');
      assert.equal(frames.at(-1)?.kind, EFrameKind.Response);
    });
  }
});

describe('connections that never speak', () => {
  test('500 silent connections: those beyond maxPendingHandshakes (64) are closed at once, the rest at handshakeTimeoutMs; established clients are unaffected', { timeout: 40_000 }, async (t) => {
    const started = await startServer('unix', { handshakeTimeoutMs: 2_000 }, 'silent');
    t.after(() => started.stop());
    started.server.onMessage('echo', (data: unknown) => data);
    const established = makeClient(started);
    t.after(() => established.disconnect());
    await established.connect();
    const lost: IpcError[] = [];
    established.on('disconnect', (reason) => lost.push(reason));

    const t0 = performance.now();
    const sockets = await Promise.all(Array.from({ length: 500 }, () => rawConnect(started.endpoint)));
    t.after(() => sockets.forEach((s) => s.destroy()));
    const closedAt: Array<number | undefined> = new Array(500).fill(undefined);
    sockets.forEach((socket, i) => {
      socket.on('error', () => undefined);
      socket.resume(); // reads what the server says (a REJECT for those it closes), so the close is seen
      socket.once('close', () => (closedAt[i] = performance.now() - t0));
    });
    const closedCount = () => closedAt.filter((ms) => ms !== undefined).length;
    await waitUntil(() => closedCount() >= 436, 3_000, 'the connections beyond the cap to be closed');
    const refusedIn = Math.max(...closedAt.filter((ms): ms is number => ms !== undefined));
    // Established clients go on meanwhile.
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => established.request('echo', i)));
    assert.deepEqual(answers, Array.from({ length: 50 }, (_, i) => i));
    assert.equal(pendingHandshakesOf(started.server), 64);
    assert.equal(closedCount(), 436, 'exactly those beyond the cap');
    t.diagnostic(`500 silent: ${closedCount()} refused at once (the last within ${refusedIn.toFixed(0)} ms), ${pendingHandshakesOf(started.server)} held (maxPendingHandshakes ${defaults.DEFAULT_MAX_PENDING_HANDSHAKES})`);
    await waitUntil(() => closedCount() === 500, 4_000, 'the handshake timeout to close the rest');
    const last = Math.max(...(closedAt as number[]));
    t.diagnostic(`the other 64 closed by handshakeTimeoutMs 2000 after ${last.toFixed(0)} ms`);
    assert.ok(last >= 1_900 && last < 3_500, `closed after ${last.toFixed(0)} ms`);
    assert.equal(pendingHandshakesOf(started.server), 0);
    assert.deepEqual(lost, []);
    assert.equal(await established.request('echo', 'after'), 'after');
  });

  test('150 connections accepted at once whose HELLOs come 50 ms later (more than maxPendingHandshakes) are all welcomed', { timeout: 30_000 }, async (t) => {
    const started = await startServer('unix', {}, 'burst');
    t.after(() => started.stop());
    // All accepted before any HELLO is read, as under a burst of clients starting together.
    const sockets = await Promise.all(Array.from({ length: 150 }, () => rawConnect(started.endpoint)));
    t.after(() => sockets.forEach((s) => s.destroy()));
    const frames = sockets.map((socket) => {
      socket.on('error', () => undefined);
      return collectFrames(socket);
    });
    await waitUntil(() => pendingHandshakesOf(started.server) === 150, 3_000, 'all 150 pending');
    await new Promise((resolve) => setTimeout(resolve, 50));
    sockets.forEach((socket, i) => socket.write(helloFrame({ serverId: started.id, clientId: `burst-${i}` })));
    await waitUntil(() => frames.every((f) => f.length > 0), 5_000, 'an answer on every connection');
    const kinds = frames.map((f) => f[0].kind);
    assert.equal(kinds.filter((k) => k === EFrameKind.Welcome).length, 150, `answers: ${kinds.join(',')}`);
    assert.equal(started.server.getClientIds().length, 150);
  });

  test('the pending handshake closed to make room is told why: REJECT SERVER_UNAVAILABLE (a client retries it)', { timeout: 20_000 }, async (t) => {
    const started = await startServer('unix', { maxPendingHandshakes: 2 }, 'evict');
    t.after(() => started.stop());
    started.server.onMessage('echo', (data: unknown) => data);
    const oldest = await rawConnect(started.endpoint);
    t.after(() => oldest.destroy());
    oldest.on('error', () => undefined);
    const oldestFrames = collectFrames(oldest);
    const oldestClosed = waitForClose(oldest, 5_000);
    await waitUntil(() => pendingHandshakesOf(started.server) === 1, 2_000, 'the first pending handshake');
    const others = await Promise.all([rawConnect(started.endpoint), rawConnect(started.endpoint)]);
    t.after(() => others.forEach((s) => s.destroy()));
    await oldestClosed;
    assert.deepEqual(oldestFrames.map((f) => f.kind), [EFrameKind.Reject]);
    const body = JSON.parse(oldestFrames[0].payload.toString('utf8')) as { code: string; message: string };
    assert.equal(body.code, 'SERVER_UNAVAILABLE');
    assert.match(body.message, /busy: more than 2 connections were waiting/);
    assert.equal(pendingHandshakesOf(started.server), 2);
    // Two silent connections hold both places: a client connecting now evicts the older one and is served.
    const client = makeClient(started);
    t.after(() => client.disconnect());
    await client.connect();
    assert.equal(await client.request('echo', 'in'), 'in');
  });

  test('a legitimate client connecting while 500 silent connections are held is served within a second', { timeout: 40_000 }, async (t) => {
    const started = await startServer('unix', {}, 'silentlegit');
    t.after(() => started.stop());
    started.server.onMessage('echo', (data: unknown) => data);
    const sockets = await Promise.all(Array.from({ length: 500 }, () => rawConnect(started.endpoint)));
    t.after(() => sockets.forEach((s) => s.destroy()));
    let closed = 0;
    for (const socket of sockets) {
      socket.on('error', () => undefined);
      socket.resume();
      socket.once('close', () => closed++);
    }
    await waitUntil(() => closed >= 436, 3_000, 'the connections beyond the cap to be closed');
    const client = makeClient(started);
    t.after(() => client.disconnect());
    const t0 = performance.now();
    let outcome = 'served';
    try {
      await client.connect();
      assert.equal(await client.request('echo', 'legit'), 'legit');
    } catch (err) {
      outcome = (err as IpcError).code ?? String(err);
    }
    const ms = performance.now() - t0;
    t.diagnostic(`legitimate client beside 500 silent connections (${closed} refused): ${outcome} after ${ms.toFixed(0)} ms`);
    if (outcome !== 'served') {
      // How long a client that retries waits: until handshakeTimeoutMs closes the silent ones.
      const retrying = makeClient(started, { connectRetry: { enabled: true, initialDelay: 50, maxDelay: 200, maxAttempts: 100, totalTimeout: 15_000 } });
      t.after(() => retrying.disconnect());
      const r0 = performance.now();
      await retrying.connect();
      assert.equal(await retrying.request('echo', 'legit'), 'legit');
      t.diagnostic(`a legitimate client with connectRetry was served after ${(performance.now() - r0).toFixed(0)} ms (handshakeTimeoutMs ${defaults.DEFAULT_HANDSHAKE_TIMEOUT_MS})`);
    }
    assert.equal(outcome, 'served');
    assert.ok(ms < 1_000, `${ms.toFixed(0)} ms`);
  });

  test('below the cap (63 silent), a legitimate client connects and is served at once', T, async (t) => {
    const started = await startServer('unix', {}, 'silent63');
    t.after(() => started.stop());
    started.server.onMessage('echo', (data: unknown) => data);
    const sockets = await Promise.all(Array.from({ length: 63 }, () => rawConnect(started.endpoint)));
    t.after(() => sockets.forEach((s) => s.destroy()));
    for (const socket of sockets) socket.on('error', () => undefined);
    await waitUntil(() => pendingHandshakesOf(started.server) === 63, 3_000, '63 pending handshakes');
    const t0 = performance.now();
    const client = makeClient(started);
    t.after(() => client.disconnect());
    await client.connect();
    assert.equal(await client.request('echo', 'legit'), 'legit');
    const ms = performance.now() - t0;
    t.diagnostic(`legitimate client beside 63 silent connections: served in ${ms.toFixed(1)} ms`);
    assert.ok(ms < 1_000);
    assert.equal(sockets.filter((s) => s.destroyed).length, 0);
  });

  test('handshakeTimeoutMs does not touch an established client that stays silent', T, async (t) => {
    const started = await startServer('unix', { handshakeTimeoutMs: 200, heartbeat: false }, 'hsidle');
    t.after(() => started.stop());
    started.server.onMessage('echo', (data: unknown) => data);
    const client = makeClient(started, { heartbeat: false });
    t.after(() => client.disconnect());
    await client.connect();
    const lost: IpcError[] = [];
    client.on('disconnect', (reason) => lost.push(reason));
    await new Promise((resolve) => setTimeout(resolve, 800));
    assert.deepEqual(lost, []);
    assert.equal(await client.request('echo', 1), 1);
  });
});

for (const kind of TRANSPORTS) {
  describe(`partial frames after the handshake over ${kind}`, () => {
    test('a frame arriving a byte at a time is closed within frameTimeoutMs (+ the 1 s sweep); the server goes on', T, async (t) => {
      const started = await startServer(kind, { frameTimeoutMs: 1_000 }, 'trickle');
      t.after(() => started.stop());
      started.server.onMessage('echo', (data: unknown) => data);
      const good = makeClient(started);
      t.after(() => good.disconnect());
      await good.connect();
      const peer = await rawAdmitted(started.endpoint, started.id);
      t.after(() => peer.socket.destroy());
      const gone = waitForEvent<[string, IpcError]>(started.server, 'clientDisconnect', 5_000);
      const frame = requestFrame(1, 'echo', 'x'.repeat(200));
      const t0 = performance.now();
      let sent = 0;
      const trickle = setInterval(() => {
        if (peer.socket.destroyed || sent >= frame.length) return;
        peer.socket.write(frame.subarray(sent, sent + 1));
        sent++;
      }, 20);
      t.after(() => clearInterval(trickle));
      const served: number[] = [];
      const traffic = (async () => {
        while (!peer.socket.destroyed && performance.now() - t0 < 4_000) {
          served.push(await good.request('echo', served.length));
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      })();
      const [clientId, reason] = await gone;
      const ms = performance.now() - t0;
      await waitForClose(peer.socket, 2_000);
      clearInterval(trickle);
      await traffic;
      t.diagnostic(`byte-at-a-time frame: closed after ${ms.toFixed(0)} ms (${sent} of ${frame.length} bytes sent), frameTimeoutMs 1000; the good client made ${served.length} requests meanwhile`);
      assert.equal(clientId, peer.clientId);
      assert.equal(reason.code, 'PROTOCOL_ERROR');
      assert.ok(ms >= 950 && ms < 2_300, `closed after ${ms.toFixed(0)} ms`);
      assert.ok(served.length >= 5);
      assert.equal(await good.request('echo', 'after'), 'after');
      assert.equal(started.server.getClientIds().includes(good.getClientId()), true);
    });

    test('a frame that stops half way is closed within frameTimeoutMs (+ the sweep)', T, async (t) => {
      const started = await startServer(kind, { frameTimeoutMs: 500 }, 'halfway');
      t.after(() => started.stop());
      const peer = await rawAdmitted(started.endpoint, started.id);
      t.after(() => peer.socket.destroy());
      const frame = requestFrame(1, 'echo', 'y'.repeat(100_000));
      const closed = waitForClose(peer.socket, 5_000);
      const t0 = performance.now();
      peer.socket.write(frame.subarray(0, frame.length >> 1));
      await closed;
      const ms = performance.now() - t0;
      t.diagnostic(`half a 100 KB frame: closed after ${ms.toFixed(0)} ms (frameTimeoutMs 500, sweep every ${Math.min(1000, 500)} ms)`);
      assert.ok(ms >= 450 && ms < 1_800, `closed after ${ms.toFixed(0)} ms`);
    });

    test('frames arriving back to back, none ending where a write ends, are each timed on their own', T, async (t) => {
      // Found by the reliability suite: the clock of the first incomplete frame used to run on
      // until a chunk happened to end on a frame boundary, so a steady stream of large messages was
      // cut after frameTimeoutMs although every frame took a few ms.
      const started = await startServer(kind, { frameTimeoutMs: 500 }, 'backtoback');
      t.after(() => started.stop());
      started.server.onMessage('echo', (data: unknown) => data);
      const peer = await rawAdmitted(started.endpoint, started.id);
      t.after(() => peer.socket.destroy());
      const frames = Array.from({ length: 16 }, (_, i) => requestFrame(i + 1, 'echo', 'z'.repeat(10_000)));
      const stream = Buffer.concat(frames);
      // Each write ends in the middle of a frame; 100 ms between writes: 1.6 s in all, 3x frameTimeoutMs.
      const cuts = frames.map((_, i) => Math.min(stream.length, Math.round(((i + 1.5) * stream.length) / frames.length)));
      let from = 0;
      for (const cut of cuts) {
        if (cut > from) peer.socket.write(stream.subarray(from, cut));
        from = cut;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await waitUntil(() => peer.frames.filter((f) => f.kind === EFrameKind.Response).length === frames.length || peer.socket.destroyed, 3_000, 'all answers');
      assert.equal(peer.socket.destroyed, false, 'the connection was cut');
      assert.equal(peer.frames.filter((f) => f.kind === EFrameKind.Response).length, frames.length);
    });

    test('time the server itself was blocked is not held against a frame in progress', T, async (t) => {
      const started = await startServer(kind, { frameTimeoutMs: 500 }, 'blocked');
      t.after(() => started.stop());
      started.server.onMessage('echo', (data: unknown) => data);
      const peer = await rawAdmitted(started.endpoint, started.id);
      t.after(() => peer.socket.destroy());
      const frame = requestFrame(1, 'echo', 'w'.repeat(100_000));
      peer.socket.write(frame.subarray(0, frame.length >> 1));
      const link = () => serverConnectionOf(started.server, peer.clientId)?.currentLink;
      await waitUntil(() => (link()?.partialFrameBytes ?? 0) > 0, 3_000, 'the server to hold half the frame');
      // This process (the server's) does nothing for 1.5 s: 3x frameTimeoutMs.
      const blockedUntil = Date.now() + 1_500;
      while (Date.now() < blockedUntil) {
        // busy: no timer, no socket read runs meanwhile
      }
      peer.socket.write(frame.subarray(frame.length >> 1));
      await waitUntil(() => peer.frames.some((f) => f.id === 1) || peer.socket.destroyed, 3_000, 'the answer');
      assert.equal(peer.socket.destroyed, false, 'the peer was blamed for the server being blocked');
      assert.equal(peer.frames.find((f) => f.id === 1)?.kind, EFrameKind.Response);
    });

    test('reproduced with the deadline lifted: the byte-at-a-time peer is still connected after 3 s', T, async (t) => {
      // What the old build did: only the heartbeat (15 s + 5 s grace) would drop it.
      const started = await startServer(kind, { frameTimeoutMs: 60_000 }, 'trickleold');
      t.after(() => started.stop());
      const peer = await rawAdmitted(started.endpoint, started.id);
      t.after(() => peer.socket.destroy());
      const frame = requestFrame(1, 'echo', 'x'.repeat(200));
      for (let i = 0; i < 30; i++) {
        peer.socket.write(frame.subarray(i, i + 1));
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.equal(peer.socket.destroyed, false);
      assert.ok(started.server.getClientIds().includes(peer.clientId));
      const link = serverConnectionOf(started.server, peer.clientId)?.currentLink;
      assert.equal(link?.partialFrameBytes, 30);
    });

    test('the server-wide partial budget closes the connection that goes over it, not the others', T, async (t) => {
      const BUDGET = 3 * MiB;
      const started = await startServer(kind, { maxPartialFrameBytes: BUDGET }, 'budget');
      t.after(() => started.stop());
      started.server.onMessage('len', (data: string) => data.length);
      const a = await rawAdmitted(started.endpoint, started.id);
      const b = await rawAdmitted(started.endpoint, started.id);
      t.after(() => {
        a.socket.destroy();
        b.socket.destroy();
      });
      const frameA = requestFrame(1, 'len', 'a'.repeat(2 * MiB));
      const frameB = requestFrame(2, 'len', 'b'.repeat(2 * MiB));
      const heldBy = (clientId: string) => serverConnectionOf(started.server, clientId)?.currentLink?.partialFrameBytes ?? -1;
      const SPLIT = 1536 * 1024;
      a.socket.write(frameA.subarray(0, SPLIT));
      await waitUntil(() => heldBy(a.clientId) === SPLIT, 3_000, 'A to hold 1.5 MiB');
      const bGone = waitForEvent<[string, IpcError]>(started.server, 'clientDisconnect', 3_000);
      const bClosed = waitForClose(b.socket, 3_000);
      b.socket.write(frameB.subarray(0, SPLIT + 64 * 1024));
      const [clientId, reason] = await bGone;
      await bClosed;
      t.diagnostic(`budget ${BUDGET} bytes: A holds ${heldBy(a.clientId)} bytes, B closed with ${reason.code} when it went over`);
      assert.equal(clientId, b.clientId);
      assert.equal(reason.code, 'PROTOCOL_ERROR');
      assert.equal(a.socket.destroyed, false);
      // A finishes its frame and is served; B's share of the budget was given back.
      a.socket.write(frameA.subarray(SPLIT));
      await waitUntil(() => a.frames.some((f) => f.id === 1), 3_000, "A's answer");
      const answer = a.frames.find((f) => f.id === 1)!;
      assert.equal(answer.kind, EFrameKind.Response);
      assert.equal(JSON.parse(answer.payload.toString()), 2 * MiB);
      // All of it is free again: a new peer holds 2.5 MiB of a frame, then completes it.
      const c = await rawAdmitted(started.endpoint, started.id);
      t.after(() => c.socket.destroy());
      const frameC = requestFrame(3, 'len', 'c'.repeat(2.75 * MiB));
      c.socket.write(frameC.subarray(0, 2.5 * MiB));
      await waitUntil(() => heldBy(c.clientId) === 2.5 * MiB, 3_000, 'C to hold 2.5 MiB');
      c.socket.write(frameC.subarray(2.5 * MiB));
      await waitUntil(() => c.frames.some((f) => f.id === 3), 3_000, "C's answer");
      assert.equal(c.frames.find((f) => f.id === 3)?.kind, EFrameKind.Response);
    });
  });
}

