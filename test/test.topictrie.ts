// The pub/sub topic matcher on its own: wildcard rules, validation, removal and pruning, and that a
// match does not scan every pattern. No sockets: the trie is pure.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TopicTrie, topicMatches, describeInvalidPattern, describeInvalidTopic } from '../ts/index.js';
import { isInvalidArgument } from './helpers/fixtures.js';

function matchSorted<T>(trie: TopicTrie<T>, topic: string): string[] {
  return trie.matchingPatterns(topic).sort();
}

describe('topic rules', () => {
  const cases: Array<[pattern: string, topic: string, matches: boolean]> = [
    ['user.login', 'user.login', true],
    ['user.login', 'user.logout', false],
    ['user.login', 'user', false],
    ['user.login', 'user.login.extra', false],
    ['user.*', 'user.login', true],
    ['user.*', 'user.a.b', false],
    ['user.*', 'user', false],
    ['*.login', 'user.login', true],
    ['*.login', 'admin.login', true],
    ['*.login', 'user.logout', false],
    ['*', 'user', true],
    ['*', 'user.login', false],
    ['*.*', 'a.b', true],
    ['*.*', 'a', false],
    ['user.*.created', 'user.42.created', true],
    ['user.*.created', 'user.42.deleted', false],
    ['user.*.created', 'user.42.x.created', false],
    ['user.>', 'user.login', true],
    ['user.>', 'user.a.b.c', true],
    ['user.>', 'user', false],
    ['user.>', 'users.login', false],
    ['>', 'a', true],
    ['>', 'a.b.c', true],
    ['*.>', 'a', false],
    ['*.>', 'a.b', true],
    ['user.*.>', 'user.1', false],
    ['user.*.>', 'user.1.a', true],
    ['User.login', 'user.login', false],
  ];
  for (const [pattern, topic, expected] of cases) {
    test(`"${pattern}" ${expected ? 'matches' : 'does not match'} "${topic}"`, () => {
      assert.equal(topicMatches(pattern, topic), expected);
      const trie = new TopicTrie<string>();
      trie.add(pattern, 's');
      assert.deepEqual(trie.matchingPatterns(topic), expected ? [pattern] : []);
    });
  }

  test('invalid patterns are described and refused with INVALID_ARGUMENT', () => {
    for (const bad of ['', 'a..b', '.a', 'a.', 'a.>.b', '>.a', 'us*r', 'a.b>', 'a.**', '>>']) {
      assert.ok(describeInvalidPattern(bad) !== undefined, `"${bad}" should be invalid`);
      assert.throws(() => new TopicTrie<number>().add(bad, 1), isInvalidArgument);
    }
    for (const good of ['a', 'a.b', '*', '>', 'a.*', 'a.>', '*.*.>', 'a-b_c.d:e', 'ü.日本']) {
      assert.equal(describeInvalidPattern(good), undefined, `"${good}" should be valid`);
    }
    assert.ok(describeInvalidPattern(42) !== undefined);
  });

  test('a published topic must be concrete and have no empty segment', () => {
    for (const bad of ['', 'a.*', 'a.>', '*', 'a..b', '.a', 'a.', 'a*b']) {
      assert.ok(describeInvalidTopic(bad) !== undefined, `"${bad}" should be invalid`);
    }
    for (const good of ['a', 'user.login', 'a.b.c.d']) assert.equal(describeInvalidTopic(good), undefined);
  });
});

describe('TopicTrie', () => {
  test('holds values per pattern, visits each matching pattern once, and counts', () => {
    const trie = new TopicTrie<string>();
    assert.equal(trie.add('user.login', 'a'), true);
    assert.equal(trie.add('user.login', 'a'), false, 'same value twice is one entry');
    trie.add('user.login', 'b');
    trie.add('user.*', 'a');
    trie.add('user.>', 'c');
    trie.add('*.login', 'd');
    trie.add('>', 'e');
    trie.add('order.*', 'f');
    assert.equal(trie.patternCount, 6);
    assert.equal(trie.size, 7);
    const seen = new Map<string, string[]>();
    trie.match('user.login', (pattern, values) => seen.set(pattern, [...values].sort()));
    assert.deepEqual(
      [...seen.entries()].sort(),
      [['*.login', ['d']], ['>', ['e']], ['user.*', ['a']], ['user.>', ['c']], ['user.login', ['a', 'b']]],
    );
    assert.deepEqual(matchSorted(trie, 'user.a.b'), ['>', 'user.>']);
    assert.deepEqual(matchSorted(trie, 'order.1'), ['>', 'order.*']);
    assert.deepEqual(matchSorted(trie, 'nothing'), ['>']);
    assert.equal(trie.has('user.login', 'b'), true);
    assert.equal(trie.has('user.login', 'z'), false);
    assert.equal(trie.has('user.x', 'a'), false);
  });

  test('remove takes out one value, then the pattern, and prunes empty branches', () => {
    const trie = new TopicTrie<number>();
    trie.add('a.b.c', 1);
    trie.add('a.b.c', 2);
    trie.add('a.*.>', 3);
    assert.equal(trie.remove('a.b.c', 1), true);
    assert.equal(trie.remove('a.b.c', 1), false);
    assert.deepEqual(matchSorted(trie, 'a.b.c'), ['a.*.>', 'a.b.c']);
    assert.equal(trie.remove('a.b.c', 2), true);
    assert.deepEqual(matchSorted(trie, 'a.b.c'), ['a.*.>']);
    assert.equal(trie.remove('a.*.>', 3), true);
    assert.equal(trie.patternCount, 0);
    assert.equal(trie.size, 0);
    assert.deepEqual([...trie.entries()], []);
    // Pruned: matching an empty trie looks at the root only.
    assert.equal(trie.match('a.b.c', () => assert.fail('nothing should match')), 1);
    assert.equal(trie.remove('not.there', 1), false);
    assert.equal(trie.remove('in..valid', 1), false);
    // A prefix of another pattern survives the other's removal.
    trie.add('a', 1);
    trie.add('a.b', 1);
    trie.remove('a.b', 1);
    assert.deepEqual(matchSorted(trie, 'a'), ['a']);
  });

  test('10,000 patterns: a match looks at a handful of nodes, not at every pattern', () => {
    const trie = new TopicTrie<number>();
    // 100 clients x 100 subscriptions, like the broker holds them: mostly literal, some wildcards.
    for (let client = 0; client < 100; client++) {
      for (let i = 0; i < 100; i++) {
        const pattern = i % 10 === 0 ? `svc${client}.*.evt${i}` : i % 25 === 1 ? `svc${client}.>` : `svc${client}.topic${i}.evt${i}`;
        trie.add(pattern, client * 1000 + i);
      }
    }
    assert.equal(trie.size, 10_000);
    const matched: string[] = [];
    const visited = trie.match('svc42.topic7.evt7', (pattern) => matched.push(pattern));
    assert.deepEqual(matched.sort(), ['svc42.>', 'svc42.topic7.evt7']);
    assert.ok(visited <= 10, `match looked at ${visited} nodes`);
    const visitedWildcard = trie.match('svc42.anything.evt30', (pattern) => matched.push(pattern));
    assert.ok(visitedWildcard <= 10, `match looked at ${visitedWildcard} nodes`);
    assert.ok(matched.includes('svc42.*.evt30'));
  });

  test('agrees with the reference matcher on random patterns and topics', () => {
    const segment = fc.constantFrom('a', 'b', 'c', 'user', 'login');
    const patternSegment = fc.constantFrom('a', 'b', 'c', 'user', 'login', '*');
    const topic = fc.array(segment, { minLength: 1, maxLength: 5 }).map((s) => s.join('.'));
    const pattern = fc
      .tuple(fc.array(patternSegment, { minLength: 1, maxLength: 4 }), fc.boolean())
      .map(([segments, tail]) => (tail ? [...segments.slice(0, -1), '>'] : segments).join('.'));
    fc.assert(
      fc.property(fc.uniqueArray(pattern, { maxLength: 30 }), fc.array(topic, { minLength: 1, maxLength: 20 }), (patterns, topics) => {
        const trie = new TopicTrie<string>();
        for (const p of patterns) trie.add(p, p);
        // Remove every third pattern again to exercise pruning.
        const kept = patterns.filter((p, i) => i % 3 !== 2 || !trie.remove(p, p));
        for (const t of topics) {
          assert.deepEqual(matchSorted(trie, t), kept.filter((p) => topicMatches(p, t)).sort(), `topic ${t}`);
        }
      }),
      { numRuns: 300 },
    );
  });
});
