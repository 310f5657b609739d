// What a connection may do: permissions by clientId (with '*' for the rest) or from authenticate,
// over sends, requests, calls, publishes, subscriptions and provides, with the pub/sub wildcard
// rules. FORBIDDEN for what has an answer (the connection stays up), a counted drop for
// fire-and-forget traffic. Real sockets on both transports.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { IpcError, nameMatches, patternCovers, serverRefusalsOf, type IPermissions, type IpcClient } from '../ts/internal.js';
import { TRANSPORTS, expectIpcError, makeClient, startServer, uniqueId, waitUntil, type TTransportKind } from './helpers/fixtures.js';

const T = { timeout: 20_000 };

describe('permission patterns (the pub/sub rules)', () => {
  test('nameMatches: literal, * one segment, > one or more', () => {
    const cases: Array<[string, string, boolean]> = [
      ['user.get', 'user.get', true],
      ['user.get', 'user.put', false],
      ['user.get', 'user', false],
      ['user.get', 'user.get.x', false],
      ['user.*', 'user.get', true],
      ['user.*', 'user', false],
      ['user.*', 'user.get.x', false],
      ['*', 'anything', true],
      ['*', 'a.b', false],
      ['user.>', 'user.a', true],
      ['user.>', 'user.a.b.c', true],
      ['user.>', 'user', false],
      ['>', 'x', true],
      ['>', 'x.y', true],
      ['*.read', 'doc.read', true],
      ['*.read', 'doc.write', false],
      ['a.*.c', 'a.b.c', true],
      ['a.*.c', 'a.b.d', false],
      ['$smartipc.>', '$smartipc.stats', true],
      ['echo', 'echoes', false],
    ];
    for (const [pattern, name, expected] of cases) assert.equal(nameMatches(pattern, name), expected, `${pattern} vs ${name}`);
  });

  test('patternCovers: user.> covers user.* but not the other way round', () => {
    const cases: Array<[string, string, boolean]> = [
      ['user.>', 'user.*', true],
      ['user.*', 'user.>', false],
      ['user.>', 'user.>', true],
      ['user.>', 'user.a.>', true],
      ['user.>', 'user.*.x', true],
      ['user.>', 'user', false],
      ['user.*', 'user.*', true],
      ['user.*', 'user.a', true],
      ['user.*', 'user.a.b', false],
      ['user.a', 'user.*', false],
      ['user.a', 'user.a', true],
      ['*', '*', true],
      ['*', '>', false],
      ['>', '>', true],
      ['>', '*.*', true],
      ['*.*', '>', false],
      ['a.*.c', 'a.>', false],
      ['a.*.c', 'a.*.c', true],
      ['a.b.>', 'a.*.>', false],
    ];
    for (const [allowed, sub, expected] of cases) assert.equal(patternCovers(allowed, sub), expected, `${allowed} covers ${sub}`);
  });

  test('invalid patterns in the permissions option are INVALID_ARGUMENT at construction', async () => {
    for (const permissions of [{ '*': { request: ['a..b'] } }, { '*': { send: ['a.>.b'] } }, { '*': { call: ['us*r'] } }, { '*': { publish: 'news' } }, { bob: null }, 'all']) {
      await assert.rejects(
        () => startServer('unix', { permissions: permissions as never }, 'badperm'),
        (err: unknown) => err instanceof IpcError && err.code === 'INVALID_ARGUMENT',
        JSON.stringify(permissions),
      );
    }
  });
});

/** A hub with handlers that record what ran, a provided service and helpers for clients. */
async function permissionHub(kind: TTransportKind, options: { permissions?: Record<string, IPermissions>; authenticate?: (info: { clientId: string; metadata: Record<string, unknown> }) => unknown } = {}) {
  const started = await startServer(kind, {
    ...(options.permissions ? { permissions: options.permissions } : {}),
    ...(options.authenticate ? { auth: { authenticate: options.authenticate as never } } : {}),
  }, 'perm');
  const ran: string[] = [];
  for (const type of ['user.get', 'user.42.read', 'user.42.write', 'admin', 'log.info', 'audit.login', 'public.time', 'echo']) {
    started.server.onMessage(type, (data: unknown) => {
      ran.push(type);
      return data;
    });
  }
  await started.server.provide('math', {
    add: ({ a, b }: { a: number; b: number }) => a + b,
    sub: ({ a, b }: { a: number; b: number }) => a - b,
  });
  await started.server.provide('users', { get: (id: number) => ({ id }) });
  const clients: IpcClient[] = [];
  const connect = async (clientId: string, extra: Record<string, unknown> = {}) => {
    const client = makeClient(started, { clientId, ...extra });
    clients.push(client);
    await client.connect();
    return client;
  };
  return {
    ...started,
    ran,
    connect,
    close: async () => {
      await Promise.all(clients.map((c) => c.disconnect()));
      await started.stop();
    },
  };
}

/** A round trip that proves the connection is still up and served. */
async function stillServed(client: IpcClient, type = 'echo'): Promise<void> {
  assert.equal(await client.request(type, 'ping'), 'ping');
  assert.equal(client.getIsConnected(), true);
}

for (const kind of TRANSPORTS) {
  describe(`permissions over ${kind}`, () => {
    const ALICE: IPermissions = {
      send: ['log.*'],
      request: ['user.get', 'user.*.read', 'echo'],
      call: ['math.add', 'users.>'],
      publish: ['news.>'],
      subscribe: ['user.>'],
      provide: ['alice.*'],
    };
    const EVERYONE: IPermissions = { send: [], request: ['public.>', 'echo'], call: [], publish: [], subscribe: ['public.*'], provide: [] };

    function hub() {
      return permissionHub(kind, { permissions: { alice: ALICE, watcher: {}, '*': EVERYONE } });
    }

    test('requests: allowed by pattern, FORBIDDEN otherwise; the connection stays up', T, async (t) => {
      const h = await hub();
      t.after(() => h.close());
      const alice = await h.connect('alice');
      assert.equal(await alice.request('user.get', 1), 1);
      assert.equal(await alice.request('user.42.read', 2), 2);
      for (const type of ['user.42.write', 'admin', 'user', 'user.get.x', 'public.time', 'nobody.has.this']) {
        const err = await expectIpcError(alice.request(type, 0), 'FORBIDDEN');
        assert.match(err.message, new RegExp(type.replace(/\./g, '\\.')));
      }
      await stillServed(alice);
      const bob = await h.connect(uniqueId('bob'));
      assert.equal(await bob.request('public.time', 3), 3);
      await expectIpcError(bob.request('user.get', 0), 'FORBIDDEN');
      await stillServed(bob);
      assert.deepEqual(h.ran.filter((type) => type !== 'echo'), ['user.get', 'user.42.read', 'public.time']);
    });

    test('messages: allowed ones are delivered, denied ones dropped and counted; a refused handler never runs', T, async (t) => {
      const h = await hub();
      t.after(() => h.close());
      const alice = await h.connect('alice');
      const before = serverRefusalsOf(h.server);
      await alice.sendMessage('log.info', 1);
      await alice.sendMessage('audit.login', 2);
      await alice.sendMessage('log.info.deep', 3);
      await alice.sendMessage('admin', 4);
      await stillServed(alice);
      await waitUntil(() => h.ran.includes('log.info'), 2_000, 'the allowed message');
      assert.deepEqual(h.ran.filter((type) => type !== 'echo'), ['log.info']);
      const after = serverRefusalsOf(h.server);
      t.diagnostic(`dropped sends counted (private field, see the todo below): forbidden ${after.forbidden - before.forbidden}`);
      assert.equal(after.forbidden - before.forbidden, 3);
      assert.equal(after.rateLimited, before.rateLimited);
    });

    test('calls (service.method): allowed by pattern, FORBIDDEN otherwise', T, async (t) => {
      const h = await hub();
      t.after(() => h.close());
      const alice = await h.connect('alice');
      assert.equal(await alice.call('math', 'add', { a: 2, b: 3 }), 5);
      assert.deepEqual(await alice.call('users', 'get', 7), { id: 7 });
      await expectIpcError(alice.call('math', 'sub', { a: 2, b: 3 }), 'FORBIDDEN');
      await expectIpcError(alice.call('nope', 'x'), 'FORBIDDEN', 5_000);
      const bob = await h.connect(uniqueId('bob'));
      await expectIpcError(bob.call('math', 'add', { a: 1, b: 1 }), 'FORBIDDEN');
      await stillServed(alice);
      await stillServed(bob);
    });

    test('publish: allowed topics are delivered, denied ones dropped and counted', T, async (t) => {
      const h = await hub();
      t.after(() => h.close());
      const alice = await h.connect('alice');
      const watcher = await h.connect('watcher');
      const got: string[] = [];
      await watcher.subscribe('>', (_data, info) => {
        got.push(info.topic);
      });
      const before = serverRefusalsOf(h.server).forbidden;
      await alice.publish('sports.results', 1);
      await alice.publish('news', 2); // news.> needs one more segment
      await alice.publish('news.eu.de', 3);
      const bob = await h.connect(uniqueId('bob'));
      await bob.publish('news.eu.fr', 4);
      await waitUntil(() => got.includes('news.eu.de'), 2_000, 'the allowed publish');
      await stillServed(alice);
      await stillServed(bob);
      // The hub handled every publish before answering those round trips; anything it forwarded
      // to the watcher left before the watcher's own answer.
      await stillServed(watcher);
      assert.deepEqual(got, ['news.eu.de']);
      assert.equal(serverRefusalsOf(h.server).forbidden - before, 3);
    });

    test('subscribe: a pattern is allowed when a permission covers it (user.> covers user.*, not the other way round)', T, async (t) => {
      const h = await hub();
      t.after(() => h.close());
      const alice = await h.connect('alice');
      const noop = () => undefined;
      for (const pattern of ['user.>', 'user.*', 'user.created', 'user.*.x', 'user.a.>']) await alice.subscribe(pattern, noop);
      for (const pattern of ['user', '>', '*', 'admin.*', '*.created']) await expectIpcError(alice.subscribe(pattern, noop), 'FORBIDDEN');
      const bob = await h.connect(uniqueId('bob'));
      await bob.subscribe('public.*', noop);
      await bob.subscribe('public.time', noop);
      for (const pattern of ['public.>', 'public.a.b', 'user.*']) await expectIpcError(bob.subscribe(pattern, noop), 'FORBIDDEN');
      await stillServed(alice);
      await stillServed(bob);
      // A refused subscription receives nothing.
      const seen: string[] = [];
      await bob.subscribe('public.*', (_d, info) => {
        seen.push(info.topic);
      });
      const watcher = await h.connect('watcher');
      await watcher.publish('public.a.b', 1);
      await watcher.publish('user.x', 1);
      await watcher.publish('public.news', 1);
      await waitUntil(() => seen.length > 0, 2_000, 'the allowed subscription to receive');
      await stillServed(watcher);
      await stillServed(bob);
      assert.deepEqual(seen, ['public.news']);
    });

    test('provide: allowed names only; a FORBIDDEN provide registers nothing', T, async (t) => {
      const h = await hub();
      t.after(() => h.close());
      const alice = await h.connect('alice');
      await alice.provide('alice.tools', { hi: () => 'hi' });
      await expectIpcError(alice.provide('math2', { hi: () => 'hi' }), 'FORBIDDEN');
      await expectIpcError(alice.provide('alice', { hi: () => 'hi' }), 'FORBIDDEN');
      const bob = await h.connect(uniqueId('bob'));
      await expectIpcError(bob.provide('bob.tools', { hi: () => 'hi' }), 'FORBIDDEN');
      assert.equal(h.server.isServiceAvailable('alice.tools'), true);
      assert.equal(h.server.isServiceAvailable('math2'), false);
      assert.equal(h.server.isServiceAvailable('bob.tools'), false);
      const watcher = await h.connect('watcher');
      assert.equal(await watcher.call('alice.tools', 'hi'), 'hi');
      await stillServed(alice);
      await stillServed(bob);
    });

    test('peers: sendToPeer is checked against send, requestPeer against request', T, async (t) => {
      const h = await hub();
      t.after(() => h.close());
      const alice = await h.connect('alice');
      const watcher = await h.connect('watcher');
      const got: string[] = [];
      watcher.onMessage('user.get', (data: unknown) => {
        got.push('user.get');
        return data;
      });
      watcher.onMessage('admin', () => {
        got.push('admin');
        return 'secret';
      });
      watcher.onMessage('log.info', () => {
        got.push('log.info');
      });
      watcher.onMessage('audit.login', () => {
        got.push('audit.login');
      });
      assert.equal(await alice.requestPeer('watcher', 'user.get', 5), 5);
      await expectIpcError(alice.requestPeer('watcher', 'admin'), 'FORBIDDEN');
      await alice.sendToPeer('watcher', 'audit.login', 1);
      await alice.sendToPeer('watcher', 'log.info', 1);
      // In order on alice's connection: the denied one was handled (dropped) before the allowed one.
      await waitUntil(() => got.includes('log.info'), 2_000, 'the allowed peer message');
      assert.deepEqual(got, ['user.get', 'log.info']);
      await stillServed(alice);
    });

    test('introspection ($smartipc.stats) is a request like any other: allowed only when permitted', T, async (t) => {
      const h = await permissionHub(kind, {
        permissions: { ops: { request: ['$smartipc.>'] }, stats: { request: ['$smartipc.stats'] }, '*': { request: ['echo'] } },
      });
      t.after(() => h.close());
      const plain = await h.connect(uniqueId('plain'));
      await expectIpcError(plain.request('$smartipc.stats'), 'FORBIDDEN');
      await expectIpcError(plain.request('$smartipc.peers'), 'FORBIDDEN');
      await expectIpcError(plain.listServices(), 'FORBIDDEN');
      await stillServed(plain);
      const ops = await h.connect('ops');
      const stats = await ops.request<unknown, { id: string }>('$smartipc.stats');
      assert.equal(stats.id, h.id);
      assert.ok(Array.isArray(await ops.listServices()));
      const statsOnly = await h.connect('stats');
      assert.equal((await statsOnly.request<unknown, { id: string }>('$smartipc.stats')).id, h.id);
      await expectIpcError(statsOnly.listPeers(), 'FORBIDDEN');
      // Without any permissions for it, introspection is open (absent field: allowed).
      const open = await permissionHub(kind);
      t.after(() => open.close());
      const anyone = await open.connect(uniqueId('anyone'));
      assert.equal((await anyone.request<unknown, { id: string }>('$smartipc.stats')).id, open.id);
    });

    test('an empty list allows nothing, an absent one everything, {} is unrestricted', T, async (t) => {
      const h = await permissionHub(kind, { permissions: { locked: { request: [] }, free: {} } });
      t.after(() => h.close());
      const locked = await h.connect('locked');
      await expectIpcError(locked.request('echo', 1), 'FORBIDDEN');
      await locked.sendMessage('log.info', 1); // send is absent: allowed
      await waitUntil(() => h.ran.includes('log.info'), 2_000, 'the message of a client with no send list');
      const free = await h.connect('free');
      await stillServed(free);
      // A clientId with no entry and no '*': unrestricted.
      const other = await h.connect(uniqueId('other'));
      await stillServed(other);
      assert.equal(locked.getIsConnected(), true);
    });

    test('permissions from authenticate override the server option; `true` keeps the option by clientId', T, async (t) => {
      const h = await permissionHub(kind, {
        permissions: { alice: { request: ['echo', 'admin'] }, '*': { request: ['echo'] } },
        authenticate: (info) => (info.metadata.narrow === true ? { permissions: { request: ['user.get'] } } : true),
      });
      t.after(() => h.close());
      const narrow = await h.connect('alice', { metadata: { narrow: true } });
      assert.equal(await narrow.request('user.get', 1), 1);
      await expectIpcError(narrow.request('echo', 1), 'FORBIDDEN');
      await expectIpcError(narrow.request('admin', 1), 'FORBIDDEN');
      await narrow.disconnect();
      const alice = await h.connect('alice');
      assert.equal(await alice.request('admin', 2), 2);
      await expectIpcError(alice.request('user.get', 2), 'FORBIDDEN');
      const other = await h.connect(uniqueId('other'));
      await expectIpcError(other.request('admin', 3), 'FORBIDDEN');
      await stillServed(other);
    });

    test('refused fire-and-forget frames are visible in the server\'s public stats', T, async (t) => {
      const h = await hub();
      t.after(() => h.close());
      const alice = await h.connect('alice');
      await alice.sendMessage('audit.login', 1);
      await stillServed(alice);
      const stats = h.server.getStats() as unknown as { metrics: Record<string, number> };
      assert.equal(stats.metrics.deadLetters ?? stats.metrics.forbidden, 1, `metrics: ${JSON.stringify(stats.metrics)}`);
    });
  });
}
