import type {
  IClientConnectOptions,
  IIpcMetrics,
  IOutboxOptions,
  IpcError,
  IClientPubSubStats,
  IServiceInfo,
  IServiceInstanceInfo,
  TSerialization,
} from '../index.js';
import type { NodeConnectionOptions } from './nats.plugins.js';

/** Options of `NatsBridge.connect`: the bridge's own, plus any nats.js connection option. */
export type INatsBridgeOptions = Omit<NodeConnectionOptions, 'servers'> & {
  /** nats-server URL(s), e.g. `nats://127.0.0.1:4222`. */
  servers: string | string[];
  /** First token(s) of every subject: one namespace per deployment (`prod`, `staging.eu`). @default 'smartipc' */
  namespace?: string;
  /** How this bridge encodes what it sends ('advanced': node:v8 structured clone). Receivers read both. @default 'json' */
  serialization?: TSerialization;
  /** After a reconnect, what waited in an outbox waits at most this long for the server ids it addresses to answer again (ms). @default 10000 */
  recoveryTimeoutMs?: number;
};

/** Options of `bridge.createClient`: those of an IpcClient that make sense over NATS. */
export interface INatsClientOptions {
  /** The server id (service name) to talk to: a host that `expose()`s a server with this id answers. */
  id: string;
  /** @default a random id */
  clientId?: string;
  /** Default timeout of `request` (ms). @default 30000 */
  requestTimeout?: number;
  /** Bound of what waits while NATS is unreachable. @default 1000 messages, 16 MiB */
  outbox?: IOutboxOptions;
  /** Encoding of what this client sends. @default the bridge's */
  serialization?: TSerialization;
  /** Streams this client may send at once. @default 32 */
  maxConcurrentStreams?: number;
  /** Calls of the services this client provides that are deeper than this are refused with MAX_DEPTH_EXCEEDED. @default 16 */
  maxCallDepth?: number;
}

export type INatsClientConnectOptions = IClientConnectOptions;

export interface INatsSubscribeOptions {
  /** Load-balanced: of all subscriptions in this queue group, exactly one receives each publish. */
  queue?: string;
}

export interface INatsClientStats {
  connected: boolean;
  clientId: string;
  reconnectAttempts: number;
  metrics: IIpcMetrics;
  pubsub: IClientPubSubStats;
}

export interface INatsClientEvents {
  connect: [];
  disconnect: [reason: IpcError];
  reconnecting: [attempt: number, delayMs: number];
  error: [error: IpcError];
}

export interface INatsBridgeEvents {
  /** The NATS connection dropped (every client emits its own `disconnect` too). */
  disconnect: [reason: IpcError];
  reconnecting: [attempt: number, delayMs: number];
  /** Connected again; subscriptions are restored by the NATS client. */
  reconnect: [];
  /** A failure no caller awaits (a handler of a message, an unreadable message, a NATS error status). */
  error: [error: IpcError];
  close: [];
}

/** Options of `bridge.expose(server)`. */
export interface INatsExposeOptions {
  /**
   * The hub's services (its own and its clients') are callable over NATS as
   * `<ns>.svc.<service>.<method>` (hosts with the same service share the load) and listed in the
   * registry. @default true
   */
  exportServices?: boolean;
  /**
   * Services provided elsewhere on NATS (NATS clients, other exposed hubs) that this hub has no
   * instance of become callable by its clients: the hub provides a relay for each (instance
   * 'server', metadata `{ nats: { imported: true } }`). While one is imported, `server.provide()` of
   * that name is refused (the hub's own slot is taken); a local client providing it replaces the
   * import. @default true
   */
  importServices?: boolean;
}

/** A service instance as NATS lists it: `hub` names the exposed hub it lives behind (absent: a NATS client provides it). */
export interface INatsServiceInstanceInfo extends IServiceInstanceInfo {
  hub?: string;
}

/** A service on NATS, every instance that provides it. */
export interface INatsServiceInfo extends IServiceInfo {
  instances: INatsServiceInstanceInfo[];
}
