import { IpcClient } from '../client/classes.ipcclient.js';
import type { IResolvedClient } from '../smartipc.options.js';
import { IpcServer } from './classes.ipcserver.js';

/**
 * A client that found nobody on its socket path (and is not clientOnly) hosts the endpoint
 * itself: a server with the client's id and wire settings, ready before the client connects to it.
 */
export async function hostEndpoint(options: IResolvedClient): Promise<IpcServer> {
  const socketPath = (options.endpoint as { socketPath?: string }).socketPath;
  if (socketPath === undefined) throw new Error('only socket-path endpoints can be hosted');
  const server = new IpcServer({
    id: options.id,
    socketPath,
    autoCleanupSocketFile: true,
    maxMessageSize: options.maxMessageSize,
    serialization: options.serialization,
    heartbeat: options.heartbeat !== undefined,
    ...(options.heartbeat
      ? {
          heartbeatInterval: options.heartbeat.intervalMs,
          heartbeatTimeout: options.heartbeat.timeoutMs,
          heartbeatInitialGracePeriodMs: options.heartbeat.initialGraceMs,
        }
      : {}),
  });
  await server.start({ readyWhen: 'accepting' });
  return server;
}

IpcClient.useEndpointHosting(hostEndpoint);
