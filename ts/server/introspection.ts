// The requests the hub answers about itself, under reserved types (`$smartipc.`): what the
// `smartipc` CLI's `stats`, `services` and a client's listServices() / listPeers() ask.
import type { TMessageHandler } from '../interfaces/events.js';
import type { IServiceInfo } from '../interfaces/services.js';
import type { IClientInfo, IIpcServerStats } from './classes.ipcserver.js';

export const STATS_REQUEST = '$smartipc.stats';
export const SERVICES_REQUEST = '$smartipc.services';
export const PEERS_REQUEST = '$smartipc.peers';

export interface IIntrospectionSource {
  id(): string;
  stats(): IIpcServerStats;
  clients(): IClientInfo[];
  services(): IServiceInfo[];
}

/** The answer to `$smartipc.stats`. */
export interface IServerIntrospection {
  id: string;
  stats: IIpcServerStats;
  clients: IClientInfo[];
}

export function registerIntrospection(handlers: Map<string, TMessageHandler>, source: IIntrospectionSource): void {
  handlers.set(STATS_REQUEST, (): IServerIntrospection => {
    const stats = source.stats();
    // This request is not "in flight" in its own answer.
    stats.metrics.requestsInFlight = Math.max(0, stats.metrics.requestsInFlight - 1);
    return { id: source.id(), stats, clients: source.clients() };
  });
  handlers.set(SERVICES_REQUEST, () => source.services());
  handlers.set(PEERS_REQUEST, () => source.clients().map((client) => client.clientId));
}
