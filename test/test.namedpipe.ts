// Windows named pipes, tested on any OS: the socketPath -> pipe name mapping and the choice of
// transport per platform (CI runs Linux, so no pipe is opened here).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IpcError, NamedPipeTransport, TcpTransport, UnixSocketTransport, createTransport, toPipePath } from '../ts/index.js';

const PIPE_PREFIX = '\\\\.\\pipe\\';
const limits = { maxMessageSize: 1024 };

describe('toPipePath', () => {
  test('a pipe path passes through unchanged', () => {
    for (const pipe of ['\\\\.\\pipe\\myservice', '\\\\?\\pipe\\myservice', '\\\\.\\PIPE\\Upper', '\\\\.\\pipe\\with\\more\\parts']) {
      assert.equal(toPipePath(pipe), pipe);
    }
  });

  test('any other path becomes a pipe named after it, with a hash of the full path', () => {
    const hashed = (readable: string) => new RegExp(`^${PIPE_PREFIX.replace(/\\/g, '\\\\')}${readable.replace(/\./g, '\\.')}-[0-9a-f]{8}$`);
    assert.match(toPipePath('/tmp/my-app.sock'), hashed('tmp-my-app.sock'));
    assert.match(toPipePath('C:\\Users\\me\\app.sock'), hashed('Users-me-app.sock'));
    assert.match(toPipePath('relative/dir/app.sock'), hashed('relative-dir-app.sock'));
    assert.match(toPipePath('plain'), hashed('plain'));
  });

  test('paths that differ only in separators versus dashes map to different pipes', () => {
    assert.notEqual(toPipePath('/tmp/a-b.sock'), toPipePath('/tmp/a/b.sock'));
    assert.notEqual(toPipePath('C:\\run\\app.sock'), toPipePath('D:\\run\\app.sock'));
  });

  test('a path with nothing usable in it still gets a valid pipe name', () => {
    for (const odd of ['/', '///', 'C:\\', 'C:']) {
      const pipe = toPipePath(odd);
      assert.ok(pipe.startsWith(PIPE_PREFIX));
      assert.ok(pipe.length > PIPE_PREFIX.length, `${JSON.stringify(odd)} -> ${pipe}`);
    }
  });

  test('the mapping is a stable pipe name: prefixed, no separators in the name, idempotent', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 80 }), (socketPath) => {
        const pipe = toPipePath(socketPath);
        assert.equal(toPipePath(socketPath), pipe, 'same input, same pipe');
        assert.equal(toPipePath(pipe), pipe, 'idempotent');
        if (!pipe.toLowerCase().startsWith(PIPE_PREFIX.toLowerCase()) || pipe === socketPath) return;
        const name = pipe.slice(PIPE_PREFIX.length);
        assert.ok(name.length > 0);
        assert.ok(!/[\\/]/.test(name), `no separators in ${JSON.stringify(name)}`);
      }),
      { numRuns: 300 },
    );
  });

  test('different socket files in one directory map to different pipes', () => {
    const names = ['/run/app/a.sock', '/run/app/b.sock', '/run/other/a.sock', '/tmp/a.sock'];
    assert.equal(new Set(names.map(toPipePath)).size, names.length);
  });
});

describe('createTransport picks the medium', () => {
  test('win32 with a socketPath: a named pipe', () => {
    const transport = createTransport({ socketPath: '/tmp/svc.sock' }, limits, {}, 'win32');
    assert.ok(transport instanceof NamedPipeTransport);
    assert.equal((transport as NamedPipeTransport).pipePath, toPipePath('/tmp/svc.sock'));
    assert.ok((transport as NamedPipeTransport).pipePath.startsWith(`${PIPE_PREFIX}tmp-svc.sock-`));
    assert.equal(transport.describe(), toPipePath('/tmp/svc.sock'));
    const explicit = createTransport({ socketPath: '\\\\.\\pipe\\svc' }, limits, {}, 'win32');
    assert.ok(explicit instanceof NamedPipeTransport);
    assert.equal((explicit as NamedPipeTransport).pipePath, '\\\\.\\pipe\\svc');
  });

  test('linux and darwin with a socketPath: a Unix socket', () => {
    for (const platform of ['linux', 'darwin', 'freebsd'] as NodeJS.Platform[]) {
      const transport = createTransport({ socketPath: '/tmp/svc.sock' }, limits, {}, platform);
      assert.ok(transport instanceof UnixSocketTransport, platform);
      assert.ok(!(transport instanceof NamedPipeTransport));
      assert.equal(transport.describe(), '/tmp/svc.sock');
    }
  });

  test('a port means TCP on every platform', () => {
    for (const platform of ['win32', 'linux', 'darwin'] as NodeJS.Platform[]) {
      assert.ok(createTransport({ host: '127.0.0.1', port: 1234 }, limits, {}, platform) instanceof TcpTransport, platform);
    }
  });

  test('the current platform is the default', () => {
    const transport = createTransport({ socketPath: '/tmp/svc.sock' }, limits);
    if (process.platform === 'win32') assert.ok(transport instanceof NamedPipeTransport);
    else assert.ok(transport instanceof UnixSocketTransport);
  });

  test('an endpoint with neither socketPath nor port is refused', () => {
    // TODO INVALID_ARGUMENT: issue 9 lists PROTOCOL_ERROR for a missing endpoint as a defect; the fix is made elsewhere.
    assert.throws(() => createTransport({} as never, limits, {}, 'linux'), (err: unknown) => err instanceof IpcError && err.code === 'PROTOCOL_ERROR');
  });
});
