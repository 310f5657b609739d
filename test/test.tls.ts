// TLS over TCP with a throwaway CA made by the openssl CLI: a client that trusts the CA talks, a
// client that does not (or expects another name, or speaks plain TCP) is refused with a code.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { IpcError, SmartIpc, type IIpcClientOptions, type IpcServer } from '../ts/index.js';
import { expectIpcError, uniqueId, waitForEvent, waitUntil, withTimeout } from './helpers/fixtures.js';

const T = { timeout: 20_000 };

interface ICerts {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  /** A second CA that did not sign the server certificate. */
  otherCa: Buffer;
}

/** A CA and a server certificate for localhost / 127.0.0.1, made in a temp dir that is removed at once. */
function makeCerts(): ICerts {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartipc-tls-'));
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const caExt = ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'];
  try {
    run('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=smartipc test CA', ...caExt);
    run('req', '-x509', ...ec, '-keyout', 'other.key', '-out', 'other.crt', '-days', '2', '-subj', '/CN=smartipc other CA', ...caExt);
    run('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
    fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'ext.cnf');
    const read = (name: string) => fs.readFileSync(path.join(dir, name));
    return { ca: read('ca.crt'), cert: read('server.crt'), key: read('server.key'), otherCa: read('other.crt') };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('TLS', () => {
  let certs: ICerts;
  let server: IpcServer;
  let id: string;
  let port: number;

  before(async () => {
    certs = makeCerts();
    id = uniqueId('tls');
    server = SmartIpc.createServer({ id, host: '127.0.0.1', port: 0, tls: { cert: certs.cert, key: certs.key } });
    server.onMessage('echo', (data: unknown) => data);
    server.onMessage('who', (_data: unknown, clientId: string) => clientId);
    await server.start();
    const address = server.getAddress();
    assert.ok(address && 'port' in address);
    port = address.port;
  });

  after(() => server.stop({ graceMs: 0 }));

  function tlsClient(tls: IIpcClientOptions['tls'], extra: Partial<IIpcClientOptions> = {}) {
    return SmartIpc.createClient({ id, host: '127.0.0.1', port, tls, clientOnly: true, reconnect: { enabled: false }, ...extra } as IIpcClientOptions);
  }

  test('a client that trusts the CA connects and makes requests', T, async (t) => {
    const client = tlsClient({ ca: certs.ca, servername: 'localhost' });
    t.after(() => client.disconnect());
    await client.connect();
    assert.equal(await client.request('who'), client.getClientId());
    const big = Buffer.alloc(512 * 1024, 7).toString('base64');
    assert.equal(await client.request('echo', big), big);
    const many = await Promise.all(Array.from({ length: 500 }, (_, i) => client.request('echo', i)));
    assert.deepEqual(many, Array.from({ length: 500 }, (_, i) => i));
    // Server to client over TLS too.
    client.onMessage('hi', () => 'hello back');
    assert.equal(await server.requestClient(client.getClientId(), 'hi'), 'hello back');
  });

  test('host "localhost" verifies against the certificate name without an explicit servername', T, async (t) => {
    const client = SmartIpc.createClient({ id, host: 'localhost', port, tls: { ca: certs.ca }, clientOnly: true, reconnect: { enabled: false } });
    t.after(() => client.disconnect());
    // The server listens on 127.0.0.1 only; node tries each address localhost resolves to.
    await client.connect();
    assert.equal(await client.request('echo', 'via localhost'), 'via localhost');
  });

  test('a client without the CA is refused with TLS_ERROR (certificate not trusted)', T, async (t) => {
    const client = tlsClient({ servername: 'localhost' });
    t.after(() => client.disconnect());
    const err = await expectIpcError(client.connect(), 'TLS_ERROR');
    // The cause is the TLS verification failure from node:tls.
    t.diagnostic(`untrusted certificate: ${err.code} (cause ${(err.cause as NodeJS.ErrnoException | undefined)?.code})`);
    assert.match(String((err.cause as NodeJS.ErrnoException | undefined)?.code), /CERT|SIGNATURE|ISSUER/);
    assert.equal(client.getIsConnected(), false);
  });

  test('a client trusting another CA is refused with TLS_ERROR', T, async (t) => {
    const client = tlsClient({ ca: certs.otherCa, servername: 'localhost' });
    t.after(() => client.disconnect());
    await expectIpcError(client.connect(), 'TLS_ERROR');
  });

  test('a client expecting another server name is refused with TLS_ERROR', T, async (t) => {
    const client = tlsClient({ ca: certs.ca, servername: 'not-the-server.example' });
    t.after(() => client.disconnect());
    const err = await expectIpcError(client.connect(), 'TLS_ERROR');
    assert.equal((err.cause as NodeJS.ErrnoException | undefined)?.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
  });

  test('a plain TCP client to the TLS server fails its handshake with CONNECTION_LOST', T, async (t) => {
    const client = SmartIpc.createClient({ id, host: '127.0.0.1', port, clientOnly: true, reconnect: { enabled: false }, registerTimeoutMs: 5_000 });
    t.after(() => client.disconnect());
    await expectIpcError(client.connect(), 'CONNECTION_LOST');
  });

  test('a TLS client to a plain TCP server is refused with SERVER_UNAVAILABLE', T, async (t) => {
    const plainId = uniqueId('plain');
    const plain = SmartIpc.createServer({ id: plainId, host: '127.0.0.1', port: 0 });
    let messageErrors = 0;
    plain.on('messageError', () => messageErrors++);
    await plain.start();
    t.after(() => plain.stop({ graceMs: 0 }));
    const address = plain.getAddress() as { port: number };
    const client = SmartIpc.createClient({ id: plainId, host: '127.0.0.1', port: address.port, tls: { ca: certs.ca, servername: 'localhost' }, clientOnly: true, reconnect: { enabled: false } });
    t.after(() => client.disconnect());
    await expectIpcError(client.connect(), 'SERVER_UNAVAILABLE');
    // The plain server saw a ClientHello, which is not a frame.
    await waitUntil(() => messageErrors === 1, 5_000, 'messageError on the plain server');
  });

  test('failed TLS handshakes do not disturb a connected TLS client', T, async (t) => {
    const good = tlsClient({ ca: certs.ca, servername: 'localhost' });
    t.after(() => good.disconnect());
    await good.connect();
    const lost: IpcError[] = [];
    good.on('disconnect', (reason) => lost.push(reason));
    const bad = Array.from({ length: 5 }, () => tlsClient({ servername: 'localhost' }));
    t.after(() => Promise.all(bad.map((c) => c.disconnect())));
    const failures = bad.map((c) => expectIpcError(c.connect(), 'TLS_ERROR'));
    const traffic = Promise.all(Array.from({ length: 100 }, (_, i) => good.request('echo', i)));
    await Promise.all(failures);
    assert.deepEqual(await withTimeout(traffic, 10_000, 'good traffic'), Array.from({ length: 100 }, (_, i) => i));
    assert.deepEqual(lost, []);
    assert.equal(server.getStats().isRunning, true);
    // And a fresh good client still gets in.
    const later = tlsClient({ ca: certs.ca, servername: 'localhost' });
    t.after(() => later.disconnect());
    const seen = waitForEvent(server, 'clientConnect');
    await later.connect();
    await seen;
  });
});
