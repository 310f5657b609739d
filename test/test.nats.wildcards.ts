// Differential: smartipc's topicMatches against what a real nats-server delivers, for random
// patterns and topics (fast-check), through the bridge's subject mapping (escaped segments
// included). Plus the subject mapping itself: escaping is injective and round-trips.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describeInvalidPattern, describeInvalidTopic, topicMatches } from '../ts/index.js';
import { decodeTopic, decodeType, encodePattern, encodeTopic, encodeType, escapeToken, unescapeToken } from '../ts/nats/index.js';
import { uniqueId } from './helpers/fixtures.js';
import { NatsScene, natsServerForFile } from './helpers/nats-fixtures.js';

const nats = natsServerForFile();

// Plain segments and ones that need escaping (space, '~', non-ASCII).
const SEGMENTS = ['a', 'b', 'c', 'd e', '~x', 'ü'];
const segment = fc.constantFrom(...SEGMENTS);
const topicArb = fc.array(segment, { minLength: 1, maxLength: 4 }).map((parts) => parts.join('.'));
const patternArb = fc
  .tuple(fc.array(fc.oneof({ weight: 3, arbitrary: segment }, { weight: 2, arbitrary: fc.constant('*') }), { minLength: 0, maxLength: 3 }), fc.boolean())
  .filter(([parts, tail]) => parts.length > 0 || tail)
  .map(([parts, tail]) => [...parts, ...(tail ? ['>'] : [])].join('.'));

test('subject mapping: tokens, types and topics round-trip; escaped tokens never hold separators or wildcards', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 20 }), (text) => {
      const token = escapeToken(text);
      assert.equal(unescapeToken(token), text);
      assert.ok(!/[.*>\s]/.test(token), `escaped token ${JSON.stringify(token)}`);
      assert.equal(decodeType(encodeType(text)), text);
    }),
    { numRuns: 500 },
  );
  fc.assert(
    fc.property(fc.array(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 5 }), (parts) => {
      fc.pre(parts.every((part) => !part.includes('.')));
      const topic = parts.join('.');
      fc.pre(describeInvalidTopic(topic) === undefined);
      assert.equal(decodeTopic(encodeTopic(topic)), topic);
      assert.equal(encodeTopic(topic).split('.').length, parts.length, 'one subject token per topic segment');
    }),
    { numRuns: 500 },
  );
  assert.equal(encodeType('user.get'), 'user.get', 'plain types stay readable in a monitor');
  assert.equal(encodePattern('user.*.>'), 'user.*.>');
  assert.equal(encodePattern('a b.*'), `${escapeToken('a b')}.*`);
});

test('differential: for random patterns and topics, nats-server delivers exactly what topicMatches says', { timeout: 120_000 }, async (t) => {
  const s = new NatsScene(nats.server);
  t.after(() => s.close());
  const bridge = await s.bridge();
  let runs = 0;
  await fc.assert(
    fc.asyncProperty(fc.uniqueArray(patternArb, { minLength: 1, maxLength: 5 }), fc.uniqueArray(topicArb, { minLength: 1, maxLength: 8 }), async (patterns, topics) => {
      runs++;
      for (const pattern of patterns) assert.equal(describeInvalidPattern(pattern), undefined, pattern);
      const id = uniqueId('wild');
      const subscriber = bridge.createClient({ id });
      const publisher = bridge.createClient({ id });
      await subscriber.connect();
      await publisher.connect();
      try {
        const delivered = new Map<string, string[]>(patterns.map((p) => [p, []]));
        for (const pattern of patterns) {
          await subscriber.subscribe(pattern, (_data, info) => {
            delivered.get(pattern)!.push(info.topic);
          });
        }
        for (const topic of topics) await publisher.publish(topic, topic);
        // Same connection: once nats-server answers this PING, every delivery has been read.
        await bridge.connection.flush();
        for (const pattern of patterns) {
          const expected = topics.filter((topic) => topicMatches(pattern, topic)).sort();
          assert.deepEqual([...delivered.get(pattern)!].sort(), expected, `pattern "${pattern}" over ${JSON.stringify(topics)}`);
        }
      } finally {
        await subscriber.disconnect();
        await publisher.disconnect();
      }
    }),
    { numRuns: 60 },
  );
  assert.equal(runs >= 60, true);
});

test('differential: any string is refused as a pattern by the bridge exactly when smartipc calls it invalid', { timeout: 30_000 }, async (t) => {
  const s = new NatsScene(nats.server);
  t.after(() => s.close());
  const bridge = await s.bridge();
  const client = await s.client(bridge, { id: uniqueId('rules') });
  await fc.assert(
    fc.asyncProperty(fc.string({ unit: fc.constantFrom('a', 'b', '.', '*', '>', ' '), maxLength: 8 }), async (pattern) => {
      const invalid = describeInvalidPattern(pattern) !== undefined;
      const handler = () => undefined;
      const outcome = await client.subscribe(pattern, handler).then(
        () => 'ok',
        (err: { code?: string }) => err.code,
      );
      if (invalid) assert.equal(outcome, 'INVALID_ARGUMENT', `"${pattern}" must be refused`);
      else {
        assert.equal(outcome, 'ok', `"${pattern}" must be accepted`);
        await client.unsubscribe(pattern, handler);
      }
    }),
    { numRuns: 300 },
  );
});
