import * as plugins from '../plugins.js';
import { IpcError } from '../smartipc.errors.js';
import { DEFAULT_STOP_GRACE_MS, FRAME_TIMEOUT_SWEEP_MS, PENDING_HANDSHAKE_GRACE_MS } from '../smartipc.defaults.js';
import { EFrameKind, type IHelloPayload } from '../interfaces/wire.js';
import type { IIpcServerOptions, IRequestOptions, IServerStartOptions, IServerStopOptions, TAddress } from '../interfaces/options.js';
import type { IIpcMetrics, IIpcServerEvents, IMessageContext, TMessageHandler } from '../interfaces/events.js';
import type { IConnectionFeature, IConnectionHost } from '../interfaces/hosts.js';
import type { ISendFileOptions, ISendStreamOptions, TStreamSource } from '../interfaces/streams.js';
import type { IServerPubSubStats } from '../interfaces/pubsub.js';
import { FramedLink, type IPartialFrameBudget } from '../framing/classes.framedlink.js';
import { ConnectionGuard } from '../features/security/classes.guard.js';
import type { CompiledPermissions } from '../features/security/permissions.js';
import { createMedium, type IMedium, type IMediumListener, type IOpenedStream } from '../framing/media/index.js';
import { IpcConnection } from '../channel/classes.connection.js';
import { awaitHello, checkHello, rejectHello, sendWelcome } from '../channel/handshake.js';
import { encodePayload } from '../channel/serializer.js';
import { checkHandler, isReservedType } from '../channel/handlers.js';
import { StreamFeature } from '../features/streams/classes.streamfeature.js';
import { PubSubBroker } from '../features/pubsub/classes.broker.js';
import { HubServices } from '../features/services/classes.hubservices.js';
import { registerIntrospection } from './introspection.js';
import { createBridgeHooks, type IBridgeHooks } from './bridgehooks.js';
import type { ICallOptions, IProvideOptions, IServiceInfo, TServiceMethods, TServiceProxy } from '../interfaces/services.js';
import { assertValidName } from '../features/services/callchain.js';
import { serviceProxy } from '../features/services/proxy.js';
import { durationMs, nonEmptyString, oneOf, resolveServer, type IResolvedServer, type TCounters } from '../smartipc.options.js';
import { Observer } from '../features/observability/classes.observer.js';
import { callWithRetry } from '../features/policies/retry.js';
import { connectChannel, disconnectChannel } from '../features/observability/tracing.js';
import type { IDeadLetter } from '../interfaces/observability.js';
import { stalledFor, startTimer } from '../smartipc.timers.js';
import { debug } from '../smartipc.log.js';

export interface IClientInfo {
  clientId: string;
  connectedAt: number;
  lastActivity: number;
  metadata: Record<string, unknown>;
}

export interface IIpcServerStats {
  isRunning: boolean;
  connectedClients: number;
  /** Client connections accepted since start (readiness probes and waitForServer probes do not count). */
  totalConnections: number;
  /** Milliseconds since start, 0 when stopped. */
  uptime: number;
  metrics: IIpcMetrics;
  /** Pub/sub counters: published, delivered, dropped, per pattern. */
  pubsub: IServerPubSubStats;
}

/** One client connection and what is attached to it. */
interface IClientEntry {
  readonly clientId: string;
  readonly connection: IpcConnection;
  readonly streams: StreamFeature;
  readonly metadata: Record<string, unknown>;
}

type TServerState = 'stopped' | 'starting' | 'running' | 'stopping';

/** Features the server attaches to every client connection (pub/sub, services): one factory each. */
type TClientFeatureFactory = (clientId: string, connection: IConnectionHost) => IConnectionFeature;

/**
 * Accepts many clients on one endpoint: the hub. Each connection gets its own IpcConnection after
 * the handshake; handlers and counters are shared by all of them. A newer connection with a
 * clientId already in use replaces the older one (the older is closed): that is what a
 * reconnecting client whose old connection the server has not yet seen die looks like.
 */
export class IpcServer extends plugins.events.EventEmitter<IIpcServerEvents> {
  /** @internal The options as resolved (every default applied). */
  public readonly options: IResolvedServer;
  private readonly handlers = new Map<string, TMessageHandler>();
  private readonly observer: Observer;
  /** The counters all connections share (the observer's). */
  private readonly metrics: TCounters;
  private readonly clients = new Map<string, IClientEntry>();
  /** Connections in their handshake, oldest first, with when each was accepted (performance.now()). */
  private readonly handshaking = new Map<FramedLink, number>();
  private trimTimer?: NodeJS.Timeout;
  /** Connections closed because a newer one took their clientId: their disconnect was already reported. */
  private readonly replaced = new WeakSet<IpcConnection>();
  private readonly medium: IMedium;
  private listener?: IMediumListener;
  private readonly featureFactories: TClientFeatureFactory[] = [];
  private state: TServerState = 'stopped';
  private ready = false;
  private startedAt = 0;
  private totalConnections = 0;
  /** Incomplete frames of all connections together (maxPartialFrameBytes). */
  private readonly partialBudget: IPartialFrameBudget;
  /** Looks for frames that take longer than frameTimeoutMs to arrive, while running. */
  private frameSweep?: NodeJS.Timeout;
  private lastFrameSweepAt = 0;
  /** Fire-and-forget frames refused by permissions or the rate limit (dropped, and dead letters). */
  private readonly refusals = { forbidden: 0, rateLimited: 0 };
  private readonly pubsub: PubSubBroker;
  private readonly services: HubServices;
  /** Added to NO_HANDLER answers (a server a client started to host its own endpoint says so). */
  private noHandlerHint?: () => string;
  /** Bridges (./nats) watch handlers and services come and go. */
  private readonly handlerListeners = new Set<() => void>();
  private readonly serviceListeners = new Set<() => void>();

  constructor(options: IIpcServerOptions) {
    super();
    this.options = resolveServer(options);
    this.medium = createMedium(this.options.endpoint);
    this.observer = new Observer(this.options.deadLetterCapacity, (letter) => this.emit('deadLetter', letter));
    this.metrics = this.observer.counters;
    this.partialBudget = { used: 0, limit: this.options.security.maxPartialFrameBytes };
    this.pubsub = new PubSubBroker({
      serialization: this.options.serialization,
      maxQueuedBytes: this.options.pubsubMaxQueuedBytes,
      slowConsumerPolicy: this.options.slowConsumerPolicy,
      onSlowConsumer: (clientId, queuedBytes) => this.emit('slowConsumer', clientId, queuedBytes),
      onDeadLetter: (letter) => this.observer.deadLetter(letter),
      onError: (error, clientId) => this.emitError(error, clientId),
    });
    this.featureFactories.push((clientId, connection) => this.pubsub.featureFor(clientId, connection));
    this.services = new HubServices({
      maxCallDepth: this.options.maxCallDepth,
      connectionOf: (clientId) => this.clients.get(clientId)?.connection,
      clientIds: () => [...this.clients.keys()],
      onRegistered: (info) => {
        for (const listener of this.serviceListeners) listener();
        this.emit('serviceRegistered', info);
      },
      onUnregistered: (info) => {
        for (const listener of this.serviceListeners) listener();
        this.emit('serviceUnregistered', info);
      },
      wantsCallEvents: () => this.listenerCount('callRouted') > 0 || this.listenerCount('callCompleted') > 0,
      onCallRouted: (info) => this.emit('callRouted', info),
      onCallCompleted: (info) => this.emit('callCompleted', info),
    });
    this.featureFactories.push((clientId, connection) => this.services.featureFor(clientId, connection));
    registerIntrospection(this.handlers, {
      id: () => this.options.id,
      stats: () => this.getStats(),
      clients: () => this.getClientIds().map((clientId) => this.getClientInfo(clientId)!),
      services: () => this.services.getServices(),
    });
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  /** Binds the endpoint. With readyWhen 'accepting' (default) it also proves a connection is accepted. */
  public async start(options: IServerStartOptions = {}): Promise<void> {
    const readyWhen = oneOf('readyWhen', options.readyWhen, ['accepting', 'listening'], 'accepting');
    if (this.state !== 'stopped') throw new IpcError('ADDRESS_IN_USE', `server "${this.options.id}" is already ${this.state}`);
    this.state = 'starting';
    try {
      this.listener = await this.medium.listen((opened) => this.accept(opened), {
        autoCleanupSocketFile: this.options.autoCleanupSocketFile,
        socketMode: this.options.socketMode,
      });
    } catch (err) {
      this.state = 'stopped';
      throw err;
    }
    this.state = 'running';
    this.startedAt = Date.now();
    this.totalConnections = 0;
    this.lastFrameSweepAt = Date.now();
    this.frameSweep = setInterval(() => this.sweepSlowFrames(), this.frameSweepIntervalMs());
    this.frameSweep.unref();
    debug('server %s listening on %s', this.options.id, this.medium.describe());
    this.emit('start');
    if (readyWhen === 'accepting') {
      try {
        await this.listener.probe();
      } catch (err) {
        await this.stop({ graceMs: 0 });
        throw err;
      }
    }
    this.ready = true;
    this.emit('ready');
  }

  /**
   * Stops accepting, lets running handlers finish (up to graceMs), tells every client why it is
   * closed, and removes the socket file.
   */
  public async stop(options: IServerStopOptions = {}): Promise<void> {
    if (this.state === 'stopped' || this.state === 'stopping') return;
    const graceMs = durationMs('graceMs', options.graceMs, DEFAULT_STOP_GRACE_MS);
    this.state = 'stopping';
    this.ready = false;
    clearInterval(this.frameSweep);
    this.frameSweep = undefined;
    await this.listener?.close();
    this.listener = undefined;
    if (this.trimTimer) clearTimeout(this.trimTimer);
    this.trimTimer = undefined;
    for (const link of this.handshaking.keys()) link.destroy(new IpcError('CONNECTION_LOST', 'server stopping'));
    const connections = [...this.clients.values()].map((entry) => entry.connection);
    if (graceMs > 0 && connections.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(connections.map((connection) => connection.whenIdle())),
        new Promise<void>((resolve) => {
          timer = startTimer(resolve, graceMs);
        }),
      ]);
      clearTimeout(timer);
    }
    await Promise.all(connections.map((connection) => this.closeConnection(connection, 'server stopping')));
    this.state = 'stopped';
    this.startedAt = 0;
    this.emit('stop');
  }

  // ---- handlers and sending --------------------------------------------------------------------

  /** One handler per type serves messages and requests; for a request its return value is the answer. */
  public onMessage<TReq = unknown, TRes = unknown>(type: string, handler: (data: TReq, clientId: string, context: IMessageContext) => TRes | Promise<TRes> | void): this {
    checkHandler(type, handler);
    this.handlers.set(type, handler as TMessageHandler);
    for (const listener of this.handlerListeners) listener();
    return this;
  }

  public offMessage(type: string): this {
    if (!isReservedType(type) && this.handlers.delete(type)) {
      for (const listener of this.handlerListeners) listener();
    }
    return this;
  }

  public sendToClient<T = unknown>(clientId: string, type: string, data?: T): Promise<void> {
    const entry = this.clients.get(clientId);
    if (!entry) return Promise.reject(this.clientNotFound(clientId));
    return entry.connection.sendMessage(type, data);
  }

  /** A request to one client; its timeout defaults to the server's `requestTimeout`. */
  public requestClient<TReq = unknown, TRes = unknown>(clientId: string, type: string, data?: TReq, options?: IRequestOptions): Promise<TRes> {
    return callWithRetry(options, this.options.requestTimeoutMs, (opts) => {
      // Looked up per attempt: a client that reconnected is a new connection.
      const entry = this.clients.get(clientId);
      if (!entry) return Promise.reject(this.clientNotFound(clientId));
      return entry.connection.request<TRes>(EFrameKind.Request, type, data, opts);
    });
  }

  /** Sends to every connected client; the payload is encoded once. Resolves when all are queued. */
  public broadcast<T = unknown>(type: string, data?: T): Promise<void> {
    return this.broadcastTo([...this.clients.keys()], type, data);
  }

  /** Sends to the named clients. Rejects with CLIENT_NOT_FOUND naming any that are not connected (the others still get it). */
  public async broadcastTo<T = unknown>(clientIds: string[], type: string, data?: T): Promise<void> {
    if (!Array.isArray(clientIds)) throw new IpcError('INVALID_ARGUMENT', 'smartipc: broadcastTo needs an array of clientIds');
    nonEmptyString('type', type);
    const encoded = encodePayload(data, this.options.serialization, `broadcast "${type}"`);
    const missing: string[] = [];
    const sends: Promise<void>[] = [];
    for (const clientId of clientIds) {
      const entry = this.clients.get(clientId);
      if (entry) sends.push(entry.connection.send(EFrameKind.Message, type, encoded));
      else missing.push(clientId);
    }
    await Promise.all(sends);
    if (missing.length > 0) throw this.clientNotFound(missing.join(', '));
  }

  // ---- streams ---------------------------------------------------------------------------------

  /** Streams a readable to one client; resolves when it has the last byte. Rejects CLIENT_NOT_FOUND, STREAM_CANCELLED, CONNECTION_LOST... */
  public sendStreamToClient(clientId: string, readable: TStreamSource, options?: ISendStreamOptions): Promise<void> {
    const entry = this.clients.get(clientId);
    if (!entry) return Promise.reject(this.clientNotFound(clientId));
    return entry.streams.sendStream(readable, options);
  }

  /** Streams a file to one client (meta: type 'file', basename, size; sha256 checked by the client). */
  public sendFileToClient(clientId: string, filePath: string, options?: ISendFileOptions): Promise<void> {
    const entry = this.clients.get(clientId);
    if (!entry) return Promise.reject(this.clientNotFound(clientId));
    return entry.streams.sendFile(filePath, options);
  }

  /** Cancels a stream a client is sending to this server. Returns false when there is no such stream. */
  public cancelIncomingStreamFromClient(clientId: string, streamId: string, reason?: string): boolean {
    return this.clients.get(clientId)?.streams.cancelIncoming(streamId, reason) ?? false;
  }

  /** Cancels a stream this server is sending to a client. Returns false when there is no such stream. */
  public cancelOutgoingStreamToClient(clientId: string, streamId: string, reason?: string): boolean {
    return this.clients.get(clientId)?.streams.cancelOutgoing(streamId, reason) ?? false;
  }

  /**
   * Publishes to every client subscribed to a matching pattern (`from` is 'server'); the payload
   * is encoded once. Resolves once queued: subscribers never hold the publisher back, a slow one
   * loses messages instead (see `pubsubMaxQueuedBytes`). An invalid topic rejects INVALID_ARGUMENT.
   */
  public publish<T = unknown>(topic: string, data?: T): Promise<void> {
    try {
      this.pubsub.publish(topic, data);
    } catch (err) {
      return Promise.reject(err);
    }
    return Promise.resolve();
  }

  // ---- services (the hub) ---------------------------------------------------------------------

  /** The hub provides a service itself; clients call it like any other (its instance's clientId is 'server'). */
  public provide(service: string, methods: TServiceMethods, options?: IProvideOptions): Promise<void> {
    try {
      this.services.provideLocal(service, methods, options);
    } catch (err) {
      return Promise.reject(err);
    }
    return Promise.resolve();
  }

  public unprovide(service: string): Promise<void> {
    this.services.unprovideLocal(service);
    return Promise.resolve();
  }

  /** The hub calls a service (its own or a client's); the timeout defaults to `requestTimeout`. */
  public call<TRes = unknown, TParams = unknown>(service: string, method: string, params?: TParams, options?: ICallOptions): Promise<TRes> {
    return callWithRetry(options, this.options.requestTimeoutMs, (opts) => this.services.call<TRes>(service, method, params, opts, this.options.requestTimeoutMs));
  }

  /** A typed proxy for the hub's own calls: `server.service<IUserApi>('user').get({ id })`. */
  public service<TApi>(service: string): TServiceProxy<TApi> {
    assertValidName('service', service);
    return serviceProxy<TApi>((method, params, options) => this.call(service, method, params, options));
  }

  /** Every service in the registry, with its instances. */
  public getServices(): IServiceInfo[] {
    return this.services.getServices();
  }

  public getService(name: string): IServiceInfo | undefined {
    return this.services.getService(name);
  }

  public isServiceAvailable(name: string): boolean {
    return this.services.isServiceAvailable(name);
  }

  // ---- introspection ---------------------------------------------------------------------------

  public getIsReady(): boolean {
    return this.ready;
  }

  public getIsRunning(): boolean {
    return this.state === 'running';
  }

  /** The bound address: `{ socketPath }` or `{ host, port }` (the real port when started with port 0). */
  public getAddress(): TAddress | undefined {
    return this.listener?.address();
  }

  public getClientIds(): string[] {
    return [...this.clients.keys()];
  }

  /** The last dead letters (deadLetterCapacity of them), oldest first. */
  public getDeadLetters(): IDeadLetter[] {
    return this.observer.deadLetters.list();
  }

  public getClientInfo(clientId: string): IClientInfo | undefined {
    const entry = this.clients.get(clientId);
    if (!entry) return undefined;
    return { clientId, connectedAt: entry.connection.connectedAt, lastActivity: entry.connection.lastActivity, metadata: entry.metadata };
  }

  public getStats(): IIpcServerStats {
    let requestsInFlight = 0;
    for (const entry of this.clients.values()) requestsInFlight += entry.connection.requestsInFlight;
    return {
      isRunning: this.state === 'running',
      connectedClients: this.clients.size,
      totalConnections: this.totalConnections,
      uptime: this.startedAt ? Date.now() - this.startedAt : 0,
      metrics: this.observer.metrics(requestsInFlight),
      pubsub: this.pubsub.getStats(),
    };
  }

  /** @internal A note for NO_HANDLER answers (endpoint hosting: the hosted server says who hosts it and why). */
  public setNoHandlerHint(hint: () => string): void {
    this.noHandlerHint = hint;
  }

  /** @internal What a bridge (the ./nats subpath) needs: handlers, services and pub/sub of this hub. */
  public bridgeHooks(): IBridgeHooks {
    return createBridgeHooks({
      id: this.options.id,
      serialization: this.options.serialization,
      handlers: this.handlers,
      handlerListeners: this.handlerListeners,
      serviceListeners: this.serviceListeners,
      pubsub: this.pubsub,
      services: this.services,
      requestTimeoutMs: this.options.requestTimeoutMs,
      emitStream: (info, readable) => {
        if (this.listenerCount('stream') === 0) return false;
        this.emit('stream', info, readable);
        return true;
      },
    });
  }

  // ---- connections -----------------------------------------------------------------------------

  private accept(opened: IOpenedStream): void {
    const security = this.options.security;
    if (this.state !== 'running' && this.state !== 'starting') {
      opened.stream.destroy();
      return;
    }
    // Until admitted, a connection may send nothing bigger than a handshake frame.
    const link = new FramedLink(opened.stream, {
      maxMessageSize: Math.min(this.options.maxMessageSize, security.handshakeMaxFrameBytes),
      description: this.medium.describe(),
      peer: opened.peer,
      partialBudget: this.partialBudget,
    });
    link.countInto(this.metrics);
    this.handshaking.set(link, performance.now());
    if (this.handshaking.size > security.maxPendingHandshakes) this.trimPendingHandshakes();
    const startedAt = performance.now();
    awaitHello(link, security.handshakeTimeoutMs).then(
      async ({ hello, gate }) => {
        if (!link.isWritable) return; // refused meanwhile: evicted to make room (maxPendingHandshakes)
        const tlsRefusal = opened.peer.tlsAuthorizationError;
        if (tlsRefusal !== undefined) {
          this.handshaking.delete(link);
          const reason = new IpcError('TLS_ERROR', `client "${hello.clientId}" presented a certificate this server does not trust (${tlsRefusal})`);
          debug('%s', reason.message);
          rejectHello(link, new IpcError('TLS_ERROR', `server "${this.options.id}" refused the client certificate (${tlsRefusal})`));
          this.emit('authFailed', hello.clientId, reason);
          return;
        }
        const refusal = checkHello(hello, this.options) ?? (hello.probe ? undefined : this.checkCapacity(hello));
        if (refusal) {
          this.handshaking.delete(link);
          debug('refusing %s: %s', hello.clientId, refusal.message);
          rejectHello(link, refusal);
          return;
        }
        if (hello.probe) {
          // waitForServer: answered, then closed; never registered as a client, never authenticated.
          this.handshaking.delete(link);
          const breach = gate.open();
          if (breach) return this.refuseBreach(link, breach);
          sendWelcome(link, hello, this.options);
          link.end();
          return;
        }
        const permissions = await this.authenticate(link, hello, security.handshakeTimeoutMs - (performance.now() - startedAt));
        this.handshaking.delete(link);
        // Not writable: it was evicted (maxPendingHandshakes) or went away while authenticate ran.
        if (permissions === false || !link.isWritable || this.state !== 'running') return;
        link.setMaxIncomingFrameBytes(this.options.maxMessageSize);
        // From the WELCOME on the client may send; anything it sent before was a protocol breach.
        const breach = gate.open();
        if (breach) return this.refuseBreach(link, breach);
        const connection = this.admit(link, hello, permissions);
        gate.handOver(connection);
      },
      (err: IpcError) => {
        this.handshaking.delete(link);
        link.destroy(err);
        if (err.code === 'PROTOCOL_ERROR' || err.code === 'MESSAGE_TOO_LARGE') {
          this.metrics.errors++;
          this.emit('messageError', err, undefined);
        } else {
          // probes (readiness checks, port scanners) and peers that never spoke
          debug('connection closed before its handshake: %s', err.message);
        }
      },
    );
  }

  /**
   * Over maxPendingHandshakes, the oldest pending handshakes go, not the newcomers, so connections
   * that never speak cannot lock out a client whose handshake takes a millisecond; but only those
   * that waited PENDING_HANDSHAKE_GRACE_MS, so a burst of clients connecting at once all get in.
   */
  private trimPendingHandshakes(): void {
    const max = this.options.security.maxPendingHandshakes;
    const now = performance.now();
    for (const [link, acceptedAt] of this.handshaking) {
      if (this.handshaking.size <= max) return;
      const waited = now - acceptedAt;
      if (waited < PENDING_HANDSHAKE_GRACE_MS) {
        this.trimTimer ??= startTimer(() => {
          this.trimTimer = undefined;
          this.trimPendingHandshakes();
        }, Math.ceil(PENDING_HANDSHAKE_GRACE_MS - waited));
        return;
      }
      this.handshaking.delete(link);
      debug('%d handshakes pending (maxPendingHandshakes %d): closing the oldest', this.handshaking.size + 1, max);
      // Told why, with a code a client retries (SERVER_UNAVAILABLE, not the permanent TOO_MANY_CLIENTS).
      rejectHello(link, new IpcError('SERVER_UNAVAILABLE', `server "${this.options.id}" is busy: more than ${max} connections were waiting to complete their handshake, and this one waited longest (try again)`));
    }
  }

  /** A peer that sent frames before its WELCOME: refused with PROTOCOL_ERROR, counted as a bad message. */
  private refuseBreach(link: FramedLink, breach: IpcError): void {
    debug('refusing a connection: %s', breach.message);
    rejectHello(link, breach);
    this.metrics.errors++;
    this.emit('messageError', breach, undefined);
  }

  /**
   * Runs `auth` for a HELLO (within what is left of the handshake time). Resolves with the
   * connection's permissions (undefined: unrestricted) or false after refusing it with AUTH_FAILED.
   */
  private async authenticate(link: FramedLink, hello: IHelloPayload, remainingMs: number): Promise<CompiledPermissions | undefined | false> {
    const { authenticator, permissions } = this.options.security;
    const configured = permissions?.get(hello.clientId) ?? permissions?.get('*');
    if (authenticator === undefined) return configured;
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      authenticator.check({
        clientId: hello.clientId,
        metadata: hello.metadata,
        ...(hello.token !== undefined ? { token: hello.token } : {}),
        transport: link.peer.kind,
        ...(link.peer.tlsPeerCertificate ? { tlsPeerCertificate: link.peer.tlsPeerCertificate } : {}),
      }),
      new Promise<{ ok: false; reason: string }>((resolve) => {
        timer = startTimer(() => resolve({ ok: false, reason: `authentication took longer than the handshake allows (${this.options.security.handshakeTimeoutMs} ms)` }), Math.max(0, remainingMs));
      }),
    ]);
    clearTimeout(timer);
    if (outcome.ok) return outcome.permissions ?? configured;
    const reason = new IpcError('AUTH_FAILED', `client "${hello.clientId}" was not admitted: ${outcome.reason}`);
    debug('%s', reason.message);
    rejectHello(link, new IpcError('AUTH_FAILED', `server "${this.options.id}" refused the authentication`));
    this.emit('authFailed', hello.clientId, reason);
    return false;
  }

  private frameSweepIntervalMs(): number {
    return Math.min(FRAME_TIMEOUT_SWEEP_MS, this.options.security.frameTimeoutMs);
  }

  /** Closes connections whose incomplete frame began longer than frameTimeoutMs ago (a byte-at-a-time sender holds nothing for long). */
  private sweepSlowFrames(): void {
    const limit = this.options.security.frameTimeoutMs;
    const now = Date.now();
    // This process stalled: the peers' frames meanwhile waited unread.
    const excusedMs = stalledFor(now, this.lastFrameSweepAt, this.frameSweepIntervalMs());
    this.lastFrameSweepAt = now;
    const close = (link: FramedLink | undefined, who: string) => {
      if (link === undefined) return;
      if (excusedMs > 0) link.excusePartialFrame(excusedMs);
      const since = link.partialSince;
      if (since === 0 || now - since <= limit) return;
      const error = new IpcError('PROTOCOL_ERROR', `${who} closed: a frame began ${now - since} ms ago and is still not complete (frameTimeoutMs ${limit})`);
      debug('%s', error.message);
      this.metrics.errors++;
      link.destroy(error);
    };
    for (const link of this.handshaking.keys()) close(link, 'a connection in its handshake');
    for (const entry of this.clients.values()) close(entry.connection.currentLink, `client "${entry.clientId}"`);
  }

  /** maxClients: a newer connection that replaces one with its clientId does not count twice. */
  private checkCapacity(hello: IHelloPayload): IpcError | undefined {
    const replacing = this.clients.has(hello.clientId) ? 1 : 0;
    if (this.clients.size - replacing >= this.options.maxClients) {
      return new IpcError('TOO_MANY_CLIENTS', `server "${this.options.id}" already serves its maximum of ${this.options.maxClients} clients`);
    }
    return undefined;
  }

  private admit(link: FramedLink, hello: IHelloPayload, permissions: CompiledPermissions | undefined): IpcConnection {
    const clientId = hello.clientId;
    const previous = this.clients.get(clientId);
    if (previous) {
      // The older connection leaves first, so that presence tracked from the events stays right:
      // clientDisconnect(old) now, clientConnect(new) below, nothing later from the old one.
      debug('client %s connected again; closing its previous connection', clientId);
      const reason = new IpcError('CONNECTION_LOST', `replaced by a newer connection with clientId "${clientId}"`);
      this.replaced.add(previous.connection);
      this.clients.delete(clientId);
      this.emit('clientDisconnect', clientId, reason);
      previous.connection.close(reason.message, 'replaced');
    }
    sendWelcome(link, hello, this.options);
    this.totalConnections++;
    const security = this.options.security;
    const guarded = permissions !== undefined || security.rateLimit !== undefined;
    const connection: IpcConnection = new IpcConnection({
      serialization: this.options.serialization,
      requestTimeoutMs: this.options.requestTimeoutMs,
      heartbeat: this.options.heartbeat,
      handlers: this.handlers,
      metrics: this.metrics,
      observer: this.observer,
      outbox: { maxMessages: 0, maxBytes: 0 },
      maxJsonDepth: this.options.maxJsonDepth,
      ...(this.noHandlerHint !== undefined ? { noHandlerHint: this.noHandlerHint } : {}),
      ...(guarded ? { guard: new ConnectionGuard(clientId, permissions, security.rateLimit, Date.now()) } : {}),
      owner: {
        onDisconnect: (reason) => {
          if (disconnectChannel.hasSubscribers) disconnectChannel.publish({ side: 'server', peerId: clientId, transport: link.peer.kind, code: reason.code });
          if (this.replaced.delete(connection)) return;
          if (this.clients.get(clientId)?.connection === connection) this.clients.delete(clientId);
          this.emit('clientDisconnect', clientId, reason);
        },
        onHeartbeatTimeout: () => {
          this.emit('heartbeatTimeout', clientId);
          if (this.options.heartbeatThrowOnTimeout) this.emitError(new IpcError('TIMEOUT', `heartbeat timeout for client "${clientId}"`), clientId);
        },
        onError: (error) => this.emitError(error, clientId),
        onFrameError: (error) => this.emit('messageError', error, clientId),
        onRefused: (_frame, reason) => {
          if (reason.code === 'RATE_LIMITED') this.refusals.rateLimited++;
          else this.refusals.forbidden++;
        },
      },
    });
    const streams = new StreamFeature(connection, {
      maxConcurrentStreams: this.options.maxConcurrentStreams,
      onStream: (info, readable) => {
        if (this.listenerCount('stream') === 0) return false;
        this.emit('stream', { ...info, clientId }, readable);
        return true;
      },
    });
    connection.use(streams);
    for (const factory of this.featureFactories) connection.use(factory(clientId, connection));
    this.clients.set(clientId, { clientId, connection, streams, metadata: hello.metadata });
    connection.attach(link, clientId);
    if (connectChannel.hasSubscribers) connectChannel.publish({ side: 'server', peerId: clientId, transport: link.peer.kind });
    this.emit('clientConnect', clientId, hello.metadata);
    return connection;
  }

  private closeConnection(connection: IpcConnection, reason: string): Promise<void> {
    const closed = connection.whenClosed();
    connection.close(reason, 'stopping');
    return closed;
  }

  /** 'error' without a listener would throw inside a socket callback and crash the process. */
  private emitError(error: IpcError, clientId?: string): void {
    this.metrics.errors++;
    if (this.listenerCount('error') > 0) this.emit('error', error, clientId);
    else debug('unhandled server error (%s): %s', clientId ?? '-', error.message);
  }

  private clientNotFound(clientId: string): IpcError {
    return new IpcError('CLIENT_NOT_FOUND', `no connected client "${clientId}" on server "${this.options.id}"`);
  }
}
