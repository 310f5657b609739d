// Parent and child processes over a private pipe (SmartIpc.fork / SmartIpc.connectParent): real
// child processes, every channel feature, crashes, timeouts, and a process not started by fork.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { IpcError, SmartIpc, type IpcChannel } from '../ts/index.js';
import { HELPERS_DIR, expectIpcError, waitForEvent, withTimeout } from './helpers/fixtures.js';

const CHILD = path.join(HELPERS_DIR, 'child.fork.ts');
const T = { timeout: 30_000 };

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

async function forkChild(mode = 'serve', options: Parameters<typeof SmartIpc.fork>[1] = {}) {
  const { channel, child } = await SmartIpc.fork(CHILD, { args: [mode], heartbeatInterval: 200, heartbeatTimeout: 1_000, heartbeatInitialGracePeriodMs: 0, ...options });
  const cleanup = async () => {
    await channel.stop().catch(() => undefined);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited(child);
  };
  return { channel, child, cleanup };
}

describe('fork and connectParent', () => {
  test('requests and messages both ways; the handlers the child registers right after connecting see the first requests', T, async (t) => {
    const { channel, child, cleanup } = await forkChild();
    t.after(cleanup);
    channel.onMessage('double', (n: number) => n * 2);
    // Sent at once after fork resolved, together with the end of the handshake.
    const first = await Promise.all([channel.request('echo', { hi: 1 }), channel.request('add', { a: 2, b: 3 }), channel.request('pid')]);
    assert.deepEqual(first, [{ hi: 1 }, 5, child.pid]);
    assert.equal(await channel.request('ask-parent', 21), 42, 'the child requested the parent inside its handler');
    const heard = new Promise<string>((resolve) => channel.onMessage('told', (text: string) => resolve(text)));
    await channel.sendMessage('tell-parent', 'hello');
    assert.equal(await withTimeout(heard, 5_000, 'message from the child'), 'child heard: hello');
    assert.equal(channel.getRole(), 'server');
    assert.equal(channel.getPeerId()?.startsWith('peer-'), true);
    const stats = channel.getStats();
    assert.equal(stats.transport, 'child');
    assert.equal(stats.connected, true);
    assert.ok(stats.metrics.messagesSent >= 6 && stats.metrics.messagesReceived >= 6, JSON.stringify(stats.metrics));
    const childStats = await channel.request<undefined, { transport: string; role: string }>('stats');
    assert.equal(childStats.transport, 'child');
    assert.equal(childStats.role, 'client');
  });

  test('no socket file and no port: the link is the extra stdio pipe', T, async (t) => {
    const before = new Set(fs.readdirSync(os.tmpdir()).filter((name) => name.endsWith('.sock')));
    const { channel, child, cleanup } = await forkChild();
    t.after(cleanup);
    assert.equal(await channel.request('echo', 'x'), 'x');
    const after = fs.readdirSync(os.tmpdir()).filter((name) => name.endsWith('.sock') && !before.has(name));
    assert.deepEqual(after.filter((name) => name.includes(String(child.pid))), []);
    assert.ok(child.stdio[3], 'the child has a pipe at stdio[3]');
  });

  test('streams both ways with sha256: a file to the child, a stream from the child', T, async (t) => {
    const { channel, cleanup } = await forkChild();
    t.after(cleanup);
    const file = path.join(os.tmpdir(), `smartipc-fork-${process.pid}-${Date.now()}.bin`);
    const content = crypto.randomBytes(3 * 1024 * 1024 + 17);
    fs.writeFileSync(file, content);
    t.after(() => fs.rmSync(file, { force: true }));
    const digest = new Promise<{ bytes: number; sha256: string; meta: { basename?: string } }>((resolve) => channel.onMessage('stream-digest', (d: never) => resolve(d)));
    await channel.sendFile(file);
    const received = await withTimeout(digest, 10_000, 'the child\'s digest');
    assert.equal(received.bytes, content.length);
    assert.equal(received.sha256, crypto.createHash('sha256').update(content).digest('hex'));
    assert.equal(received.meta.basename, path.basename(file));

    const streamed = new Promise<{ bytes: number; sha256: string }>((resolve, reject) => {
      channel.once('stream', (info, readable) => {
        const hash = crypto.createHash('sha256');
        let bytes = 0;
        readable.on('data', (chunk: Buffer) => {
          hash.update(chunk);
          bytes += chunk.length;
        });
        readable.on('error', reject);
        readable.on('end', () => resolve({ bytes, sha256: hash.digest('hex') }));
        assert.equal(info.meta.size, 2 * 1024 * 1024);
      });
    });
    const sentDigest = await channel.request<number, string>('send-bytes', 2 * 1024 * 1024, { timeout: 10_000 });
    const got = await withTimeout(streamed, 10_000, 'stream from the child');
    assert.equal(got.bytes, 2 * 1024 * 1024);
    assert.equal(got.sha256, sentDigest);
  });

  test('the child crashing rejects pending requests with CONNECTION_LOST at once and emits disconnect', T, async (t) => {
    const { channel, child, cleanup } = await forkChild();
    t.after(cleanup);
    const hanging = Array.from({ length: 20 }, () => expectIpcError(channel.request('hang', undefined, { timeout: 20_000 }), 'CONNECTION_LOST', 5_000));
    const disconnected = waitForEvent<[IpcError]>(channel, 'disconnect', 5_000);
    const startedAt = performance.now();
    void channel.request('crash').catch(() => undefined);
    await Promise.all(hanging);
    const elapsed = performance.now() - startedAt;
    const [reason] = await disconnected;
    assert.equal(reason.code, 'CONNECTION_LOST');
    assert.ok(elapsed < 2_000, `pending requests took ${Math.round(elapsed)} ms to reject`);
    assert.equal((await exited(child)).signal, 'SIGKILL');
    await expectIpcError(channel.request('echo', 1), 'NOT_CONNECTED');
  });

  test('channel.stop() on the parent closes the link: the child sees disconnect and exits by itself', T, async (t) => {
    const { channel, child, cleanup } = await forkChild('report-disconnect');
    t.after(cleanup);
    assert.equal(await channel.request('echo', 1), 1);
    const disconnected = waitForEvent<[IpcError]>(channel, 'disconnect');
    await channel.stop();
    assert.equal((await disconnected)[0].code, 'CLOSED');
    const result = await withTimeout(exited(child), 5_000, 'the child exits');
    assert.deepEqual(result, { code: 42, signal: null }, 'the child saw CONNECTION_LOST and had nothing else to keep it alive');
  });

  test('the child stopping its channel: the parent sees disconnect (CONNECTION_LOST) and pending requests reject', T, async (t) => {
    const { channel, child, cleanup } = await forkChild('stop-itself');
    t.after(cleanup);
    const disconnected = waitForEvent<[IpcError]>(channel, 'disconnect');
    assert.equal(await channel.request('stop-now'), 'stopping');
    assert.equal((await disconnected)[0].code, 'CONNECTION_LOST');
    await withTimeout(exited(child), 5_000, 'the child exits');
  });

  test('a frozen child is found by the heartbeat', T, async (t) => {
    const { channel, child, cleanup } = await forkChild();
    t.after(async () => {
      child.kill('SIGCONT');
      await cleanup();
    });
    assert.equal(await channel.request('echo', 1), 1);
    const timedOut = waitForEvent(channel, 'heartbeatTimeout', 5_000);
    const disconnected = waitForEvent<[IpcError]>(channel, 'disconnect', 5_000);
    child.kill('SIGSTOP');
    await timedOut;
    assert.equal((await disconnected)[0].code, 'TIMEOUT');
  });

  test('a child that never calls connectParent: fork rejects TIMEOUT and kills it', T, async () => {
    const startedAt = performance.now();
    const error = await expectIpcError(SmartIpc.fork(CHILD, { args: ['never'], timeoutMs: 700 }), 'TIMEOUT');
    assert.match(error.message, /connectParent/);
    assert.ok(performance.now() - startedAt < 5_000);
    // The killed child is gone: no process with the message's pid answers signal 0.
    const pid = Number(/child process (\d+)/.exec(error.message)?.[1]);
    assert.ok(pid > 0, error.message);
    await withTimeout(
      (async () => {
        for (;;) {
          try {
            process.kill(pid, 0);
          } catch {
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })(),
      5_000,
      'the child to be gone',
    );
  });

  test('a child that exits before connecting: fork rejects CONNECTION_LOST at once, not after the timeout', T, async () => {
    const startedAt = performance.now();
    const error = await expectIpcError(SmartIpc.fork(CHILD, { args: ['exit-early'], timeoutMs: 20_000 }), 'CONNECTION_LOST');
    assert.match(error.message, /code 3/);
    assert.ok(performance.now() - startedAt < 10_000);
  });

  test('connectParent in a process not started by fork rejects NOT_CONNECTED saying so', async () => {
    const error = await expectIpcError(SmartIpc.connectParent(), 'NOT_CONNECTED');
    assert.match(error.message, /not started by SmartIpc\.fork/);
  });

  test('bad arguments are INVALID_ARGUMENT', async () => {
    await expectIpcError(SmartIpc.fork(''), 'INVALID_ARGUMENT');
    await expectIpcError(SmartIpc.fork(CHILD, { timeoutMs: -1 }), 'INVALID_ARGUMENT');
    await expectIpcError(SmartIpc.fork(CHILD, { serialization: 'xml' as never }), 'INVALID_ARGUMENT');
  });

  test("advanced serialization works across the link (the child takes the parent's serialization)", T, async (t) => {
    const { channel, cleanup } = await forkChild('serve', { serialization: 'advanced' });
    t.after(cleanup);
    void (channel satisfies IpcChannel);
    const value = { when: new Date(5), big: 10n, map: new Map([[1, 'a']]), bytes: Buffer.from('raw') };
    const echoed = await channel.request<typeof value, typeof value>('echo', value);
    assert.deepEqual(echoed, value);
    assert.ok(Buffer.isBuffer(echoed.bytes));
  });
});
