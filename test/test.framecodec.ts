// The frame codec on its own: no sockets. Encoding then decoding must give back every frame,
// whatever the chunk boundaries; malformed or oversized input must fail with a coded error
// before anything big is buffered.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  EFrameKind,
  EPayloadEncoding,
  FLAG_HAS_HEADERS,
  FRAME_KIND_MAX,
  FrameDecoder,
  FrameEncoder,
  IpcError,
  defaults,
  encodeFrame,
  type IFrame,
  type IOutgoingFrame,
} from '../ts/internal.js';

interface IDecodeResult {
  frames: IFrame[];
  errors: IpcError[];
  decoder: FrameDecoder;
}

/** A decoder that records what it delivers (payloads copied: they are views into the chunks). */
function recordingDecoder(maxFrameBytes = Infinity): IDecodeResult {
  const result: IDecodeResult = { frames: [], errors: [], decoder: undefined as unknown as FrameDecoder };
  result.decoder = new FrameDecoder(maxFrameBytes, {
    onFrame: (frame) => result.frames.push({ ...frame, payload: Buffer.from(frame.payload) }),
    onFrameError: (error) => result.errors.push(error),
  });
  return result;
}

/** Splits `bytes` at the given offsets (any order, duplicates and out-of-range ignored). */
function splitAt(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.filter((c) => c > 0 && c < bytes.length))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let start = 0;
  for (const point of points) {
    chunks.push(bytes.subarray(start, point));
    start = point;
  }
  chunks.push(bytes.subarray(start));
  return chunks;
}

/** The fields of a decoded frame a test compares, payload copied. */
type TExpectedFrame = Pick<IFrame, 'kind' | 'flags' | 'id' | 'type' | 'headers'> & { payload: Buffer };

/** What decoding an outgoing frame must give back. */
function expectedOf(frame: IOutgoingFrame): TExpectedFrame {
  const expected: TExpectedFrame = {
    kind: frame.kind,
    flags: frame.encoding | (frame.headers === undefined ? 0 : FLAG_HAS_HEADERS),
    id: frame.id >>> 0,
    type: frame.type,
    payload: frame.payload === undefined ? Buffer.alloc(0) : Buffer.from(frame.payload as Buffer),
  };
  if (frame.headers !== undefined) expected.headers = JSON.parse(JSON.stringify(frame.headers));
  return expected;
}

function assertFramesEqual(actual: IFrame[], input: IOutgoingFrame[]): void {
  assert.equal(actual.length, input.length, 'frame count');
  for (let i = 0; i < input.length; i++) {
    const expected = expectedOf(input[i]);
    const got = actual[i];
    assert.equal(got.kind, expected.kind, `frame ${i} kind`);
    assert.equal(got.flags, expected.flags, `frame ${i} flags`);
    assert.equal(got.id, expected.id, `frame ${i} id`);
    assert.equal(got.type, expected.type, `frame ${i} type`);
    assert.deepEqual(got.headers, expected.headers, `frame ${i} headers`);
    assert.ok(got.payload.equals(expected.payload), `frame ${i} payload (${got.payload.length} vs ${expected.payload.length} bytes)`);
  }
}

/** A deterministic, non-uniform buffer of `size` bytes (so a misplaced slice shows). */
function patterned(size: number, seed: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  let x = (seed >>> 0) || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf[i] = x & 0xff;
  }
  return buf;
}

// ---- arbitraries --------------------------------------------------------------------------------

const typeArb = fc.oneof(
  fc.constant(''),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
);

const headersArb = fc.option(fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }), { nil: undefined });

const payloadArb: fc.Arbitrary<Buffer | string | undefined> = fc.oneof(
  { weight: 1, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.constant(Buffer.alloc(0)) },
  { weight: 1, arbitrary: fc.constant('') },
  { weight: 4, arbitrary: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)) },
  { weight: 3, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }) },
  // Large payloads: buffers past the copy threshold go by reference, strings past the slab are converted.
  {
    weight: 2,
    arbitrary: fc
      .record({ size: fc.integer({ min: defaults.WRITE_COPY_THRESHOLD_BYTES - 2, max: 3 * defaults.WRITE_SLAB_BYTES }), seed: fc.integer() })
      .map(({ size, seed }) => patterned(size, seed)),
  },
  {
    weight: 1,
    arbitrary: fc
      .record({ unit: fc.string({ unit: 'binary', minLength: 1, maxLength: 8 }), repeat: fc.integer({ min: 2_000, max: 30_000 }) })
      .map(({ unit, repeat }) => unit.repeat(repeat)),
  },
);

const frameArb: fc.Arbitrary<IOutgoingFrame> = fc
  .record({
    kind: fc.integer({ min: 1, max: FRAME_KIND_MAX }),
    encoding: fc.constantFrom(EPayloadEncoding.None, EPayloadEncoding.Json, EPayloadEncoding.V8, EPayloadEncoding.Binary),
    id: fc.integer({ min: 0, max: 0xffffffff }),
    type: typeArb,
    headers: headersArb,
    payload: payloadArb,
  })
  .map((f) => {
    const frame: IOutgoingFrame = { kind: f.kind as EFrameKind, encoding: f.encoding, id: f.id, type: f.type, payload: f.payload };
    if (f.headers !== undefined) frame.headers = f.headers as Record<string, unknown>;
    return frame;
  });

/** Encodes with one FrameEncoder, taking segments at the given frame indexes (a real transport takes once per tick). */
function encodeAll(frames: IOutgoingFrame[], takeAfter: Set<number>): Buffer {
  const encoder = new FrameEncoder();
  const segments: Buffer[] = [];
  let total = 0;
  frames.forEach((frame, i) => {
    total += encoder.append(frame, Infinity);
    if (takeAfter.has(i)) segments.push(...encoder.take());
  });
  segments.push(...encoder.take());
  assert.equal(encoder.pendingBytes, 0);
  // Concatenated only now: a slab rewritten under an earlier taken view would show here.
  const bytes = Buffer.concat(segments);
  assert.equal(bytes.length, total, 'append() reports the wire size');
  return bytes;
}

// ---- properties ---------------------------------------------------------------------------------

describe('frame codec: round trip (property)', () => {
  test('any frames, split at any points, decode to the input', () => {
    fc.assert(
      fc.property(
        fc.array(frameArb, { minLength: 1, maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        (frames, takes, rawCuts) => {
          const bytes = encodeAll(frames, new Set(takes.map((t) => t % frames.length)));
          const cuts = rawCuts.map((c) => c % (bytes.length + 1));
          const { frames: decoded, errors, decoder } = recordingDecoder();
          for (const chunk of splitAt(bytes, cuts)) decoder.push(chunk);
          assert.deepEqual(errors, []);
          assertFramesEqual(decoded, frames);
          assert.equal(decoder.bufferedBytes, 0);
        },
      ),
      { numRuns: 150 },
    );
  });

  test('one byte at a time decodes to the input', () => {
    const smallFrameArb = frameArb.filter((f) => f.payload === undefined || f.payload.length < 2_000);
    fc.assert(
      fc.property(fc.array(smallFrameArb, { minLength: 1, maxLength: 6 }), (frames) => {
        const bytes = encodeAll(frames, new Set());
        const { frames: decoded, errors, decoder } = recordingDecoder();
        for (let i = 0; i < bytes.length; i++) decoder.push(bytes.subarray(i, i + 1));
        assert.deepEqual(errors, []);
        assertFramesEqual(decoded, frames);
      }),
      { numRuns: 60 },
    );
  });

  test('encodeFrame gives the same bytes as a FrameEncoder', () => {
    fc.assert(
      fc.property(frameArb, (frame) => {
        const encoder = new FrameEncoder();
        encoder.append(frame, Infinity);
        assert.ok(encodeFrame(frame).equals(Buffer.concat(encoder.take())));
      }),
      { numRuns: 100 },
    );
  });
});

// ---- hand-made bytes ----------------------------------------------------------------------------

function sampleFrame(type = 'hello', payload: Buffer | string = 'payload', id = 7): IOutgoingFrame {
  return { kind: EFrameKind.Message, encoding: EPayloadEncoding.Binary, id, type, payload };
}

/** A raw frame: prefix | kind | flags | id | typeLen | rest. */
function rawFrame(kind: number, flags: number, typeLen: number, rest: Buffer, lengthOverride?: number): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt32BE(lengthOverride ?? 8 + rest.length, 0);
  header[4] = kind;
  header[5] = flags;
  header.writeUInt32BE(1, 6);
  header.writeUInt16BE(typeLen, 10);
  return Buffer.concat([header, rest]);
}

describe('frame codec: hand-made bytes', () => {
  test('a length prefix split across chunks', () => {
    const frame = sampleFrame('split', 'abc');
    const bytes = encodeFrame(frame);
    for (const cuts of [[1], [2], [3], [1, 2, 3], [1, 3, 5], [4]]) {
      const { frames, errors, decoder } = recordingDecoder();
      for (const chunk of splitAt(bytes, cuts)) decoder.push(chunk);
      assert.deepEqual(errors, []);
      assertFramesEqual(frames, [frame]);
    }
  });

  test('many frames in one chunk, then a partial one completed later', () => {
    const input: IOutgoingFrame[] = [];
    for (let i = 0; i < 1_000; i++) input.push(sampleFrame(`t${i % 7}`, `p${i}`, i));
    const tail = sampleFrame('tail', Buffer.alloc(100, 1), 4242);
    const tailBytes = encodeFrame(tail);
    const bytes = Buffer.concat([...input.map((f) => encodeFrame(f)), tailBytes.subarray(0, 30)]);
    const { frames, errors, decoder } = recordingDecoder();
    decoder.push(bytes);
    assertFramesEqual(frames, input);
    assert.equal(decoder.bufferedBytes, 30);
    decoder.push(tailBytes.subarray(30));
    assert.deepEqual(errors, []);
    assertFramesEqual(frames, [...input, tail]);
    assert.equal(decoder.bufferedBytes, 0);
  });

  test('empty chunks are harmless', () => {
    const frame = sampleFrame();
    const bytes = encodeFrame(frame);
    const { frames, decoder } = recordingDecoder();
    decoder.push(Buffer.alloc(0));
    decoder.push(bytes.subarray(0, 5));
    decoder.push(Buffer.alloc(0));
    decoder.push(bytes.subarray(5));
    assertFramesEqual(frames, [frame]);
  });

  test('a 0xFFFFFFFF prefix fails with MESSAGE_TOO_LARGE before anything is buffered', () => {
    const { frames, errors, decoder } = recordingDecoder(1024 * 1024);
    const prefix = Buffer.from([0xff, 0xff, 0xff, 0xff]);
    decoder.push(Buffer.concat([prefix, Buffer.alloc(64 * 1024, 0xab)]));
    assert.equal(errors.length, 1);
    assert.equal(errors[0].code, 'MESSAGE_TOO_LARGE');
    assert.equal(decoder.bufferedBytes, 0);
    // Further input is ignored: no frames, no second error, nothing held.
    decoder.push(encodeFrame(sampleFrame()));
    decoder.push(Buffer.alloc(1024 * 1024));
    assert.equal(frames.length, 0);
    assert.equal(errors.length, 1);
    assert.equal(decoder.bufferedBytes, 0);
  });

  test('an oversized prefix split across chunks is refused as soon as it is complete', () => {
    const { errors, decoder } = recordingDecoder(1024);
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(1025);
    decoder.push(prefix.subarray(0, 2));
    assert.equal(errors.length, 0);
    assert.ok(decoder.bufferedBytes <= 2);
    decoder.push(Buffer.concat([prefix.subarray(2), Buffer.alloc(500)]));
    assert.equal(errors.length, 1);
    assert.equal(errors[0].code, 'MESSAGE_TOO_LARGE');
    assert.equal(decoder.bufferedBytes, 0);
  });

  test('a frame exactly at maxFrameBytes is accepted, one byte more is not', () => {
    const limit = 100;
    const atLimit = encodeFrame(sampleFrame('', Buffer.alloc(limit - 8)));
    assert.equal(atLimit.readUInt32BE(0), limit);
    const ok = recordingDecoder(limit);
    ok.decoder.push(atLimit);
    assert.equal(ok.frames.length, 1);
    assert.deepEqual(ok.errors, []);
    const over = recordingDecoder(limit);
    over.decoder.push(encodeFrame(sampleFrame('', Buffer.alloc(limit - 7))));
    assert.equal(over.errors[0]?.code, 'MESSAGE_TOO_LARGE');
  });

  test('a prefix smaller than the fixed header is a PROTOCOL_ERROR', () => {
    for (const length of [0, 1, 7]) {
      const { frames, errors, decoder } = recordingDecoder();
      const bytes = Buffer.alloc(4 + 20);
      bytes.writeUInt32BE(length, 0);
      decoder.push(bytes);
      assert.equal(errors.length, 1, `length ${length}`);
      assert.equal(errors[0].code, 'PROTOCOL_ERROR');
      assert.equal(frames.length, 0);
    }
  });

  test('an unknown kind is a PROTOCOL_ERROR', () => {
    for (const kind of [0, FRAME_KIND_MAX + 1, 0xff]) {
      const { frames, errors, decoder } = recordingDecoder();
      decoder.push(rawFrame(kind, 0, 0, Buffer.alloc(0)));
      assert.equal(errors[0]?.code, 'PROTOCOL_ERROR', `kind ${kind}`);
      assert.equal(frames.length, 0);
    }
  });

  test('unknown flag bits are a PROTOCOL_ERROR', () => {
    for (const flags of [0b1000, 0b1000_0000, 0xff]) {
      const { frames, errors, decoder } = recordingDecoder();
      decoder.push(rawFrame(EFrameKind.Message, flags, 0, Buffer.alloc(0)));
      assert.equal(errors[0]?.code, 'PROTOCOL_ERROR', `flags ${flags}`);
      assert.equal(frames.length, 0);
    }
  });

  test('a type length running past the frame end is a PROTOCOL_ERROR', () => {
    const { frames, errors, decoder } = recordingDecoder();
    decoder.push(rawFrame(EFrameKind.Message, 0, 50, Buffer.from('short')));
    assert.equal(errors[0]?.code, 'PROTOCOL_ERROR');
    assert.equal(frames.length, 0);
  });

  test('headers that are not a JSON object are a PROTOCOL_ERROR', () => {
    const cases: Array<[string, Buffer]> = [];
    const withHeaders = (json: string, declared?: number) => {
      const body = Buffer.from(json, 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32BE(declared ?? body.length);
      return Buffer.concat([len, body]);
    };
    cases.push(['not json', withHeaders('{nope')]);
    cases.push(['an array', withHeaders('[1,2]')]);
    cases.push(['null', withHeaders('null')]);
    cases.push(['a number', withHeaders('42')]);
    cases.push(['length past the end', withHeaders('{}', 100)]);
    cases.push(['no length field', Buffer.from([0, 0])]);
    for (const [what, rest] of cases) {
      const { frames, errors, decoder } = recordingDecoder();
      decoder.push(rawFrame(EFrameKind.Message, FLAG_HAS_HEADERS, 0, rest));
      assert.equal(errors[0]?.code, 'PROTOCOL_ERROR', what);
      assert.equal(frames.length, 0, what);
    }
  });

  test('frames before a bad one are delivered, nothing after it', () => {
    const good = sampleFrame('good');
    const { frames, errors, decoder } = recordingDecoder();
    decoder.push(Buffer.concat([encodeFrame(good), rawFrame(0, 0, 0, Buffer.alloc(0)), encodeFrame(good)]));
    assertFramesEqual(frames, [good]);
    assert.equal(errors.length, 1);
  });
});

describe('frame codec: encoder', () => {
  test('an oversized frame is refused with MESSAGE_TOO_LARGE and nothing is queued', () => {
    const encoder = new FrameEncoder();
    encoder.append(sampleFrame('before'), 1024);
    const pending = encoder.pendingBytes;
    for (const payload of [Buffer.alloc(2_000), 'x'.repeat(2_000), Buffer.alloc(100_000)]) {
      assert.throws(() => encoder.append(sampleFrame('big', payload), 1024), (err: unknown) => err instanceof IpcError && err.code === 'MESSAGE_TOO_LARGE');
      assert.equal(encoder.pendingBytes, pending);
    }
    encoder.append(sampleFrame('after'), 1024);
    const { frames, errors, decoder } = recordingDecoder();
    for (const segment of encoder.take()) decoder.push(segment);
    assert.deepEqual(errors, []);
    assert.deepEqual(frames.map((f) => f.type), ['before', 'after']);
  });

  test('a type longer than 65535 bytes is a PROTOCOL_ERROR', () => {
    assert.throws(() => encodeFrame(sampleFrame('é'.repeat(40_000))), (err: unknown) => err instanceof IpcError && err.code === 'PROTOCOL_ERROR');
    // 65535 bytes exactly is fine.
    const frame = sampleFrame('a'.repeat(0xffff));
    const { frames, decoder } = recordingDecoder();
    decoder.push(encodeFrame(frame));
    assertFramesEqual(frames, [frame]);
  });

  test('large buffer payloads are queued by reference, small ones copied into one slab', () => {
    const encoder = new FrameEncoder();
    const big = patterned(defaults.WRITE_COPY_THRESHOLD_BYTES, 1);
    const small = Buffer.from('small');
    encoder.append(sampleFrame('a', small), Infinity);
    encoder.append(sampleFrame('b', small), Infinity);
    encoder.append(sampleFrame('c', big), Infinity);
    encoder.append(sampleFrame('d', small), Infinity);
    const segments = encoder.take();
    assert.ok(segments.includes(big), 'the big payload is one of the segments, not a copy');
    // header(a) + a + header(b) + b + header(c) in one segment, big, then d in another.
    assert.equal(segments.length, 3);
  });
});

describe('frame codec: large frames', () => {
  /** Feeds `bytes` in chunks of `chunk`, counting the bytes copied by Buffer.concat and Buffer#copy and the most held against what had arrived. */
  function feedCounting(bytes: Buffer, chunk: number, mayHold?: (bytes: number) => boolean) {
    let copied = 0;
    let concatCalls = 0;
    let worstHeldRatio = 0;
    const frames: IFrame[] = [];
    const originalConcat = Buffer.concat;
    const originalCopy = Buffer.prototype.copy;
    Buffer.concat = function (list: readonly Uint8Array[], totalLength?: number) {
      concatCalls++;
      const result = originalConcat.call(Buffer, list, totalLength);
      copied += result.length;
      return result;
    } as typeof Buffer.concat;
    Buffer.prototype.copy = function (this: Buffer, ...args: Parameters<Buffer['copy']>) {
      const n = originalCopy.apply(this, args);
      copied += n;
      return n;
    };
    const started = performance.now();
    try {
      const decoder = new FrameDecoder(64 * 1024 * 1024, {
        onFrame: (frame) => frames.push({ ...frame, payload: Buffer.from(frame.payload) }),
        onFrameError: (error) => assert.fail(error),
        ...(mayHold ? { mayHold } : {}),
      });
      for (let o = 0; o < bytes.length; o += chunk) {
        decoder.push(bytes.subarray(o, Math.min(o + chunk, bytes.length)));
        const arrived = Math.min(o + chunk, bytes.length);
        if (decoder.bufferedBytes > 0) worstHeldRatio = Math.max(worstHeldRatio, decoder.bufferedBytes / arrived);
      }
    } finally {
      Buffer.concat = originalConcat;
      Buffer.prototype.copy = originalCopy;
    }
    // Buffer.from above copies each delivered payload once more: not the decoder's.
    const delivered = frames.reduce((n, f) => n + f.payload.length, 0);
    return { frames, copied: copied - delivered, concatCalls, worstHeldRatio, elapsedMs: performance.now() - started };
  }

  test('a 32 MiB frame fed in 64 KiB chunks is copied once, assembled in place from three quarters (held <= 4/3 of what arrived)', () => {
    const payload = patterned(32 * 1024 * 1024, 99);
    const bytes = encodeFrame({ kind: EFrameKind.Message, encoding: EPayloadEncoding.Binary, id: 1, type: 'big', payload });
    const run = feedCounting(bytes, 64 * 1024);
    assert.equal(run.frames.length, 1);
    assert.ok(run.frames[0].payload.equals(payload));
    assert.equal(run.concatCalls, 0, 'no join at the end: the last quarter was copied in place as it came');
    assert.ok(run.copied <= bytes.length, `copied ${run.copied} bytes for a ${bytes.length}-byte frame`);
    assert.ok(run.worstHeldRatio <= 4 / 3 + 1e-9, `held ${run.worstHeldRatio.toFixed(3)}x what had arrived`);
    assert.ok(run.worstHeldRatio > 1, 'the whole frame was held once three quarters had arrived');
    // Generous: a quadratic join would copy ~8 GiB here.
    assert.ok(run.elapsedMs < 5_000, `took ${run.elapsedMs} ms`);
  });

  test('when the sink says no (a server under partial-budget pressure), chunks are kept as they came and joined once', () => {
    const payload = patterned(8 * 1024 * 1024, 7);
    const bytes = encodeFrame({ kind: EFrameKind.Message, encoding: EPayloadEncoding.Binary, id: 1, type: 'big', payload });
    const asked: number[] = [];
    const run = feedCounting(bytes, 64 * 1024, (n) => {
      asked.push(n);
      return false;
    });
    assert.ok(run.frames[0].payload.equals(payload));
    assert.equal(run.concatCalls, 1);
    assert.ok(run.copied <= bytes.length, `copied ${run.copied} bytes`);
    assert.ok(run.worstHeldRatio <= 1, `held ${run.worstHeldRatio.toFixed(3)}x what had arrived`);
    assert.ok(asked.length > 0 && asked.every((n) => n === bytes.length), 'asked for the whole frame');
  });

  test('large frames back to back, split anywhere, decode exactly (the next frame starts in the chunk that ends one)', () => {
    const payloads = [300 * 1024, 256 * 1024 - 20, 1024 * 1024 + 3, 17, 700 * 1024].map((size, i) => patterned(size, i + 1));
    const bytes = Buffer.concat(payloads.map((payload, i) => encodeFrame({ kind: EFrameKind.Message, encoding: EPayloadEncoding.Binary, id: i + 1, type: 't', payload })));
    for (const chunk of [1000, 4096, 65_536, 65_537, 200_000, 1_000_003]) {
      const run = feedCounting(bytes, chunk);
      assert.deepEqual(run.frames.map((f) => f.id), [1, 2, 3, 4, 5], `chunk ${chunk}`);
      run.frames.forEach((f, i) => assert.ok(f.payload.equals(payloads[i]), `chunk ${chunk}, frame ${i + 1}`));
    }
  });
});
