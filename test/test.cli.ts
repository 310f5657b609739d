// The smartipc command line as a user runs it: the package is packed and installed into a temp
// app once, and node_modules/.bin/smartipc is spawned against real servers on real sockets. Each
// command in both output modes, exit codes (0 success, 1 failure, 2 bad usage), a missing server,
// tokens, subscribe --count and Ctrl-C, send-file integrity, bad JSON arguments, and what a
// terminal user sees (colours, the progress bar).
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { IpcClient, isIpcError, type IIpcServerOptions, type IpcServer } from '../ts/index.js';
import { makeClient, startServer, uniqueSocketPath, waitForEvent, waitUntil, type IStartedServer } from './helpers/fixtures.js';
import { installPackedCli, type IInstalledCli } from './helpers/cli-package.js';
import { ANSI_COLOUR, hasScript, runCli, runCliOnTty, startCli, type ICliResult } from './helpers/cli-run.js';

const T = { timeout: 60_000 };

let cli: IInstalledCli;
const servers: IStartedServer[] = [];
const tempFiles: string[] = [];

before(async () => {
  cli = await installPackedCli();
}, { timeout: 300_000 });

after(async () => {
  await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
  for (const file of tempFiles) fs.rmSync(file, { force: true, recursive: true });
  cli?.remove();
});

/** A started server on a Unix socket (or TCP), stopped after the file. */
async function serve(options: Partial<IIpcServerOptions> = {}, kind: 'unix' | 'tcp' = 'unix'): Promise<IStartedServer> {
  const started = await startServer(kind, options as never, 'cli');
  servers.push(started);
  return started;
}

/** The endpoint flags of a started server. */
function where(started: IStartedServer, withId = true): string[] {
  const endpoint = 'socketPath' in started.endpoint ? ['--socket', started.endpoint.socketPath] : ['--host', started.endpoint.host, '--port', String(started.endpoint.port)];
  return withId ? [...endpoint, '--id', started.id] : endpoint;
}

function smartipc(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<ICliResult> {
  return runCli(cli.bin, args, options);
}

/** The JSON documents of --json output, one per line. */
function jsonLines(text: string): unknown[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line));
}

function assertExit(result: ICliResult, code: number): void {
  assert.equal(result.code, code, `exit ${result.code}, expected ${code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
}

function tempFile(name: string, content: Buffer): string {
  const file = path.join(os.tmpdir(), `smartipc-cli-${process.pid}-${crypto.randomBytes(4).toString('hex')}-${name}`);
  fs.writeFileSync(file, content);
  tempFiles.push(file);
  return file;
}

const sha256 = (data: Buffer) => crypto.createHash('sha256').update(data).digest('hex');

/** The library answers introspection requests itself once that work lands; until then it says NO_HANDLER. */
async function libraryAnswers(started: IStartedServer, type: string): Promise<boolean> {
  const client = makeClient(started);
  await client.connect();
  try {
    await client.request(type);
    return true;
  } catch (err) {
    if (isIpcError(err, 'NO_HANDLER')) return false;
    throw err;
  } finally {
    await client.disconnect();
  }
}

describe('the installed package', () => {
  test('links node_modules/.bin/smartipc to an executable script with a node shebang', T, () => {
    assert.ok(cli.binTarget.endsWith(path.join('dist_ts', 'cli', 'index.js')), cli.binTarget);
    assert.match(fs.readFileSync(cli.binTarget, 'utf8').split('\n')[0], /^#!\/usr\/bin\/env node$/);
    if (process.platform !== 'win32') assert.ok((fs.statSync(cli.binTarget).mode & 0o111) !== 0, 'not executable');
  });

  test('--help lists every command, --version prints the package version', T, async () => {
    const help = await smartipc(['--help']);
    assertExit(help, 0);
    for (const name of ['ping', 'request', 'send', 'call', 'publish', 'subscribe', 'services', 'stats', 'send-file']) {
      assert.match(help.stdout, new RegExp(`^  ${name} `, 'm'), `${name} missing from --help`);
    }
    for (const flag of ['--socket', '--host', '--port', '--id', '--token', '--tls-ca', '--timeout', '--json']) assert.ok(help.stdout.includes(flag), flag);
    const version = await smartipc(['--version']);
    assertExit(version, 0);
    assert.equal(version.stdout.trim(), cli.version);
  });

  test('every command has --help with its usage and examples (exit 0)', T, async () => {
    for (const name of ['ping', 'request', 'send', 'call', 'publish', 'subscribe', 'services', 'stats', 'send-file']) {
      const result = await smartipc([name, '--help']);
      assertExit(result, 0);
      assert.match(result.stdout, new RegExp(`Usage: smartipc ${name}`));
      assert.match(result.stdout, /Examples:\n  smartipc /);
      assert.equal(result.stderr, '');
    }
    const viaHelp = await smartipc(['help', 'subscribe']);
    assertExit(viaHelp, 0);
    assert.match(viaHelp.stdout, /--count N/);
  });
});

describe('bad usage exits 2 and says what is wrong', () => {
  test('no command, an unknown command or flag, missing and extra arguments', T, async () => {
    const none = await smartipc([]);
    assertExit(none, 2);
    assert.match(none.stderr, /Usage: smartipc COMMAND/);
    const unknown = await smartipc(['reqest', '--socket', '/nowhere']);
    assertExit(unknown, 2);
    assert.match(unknown.stderr, /unknown command 'reqest' \(did you mean request\?\)/);
    const flag = await smartipc(['ping', '--socket', '/nowhere', '--colour']);
    assertExit(flag, 2);
    assert.match(flag.stderr, /Unknown option '--colour'/);
    assert.match(flag.stderr, /smartipc ping --help/);
    const missing = await smartipc(['request', '--socket', '/nowhere', '--id', 'x']);
    assertExit(missing, 2);
    assert.match(missing.stderr, /missing TYPE/);
    const extra = await smartipc(['publish', 'a.b', '{}', 'more', '--socket', '/nowhere', '--id', 'x']);
    assertExit(extra, 2);
    assert.match(extra.stderr, /unexpected argument 'more'/);
  });

  test('endpoint flags: none, both kinds, a bad port, a missing --id, a bad number', T, async () => {
    const cases: Array<[string[], RegExp]> = [
      [['stats', '--id', 'x'], /--socket PATH, or --host HOST --port PORT/],
      [['stats', '--socket', '/a', '--port', '1', '--id', 'x'], /either --socket or --host\/--port/],
      [['stats', '--port', 'http', '--id', 'x'], /--port must be an integer from 1 to 65535, got 'http'/],
      [['stats', '--host', 'h', '--id', 'x'], /--host needs --port/],
      [['stats', '--socket', '/a'], /--id is needed/],
      [['ping', '--socket', '/a', '--count', '0'], /--count must be an integer from 1/],
      [['request', 't', '--socket', '/a', '--id', 'x', '--timeout', 'soon'], /--timeout must be an integer/],
      [['stats', '--socket', '/a', '--id', 'x', '--serialization', 'xml'], /--serialization must be 'json' or 'advanced'/],
      [['ping', '--host', '127.0.0.1', '--port', '1', '--tls-ca', '/no/such/ca.pem'], /--tls-ca: cannot read \/no\/such\/ca\.pem \(ENOENT\)/],
    ];
    for (const [args, message] of cases) {
      const result = await smartipc(args);
      assertExit(result, 2);
      assert.match(result.stderr, message, args.join(' '));
    }
  });

  test('a bad JSON argument exits 2 naming the argument, and nothing is sent', T, async () => {
    const started = await serve();
    let handled = 0;
    started.server.onMessage('echo', (data) => {
      handled++;
      return data;
    });
    const bad = await smartipc(['request', 'echo', '{id: 1}', ...where(started)]);
    assertExit(bad, 2);
    assert.match(bad.stderr, /argument JSON \(the request data\) is not valid JSON/);
    const word = await smartipc(['publish', 'chat.room', 'hello', ...where(started)]);
    assertExit(word, 2);
    assert.match(word.stderr, /argument JSON \(the published data\) is not valid JSON.*'"hello"'/);
    const fromStdin = await smartipc(['send', 'echo', '-', ...where(started)], { input: '{"unterminated": ' });
    assertExit(fromStdin, 2);
    assert.match(fromStdin.stderr, /argument JSON \(the message data\) \(read from stdin\) is not valid JSON/);
    const meta = await smartipc(['send-file', tempFile('meta.txt', Buffer.from('x')), '--meta', '[1,', ...where(started)]);
    assertExit(meta, 2);
    assert.match(meta.stderr, /--meta is not valid JSON/);
    const notObject = await smartipc(['send-file', tempFile('meta2.txt', Buffer.from('x')), '--meta', '[1]', ...where(started)]);
    assertExit(notObject, 2);
    assert.match(notObject.stderr, /--meta must be a JSON object/);
    const callParams = await smartipc(['call', 'svc', 'm', '{', ...where(started)]);
    assertExit(callParams, 2);
    assert.match(callParams.stderr, /argument JSON \(the call params\) is not valid JSON/);
    assert.equal(handled, 0);
  });

  test('with --json a usage error is a JSON document on stderr', T, async () => {
    const result = await smartipc(['request', 'x', '{', '--socket', '/nowhere', '--id', 'x', '--json']);
    assertExit(result, 2);
    assert.equal(result.stdout, '');
    const [doc] = jsonLines(result.stderr) as Array<{ error: { code: string; message: string } }>;
    assert.equal(doc.error.code, 'USAGE');
    assert.match(doc.error.message, /argument JSON/);
  });
});

describe('a missing server', () => {
  test('every connecting command exits 1 with SERVER_UNAVAILABLE and creates no socket file', T, async () => {
    const socketPath = uniqueSocketPath('cli-missing');
    const runs: Array<[string[], ICliResult]> = [];
    for (const args of [['ping'], ['request', 'x'], ['send', 'x'], ['publish', 'a.b'], ['subscribe', 'a.*', '--count', '1'], ['stats'], ['services'], ['call', 's', 'm']]) {
      runs.push([args, await smartipc([...args, '--socket', socketPath, '--id', 'nobody'])]);
    }
    for (const [args, result] of runs) {
      assertExit(result, 1);
      assert.match(result.stderr, /SERVER_UNAVAILABLE: no server at .*\(ENOENT\)/, args.join(' '));
    }
    assert.equal(fs.existsSync(socketPath), false, 'the CLI created a socket file');
    const json = await smartipc(['request', 'x', '--socket', socketPath, '--id', 'nobody', '--json']);
    assertExit(json, 1);
    assert.equal((jsonLines(json.stderr)[0] as { error: { code: string } }).error.code, 'SERVER_UNAVAILABLE');
  });

  test('a TCP port nobody listens on: ECONNREFUSED, exit 1', T, async () => {
    const started = await serve({}, 'tcp');
    const endpoint = started.endpoint as { host: string; port: number };
    await started.stop();
    const result = await smartipc(['request', 'x', '--host', endpoint.host, '--port', String(endpoint.port), '--id', started.id]);
    assertExit(result, 1);
    assert.match(result.stderr, /SERVER_UNAVAILABLE: .*ECONNREFUSED/);
  });

  test('ping --wait waits for a server that starts later', T, async () => {
    const socketPath = uniqueSocketPath('cli-wait');
    const pinging = startCli(cli.bin, ['ping', '--socket', socketPath, '--wait', '10000', '--json']);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const started = await serve({ socketPath } as Partial<IIpcServerOptions>);
    const result = await pinging.exited();
    assertExit(result, 0);
    const [probe] = jsonLines(result.stdout) as Array<{ ok: boolean }>;
    assert.equal(probe.ok, true);
    await started.stop();
  });
});

describe('ping', () => {
  test('human: one line per probe and the statistics', T, async () => {
    const started = await serve();
    let registered = 0;
    started.server.on('clientConnect', () => registered++);
    const result = await smartipc(['ping', ...where(started, false), '--count', '3', '--interval', '10']);
    assertExit(result, 0);
    assert.match(result.stdout, /^PING .*cli.*\.sock$/m);
    assert.equal(result.stdout.match(/answer from .*: seq=\d time=\d+\.\d\d ms/g)?.length, 3);
    assert.match(result.stdout, /3 probes, 3 answered, 0% lost; round trip min\/avg\/max = [\d.]+\/[\d.]+\/[\d.]+ ms/);
    assert.equal(result.stderr, '');
    // Probes register no client.
    assert.equal(registered, 0);
  });

  test('--json: a document per probe and a summary; TCP; a wrong --id is ID_MISMATCH', T, async () => {
    const started = await serve({}, 'tcp');
    const result = await smartipc(['ping', ...where(started), '--count', '2', '--interval', '0', '--json']);
    assertExit(result, 0);
    const docs = jsonLines(result.stdout) as Array<Record<string, unknown>>;
    assert.equal(docs.length, 3);
    assert.deepEqual(docs.slice(0, 2).map((d) => [d.type, d.seq, d.ok, typeof d.timeMs]), [
      ['probe', 1, true, 'number'],
      ['probe', 2, true, 'number'],
    ]);
    assert.equal(docs[2].type, 'summary');
    assert.equal(docs[2].answered, 2);
    assert.equal(docs[2].lost, 0);
    const wrong = await smartipc(['ping', ...where(started, false), '--id', 'someone-else']);
    assertExit(wrong, 1);
    assert.match(wrong.stderr, /ID_MISMATCH/);
  });
});

describe('request', () => {
  test('prints the response readably, and as one JSON line with --json; data from stdin', T, async () => {
    const started = await serve();
    started.server.onMessage<{ a: number; b: number }>('add', ({ a, b }) => ({ sum: a + b, note: 'ok' }));
    started.server.onMessage('nothing', () => undefined);
    const human = await smartipc(['request', 'add', '{"a":20,"b":22}', ...where(started)]);
    assertExit(human, 0);
    assert.equal(human.stdout, '{\n  "sum": 42,\n  "note": "ok"\n}\n');
    assert.doesNotMatch(human.stdout, ANSI_COLOUR, 'colours on a pipe');
    const json = await smartipc(['request', 'add', '-', ...where(started), '--json'], { input: '{"a":1,"b":2}\n' });
    assertExit(json, 0);
    assert.equal(json.stdout, '{"sum":3,"note":"ok"}\n');
    const empty = await smartipc(['request', 'nothing', ...where(started), '--json']);
    assertExit(empty, 0);
    assert.equal(empty.stdout, 'null\n');
    const emptyHuman = await smartipc(['request', 'nothing', ...where(started)]);
    assert.equal(emptyHuman.stdout, '(no data)\n');
  });

  test('advanced serialization: binary as {"$base64"} in --json, readable on a terminal', T, async () => {
    const started = await serve({ serialization: 'advanced' });
    started.server.onMessage('blob', () => ({ bytes: Buffer.from('hello'), big: 12345678901234567890n, when: new Date(0) }));
    const json = await smartipc(['request', 'blob', ...where(started), '--serialization', 'advanced', '--json']);
    assertExit(json, 0);
    assert.deepEqual(JSON.parse(json.stdout), { bytes: { $base64: Buffer.from('hello').toString('base64') }, big: '12345678901234567890', when: '1970-01-01T00:00:00.000Z' });
    const human = await smartipc(['request', 'blob', ...where(started), '--serialization', 'advanced']);
    assertExit(human, 0);
    assert.match(human.stdout, /"bytes": <Buffer 5 bytes: 68656c6c6f>/);
    assert.match(human.stdout, /"big": 12345678901234567890n/);
  });

  test('failures exit 1 with the code on stderr: HANDLER_ERROR, NO_HANDLER, TIMEOUT, ID_MISMATCH', T, async () => {
    const started = await serve();
    started.server.onMessage('fail', () => {
      throw new RangeError('out of range');
    });
    started.server.onMessage('slow', () => new Promise((resolve) => setTimeout(resolve, 5_000).unref()));
    const failed = await smartipc(['request', 'fail', ...where(started)]);
    assertExit(failed, 1);
    assert.equal(failed.stdout, '');
    assert.match(failed.stderr, /^smartipc request: HANDLER_ERROR: out of range \(thrown as RangeError\)$/m);
    const failedJson = await smartipc(['request', 'fail', ...where(started), '--json']);
    assertExit(failedJson, 1);
    const [doc] = jsonLines(failedJson.stderr) as Array<{ error: { code: string; message: string; remote: { name: string } } }>;
    assert.equal(doc.error.code, 'HANDLER_ERROR');
    assert.equal(doc.error.remote.name, 'RangeError');
    const noHandler = await smartipc(['request', 'absent', ...where(started)]);
    assertExit(noHandler, 1);
    assert.match(noHandler.stderr, /NO_HANDLER: no handler for "absent"/);
    const began = Date.now();
    const slow = await smartipc(['request', 'slow', ...where(started), '--timeout', '300']);
    assertExit(slow, 1);
    assert.match(slow.stderr, /TIMEOUT/);
    assert.ok(Date.now() - began < 4_000, 'the --timeout was not applied');
    const wrongId = await smartipc(['request', 'fail', ...where(started, false), '--id', 'other']);
    assertExit(wrongId, 1);
    assert.match(wrongId.stderr, /ID_MISMATCH/);
  });

  test('connects as a clientOnly client with CLI metadata, and leaves', T, async () => {
    const started = await serve();
    const seen: Array<{ clientId: string; metadata: Record<string, unknown> }> = [];
    started.server.onMessage('who', (_data, clientId) => {
      const info = started.server.getClientInfo(clientId);
      seen.push({ clientId, metadata: info?.metadata ?? {} });
      return clientId;
    });
    const left = waitForEvent(started.server, 'clientDisconnect', 10_000);
    const result = await smartipc(['request', 'who', ...where(started), '--client-id', 'ops-laptop', '--json']);
    assertExit(result, 0);
    assert.equal(JSON.parse(result.stdout), 'ops-laptop');
    assert.equal(seen[0].metadata.agent, 'smartipc-cli');
    assert.equal(seen[0].metadata.command, 'request');
    await left;
    assert.deepEqual(started.server.getClientIds(), []);
  });
});

describe('send and publish', () => {
  test('send delivers a fire-and-forget message; human and --json output', T, async () => {
    const started = await serve();
    const received: unknown[] = [];
    started.server.onMessage('log.write', (data) => {
      received.push(data);
    });
    const human = await smartipc(['send', 'log.write', '{"level":"info"}', ...where(started)]);
    assertExit(human, 0);
    assert.equal(human.stdout, 'sent "log.write"\n');
    const json = await smartipc(['send', 'log.write', '-', ...where(started), '--json'], { input: '[1,2,3]' });
    assertExit(json, 0);
    assert.deepEqual(JSON.parse(json.stdout), { ok: true, type: 'log.write' });
    await waitUntil(() => received.length === 2, 5_000, 'both messages');
    assert.deepEqual(received, [{ level: 'info' }, [1, 2, 3]]);
  });

  test('publish reaches a subscriber; human and --json output', T, async () => {
    const started = await serve();
    const subscriber = makeClient(started);
    await subscriber.connect();
    const got: Array<{ topic: string; data: unknown }> = [];
    await subscriber.subscribe('user.*', (data, { topic }) => {
      got.push({ topic, data });
    });
    try {
      const human = await smartipc(['publish', 'user.login', '{"user":"ada"}', ...where(started)]);
      assertExit(human, 0);
      assert.equal(human.stdout, 'published to user.login\n');
      const json = await smartipc(['publish', 'user.logout', ...where(started), '--json']);
      assertExit(json, 0);
      assert.deepEqual(JSON.parse(json.stdout), { ok: true, topic: 'user.logout' });
      await waitUntil(() => got.length === 2, 5_000, 'both publishes');
      assert.deepEqual(got[0], { topic: 'user.login', data: { user: 'ada' } });
      assert.equal(got[1].topic, 'user.logout');
    } finally {
      await subscriber.disconnect();
    }
  });
});

describe('subscribe', () => {
  /** Resolves once the server holds a subscription for `pattern` (the CLI has subscribed). */
  const subscribed = (server: IpcServer, pattern: string) => waitUntil(() => server.getStats().pubsub?.patterns[pattern] !== undefined, 10_000, `subscription ${pattern}`);

  test('--count N: N lines, then exit 0 (human)', T, async () => {
    const started = await serve();
    const sub = startCli(cli.bin, ['subscribe', 'jobs.*', '--count', '2', ...where(started)]);
    await subscribed(started.server, 'jobs.*');
    await started.server.publish('jobs.started', { n: 1 });
    await started.server.publish('other.topic', { n: 0 });
    await started.server.publish('jobs.done', { n: 2 });
    await started.server.publish('jobs.late', { n: 3 }).catch(() => undefined);
    const result = await sub.exited();
    assertExit(result, 0);
    const lines = result.stdout.trim().split('\n');
    assert.equal(lines.length, 2, result.stdout);
    assert.match(lines[0], /^\d\d:\d\d:\d\d\.\d{3}  jobs\.started  from server  \{"n":1\}$/);
    assert.match(lines[1], /jobs\.done  from server  \{"n":2\}$/);
    assert.match(result.stderr, /subscribed to jobs\.\* on .*until 2 messages/);
  });

  test('--count N --json: one {topic, from, data, receivedAt} per line', T, async () => {
    const started = await serve();
    const publisher = makeClient(started, { clientId: 'publisher-1' });
    await publisher.connect();
    try {
      const sub = startCli(cli.bin, ['subscribe', 'metrics.>', '--count', '3', ...where(started), '--json']);
      await subscribed(started.server, 'metrics.>');
      for (let i = 0; i < 3; i++) await publisher.publish(`metrics.cpu.core${i}`, { load: i / 10 });
      const result = await sub.exited();
      assertExit(result, 0);
      const docs = jsonLines(result.stdout) as Array<{ topic: string; from: string; data: unknown; receivedAt: string }>;
      assert.deepEqual(
        docs.map((d) => [d.topic, d.from, d.data]),
        [0, 1, 2].map((i) => [`metrics.cpu.core${i}`, 'publisher-1', { load: i / 10 }]),
      );
      assert.ok(docs.every((d) => !Number.isNaN(Date.parse(d.receivedAt))));
      assert.equal(result.stderr, '', 'notes in --json mode');
    } finally {
      await publisher.disconnect();
    }
  });

  test('Ctrl-C (SIGINT) ends it cleanly: exit 0, the subscription and connection are gone', T, async (t: TestContext) => {
    if (process.platform === 'win32') return t.skip('no SIGINT for a child on Windows');
    const started = await serve();
    const sub = startCli(cli.bin, ['subscribe', 'chat.*', ...where(started)]);
    await subscribed(started.server, 'chat.*');
    await started.server.publish('chat.room', { text: 'hi' });
    await waitUntil(() => sub.stdout().includes('chat.room'), 5_000, 'the first line');
    const left = waitForEvent(started.server, 'clientDisconnect', 10_000);
    sub.child.kill('SIGINT');
    const result = await sub.exited();
    assertExit(result, 0);
    assert.equal(result.signal, null);
    assert.match(result.stderr, /1 message\n/);
    await left;
    assert.equal(started.server.getStats().pubsub?.patterns['chat.*'], undefined);
  });

  test('an invalid pattern (or a publish to a wildcard) is bad usage: exit 2 before connecting', T, async () => {
    const socketPath = uniqueSocketPath('cli-pattern');
    const pattern = await smartipc(['subscribe', 'a.>.b', '--socket', socketPath, '--id', 'x']);
    assertExit(pattern, 2);
    assert.match(pattern.stderr, /PATTERN: topic pattern "a\.>\.b": '>' may only be the last segment/);
    const topic = await smartipc(['publish', 'user.*', '{}', '--socket', socketPath, '--id', 'x']);
    assertExit(topic, 2);
    assert.match(topic.stderr, /TOPIC: topic "user\.\*" contains a wildcard/);
  });
});

describe('send-file', () => {
  test('the server receives the exact bytes (sha256) with the file meta; human and --json output', T, async () => {
    const started = await serve();
    const received: Array<{ meta: Record<string, unknown>; sha256: string; bytes: number }> = [];
    started.server.on('stream', async (info, readable) => {
      const hash = crypto.createHash('sha256');
      let bytes = 0;
      for await (const chunk of readable) {
        hash.update(chunk as Buffer);
        bytes += (chunk as Buffer).length;
      }
      received.push({ meta: info.meta as Record<string, unknown>, sha256: hash.digest('hex'), bytes });
    });
    const content = crypto.randomBytes(5 * 1024 * 1024 + 123);
    const file = tempFile('payload.bin', content);
    const json = await smartipc(['send-file', file, '--meta', '{"folder":"inbox"}', ...where(started), '--json']);
    assertExit(json, 0);
    const doc = JSON.parse(json.stdout) as { ok: boolean; bytes: number; sha256: string; basename: string };
    assert.equal(doc.ok, true);
    assert.equal(doc.bytes, content.length);
    assert.equal(doc.sha256, sha256(content));
    assert.equal(doc.basename, path.basename(file));
    assert.equal(json.stderr, '', 'no progress bar off a terminal');
    await waitUntil(() => received.length === 1, 10_000, 'the stream');
    assert.equal(received[0].sha256, sha256(content));
    assert.equal(received[0].bytes, content.length);
    assert.deepEqual(received[0].meta, { type: 'file', basename: path.basename(file), size: content.length, folder: 'inbox' });

    const empty = tempFile('empty.txt', Buffer.alloc(0));
    const human = await smartipc(['send-file', empty, ...where(started)]);
    assertExit(human, 0);
    assert.match(human.stdout, new RegExp(`^sent ${path.basename(empty)} \\(0 B\\) in .*, sha256 ${sha256(Buffer.alloc(0))}\\n$`));
    await waitUntil(() => received.length === 2, 10_000, 'the empty stream');
    assert.equal(received[1].bytes, 0);
  });

  test('a missing file or a directory exits 1 before connecting', T, async () => {
    const socketPath = uniqueSocketPath('cli-nofile');
    const missing = await smartipc(['send-file', '/no/such/file.bin', '--socket', socketPath, '--id', 'x']);
    assertExit(missing, 1);
    assert.match(missing.stderr, /ENOENT: cannot read \/no\/such\/file\.bin/);
    const dir = await smartipc(['send-file', os.tmpdir(), '--socket', socketPath, '--id', 'x']);
    assertExit(dir, 1);
    assert.match(dir.stderr, /is not a regular file/);
  });

  test('a server without a stream listener refuses it: exit 1 with the code', T, async () => {
    const started = await serve();
    const result = await smartipc(['send-file', tempFile('refused.bin', crypto.randomBytes(1024)), ...where(started)]);
    assertExit(result, 1);
    assert.match(result.stderr, /NO_HANDLER/);
  });
});

describe('on a terminal', { skip: !hasScript() && 'script(1) is not available to give the CLI a terminal' }, () => {
  test('colours on a terminal, none with NO_COLOR', T, async () => {
    const started = await serve();
    started.server.onMessage('hello', () => ({ greeting: 'hi', n: 1 }));
    const tty = await runCliOnTty(cli.bin, ['request', 'hello', ...where(started)]);
    assertExit(tty, 0);
    assert.match(tty.stdout, ANSI_COLOUR);
    assert.match(tty.stdout.replace(/\u001b\[[0-9;]*m/g, ''), /"greeting": "hi"/);
    const noColor = await runCliOnTty(cli.bin, ['request', 'hello', ...where(started)], { env: { NO_COLOR: '1' } });
    assertExit(noColor, 0);
    assert.doesNotMatch(noColor.stdout, ANSI_COLOUR);
    const failed = await runCliOnTty(cli.bin, ['request', 'nope', ...where(started)], { env: { NO_COLOR: '1' } });
    assertExit(failed, 1);
    assert.match(failed.stdout, /NO_HANDLER/);
  });

  test('send-file draws a progress bar (percent, bytes, rate, ETA) and clears it', T, async () => {
    const started = await serve();
    const hashes: string[] = [];
    started.server.on('stream', async (_info, readable) => {
      const hash = crypto.createHash('sha256');
      for await (const chunk of readable) hash.update(chunk as Buffer);
      hashes.push(hash.digest('hex'));
    });
    const content = crypto.randomBytes(12 * 1024 * 1024);
    const file = tempFile('bar.bin', content);
    const result = await runCliOnTty(cli.bin, ['send-file', file, ...where(started)], { env: { NO_COLOR: '1' } });
    assertExit(result, 0);
    assert.match(result.stdout, /\r\[[= >]+\] +0%  0 B \/ 12\.0 MiB  0 B\/s  ETA \?/);
    assert.match(result.stdout, /\r\[=+\] 100%  12\.0 MiB \/ 12\.0 MiB  [\d.]+ [KMG]?i?B\/s  done/);
    assert.match(result.stdout, /done\r {20,}\rsent /, 'the bar is cleared before the summary');
    assert.match(result.stdout, new RegExp(`sent ${path.basename(file).replace(/\./g, '\\.')} \\(12\\.0 MiB\\) in .* sha256 ${sha256(content)}`));
    await waitUntil(() => hashes.length === 1, 10_000, 'the stream');
    assert.equal(hashes[0], sha256(content));
  });
});

describe('TLS', () => {
  test('--tls-ca trusts the server; without it the certificate is refused (exit 1)', T, async (t: TestContext) => {
    let certs: { ca: Buffer; cert: Buffer; key: Buffer };
    try {
      certs = makeCerts();
    } catch {
      return t.skip('openssl is not available');
    }
    const started = await serve({ host: '127.0.0.1', port: 0, tls: { cert: certs.cert, key: certs.key } } as Partial<IIpcServerOptions>, 'tcp');
    started.server.onMessage('secure', () => 'yes');
    const caFile = tempFile('ca.pem', certs.ca);
    const ok = await smartipc(['request', 'secure', ...where(started), '--tls-ca', caFile, '--json']);
    assertExit(ok, 0);
    assert.equal(JSON.parse(ok.stdout), 'yes');
    const pinged = await smartipc(['ping', ...where(started), '--tls-ca', caFile]);
    assertExit(pinged, 0);
    const untrusted = await smartipc(['request', 'secure', ...where(started), '--tls']);
    assertExit(untrusted, 1);
    assert.match(untrusted.stderr, /^smartipc request: (TLS_ERROR|SERVER_UNAVAILABLE): .*(certificate|TLS)/im);
  });
});

/** A CA and a server certificate for 127.0.0.1 from the openssl CLI, in a temp dir removed at once. */
function makeCerts(): { ca: Buffer; cert: Buffer; key: Buffer } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartipc-cli-tls-'));
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  try {
    run('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=smartipc cli test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    run('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
    fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'ext.cnf');
    const read = (name: string) => fs.readFileSync(path.join(dir, name));
    return { ca: read('ca.crt'), cert: read('server.crt'), key: read('server.key') };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('tokens', () => {
  test('a wrong --token exits 1 with AUTH_FAILED; the right one (or SMARTIPC_TOKEN) gets in', T, async (t: TestContext) => {
    // `auth` comes with the security work: until the library refuses a wrong token this is skipped.
    const started = await serve({ auth: { tokens: ['right-token'] } } as Partial<IIpcServerOptions>);
    started.server.onMessage('whoami', (_data, clientId) => clientId);
    const probe = makeClient(started, { authToken: 'wrong-token' } as never);
    const refused = await probe.connect().then(
      () => false,
      (err: unknown) => isIpcError(err, 'AUTH_FAILED'),
    );
    await probe.disconnect();
    if (!refused) return t.skip('PENDING LIBRARY: the server does not refuse tokens yet (server option auth, client option authToken)');
    const wrong = await smartipc(['request', 'whoami', ...where(started), '--token', 'wrong-token']);
    assertExit(wrong, 1);
    assert.match(wrong.stderr, /AUTH_FAILED/);
    const right = await smartipc(['request', 'whoami', ...where(started), '--token', 'right-token', '--json']);
    assertExit(right, 0);
    const fromEnv = await smartipc(['request', 'whoami', ...where(started), '--json'], { env: { SMARTIPC_TOKEN: 'right-token' } });
    assertExit(fromEnv, 0);
  });
});

describe('introspection: stats and services', () => {
  test('stats: the server counters and clients, human and --json (or "upgrade it" from a server without introspection)', T, async () => {
    const started = await serve();
    const other = makeClient(started, { clientId: 'worker-7', metadata: { role: 'worker' } });
    await other.connect();
    try {
      if (!(await libraryAnswers(started, '$smartipc.stats'))) {
        const old = await smartipc(['stats', ...where(started)]);
        assertExit(old, 1);
        assert.match(old.stderr, /^smartipc stats: NO_HANDLER: the server does not answer introspection \(\$smartipc\.stats\): upgrade it/m);
        // Until the library answers, a handler of the documented shape stands in, so the rendering is tested.
        started.server.onMessage('$smartipc.stats', () => ({
          id: started.id,
          stats: started.server.getStats(),
          clients: started.server.getClientIds().map((id) => started.server.getClientInfo(id)),
        }));
      }
      const json = await smartipc(['stats', ...where(started), '--json']);
      assertExit(json, 0);
      const doc = JSON.parse(json.stdout) as { id: string; stats: { isRunning: boolean; connectedClients: number }; clients: Array<{ clientId: string; metadata: Record<string, unknown> }> };
      assert.equal(doc.id, started.id);
      assert.equal(doc.stats.isRunning, true);
      assert.ok(doc.clients.some((c) => c.clientId === 'worker-7' && c.metadata.role === 'worker'));
      assert.ok(doc.clients.some((c) => c.metadata.agent === 'smartipc-cli'), 'the CLI itself is a client');
      const human = await smartipc(['stats', ...where(started)]);
      assertExit(human, 0);
      assert.match(human.stdout, new RegExp(`^server +${started.id}$`, 'm'));
      assert.match(human.stdout, /^running +yes, up /m);
      assert.match(human.stdout, /^clients +\d+ connected, \d+ connections in total$/m);
      assert.match(human.stdout, /^CLIENT +CONNECTED +LAST ACTIVITY +METADATA$/m);
      assert.match(human.stdout, /^worker-7 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(.* ago\) +.* ago +\{"role":"worker"\}$/m);
    } finally {
      await other.disconnect();
    }
  });

  test('services: instances and methods, human and --json (or "upgrade it")', T, async (t: TestContext) => {
    const started = await serve();
    if (!(await libraryAnswers(started, '$smartipc.services'))) {
      const old = await smartipc(['services', ...where(started), '--json']);
      assertExit(old, 1);
      const [doc] = jsonLines(old.stderr) as Array<{ error: { code: string; message: string } }>;
      assert.equal(doc.error.code, 'NO_HANDLER');
      assert.match(doc.error.message, /does not answer introspection.*upgrade it/);
      started.server.onMessage('$smartipc.services', () => [
        { name: 'user', instances: [{ clientId: 'svc-a', methods: ['get', 'list'], version: '1.2.0', metadata: {}, inFlight: 0 }, { clientId: 'svc-b', methods: ['get', 'list'], metadata: { zone: 'b' }, inFlight: 2 }] },
      ]);
    } else {
      const provider = makeClient(started, { clientId: 'svc-a' }) as IpcClient & { provide(name: string, methods: object, options?: object): Promise<void> };
      await provider.connect();
      await provider.provide('user', { get: () => 1, list: () => [] }, { version: '1.2.0' });
      t.after(() => provider.disconnect());
    }
    const json = await smartipc(['services', ...where(started), '--json']);
    assertExit(json, 0);
    const list = JSON.parse(json.stdout) as Array<{ name: string; instances: Array<{ clientId: string; methods: string[] }> }>;
    const user = list.find((s) => s.name === 'user');
    assert.ok(user, json.stdout);
    assert.deepEqual(user.instances[0].methods.slice().sort(), ['get', 'list']);
    const human = await smartipc(['services', ...where(started)]);
    assertExit(human, 0);
    assert.match(human.stdout, /^SERVICE +INSTANCE +VERSION +IN FLIGHT +METHODS/m);
    assert.match(human.stdout, /^user +svc-a +1\.2\.0 +0 +get, list/m);
  });
});

describe('call', () => {
  test('calls a provided service method (or says the library has no client.call yet)', T, async () => {
    const started = await serve();
    const hasCall = typeof (IpcClient.prototype as unknown as { call?: unknown }).call === 'function';
    if (!hasCall) {
      const result = await smartipc(['call', 'math', 'add', '[1,2]', ...where(started)]);
      assertExit(result, 1);
      assert.match(result.stderr, /NOT_SUPPORTED: this @push\.rocks\/smartipc has no client\.call/);
      return;
    }
    const provider = makeClient(started, { clientId: 'math-1' }) as IpcClient & { provide(name: string, methods: object): Promise<void> };
    await provider.connect();
    try {
      await provider.provide('math', {
        add: ([a, b]: [number, number]) => a + b,
        fail: () => {
          throw new Error('no math today');
        },
      });
      const json = await smartipc(['call', 'math', 'add', '[20,22]', ...where(started), '--json']);
      assertExit(json, 0);
      assert.equal(json.stdout, '42\n');
      const human = await smartipc(['call', 'math', 'add', '-', ...where(started)], { input: '[1, 2]' });
      assertExit(human, 0);
      assert.equal(human.stdout, '3\n');
      const failed = await smartipc(['call', 'math', 'fail', ...where(started)]);
      assertExit(failed, 1);
      assert.match(failed.stderr, /HANDLER_ERROR: no math today/);
      const noMethod = await smartipc(['call', 'math', 'divide', ...where(started)]);
      assertExit(noMethod, 1);
      assert.match(noMethod.stderr, /METHOD_NOT_FOUND/);
      const noService = await smartipc(['call', 'physics', 'g', ...where(started)]);
      assertExit(noService, 1);
      assert.match(noService.stderr, /SERVICE_NOT_FOUND/);
    } finally {
      await provider.disconnect();
    }
  });
});
