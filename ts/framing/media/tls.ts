import * as plugins from '../../plugins.js';
import { IpcError, invalidArgument } from '../../smartipc.errors.js';
import type { ITcpEndpoint, TEndpoint } from '../../interfaces/options.js';
import type { IMedium, IMediumListener, IMediumModule, IOpenedStream } from './medium.js';
import { bindServer, dialFailed, dialSocket } from './listen.js';
import { checkTcpEndpoint, DEFAULT_CLIENT_HOST, tcpListener } from './tcp.js';
import { debug } from '../../smartipc.log.js';

/**
 * A failed dial that is about certificates, not about reaching the host. System errors look like
 * ECONNREFUSED; certificate failures (UNABLE_TO_VERIFY_LEAF_SIGNATURE, ERR_TLS_CERT_ALTNAME_INVALID,
 * ERR_SSL_...) do not.
 */
export function isCertificateError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return typeof code === 'string' && !/^E[A-Z]+$/.test(code);
}

export function tlsFailed(err: unknown, description: string): IpcError {
  const code = (err as NodeJS.ErrnoException).code ?? 'TLS';
  return new IpcError('TLS_ERROR', `TLS handshake with ${description} failed (${code}): ${(err as Error).message}`, { cause: err });
}

type TTlsEndpoint = ITcpEndpoint & { tls: NonNullable<ITcpEndpoint['tls']> };

/** TCP with TLS (node:tls; certificates verified as node:tls does by default). */
class TlsMedium implements IMedium {
  public readonly kind = 'tls' as const;

  constructor(private readonly endpoint: TTlsEndpoint) {}

  public describe(): string {
    return `tls://${this.endpoint.host ?? DEFAULT_CLIENT_HOST}:${this.endpoint.port}`;
  }

  public async dial(): Promise<IOpenedStream> {
    const host = this.endpoint.host ?? DEFAULT_CLIENT_HOST;
    const socket = plugins.tls.connect({
      ...this.endpoint.tls,
      host,
      port: this.endpoint.port,
      servername: this.endpoint.tls.servername ?? (plugins.net.isIP(host) ? undefined : host),
    });
    try {
      return { stream: await dialSocket(socket, 'secureConnect'), peer: { kind: 'tls' } };
    } catch (err) {
      throw isCertificateError(err) ? tlsFailed(err, this.describe()) : dialFailed(err, this.describe());
    }
  }

  public canHost(): boolean {
    return false;
  }

  public async listen(onStream: (opened: IOpenedStream) => void): Promise<IMediumListener> {
    const options = this.endpoint.tls;
    // Mutual TLS: the certificate is checked here, after the TLS handshake, rather than by node:tls
    // during it (which drops the socket without a word): a refused client then learns TLS_ERROR.
    const verifyHere = options.requestCert === true && options.rejectUnauthorized !== false;
    const server = plugins.tls.createServer(verifyHere ? { ...options, rejectUnauthorized: false } : options, (socket) => {
      const certificate = options.requestCert ? socket.getPeerCertificate() : undefined;
      const hasCertificate = certificate !== undefined && Object.keys(certificate).length > 0;
      const refused = verifyHere && !socket.authorized ? String(socket.authorizationError ?? 'no certificate') : undefined;
      onStream({
        stream: socket,
        peer: { kind: 'tls', ...(hasCertificate ? { tlsPeerCertificate: certificate } : {}), ...(refused !== undefined ? { tlsAuthorizationError: refused } : {}) },
      });
    });
    // A failed TLS handshake concerns that one peer only; it must not become a server 'error'.
    server.on('tlsClientError', (err, socket) => {
      debug('TLS handshake from a client failed: %s', err.message);
      socket.destroy();
    });
    await bindServer(server, { host: this.endpoint.host, port: this.endpoint.port }, this.describe());
    return tcpListener(server, this.describe());
  }
}

export const tlsMedium: IMediumModule = {
  kind: 'tls',
  matches: (endpoint) => endpoint.port !== undefined && endpoint.tls !== undefined,
  resolve: (endpoint) => {
    const tls = endpoint.tls;
    if (tls === null || typeof tls !== 'object') throw invalidArgument('tls must be an object of node:tls options (cert/key on a server, ca on a client)');
    return { ...checkTcpEndpoint(endpoint), tls };
  },
  describe: (endpoint) => `tls://${(endpoint as ITcpEndpoint).host ?? DEFAULT_CLIENT_HOST}:${(endpoint as ITcpEndpoint).port}`,
  create: (endpoint: TEndpoint) => new TlsMedium(endpoint as TTlsEndpoint),
};
