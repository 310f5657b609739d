// The server's introspection answers ($smartipc.stats, $smartipc.services), asked for with a plain
// request. A server from before introspection answers NO_HANDLER: that is told as "upgrade it".
import { IpcError, isIpcError, type IpcClient } from '../index.js';

export const STATS_REQUEST = '$smartipc.stats';
export const SERVICES_REQUEST = '$smartipc.services';

export interface IIntrospectedClient {
  clientId: string;
  connectedAt: number;
  lastActivity: number;
  metadata: Record<string, unknown>;
}

export interface IIntrospectedStats {
  id: string;
  /** The server's getStats(). */
  stats: {
    isRunning?: boolean;
    connectedClients?: number;
    totalConnections?: number;
    uptime?: number;
    metrics?: Record<string, unknown>;
    pubsub?: Record<string, unknown>;
    [key: string]: unknown;
  };
  clients: IIntrospectedClient[];
}

export interface IIntrospectedService {
  name: string;
  instances: Array<{ clientId: string; methods: string[]; version?: string; metadata?: Record<string, unknown>; inFlight?: number }>;
}

export async function introspect<T>(client: IpcClient, type: string, options: { timeout: number; signal: AbortSignal }): Promise<T> {
  try {
    return await client.request<undefined, T>(type, undefined, options);
  } catch (err) {
    if (isIpcError(err, 'NO_HANDLER')) {
      throw new IpcError('NO_HANDLER', `the server does not answer introspection (${type}): upgrade it to a @push.rocks/smartipc with introspection`, { cause: err });
    }
    throw err;
  }
}
