// Binary data in every serialization (issue 10): Buffers and Uint8Arrays, whole or nested, arrive
// as Buffers with the same bytes on every path; their bytes travel raw (a binary frame, or
// attachments beside the JSON); look-alikes and U+0000 keys are never mistaken for them; a peer
// cannot pick a decoder the handshake did not agree on; a malformed attachment table fails only
// the request it came with. Real Unix sockets and TCP, both serializations.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as v8 from 'node:v8';
import {
  EFrameKind,
  EPayloadEncoding,
  FLAG_HAS_ATTACHMENTS,
  IpcError,
  decodePayload,
  wire,
  type IFrame,
  type TSerialization,
} from '../ts/internal.js';
import { TRANSPORTS, createPair, expectIpcError, waitForClose, waitForEvent, waitUntil, withTimeout, type IPair, type TTransportKind } from './helpers/fixtures.js';
import { attachmentPayload, connectRawPeer, rawFrame } from './helpers/rawpeer.js';

const T = { timeout: 20_000 };
const SERIALIZATIONS: readonly TSerialization[] = ['json', 'advanced'];
const MiB = 1024 * 1024;

function pairOf(kind: TTransportKind, serialization: TSerialization, extra: { heartbeat?: boolean; maxJsonDepth?: number } = {}): Promise<IPair> {
  return createPair(kind, { server: { serialization, ...extra }, client: { serialization, ...extra } });
}

/** A value nested `depth` levels deep, alternating objects and arrays. */
function nest(depth: number, leaf: unknown): unknown {
  let value = leaf;
  for (let i = 0; i < depth; i++) value = i % 2 === 0 ? { level: i, next: value } : [i, value];
  return value;
}

/** What the receiver must see: every Uint8Array a Buffer with the same bytes; a Date its ISO string in 'json'. */
function expectedOf(value: unknown, serialization: TSerialization): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value);
  if (value instanceof Date) return serialization === 'json' ? value.toISOString() : value;
  if (Array.isArray(value)) return value.map((item) => expectedOf(item, serialization));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = expectedOf(v, serialization);
    return out;
  }
  return value;
}

/** Every binary inside a received value is a Buffer (deepStrictEqual checks too; this names the place). */
function assertOnlyBuffers(value: unknown, where = 'data'): void {
  if (value instanceof Uint8Array) {
    assert.ok(Buffer.isBuffer(value), `${where} arrived as a ${value.constructor.name}, not a Buffer`);
    return;
  }
  if (Array.isArray(value)) value.forEach((item, i) => assertOnlyBuffers(item, `${where}[${i}]`));
  else if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    for (const [k, v] of Object.entries(value)) assertOnlyBuffers(v, `${where}.${JSON.stringify(k)}`);
  }
}

interface ISample {
  name: string;
  make(): unknown;
}

/** The payloads every path carries. `make` builds a fresh value each time (nothing is shared between sender and receiver). */
const SAMPLES: ISample[] = [
  { name: 'a Buffer as the whole payload (all 256 byte values)', make: () => Buffer.from(Array.from({ length: 256 }, (_, i) => i)) },
  {
    name: 'a Uint8Array at an offset into a larger ArrayBuffer as the whole payload',
    make: () => new Uint8Array(new Uint8Array(64).map((_, i) => 255 - i).buffer, 7, 20),
  },
  { name: 'an empty Buffer as the whole payload', make: () => Buffer.alloc(0) },
  { name: 'an empty Uint8Array as the whole payload', make: () => new Uint8Array(0) },
  {
    name: 'several binaries nested in objects and arrays, empty ones among them',
    make: () => {
      const backing = Buffer.from('0123456789abcdefghij');
      return {
        name: 'mixed',
        file: Buffer.from('hello binary'),
        parts: [new Uint8Array([1, 2, 3]), Buffer.alloc(0), 'text', 7, null, { inner: backing.subarray(5, 9) }],
        empty: new Uint8Array(0),
        view: new Uint8Array(backing.buffer, backing.byteOffset + 10, 4),
        n: 42,
        flag: true,
      };
    },
  },
  {
    name: 'the same Buffer twice, and Buffers 60 levels deep',
    make: () => {
      const shared = Buffer.from([9, 8, 7]);
      return { a: shared, b: [shared, shared], deep: nest(60, { bytes: Buffer.from('deep down'), also: new Uint8Array([0, 0, 1]) }) };
    },
  },
  { name: 'an array of binaries only', make: () => [Buffer.from([0]), new Uint8Array([255]), Buffer.alloc(0), new Uint8Array(0)] },
  { name: "a plain object that looks like a Buffer's JSON", make: () => ({ type: 'Buffer', data: [104, 105] }) },
  { name: "a Buffer's JSON look-alike beside a real Buffer", make: () => [{ type: 'Buffer', data: [1, 2, 3] }, Buffer.from([1, 2, 3]), { file: { type: 'Buffer', data: [] } }] },
  { name: 'exactly { "\\u0000": 0 }, without any Buffer', make: () => ({ '\u0000': 0 }) },
  {
    name: 'user keys starting with U+0000 beside real attachments',
    make: () => ({
      '\u0000': 0,
      file: Buffer.from('real'),
      list: [{ '\u0000': 0 }, { '\u0000': 5 }, { '\u0000': 'x' }, { '\u0000\u0000': 'two', '\u0000x': 1, plain: 2 }, Buffer.from('second')],
      nested: { '\u0000inner': { '\u0000': 0, bytes: new Uint8Array([1]) } },
    }),
  },
  { name: 'exactly { "\\u0000": 0 } beside a Buffer in an array', make: () => [{ '\u0000': 0 }, Buffer.from('x'), { '\u0000': 1 }] },
];

/** One way data travels: sends `value` and returns what arrived on the other side. */
interface IPath {
  name: string;
  /** Needs a second client (pub/sub between clients). */
  clients?: 2;
  carry(pair: IPair, value: unknown): Promise<unknown>;
}

async function arrival(setup: (deliver: (data: unknown) => void) => Promise<unknown>): Promise<unknown> {
  let arrived: { data: unknown } | undefined;
  await setup((data) => {
    arrived ??= { data };
  });
  await waitUntil(() => arrived !== undefined, 5_000, 'delivery');
  return arrived!.data;
}

let topicSeq = 0;
const PATHS: IPath[] = [
  {
    name: 'request data (client to server)',
    carry: (pair, value) =>
      arrival(async (deliver) => {
        pair.server.onMessage('take', (data) => void deliver(data));
        await pair.client.request('take', value);
      }),
  },
  {
    name: 'response (server to client)',
    carry: (pair, value) => {
      pair.server.onMessage('give', () => value);
      return pair.client.request('give');
    },
  },
  {
    name: 'sendMessage (client to server)',
    carry: (pair, value) =>
      arrival(async (deliver) => {
        pair.server.onMessage('note', (data) => void deliver(data));
        await pair.client.sendMessage('note', value);
      }),
  },
  {
    name: 'client publish (to another client)',
    clients: 2,
    carry: (pair, value) =>
      arrival(async (deliver) => {
        const topic = `bin.client.${++topicSeq}`;
        await pair.clients[1].subscribe(topic, (data) => void deliver(data));
        await pair.client.publish(topic, value);
      }),
  },
  {
    name: 'server publish',
    carry: (pair, value) =>
      arrival(async (deliver) => {
        const topic = `bin.server.${++topicSeq}`;
        await pair.client.subscribe(topic, (data) => void deliver(data));
        await pair.server.publish(topic, value);
      }),
  },
  {
    name: 'broadcast',
    carry: (pair, value) =>
      arrival(async (deliver) => {
        pair.client.onMessage('note', (data) => void deliver(data));
        await pair.server.broadcast('note', value);
      }),
  },
  {
    name: 'broadcastTo',
    carry: (pair, value) =>
      arrival(async (deliver) => {
        pair.client.onMessage('note', (data) => void deliver(data));
        await pair.server.broadcastTo([pair.client.getClientId()], 'note', value);
      }),
  },
  {
    name: 'sendToClient',
    carry: (pair, value) =>
      arrival(async (deliver) => {
        pair.client.onMessage('note', (data) => void deliver(data));
        await pair.server.sendToClient(pair.client.getClientId(), 'note', value);
      }),
  },
  {
    name: 'requestClient data (server to client)',
    carry: (pair, value) =>
      arrival(async (deliver) => {
        pair.client.onMessage('take', (data) => void deliver(data));
        await pair.server.requestClient(pair.client.getClientId(), 'take', value);
      }),
  },
  {
    name: 'requestClient response (client to server)',
    carry: (pair, value) => {
      pair.client.onMessage('give', () => value);
      return pair.server.requestClient(pair.client.getClientId(), 'give');
    },
  },
];

for (const kind of TRANSPORTS) {
  for (const serialization of SERIALIZATIONS) {
    describe(`binary data over ${kind}, serialization '${serialization}'`, () => {
      for (const path of PATHS) {
        test(`${path.name}: Buffers and Uint8Arrays, whole and nested, arrive as Buffers with the same bytes; look-alikes and U+0000 keys unchanged`, T, async (t) => {
          const pair = await pairOf(kind, serialization);
          t.after(() => pair.close());
          if (path.clients === 2) await pair.addClient();
          for (const sample of SAMPLES) {
            const arrived = await withTimeout(path.carry(pair, sample.make()), 5_000, sample.name);
            assertOnlyBuffers(arrived);
            assert.deepStrictEqual(arrived, expectedOf(sample.make(), serialization), `${path.name}: ${sample.name}`);
          }
        });
      }

      test(`a Date beside a Buffer arrives as ${serialization === 'json' ? 'its ISO string' : 'a Date'}`, T, async (t) => {
        const pair = await pairOf(kind, serialization);
        t.after(() => pair.close());
        pair.server.onMessage('identity', (data) => data);
        const when = new Date('2024-02-29T12:34:56.789Z');
        const arrived = await pair.client.request('identity', { when, file: Buffer.from('f'), list: [when] });
        assert.deepStrictEqual(arrived, {
          when: serialization === 'json' ? when.toISOString() : when,
          file: Buffer.from('f'),
          list: [serialization === 'json' ? when.toISOString() : when],
        });
        assert.deepStrictEqual(await pair.client.request('identity', when), serialization === 'json' ? when.toISOString() : when);
      });

      test('a Buffer 1,100 levels deep still arrives as a Buffer (with maxJsonDepth raised), and is refused, never mangled, at the default', T, async (t) => {
        const pair = await pairOf(kind, serialization, { maxJsonDepth: 2_000 });
        t.after(() => pair.close());
        pair.server.onMessage('identity', (data) => data);
        const depth = 1_100;
        if (serialization === 'json') {
          const strict = await pairOf(kind, serialization);
          t.after(() => strict.close());
          strict.server.onMessage('identity', (data) => data);
          await expectIpcError(strict.client.request('identity', nest(depth, Buffer.from('too deep'))), 'PROTOCOL_ERROR');
        }
        let arrived = await pair.client.request('identity', nest(depth, Buffer.from('very deep')));
        for (let i = depth - 1; i >= 0; i--) arrived = i % 2 === 0 ? (arrived as { next: unknown }).next : (arrived as unknown[])[1];
        assert.ok(Buffer.isBuffer(arrived), `the leaf arrived as ${JSON.stringify(arrived)}`);
        assert.equal(arrived.toString(), 'very deep');
      });

      test('a user object with an own "__proto__" key and a U+0000 key arrives unchanged beside a Buffer', T, async (t) => {
        const pair = await pairOf(kind, serialization);
        t.after(() => pair.close());
        pair.server.onMessage('identity', (data) => data);
        // JSON.parse makes "__proto__" an own property, as any JSON-decoded user data may have it.
        const make = () => ({ user: JSON.parse('{"__proto__": {"polluted": true}, "\\u0000k": 1, "ok": 2}') as object, file: Buffer.from('p') });
        const arrived = (await pair.client.request('identity', make())) as { user: object };
        assert.equal(Object.getPrototypeOf(arrived.user), Object.prototype, 'the prototype of the arrived object was changed');
        assert.deepStrictEqual(arrived, make());
      });

      test('wire size: a 1 MiB Buffer, whole or nested, adds < 64 bytes beside the frame header (client to server, bytesSent and bytesReceived)', T, async (t) => {
        const pair = await pairOf(kind, serialization, { heartbeat: false });
        t.after(() => pair.close());
        const mib = Buffer.alloc(MiB, 0xa5);
        mib[0] = 1;
        mib[MiB - 1] = 2;
        const received: unknown[] = [];
        pair.server.onMessage('blob', (data) => void received.push(data));
        const cases: Array<{ what: string; send: () => Promise<unknown>; budget: number }> = [
          { what: 'whole, sendMessage', send: () => pair.client.sendMessage('blob', mib), budget: 0 },
          { what: 'nested, sendMessage', send: () => pair.client.sendMessage('blob', { file: mib }), budget: 0 },
          { what: 'nested in an array, sendMessage', send: () => pair.client.sendMessage('blob', [{ name: 'a.bin', bytes: mib }]), budget: 0 },
          { what: 'whole, request', send: () => pair.client.request('blob', mib), budget: 4 },
          { what: 'nested, request', send: () => pair.client.request('blob', { file: mib }), budget: 4 },
        ];
        const header = 4 + 8 + Buffer.byteLength('blob');
        for (const c of cases) {
          const before = { sent: pair.client.getStats().metrics.bytesSent, received: pair.server.getStats().metrics.bytesReceived };
          const count = received.length;
          await c.send();
          await waitUntil(() => received.length === count + 1, 5_000, c.what);
          // A request's response (an empty answer) flows the other way and is not counted here.
          await waitUntil(() => pair.server.getStats().metrics.bytesReceived - before.received >= MiB, 5_000, 'bytes counted');
          const sent = pair.client.getStats().metrics.bytesSent - before.sent;
          const got = pair.server.getStats().metrics.bytesReceived - before.received;
          assert.equal(sent, got, `${c.what}: bytes sent and received differ`);
          const overhead = sent - MiB - header - c.budget;
          t.diagnostic(`${serialization} ${c.what}: ${overhead} bytes beside the header`);
          assert.ok(overhead >= 0 && overhead < 64, `${c.what}: ${overhead} bytes beside the frame header`);
        }
        assertOnlyBuffers(received);
        for (const r of received) {
          const bytes = Buffer.isBuffer(r) ? r : Array.isArray(r) ? (r[0] as { bytes: Buffer }).bytes : (r as { file: Buffer }).file;
          assert.ok(bytes.equals(mib), 'the 1 MiB arrived with other bytes');
        }
      });

      test('wire size: a 1 MiB Buffer in a response or sendToClient travels as raw bytes beside < 64 bytes (frames decoded from a raw socket)', T, async (t) => {
        const pair = await pairOf(kind, serialization, { heartbeat: false });
        t.after(() => pair.close());
        const peer = await connectRawPeer(pair.endpoint, pair.id, serialization);
        t.after(() => peer.destroy());
        await waitUntil(() => pair.server.getClientIds().includes(peer.clientId), 5_000, 'raw peer registered');
        const mib = Buffer.alloc(MiB);
        for (let i = 0; i < MiB; i += 4096) mib[i] = i & 0xff;
        pair.server.onMessage('whole', () => mib);
        pair.server.onMessage('nested', () => ({ file: mib, name: 'x' }));
        const check = (frame: IFrame, what: string, nested: boolean) => {
          const payloadBytes = frame.payloadEnd - frame.payloadStart;
          const overhead = payloadBytes - MiB;
          t.diagnostic(`${serialization} ${what}: ${overhead} bytes beside the header`);
          assert.ok(overhead >= 0 && overhead < 64, `${what}: ${overhead} bytes beside the frame header`);
          const encoding = frame.flags & wire.FLAG_ENCODING_MASK;
          if (!nested) assert.equal(encoding, EPayloadEncoding.Binary, `${what}: a whole Buffer is a binary frame`);
          else if (serialization === 'json') {
            assert.equal(encoding, EPayloadEncoding.Json);
            assert.equal(frame.flags & FLAG_HAS_ATTACHMENTS, FLAG_HAS_ATTACHMENTS, `${what}: nested bytes are an attachment`);
            assert.ok(frame.payload.subarray(payloadBytes - MiB).equals(mib), `${what}: the raw bytes close the payload`);
          } else assert.equal(encoding, EPayloadEncoding.V8);
          if (!nested) assert.ok(frame.payload.equals(mib), `${what}: the payload is not the raw bytes`);
        };
        let id = 0;
        for (const [type, nested] of [['whole', false], ['nested', true]] as const) {
          id++;
          const from = peer.frames.length;
          peer.write(rawFrame({ kind: EFrameKind.Request, flags: EPayloadEncoding.None, id, type }));
          check(await peer.nextFrame((f) => f.kind === EFrameKind.Response && f.id === id, 5_000, from), `response ${type}`, nested);
        }
        for (const [data, nested] of [[mib, false], [{ file: mib }, true]] as const) {
          const from = peer.frames.length;
          await pair.server.sendToClient(peer.clientId, 'blob', data);
          check(await peer.nextFrame((f) => f.kind === EFrameKind.Message && f.type === 'blob', 5_000, from), `sendToClient ${nested ? 'nested' : 'whole'}`, nested);
        }
      });
    });
  }
}

// ---- enforcement: a peer cannot pick a decoder the handshake did not agree on ----------------------

/** A slow request on the good client, released after the bad peer is gone: it must still be answered. */
async function assertGoodClientGoesOn(pair: IPair, during: () => Promise<void>): Promise<void> {
  const disconnects: unknown[] = [];
  pair.client.on('disconnect', (reason) => disconnects.push(reason));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  pair.server.onMessage('slowEcho', async (data) => {
    await released;
    return data;
  });
  const inFlight = pair.client.request('slowEcho', { file: Buffer.from('good') }, { timeout: 10_000 });
  await during();
  release();
  assert.deepStrictEqual(await inFlight, { file: Buffer.from('good') });
  pair.server.onMessage('echo', (data) => data);
  assert.deepStrictEqual(await pair.client.request('echo', [Buffer.from('after')]), [Buffer.from('after')]);
  assert.deepEqual(disconnects, []);
  assert.equal(pair.client.getIsConnected(), true);
}

interface IForgery {
  name: string;
  frame: Parameters<typeof rawFrame>[0];
}

const FORGED_ON_JSON: IForgery[] = [
  { name: 'a message flagged v8', frame: { kind: EFrameKind.Message, flags: EPayloadEncoding.V8, type: 'sink', payload: v8.serialize({ a: 1 }) } },
  { name: 'a request flagged v8', frame: { kind: EFrameKind.Request, flags: EPayloadEncoding.V8, id: 1, type: 'sink', payload: v8.serialize([1, 2]) } },
  { name: 'a publish flagged v8', frame: { kind: EFrameKind.Publish, flags: EPayloadEncoding.V8, type: 'some.topic', payload: v8.serialize('x') } },
  {
    name: 'attachments on a v8 payload',
    frame: { kind: EFrameKind.Message, flags: EPayloadEncoding.V8 | FLAG_HAS_ATTACHMENTS, type: 'sink', payload: attachmentPayload(JSON.stringify({ '\u0000': 0 }), [Buffer.from('x')]) },
  },
  {
    name: 'attachments on a binary payload',
    frame: { kind: EFrameKind.Request, flags: EPayloadEncoding.Binary | FLAG_HAS_ATTACHMENTS, id: 2, type: 'sink', payload: attachmentPayload('{}', [Buffer.from('x')]) },
  },
  { name: 'attachments on an empty payload', frame: { kind: EFrameKind.Message, flags: EPayloadEncoding.None | FLAG_HAS_ATTACHMENTS, type: 'sink' } },
];

// Plain JSON is allowed on 'advanced' connections (senders use it for plain data); attachments are not.
const FORGED_ON_ADVANCED: IForgery[] = [
  {
    name: 'JSON with attachments',
    frame: { kind: EFrameKind.Request, flags: EPayloadEncoding.Json | FLAG_HAS_ATTACHMENTS, id: 3, type: 'sink', payload: attachmentPayload(JSON.stringify({ f: { '\u0000': 0 } }), [Buffer.from('x')]) },
  },
  {
    name: 'attachments on a v8 payload',
    frame: { kind: EFrameKind.Message, flags: EPayloadEncoding.V8 | FLAG_HAS_ATTACHMENTS, type: 'sink', payload: attachmentPayload('{}', [Buffer.from('x')]) },
  },
];

for (const kind of TRANSPORTS) {
  for (const serialization of SERIALIZATIONS) {
    describe(`encoding enforcement on a '${serialization}' server over ${kind}`, () => {
      test('positive control: a raw peer speaking the agreed encoding is served (attachments decoded as Buffers in json)', T, async (t) => {
        const pair = await pairOf(kind, serialization);
        t.after(() => pair.close());
        pair.server.onMessage('echo', (data) => data);
        const peer = await connectRawPeer(pair.endpoint, pair.id, serialization);
        t.after(() => peer.destroy());
        const payload =
          serialization === 'json'
            ? { flags: EPayloadEncoding.Json | FLAG_HAS_ATTACHMENTS, payload: attachmentPayload(JSON.stringify({ a: { '\u0000': 0 }, b: [{ '\u0000': 1 }] }), [Buffer.from('one'), Buffer.from('two')]) }
            : { flags: EPayloadEncoding.V8, payload: v8.serialize({ a: Buffer.from('one'), b: [Buffer.from('two')] }) };
        peer.write(rawFrame({ kind: EFrameKind.Request, id: 7, type: 'echo', ...payload }));
        const answer = await peer.nextFrame((f) => f.id === 7);
        assert.equal(answer.kind, EFrameKind.Response, answer.payload.toString());
        // The answer comes back in the agreed encoding; decode it as a client would.
        assert.deepStrictEqual(decodePayload(serialization === 'json', answer.flags, answer.buf, answer.payloadStart, answer.payloadEnd), { a: Buffer.from('one'), b: [Buffer.from('two')] });
      });

      if (serialization === 'advanced') {
        test("plain JSON on an 'advanced' connection is served, and plain answers come back as JSON", T, async (t) => {
          const pair = await pairOf(kind, serialization);
          t.after(() => pair.close());
          const seen: unknown[] = [];
          pair.server.onMessage('echo', (data) => {
            seen.push(data);
            return data;
          });
          pair.server.onMessage('date', () => new Date(0));
          const peer = await connectRawPeer(pair.endpoint, pair.id, serialization);
          t.after(() => peer.destroy());
          peer.write(rawFrame({ kind: EFrameKind.Request, flags: EPayloadEncoding.Json, id: 8, type: 'echo', payload: '{"a":[1,"x",null,true]}' }));
          const answer = await peer.nextFrame((f) => f.id === 8);
          assert.equal(answer.kind, EFrameKind.Response, answer.payload.toString());
          assert.equal(answer.flags & 0b11, EPayloadEncoding.Json);
          assert.deepStrictEqual(seen, [{ a: [1, 'x', null, true] }]);
          // Data JSON would change goes as a structured clone.
          peer.write(rawFrame({ kind: EFrameKind.Request, flags: EPayloadEncoding.None, id: 9, type: 'date' }));
          const dated = await peer.nextFrame((f) => f.id === 9);
          assert.equal(dated.flags & 0b11, EPayloadEncoding.V8);
          assert.deepStrictEqual(decodePayload(false, dated.flags, dated.buf, dated.payloadStart, dated.payloadEnd), new Date(0));
        });
      }

      for (const forgery of serialization === 'json' ? FORGED_ON_JSON : FORGED_ON_ADVANCED) {
        test(`${forgery.name}: the peer is dropped with PROTOCOL_ERROR (messageError), a good client goes on`, T, async (t) => {
          const pair = await pairOf(kind, serialization);
          t.after(() => pair.close());
          let handled = 0;
          pair.server.onMessage('sink', () => void handled++);
          await assertGoodClientGoesOn(pair, async () => {
            const peer = await connectRawPeer(pair.endpoint, pair.id, serialization);
            t.after(() => peer.destroy());
            const reported = waitForEvent<[IpcError, string | undefined]>(pair.server, 'messageError');
            const dropped = waitForEvent<[string, IpcError]>(pair.server, 'clientDisconnect');
            const closed = waitForClose(peer.socket);
            peer.write(rawFrame(forgery.frame));
            const [error, clientId] = await reported;
            assert.ok(error instanceof IpcError, `messageError with ${String(error)}`);
            assert.equal(error.code, 'PROTOCOL_ERROR');
            assert.equal(clientId, peer.clientId);
            assert.equal((await dropped)[0], peer.clientId);
            await closed;
          });
          assert.equal(handled, 0, 'the forged frame never reached a handler');
          assert.deepEqual(pair.server.getClientIds(), [pair.client.getClientId()]);
        });
      }
    });
  }
}

// ---- malformed attachment tables: PROTOCOL_ERROR for that request, never a crash -----------------

const MALFORMED: Array<{ name: string; payload: Buffer }> = [
  { name: 'count 0', payload: attachmentPayload('{"a":1}', [], { count: 0, lengths: [] }) },
  { name: 'a payload shorter than the count field', payload: Buffer.from([0, 0]) },
  { name: 'a count larger than the table', payload: attachmentPayload('{}', [], { count: 0xffffffff, lengths: [1] }) },
  { name: 'lengths past the end', payload: attachmentPayload(JSON.stringify({ f: { '\u0000': 0 } }), [Buffer.from('abc')], { lengths: [1_000] }) },
  { name: 'lengths that add up past the end', payload: attachmentPayload(JSON.stringify([{ '\u0000': 0 }, { '\u0000': 1 }]), [Buffer.from('ab'), Buffer.from('cd')], { lengths: [0xffffffff, 0xffffffff] }) },
  { name: 'an attachment that swallows the JSON text', payload: attachmentPayload('{"a":1}', [Buffer.from('xyz')], { lengths: [3 + 7] }) },
  { name: 'a placeholder index out of range', payload: attachmentPayload(JSON.stringify({ f: { '\u0000': 1 } }), [Buffer.from('abc')]) },
  { name: 'a negative placeholder index', payload: attachmentPayload(JSON.stringify({ f: { '\u0000': -1 } }), [Buffer.from('abc')]) },
  { name: 'a fractional placeholder index', payload: attachmentPayload(JSON.stringify({ f: { '\u0000': 0.5 } }), [Buffer.from('abc')]) },
  { name: 'a placeholder index that is a string', payload: attachmentPayload(JSON.stringify({ f: { '\u0000': '0' } }), [Buffer.from('abc')]) },
  { name: 'JSON that does not parse', payload: attachmentPayload('{"f":', [Buffer.from('abc')]) },
];

const ATTACHED = EPayloadEncoding.Json | FLAG_HAS_ATTACHMENTS;

for (const kind of TRANSPORTS) {
  describe(`malformed attachment tables over ${kind}`, () => {
    test('each malformed request is answered PROTOCOL_ERROR; the connection and the server go on', T, async (t) => {
      const pair = await pairOf(kind, 'json');
      t.after(() => pair.close());
      let handled = 0;
      pair.server.onMessage('sink', () => void handled++);
      pair.server.onMessage('echo', (data) => data);
      const drops: unknown[] = [];
      pair.server.on('messageError', (error, clientId) => drops.push({ error, clientId }));
      await assertGoodClientGoesOn(pair, async () => {
        const peer = await connectRawPeer(pair.endpoint, pair.id, 'json');
        t.after(() => peer.destroy());
        let id = 100;
        for (const malformed of MALFORMED) {
          id++;
          const from = peer.frames.length;
          peer.write(rawFrame({ kind: EFrameKind.Request, flags: ATTACHED, id, type: 'sink', payload: malformed.payload }));
          const answer = await peer.nextFrame((f) => f.id === id, 5_000, from);
          assert.equal(answer.kind, EFrameKind.ErrorResponse, `${malformed.name}: answered with kind ${answer.kind}`);
          assert.equal((JSON.parse(answer.payload.toString('utf8')) as { code: string }).code, 'PROTOCOL_ERROR', malformed.name);
        }
        // The same raw connection still works, attachments included.
        peer.write(rawFrame({ kind: EFrameKind.Request, flags: ATTACHED, id: 999, type: 'echo', payload: attachmentPayload(JSON.stringify([{ '\u0000': 0 }]), [Buffer.from('ok')]) }));
        const answer = await peer.nextFrame((f) => f.id === 999);
        assert.equal(answer.kind, EFrameKind.Response);
        assert.equal(peer.socket.destroyed, false);
      });
      assert.equal(handled, 0);
      assert.deepEqual(drops, []);
    });

    test('a malformed message is reported as a server error (PROTOCOL_ERROR) and dropped; the connection goes on', T, async (t) => {
      const pair = await pairOf(kind, 'json');
      t.after(() => pair.close());
      const seen: unknown[] = [];
      pair.server.onMessage('sink', (data) => void seen.push(data));
      const errors: Array<[IpcError, string | undefined]> = [];
      pair.server.on('error', (error, clientId) => errors.push([error, clientId]));
      const peer = await connectRawPeer(pair.endpoint, pair.id, 'json');
      t.after(() => peer.destroy());
      for (const malformed of MALFORMED) peer.write(rawFrame({ kind: EFrameKind.Message, flags: ATTACHED, type: 'sink', payload: malformed.payload }));
      peer.write(rawFrame({ kind: EFrameKind.Message, flags: ATTACHED, type: 'sink', payload: attachmentPayload(JSON.stringify({ '\u0000': 0 }), [Buffer.from('fine')]) }));
      await waitUntil(() => seen.length === 1, 5_000, 'the valid message');
      assert.deepStrictEqual(seen, [Buffer.from('fine')]);
      assert.equal(errors.length, MALFORMED.length);
      for (const [error, clientId] of errors) {
        assert.equal(error.code, 'PROTOCOL_ERROR');
        assert.equal(clientId, peer.clientId);
      }
      assert.ok(pair.server.getClientIds().includes(peer.clientId), 'the raw peer was dropped');
    });

    test('a malformed response rejects that requestClient with PROTOCOL_ERROR; the next one works', T, async (t) => {
      const pair = await pairOf(kind, 'json');
      t.after(() => pair.close());
      const peer = await connectRawPeer(pair.endpoint, pair.id, 'json');
      t.after(() => peer.destroy());
      await waitUntil(() => pair.server.getClientIds().includes(peer.clientId), 5_000, 'raw peer registered');
      // The raw peer answers every request: malformed first, then well-formed.
      let answered = 0;
      peer.socket.on('data', () => {
        for (const frame of peer.frames.slice(1)) {
          if (frame.kind !== EFrameKind.Request || frame.id <= answered) continue;
          answered = frame.id;
          const payload = frame.type === 'bad' ? MALFORMED[6].payload : attachmentPayload(JSON.stringify({ f: { '\u0000': 0 } }), [Buffer.from('good')]);
          peer.write(rawFrame({ kind: EFrameKind.Response, flags: ATTACHED, id: frame.id, payload }));
        }
      });
      await expectIpcError(pair.server.requestClient(peer.clientId, 'bad', 1, { timeout: 5_000 }), 'PROTOCOL_ERROR');
      assert.deepStrictEqual(await pair.server.requestClient(peer.clientId, 'good', 1, { timeout: 5_000 }), { f: Buffer.from('good') });
    });

    test('a malformed publish reaches subscribers as an error event (PROTOCOL_ERROR), not a crash', T, async (t) => {
      const pair = await pairOf(kind, 'json');
      t.after(() => pair.close());
      const seen: unknown[] = [];
      await pair.client.subscribe('raw.topic', (data) => void seen.push(data));
      const errors: IpcError[] = [];
      pair.client.on('error', (error: IpcError) => errors.push(error));
      const peer = await connectRawPeer(pair.endpoint, pair.id, 'json');
      t.after(() => peer.destroy());
      peer.write(rawFrame({ kind: EFrameKind.Publish, flags: ATTACHED, type: 'raw.topic', payload: MALFORMED[3].payload }));
      peer.write(rawFrame({ kind: EFrameKind.Publish, flags: ATTACHED, type: 'raw.topic', payload: attachmentPayload(JSON.stringify([{ '\u0000': 0 }]), [Buffer.from('ok')]) }));
      await waitUntil(() => seen.length === 1, 5_000, 'the valid publish');
      assert.deepStrictEqual(seen, [[Buffer.from('ok')]]);
      assert.deepEqual(errors.map((e) => e.code), ['PROTOCOL_ERROR']);
      assert.equal(pair.client.getIsConnected(), true);
    });
  });
}
