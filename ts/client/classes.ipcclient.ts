import * as plugins from '../plugins.js';
import { IpcError, isIpcError, type TIpcErrorCode } from '../smartipc.errors.js';
import { DEFAULT_WAIT_FOR_READY_TIMEOUT_MS, PROTOCOL_VERSION } from '../smartipc.defaults.js';
import type { IHelloPayload } from '../interfaces/wire.js';
import type { IClientConnectOptions, IIpcClientOptions, IRequestOptions } from '../interfaces/options.js';
import type { IIpcClientEvents, IIpcMetrics, IMessageContext, TMessageHandler } from '../interfaces/events.js';
import { createTransport } from '../framing/transport.factory.js';
import type { IpcTransport } from '../framing/classes.transport.js';
import { IpcChannel } from '../channel/classes.ipcchannel.js';
import { Backoff } from '../channel/classes.backoff.js';
import { registerWithServer } from '../channel/handshake.js';
import { IpcServer } from '../server/classes.ipcserver.js';
import { describeEndpoint, emptyMetrics, resolveClient, type IResolvedClient } from '../smartipc.options.js';
import { debug } from '../smartipc.log.js';
import { ClientSubscriptions } from './classes.subscriptions.js';
import type { IClientPubSubStats, IPublishedMessage, ISubscribeIteratorOptions, TSubscriptionHandler } from '../interfaces/pubsub.js';
import type { ISendFileOptions, ISendStreamOptions, TStreamSource } from '../interfaces/streams.js';

export interface IIpcClientStats {
  connected: boolean;
  clientId: string;
  reconnectAttempts: number;
  metrics: IIpcMetrics;
  /** Pub/sub counters: subscriptions, published, received, droppedLocally. */
  pubsub?: IClientPubSubStats;
}

type TClientState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** Failures that retrying cannot fix: the server is there and said no. */
const PERMANENT_CODES: ReadonlySet<TIpcErrorCode> = new Set(['ID_MISMATCH', 'PROTOCOL_ERROR', 'AUTH_FAILED', 'FORBIDDEN', 'TOO_MANY_CLIENTS']);

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
  public readonly options: IResolvedClient;
  private readonly handlers = new Map<string, TMessageHandler>();
  private readonly metrics: IIpcMetrics = emptyMetrics();
  private readonly channel: IpcChannel;
  private state: TClientState = 'idle';
  private connecting?: Promise<void>;
  private dialling?: IpcTransport;
  private reconnectAttempts = 0;
  private sleeper?: { timer: NodeJS.Timeout; wake: () => void };
  private hostedServer?: IpcServer;
  private readonly subscriptions: ClientSubscriptions;

  constructor(options: IIpcClientOptions) {
    super();
    this.options = resolveClient(options, generateClientId);
    this.channel = new IpcChannel({
      serialization: this.options.serialization,
      requestTimeoutMs: this.options.requestTimeoutMs,
      heartbeat: this.options.heartbeat,
      handlers: this.handlers,
      metrics: this.metrics,
      outbox: this.options.outbox,
    });
    this.channel.on('disconnect', (reason) => this.onChannelDisconnect(reason));
    this.channel.on('heartbeatTimeout', () => {
      const error = new IpcError('TIMEOUT', `heartbeat timeout: server "${this.options.id}" went silent`);
      this.emit('heartbeatTimeout', error);
      if (this.options.heartbeatThrowOnTimeout) this.emitError(error);
    });
    this.channel.on('messageError', (error) => this.emitError(error));
    this.channel.on('error', (error) => this.emitError(error));
    this.subscriptions = new ClientSubscriptions({
      channel: this.channel,
      serialization: this.options.serialization,
      ackTimeoutMs: this.options.requestTimeoutMs,
      isLive: () => this.state === 'connected' || this.state === 'reconnecting',
      emitError: (error) => this.emitError(error),
    });
    // The first 'connect' listener: the server learns every pattern again before anything a user listener sends.
    this.on('connect', () => this.subscriptions.restore());
    this.channel.on('stream', (info, readable) => {
      if (this.listenerCount('stream') > 0) this.emit('stream', info, readable);
      else this.channel.cancelIncomingStream(info.streamId, new IpcError('NO_HANDLER', `client "${this.options.clientId}" has no 'stream' listener for stream "${info.streamId}"`));
    });
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

  /** Closes the connection cleanly and stops reconnecting; what waits in the outbox rejects with NOT_CONNECTED. */
  public async disconnect(): Promise<void> {
    const wasConnected = this.channel.isConnected;
    this.state = 'closed';
    this.wake();
    this.dialling?.destroy(new IpcError('NOT_CONNECTED', 'client disconnected'));
    this.channel.releaseSends(new IpcError('NOT_CONNECTED', 'client disconnected'));
    this.subscriptions.stop(new IpcError('NOT_CONNECTED', 'client disconnected'));
    if (wasConnected) {
      await new Promise<void>((resolve) => {
        this.channel.once('disconnect', () => resolve());
        this.channel.close('client disconnected');
      });
    }
    await this.connecting?.catch(() => undefined);
    const hosted = this.hostedServer;
    this.hostedServer = undefined;
    await hosted?.stop();
  }

  // ---- messaging -------------------------------------------------------------------------------

  public sendMessage<T = unknown>(type: string, data?: T): Promise<void> {
    return this.channel.sendMessage(type, data);
  }

  public request<TReq = unknown, TRes = unknown>(type: string, data?: TReq, options?: IRequestOptions): Promise<TRes> {
    return this.channel.request<TRes>(type, data, options);
  }

  /** Handles server-initiated messages and requests (`server.sendToClient`, `requestClient`, `broadcast`). */
  public onMessage<TReq = unknown, TRes = unknown>(type: string, handler: (data: TReq, serverId: string, context: IMessageContext) => TRes | Promise<TRes> | void): this {
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
  public subscribe<T = unknown>(pattern: string, handler: TSubscriptionHandler<T>): Promise<void> {
    return this.subscriptions.subscribe(pattern, handler);
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

  // ---- streams ---------------------------------------------------------------------------------

  /** Streams a readable to the server; resolves when it has the last byte. Needs a live connection (NOT_CONNECTED otherwise). */
  public sendStream(readable: TStreamSource, options?: ISendStreamOptions): Promise<void> {
    return this.channel.sendStream(readable, options);
  }

  /** Streams a file to the server (meta: type 'file', basename, size; sha256 checked by the server). */
  public sendFile(filePath: string, options?: ISendFileOptions): Promise<void> {
    return this.channel.sendFile(filePath, options);
  }

  /** Cancels a stream this client sends. Returns false when there is no such stream. */
  public cancelOutgoingStream(streamId: string, reason?: string): boolean {
    return this.channel.cancelOutgoingStream(streamId, reason);
  }

  /** Cancels a stream the server sends to this client. Returns false when there is no such stream. */
  public cancelIncomingStream(streamId: string, reason?: string): boolean {
    return this.channel.cancelIncomingStream(streamId, reason);
  }

  // ---- introspection ---------------------------------------------------------------------------

  public getIsConnected(): boolean {
    return this.state === 'connected' && this.channel.isConnected;
  }

  public getClientId(): string {
    return this.options.clientId;
  }

  public getStats(): IIpcClientStats {
    return {
      connected: this.getIsConnected(),
      clientId: this.options.clientId,
      reconnectAttempts: this.reconnectAttempts,
      metrics: { ...this.metrics, requestsInFlight: this.channel.requestsInFlight },
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

  /** The channel under this client, for pub/sub and stream extensions. */
  public getChannel(): IpcChannel {
    return this.channel;
  }

  // ---- connecting ------------------------------------------------------------------------------

  private async connectWithRetry(options: IClientConnectOptions): Promise<void> {
    const retry = this.options.connectRetry;
    const waitForReady = options.waitForReady === true;
    const retrying = retry.enabled || waitForReady;
    const maxAttempts = !retrying ? 1 : waitForReady ? Infinity : retry.maxAttempts;
    const budgetMs = waitForReady ? options.waitTimeout ?? DEFAULT_WAIT_FOR_READY_TIMEOUT_MS : retry.totalTimeout;
    const deadline = performance.now() + budgetMs;
    const backoff = new Backoff(retry.initialDelay, retry.maxDelay);
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
   * with the same id, emits role('server') and connects to it like any other client.
   */
  private async hostEndpointInstead(error: IpcError): Promise<void> {
    const endpoint = this.options.endpoint;
    const cause = (error.cause as NodeJS.ErrnoException | undefined)?.code;
    const noServer = isIpcError(error, 'SERVER_UNAVAILABLE') && (cause === 'ENOENT' || cause === 'ECONNREFUSED');
    if (this.options.clientOnly || endpoint.socketPath === undefined || !noServer || this.isClosed()) throw error;
    const server = new IpcServer({
      id: this.options.id,
      socketPath: endpoint.socketPath,
      autoCleanupSocketFile: true,
      maxMessageSize: this.options.maxMessageSize,
      serialization: this.options.serialization,
      heartbeat: this.options.heartbeat !== undefined,
      ...(this.options.heartbeat
        ? {
            heartbeatInterval: this.options.heartbeat.intervalMs,
            heartbeatTimeout: this.options.heartbeat.timeoutMs,
            heartbeatInitialGracePeriodMs: this.options.heartbeat.initialGraceMs,
          }
        : {}),
    });
    try {
      await server.start({ readyWhen: 'accepting' });
    } catch (startError) {
      // Someone else became the server in the meantime: connect to them instead.
      if (isIpcError(startError, 'ADDRESS_IN_USE')) return this.connectOnce();
      throw error;
    }
    debug('no server on %s: client %s hosts it now', endpoint.socketPath, this.options.clientId);
    this.hostedServer = server;
    this.emit('role', 'server');
    await this.connectOnce();
  }

  /** One dial plus handshake. On success the channel has the new transport and `connect` is emitted. */
  private async connectOnce(): Promise<void> {
    const transport = createTransport(this.options.endpoint, { maxMessageSize: this.options.maxMessageSize });
    this.dialling = transport;
    try {
      try {
        await transport.connect();
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        // System errors look like ECONNREFUSED; certificate failures (UNABLE_TO_VERIFY_LEAF_SIGNATURE, ERR_TLS_...) do not.
        if (this.options.endpoint.tls && !/^E[A-Z]+$/.test(code)) {
          throw new IpcError('SERVER_UNAVAILABLE', `TLS handshake with ${transport.describe()} failed (${code}): ${(err as Error).message}`, { cause: err });
        }
        const hint = this.options.clientOnly ? '; clientOnly prevents hosting the endpoint' : '';
        throw new IpcError('SERVER_UNAVAILABLE', `no server at ${transport.describe()} (${code})${hint}`, { cause: err });
      }
      const hello: IHelloPayload = {
        serverId: this.options.id,
        clientId: this.options.clientId,
        metadata: this.options.metadata,
        protocolVersion: PROTOCOL_VERSION,
        serialization: this.options.serialization,
        maxMessageSize: this.options.maxMessageSize,
      };
      const { welcome, gate } = await registerWithServer(transport, hello, this.options.registerTimeoutMs);
      if (this.isClosed()) {
        transport.end();
        throw new IpcError('NOT_CONNECTED', 'disconnect() was called while connecting');
      }
      this.state = 'connected';
      this.channel.attach(transport, welcome.serverId, (handler) => gate.handOver(handler));
    } finally {
      this.dialling = undefined;
    }
    debug('client %s connected to %s', this.options.clientId, this.describe());
    this.emit('connect');
  }

  private onChannelDisconnect(reason: IpcError): void {
    const wasConnected = this.state === 'connected';
    this.emit('disconnect', reason);
    if (!wasConnected) return;
    // A newer connection with our clientId took over; reconnecting would evict it in turn, forever.
    const replaced = this.channel.peerGoodbye?.code === 'replaced';
    if (!this.options.reconnect.enabled || replaced) {
      this.state = 'idle';
      this.subscriptions.stop(reason);
      return;
    }
    this.state = 'reconnecting';
    this.channel.holdSends();
    void this.reconnectLoop();
  }

  private async reconnectLoop(): Promise<void> {
    const { initialDelay, maxDelay, maxAttempts } = this.options.reconnect;
    const backoff = new Backoff(initialDelay, maxDelay);
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
    this.channel.releaseSends(new IpcError('NOT_CONNECTED', error.message, { cause: error }));
    this.subscriptions.stop(new IpcError('NOT_CONNECTED', error.message, { cause: error }));
    this.emitError(error);
  }

  private isClosed(): boolean {
    return this.state === 'closed';
  }

  /** Not unref'd on purpose: a caller awaiting connect, or a stubborn reconnect, keeps the process alive. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.wake(), ms);
      this.sleeper = { timer, wake: resolve };
    });
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
    this.metrics.errors++;
    if (this.listenerCount('error') > 0) this.emit('error', error);
    else debug('unhandled client error: %s', error.message);
  }
}
