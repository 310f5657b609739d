import * as plugins from '../plugins.js';
import { IpcError, isIpcError, type TIpcErrorCode } from '../smartipc.errors.js';
import { DEFAULT_WAIT_FOR_READY_TIMEOUT_MS, ENDPOINT_SETTLE_MS, ENDPOINT_SETTLE_POLL_MS, PROTOCOL_VERSION } from '../smartipc.defaults.js';
import { EFrameKind, type IHelloPayload } from '../interfaces/wire.js';
import type { IClientConnectOptions, IIpcClientOptions, IRequestOptions } from '../interfaces/options.js';
import type { IIpcClientEvents, IIpcMetrics, IMessageContext, TMessageHandler } from '../interfaces/events.js';
import type { IpcServer } from '../server/classes.ipcserver.js';
import { FramedLink } from '../framing/classes.framedlink.js';
import { createMedium, describeEndpoint, type IMedium } from '../framing/media/index.js';
import { isCertificateError, tlsFailed } from '../framing/media/tls.js';
import { IpcConnection } from '../channel/classes.connection.js';
import { Backoff } from '../channel/classes.backoff.js';
import { registerWithServer } from '../channel/handshake.js';
import { checkHandler } from '../channel/handlers.js';
import { StreamFeature } from '../features/streams/classes.streamfeature.js';
import { ClientSubscriptions } from '../features/pubsub/classes.subscriptions.js';
import { ClientServices } from '../features/services/classes.clientservices.js';
import type { ICallOptions, IProvideOptions, IServiceInfo, TServiceMethods, TServiceProxy } from '../interfaces/services.js';
import { durationMs, resolveClient, type IResolvedClient } from '../smartipc.options.js';
import { Observer } from '../features/observability/classes.observer.js';
import { connectChannel, disconnectChannel } from '../features/observability/tracing.js';
import { CircuitBreakers } from '../features/policies/circuitbreaker.js';
import { resolveRetry, withRetry } from '../features/policies/retry.js';
import type { IDeadLetter } from '../interfaces/observability.js';
import { debug } from '../smartipc.log.js';
import type { IClientPubSubStats, IPublishedMessage, ISubscribeIteratorOptions, ISubscribeOptions, TSubscriptionHandler } from '../interfaces/pubsub.js';
import type { ISendFileOptions, ISendStreamOptions, TStreamSource } from '../interfaces/streams.js';

export interface IIpcClientStats {
  connected: boolean;
  clientId: string;
  reconnectAttempts: number;
  metrics: IIpcMetrics;
  /** Pub/sub counters: subscriptions, published, received, droppedLocally. */
  pubsub: IClientPubSubStats;
}

/**
 * Starts a server on a client's endpoint when nobody serves it (clientOnly false). Provided by the
 * server layer (see server/endpointhosting.ts), so the client does not depend on the server.
 */
export type TEndpointHosting = (options: IResolvedClient) => Promise<IpcServer>;

type TClientState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** Failures that retrying cannot fix: the server is there and said no. */
const PERMANENT_CODES: ReadonlySet<TIpcErrorCode> = new Set(['ID_MISMATCH', 'PROTOCOL_ERROR', 'AUTH_FAILED', 'FORBIDDEN', 'TOO_MANY_CLIENTS', 'TLS_ERROR']);

export function generateClientId(): string {
  return `client-${plugins.crypto.randomBytes(6).toString('hex')}`;
}

/**
 * One connection to a server, kept alive: the first connect may retry (connectRetry), a dropped
 * connection reconnects with backoff (reconnect), and sends made meanwhile wait in a bounded
 * outbox. Requests in flight when a connection drops reject with CONNECTION_LOST at once: only the
 * caller can know whether repeating them is safe.
 */
export class IpcClient extends plugins.events.EventEmitter<IIpcClientEvents> {
  /** @internal The options as resolved (every default applied). */
  public readonly options: IResolvedClient;
  private readonly handlers = new Map<string, TMessageHandler>();
  private readonly observer: Observer;
  private readonly breakers?: CircuitBreakers;
  private readonly connection: IpcConnection;
  private readonly medium: IMedium;
  private readonly streams: StreamFeature;
  private state: TClientState = 'idle';
  private connecting?: Promise<void>;
  private dialling?: FramedLink;
  private reconnectAttempts = 0;
  private sleeper?: { timer: NodeJS.Timeout; wake: () => void };
  /** The endpoint changed (a socket file appeared) while no backoff was running: the next one is skipped. */
  private endpointChanged = false;
  /** When the endpoint last changed (performance.now()): for a moment after, backoffs are short. */
  private endpointChangedAt = -Infinity;
  private hostedServer?: IpcServer;
  private readonly subscriptions: ClientSubscriptions;
  private readonly services: ClientServices;
  private static endpointHosting?: TEndpointHosting;

  /** @internal Registered by the server layer: how a client hosts its endpoint when nobody serves it. */
  public static useEndpointHosting(hosting: TEndpointHosting): void {
    IpcClient.endpointHosting = hosting;
  }

  constructor(options: IIpcClientOptions) {
    super();
    this.options = resolveClient(options, generateClientId);
    this.medium = createMedium(this.options.endpoint);
    this.observer = new Observer(this.options.deadLetterCapacity, (letter) => this.emit('deadLetter', letter));
    if (options.circuitBreaker !== undefined) {
      this.breakers = new CircuitBreakers(options.circuitBreaker, {
        open: (target) => this.emit('circuitOpen', target),
        close: (target) => this.emit('circuitClose', target),
      });
    }
    this.connection = new IpcConnection({
      serialization: this.options.serialization,
      requestTimeoutMs: this.options.requestTimeoutMs,
      heartbeat: this.options.heartbeat,
      handlers: this.handlers,
      metrics: this.observer.counters,
      observer: this.observer,
      maxJsonDepth: this.options.maxJsonDepth,
      outbox: this.options.outbox,
      owner: {
        onDisconnect: (reason) => this.onConnectionDisconnect(reason),
        onHeartbeatTimeout: () => {
          const error = new IpcError('TIMEOUT', `heartbeat timeout: server "${this.options.id}" went silent`);
          this.emit('heartbeatTimeout', error);
          if (this.options.heartbeatThrowOnTimeout) this.emitError(error);
        },
        onError: (error) => this.emitError(error),
        onFrameError: (error) => this.emitError(error),
      },
    });
    this.streams = new StreamFeature(this.connection, {
      maxConcurrentStreams: this.options.maxConcurrentStreams,
      onStream: (info, readable) => {
        if (this.listenerCount('stream') === 0) return false;
        this.emit('stream', info, readable);
        return true;
      },
    });
    this.connection.use(this.streams);
    this.subscriptions = new ClientSubscriptions({
      channel: this.connection,
      observer: this.observer,
      serialization: this.options.serialization,
      ackTimeoutMs: this.options.requestTimeoutMs,
      isLive: () => this.state === 'connected' || this.state === 'reconnecting',
      emitError: (error) => this.emitError(error),
    });
    this.connection.use(this.subscriptions);
    this.services = new ClientServices({
      connection: this.connection,
      handlers: this.handlers,
      ackTimeoutMs: this.options.requestTimeoutMs,
      emitError: (error) => this.emitError(error),
    });
    this.connection.use(this.services);
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  /**
   * Connects and registers. Retries per `connectRetry` (or, with waitForReady, until waitTimeout).
   * Rejects with SERVER_UNAVAILABLE naming the endpoint and cause, or the server's refusal
   * (ID_MISMATCH, PROTOCOL_ERROR, TOO_MANY_CLIENTS), or REGISTER_TIMEOUT.
   */
  public connect(options: IClientConnectOptions = {}): Promise<void> {
    if (this.state === 'connected' || this.state === 'reconnecting') return Promise.resolve();
    if (this.connecting) return this.connecting;
    this.state = 'connecting';
    this.connecting = this.connectWithRetry(options).catch((err) => this.hostEndpointInstead(err)).then(
      () => {
        this.connecting = undefined;
      },
      (err) => {
        this.connecting = undefined;
        if (this.state === 'connecting') this.state = 'idle';
        throw err;
      },
    );
    return this.connecting;
  }

  /**
   * Closes the connection cleanly and stops reconnecting; `disconnect` fires with code CLOSED,
   * requests in flight reject with CLOSED, what waits in the outbox rejects with NOT_CONNECTED.
   */
  public async disconnect(): Promise<void> {
    this.state = 'closed';
    this.wake();
    this.dialling?.destroy(new IpcError('NOT_CONNECTED', 'client disconnected'));
    this.connection.releaseSends(new IpcError('NOT_CONNECTED', 'client disconnected'));
    this.subscriptions.stop(new IpcError('NOT_CONNECTED', 'client disconnected'));
    const closed = this.connection.whenClosed();
    this.connection.close('client disconnected');
    await closed;
    await this.connecting?.catch(() => undefined);
    const hosted = this.hostedServer;
    this.hostedServer = undefined;
    await hosted?.stop();
  }

  // ---- messaging -------------------------------------------------------------------------------

  public sendMessage<T = unknown>(type: string, data?: T): Promise<void> {
    return this.connection.sendMessage(type, data);
  }

  /**
   * A request to the server: resolves with its handler's answer. Options: timeout, signal,
   * headers, propagate; `retry` (with `idempotent: true`) and the client's circuitBreaker apply.
   */
  public request<TReq = unknown, TRes = unknown>(type: string, data?: TReq, options?: IRequestOptions): Promise<TRes> {
    if (options?.retry === undefined && this.breakers === undefined) return this.connection.request<TRes>(EFrameKind.Request, type, data, options);
    return this.withPolicies(type, options, (opts) => this.connection.request<TRes>(EFrameKind.Request, type, data, opts));
  }

  /** Retry (opt-in per call) inside the circuit breaker of the target (opt-in per client). */
  private withPolicies<T>(target: string, options: IRequestOptions | undefined, call: (options: IRequestOptions | undefined) => Promise<T>): Promise<T> {
    let retry;
    try {
      retry = options === undefined ? undefined : resolveRetry(options);
    } catch (err) {
      return Promise.reject(err);
    }
    const breakers = this.breakers;
    const attempt = (timeoutMs?: number) => {
      const opts = options === undefined ? undefined : timeoutMs === undefined ? options : { ...options, timeout: timeoutMs };
      return breakers === undefined ? call(opts) : breakers.run(target, () => call(opts));
    };
    if (retry === undefined) return attempt();
    return withRetry(retry, options?.timeout ?? this.options.requestTimeoutMs, options?.signal, (timeoutMs) => attempt(timeoutMs));
  }

  /** Handles server-initiated messages and requests (`server.sendToClient`, `requestClient`, `broadcast`). */
  public onMessage<TReq = unknown, TRes = unknown>(type: string, handler: (data: TReq, serverId: string, context: IMessageContext) => TRes | Promise<TRes> | void): this {
    checkHandler(type, handler);
    this.handlers.set(type, handler as TMessageHandler);
    return this;
  }

  public offMessage(type: string): this {
    this.handlers.delete(type);
    return this;
  }

  // ---- pub/sub ---------------------------------------------------------------------------------

  /**
   * Subscribes `handler(data, { topic, from })` to a pattern (`*`: one segment, `>` last: one or
   * more). Resolves once the server has acknowledged it, so a publish made after it is delivered.
   * Needs a connection (NOT_CONNECTED otherwise); restored by itself after every reconnect.
   */
  public subscribe<T = unknown>(pattern: string, handler: TSubscriptionHandler<T>, options?: ISubscribeOptions): Promise<void> {
    return this.subscriptions.subscribe(pattern, handler, options);
  }

  /** Removes one handler, or every handler of the pattern (iterators and Observables of it end). */
  public unsubscribe(pattern: string, handler?: TSubscriptionHandler): Promise<void> {
    return this.subscriptions.unsubscribe(pattern, handler);
  }

  /** Publishes to every other client subscribed to a matching pattern (never back to this one). */
  public publish<T = unknown>(topic: string, data?: T): Promise<void> {
    return this.subscriptions.publish(topic, data);
  }

  /** A pattern's messages as an async iterator: `for await (const { topic, from, data } of client.subscribeIterator('user.*'))`. */
  public subscribeIterator<T = unknown>(pattern: string, options?: ISubscribeIteratorOptions): AsyncIterableIterator<IPublishedMessage<T>> {
    return this.subscriptions.iterate<T>(pattern, options);
  }

  /** A pattern's messages as an rxjs Observable (cold: subscribing to it subscribes, unsubscribing unsubscribes). */
  public subscribeObservable<T = unknown>(pattern: string): plugins.smartrx.rxjs.Observable<IPublishedMessage<T>> {
    return this.subscriptions.observe<T>(pattern);
  }

  // ---- services and peers (through the hub) ---------------------------------------------------

  /**
   * Provides a service through the hub: `methods` is an object of `(params, ctx) => result`. Allowed
   * before or after connect(); announced again at every (re)connection. Resolves once the hub has
   * it (at once when not connected yet). A second provide of the same service: INVALID_ARGUMENT.
   */
  public provide(service: string, methods: TServiceMethods, options?: IProvideOptions): Promise<void> {
    return this.services.provide(service, methods, options);
  }

  public unprovide(service: string): Promise<void> {
    return this.services.unprovide(service);
  }

  /**
   * Calls `service.method` through the hub. Rejects SERVICE_NOT_FOUND / METHOD_NOT_FOUND at once
   * when nobody provides it, HANDLER_ERROR when the method throws, CONNECTION_LOST when its
   * instance left mid-call, MAX_DEPTH_EXCEEDED for a chain that is too deep. Made inside a service
   * method, it extends that call's chain and inherits its deadline and cancellation.
   */
  public call<TRes = unknown, TParams = unknown>(service: string, method: string, params?: TParams, options?: ICallOptions): Promise<TRes> {
    if (options?.retry === undefined && this.breakers === undefined) return this.services.call<TRes, TParams>(service, method, params, options);
    return this.withPolicies(`${service}.${method}`, options, (opts) => this.services.call<TRes, TParams>(service, method, params, opts));
  }

  /** A typed proxy: `client.service<IUserApi>('user').getUser({ id })` is `call('user', 'getUser', { id })`. */
  public service<TApi>(service: string): TServiceProxy<TApi> {
    return this.services.proxy<TApi>(service);
  }

  /** The hub's registry: every service and its instances. */
  public listServices(): Promise<IServiceInfo[]> {
    return this.services.listServices();
  }

  /** The clientIds connected to the hub (this one included). */
  public listPeers(): Promise<string[]> {
    return this.services.listPeers();
  }

  /** A message to another client's onMessage handler, through the hub (its `peerId` is this client's id). */
  public sendToPeer<T = unknown>(clientId: string, type: string, data?: T): Promise<void> {
    return this.services.sendToPeer(clientId, type, data);
  }

  /** A request to another client's onMessage handler, through the hub. Unknown clientId: CLIENT_NOT_FOUND. */
  public requestPeer<TReq = unknown, TRes = unknown>(clientId: string, type: string, data?: TReq, options?: ICallOptions): Promise<TRes> {
    if (options?.retry === undefined && this.breakers === undefined) return this.services.requestPeer<TRes>(clientId, type, data, options);
    return this.withPolicies(`${clientId}.${type}`, options, (opts) => this.services.requestPeer<TRes>(clientId, type, data, opts));
  }

  // ---- streams ---------------------------------------------------------------------------------

  /** Streams a readable to the server; resolves when it has the last byte. Needs a live connection (NOT_CONNECTED otherwise). */
  public sendStream(readable: TStreamSource, options?: ISendStreamOptions): Promise<void> {
    return this.streams.sendStream(readable, options);
  }

  /** Streams a file to the server (meta: type 'file', basename, size; sha256 checked by the server). */
  public sendFile(filePath: string, options?: ISendFileOptions): Promise<void> {
    return this.streams.sendFile(filePath, options);
  }

  /** Cancels a stream this client sends. Returns false when there is no such stream. */
  public cancelOutgoingStream(streamId: string, reason?: string): boolean {
    return this.streams.cancelOutgoing(streamId, reason);
  }

  /** Cancels a stream the server sends to this client. Returns false when there is no such stream. */
  public cancelIncomingStream(streamId: string, reason?: string): boolean {
    return this.streams.cancelIncoming(streamId, reason);
  }

  // ---- introspection ---------------------------------------------------------------------------

  public getIsConnected(): boolean {
    return this.state === 'connected' && this.connection.isConnected;
  }

  public getClientId(): string {
    return this.options.clientId;
  }

  /** The last dead letters (deadLetterCapacity of them), oldest first. */
  public getDeadLetters(): IDeadLetter[] {
    return this.observer.deadLetters.list();
  }

  public getStats(): IIpcClientStats {
    return {
      connected: this.getIsConnected(),
      clientId: this.options.clientId,
      reconnectAttempts: this.reconnectAttempts,
      metrics: this.observer.metrics(this.connection.requestsInFlight),
      pubsub: this.subscriptions.getStats(),
    };
  }

  /**
   * The server this client started because nobody served its socket (clientOnly false, see the
   * `role` event). Register handlers on it to serve the clients that come later.
   */
  public getHostedServer(): IpcServer | undefined {
    return this.hostedServer;
  }

  // ---- connecting ------------------------------------------------------------------------------

  private async connectWithRetry(options: IClientConnectOptions): Promise<void> {
    const retry = this.options.connectRetry;
    const waitForReady = options.waitForReady === true;
    const retrying = retry.enabled || waitForReady;
    const maxAttempts = !retrying ? 1 : waitForReady ? Infinity : retry.maxAttempts;
    const budgetMs = waitForReady ? durationMs('waitTimeout', options.waitTimeout, DEFAULT_WAIT_FOR_READY_TIMEOUT_MS) : retry.totalTimeout;
    const deadline = performance.now() + budgetMs;
    const backoff = new Backoff(retry.initialDelay, retry.maxDelay);
    const unwatch = retrying ? this.watchEndpoint() : undefined;
    try {
      await this.connectAttempts(maxAttempts, deadline, retrying, backoff);
    } finally {
      unwatch?.();
    }
  }

  private async connectAttempts(maxAttempts: number, deadline: number, retrying: boolean, backoff: Backoff): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.connectOnce();
        return;
      } catch (err) {
        const error = err as IpcError;
        if (this.isClosed()) throw new IpcError('NOT_CONNECTED', 'disconnect() was called while connecting', { cause: error });
        if (isIpcError(error) && PERMANENT_CODES.has(error.code)) throw error;
        // The last attempt happens at the deadline rather than one backoff step before it.
        const remaining = deadline - performance.now();
        const delay = Math.min(backoff.next(), Math.max(0, remaining));
        if (attempt >= maxAttempts || remaining <= 0) {
          if (retrying && isIpcError(error, 'SERVER_UNAVAILABLE')) {
            throw new IpcError('SERVER_UNAVAILABLE', `${error.message}; gave up after ${attempt} attempts`, { cause: error.cause });
          }
          throw error;
        }
        debug('connect attempt %d to %s failed (%s); retrying in %d ms', attempt, this.describe(), error.message, delay);
        await this.sleep(delay);
        if (this.isClosed()) throw new IpcError('NOT_CONNECTED', 'disconnect() was called while connecting', { cause: error });
      }
    }
  }

  /**
   * After the first connect failed for want of a server on a socket path (ENOENT, ECONNREFUSED),
   * a client that is not clientOnly becomes the hub itself: it starts a server on the endpoint
   * with the same id (see server/endpointhosting.ts), emits role('server') and connects to it
   * like any other client.
   */
  private async hostEndpointInstead(error: IpcError): Promise<void> {
    const hosting = IpcClient.endpointHosting;
    if (this.options.clientOnly || hosting === undefined || !isIpcError(error, 'SERVER_UNAVAILABLE') || !this.medium.canHost(error) || this.isClosed()) throw error;
    let server: IpcServer;
    try {
      server = await hosting(this.options);
    } catch (startError) {
      // Someone else became the server in the meantime: connect to them instead.
      if (isIpcError(startError, 'ADDRESS_IN_USE')) return this.connectOnce();
      throw error;
    }
    debug('no server on %s: client %s hosts it now', this.medium.describe(), this.options.clientId);
    this.hostedServer = server;
    this.emit('role', 'server');
    await this.connectOnce();
  }

  /** One dial plus handshake. On success the connection has the new link and `connect` is emitted. */
  private async connectOnce(): Promise<void> {
    let opened;
    try {
      opened = await this.medium.dial();
    } catch (err) {
      const error = err as IpcError;
      if (this.options.clientOnly && isIpcError(error, 'SERVER_UNAVAILABLE') && this.medium.canHost(error)) {
        throw new IpcError('SERVER_UNAVAILABLE', `${error.message}; clientOnly prevents hosting the endpoint`, { cause: error.cause });
      }
      throw error;
    }
    const link = new FramedLink(opened.stream, { maxMessageSize: this.options.maxMessageSize, description: this.medium.describe(), peer: opened.peer });
    this.dialling = link;
    try {
      const hello: IHelloPayload = {
        serverId: this.options.id,
        clientId: this.options.clientId,
        metadata: this.options.metadata,
        protocolVersion: PROTOCOL_VERSION,
        serialization: this.options.serialization,
        maxMessageSize: this.options.maxMessageSize,
        ...(this.options.authToken !== undefined ? { token: this.options.authToken } : {}),
      };
      const { welcome, gate } = await registerWithServer(link, hello, this.options.registerTimeoutMs).catch((err: IpcError) => {
        throw this.tlsRefusal(err) ?? err;
      });
      if (this.isClosed()) {
        link.end();
        throw new IpcError('NOT_CONNECTED', 'disconnect() was called while connecting');
      }
      this.state = 'connected';
      this.connection.attach(link, welcome.serverId);
      gate.handOver(this.connection);
    } finally {
      this.dialling = undefined;
    }
    debug('client %s connected to %s', this.options.clientId, this.describe());
    if (connectChannel.hasSubscribers) connectChannel.publish({ side: 'client', peerId: this.options.id, transport: this.medium.kind });
    this.emit('connect');
  }

  /**
   * With TLS 1.3 the client's handshake completes before the server has checked the client's
   * certificate: a refusal then arrives as an alert that drops the connection during our HELLO.
   */
  private tlsRefusal(error: IpcError): IpcError | undefined {
    if (this.medium.kind !== 'tls' || error.code !== 'CONNECTION_LOST') return undefined;
    const cause = error.cause as NodeJS.ErrnoException | undefined;
    if (!isCertificateError(cause)) return undefined;
    return tlsFailed(cause, this.medium.describe());
  }

  private onConnectionDisconnect(reason: IpcError): void {
    if (disconnectChannel.hasSubscribers) disconnectChannel.publish({ side: 'client', peerId: this.options.id, transport: this.medium.kind, code: reason.code });
    const wasConnected = this.state === 'connected';
    this.emit('disconnect', reason);
    if (!wasConnected) return;
    // A newer connection with our clientId took over; reconnecting would evict it in turn, forever.
    const replaced = this.connection.peerGoodbye?.code === 'replaced';
    if (!this.options.reconnect.enabled || replaced) {
      this.state = 'idle';
      this.subscriptions.stop(reason);
      return;
    }
    this.state = 'reconnecting';
    this.connection.holdSends();
    void this.reconnectLoop();
  }

  private async reconnectLoop(): Promise<void> {
    const { initialDelay, maxDelay, maxAttempts } = this.options.reconnect;
    const backoff = new Backoff(initialDelay, maxDelay);
    const unwatch = this.watchEndpoint();
    try {
      await this.reconnectUntilBack(backoff, maxAttempts);
    } finally {
      unwatch();
    }
  }

  private async reconnectUntilBack(backoff: Backoff, maxAttempts: number): Promise<void> {
    let lastError: IpcError | undefined;
    while (this.state === 'reconnecting') {
      if (backoff.attempts >= maxAttempts) {
        this.giveUp(new IpcError('NOT_CONNECTED', `reconnect to ${this.describe()} gave up after ${backoff.attempts} attempts${lastError ? `: ${lastError.message}` : ''}`, { cause: lastError }));
        return;
      }
      const delay = backoff.next();
      this.reconnectAttempts++;
      this.emit('reconnecting', backoff.attempts, delay);
      await this.sleep(delay);
      if (this.state !== 'reconnecting') return;
      try {
        await this.connectOnce();
        this.observer.counters.reconnects++;
        return;
      } catch (err) {
        lastError = err as IpcError;
        if (this.state !== 'reconnecting') return;
        if (isIpcError(lastError) && PERMANENT_CODES.has(lastError.code)) {
          this.giveUp(lastError);
          return;
        }
      }
    }
  }

  private giveUp(error: IpcError): void {
    this.state = 'idle';
    this.connection.releaseSends(new IpcError('NOT_CONNECTED', error.message, { cause: error }));
    this.subscriptions.stop(new IpcError('NOT_CONNECTED', error.message, { cause: error }));
    this.emitError(error);
  }

  private isClosed(): boolean {
    return this.state === 'closed';
  }

  /**
   * The backoff between attempts; cut short when the medium sees the endpoint come back (a socket
   * file appearing). Not unref'd on purpose: a caller awaiting connect, or a stubborn reconnect,
   * keeps the process alive.
   */
  private sleep(ms: number): Promise<void> {
    if (this.endpointChanged) {
      // It changed during the last attempt (a server unlinks its stale file, then binds): try again now.
      this.endpointChanged = false;
      return Promise.resolve();
    }
    // Just after a change the server is most likely a moment from listening (the file exists from
    // its bind, connections are refused until its listen): poll briefly instead of backing off.
    if (performance.now() - this.endpointChangedAt < ENDPOINT_SETTLE_MS) ms = Math.min(ms, ENDPOINT_SETTLE_POLL_MS);
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.wake(), ms);
      this.sleeper = { timer, wake: resolve };
    });
  }

  /**
   * Watches the endpoint for as long as a retry loop runs (not per backoff): a change that comes
   * while an attempt is under way is remembered, so a server that binds then is not missed.
   */
  private watchEndpoint(): () => void {
    const unwatch = this.medium.watchForServer?.(() => {
      this.endpointChangedAt = performance.now();
      if (this.sleeper) this.wake();
      else this.endpointChanged = true;
    });
    return () => {
      unwatch?.();
      this.endpointChanged = false;
    };
  }

  private wake(): void {
    const sleeper = this.sleeper;
    this.sleeper = undefined;
    if (!sleeper) return;
    clearTimeout(sleeper.timer);
    sleeper.wake();
  }

  private describe(): string {
    return describeEndpoint(this.options.endpoint);
  }

  private emitError(error: IpcError): void {
    this.observer.counters.errors++;
    if (this.listenerCount('error') > 0) this.emit('error', error);
    else debug('unhandled client error: %s', error.message);
  }
}
