// Streams over NATS, against a real nats-server: chunked below max_payload with end-to-end credit,
// 8 MiB to a slow reader and 64 MiB at full speed, sha256 checked, memory bounded on both ends
// (both ends live in this process: what is in flight between the source and the reader stays
// within the credit windows, and the heap never holds the stream).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import type { IStreamInfo } from '../ts/index.js';
import { expectIpcError, uniqueId, withTimeout } from './helpers/fixtures.js';
import { NatsScene, natsServerForFile } from './helpers/nats-fixtures.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const nats = natsServerForFile();

const MiB = 1024 * 1024;

/** `total` bytes of pseudo-random data in 1 MiB pieces, generated as read; counts what was taken. */
function source(total: number, counter: { produced: number }): Readable {
  let seed = crypto.randomBytes(32);
  return new Readable({
    highWaterMark: MiB,
    read() {
      if (counter.produced >= total) {
        this.push(null);
        return;
      }
      const size = Math.min(MiB, total - counter.produced);
      const piece = Buffer.allocUnsafe(size);
      for (let offset = 0; offset < size; offset += 32) {
        seed = crypto.createHash('sha256').update(seed).digest();
        seed.copy(piece, offset, 0, Math.min(32, size - offset));
      }
      counter.produced += size;
      this.push(piece);
    },
  });
}

interface ITransfer {
  sentSha256: string;
  receivedSha256: string;
  received: number;
  info: IStreamInfo;
  maxInFlight: number;
  peakHeapBytes: number;
  peakArrayBuffers: number;
  ms: number;
}

async function transfer(s: NatsScene, total: number, readDelayMs: number): Promise<ITransfer> {
  const [senderBridge, hostBridge] = [await s.bridge(), await s.bridge()];
  const server = await s.server();
  await hostBridge.expose(server);
  const client = await s.client(senderBridge, { id: server.options.id });
  const counter = { produced: 0 };
  let consumed = 0;
  let maxInFlight = 0;
  gc();
  const baseline = process.memoryUsage();
  let peakHeapBytes = 0;
  let peakArrayBuffers = 0;
  const sampler = setInterval(() => {
    gc();
    const usage = process.memoryUsage();
    peakHeapBytes = Math.max(peakHeapBytes, usage.heapUsed - baseline.heapUsed);
    peakArrayBuffers = Math.max(peakArrayBuffers, usage.arrayBuffers - baseline.arrayBuffers);
  }, 50);
  const received = new Promise<{ sha256: string; bytes: number; info: IStreamInfo }>((resolve, reject) => {
    server.once('stream', async (info, readable) => {
      const hash = crypto.createHash('sha256');
      let bytes = 0;
      try {
        for await (const chunk of readable as AsyncIterable<Buffer>) {
          hash.update(chunk);
          bytes += chunk.length;
          consumed = bytes;
          maxInFlight = Math.max(maxInFlight, counter.produced - consumed);
          if (readDelayMs > 0) await new Promise((r) => setTimeout(r, readDelayMs));
        }
        resolve({ sha256: hash.digest('hex'), bytes, info });
      } catch (err) {
        reject(err);
      }
    });
  });
  const sentHash = crypto.createHash('sha256');
  const data = source(total, counter);
  data.on('data', (chunk: Buffer) => sentHash.update(chunk));
  data.pause();
  const started = performance.now();
  try {
    await withTimeout(client.sendStream(data, { checksum: 'sha256', meta: { name: 'blob' }, headers: { purpose: 'test' } }), 120_000, 'sendStream');
    const result = await withTimeout(received, 30_000, 'the receiver');
    return {
      sentSha256: sentHash.digest('hex'),
      receivedSha256: result.sha256,
      received: result.bytes,
      info: result.info,
      maxInFlight,
      peakHeapBytes,
      peakArrayBuffers,
      ms: performance.now() - started,
    };
  } finally {
    clearInterval(sampler);
  }
}

test('an 8 MiB stream to a slow reader: sha256 intact, the sender held back by credit (in flight stays within the windows)', { timeout: 120_000 }, async (t) => {
  const s = new NatsScene(nats.server);
  t.after(() => s.close());
  const result = await transfer(s, 8 * MiB, 2);
  assert.equal(result.received, 8 * MiB);
  assert.equal(result.receivedSha256, result.sentSha256);
  assert.deepEqual(result.info.meta, { name: 'blob' });
  assert.equal(result.info.headers.purpose, 'test');
  // NATS window 2 MiB + the local hop's 4 MiB window + readable buffers and one source piece.
  assert.ok(result.maxInFlight <= 9 * MiB, `in flight reached ${(result.maxInFlight / MiB).toFixed(1)} MiB`);
  assert.ok(result.peakArrayBuffers < 32 * MiB, `buffers grew by ${(result.peakArrayBuffers / MiB).toFixed(1)} MiB`);
});

test('a 64 MiB stream: sha256 intact, memory bounded on both ends (never the whole stream in memory)', { timeout: 180_000 }, async (t) => {
  const s = new NatsScene(nats.server);
  t.after(() => s.close());
  const result = await transfer(s, 64 * MiB, 0);
  assert.equal(result.received, 64 * MiB);
  assert.equal(result.receivedSha256, result.sentSha256);
  assert.ok(result.maxInFlight <= 9 * MiB, `in flight reached ${(result.maxInFlight / MiB).toFixed(1)} MiB`);
  assert.ok(result.peakArrayBuffers < 32 * MiB, `buffers grew by ${(result.peakArrayBuffers / MiB).toFixed(1)} MiB`);
  assert.ok(result.peakHeapBytes < 64 * MiB, `heap grew by ${(result.peakHeapBytes / MiB).toFixed(1)} MiB`);
  t.diagnostic(`64 MiB in ${Math.round(result.ms)} ms (${((64 * 1000) / result.ms).toFixed(1)} MiB/s), in flight <= ${(result.maxInFlight / MiB).toFixed(1)} MiB, buffers +${(result.peakArrayBuffers / MiB).toFixed(1)} MiB`);
});

test('sendFile over NATS: meta (type, basename, size) and a sha256 the receiving bridge checks', { timeout: 30_000 }, async (t) => {
  const s = new NatsScene(nats.server);
  t.after(() => s.close());
  const file = path.join(os.tmpdir(), `smartipc-nats-${process.pid}.bin`);
  const bytes = crypto.randomBytes(3 * MiB + 17);
  fs.writeFileSync(file, bytes);
  t.after(() => fs.rmSync(file, { force: true }));
  const [a, b] = [await s.bridge(), await s.bridge()];
  const server = await s.server();
  await b.expose(server);
  const client = await s.client(a, { id: server.options.id });
  const got = new Promise<{ info: IStreamInfo; data: Buffer }>((resolve) => {
    server.once('stream', async (info, readable) => {
      const chunks: Buffer[] = [];
      for await (const chunk of readable as AsyncIterable<Buffer>) chunks.push(chunk);
      resolve({ info, data: Buffer.concat(chunks) });
    });
  });
  await client.sendFile(file);
  const { info, data } = await got;
  assert.deepEqual(info.meta, { type: 'file', basename: path.basename(file), size: bytes.length });
  assert.ok(data.equals(bytes));
});

test('streams: no host is NO_HANDLER, no stream listener is NO_HANDLER, a reader that cancels is STREAM_CANCELLED, object mode works', { timeout: 30_000 }, async (t) => {
  const s = new NatsScene(nats.server);
  t.after(() => s.close());
  const [a, b] = [await s.bridge(), await s.bridge()];
  const nobody = await s.client(a, { id: uniqueId('nobody') });
  await expectIpcError(nobody.sendStream(Readable.from([Buffer.alloc(10)], { objectMode: false })), 'NO_HANDLER');

  const server = await s.server();
  await b.expose(server);
  const client = await s.client(a, { id: server.options.id });
  await expectIpcError(client.sendStream(Readable.from([Buffer.alloc(10)], { objectMode: false })), 'NO_HANDLER');

  server.once('stream', (_info, readable) => {
    readable.once('data', () => readable.destroy());
  });
  const counter = { produced: 0 };
  await expectIpcError(client.sendStream(source(16 * MiB, counter)), 'STREAM_CANCELLED', 20_000);
  assert.ok(counter.produced < 16 * MiB, 'the source stopped early');

  const values: unknown[] = [];
  server.once('stream', async (info, readable) => {
    assert.equal(info.objectMode, true);
    for await (const value of readable) values.push(value);
  });
  await client.sendStream(Readable.from([{ a: 1 }, 'two', [3]]));
  assert.deepEqual(values, [{ a: 1 }, 'two', [3]]);
});
