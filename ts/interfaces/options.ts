import type * as tls from 'node:tls';
import type { TSerialization } from './wire.js';
import type { IAuthOptions, IPermissions, IRateLimitOptions } from './security.js';
import type { ICircuitBreakerOptions, IRetryOptions } from './observability.js';

/** A Unix domain socket (Linux, macOS) or, on Windows, a named pipe. */
export interface ISocketPathEndpoint {
  /** Path of the socket file. On Windows `\\.\pipe\NAME` is used as is; any other path is mapped to a pipe name. */
  socketPath: string;
  host?: undefined;
  port?: undefined;
  tls?: undefined;
}

/** TCP, optionally TLS. */
export interface ITcpEndpoint {
  socketPath?: undefined;
  /** @default '127.0.0.1' for a client, all interfaces ('::' or '0.0.0.0') for a server */
  host?: string;
  /** 0 lets the server pick a free port; read it back with `getAddress()`. */
  port: number;
  /**
   * Turns TCP into TLS (node:tls). A server passes `cert` and `key`; a client passes `ca` (and
   * `servername` when it differs from `host`). Certificates are verified as node:tls does by default.
   */
  tls?: tls.SecureContextOptions & { servername?: string; rejectUnauthorized?: boolean; requestCert?: boolean };
}

export type TEndpoint = ISocketPathEndpoint | ITcpEndpoint;

/** The medium under a connection. */
export type TTransportKind = 'unix' | 'pipe' | 'tcp' | 'tls' | 'child';

/** Where a server is bound: `socketPath` for sockets and pipes, `host` and `port` for TCP. */
export type TAddress = { socketPath: string } | { host: string; port: number };

/** Options shared by servers, clients and channels. */
export interface IIpcCommonOptions {
  /** The service's name: a client must use its server's id. */
  id: string;
  /** Largest frame this side accepts, in bytes. The peer learns it at the handshake. @default 8 MiB */
  maxMessageSize?: number;
  /** 'advanced' uses node:v8 structured clone (Buffer, Date, Map, Set, BigInt...); both ends must agree. @default 'json' */
  serialization?: TSerialization;
  /** Send pings and watch for the peer's answers. @default true */
  heartbeat?: boolean;
  /** Milliseconds between pings. @default 5000 */
  heartbeatInterval?: number;
  /** Silence from the peer longer than this (ms) is a heartbeat timeout. @default 15000 */
  heartbeatTimeout?: number;
  /** Extra milliseconds after connecting before silence counts. @default 5000 */
  heartbeatInitialGracePeriodMs?: number;
  /** true: a heartbeat timeout is also emitted as an `error` event. false: only `heartbeatTimeout`. Either way the connection is dropped. @default false */
  heartbeatThrowOnTimeout?: boolean;
  /** Dead letters kept for `getDeadLetters()` (all are counted in metrics.deadLetters). @default 1000 */
  deadLetterCapacity?: number;
  /** Received JSON nested deeper than this is refused (PROTOCOL_ERROR for that message; the connection stays). Both ends should agree. @default 1000 */
  maxJsonDepth?: number;
}

export type IIpcServerOptions = IIpcCommonOptions & TEndpoint & {
  /** Remove a stale socket file left by a dead server (never one a live server answers on). @default false */
  autoCleanupSocketFile?: boolean;
  /** File mode of the Unix socket, e.g. 0o600. @default left to the umask */
  socketMode?: number;
  /** Connections beyond this are refused with TOO_MANY_CLIENTS. @default Infinity */
  maxClients?: number;
  /** Open streams per connection. @default 32 */
  maxConcurrentStreams?: number;
  /**
   * Pub/sub backpressure: bytes queued for one client and not yet taken by its socket past which
   * publishes to that client are dropped (counted, `slowConsumer` emitted) until it has read its
   * queue. Bounds the server's memory per slow subscriber. @default 8 MiB
   */
  pubsubMaxQueuedBytes?: number;
  /**
   * What happens to a subscriber over `pubsubMaxQueuedBytes`: 'drop' skips its publishes (counted,
   * dead-lettered) until it has read its queue; 'disconnect' closes its connection at once (it
   * reconnects and resubscribes by itself). @default 'drop'
   */
  slowConsumerPolicy?: 'drop' | 'disconnect';
  /** Time a new connection has to complete its handshake (ms). @default 5000 */
  registerTimeoutMs?: number;
  /** Default timeout of `requestClient` and `call` made by the server (ms; Infinity: none). @default 30000 */
  requestTimeout?: number;
  /** Services: a call chain longer than this (order -> user -> role is 3) is refused with MAX_DEPTH_EXCEEDED. @default 16 */
  maxCallDepth?: number;
  /** Who may connect: accepted tokens and/or an authenticate hook. Without it anyone who reaches the endpoint is a client. */
  auth?: IAuthOptions;
  /** What connections may do, by clientId, with '*' for everyone else (an `authenticate` answer overrides it). @default everything */
  permissions?: Record<string, IPermissions>;
  /** A token bucket per connection over messages, requests, publishes and calls. @default none */
  rateLimit?: IRateLimitOptions;
  /** A connection that has not completed its handshake (and authentication) by then is closed (ms). @default 5000 (registerTimeoutMs when only that is given) */
  handshakeTimeoutMs?: number;
  /** Connections in their handshake beyond this many: the oldest that have waited 250 ms are closed with SERVER_UNAVAILABLE (clients retry it); established clients are unaffected. @default 64 */
  maxPendingHandshakes?: number;
  /** Largest frame accepted before the handshake completes (a HELLO is far smaller). @default 16 KiB */
  handshakeMaxFrameBytes?: number;
  /** A frame that has begun to arrive must be complete within this (ms), or its connection is closed. @default 10000 */
  frameTimeoutMs?: number;
  /** Bytes all connections together may hold for frames that have not fully arrived; the one that goes over is closed. @default 256 MiB */
  maxPartialFrameBytes?: number;
};

export interface IConnectRetryOptions {
  /** @default false */
  enabled?: boolean;
  /** @default 100 */
  initialDelay?: number;
  /** @default 1500 */
  maxDelay?: number;
  /** @default 10 */
  maxAttempts?: number;
  /** @default 15000 */
  totalTimeout?: number;
}

export interface IReconnectOptions {
  /** @default true */
  enabled?: boolean;
  /** @default 100 */
  initialDelay?: number;
  /** @default 5000 */
  maxDelay?: number;
  /** @default Infinity */
  maxAttempts?: number;
}

export interface IOutboxOptions {
  /** Messages and requests held while reconnecting. @default 1000 */
  maxMessages?: number;
  /** Bytes held while reconnecting (payload size as encoded). @default 16 MiB */
  maxBytes?: number;
}

export type IIpcClientOptions = IIpcCommonOptions & TEndpoint & {
  /** @default a random id */
  clientId?: string;
  /** Sent to the server at the handshake; see `server.getClientInfo()`. */
  metadata?: Record<string, unknown>;
  /** Never host the endpoint itself; fail with SERVER_UNAVAILABLE. Env SMARTIPC_CLIENT_ONLY=1 forces true. @default false */
  clientOnly?: boolean;
  /** Retries of the first connect. */
  connectRetry?: IConnectRetryOptions;
  /** Reconnection after a drop. */
  reconnect?: IReconnectOptions;
  /** Bound of what waits while reconnecting. */
  outbox?: IOutboxOptions;
  /** Time for the server to answer the handshake (ms). @default 5000 */
  registerTimeoutMs?: number;
  /** Default timeout of `request` (ms; Infinity: none). @default 30000 */
  requestTimeout?: number;
  /** Sent at the handshake to a server with `auth: { tokens }` (or an authenticate hook that reads it). */
  authToken?: string;
  /** One circuit breaker per request type and `service.method` (opt-in). */
  circuitBreaker?: ICircuitBreakerOptions;
  /** Open streams per direction. @default 32 */
  maxConcurrentStreams?: number;
};

export interface IRequestOptions {
  /**
   * Milliseconds before the request rejects with TIMEOUT (Infinity: never). Inside a handler the
   * time its own caller has left caps it (see `propagate`). @default the requestTimeout option (30000)
   */
  timeout?: number;
  /** Aborting rejects the request with ABORTED, and aborts the handler's `context.signal` on the other side. */
  signal?: AbortSignal;
  /** Small JSON object delivered to the handler beside the data. */
  headers?: Record<string, unknown>;
  /**
   * Made inside a handler: inherit its deadline (the smaller timeout wins) and its cancellation.
   * false: this request is on its own. @default true
   */
  propagate?: boolean;
  /** Retry transient failures within the one timeout (client requests and calls): only with `idempotent: true`. */
  retry?: IRetryOptions;
  /** The caller's promise that repeating this request is harmless: required by `retry`. */
  idempotent?: boolean;
}

export interface IServerStartOptions {
  /** 'listening': resolve once bound. 'accepting': also prove a connection is accepted. @default 'accepting' */
  readyWhen?: 'listening' | 'accepting';
}

export interface IServerStopOptions {
  /** How long in-flight handlers may take before connections are closed (ms). @default 5000 */
  graceMs?: number;
}

export interface IClientConnectOptions {
  /** Keep trying until a server answers, up to waitTimeout. @default false */
  waitForReady?: boolean;
  /** @default 10000 */
  waitTimeout?: number;
}

export type IIpcChannelOptions = IIpcCommonOptions & TEndpoint & IChannelOwnOptions & {
  /** 'auto': whichever process starts first listens, the other connects. @default 'auto' */
  role?: 'auto' | 'server' | 'client';
  /** The listening side: remove a stale socket file left by a dead process. @default false */
  autoCleanupSocketFile?: boolean;
  /** The listening side: file mode of the Unix socket, e.g. 0o600. @default left to the umask */
  socketMode?: number;
};

/** Options of a channel whatever opens it (an endpoint, `SmartIpc.fork`, `connectParent`). */
export interface IChannelOwnOptions {
  /** Default timeout of `request` (ms; Infinity: none). @default 30000 */
  requestTimeout?: number;
  /** Time the other side has to complete the handshake (ms). @default 5000 */
  registerTimeoutMs?: number;
  /** Open streams per direction. @default 32 */
  maxConcurrentStreams?: number;
}

/** `SmartIpc.fork(modulePath, options)`: the child process and the channel to it. */
export interface IForkOptions extends Partial<IIpcCommonOptions>, IChannelOwnOptions {
  /** Arguments for the module. @default [] */
  args?: string[];
  /** The child's environment. @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Node.js flags for the child. @default process.execArgv (like child_process.fork) */
  execArgv?: string[];
  /** @default process.cwd() */
  cwd?: string;
  /** true: the child's stdout and stderr are pipes (`child.stdout`); false: they are this process's. @default false */
  silent?: boolean;
  /** The child must call `SmartIpc.connectParent()` within this (ms), or it is killed and fork rejects TIMEOUT. @default 10000 */
  timeoutMs?: number;
}

/** `SmartIpc.connectParent(options)`, in a process started by `SmartIpc.fork`. */
export interface IConnectParentOptions extends Omit<Partial<IIpcCommonOptions>, 'id'>, IChannelOwnOptions {}
