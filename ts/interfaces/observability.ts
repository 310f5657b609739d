import type { TIpcErrorCode } from '../smartipc.errors.js';

/** Why an accepted message was not delivered. */
export type TDeadLetterReason =
  /** A fire-and-forget message (or peer message) with no handler. */
  | 'noHandler'
  /** A fire-and-forget handler threw or rejected. */
  | 'handlerError'
  /** A fire-and-forget message or publish whose payload did not decode. */
  | 'undecodable'
  /** A publish not queued for a subscriber over its queue bound (server), or dropped from a full subscribeIterator buffer (client). */
  | 'slowConsumer'
  /** A publish too large for a subscriber's maxMessageSize. */
  | 'tooLarge'
  /** Refused by the rate limit (a message or a publish; requests are answered RATE_LIMITED instead). */
  | 'rateLimited'
  /** Refused by a permission (a message or a publish; requests are answered FORBIDDEN instead). */
  | 'forbidden'
  /** A peer message to a clientId that is not connected. */
  | 'unknownPeer';

/** A message the library accepted and then did not deliver (see the `deadLetter` event). */
export interface IDeadLetter {
  reason: TDeadLetterReason;
  /** The message type, or the topic of a publish. */
  type: string;
  /** Who sent it: a clientId on a server, the server's id on a client ('server' for the hub's own publishes). */
  peerId?: string;
  /** For a publish dropped for one subscriber: that subscriber. */
  to?: string;
  /** The data, when it is small (64 KiB encoded at most) and was decoded anyway or cheaply decodable. */
  data?: unknown;
  code: TIpcErrorCode;
  /** Epoch ms. */
  at: number;
}

/** Latency of one message type or `service.method`, over the last one to two windows (LATENCY_WINDOW_MS, 60 s each). */
export interface ILatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** Caller side: round trips of requests and calls. Handler side: time in the handler. In ms. */
export interface ILatencyMetrics {
  /** Requests, calls and peer requests this side made, by type or `service.method`. */
  requests: Record<string, ILatencySummary>;
  /** Handlers this side ran for requests, calls and messages, by type or `service.method`. */
  handlers: Record<string, ILatencySummary>;
}

/** Counters beyond the basic ones. */
export interface IObservabilityMetrics {
  latency: ILatencyMetrics;
  /** Requests and calls this side made that timed out. */
  timeouts: number;
  /** Successful reconnections (client). */
  reconnects: number;
  /** Messages the library accepted and did not deliver (every `deadLetter`). */
  deadLetters: number;
  /** Frames refused by the rate limit (server: from its clients; client: RATE_LIMITED answers it got). */
  rateLimited: number;
}

/** Retry of one request or call: only with `idempotent: true`, every attempt within the one timeout. */
export interface IRetryOptions {
  /** Attempts in all (the first included). */
  attempts: number;
  /** @default 50 */
  initialDelay?: number;
  /** @default 1000 */
  maxDelay?: number;
  /** @default ['CONNECTION_LOST', 'SERVICE_NOT_FOUND', 'NOT_CONNECTED', 'TIMEOUT'] */
  on?: TIpcErrorCode[];
}

export interface ICircuitBreakerOptions {
  /** Consecutive failures (of the `on` codes) that open the breaker of a target. @default 5 */
  failureThreshold?: number;
  /** How long it stays open before one trial call decides. @default 10000 */
  resetTimeoutMs?: number;
  /** @default ['TIMEOUT', 'CONNECTION_LOST', 'NOT_CONNECTED', 'SERVICE_NOT_FOUND', 'SERVER_UNAVAILABLE'] */
  on?: TIpcErrorCode[];
}
