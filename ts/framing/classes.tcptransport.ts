import * as plugins from '../plugins.js';
import { IpcTransport, type IIpcListener, type ITransportLimits } from './classes.transport.js';
import { bindServer, closeServer } from './listen.js';
import type { ITcpEndpoint } from '../interfaces/options.js';

/** TCP, or TLS over TCP when `tls` is given (certificates verified as node:tls does by default). */
export class TcpTransport extends IpcTransport {
  constructor(limits: ITransportLimits, protected readonly endpoint: ITcpEndpoint) {
    super(limits);
  }

  public describe(): string {
    return `${this.endpoint.tls ? 'tls' : 'tcp'}://${this.endpoint.host ?? '127.0.0.1'}:${this.endpoint.port}`;
  }

  protected override get connectEvent(): string {
    return this.endpoint.tls ? 'secureConnect' : 'connect';
  }

  protected dial(): plugins.net.Socket {
    const host = this.endpoint.host ?? '127.0.0.1';
    if (this.endpoint.tls) {
      return plugins.tls.connect({
        ...this.endpoint.tls,
        host,
        port: this.endpoint.port,
        servername: this.endpoint.tls.servername ?? (plugins.net.isIP(host) ? undefined : host),
      });
    }
    return plugins.net.createConnection({ host, port: this.endpoint.port });
  }

  public forAccepted(socket: plugins.net.Socket): IpcTransport {
    const transport = new TcpTransport(this.limits, this.endpoint);
    transport.attach(socket);
    return transport;
  }

  public async listen(onSocket: (socket: plugins.net.Socket) => void): Promise<IIpcListener> {
    const server = this.endpoint.tls
      ? plugins.tls.createServer(this.endpoint.tls, onSocket)
      : plugins.net.createServer(onSocket);
    if (this.endpoint.tls) {
      // A failed TLS handshake concerns that one peer only; it must not become a server 'error'.
      server.on('tlsClientError', (_err, socket) => socket.destroy());
    }
    await bindServer(server, { host: this.endpoint.host, port: this.endpoint.port }, this.describe());
    return {
      address: () => {
        const bound = server.address() as plugins.net.AddressInfo;
        return { host: bound.address, port: bound.port };
      },
      close: () => closeServer(server),
    };
  }
}
