import * as defaults from './smartipc.defaults.js';
import type { IIpcClientOptions, IIpcCommonOptions, IIpcServerOptions, TEndpoint } from './interfaces/options.js';
import type { IHeartbeatOptions } from './channel/classes.heartbeat.js';
import type { TSerialization } from './interfaces/wire.js';

/** Options as used inside the library: every default applied, every value checked. */
export interface IResolvedCommon {
  id: string;
  endpoint: TEndpoint;
  maxMessageSize: number;
  serialization: TSerialization;
  heartbeat?: IHeartbeatOptions;
  heartbeatThrowOnTimeout: boolean;
}

function fail(message: string): never {
  throw new TypeError(`smartipc: ${message}`);
}

function positive(name: string, value: number | undefined, fallback: number, allowZero = false): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || Number.isNaN(v) || v < 0 || (!allowZero && v === 0)) {
    fail(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} number of ${name.includes('Size') || name.includes('Bytes') ? 'bytes' : 'ms'}, got ${String(value)}`);
  }
  return v;
}

export function resolveEndpoint(options: Partial<TEndpoint>): TEndpoint {
  const hasPath = typeof options.socketPath === 'string' && options.socketPath.length > 0;
  const hasPort = typeof options.port === 'number';
  if (hasPath && hasPort) fail('give either socketPath or host/port, not both');
  if (hasPath) return { socketPath: options.socketPath! };
  if (hasPort) {
    if (!Number.isInteger(options.port) || options.port! < 0 || options.port! > 65535) fail(`port must be an integer 0..65535, got ${options.port}`);
    return { host: options.host, port: options.port!, ...(options.tls ? { tls: options.tls } : {}) };
  }
  return fail('an endpoint needs socketPath (Unix socket / named pipe) or port (TCP)');
}

/** An endpoint for messages: its socket path, or host:port. */
export function describeEndpoint(endpoint: Partial<TEndpoint>): string {
  return endpoint.socketPath ?? `${endpoint.host ?? '127.0.0.1'}:${endpoint.port}`;
}

export function resolveCommon(options: IIpcCommonOptions & Partial<TEndpoint>): IResolvedCommon {
  if (!options || typeof options !== 'object') fail('options are required');
  if (typeof options.id !== 'string' || options.id.length === 0) fail('id (the service name) must be a non-empty string');
  const serialization = options.serialization ?? defaults.DEFAULT_SERIALIZATION;
  if (serialization !== 'json' && serialization !== 'advanced') fail(`serialization must be 'json' or 'advanced', got ${String(serialization)}`);
  const heartbeatEnabled = options.heartbeat ?? defaults.DEFAULT_HEARTBEAT_ENABLED;
  const heartbeat: IHeartbeatOptions | undefined = heartbeatEnabled
    ? {
        intervalMs: positive('heartbeatInterval', options.heartbeatInterval, defaults.DEFAULT_HEARTBEAT_INTERVAL_MS),
        timeoutMs: positive('heartbeatTimeout', options.heartbeatTimeout, defaults.DEFAULT_HEARTBEAT_TIMEOUT_MS),
        initialGraceMs: positive('heartbeatInitialGracePeriodMs', options.heartbeatInitialGracePeriodMs, defaults.DEFAULT_HEARTBEAT_INITIAL_GRACE_MS, true),
      }
    : undefined;
  if (heartbeat && heartbeat.timeoutMs <= heartbeat.intervalMs) {
    fail(`heartbeatTimeout (${heartbeat.timeoutMs} ms) must be longer than heartbeatInterval (${heartbeat.intervalMs} ms)`);
  }
  return {
    id: options.id,
    endpoint: resolveEndpoint(options),
    maxMessageSize: positive('maxMessageSize', options.maxMessageSize, defaults.DEFAULT_MAX_MESSAGE_SIZE_BYTES),
    serialization,
    heartbeat,
    heartbeatThrowOnTimeout: options.heartbeatThrowOnTimeout ?? defaults.DEFAULT_HEARTBEAT_THROW_ON_TIMEOUT,
  };
}

export interface IResolvedServer extends IResolvedCommon {
  autoCleanupSocketFile: boolean;
  socketMode?: number;
  maxClients: number;
  maxConcurrentStreams: number;
  registerTimeoutMs: number;
  pubsubMaxQueuedBytes: number;
}

export function resolveServer(options: IIpcServerOptions): IResolvedServer {
  return {
    ...resolveCommon(options),
    autoCleanupSocketFile: options.autoCleanupSocketFile ?? false,
    socketMode: options.socketMode,
    maxClients: positive('maxClients', options.maxClients, defaults.DEFAULT_MAX_CLIENTS),
    maxConcurrentStreams: positive('maxConcurrentStreams', options.maxConcurrentStreams, defaults.DEFAULT_MAX_CONCURRENT_STREAMS),
    registerTimeoutMs: positive('registerTimeoutMs', options.registerTimeoutMs, defaults.DEFAULT_REGISTER_TIMEOUT_MS),
    pubsubMaxQueuedBytes: positive('pubsubMaxQueuedBytes', options.pubsubMaxQueuedBytes, defaults.DEFAULT_PUBSUB_MAX_QUEUED_BYTES),
  };
}

export interface IResolvedClient extends IResolvedCommon {
  clientId: string;
  metadata: Record<string, unknown>;
  clientOnly: boolean;
  connectRetry: Required<NonNullable<IIpcClientOptions['connectRetry']>>;
  reconnect: Required<NonNullable<IIpcClientOptions['reconnect']>>;
  outbox: { maxMessages: number; maxBytes: number };
  registerTimeoutMs: number;
  requestTimeoutMs: number;
}

export function resolveClient(options: IIpcClientOptions, generateId: () => string): IResolvedClient {
  const common = resolveCommon(options);
  const retry = options.connectRetry ?? {};
  const reconnect = options.reconnect ?? {};
  const envClientOnly = process.env.SMARTIPC_CLIENT_ONLY === '1' || process.env.SMARTIPC_CLIENT_ONLY === 'true';
  if (options.clientId !== undefined && (typeof options.clientId !== 'string' || options.clientId.length === 0)) fail('clientId must be a non-empty string');
  return {
    ...common,
    clientId: options.clientId ?? generateId(),
    metadata: options.metadata ?? {},
    clientOnly: envClientOnly || (options.clientOnly ?? false),
    connectRetry: {
      enabled: retry.enabled ?? defaults.DEFAULT_CONNECT_RETRY.enabled,
      initialDelay: positive('connectRetry.initialDelay', retry.initialDelay, defaults.DEFAULT_CONNECT_RETRY.initialDelay, true),
      maxDelay: positive('connectRetry.maxDelay', retry.maxDelay, defaults.DEFAULT_CONNECT_RETRY.maxDelay, true),
      maxAttempts: positive('connectRetry.maxAttempts', retry.maxAttempts, defaults.DEFAULT_CONNECT_RETRY.maxAttempts),
      totalTimeout: positive('connectRetry.totalTimeout', retry.totalTimeout, defaults.DEFAULT_CONNECT_RETRY.totalTimeout),
    },
    reconnect: {
      enabled: reconnect.enabled ?? defaults.DEFAULT_RECONNECT.enabled,
      initialDelay: positive('reconnect.initialDelay', reconnect.initialDelay, defaults.DEFAULT_RECONNECT.initialDelay, true),
      maxDelay: positive('reconnect.maxDelay', reconnect.maxDelay, defaults.DEFAULT_RECONNECT.maxDelay, true),
      maxAttempts: positive('reconnect.maxAttempts', reconnect.maxAttempts, defaults.DEFAULT_RECONNECT.maxAttempts),
    },
    outbox: {
      maxMessages: positive('outbox.maxMessages', options.outbox?.maxMessages, defaults.DEFAULT_OUTBOX_MAX_MESSAGES, true),
      maxBytes: positive('outbox.maxBytes', options.outbox?.maxBytes, defaults.DEFAULT_OUTBOX_MAX_BYTES, true),
    },
    registerTimeoutMs: positive('registerTimeoutMs', options.registerTimeoutMs, defaults.DEFAULT_REGISTER_TIMEOUT_MS),
    requestTimeoutMs: positive('requestTimeout', options.requestTimeout, defaults.DEFAULT_REQUEST_TIMEOUT_MS),
  };
}

export function emptyMetrics() {
  return { messagesSent: 0, messagesReceived: 0, bytesSent: 0, bytesReceived: 0, requestsInFlight: 0, errors: 0 };
}
