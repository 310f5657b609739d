import type { Readable } from 'node:stream';
import type { IpcError } from '../smartipc.errors.js';
import type { IStreamInfo } from './streams.js';
import type { IDeadLetter, ILatencyMetrics } from './observability.js';
import type { ICallCompletedInfo, ICallRoutedInfo, IServiceRegisteredInfo, IServiceUnregisteredInfo } from './services.js';

/** Counters kept by a server (all its connections) or a client (its one connection). */
export interface IIpcMetrics {
  messagesSent: number;
  messagesReceived: number;
  bytesSent: number;
  bytesReceived: number;
  /** Server: requests received and not yet answered. Client: requests sent and not yet settled. */
  requestsInFlight: number;
  /** Protocol faults, handler failures and transport errors. */
  errors: number;
  /** Requests and calls this side made that timed out. */
  timeouts: number;
  /** Successful reconnections (a client). */
  reconnects: number;
  /** Messages accepted and then not delivered (every `deadLetter` event). */
  deadLetters: number;
  /** Frames refused by the rate limit (a server: from its clients; a client: RATE_LIMITED answers it got). */
  rateLimited: number;
  /** Round trips (caller side) and handler times, per type or `service.method`, over the last 1-2 minutes. */
  latency: ILatencyMetrics;
}

/** What a message handler learns beside the data (always passed, whatever the handler declares). */
export interface IMessageContext {
  /** The message type. */
  readonly type: string;
  /** The headers the sender passed with a request. */
  readonly headers?: Record<string, unknown>;
  /** True when the sender awaits the return value. */
  readonly isRequest: boolean;
  /** The sender: its clientId on a server, the server's id on a client. */
  readonly peerId: string;
  /**
   * Aborts when the caller aborts its request, its timeout expires or its connection drops;
   * `signal.reason` is an IpcError with code ABORTED, TIMEOUT or CONNECTION_LOST. Pass it on to
   * whatever the handler waits for; a result produced after it aborted is dropped.
   */
  readonly signal: AbortSignal;
  /** Wall-clock time (epoch ms) at which the caller gives up; undefined for messages and requests without a timeout. */
  readonly deadline?: number;
  /** Milliseconds left until `deadline`, never negative; Infinity without one. */
  remainingMs(): number;
}

/**
 * One handler serves fire-and-forget messages and requests: for a request its return value (or
 * resolved promise) is the response, and a throw rejects the caller with HANDLER_ERROR.
 * `peerId` is the sender's clientId on a server, the server's id on a client.
 */
export type TMessageHandler<TReq = unknown, TRes = unknown> = (data: TReq, peerId: string, context: IMessageContext) => TRes | Promise<TRes> | void;

export interface IIpcChannelEvents {
  connect: [];
  disconnect: [reason: IpcError];
  heartbeatTimeout: [peerId: string];
  error: [error: IpcError];
  messageError: [error: IpcError];
  /** The peer opened a stream. Read `readable` (or cancel it); with no listener the stream is refused with NO_HANDLER. */
  stream: [info: IStreamInfo, readable: Readable];
  /** A message the channel accepted and then did not deliver. */
  deadLetter: [letter: IDeadLetter];
}

export interface IIpcServerEvents {
  start: [];
  ready: [];
  stop: [];
  clientConnect: [clientId: string, metadata: Record<string, unknown>];
  clientDisconnect: [clientId: string, reason: IpcError];
  heartbeatTimeout: [clientId: string];
  /** A client's pub/sub queue reached `pubsubMaxQueuedBytes`: its publishes are dropped until it has read its queue. */
  slowConsumer: [clientId: string, queuedBytes: number];
  /** A peer sent bytes that are not a valid frame; that peer was dropped, the server goes on. */
  messageError: [error: IpcError, clientId: string | undefined];
  error: [error: IpcError, clientId?: string];
  /** A client opened a stream (`info.clientId` says which). With no listener it is refused with NO_HANDLER. */
  stream: [info: IStreamInfo, readable: Readable];
  /** A message the server accepted and then did not deliver (see IDeadLetter.reason). Never thrown from. */
  deadLetter: [letter: IDeadLetter];
  /** A client was refused at its handshake (AUTH_FAILED): no token, a wrong token, authenticate said no. */
  authFailed: [clientId: string, reason: IpcError];
  /** A connection (or the hub itself) now provides a service. */
  serviceRegistered: [info: IServiceRegisteredInfo];
  /** An instance of a service is gone (unprovide, or its connection left). */
  serviceUnregistered: [info: IServiceUnregisteredInfo];
  /** The hub routed a call to an instance. */
  callRouted: [info: ICallRoutedInfo];
  /** A routed call's answer (or failure) went back to its caller. */
  callCompleted: [info: ICallCompletedInfo];
}

export interface IIpcClientEvents {
  connect: [];
  disconnect: [reason: IpcError];
  reconnecting: [attempt: number, delayMs: number];
  heartbeatTimeout: [error: IpcError];
  error: [error: IpcError];
  /** The client found no server for its socket and now hosts the endpoint itself. */
  role: [role: 'server'];
  /** The server opened a stream. With no listener it is refused with NO_HANDLER. */
  stream: [info: IStreamInfo, readable: Readable];
  /** A message the client accepted and then did not deliver (see IDeadLetter.reason). */
  deadLetter: [letter: IDeadLetter];
  /** The circuit breaker of a target (request type or `service.method`) opened: its calls fail at once with CIRCUIT_OPEN. */
  circuitOpen: [target: string];
  /** A trial call succeeded: the target's calls go through again. */
  circuitClose: [target: string];
}
