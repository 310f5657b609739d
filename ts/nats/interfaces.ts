import type { Readable } from 'node:stream';
import type {
  IClientConnectOptions,
  IIpcMetrics,
  IOutboxOptions,
  IStreamInfo,
  IpcError,
  IClientPubSubStats,
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

// ---- the seam to the core ----------------------------------------------------------------------

/** What a handler invocation arriving over NATS carries. */
export interface INatsInvocation {
  /** The message type. */
  type: string;
  /** The caller's clientId (its handler argument). */
  peerId: string;
  /** true: the caller awaits the result. */
  isRequest: boolean;
  /** The caller's request headers. */
  headers?: Record<string, unknown>;
  /** Epoch ms at which the caller gives up (requests only): now + the budget in Sipc-Timeout-Ms. */
  deadline?: number;
  /** Aborts when the caller's budget runs out or the bridge closes. */
  signal: AbortSignal;
}

/**
 * What `bridge.expose()` needs from a local server. The core's IpcServer does not offer it yet;
 * `expose(server)` wraps an IpcServer in a temporary adapter built on its public API (see
 * IpcServerNatsAdapter and docs/nats.md), and takes any object with these members directly.
 */
export interface INatsExposableServer {
  /** The server id: NATS clients created with this id reach it. */
  readonly id: string;
  /** How its results are encoded. */
  readonly serialization: TSerialization;
  /**
   * The message types it has a handler for, or undefined when it cannot say. Known types are
   * subscribed one by one, so a host only receives (and shares the load of) what it handles;
   * unknown: the exposure subscribes to every type and `invoke` answers NO_HANDLER.
   */
  getHandlerTypes?(): string[] | undefined;
  /** Calls `listener` whenever a handler is added or removed. Returns the unsubscribe. */
  onHandlersChanged?(listener: () => void): () => void;
  /**
   * Runs the handler of `invocation.type`: returns its result (a value, or a promise of it);
   * throws or rejects NO_HANDLER when there is none, HANDLER_ERROR (with remote) when it threw.
   * A synchronous result saves a promise per message.
   */
  invoke(data: unknown, invocation: INatsInvocation): unknown;
  /** Every publish of the local broker (from a local client or the server itself) with its publisher's id. Returns the unsubscribe. */
  tapPublishes(listener: (topic: string, data: unknown, from: string) => void): Promise<() => void>;
  /** Publishes into the local broker as `from`; the local subscribers get it and `tapPublishes` does not see it (no echo). */
  publishLocal(topic: string, data: unknown, from: string): Promise<void>;
  /** Hands a stream that arrived over NATS to the server's `stream` listeners; resolves once they have all of it, rejects (NO_HANDLER when nobody listens). */
  deliverStream(info: IStreamInfo, readable: Readable): Promise<void>;
  /** Called once by expose() before anything else, and by unexpose()/close() at the end. */
  open?(): Promise<void>;
  close?(): Promise<void>;
}
