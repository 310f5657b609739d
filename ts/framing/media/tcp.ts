import * as plugins from '../../plugins.js';
import { invalidArgument } from '../../smartipc.errors.js';
import type { ITcpEndpoint, TEndpoint } from '../../interfaces/options.js';
import type { IMedium, IMediumListener, IMediumModule, IOpenedStream } from './medium.js';
import { acceptProbe, bindServer, closeServer, dialFailed, dialSocket } from './listen.js';

/** The host a client dials when none is given. */
export const DEFAULT_CLIENT_HOST = '127.0.0.1';

/** A wildcard bind address is not dialable: probe it on loopback. */
export function loopbackFor(host: string): string {
  if (host === '::') return '::1';
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  return host;
}

/** Plain TCP. */
class TcpMedium implements IMedium {
  public readonly kind = 'tcp' as const;

  constructor(private readonly endpoint: ITcpEndpoint) {}

  public describe(): string {
    return `tcp://${this.endpoint.host ?? DEFAULT_CLIENT_HOST}:${this.endpoint.port}`;
  }

  public async dial(): Promise<IOpenedStream> {
    try {
      const socket = plugins.net.createConnection({ host: this.endpoint.host ?? DEFAULT_CLIENT_HOST, port: this.endpoint.port });
      return { stream: await dialSocket(socket), peer: { kind: 'tcp' } };
    } catch (err) {
      throw dialFailed(err, this.describe());
    }
  }

  public canHost(): boolean {
    return false;
  }

  public async listen(onStream: (opened: IOpenedStream) => void): Promise<IMediumListener> {
    const server = plugins.net.createServer((socket) => onStream({ stream: socket, peer: { kind: 'tcp' } }));
    await bindServer(server, { host: this.endpoint.host, port: this.endpoint.port }, this.describe());
    return tcpListener(server, this.describe());
  }
}

/** The listener of a bound TCP (or TLS) server: its real address, a plain-TCP probe, close. */
export function tcpListener(server: plugins.net.Server, description: string): IMediumListener {
  const address = () => {
    const bound = server.address() as plugins.net.AddressInfo;
    return { host: bound.address, port: bound.port };
  };
  return {
    address,
    // A TCP accept proves the listener works; for TLS that is before the TLS handshake, which is enough.
    probe: () => {
      const { host, port } = address();
      return acceptProbe(() => plugins.net.createConnection({ host: loopbackFor(host), port }), description);
    },
    close: () => closeServer(server),
  };
}

/** A port must be an integer 0..65535 (0: the server picks one; read it back with getAddress()). */
export function checkTcpEndpoint(endpoint: Partial<TEndpoint>): ITcpEndpoint {
  const port = endpoint.port;
  if (endpoint.socketPath !== undefined) throw invalidArgument('give either socketPath or host/port, not both');
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw invalidArgument(`port must be an integer 0..65535, got ${String(port)}`);
  }
  if (endpoint.host !== undefined && (typeof endpoint.host !== 'string' || endpoint.host.length === 0)) {
    throw invalidArgument(`host must be a non-empty string, got ${JSON.stringify(endpoint.host)}`);
  }
  return { ...(endpoint.host !== undefined ? { host: endpoint.host } : {}), port };
}

export const tcpMedium: IMediumModule = {
  kind: 'tcp',
  matches: (endpoint) => endpoint.port !== undefined && endpoint.tls === undefined,
  resolve: (endpoint) => checkTcpEndpoint(endpoint),
  describe: (endpoint) => `tcp://${(endpoint as ITcpEndpoint).host ?? DEFAULT_CLIENT_HOST}:${(endpoint as ITcpEndpoint).port}`,
  create: (endpoint: TEndpoint) => new TcpMedium(endpoint as ITcpEndpoint),
};
