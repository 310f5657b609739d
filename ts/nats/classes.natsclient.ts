import * as plugins from './nats.plugins.js';
import { smartipc, handlerContextStorage, assertValidName, type Msg, type MsgHdrs, type Subscription } from './nats.plugins.js';
import { DEFAULT_NATS_MAX_CONCURRENT_STREAMS, NATS_HEADER, NATS_PROBE_TIMEOUT_MS } from './nats.constants.js';
import { InboundHeaders, budgetOf, decodeMsg, encodeChain, encodeData, encodeRoot, headerBytes, toReplyError, userHeaders, type INatsEncoded } from './nats.codec.js';
import { decodeTopic, decodeType, encodeType as encodeTypeUncached } from './nats.subjects.js';
import { NatsOutbox, type INatsOutboxEntry } from './classes.natsoutbox.js';
import { NatsStreamEndpoint } from './classes.natsstreams.js';
import { NatsRequester, NatsServiceAnnouncer, gatherLists, mergeLists, replyError, requestFields, retireSubscriptions, serveCall, serveReply, type IOutgoingCall } from './nats.calls.js';
import type { ISenderHeaders, NatsBridge } from './classes.natsbridge.js';
import { debugNats } from './nats.log.js';
import type { INatsClientConnectOptions, INatsClientEvents, INatsClientOptions, INatsClientStats, INatsServiceInfo, INatsSubscribeOptions } from './interfaces.js';

type TClientState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

interface IHandlerRecord {
  handler: smartipc.TSubscriptionHandler;
  /** Iterators and Observables end when the client stops for good. */
  onEnd?: () => void;
}

interface ISubscriptionEntry {
  pattern: string;
  queue?: string;
  subscription: Subscription;
  handlers: Map<smartipc.TSubscriptionHandler, IHandlerRecord>;
}

interface IProvidedService {
  readonly name: string;
  readonly methods: smartipc.TServiceMethods;
  readonly version?: string;
  readonly metadata: Record<string, unknown>;
  subscriptions: Subscription[];
  inFlight: number;
}

const RESOLVED: Promise<void> = Promise.resolve();

/**
 * The IpcClient API over NATS. Its server is whichever host exposes a server with `id` on the
 * same NATS (and namespace); with several, each request goes to one of them. Services are named
 * across the namespace: `call` reaches any instance (a NATS client that `provide`s it, or a hub
 * exposed with it), and what this client provides is callable by other NATS clients and by the
 * clients of exposed hubs. It shares its bridge's connection: a NATS drop is a `disconnect` of
 * every client, the reconnect a `connect`, and sends made meanwhile wait in this client's bounded
 * outbox, in order.
 */
export class NatsClient extends plugins.events.EventEmitter<INatsClientEvents> {
  public readonly id: string;
  private readonly clientId: string;
  /** This instance, for echo suppression (a client never gets its own publishes back) and as its provider id. */
  private readonly src = plugins.crypto.randomBytes(8).toString('hex');
  private readonly json: boolean;
  private readonly requestTimeoutMs: number;
  private readonly maxCallDepth: number;
  private readonly outboxBounds: { maxMessages: number; maxBytes: number };
  private state: TClientState = 'idle';
  private connecting?: Promise<void>;
  private readonly requester: NatsRequester;
  private outbox: NatsOutbox;
  /** Sends go to the outbox, not to NATS: disconnected, or recovering after a reconnect. */
  private holding = false;
  private recovery?: Promise<void>;
  /** A host answered for `id` at least once: after a reconnect the outbox waits for it to answer again. */
  private hostSeen = false;
  /** Services that answered a call at least once: after a reconnect, calls of them in the outbox wait for a provider too. */
  private readonly servicesSeen = new Set<string>();
  private readonly inbox: string;
  private readonly natsSubscriptions: Subscription[] = [];
  private readonly subscriptions = new Map<string, ISubscriptionEntry>();
  private readonly handlers = new Map<string, smartipc.TMessageHandler>();
  private readonly provided = new Map<string, IProvidedService>();
  private readonly announcer: NatsServiceAnnouncer;
  private activeHandlers = 0;
  private readonly streams: NatsStreamEndpoint;
  private readonly metrics = smartipc.emptyMetricsForTests();
  private readonly pubsubStats: smartipc.IClientPubSubStats = { subscriptions: 0, published: 0, received: 0, droppedLocally: 0 };
  private reconnectAttempts = 0;
  // Encoded once and reused for every message (From) and publish (From, Src), per payload encoding.
  private readonly requestPrefix: string;
  private readonly messagePrefix: string;
  private readonly topicPrefixLength: number;

  /** @internal Use `bridge.createClient(options)`. */
  constructor(private readonly bridge: NatsBridge, options: INatsClientOptions) {
    super();
    if (!options || typeof options.id !== 'string' || options.id.length === 0) throw smartipc.invalidArgument('createClient: id (the server id) must be a non-empty string');
    if (options.clientId !== undefined && (typeof options.clientId !== 'string' || options.clientId.length === 0)) throw smartipc.invalidArgument('createClient: clientId must be a non-empty string');
    this.id = options.id;
    this.clientId = options.clientId ?? smartipc.generateClientId();
    this.json = (options.serialization ?? bridge.serialization) === 'json';
    this.requestTimeoutMs = smartipc.durationMs('requestTimeout', options.requestTimeout, smartipc.defaults.DEFAULT_REQUEST_TIMEOUT_MS, { allowZero: false });
    this.maxCallDepth = smartipc.count('maxCallDepth', options.maxCallDepth, smartipc.defaults.DEFAULT_MAX_CALL_DEPTH);
    this.outboxBounds = {
      maxMessages: smartipc.count('outbox.maxMessages', options.outbox?.maxMessages, smartipc.defaults.DEFAULT_OUTBOX_MAX_MESSAGES, { min: 0, allowInfinity: true }),
      maxBytes: smartipc.bytes('outbox.maxBytes', options.outbox?.maxBytes, smartipc.defaults.DEFAULT_OUTBOX_MAX_BYTES, { allowZero: true }),
    };
    this.outbox = new NatsOutbox(this.outboxBounds.maxMessages, this.outboxBounds.maxBytes);
    this.inbox = bridge.newInbox();
    this.requester = new NatsRequester(
      bridge,
      this.inbox,
      (type) => new smartipc.IpcError('NO_HANDLER', `no host on NATS handles "${type}" for server "${this.id}" (no responders on ${this.requestPrefix}…)`),
      (target) => {
        if (target === undefined) this.hostSeen = true;
        else if (!this.servicesSeen.has(target.service)) {
          if (this.servicesSeen.size >= 10_000) this.servicesSeen.clear();
          this.servicesSeen.add(target.service);
        }
      },
    );
    this.requestPrefix = bridge.subjects.requestPrefix(this.id);
    this.messagePrefix = bridge.subjects.messagePrefix(this.id);
    this.topicPrefixLength = bridge.subjects.topicPrefix(this.id).length;
    this.announcer = new NatsServiceAnnouncer(bridge, this.src, 'client', this.clientId, () => this.providedList());
    this.streams = new NatsStreamEndpoint(bridge, {
      inbox: this.inbox,
      json: this.json,
      maxConcurrentStreams: smartipc.count('maxConcurrentStreams', options.maxConcurrentStreams, DEFAULT_NATS_MAX_CONCURRENT_STREAMS),
      requestTimeoutMs: this.requestTimeoutMs,
      from: this.clientId,
      src: this.src,
      emitError: (error) => this.emitError(error),
    });
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  /**
   * Subscribes this client's subjects (replies, messages from its server, its pub/sub patterns,
   * the services it provides) and resolves once nats-server has them. It does not need a host to
   * expose `id` yet (requests then fail with NO_HANDLER), unless `waitForReady`: then it waits
   * until one answers, up to `waitTimeout` (SERVER_UNAVAILABLE after). NATS down:
   * SERVER_UNAVAILABLE (or waits, with waitForReady).
   */
  public connect(options: INatsClientConnectOptions = {}): Promise<void> {
    if (this.state === 'connected' || this.state === 'reconnecting') return RESOLVED;
    if (this.connecting) return this.connecting;
    this.connecting = this.doConnect(options).finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  /**
   * Unsubscribes and stops; what waits in the outbox rejects with NOT_CONNECTED, requests in flight
   * with CONNECTION_LOST, iterators and Observables end, provided services are withdrawn (and
   * provided again by the next connect()).
   */
  public async disconnect(): Promise<void> {
    if (this.state === 'closed' || this.state === 'idle') {
      this.state = 'closed';
      return;
    }
    const wasLive = this.state === 'connected' || this.state === 'reconnecting';
    this.state = 'closed';
    const reason = new smartipc.IpcError('CLOSED', 'client disconnected');
    this.release(new smartipc.IpcError('NOT_CONNECTED', 'client disconnected'), new smartipc.IpcError('CONNECTION_LOST', 'client disconnected'));
    this.bridge.serving.abortAll(new smartipc.IpcError('CONNECTION_LOST', 'the serving NATS client disconnected'), this);
    const services = retireSubscriptions(this.bridge, this.withdrawServices());
    for (const subscription of this.natsSubscriptions.splice(0)) subscription.unsubscribe();
    this.endSubscriptions();
    this.bridge.unregister(this);
    if (wasLive) this.emit('disconnect', reason);
    // Calls nats-server had already routed here are still answered; after this, none reach this client.
    await services;
  }

  // ---- messaging -------------------------------------------------------------------------------

  /**
   * Fire-and-forget to the server's handler of `type` (one host of the queue group gets it).
   * Resolves once handed to NATS, or once sent from the outbox after a reconnect.
   */
  public sendMessage<T = unknown>(type: string, data?: T): Promise<void> {
    let encoded: INatsEncoded;
    try {
      this.checkUsable();
      encoded = encodeData(data, this.json, `message "${type}"`);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.send(this.messagePrefix + encodeTypeCached(type), encoded, `message "${type}"`, this.bridge.senderHeaders(this.clientId, undefined, encoded.encoding));
  }

  /**
   * A request to the server's handler of `type`. Rejects NO_HANDLER at once when no host has a
   * handler for it (NATS "no responders"), TIMEOUT, ABORTED, CONNECTION_LOST when NATS drops while
   * it is in flight, MESSAGE_TOO_LARGE before sending when it does not fit max_payload. Made inside
   * a handler, it inherits the handler's deadline, cancellation and traceparent (unless
   * `propagate: false`).
   */
  public request<TReq = unknown, TRes = unknown>(type: string, data?: TReq, options: smartipc.IRequestOptions = {}): Promise<TRes> {
    let encoded: INatsEncoded;
    let call: IOutgoingCall<TRes>;
    try {
      this.checkUsable();
      encoded = encodeData(data, this.json, `request "${type}"`);
      this.bridge.checkSize(encoded.bytes + this.estimateHeaderBytes(options.headers), `request "${type}"`);
      call = this.requester.open<TRes>(type, options, this.requestTimeoutMs);
    } catch (err) {
      return Promise.reject(err);
    }
    const headers = call.headers;
    const deadline = call.deadline;
    return this.sendRequest(this.requestPrefix + encodeTypeCached(type), encoded, call, undefined, () => this.bridge.headers(requestFields(this.clientId, encoded, headers, deadline)));
  }

  /** Handles messages and requests from the server (`exposure.sendToClient`, `requestClient`, `broadcast`). */
  public onMessage<TReq = unknown, TRes = unknown>(type: string, handler: (data: TReq, serverId: string, context: smartipc.IMessageContext) => TRes | Promise<TRes> | void): this {
    this.handlers.set(type, handler as smartipc.TMessageHandler);
    return this;
  }

  public offMessage(type: string): this {
    this.handlers.delete(type);
    return this;
  }

  // ---- services --------------------------------------------------------------------------------

  /**
   * Calls `service.method` on whichever instance NATS picks (a NATS client providing it, or a
   * hub exposed with it; several share the load). SERVICE_NOT_FOUND at once when nobody provides
   * the service, METHOD_NOT_FOUND when its instances lack the method; HANDLER_ERROR when the method
   * threw; TIMEOUT, ABORTED, MAX_DEPTH_EXCEEDED as through a hub. Made inside a service method (or
   * a handler) it extends that call's chain and inherits its deadline, cancellation and traceparent.
   */
  public call<TRes = unknown, TParams = unknown>(service: string, method: string, params?: TParams, options: smartipc.ICallOptions = {}): Promise<TRes> {
    let encoded: INatsEncoded;
    let call: IOutgoingCall<TRes>;
    let chain: { root: string; chain: string[] };
    try {
      assertValidName('service', service);
      assertValidName('method', method);
      this.checkUsable();
      encoded = encodeData(params, this.json, `call ${service}.${method}`);
      this.bridge.checkSize(encoded.bytes + this.estimateHeaderBytes(options.headers) + 128, `call ${service}.${method}`);
      chain = smartipc.nextChain(service);
      call = this.requester.open<TRes>(`${service}.${method}`, options, this.requestTimeoutMs, { service, method });
    } catch (err) {
      return Promise.reject(err);
    }
    const headers = call.headers;
    const deadline = call.deadline;
    return this.sendRequest(this.bridge.subjects.serviceCall(service, method), encoded, call, service, () => {
      const fields = requestFields(this.clientId, encoded, headers, deadline);
      fields[NATS_HEADER.root] = encodeRoot(chain.root);
      fields[NATS_HEADER.chain] = encodeChain(chain.chain);
      return this.bridge.headers(fields);
    });
  }

  /** A typed proxy: `api.method(params, opts?)` is `call(service, 'method', params, opts)`. */
  public service<TApi>(service: string): smartipc.TServiceProxy<TApi> {
    assertValidName('service', service);
    const cache = new Map<string, (params?: unknown, options?: smartipc.ICallOptions) => Promise<unknown>>();
    return new Proxy({} as smartipc.TServiceProxy<TApi>, {
      get: (_target, property) => {
        // Not a thenable: `await client.service('x')` must not try to call a method named "then".
        if (typeof property !== 'string' || property === 'then') return undefined;
        let method = cache.get(property);
        if (method === undefined) {
          method = (params?: unknown, options?: smartipc.ICallOptions) => this.call(service, property, params, options);
          cache.set(property, method);
        }
        return method;
      },
    });
  }

  /**
   * Provides a service on NATS: `methods` is an object of `(params, ctx) => result` functions, ctx
   * the call context (callerId, root, chain, depth, deadline, signal, headers). Callable by every
   * NATS client and by the clients of exposed hubs (which import it); several providers share the
   * load. Allowed before connect() (subscribed then); resolves once nats-server has it.
   */
  public async provide(service: string, methods: smartipc.TServiceMethods, options: smartipc.IProvideOptions = {}): Promise<void> {
    assertValidName('service', service);
    if (methods === null || typeof methods !== 'object') throw smartipc.invalidArgument(`provide("${service}") needs an object of methods`);
    const names = Object.keys(methods);
    if (names.length === 0) throw smartipc.invalidArgument(`provide("${service}") needs at least one method`);
    for (const name of names) {
      assertValidName('method', name);
      if (typeof methods[name] !== 'function') throw smartipc.invalidArgument(`method "${name}" of service "${service}" must be a function`);
    }
    if (options === null || typeof options !== 'object') throw smartipc.invalidArgument('provide options must be an object');
    if (options.version !== undefined && typeof options.version !== 'string') throw smartipc.invalidArgument('version must be a string');
    if (options.metadata !== undefined && (options.metadata === null || typeof options.metadata !== 'object' || Array.isArray(options.metadata))) throw smartipc.invalidArgument('metadata must be a plain object');
    if (this.provided.has(service)) throw smartipc.invalidArgument(`service "${service}" is already provided by this client; unprovide it first`);
    const entry: IProvidedService = { name: service, methods: { ...methods }, ...(options.version !== undefined ? { version: options.version } : {}), metadata: options.metadata ?? {}, subscriptions: [], inFlight: 0 };
    this.provided.set(service, entry);
    if (this.state !== 'connected' && this.state !== 'reconnecting') return;
    this.subscribeService(entry);
    this.announcer.changed();
    if (this.bridge.isConnected) await this.bridge.connection.flush().catch(() => undefined);
  }

  /** Withdraws a service: no new calls reach it here; calls it is running finish. */
  public async unprovide(service: string): Promise<void> {
    assertValidName('service', service);
    const entry = this.provided.get(service);
    if (entry === undefined) return;
    this.provided.delete(service);
    const retiring = retireSubscriptions(this.bridge, entry.subscriptions.splice(0));
    if (this.state === 'connected' || this.state === 'reconnecting') this.announcer.changed();
    await retiring;
  }

  /**
   * Every service provided on this NATS namespace, as its providers list it (one `<ns>.svclist`
   * round: a few hundred ms at most): NATS clients' and exposed hubs' (those name the `hub`).
   * `inFlight` is each instance's own count when it answered.
   */
  public async listServices(): Promise<INatsServiceInfo[]> {
    this.checkLive('listServices');
    return mergeLists(await gatherLists(this.bridge));
  }

  // ---- pub/sub ---------------------------------------------------------------------------------

  /**
   * Subscribes `handler(data, { topic, from })` to a pattern with smartipc's rules (`*` one
   * segment, `>` last and one or more), checked here: NATS itself would take `a..b` and read
   * `a.b*` as a literal. Resolves once nats-server has the subscription. `queue`: one subscriber of
   * the group (per pattern) gets each publish.
   */
  public subscribe<T = unknown>(pattern: string, handler: smartipc.TSubscriptionHandler<T>, options: INatsSubscribeOptions = {}): Promise<void> {
    return this.addSubscription(pattern, handler as smartipc.TSubscriptionHandler, options);
  }

  private async addSubscription(pattern: string, handler: smartipc.TSubscriptionHandler, options: INatsSubscribeOptions, onEnd?: () => void): Promise<void> {
    const problem = smartipc.describeInvalidPattern(pattern);
    if (problem !== undefined) throw smartipc.invalidArgument(problem);
    if (typeof handler !== 'function') throw smartipc.invalidArgument('subscribe needs a handler function');
    if (options.queue !== undefined && (typeof options.queue !== 'string' || options.queue.length === 0 || /[\s*>]/.test(options.queue))) {
      throw smartipc.invalidArgument(`queue must be a non-empty name without whitespace, '*' or '>', got ${JSON.stringify(options.queue)}`);
    }
    if (this.state !== 'connected' && this.state !== 'reconnecting') throw new smartipc.IpcError('NOT_CONNECTED', `client "${this.clientId}" is not connected; connect() first`);
    const key = `${pattern}\u0000${options.queue ?? ''}`;
    let entry = this.subscriptions.get(key);
    if (entry === undefined) {
      const subscription = this.bridge.connection.subscribe(this.bridge.subjects.pattern(this.id, pattern), {
        ...(options.queue !== undefined ? { queue: options.queue } : {}),
        callback: (err, msg) => {
          if (!err) this.onPublish(entry!, msg);
        },
      });
      entry = { pattern, queue: options.queue, subscription, handlers: new Map() };
      this.subscriptions.set(key, entry);
      this.pubsubStats.subscriptions = this.subscriptions.size;
    }
    if (!entry.handlers.has(handler)) entry.handlers.set(handler, { handler, ...(onEnd ? { onEnd } : {}) });
    // Registered either way: the NATS client re-sends it after a reconnect.
    if (this.bridge.isConnected) await this.bridge.connection.flush().catch(() => undefined);
  }

  /** Removes one handler, or every handler of the pattern (with or without queue); iterators and Observables of it end. */
  public async unsubscribe(pattern: string, handler?: smartipc.TSubscriptionHandler): Promise<void> {
    for (const [key, entry] of this.subscriptions) {
      if (entry.pattern !== pattern) continue;
      const removed = handler === undefined ? [...entry.handlers.values()] : [entry.handlers.get(handler)].filter((r): r is IHandlerRecord => r !== undefined);
      for (const record of removed) {
        entry.handlers.delete(record.handler);
        record.onEnd?.();
      }
      if (entry.handlers.size === 0) {
        entry.subscription.unsubscribe();
        this.subscriptions.delete(key);
      }
    }
    this.pubsubStats.subscriptions = this.subscriptions.size;
    if (this.bridge.isConnected) await this.bridge.connection.flush().catch(() => undefined);
  }

  /** Publishes to the hub's subscribers (local clients of every exposing host and NATS clients), never back to this client. */
  public publish<T = unknown>(topic: string, data?: T): Promise<void> {
    let encoded: INatsEncoded;
    try {
      const problem = smartipc.describeInvalidTopic(topic);
      if (problem !== undefined) throw smartipc.invalidArgument(problem);
      this.checkUsable();
      encoded = encodeData(data, this.json, `publish to "${topic}"`);
    } catch (err) {
      return Promise.reject(err);
    }
    this.pubsubStats.published++;
    return this.send(this.bridge.subjects.topic(this.id, topic), encoded, `publish to "${topic}"`, this.bridge.senderHeaders(this.clientId, this.src, encoded.encoding));
  }

  /**
   * A pattern's messages as an async iterator: `for await (const { topic, from, data } of
   * client.subscribeIterator('user.*'))`. At most `maxBuffered` (default 1000) wait for the
   * consumer; past it the oldest is dropped (`pubsub.droppedLocally`). Ends with `return()`/`break`,
   * an `unsubscribe` of the pattern, or the client's disconnect.
   */
  public subscribeIterator<T = unknown>(pattern: string, options: smartipc.ISubscribeIteratorOptions = {}): AsyncIterableIterator<smartipc.IPublishedMessage<T>> {
    return smartipc.subscriptionIterator(this.sourceFor<T>(pattern), options.maxBuffered, () => {
      this.pubsubStats.droppedLocally++;
    });
  }

  /** A pattern's messages as an rxjs Observable (cold: subscribing to it subscribes, unsubscribing unsubscribes; completes on the client's disconnect). */
  public subscribeObservable<T = unknown>(pattern: string): smartipc.Observable<smartipc.IPublishedMessage<T>> {
    return smartipc.subscriptionObservable(this.sourceFor<T>(pattern));
  }

  private sourceFor<T>(pattern: string): smartipc.ISubscriptionSource<T> {
    const problem = smartipc.describeInvalidPattern(pattern);
    if (problem !== undefined) throw smartipc.invalidArgument(problem);
    return {
      subscribe: (handler, onEnd) => this.addSubscription(pattern, handler as smartipc.TSubscriptionHandler, {}, onEnd),
      unsubscribe: (handler) => this.removeHandler(pattern, handler as smartipc.TSubscriptionHandler),
    };
  }

  /** Removes one handler without calling its onEnd (the iterator or Observable ends itself). */
  private async removeHandler(pattern: string, handler: smartipc.TSubscriptionHandler): Promise<void> {
    for (const [key, entry] of this.subscriptions) {
      if (entry.pattern !== pattern || !entry.handlers.delete(handler)) continue;
      if (entry.handlers.size === 0) {
        entry.subscription.unsubscribe();
        this.subscriptions.delete(key);
      }
    }
    this.pubsubStats.subscriptions = this.subscriptions.size;
    if (this.bridge.isConnected) await this.bridge.connection.flush().catch(() => undefined);
  }

  // ---- streams ---------------------------------------------------------------------------------

  /**
   * Streams a readable to the server (one exposing host accepts it; its `stream` listeners get it
   * with this client's id as `info.clientId`), chunked below max_payload, with end-to-end credit:
   * a slow reader slows the sender, neither side buffers more than a window. Resolves when the
   * server's 'stream' listener has it all. Needs a live connection.
   */
  public sendStream(readable: smartipc.TStreamSource, options?: smartipc.ISendStreamOptions): Promise<void> {
    try {
      this.checkLive('streams');
    } catch (err) {
      return Promise.reject(err);
    }
    return this.streams.sendStream(this.id, readable, options);
  }

  /** Streams a file (meta: type 'file', basename, size; sha256 checked by the receiving bridge). */
  public sendFile(filePath: string, options?: smartipc.ISendFileOptions): Promise<void> {
    try {
      this.checkLive('streams');
    } catch (err) {
      return Promise.reject(err);
    }
    return this.streams.sendFile(this.id, filePath, options);
  }

  public cancelOutgoingStream(streamId: string, reason?: string): boolean {
    return this.streams.cancelOutgoing(streamId, reason);
  }

  // ---- introspection ---------------------------------------------------------------------------

  public getIsConnected(): boolean {
    return this.state === 'connected' && this.bridge.isConnected;
  }

  public getClientId(): string {
    return this.clientId;
  }

  public getStats(): INatsClientStats {
    return {
      connected: this.getIsConnected(),
      clientId: this.clientId,
      reconnectAttempts: this.reconnectAttempts,
      metrics: { ...this.metrics, requestsInFlight: this.requester.size, latency: { requests: {}, handlers: {} } },
      pubsub: { ...this.pubsubStats },
    };
  }

  // ---- the bridge's calls ------------------------------------------------------------------------

  /** @internal */
  public onBridgeDisconnect(reason: smartipc.IpcError): void {
    if (this.state !== 'connected') return;
    this.state = 'reconnecting';
    this.holding = true;
    this.requester.rejectAll((entry) => new smartipc.IpcError('CONNECTION_LOST', `request "${entry.type}" lost: ${reason.message}`, { cause: reason }));
    this.streams.failAll(reason);
    this.emit('disconnect', reason);
  }

  /** @internal */
  public onBridgeReconnecting(attempt: number, delayMs: number): void {
    if (this.state !== 'reconnecting') return;
    this.reconnectAttempts = attempt;
    this.emit('reconnecting', attempt, delayMs);
  }

  /** @internal The NATS client has re-sent every subscription; then the outbox goes out (see recover). */
  public onBridgeReconnect(): void {
    if (this.state !== 'reconnecting') return;
    this.state = 'connected';
    this.emit('connect');
    this.announcer.reannounce();
    this.recovery ??= this.recover().finally(() => {
      this.recovery = undefined;
    });
  }

  /** @internal */
  public tick(now: number): void {
    this.streams.tick(now);
  }

  /** @internal Requests in flight have settled, handlers have answered (drain). */
  public async whenIdle(deadline: number): Promise<void> {
    while ((this.requester.size > 0 || this.streams.outgoingCount > 0 || this.activeHandlers > 0) && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  /** @internal */
  public async beginClose(): Promise<void> {
    // New requests and messages are refused from now on (checkUsable looks at the bridge).
    this.release(new smartipc.IpcError('NOT_CONNECTED', 'the NATS bridge is closing'));
    await retireSubscriptions(this.bridge, this.withdrawServices());
  }

  /** @internal */
  public finishClose(reason: smartipc.IpcError): void {
    if (this.state === 'closed' || this.state === 'idle') {
      this.state = 'closed';
      return;
    }
    this.state = 'closed';
    this.release(new smartipc.IpcError('NOT_CONNECTED', reason.message), new smartipc.IpcError('CONNECTION_LOST', reason.message, { cause: reason }));
    this.bridge.serving.abortAll(reason, this);
    for (const subscription of this.withdrawServices()) subscription.unsubscribe();
    this.endSubscriptions();
    this.emit('disconnect', reason);
  }

  // ---- internals -------------------------------------------------------------------------------

  private async doConnect(options: INatsClientConnectOptions): Promise<void> {
    if (this.bridge.isClosing) throw new smartipc.IpcError('NOT_CONNECTED', 'the NATS bridge is closed');
    this.state = 'connecting';
    try {
      const waitForReady = options.waitForReady === true;
      const budget = options.waitTimeout ?? smartipc.defaults.DEFAULT_WAIT_FOR_READY_TIMEOUT_MS;
      if (!this.bridge.isConnected) {
        if (!waitForReady) throw new smartipc.IpcError('SERVER_UNAVAILABLE', `NATS is not reachable right now (the bridge is reconnecting); pass waitForReady to wait`);
        const deadline = performance.now() + budget;
        while (!this.bridge.isConnected && performance.now() < deadline && !this.bridge.isClosing) await new Promise((resolve) => setTimeout(resolve, 20));
        if (!this.bridge.isConnected) throw new smartipc.IpcError('SERVER_UNAVAILABLE', `NATS did not come back within ${budget} ms`);
      }
      if (this.natsSubscriptions.length === 0) this.subscribeOwnSubjects();
      for (const entry of this.provided.values()) if (entry.subscriptions.length === 0) this.subscribeService(entry);
      try {
        await this.bridge.connection.flush();
      } catch (err) {
        throw new smartipc.IpcError('SERVER_UNAVAILABLE', `NATS dropped while subscribing: ${(err as Error).message}`, { cause: err });
      }
      if (waitForReady) {
        if (!(await this.bridge.probe(this.id, budget, () => this.state === 'closed'))) {
          throw new smartipc.IpcError('SERVER_UNAVAILABLE', `no host exposes server "${this.id}" on NATS (namespace "${this.bridge.namespace}") after ${budget} ms`);
        }
        this.hostSeen = true;
      } else {
        // One look, not waited for: whether a host exists decides if the outbox waits for it after a reconnect.
        this.bridge.probe(this.id, NATS_PROBE_TIMEOUT_MS, () => this.state === 'closed', true).then((seen) => {
          if (seen) this.hostSeen = true;
        }, () => undefined);
      }
      if ((this.state as TClientState) === 'closed') throw new smartipc.IpcError('NOT_CONNECTED', 'disconnect() was called while connecting');
    } catch (err) {
      if (this.state === 'connecting') this.state = 'idle';
      throw err;
    }
    this.state = 'connected';
    this.holding = false;
    this.outbox = new NatsOutbox(this.outboxBounds.maxMessages, this.outboxBounds.maxBytes);
    this.bridge.register(this);
    if (this.provided.size > 0) this.announcer.changed();
    this.emit('connect');
  }

  private subscribeOwnSubjects(): void {
    const connection = this.bridge.connection;
    this.natsSubscriptions.push(connection.subscribe(`${this.inbox}.*`, { callback: (err, msg) => {
      if (!err) this.onInbox(msg);
    } }));
    const toClient = this.bridge.subjects.toClientPrefix(this.id, this.clientId);
    this.natsSubscriptions.push(connection.subscribe(`${toClient}>`, { callback: (err, msg) => {
      if (!err) this.onServerMessage(msg, toClient.length);
    } }));
    const broadcast = this.bridge.subjects.broadcastPrefix(this.id);
    this.natsSubscriptions.push(connection.subscribe(`${broadcast}>`, { callback: (err, msg) => {
      if (!err) this.onServerMessage(msg, broadcast.length);
    } }));
  }

  /** The subjects of one provided service: its methods and its presence probe, in its queue group. */
  private subscribeService(entry: IProvidedService): void {
    const connection = this.bridge.connection;
    const queue = this.bridge.subjects.serviceQueue(entry.name);
    for (const method of Object.keys(entry.methods)) {
      entry.subscriptions.push(connection.subscribe(this.bridge.subjects.serviceCall(entry.name, method), { queue, callback: (err, msg) => {
        if (!err) this.onServiceCall(entry, method, msg);
      } }));
    }
    entry.subscriptions.push(connection.subscribe(this.bridge.subjects.serviceProbe(entry.name), { queue, callback: (err, msg) => {
      if (err || !msg.reply) return;
      try {
        this.bridge.publish(msg.reply, JSON.stringify({ service: entry.name, methods: Object.keys(entry.methods) }));
      } catch {
        // the caller reports SERVICE_NOT_FOUND
      }
    } }));
  }

  /**
   * Takes the subscriptions of every provided service (they stay registered: the next connect
   * provides them again) and tells the registry they are gone. The caller unsubscribes or drains them.
   */
  private withdrawServices(): Subscription[] {
    const subs: Subscription[] = [];
    for (const entry of this.provided.values()) subs.push(...entry.subscriptions.splice(0));
    this.announcer.close();
    return subs;
  }

  private providedList(): smartipc.IServiceInfo[] {
    const list: smartipc.IServiceInfo[] = [];
    for (const entry of this.provided.values()) {
      if (entry.subscriptions.length === 0) continue;
      list.push({
        name: entry.name,
        instances: [{ clientId: this.clientId, methods: Object.keys(entry.methods), ...(entry.version !== undefined ? { version: entry.version } : {}), metadata: entry.metadata, inFlight: entry.inFlight }],
      });
    }
    return list;
  }

  private onServiceCall(entry: IProvidedService, method: string, msg: Msg): void {
    const fn = entry.methods[method] as unknown as (params: unknown, context: smartipc.CallContext) => unknown;
    serveCall(
      {
        bridge: this.bridge,
        owner: this,
        json: this.json,
        maxCallDepth: this.maxCallDepth,
        onStart: () => {
          entry.inFlight++;
          this.activeHandlers++;
          this.metrics.messagesReceived++;
          this.metrics.bytesReceived += msg.data.length;
        },
        onEnd: () => {
          entry.inFlight--;
          this.activeHandlers--;
        },
      },
      msg,
      entry.name,
      method,
      fn,
    );
  }

  /** Throws NOT_CONNECTED when this client cannot take a send (not connected, closed, or its bridge is closing). */
  private checkUsable(): void {
    if (this.bridge.isClosing) throw new smartipc.IpcError('NOT_CONNECTED', 'the NATS bridge is closing or closed');
    if (this.state !== 'connected' && this.state !== 'reconnecting') throw new smartipc.IpcError('NOT_CONNECTED', `client "${this.clientId}" is not connected; connect() first`);
  }

  private checkLive(what: string): void {
    this.checkUsable();
    if (this.holding || !this.bridge.isConnected) throw new smartipc.IpcError('NOT_CONNECTED', `NATS is not reachable right now; ${what} need a live connection`);
  }

  /** Header bytes a request adds beside its payload, for the size check (From, budget, encoding, the caller's headers). */
  private estimateHeaderBytes(headers: Record<string, unknown> | undefined): number {
    let bytes = 96 + Buffer.byteLength(this.clientId);
    if (headers !== undefined) bytes += Buffer.byteLength(JSON.stringify(headers)) + 32;
    return bytes;
  }

  /** A message or publish: to NATS now, or into the outbox while holding (or while the link is down and NATS has not said so yet). */
  private send(subject: string, encoded: INatsEncoded, what: string, headers: ISenderHeaders): Promise<void> {
    const bytes = encoded.bytes + headers.bytes;
    try {
      this.bridge.checkSize(bytes, what);
      if (!this.holding) {
        if (this.bridge.linkUp) {
          this.bridge.publish(subject, encoded.payload, headers.headers);
          this.metrics.messagesSent++;
          this.metrics.bytesSent += bytes;
          return RESOLVED;
        }
        // The socket is gone and the status has not reached us yet: nats.js would drop this at its next dial.
        this.holding = true;
      }
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<void>((resolve, reject) => {
      try {
        this.outbox.push({ subject, payload: encoded.payload, bytes, headers: () => headers.headers, resolve, reject });
      } catch (err) {
        reject(err);
      }
    });
  }

  /** A request or call registered with the requester: to NATS now, or into the outbox (its headers are built when it leaves: the budget is what remains then). */
  private sendRequest<T>(subject: string, encoded: INatsEncoded, call: IOutgoingCall<T>, service: string | undefined, headers: () => MsgHdrs): Promise<T> {
    try {
      if (!this.holding && this.bridge.linkUp) {
        this.bridge.publish(subject, encoded.payload, headers(), call.reply);
        this.metrics.messagesSent++;
        this.metrics.bytesSent += encoded.bytes;
      } else {
        this.holding = true;
        this.outbox.push({ subject, payload: encoded.payload, bytes: encoded.bytes + 128, headers, reply: call.reply, requestId: call.id, ...(service !== undefined ? { service } : {}) });
      }
    } catch (err) {
      this.requester.fail(call.id, err as smartipc.IpcError);
    }
    return call.promise;
  }

  /**
   * After a reconnect every host and provider must re-subscribe too, and may be later than this
   * one: what waited in the outbox goes out once a host answers for `id` again and the services
   * it calls have a provider again (those that answered before; at most the bridge's
   * recoveryTimeoutMs), in order. Sends made meanwhile queue behind it.
   */
  private async recover(): Promise<void> {
    const waiting = this.outbox.waiting;
    if (waiting.length > 0) {
      const stop = () => this.state !== 'connected';
      const budget = this.bridge.recoveryTimeoutMs;
      const probes: Array<Promise<boolean>> = [];
      if (this.hostSeen && waiting.some((entry) => entry.service === undefined)) probes.push(this.bridge.probe(this.id, budget, stop));
      const services = new Set(waiting.map((entry) => entry.service).filter((service): service is string => service !== undefined && this.servicesSeen.has(service)));
      for (const service of services) probes.push(this.bridge.probeSubject(this.bridge.subjects.serviceProbe(service), budget, stop));
      const answered = await Promise.all(probes);
      if (answered.includes(false)) debugNats('client %s: not every host or provider answered within %d ms after the reconnect; sending the outbox anyway', this.clientId, budget);
    }
    if (this.state !== 'connected' || !this.bridge.isConnected) return;
    for (const entry of this.outbox.takeAll()) this.flushEntry(entry);
    this.holding = false;
  }

  private flushEntry(entry: INatsOutboxEntry): void {
    if (entry.requestId !== undefined && !this.requester.pending.has(entry.requestId)) return; // timed out or aborted meanwhile
    try {
      this.bridge.publish(entry.subject, entry.payload, entry.headers(), entry.reply);
      this.metrics.messagesSent++;
      this.metrics.bytesSent += entry.bytes;
      entry.resolve?.();
    } catch (err) {
      const error = err as smartipc.IpcError;
      if (entry.requestId !== undefined) this.requester.fail(entry.requestId, error);
      else entry.reject?.(error);
    }
  }

  /** Fails what waits in the outbox (and, when given, the requests in flight). */
  private release(outboxError: smartipc.IpcError, inFlightError?: smartipc.IpcError): void {
    for (const entry of this.outbox.takeAll()) {
      if (entry.requestId !== undefined) this.requester.fail(entry.requestId, outboxError);
      else entry.reject?.(outboxError);
    }
    if (inFlightError) {
      this.requester.rejectAll(() => inFlightError);
      this.streams.failAll(inFlightError);
    }
    this.requester.pending.disarmIfIdle();
  }

  /** The client stops for good: subscriptions go, iterators and Observables end. */
  private endSubscriptions(): void {
    for (const entry of this.subscriptions.values()) {
      entry.subscription.unsubscribe();
      for (const record of entry.handlers.values()) record.onEnd?.();
    }
    this.subscriptions.clear();
    this.pubsubStats.subscriptions = 0;
  }

  private onInbox(msg: Msg): void {
    const subject = msg.subject;
    const token = subject.slice(subject.lastIndexOf('.') + 1);
    if (token.charCodeAt(0) > 0x39) {
      this.streams.onInbox(token, msg);
      return;
    }
    const bytes = this.requester.onReply(Number(token), msg);
    if (bytes < 0) return; // late: timed out or aborted
    this.metrics.messagesReceived++;
    this.metrics.bytesReceived += bytes;
  }

  private onPublish(entry: ISubscriptionEntry, msg: Msg): void {
    const headers = InboundHeaders.of(msg);
    if (headers.get(NATS_HEADER.src) === this.src) return; // our own publish: never echoed
    if (this.state !== 'connected' && this.state !== 'reconnecting') return;
    this.pubsubStats.received++;
    this.metrics.messagesReceived++;
    this.metrics.bytesReceived += msg.data.length;
    let data: unknown;
    try {
      data = decodeMsg(msg, headers);
    } catch (err) {
      this.emitError(err as smartipc.IpcError);
      return;
    }
    const info: smartipc.IPublishInfo = { topic: decodeTopic(msg.subject.slice(this.topicPrefixLength)), from: headers.get(NATS_HEADER.from) ?? '' };
    for (const record of [...entry.handlers.values()]) {
      try {
        const result = record.handler(data, info);
        if (smartipc.isThenable(result)) {
          result.then(undefined, (err: unknown) => this.handlerFailed(info.topic, err));
        }
      } catch (err) {
        this.handlerFailed(info.topic, err);
      }
    }
  }

  private handlerFailed(topic: string, thrown: unknown): void {
    const remote = smartipc.toRemoteError(thrown);
    this.emitError(new smartipc.IpcError('HANDLER_ERROR', `subscription handler for "${topic}" threw: ${remote.message}`, { cause: thrown, remote }));
  }

  /** A message or request from the server (`sendToClient`, `requestClient`, `broadcast`), run with a handler context. */
  private onServerMessage(msg: Msg, prefixLength: number): void {
    const type = decodeType(msg.subject.slice(prefixLength));
    const reply = msg.reply || undefined;
    this.metrics.messagesReceived++;
    this.metrics.bytesReceived += msg.data.length;
    const handler = this.handlers.get(type);
    if (!handler) {
      if (reply) replyError(this.bridge, reply, new smartipc.IpcError('NO_HANDLER', `client "${this.clientId}" has no handler for "${type}"`));
      else debugNats('client %s: no handler for message "%s"; dropped', this.clientId, type);
      return;
    }
    const headers = InboundHeaders.of(msg);
    let data: unknown;
    try {
      data = decodeMsg(msg, headers);
    } catch (err) {
      if (reply) replyError(this.bridge, reply, err as smartipc.IpcError);
      else this.emitError(err as smartipc.IpcError);
      return;
    }
    const context = new smartipc.HandlerContext(type, reply !== undefined, this.id);
    const user = userHeaders(headers);
    if (user) context.headers = user;
    const budget = reply ? budgetOf(headers) : undefined;
    if (budget !== undefined) context.deadline = Date.now() + budget;
    this.activeHandlers++;
    serveReply(
      this.bridge,
      {
        reply: reply || undefined,
        owner: this,
        budgetMs: budget,
        json: this.json,
        what: `response to "${type}"`,
        context,
        onEnd: () => this.activeHandlers--,
        onError: (error, thrown) =>
          this.emitError(new smartipc.IpcError(error.code, `handler for message "${type}" threw: ${error.message}`, { cause: thrown, ...(error.remote ? { remote: error.remote } : {}) })),
      },
      () => handlerContextStorage.run(context, handler, data, this.id, context),
    );
  }

  private emitError(error: smartipc.IpcError): void {
    this.metrics.errors++;
    if (this.listenerCount('error') > 0) this.emit('error', error);
    else debugNats('unhandled client error: %s', error.message);
  }
}

/** Subject tails of the types a client uses, computed once each (bounded). */
const typeCache = new Map<string, string>();
function encodeTypeCached(type: string): string {
  let tail = typeCache.get(type);
  if (tail === undefined) {
    tail = encodeTypeUncached(type);
    if (typeCache.size > 10_000) typeCache.clear();
    typeCache.set(type, tail);
  }
  return tail;
}


