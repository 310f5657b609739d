// The NATS bridge against a real nats-server: requests and messages across two bridges, load
// spread over two exposing hosts, no responders, oversize, pub/sub both ways, server-to-client
// messages, close() draining, and the optional NATS client dependency.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as childProcess from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SmartIpc, type IpcClient, type IpcServer, type IPublishInfo } from '../ts/index.js';
import { NatsBridge } from '../ts/nats/index.js';
import { expectIpcError, uniqueId, waitUntil, withTimeout } from './helpers/fixtures.js';
import { NatsScene, natsServerForFile } from './helpers/nats-fixtures.js';

const nats = natsServerForFile();

const scene = nats.scene;

/** A local client of an exposed server (the subscriber on the far side of the bridge). */
async function localClient(s: NatsScene, server: IpcServer): Promise<IpcClient> {
  const address = server.getAddress() as { socketPath: string };
  const client = SmartIpc.createClient({ id: server.options.id, socketPath: address.socketPath, clientOnly: true, heartbeat: false, reconnect: { enabled: false } });
  await client.connect();
  s.onClose(() => client.disconnect());
  return client;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('requests and messages cross two bridges: result, HANDLER_ERROR with remote, headers, the caller\'s clientId', { timeout: 20_000 }, async (t) => {
  const s = scene(t);
  const [callerBridge, hostBridge] = [await s.bridge(), await s.bridge()];
  const server = await s.server();
  const notes: unknown[] = [];
  server.onMessage('echo', (data) => data);
  server.onMessage('headers', (_data, clientId, context) => ({ ...context.headers, peerId: clientId, contextPeerId: context.peerId }));
  server.onMessage('boom', () => {
    const error = new Error('it broke') as Error & { code: string };
    error.code = 'E_BROKE';
    throw error;
  });
  server.onMessage('note', (data) => {
    notes.push(data);
  });
  await hostBridge.expose(server);
  const client = await s.client(callerBridge, { id: server.options.id, clientId: 'caller-1' });

  assert.deepEqual(await client.request('echo', { n: 1, s: 'ü', list: [1, 2] }), { n: 1, s: 'ü', list: [1, 2] });
  assert.equal(await client.request('echo'), undefined);
  const headers = await client.request<unknown, Record<string, unknown>>('headers', null, { headers: { trace: 'abc' } });
  assert.equal(headers.trace, 'abc');
  assert.equal(headers.peerId, 'caller-1', 'the NATS caller is the handler\'s peerId');
  assert.equal(headers.contextPeerId, 'caller-1');
  const error = await expectIpcError(client.request('boom'), 'HANDLER_ERROR');
  assert.equal(error.message, 'it broke');
  assert.deepEqual(error.remote, { name: 'Error', message: 'it broke', code: 'E_BROKE' });
  for (let i = 0; i < 50; i++) await client.sendMessage('note', i);
  await waitUntil(() => notes.length === 50, 5_000, '50 messages');
  assert.deepEqual(notes, Array.from({ length: 50 }, (_, i) => i), 'messages from one sender arrive in order');
  // Many concurrent requests.
  const results = await Promise.all(Array.from({ length: 500 }, (_, i) => client.request('echo', i)));
  assert.deepEqual(results, Array.from({ length: 500 }, (_, i) => i));
  assert.equal(client.getStats().metrics.requestsInFlight, 0);
});

test('a message handler on an exposed server that throws or rejects is an error event on the hosting bridge; a message nobody handles is dropped', { timeout: 20_000 }, async (t) => {
  const s = scene(t);
  const [callerBridge, hostBridge] = [await s.bridge(), await s.bridge()];
  const errors: Array<{ code: string; message: string }> = [];
  hostBridge.on('error', (err) => errors.push({ code: err.code, message: err.message }));
  const server = await s.server();
  const seen: string[] = [];
  server.onMessage('throws', () => {
    throw new Error('sync failure');
  });
  server.onMessage('rejects', async () => {
    throw new Error('async failure');
  });
  server.onMessage('fine', (data) => void seen.push(String(data)));
  await hostBridge.expose(server);
  const client = await s.client(callerBridge, { id: server.options.id });
  await client.sendMessage('throws', 1);
  await client.sendMessage('rejects', 2);
  await client.sendMessage('nobody', 3);
  await client.sendMessage('fine', 'last');
  await waitUntil(() => seen.length === 1 && errors.length >= 2, 5_000, 'the messages');
  await sleep(50);
  assert.deepEqual(seen, ['last']);
  assert.deepEqual(errors, [
    { code: 'HANDLER_ERROR', message: 'handler for message "throws" threw: sync failure' },
    { code: 'HANDLER_ERROR', message: 'handler for message "rejects" threw: async failure' },
  ]);
});

test('no responder: NO_HANDLER at once, for an id nobody exposes and for a type the host lacks', { timeout: 20_000 }, async (t) => {
  const s = scene(t);
  const bridge = await s.bridge();
  const nobody = await s.client(bridge, { id: uniqueId('nobody') });
  const started = performance.now();
  const error = await expectIpcError(nobody.request('anything', 1, { timeout: 10_000 }), 'NO_HANDLER');
  const elapsed = performance.now() - started;
  assert.ok(elapsed < 1_000, `NO_HANDLER took ${Math.round(elapsed)} ms (must not wait for the 10 s timeout)`);
  assert.match(error.message, /no responders/);

  const server = await s.server();
  server.onMessage('known', () => 'ok');
  await bridge.expose(server);
  const client = await s.client(bridge, { id: server.options.id });
  assert.equal(await client.request('known'), 'ok');
  await expectIpcError(client.request('unknown'), 'NO_HANDLER');
  // A timeout still means TIMEOUT.
  server.onMessage('slow', () => new Promise((resolve) => setTimeout(resolve, 2_000).unref()));
  await expectIpcError(client.request('slow', undefined, { timeout: 100 }), 'TIMEOUT');
  // An abort is ABORTED.
  const controller = new AbortController();
  const aborted = client.request('slow', undefined, { signal: controller.signal });
  controller.abort();
  await expectIpcError(aborted, 'ABORTED');
});

test('two hosts exposing one id share the load (queue group); each request is answered once', { timeout: 20_000 }, async (t) => {
  const s = scene(t);
  const callerBridge = await s.bridge();
  const id = uniqueId('shared');
  const counts = { a: 0, b: 0 };
  for (const host of ['a', 'b'] as const) {
    const bridge = await s.bridge();
    const server = await s.server(id);
    server.onMessage('work', (n: number) => {
      counts[host]++;
      return { host, n };
    });
    await bridge.expose(server);
  }
  const client = await s.client(callerBridge, { id });
  const answers = await Promise.all(Array.from({ length: 400 }, (_, n) => client.request<number, { host: string; n: number }>('work', n)));
  assert.deepEqual(answers.map((a) => a.n), Array.from({ length: 400 }, (_, n) => n));
  assert.equal(counts.a + counts.b, 400, 'every request handled exactly once');
  assert.ok(counts.a > 50 && counts.b > 50, `load not spread: ${JSON.stringify(counts)}`);
});

test('oversize: MESSAGE_TOO_LARGE before sending (request, message, publish, response); the client stays usable', { timeout: 20_000 }, async (t) => {
  const s = scene(t);
  const bridge = await s.bridge();
  const server = await s.server();
  let calls = 0;
  server.onMessage('echo', (data) => {
    calls++;
    return data;
  });
  server.onMessage('big', () => 'x'.repeat(bridge.maxPayload + 10));
  await bridge.expose(server);
  const client = await s.client(bridge, { id: server.options.id });
  const big = 'y'.repeat(bridge.maxPayload);
  assert.equal(bridge.maxPayload, 1024 * 1024, 'nats-server\'s default max_payload');
  await expectIpcError(client.request('echo', big), 'MESSAGE_TOO_LARGE');
  await expectIpcError(client.sendMessage('echo', big), 'MESSAGE_TOO_LARGE');
  await expectIpcError(client.publish('a.b', big), 'MESSAGE_TOO_LARGE');
  assert.equal(calls, 0, 'nothing oversized reached the handler');
  assert.equal(client.getStats().metrics.messagesSent, 0, 'nothing was sent');
  await expectIpcError(client.request('big'), 'MESSAGE_TOO_LARGE');
  assert.equal(await client.request('echo', 'still fine'), 'still fine');
});

test('pub/sub joins both ways, each publish delivered once, never echoed back to its publisher', { timeout: 20_000 }, async (t) => {
  const s = scene(t);
  const [bridgeA, bridgeB] = [await s.bridge(), await s.bridge()];
  const server = await s.server();
  await bridgeB.expose(server);
  const local = await localClient(s, server);
  const natsA = await s.client(bridgeA, { id: server.options.id, clientId: 'nats-a' });
  const natsB = await s.client(bridgeB, { id: server.options.id, clientId: 'nats-b' });
  const seen: Record<string, Array<[unknown, IPublishInfo]>> = { local: [], natsA: [], natsB: [] };
  await local.subscribe('news.>', (data, info) => {
    seen.local.push([data, info]);
  });
  await natsA.subscribe('news.*', (data, info) => {
    seen.natsA.push([data, info]);
  });
  await natsB.subscribe('news.>', (data, info) => {
    seen.natsB.push([data, info]);
  });

  await local.publish('news.local', 1); // local -> NATS
  await natsA.publish('news.a', 2); // NATS (other bridge) -> local and NATS
  await natsB.publish('news.b.deep', 3); // NATS (host bridge) -> local; natsA's `news.*` does not match
  await server.publish('news.server', 4); // the hub itself
  await waitUntil(() => seen.local.length >= 3 && seen.natsA.length >= 2 && seen.natsB.length >= 3, 5_000, 'deliveries');
  await sleep(200); // duplicates or echoes would show up by now

  const topics = (list: Array<[unknown, IPublishInfo]>) => list.map(([data, info]) => `${info.topic}=${String(data)}`).sort();
  assert.deepEqual(topics(seen.local), ['news.a=2', 'news.b.deep=3', 'news.server=4'], 'local subscriber: everything but its own, once');
  assert.deepEqual(topics(seen.natsA), ['news.local=1', 'news.server=4'], 'natsA: the ones `news.*` matches, never its own');
  assert.deepEqual(topics(seen.natsB), ['news.a=2', 'news.local=1', 'news.server=4'], 'natsB: everything but its own, once');
  const fromOf = (list: Array<[unknown, IPublishInfo]>, topic: string) => list.find(([, info]) => info.topic === topic)?.[1].from;
  assert.equal(fromOf(seen.natsB, 'news.local'), local.getClientId(), 'from is the local publisher');
  assert.equal(fromOf(seen.natsB, 'news.a'), 'nats-a', 'from is the NATS publisher');
  assert.equal(fromOf(seen.natsA, 'news.server'), 'server');
  assert.equal(fromOf(seen.local, 'news.a'), 'nats-a', 'a local subscriber sees the remote publisher as from');
  assert.equal(fromOf(seen.local, 'news.b.deep'), 'nats-b');
  assert.equal(server.getStats().pubsub?.published, 4, 'the local broker saw each publish once (1 local, 2 from NATS, 1 server)');
});

test('patterns and topics are checked with smartipc\'s rules (NATS would accept a..b and read a.b* literally)', { timeout: 10_000 }, async (t) => {
  const s = scene(t);
  const bridge = await s.bridge();
  const id = uniqueId('rules');
  const client = await s.client(bridge, { id });
  for (const pattern of ['a..b', 'a.b*', '>.a', 'a.>.b', '', '.a', 'a.']) {
    await assert.rejects(client.subscribe(pattern, () => undefined), (err: unknown) => (err as { code?: string }).code === 'INVALID_ARGUMENT', `pattern ${JSON.stringify(pattern)}`);
  }
  for (const topic of ['a..b', 'a.*', 'a.>', '', 'a.']) {
    await assert.rejects(client.publish(topic, 1), (err: unknown) => (err as { code?: string }).code === 'INVALID_ARGUMENT', `topic ${JSON.stringify(topic)}`);
  }
  // Segments NATS cannot carry as is (spaces, '~', unicode) are escaped and still match.
  const got: string[] = [];
  await client.subscribe('we ird.*.end', (_data, info) => {
    got.push(info.topic);
  });
  const other = await s.client(bridge, { id });
  await other.publish('we ird.ünï cøde~.end', 1);
  await other.publish('we ird.x.y.end', 2);
  await waitUntil(() => got.length >= 1, 3_000);
  await sleep(100);
  assert.deepEqual(got, ['we ird.ünï cøde~.end']);
});

test('server to NATS client: sendToClient, requestClient (CLIENT_NOT_FOUND at once), broadcast', { timeout: 20_000 }, async (t) => {
  const s = scene(t);
  const [bridgeA, bridgeB] = [await s.bridge(), await s.bridge()];
  const server = await s.server();
  const exposure = await bridgeB.expose(server);
  const client = await s.client(bridgeA, { id: server.options.id, clientId: 'listener' });
  const got: unknown[] = [];
  client.onMessage('tell', (data, serverId) => {
    got.push([data, serverId]);
  });
  client.onMessage('ask', (n: number) => n * 2);
  await exposure.sendToClient('listener', 'tell', 'hi');
  await exposure.broadcast('tell', 'all');
  assert.equal(await exposure.requestClient('listener', 'ask', 21), 42);
  await expectIpcError(exposure.requestClient('listener', 'unknown'), 'NO_HANDLER');
  await expectIpcError(exposure.requestClient('nobody', 'ask', 1), 'CLIENT_NOT_FOUND');
  await waitUntil(() => got.length === 2);
  assert.deepEqual(got, [['hi', server.options.id], ['all', server.options.id]]);
});

test('close() drains: requests in flight complete, new ones reject NOT_CONNECTED, clients see CLOSED', { timeout: 20_000 }, async (t) => {
  const s = scene(t);
  const [callerBridge, hostBridge] = [await s.bridge(), await s.bridge()];
  const server = await s.server();
  server.onMessage('slow', (n: number) => new Promise((resolve) => setTimeout(() => resolve(n), 300)));
  await hostBridge.expose(server);
  const client = callerBridge.createClient({ id: server.options.id });
  await client.connect();
  const disconnects: string[] = [];
  client.on('disconnect', (reason) => disconnects.push(reason.code));
  const inFlight = Array.from({ length: 20 }, (_, n) => client.request('slow', n));
  await sleep(50);
  const closing = callerBridge.close();
  await expectIpcError(client.request('slow', 99), 'NOT_CONNECTED');
  await expectIpcError(client.sendMessage('slow', 99), 'NOT_CONNECTED');
  assert.deepEqual(await withTimeout(Promise.all(inFlight), 5_000, 'in-flight requests'), Array.from({ length: 20 }, (_, n) => n));
  await closing;
  assert.equal(callerBridge.getIsConnected(), false);
  assert.deepEqual(disconnects, ['CLOSED']);
  assert.throws(() => callerBridge.createClient({ id: 'x' }), (err: unknown) => (err as { code?: string }).code === 'NOT_CONNECTED');

  // The hosting side drains too: a request it is handling is answered before it closes.
  const caller2 = await s.client(await s.bridge(), { id: server.options.id });
  const handled = caller2.request('slow', 7);
  await sleep(50);
  await hostBridge.close();
  assert.equal(await handled, 7);
  await expectIpcError(caller2.request('slow', 8), 'NO_HANDLER');
});

test('NatsBridge.connect: an unreachable server is SERVER_UNAVAILABLE; bad options are INVALID_ARGUMENT', { timeout: 20_000 }, async () => {
  await assert.rejects(NatsBridge.connect({ servers: 'nats://127.0.0.1:1', maxReconnectAttempts: 0, timeout: 1_000 }), (err: unknown) => (err as { code?: string }).code === 'SERVER_UNAVAILABLE');
  for (const options of [{ servers: '' }, { servers: nats.server.url, namespace: 'a..b' }, { servers: nats.server.url, namespace: 'a.*' }, { servers: nats.server.url, serialization: 'xml' }]) {
    await assert.rejects(NatsBridge.connect(options as never), (err: unknown) => (err as { code?: string }).code === 'INVALID_ARGUMENT', JSON.stringify(options));
  }
});

test('the NATS client is optional: the package root never loads it; without it connect() names the package to install', { timeout: 30_000 }, async (t) => {
  // The built package in a directory whose node_modules lacks @nats-io.
  const root = path.resolve(import.meta.dirname, '..');
  assert.ok(fs.existsSync(path.join(root, 'dist_ts', 'nats', 'index.js')), 'dist_ts is built by npm test (pretest)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartipc-nonats-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.cpSync(path.join(root, 'dist_ts'), path.join(dir, 'dist_ts'), { recursive: true }); // a symlink would resolve back to our node_modules
  fs.mkdirSync(path.join(dir, 'node_modules'));
  for (const entry of fs.readdirSync(path.join(root, 'node_modules'))) {
    if (entry === '@nats-io' || entry.startsWith('.')) continue;
    fs.symlinkSync(path.join(root, 'node_modules', entry), path.join(dir, 'node_modules', entry));
  }
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  fs.writeFileSync(
    path.join(dir, 'probe.js'),
    `const root = await import('./dist_ts/index.js');
const nats = await import('./dist_ts/nats/index.js');
let outcome;
try { await nats.NatsBridge.connect({ servers: 'nats://127.0.0.1:1' }); outcome = 'connected?'; } catch (err) { outcome = err.code + ': ' + err.message; }
console.log(JSON.stringify({ root: typeof root.SmartIpc, outcome }));`,
  );
  const output = childProcess.execFileSync(process.execPath, ['probe.js'], { cwd: dir, encoding: 'utf8', timeout: 20_000 });
  const result = JSON.parse(output.trim()) as { root: string; outcome: string };
  assert.equal(result.root, 'function', 'the package root loads without @nats-io installed');
  assert.match(result.outcome, /^INVALID_ARGUMENT: .*npm install @nats-io\/transport-node/);
});
