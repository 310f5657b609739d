// The 'advanced' serialization sends plain data as JSON and everything else as a structured clone:
// every value must come back exactly as a structured clone would bring it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import { EPayloadEncoding, decodePayload, encodePayload } from '../../ts/internal.js';

function roundTrip(value: unknown): { encoding: EPayloadEncoding; back: unknown } {
  const encoded = encodePayload(value, 'advanced', 'test');
  const bytes = encoded.payload === undefined ? Buffer.alloc(0) : typeof encoded.payload === 'string' ? Buffer.from(encoded.payload, 'utf8') : encoded.payload;
  return { encoding: encoded.encoding, back: decodePayload(false, encoded.encoding, bytes, 0, bytes.length) };
}

class Point {
  constructor(public x: number) {}
}

describe("'advanced' payloads: JSON for plain data, a structured clone for the rest", () => {
  const plain: Array<[string, unknown]> = [
    ['a string with a lone surrogate', 'a\ud800b'],
    ['numbers', [0, 1.5, -7, Number.MAX_SAFE_INTEGER]],
    ['booleans and null', { t: true, f: false, n: null }],
    ['nested objects and arrays', { a: [{ b: [[1], { c: 'd' }] }], e: {} }],
    ['an object without a prototype', Object.assign(Object.create(null) as object, { k: 1 })],
    ['a key named __proto__', JSON.parse('{"__proto__":{"x":1}}')],
    ['31 levels', JSON.parse('['.repeat(31) + ']'.repeat(31))],
  ];
  for (const [name, value] of plain) {
    test(`plain: ${name} goes as JSON and reads back as a structured clone would`, () => {
      const { encoding, back } = roundTrip(value);
      assert.equal(encoding, EPayloadEncoding.Json, name);
      assert.deepStrictEqual(back, v8.deserialize(v8.serialize(value)));
    });
  }

  const cloned: Array<[string, unknown, (back: unknown) => void]> = [
    ['-0', -0, (back) => assert.ok(Object.is(back, -0), 'still -0')],
    ['NaN in an array', [NaN], (back) => assert.ok(Number.isNaN((back as number[])[0]), 'still NaN')],
    ['Infinity', { i: Infinity }, (back) => assert.equal((back as { i: number }).i, Infinity)],
    ['undefined in an object', { u: undefined }, (back) => assert.ok('u' in (back as object), 'the key stays')],
    ['a hole in an array', [1, , 3], (back) => assert.equal((back as unknown[]).length, 3)], // eslint-disable-line no-sparse-arrays
    ['a Date', { at: new Date(5) }, (back) => assert.deepStrictEqual(back, { at: new Date(5) })],
    ['a Map', new Map([[1, 'a']]), (back) => assert.deepStrictEqual(back, new Map([[1, 'a']]))],
    ['a BigInt', { n: 10n }, (back) => assert.equal((back as { n: bigint }).n, 10n)],
    ['a nested Buffer', { b: Buffer.from('xy') }, (back) => assert.ok(Buffer.isBuffer((back as { b: unknown }).b), 'a Buffer')],
    ['a class instance (no toJSON involved)', new Point(3), (back) => assert.deepStrictEqual({ ...(back as object) }, { x: 3 })],
    ['an object with toJSON', { toJSON: undefined, v: 1 }, (back) => assert.ok('toJSON' in (back as object), 'the key stays')],
    ['a cycle', (() => { const o: Record<string, unknown> = {}; o.self = o; return o; })(), (back) => assert.equal((back as { self: unknown }).self, back)],
    ['33 levels', JSON.parse('['.repeat(33) + ']'.repeat(33)), (back) => assert.deepStrictEqual(back, JSON.parse('['.repeat(33) + ']'.repeat(33)))],
  ];
  for (const [name, value, check] of cloned) {
    test(`cloned: ${name} goes as a structured clone and reads back as one`, () => {
      const { encoding, back } = roundTrip(value);
      assert.equal(encoding, EPayloadEncoding.V8, name);
      check(back);
    });
  }
});
