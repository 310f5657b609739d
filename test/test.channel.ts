// SmartIpc.createChannel: one symmetric link between two peers, whichever starts first listens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { EFrameKind, SmartIpc } from '../ts/internal.js';
import { collectFrames, expectIpcError, helloFrame, rawConnect, uniqueId, uniqueSocketPath, waitForEvent, waitUntil, withTimeout } from './helpers/fixtures.js';

test('role auto: the first peer listens, the second connects, both sides request each other', async (t) => {
  const socketPath = uniqueSocketPath('channel');
  const id = uniqueId('pair');
  const a = SmartIpc.createChannel({ id, socketPath });
  const b = SmartIpc.createChannel({ id, socketPath });
  t.after(async () => {
    await b.stop();
    await a.stop();
  });
  a.onMessage('name', () => 'a');
  b.onMessage('name', () => 'b');
  const received: number[] = [];
  a.onMessage('count', (n: number) => {
    received.push(n);
  });

  await a.start();
  assert.equal(a.getRole(), 'server');
  const aConnected = waitForEvent(a, 'connect');
  await b.start();
  assert.equal(b.getRole(), 'client');
  await aConnected;

  assert.equal(await b.request('name'), 'a');
  assert.equal(await a.request('name'), 'b');
  for (let i = 0; i < 100; i++) void b.sendMessage('count', i);
  assert.equal(await b.request('name'), 'a', 'a request after the messages arrives after them');
  assert.deepEqual(received, Array.from({ length: 100 }, (_, i) => i));

  await b.stop();
  await a.stop();
  assert.equal(fs.existsSync(socketPath), false, 'the listening peer removes its socket file on stop');
});

test('a third peer is refused with TOO_MANY_CLIENTS; a peer with another id with ID_MISMATCH', async (t) => {
  const socketPath = uniqueSocketPath('channel-3');
  const id = uniqueId('pair');
  const a = SmartIpc.createChannel({ id, socketPath, role: 'server' });
  const b = SmartIpc.createChannel({ id, socketPath, role: 'client' });
  const c = SmartIpc.createChannel({ id, socketPath, role: 'client' });
  const d = SmartIpc.createChannel({ id: uniqueId('other'), socketPath, role: 'client' });
  t.after(async () => {
    await b.stop();
    await a.stop();
  });
  await a.start();
  await b.start();
  await expectIpcError(c.start(), 'TOO_MANY_CLIENTS');
  await expectIpcError(d.start(), 'ID_MISMATCH');
  a.onMessage('still', () => 'here');
  assert.equal(await b.request('still'), 'here');
});

test('a dropped link rejects pending requests with CONNECTION_LOST and the listener takes the next peer', async (t) => {
  const socketPath = uniqueSocketPath('channel-drop');
  const id = uniqueId('pair');
  const a = SmartIpc.createChannel({ id, socketPath, role: 'server' });
  const b = SmartIpc.createChannel({ id, socketPath, role: 'client' });
  const b2 = SmartIpc.createChannel({ id, socketPath, role: 'client' });
  t.after(async () => {
    await b2.stop();
    await b.stop();
    await a.stop();
  });
  a.onMessage('hang', () => new Promise(() => undefined));
  a.onMessage('ok', () => 'ok');
  await a.start();
  await b.start();
  const pending = b.request('hang', undefined, { timeout: 30_000 });
  const lost = expectIpcError(pending, 'CONNECTION_LOST', 3_000);
  const disconnected = waitForEvent(a, 'disconnect');
  await b.stop();
  await lost;
  await disconnected;
  await withTimeout(b2.start(), 3_000, 'next peer');
  assert.equal(await b2.request('ok'), 'ok');
});

test('role client with nobody listening rejects with SERVER_UNAVAILABLE', async () => {
  const c = SmartIpc.createChannel({ id: uniqueId('pair'), socketPath: uniqueSocketPath('channel-none'), role: 'client' });
  await expectIpcError(c.start(), 'SERVER_UNAVAILABLE');
});

test('a listening channel checks a handshake like a server: a HELLO without a usable maxMessageSize is refused', async (t) => {
  const socketPath = uniqueSocketPath('channel-hello');
  const id = uniqueId('pair');
  const a = SmartIpc.createChannel({ id, socketPath, role: 'server' });
  t.after(() => a.stop());
  await a.start();
  const socket = await rawConnect({ socketPath });
  t.after(() => socket.destroy());
  const frames = collectFrames(socket);
  socket.write(helloFrame({ serverId: id, maxMessageSize: 0 }));
  await waitUntil(() => frames.length > 0, 5_000, 'an answer');
  assert.equal(frames[0].kind, EFrameKind.Reject);
  assert.equal(JSON.parse(frames[0].payload.toString()).code, 'PROTOCOL_ERROR');
  assert.equal(a.getIsConnected(), false, 'the refused peer did not become the channel\'s peer');
});

