import type { TEndpoint } from '../interfaces/options.js';
import { IpcError } from '../smartipc.errors.js';
import { NamedPipeTransport } from './classes.namedpipetransport.js';
import { TcpTransport } from './classes.tcptransport.js';
import type { IpcTransport, ITransportLimits } from './classes.transport.js';
import { UnixSocketTransport } from './classes.unixsockettransport.js';

export interface ITransportFactoryOptions {
  autoCleanupSocketFile?: boolean;
  socketMode?: number;
}

/** Picks the medium for an endpoint: named pipe on Windows, Unix socket elsewhere, TCP for a port. */
export function createTransport(
  endpoint: TEndpoint,
  limits: ITransportLimits,
  options: ITransportFactoryOptions = {},
  platform: NodeJS.Platform = process.platform,
): IpcTransport {
  if (typeof endpoint.socketPath === 'string' && endpoint.socketPath.length > 0) {
    if (platform === 'win32') return new NamedPipeTransport(limits, endpoint.socketPath);
    return new UnixSocketTransport(limits, { socketPath: endpoint.socketPath, ...options });
  }
  if (typeof endpoint.port === 'number') {
    return new TcpTransport(limits, endpoint);
  }
  throw new IpcError('PROTOCOL_ERROR', 'an endpoint needs either socketPath or port');
}
