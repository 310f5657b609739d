// serialization: 'advanced' (structured clone) carries what JSON cannot; 'json' refuses such data
// locally with PROTOCOL_ERROR instead of sending something the peer would misread.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SmartIpc } from '../ts/index.js';
import { TRANSPORTS, createPair, expectIpcError, startServer, waitUntil } from './helpers/fixtures.js';

const T = { timeout: 20_000 };

/** One value of each kind structured clone carries and JSON does not. */
function richValue() {
  const shared = { note: 'referenced twice' };
  return {
    buffer: Buffer.from([0, 1, 2, 250, 255]),
    emptyBuffer: Buffer.alloc(0),
    date: new Date('2024-02-29T12:34:56.789Z'),
    map: new Map<unknown, unknown>([
      ['a', 1],
      [2, { nested: new Set(['x', 'y']) }],
    ]),
    set: new Set([1, 'two', 3n]),
    bigint: 2n ** 70n,
    negativeBigint: -(10n ** 20n),
    uint8: new Uint8Array([1, 2, 3]),
    int32: new Int32Array([-1, 0, 2 ** 31 - 1]),
    float64: new Float64Array([Math.PI, -0, Infinity]),
    bigUint64: new BigUint64Array([2n ** 64n - 1n]),
    special: [NaN, Infinity, -Infinity, undefined, null],
    regexp: /a+b/gi,
    error: new RangeError('out of range'),
    sharedTwice: [shared, shared],
  };
}

function assertRich(value: ReturnType<typeof richValue>): void {
  const expected = richValue();
  assert.ok(Buffer.isBuffer(value.buffer), 'a Buffer comes back as a Buffer');
  assert.deepEqual([...value.buffer], [...expected.buffer]);
  assert.equal(value.emptyBuffer.length, 0);
  assert.ok(value.date instanceof Date);
  assert.equal(value.date.getTime(), expected.date.getTime());
  assert.ok(value.map instanceof Map);
  assert.deepEqual(value.map, expected.map);
  assert.ok(value.set instanceof Set);
  assert.deepEqual(value.set, expected.set);
  assert.equal(value.bigint, expected.bigint);
  assert.equal(value.negativeBigint, expected.negativeBigint);
  assert.ok(value.uint8 instanceof Uint8Array);
  assert.deepEqual([...value.uint8], [1, 2, 3]);
  assert.ok(value.int32 instanceof Int32Array);
  assert.deepEqual([...value.int32], [...expected.int32]);
  assert.ok(value.float64 instanceof Float64Array);
  assert.ok(Object.is(value.float64[1], -0));
  assert.deepEqual([...value.float64], [...expected.float64]);
  assert.ok(value.bigUint64 instanceof BigUint64Array);
  assert.equal(value.bigUint64[0], expected.bigUint64[0]);
  assert.ok(Number.isNaN(value.special[0]));
  assert.deepEqual(value.special.slice(1), expected.special.slice(1));
  assert.ok(value.regexp instanceof RegExp);
  assert.equal(value.regexp.source, 'a+b');
  assert.equal(value.regexp.flags, 'gi');
  assert.ok(value.error instanceof RangeError);
  assert.equal(value.error.message, 'out of range');
  assert.equal(value.sharedTwice[0], value.sharedTwice[1], 'shared references stay shared');
}

for (const kind of TRANSPORTS) {
  describe(`serialization 'advanced' over ${kind}`, () => {
    test('Buffer, Date, Map, Set, BigInt and typed arrays round-trip in requests, responses and messages', T, async (t) => {
      const pair = await createPair(kind, { server: { serialization: 'advanced' }, client: { serialization: 'advanced' } });
      t.after(() => pair.close());
      const seenByServer: unknown[] = [];
      pair.server.onMessage('mirror', (data: ReturnType<typeof richValue>) => {
        assertRich(data);
        return data;
      });
      pair.server.onMessage('fresh', () => richValue());
      pair.server.onMessage('note', (data: unknown) => void seenByServer.push(data));
      assertRich(await pair.client.request('mirror', richValue()));
      assertRich(await pair.client.request('fresh'));
      await pair.client.sendMessage('note', richValue());
      await waitUntil(() => seenByServer.length === 1, 5_000, 'message delivered');
      assertRich(seenByServer[0] as ReturnType<typeof richValue>);

      // Server to client: a request and a broadcast.
      const seenByClient: unknown[] = [];
      pair.client.onMessage('mirror', (data: ReturnType<typeof richValue>) => data);
      pair.client.onMessage('note', (data: unknown) => void seenByClient.push(data));
      assertRich(await pair.server.requestClient(pair.client.getClientId(), 'mirror', richValue()));
      await pair.server.broadcast('note', richValue());
      await waitUntil(() => seenByClient.length === 1, 5_000, 'broadcast delivered');
      assertRich(seenByClient[0] as ReturnType<typeof richValue>);
    });

    test('a top-level Buffer, BigInt and Map are answers too', T, async (t) => {
      const pair = await createPair(kind, { server: { serialization: 'advanced' }, client: { serialization: 'advanced' } });
      t.after(() => pair.close());
      pair.server.onMessage('identity', (data: unknown) => data);
      const buf = await pair.client.request<Buffer, Buffer>('identity', Buffer.from('raw bytes'));
      assert.ok(Buffer.isBuffer(buf));
      assert.equal(buf.toString(), 'raw bytes');
      assert.equal(await pair.client.request('identity', 123456789012345678901234567890n), 123456789012345678901234567890n);
      assert.deepEqual(await pair.client.request('identity', new Map([[1, 2]])), new Map([[1, 2]]));
      assert.equal(await pair.client.request('identity', null), null);
      assert.equal(await pair.client.request('identity', undefined), undefined);
    });

    test('data structured clone cannot carry is refused locally with PROTOCOL_ERROR', T, async (t) => {
      const pair = await createPair(kind, { server: { serialization: 'advanced' }, client: { serialization: 'advanced' } });
      t.after(() => pair.close());
      let calls = 0;
      pair.server.onMessage('x', () => {
        calls++;
        return 'ok';
      });
      await expectIpcError(pair.client.request('x', { fn: () => 1 }), 'PROTOCOL_ERROR');
      await expectIpcError(pair.client.sendMessage('x', Symbol('nope')), 'PROTOCOL_ERROR');
      assert.equal(calls, 0);
      assert.equal(await pair.client.request('x', 1), 'ok');
    });
  });
}

describe(`serialization 'json'`, () => {
  test('a BigInt payload is refused locally with PROTOCOL_ERROR and the connection stays usable', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    let calls = 0;
    pair.server.onMessage('x', () => {
      calls++;
      return 'ok';
    });
    pair.client.onMessage('x', () => 'ok');
    await expectIpcError(pair.client.request('x', { n: 1n }), 'PROTOCOL_ERROR');
    await expectIpcError(pair.client.sendMessage('x', 1n), 'PROTOCOL_ERROR');
    await expectIpcError(pair.server.sendToClient(pair.client.getClientId(), 'x', 1n), 'PROTOCOL_ERROR');
    await expectIpcError(pair.server.requestClient(pair.client.getClientId(), 'x', 1n), 'PROTOCOL_ERROR');
    await expectIpcError(pair.server.broadcast('x', 1n), 'PROTOCOL_ERROR');
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    await expectIpcError(pair.client.request('x', circular), 'PROTOCOL_ERROR');
    assert.equal(calls, 0);
    assert.equal(pair.client.getStats().metrics.requestsInFlight, 0);
    assert.equal(await pair.client.request('x', 1), 'ok');
  });

  test('a handler answering with a BigInt rejects the request with HANDLER_ERROR', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    pair.server.onMessage('big', () => 1n);
    pair.server.onMessage('ok', () => 'ok');
    await expectIpcError(pair.client.request('big'), 'HANDLER_ERROR');
    assert.equal(await pair.client.request('ok'), 'ok');
  });

  test('JSON semantics: a Date arrives as its ISO string, undefined and null survive at the top level', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    pair.server.onMessage('identity', (data: unknown) => data);
    const date = new Date('2020-01-01T00:00:00.000Z');
    assert.deepEqual(await pair.client.request('identity', { date, list: [1, 'two', { three: true }] }), {
      date: date.toISOString(),
      list: [1, 'two', { three: true }],
    });
    assert.equal(await pair.client.request('identity', null), null);
    assert.equal(await pair.client.request('identity', undefined), undefined);
    assert.equal(await pair.client.request('identity', 'ünïcødé ✓ 😀'), 'ünïcødé ✓ 😀');
  });
});

test('waitForServer finds an advanced-serialization server: probes carry no data, so serialization is not checked', T, async (t) => {
  const started = await startServer('unix', { serialization: 'advanced' }, 'probe-adv');
  t.after(() => started.stop());
  await SmartIpc.waitForServer({ ...started.endpoint, id: started.id, timeoutMs: 5_000 });
  await SmartIpc.waitForServer({ ...started.endpoint, timeoutMs: 5_000 });
  assert.deepEqual(started.server.getClientIds(), [], 'probes register no client');
});

