// Mutual TLS: `tls: { requestCert: true, ca }` on the server. The client's certificate reaches
// authenticate; a client without one, or with one the server does not trust, gets TLS_ERROR on
// connect() under TLS 1.2 and TLS 1.3 alike, and the server goes on serving. Certificates are
// made by the openssl CLI in a temp dir that is removed at once.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { PeerCertificate } from 'node:tls';
import { IpcError, SmartIpc, type IAuthenticateInfo, type IIpcClientOptions, type IpcServer } from '../ts/index.js';
import { expectIpcError, uniqueId, waitUntil, withTimeout } from './helpers/fixtures.js';

const T = { timeout: 20_000 };

interface IKeyPair {
  cert: Buffer;
  key: Buffer;
}

interface ICerts {
  ca: Buffer;
  server: IKeyPair;
  /** Signed by the CA, CN=alice. */
  alice: IKeyPair;
  /** Signed by the CA, CN=bob. */
  bob: IKeyPair;
  /** Signed by another CA, CN=alice (the name is right, the issuer is not). */
  rogue: IKeyPair;
  /** Self-signed, CN=alice. */
  selfSigned: IKeyPair;
}

function makeCerts(): ICerts {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartipc-mtls-'));
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const caExt = ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'];
  const read = (name: string) => fs.readFileSync(path.join(dir, name));
  try {
    run('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=smartipc mtls CA', ...caExt);
    run('req', '-x509', ...ec, '-keyout', 'other.key', '-out', 'other.crt', '-days', '2', '-subj', '/CN=smartipc other CA', ...caExt);
    fs.writeFileSync(path.join(dir, 'server.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    fs.writeFileSync(path.join(dir, 'client.cnf'), 'extendedKeyUsage=clientAuth\n');
    const signed = (name: string, cn: string, ca: string, ext: string): IKeyPair => {
      run('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
      run('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', ext);
      return { cert: read(`${name}.crt`), key: read(`${name}.key`) };
    };
    const server = signed('server', 'localhost', 'ca', 'server.cnf');
    const alice = signed('alice', 'alice', 'ca', 'client.cnf');
    const bob = signed('bob', 'bob', 'ca', 'client.cnf');
    const rogue = signed('rogue', 'alice', 'other', 'client.cnf');
    run('req', '-x509', ...ec, '-keyout', 'self.key', '-out', 'self.crt', '-days', '2', '-subj', '/CN=alice', '-addext', 'extendedKeyUsage=clientAuth');
    return { ca: read('ca.crt'), server, alice, bob, rogue, selfSigned: { cert: read('self.crt'), key: read('self.key') } };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('mutual TLS', () => {
  let certs: ICerts;
  let server: IpcServer;
  let id: string;
  let port: number;
  const seen: IAuthenticateInfo[] = [];

  before(async () => {
    certs = makeCerts();
    id = uniqueId('mtls');
    server = SmartIpc.createServer({
      id,
      host: '127.0.0.1',
      port: 0,
      tls: { cert: certs.server.cert, key: certs.server.key, ca: certs.ca, requestCert: true },
      auth: {
        // Only alice, by her certificate's subject.
        authenticate: (info) => {
          seen.push(info);
          return info.tlsPeerCertificate?.subject?.CN === 'alice';
        },
      },
    });
    server.onMessage('echo', (data: unknown) => data);
    await server.start();
    port = (server.getAddress() as { port: number }).port;
  });

  after(() => server.stop({ graceMs: 0 }));

  function client(tls: NonNullable<IIpcClientOptions['tls']>) {
    return SmartIpc.createClient({ id, host: '127.0.0.1', port, tls: { ca: certs.ca, servername: 'localhost', ...tls }, clientOnly: true, reconnect: { enabled: false } } as IIpcClientOptions);
  }

  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    const pin = { minVersion: version, maxVersion: version };

    test(`${version}: alice's certificate reaches authenticate (subject, issuer, fingerprint) and she is admitted`, T, async (t) => {
      const alice = client({ ...pin, cert: certs.alice.cert, key: certs.alice.key });
      t.after(() => alice.disconnect());
      const before = seen.length;
      await alice.connect();
      assert.equal(await alice.request('echo', version), version);
      const info = seen[before];
      assert.equal(info.transport, 'tls');
      assert.equal(info.clientId, alice.getClientId());
      const cert = info.tlsPeerCertificate as PeerCertificate;
      assert.equal(cert.subject.CN, 'alice');
      assert.equal(cert.issuer.CN, 'smartipc mtls CA');
      assert.equal(cert.fingerprint256, new crypto.X509Certificate(certs.alice.cert).fingerprint256);
    });

    test(`${version}: a certificate the CA signed for someone authenticate refuses is AUTH_FAILED, not TLS_ERROR`, T, async (t) => {
      const bob = client({ ...pin, cert: certs.bob.cert, key: certs.bob.key });
      t.after(() => bob.disconnect());
      await expectIpcError(bob.connect(), 'AUTH_FAILED');
      assert.equal(seen.at(-1)?.tlsPeerCertificate?.subject.CN, 'bob');
    });

    test(`${version}: a client without a certificate gets TLS_ERROR on connect(); authenticate never sees it; the server goes on`, T, async (t) => {
      const bad = client(pin);
      t.after(() => bad.disconnect());
      const before = seen.length;
      const err = await expectIpcError(bad.connect(), 'TLS_ERROR');
      t.diagnostic(`${version}, no certificate: TLS_ERROR (cause ${(err.cause as NodeJS.ErrnoException | undefined)?.code})`);
      assert.equal(bad.getIsConnected(), false);
      assert.equal(seen.length, before, 'authenticate was not asked');
      await aliceStillServed(pin);
    });

    for (const [name, pair] of [
      ['a certificate from another CA', 'rogue'],
      ['a self-signed certificate', 'selfSigned'],
    ] as const) {
      test(`${version}: a client with ${name} is refused before authenticate; the server goes on`, T, async (t) => {
        const bad = client({ ...pin, cert: certs[pair].cert, key: certs[pair].key });
        t.after(() => bad.disconnect());
        const before = seen.length;
        const err = await withTimeout(bad.connect().then(() => undefined, (e: unknown) => e as IpcError), 5_000, 'connect');
        t.diagnostic(`${version}, ${name}: refused with ${err?.code} (cause ${(err?.cause as NodeJS.ErrnoException | undefined)?.code})`);
        assert.ok(err instanceof IpcError, 'connect() rejected');
        assert.equal(bad.getIsConnected(), false);
        assert.equal(seen.length, before, 'authenticate was not asked');
        assert.equal(server.getClientIds().includes(bad.getClientId()), false);
        await aliceStillServed(pin);
      });

      test(`${version}: a client with ${name} gets TLS_ERROR on connect()`, T, async (t) => {
        const bad = client({ ...pin, cert: certs[pair].cert, key: certs[pair].key });
        t.after(() => bad.disconnect());
        await expectIpcError(bad.connect(), 'TLS_ERROR');
      });
    }
  }

  async function aliceStillServed(pin: { minVersion?: 'TLSv1.2' | 'TLSv1.3'; maxVersion?: 'TLSv1.2' | 'TLSv1.3' } = {}): Promise<void> {
    assert.equal(server.getIsRunning(), true);
    const alice = client({ ...pin, cert: certs.alice.cert, key: certs.alice.key });
    try {
      await alice.connect();
      assert.equal(await alice.request('echo', 'after'), 'after');
    } finally {
      await alice.disconnect();
    }
  }

  test('a TLS_ERROR refusal is permanent: connectRetry does not dial again', T, async (t) => {
    const bad = SmartIpc.createClient({
      id,
      host: '127.0.0.1',
      port,
      tls: { ca: certs.ca, servername: 'localhost' },
      clientOnly: true,
      reconnect: { enabled: false },
      connectRetry: { enabled: true, maxAttempts: 5, initialDelay: 20, maxDelay: 40, totalTimeout: 3_000 },
    });
    t.after(() => bad.disconnect());
    const t0 = performance.now();
    await expectIpcError(bad.connect(), 'TLS_ERROR');
    const ms = performance.now() - t0;
    t.diagnostic(`TLS_ERROR with connectRetry after ${ms.toFixed(0)} ms`);
    // Five attempts with backoff would take over 100 ms; a permanent refusal returns at once.
    assert.ok(ms < 100, `${ms.toFixed(0)} ms`);
  });

  test('many refused handshakes at once while alice works: she is not disturbed, the server does not crash', { timeout: 30_000 }, async (t) => {
    const alice = client({ cert: certs.alice.cert, key: certs.alice.key });
    t.after(() => alice.disconnect());
    await alice.connect();
    const lost: IpcError[] = [];
    alice.on('disconnect', (reason) => lost.push(reason));
    // Without a certificate (TLS_ERROR) and with untrusted ones (refused, see the todo above), both versions.
    const kinds: Array<NonNullable<IIpcClientOptions['tls']>> = [
      { maxVersion: 'TLSv1.2' },
      {},
      { maxVersion: 'TLSv1.2', cert: certs.rogue.cert, key: certs.rogue.key },
      { cert: certs.selfSigned.cert, key: certs.selfSigned.key },
    ];
    const bad = Array.from({ length: 20 }, (_, i) => client(kinds[i % kinds.length]));
    t.after(() => Promise.all(bad.map((c) => c.disconnect())));
    const refusals = bad.map((c) => c.connect().then(() => 'connected', (err: IpcError) => err.code));
    const traffic = Promise.all(Array.from({ length: 200 }, (_, i) => alice.request('echo', i)));
    const codes = await Promise.all(refusals);
    t.diagnostic(`refusals: ${JSON.stringify(codes.reduce<Record<string, number>>((m, c) => ((m[c] = (m[c] ?? 0) + 1), m), {}))}`);
    assert.equal(codes.includes('connected'), false);
    assert.deepEqual(await withTimeout(traffic, 10_000, "alice's traffic"), Array.from({ length: 200 }, (_, i) => i));
    assert.deepEqual(lost, []);
    assert.equal(server.getIsRunning(), true);
    await waitUntil(() => server.getClientIds().length === 1, 2_000, 'only alice connected');
  });
});

describe('TLS without requestCert', () => {
  test('a client certificate is not asked for: authenticate sees no tlsPeerCertificate', T, async (t) => {
    const certs = makeCerts();
    const seen: IAuthenticateInfo[] = [];
    const id = uniqueId('tlsplain');
    const server = SmartIpc.createServer({ id, host: '127.0.0.1', port: 0, tls: { cert: certs.server.cert, key: certs.server.key }, auth: { authenticate: (info) => (seen.push(info), true) } });
    await server.start();
    t.after(() => server.stop({ graceMs: 0 }));
    const port = (server.getAddress() as { port: number }).port;
    const c = SmartIpc.createClient({ id, host: '127.0.0.1', port, tls: { ca: certs.ca, servername: 'localhost', cert: certs.alice.cert, key: certs.alice.key }, clientOnly: true, reconnect: { enabled: false } });
    t.after(() => c.disconnect());
    await c.connect();
    assert.equal(seen.length, 1);
    assert.equal(seen[0].transport, 'tls');
    assert.equal(seen[0].tlsPeerCertificate, undefined);
  });
});
