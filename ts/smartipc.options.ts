// Options are resolved once, here: one resolver per public class, built from the same validators.
// Every default comes from smartipc.defaults.ts; every bad value throws INVALID_ARGUMENT naming the
// option and what to use instead.
import * as defaults from './smartipc.defaults.js';
import { invalidArgument } from './smartipc.errors.js';
import type {
  IChannelOwnOptions,
  IIpcChannelOptions,
  IIpcClientOptions,
  IIpcCommonOptions,
  IIpcServerOptions,
  IRequestOptions,
  TEndpoint,
} from './interfaces/options.js';
import type { IHeartbeatOptions } from './channel/classes.heartbeat.js';
import type { IIpcMetrics } from './interfaces/events.js';
import type { TSerialization } from './interfaces/wire.js';
import { resolveEndpoint } from './framing/media/index.js';
import type { IPermissions } from './interfaces/security.js';
import { Authenticator } from './features/security/auth.js';
import { compilePermissionTable } from './features/security/classes.guard.js';
import type { CompiledPermissions } from './features/security/permissions.js';

// ---- validators --------------------------------------------------------------------------------

/** A duration in ms: a non-negative number (positive unless allowZero), Infinity meaning "never". */
export function durationMs(name: string, value: unknown, fallback: number, { allowZero = true, allowInfinity = true } = {}): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || Number.isNaN(v) || v < 0 || (!allowZero && v === 0) || (!allowInfinity && v === Infinity)) {
    throw invalidArgument(
      `${name} must be a ${allowZero ? 'non-negative' : 'positive'} number of milliseconds${allowInfinity ? ' (Infinity: never)' : ''}, got ${describe(value)}`,
    );
  }
  return v;
}

/** A whole number of things, at least `min`; Infinity only where it means "no limit". */
export function count(name: string, value: unknown, fallback: number, { min = 1, allowInfinity = false } = {}): number {
  const v = value ?? fallback;
  const ok = typeof v === 'number' && (Number.isInteger(v) || (allowInfinity && v === Infinity)) && v >= min;
  if (!ok) throw invalidArgument(`${name} must be an integer >= ${min}${allowInfinity ? ' (or Infinity: no limit)' : ''}, got ${describe(value)}`);
  return v as number;
}

/** A size in bytes: a positive integer (or 0 where allowZero). */
export function bytes(name: string, value: unknown, fallback: number, { allowZero = false } = {}): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || (!allowZero && v === 0)) {
    throw invalidArgument(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer number of bytes, got ${describe(value)}`);
  }
  return v;
}

export function bool(name: string, value: unknown, fallback: boolean): boolean {
  const v = value ?? fallback;
  if (typeof v !== 'boolean') throw invalidArgument(`${name} must be true or false, got ${describe(value)}`);
  return v;
}

export function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[], fallback: T): T {
  const v = value ?? fallback;
  if (!allowed.includes(v as T)) throw invalidArgument(`${name} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${describe(value)}`);
  return v as T;
}

export function nonEmptyString(name: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw invalidArgument(`${name} must be a non-empty string, got ${describe(value)}`);
  return value;
}

/** A plain object (JSON-like record), or undefined. */
export function plainObject(name: string, value: unknown): Record<string, unknown> | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalidArgument(`${name} must be a plain object, got ${describe(value)}`);
  return value as Record<string, unknown>;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === undefined || value === null) return String(value);
  return typeof value;
}

// ---- shared parts ------------------------------------------------------------------------------

/** Options as used inside the library: every default applied, every value checked. */
export interface IResolvedCommon {
  id: string;
  maxMessageSize: number;
  serialization: TSerialization;
  /** undefined: no heartbeat. */
  heartbeat?: IHeartbeatOptions;
  heartbeatThrowOnTimeout: boolean;
  deadLetterCapacity: number;
  maxJsonDepth: number;
}

export interface IResolvedEndpoint {
  endpoint: TEndpoint;
}

function requireOptions(options: unknown): void {
  if (options === null || typeof options !== 'object') throw invalidArgument('options are required (an object with at least id and an endpoint)');
}

/** id, size, serialization and heartbeat. `id` may be absent only where the caller supplies one. */
export function resolveCommon(options: Partial<IIpcCommonOptions>, idFallback?: string): IResolvedCommon {
  requireOptions(options);
  const id = options.id === undefined && idFallback !== undefined ? idFallback : nonEmptyString('id (the service name)', options.id);
  const heartbeatEnabled = bool('heartbeat', options.heartbeat, defaults.DEFAULT_HEARTBEAT_ENABLED);
  const heartbeat: IHeartbeatOptions | undefined = heartbeatEnabled
    ? {
        intervalMs: durationMs('heartbeatInterval', options.heartbeatInterval, defaults.DEFAULT_HEARTBEAT_INTERVAL_MS, { allowZero: false, allowInfinity: false }),
        timeoutMs: durationMs('heartbeatTimeout', options.heartbeatTimeout, defaults.DEFAULT_HEARTBEAT_TIMEOUT_MS, { allowZero: false, allowInfinity: false }),
        initialGraceMs: durationMs('heartbeatInitialGracePeriodMs', options.heartbeatInitialGracePeriodMs, defaults.DEFAULT_HEARTBEAT_INITIAL_GRACE_MS, { allowInfinity: false }),
      }
    : undefined;
  if (heartbeat && heartbeat.timeoutMs <= heartbeat.intervalMs) {
    throw invalidArgument(`heartbeatTimeout (${heartbeat.timeoutMs} ms) must be longer than heartbeatInterval (${heartbeat.intervalMs} ms)`);
  }
  return {
    id,
    maxMessageSize: bytes('maxMessageSize', options.maxMessageSize, defaults.DEFAULT_MAX_MESSAGE_SIZE_BYTES),
    serialization: oneOf('serialization', options.serialization, ['json', 'advanced'], defaults.DEFAULT_SERIALIZATION),
    heartbeat,
    heartbeatThrowOnTimeout: bool('heartbeatThrowOnTimeout', options.heartbeatThrowOnTimeout, defaults.DEFAULT_HEARTBEAT_THROW_ON_TIMEOUT),
    deadLetterCapacity: count('deadLetterCapacity', options.deadLetterCapacity, defaults.DEFAULT_DEAD_LETTER_CAPACITY, { min: 0 }),
    maxJsonDepth: count('maxJsonDepth', options.maxJsonDepth, defaults.DEFAULT_MAX_JSON_DEPTH),
  };
}

/** What every channel has, however it was opened. */
export interface IResolvedChannelOwn {
  requestTimeoutMs: number;
  registerTimeoutMs: number;
  maxConcurrentStreams: number;
}

export function resolveChannelOwn(options: IChannelOwnOptions): IResolvedChannelOwn {
  return {
    requestTimeoutMs: durationMs('requestTimeout', options.requestTimeout, defaults.DEFAULT_REQUEST_TIMEOUT_MS),
    registerTimeoutMs: durationMs('registerTimeoutMs', options.registerTimeoutMs, defaults.DEFAULT_REGISTER_TIMEOUT_MS, { allowZero: false }),
    maxConcurrentStreams: count('maxConcurrentStreams', options.maxConcurrentStreams, defaults.DEFAULT_MAX_CONCURRENT_STREAMS),
  };
}

// ---- one resolver per public class -------------------------------------------------------------

export interface IResolvedServer extends IResolvedCommon, IResolvedEndpoint, IResolvedChannelOwn {
  autoCleanupSocketFile: boolean;
  socketMode?: number;
  maxClients: number;
  pubsubMaxQueuedBytes: number;
  slowConsumerPolicy: 'drop' | 'disconnect';
  maxCallDepth: number;
  security: IResolvedSecurity;
}

/** The server's security options, checked once (tokens digested, permission patterns compiled). */
export interface IResolvedSecurity {
  authenticator?: Authenticator;
  permissions?: Map<string, CompiledPermissions>;
  rateLimit?: { perSecond: number; burst: number };
  handshakeTimeoutMs: number;
  maxPendingHandshakes: number;
  handshakeMaxFrameBytes: number;
  frameTimeoutMs: number;
  maxPartialFrameBytes: number;
}

export function resolveSecurity(options: IIpcServerOptions): IResolvedSecurity {
  let rateLimit: IResolvedSecurity['rateLimit'];
  if (options.rateLimit !== undefined) {
    const limit = plainObject('rateLimit', options.rateLimit) as { messagesPerSecond?: unknown; burst?: unknown };
    const perSecond = limit.messagesPerSecond;
    if (typeof perSecond !== 'number' || !(perSecond > 0) || perSecond === Infinity) throw invalidArgument(`rateLimit.messagesPerSecond must be a positive number, got ${describe(perSecond)}`);
    rateLimit = { perSecond, burst: count('rateLimit.burst', limit.burst, Math.max(1, Math.ceil(perSecond))) };
  }
  return {
    ...(options.auth !== undefined ? { authenticator: new Authenticator(options.auth) } : {}),
    ...(options.permissions !== undefined ? { permissions: compilePermissionTable(plainObject('permissions', options.permissions) as Record<string, IPermissions>) } : {}),
    ...(rateLimit ? { rateLimit } : {}),
    handshakeTimeoutMs: durationMs('handshakeTimeoutMs', options.handshakeTimeoutMs, options.registerTimeoutMs ?? defaults.DEFAULT_HANDSHAKE_TIMEOUT_MS, { allowZero: false }),
    maxPendingHandshakes: count('maxPendingHandshakes', options.maxPendingHandshakes, defaults.DEFAULT_MAX_PENDING_HANDSHAKES, { allowInfinity: true }),
    handshakeMaxFrameBytes: bytes('handshakeMaxFrameBytes', options.handshakeMaxFrameBytes, defaults.DEFAULT_HANDSHAKE_MAX_FRAME_BYTES),
    frameTimeoutMs: durationMs('frameTimeoutMs', options.frameTimeoutMs, defaults.DEFAULT_FRAME_TIMEOUT_MS, { allowZero: false }),
    maxPartialFrameBytes: bytes('maxPartialFrameBytes', options.maxPartialFrameBytes, defaults.DEFAULT_MAX_PARTIAL_FRAME_BYTES),
  };
}

export function resolveServer(options: IIpcServerOptions): IResolvedServer {
  requireOptions(options);
  return {
    ...resolveCommon(options),
    endpoint: resolveEndpoint(options),
    ...resolveChannelOwn(options),
    autoCleanupSocketFile: bool('autoCleanupSocketFile', options.autoCleanupSocketFile, false),
    socketMode: socketMode(options.socketMode),
    maxClients: count('maxClients', options.maxClients, defaults.DEFAULT_MAX_CLIENTS, { allowInfinity: true }),
    pubsubMaxQueuedBytes: bytes('pubsubMaxQueuedBytes', options.pubsubMaxQueuedBytes, defaults.DEFAULT_PUBSUB_MAX_QUEUED_BYTES),
    slowConsumerPolicy: oneOf('slowConsumerPolicy', options.slowConsumerPolicy, ['drop', 'disconnect'], 'drop'),
    maxCallDepth: count('maxCallDepth', options.maxCallDepth, defaults.DEFAULT_MAX_CALL_DEPTH),
    security: resolveSecurity(options),
  };
}

export interface IResolvedClient extends IResolvedCommon, IResolvedEndpoint, IResolvedChannelOwn {
  clientId: string;
  metadata: Record<string, unknown>;
  clientOnly: boolean;
  connectRetry: Required<NonNullable<IIpcClientOptions['connectRetry']>>;
  reconnect: Required<NonNullable<IIpcClientOptions['reconnect']>>;
  outbox: { maxMessages: number; maxBytes: number };
  authToken?: string;
}

export function resolveClient(options: IIpcClientOptions, generateId: () => string): IResolvedClient {
  requireOptions(options);
  const retry = plainObject('connectRetry', options.connectRetry) ?? {};
  const reconnect = plainObject('reconnect', options.reconnect) ?? {};
  const outbox = plainObject('outbox', options.outbox) ?? {};
  const envClientOnly = process.env.SMARTIPC_CLIENT_ONLY === '1' || process.env.SMARTIPC_CLIENT_ONLY === 'true';
  return {
    ...resolveCommon(options),
    endpoint: resolveEndpoint(options),
    ...resolveChannelOwn(options),
    clientId: options.clientId === undefined ? generateId() : nonEmptyString('clientId', options.clientId),
    metadata: plainObject('metadata', options.metadata) ?? {},
    clientOnly: envClientOnly || bool('clientOnly', options.clientOnly, false),
    ...(options.authToken !== undefined ? { authToken: nonEmptyString('authToken', options.authToken) } : {}),
    connectRetry: {
      enabled: bool('connectRetry.enabled', retry.enabled, defaults.DEFAULT_CONNECT_RETRY.enabled),
      initialDelay: durationMs('connectRetry.initialDelay', retry.initialDelay, defaults.DEFAULT_CONNECT_RETRY.initialDelay, { allowInfinity: false }),
      maxDelay: durationMs('connectRetry.maxDelay', retry.maxDelay, defaults.DEFAULT_CONNECT_RETRY.maxDelay, { allowInfinity: false }),
      maxAttempts: count('connectRetry.maxAttempts', retry.maxAttempts, defaults.DEFAULT_CONNECT_RETRY.maxAttempts, { allowInfinity: true }),
      totalTimeout: durationMs('connectRetry.totalTimeout', retry.totalTimeout, defaults.DEFAULT_CONNECT_RETRY.totalTimeout, { allowZero: false }),
    },
    reconnect: {
      enabled: bool('reconnect.enabled', reconnect.enabled, defaults.DEFAULT_RECONNECT.enabled),
      initialDelay: durationMs('reconnect.initialDelay', reconnect.initialDelay, defaults.DEFAULT_RECONNECT.initialDelay, { allowInfinity: false }),
      maxDelay: durationMs('reconnect.maxDelay', reconnect.maxDelay, defaults.DEFAULT_RECONNECT.maxDelay, { allowInfinity: false }),
      maxAttempts: count('reconnect.maxAttempts', reconnect.maxAttempts, defaults.DEFAULT_RECONNECT.maxAttempts, { allowInfinity: true }),
    },
    outbox: {
      maxMessages: count('outbox.maxMessages', outbox.maxMessages, defaults.DEFAULT_OUTBOX_MAX_MESSAGES, { min: 0, allowInfinity: true }),
      maxBytes: bytes('outbox.maxBytes', outbox.maxBytes, defaults.DEFAULT_OUTBOX_MAX_BYTES, { allowZero: true }),
    },
  };
}

export interface IResolvedChannel extends IResolvedCommon, IResolvedEndpoint, IResolvedChannelOwn {
  role: 'auto' | 'server' | 'client';
  autoCleanupSocketFile: boolean;
  socketMode?: number;
}

export function resolveChannel(options: IIpcChannelOptions): IResolvedChannel {
  requireOptions(options);
  return {
    ...resolveCommon(options),
    endpoint: resolveEndpoint(options),
    ...resolveChannelOwn(options),
    role: oneOf('role', options.role, ['auto', 'server', 'client'], 'auto'),
    autoCleanupSocketFile: bool('autoCleanupSocketFile', options.autoCleanupSocketFile, false),
    socketMode: socketMode(options.socketMode),
  };
}

/** A channel to a parent or a child: no endpoint, the id comes from the link. */
export interface IResolvedLinkChannel extends IResolvedCommon, IResolvedChannelOwn {}

export function resolveLinkChannel(options: Partial<IIpcCommonOptions> & IChannelOwnOptions, id: string): IResolvedLinkChannel {
  return { ...resolveCommon(options, id), ...resolveChannelOwn(options) };
}

function socketMode(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0o777) {
    throw invalidArgument(`socketMode must be a file mode such as 0o600, got ${describe(value)}`);
  }
  return value;
}

// ---- per call ----------------------------------------------------------------------------------

/** Checks the options of one request or call; the hot path passes none and skips this. */
export function checkRequestOptions(options: IRequestOptions): void {
  if (options === null || typeof options !== 'object') throw invalidArgument('request options must be an object');
  if (options.timeout !== undefined) durationMs('timeout', options.timeout, 0);
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw invalidArgument('signal must be an AbortSignal');
  if (options.headers !== undefined) plainObject('headers', options.headers);
  if (options.propagate !== undefined) bool('propagate', options.propagate, true);
  if (options.idempotent !== undefined) bool('idempotent', options.idempotent, false);
  if (options.retry !== undefined && options.idempotent !== true) throw invalidArgument('retry needs idempotent: true (only the caller knows that repeating a request is harmless)');
}

/** The counters a connection updates (latency lives in LatencyRecorders; getStats() adds the summaries). */
export type TCounters = Omit<IIpcMetrics, 'latency'>;

export function emptyMetrics(): TCounters {
  return { messagesSent: 0, messagesReceived: 0, bytesSent: 0, bytesReceived: 0, requestsInFlight: 0, errors: 0, timeouts: 0, reconnects: 0, deadLetters: 0, rateLimited: 0 };
}
