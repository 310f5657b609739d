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
  server.setNoHandlerHint(
    () =>
      ` (client "${options.clientId}" hosts ${socketPath} itself because no server answered there: it serves only the handlers registered on its getHostedServer(); pass clientOnly: true to make connect() fail with SERVER_UNAVAILABLE instead)`,
  );
  await server.start({ readyWhen: 'accepting' });
  return server;
}

IpcClient.useEndpointHosting(hostEndpoint);
