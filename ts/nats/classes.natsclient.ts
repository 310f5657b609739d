import * as plugins from './nats.plugins.js';
import { smartipc, type Msg, type MsgHdrs, type Subscription } from './nats.plugins.js';
import { DEFAULT_NATS_MAX_CONCURRENT_STREAMS, NATS_HEADER, NATS_PROBE_TIMEOUT_MS } from './nats.constants.js';
import { decodeData, encodeData, errorBody, errorFromReply, headerBytes, headerOf, payloadBytes, userHeaders, type TNatsPayload } from './nats.codec.js';
import { decodeTopic, decodeType, encodeType as encodeTypeUncached } from './nats.subjects.js';
import { NatsOutbox, type INatsOutboxEntry } from './classes.natsoutbox.js';
import { NatsStreamEndpoint } from './classes.natsstreams.js';
import type { INatsParticipant, NatsBridge } from './classes.natsbridge.js';
import { debugNats } from './nats.log.js';
import type { INatsClientConnectOptions, INatsClientEvents, INatsClientOptions, INatsClientStats, INatsSubscribeOptions } from './interfaces.js';

type TClientState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

interface ISubscriptionEntry {
  pattern: string;
  queue?: string;
  subscription: Subscription;
  handlers: Set<smartipc.TSubscriptionHandler>;
}

const RESOLVED: Promise<void> = Promise.resolve();

/**
 * The IpcClient API over NATS. Its server is whichever host exposes a server with `id` on the
 * same NATS (and namespace); with several, each request goes to one of them. It shares its
 * bridge's connection: a NATS drop is a `disconnect` of every client, the reconnect a `connect`,
 * and sends made meanwhile wait in this client's bounded outbox, in order.
 */
export class NatsClient extends plugins.events.EventEmitter<INatsClientEvents> implements INatsParticipant {
  public readonly id: string;
  private readonly clientId: string;
  /** This instance, for echo suppression: a client never gets its own publishes back. */
  private readonly src = plugins.crypto.randomBytes(8).toString('hex');
  private readonly json: boolean;
  private readonly requestTimeoutMs: number;
  private readonly outboxBounds: { maxMessages: number; maxBytes: number };
  private state: TClientState = 'idle';
  private connecting?: Promise<void>;
  private pending = new smartipc.PendingRequests();
  private outbox: NatsOutbox;
  /** Sends go to the outbox, not to NATS: disconnected, or recovering after a reconnect. */
  private holding = false;
  private recovery?: Promise<void>;
  /** A host answered for `id` at least once: after a reconnect the outbox waits for it to answer again. */
  private hostSeen = false;
  private readonly inbox: string;
  private readonly natsSubscriptions: Subscription[] = [];
  private readonly subscriptions = new Map<string, ISubscriptionEntry>();
  private readonly handlers = new Map<string, smartipc.TMessageHandler>();
  private readonly streams: NatsStreamEndpoint;
  private readonly metrics = smartipc.emptyMetricsForTests();
  private readonly pubsubStats: smartipc.IClientPubSubStats = { subscriptions: 0, published: 0, received: 0, droppedLocally: 0 };
  private reconnectAttempts = 0;
  // Encoded once and reused for every message (From) and publish (From, Src).
  private readonly plainHeaders: MsgHdrs;
  private readonly plainHeaderBytes: number;
  private readonly publishHeaders: MsgHdrs;
  private readonly publishHeaderBytes: number;
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
    this.requestTimeoutMs = positive('requestTimeout', options.requestTimeout, smartipc.defaults.DEFAULT_REQUEST_TIMEOUT_MS);
    this.outboxBounds = {
      maxMessages: positive('outbox.maxMessages', options.outbox?.maxMessages, smartipc.defaults.DEFAULT_OUTBOX_MAX_MESSAGES, true),
      maxBytes: positive('outbox.maxBytes', options.outbox?.maxBytes, smartipc.defaults.DEFAULT_OUTBOX_MAX_BYTES, true),
    };
    this.outbox = new NatsOutbox(this.outboxBounds.maxMessages, this.outboxBounds.maxBytes);
    this.inbox = bridge.newInbox();
    const fields = { [NATS_HEADER.from]: this.clientId };
    this.plainHeaders = bridge.constantHeaders(fields);
    this.plainHeaderBytes = headerBytes(fields);
    const publishFields = { [NATS_HEADER.from]: this.clientId, [NATS_HEADER.src]: this.src };
    this.publishHeaders = bridge.constantHeaders(publishFields);
    this.publishHeaderBytes = headerBytes(publishFields);
    this.requestPrefix = bridge.subjects.requestPrefix(this.id);
    this.messagePrefix = bridge.subjects.messagePrefix(this.id);
    this.topicPrefixLength = bridge.subjects.topicPrefix(this.id).length;
    this.streams = new NatsStreamEndpoint(bridge, {
      inbox: this.inbox,
      json: this.json,
      maxConcurrentStreams: positive('maxConcurrentStreams', options.maxConcurrentStreams, DEFAULT_NATS_MAX_CONCURRENT_STREAMS),
      requestTimeoutMs: this.requestTimeoutMs,
      from: this.clientId,
      src: this.src,
      emitError: (error) => this.emitError(error),
    });
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  /**
   * Subscribes this client's subjects (replies, messages from its server, its pub/sub patterns)
   * and resolves once nats-server has them. It does not need a host to expose `id` yet (requests
   * then fail with NO_HANDLER), unless `waitForReady`: then it waits until one answers, up to
   * `waitTimeout` (SERVER_UNAVAILABLE after). NATS down: SERVER_UNAVAILABLE (or waits, with waitForReady).
   */
  public connect(options: INatsClientConnectOptions = {}): Promise<void> {
    if (this.state === 'connected' || this.state === 'reconnecting') return RESOLVED;
    if (this.connecting) return this.connecting;
    this.connecting = this.doConnect(options).finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  /** Unsubscribes and stops; what waits in the outbox rejects with NOT_CONNECTED, requests in flight with CONNECTION_LOST. */
  public async disconnect(): Promise<void> {
    if (this.state === 'closed' || this.state === 'idle') {
      this.state = 'closed';
      return;
    }
    const wasLive = this.state === 'connected' || this.state === 'reconnecting';
    this.state = 'closed';
    this.release(new smartipc.IpcError('NOT_CONNECTED', 'client disconnected'), new smartipc.IpcError('CONNECTION_LOST', 'client disconnected'));
    for (const subscription of this.natsSubscriptions.splice(0)) subscription.unsubscribe();
    for (const entry of this.subscriptions.values()) entry.subscription.unsubscribe();
    this.subscriptions.clear();
    this.pubsubStats.subscriptions = 0;
    this.bridge.unregister(this);
    if (wasLive) this.emit('disconnect', new smartipc.IpcError('CLOSED', 'client disconnected'));
  }

  // ---- messaging -------------------------------------------------------------------------------

  /**
   * Fire-and-forget to the server's handler of `type` (one host of the queue group gets it).
   * Resolves once handed to NATS, or once sent from the outbox after a reconnect.
   */
  public sendMessage<T = unknown>(type: string, data?: T): Promise<void> {
    let payload: TNatsPayload;
    try {
      this.checkUsable();
      payload = encodeData(data, this.json, `message "${type}"`);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.send(this.messagePrefix + encodeTypeCached(type), payload, `message "${type}"`, this.plainHeaders, this.plainHeaderBytes);
  }

  /**
   * A request to the server's handler of `type`. Rejects NO_HANDLER at once when no host has a
   * handler for it (NATS "no responders"), TIMEOUT, ABORTED, CONNECTION_LOST when NATS drops while
   * it is in flight, MESSAGE_TOO_LARGE before sending when it does not fit max_payload.
   */
  public request<TReq = unknown, TRes = unknown>(type: string, data?: TReq, options: smartipc.IRequestOptions = {}): Promise<TRes> {
    if (options.signal?.aborted) return Promise.reject(new smartipc.IpcError('ABORTED', `request "${type}" was aborted before it was sent`, { cause: options.signal.reason }));
    let payload: TNatsPayload;
    let userHeaderText: string | undefined;
    let bytes: number;
    try {
      this.checkUsable();
      payload = encodeData(data, this.json, `request "${type}"`);
      userHeaderText = options.headers === undefined ? undefined : JSON.stringify(options.headers);
      bytes = payloadBytes(payload) + this.plainHeaderBytes + 32 + (userHeaderText === undefined ? 0 : userHeaderText.length + NATS_HEADER.headers.length + 4);
      this.bridge.checkSize(bytes, `request "${type}"`);
    } catch (err) {
      return Promise.reject(err);
    }
    const timeoutMs = options.timeout ?? this.requestTimeoutMs;
    const id = this.pending.allocateId();
    const promise = this.pending.add<TRes>(id, type, timeoutMs, options.signal);
    const deadline = performance.now() + Math.min(Math.max(timeoutMs, 0), smartipc.defaults.MAX_TIMER_DELAY_MS);
    const subject = this.requestPrefix + encodeTypeCached(type);
    const reply = `${this.inbox}.${id}`;
    // Built when it leaves: the budget is what remains then.
    const headers = (): MsgHdrs => {
      const h = this.bridge.headers({
        [NATS_HEADER.from]: this.clientId,
        [NATS_HEADER.timeoutMs]: String(Math.max(0, Math.round(deadline - performance.now()))),
      });
      if (userHeaderText !== undefined) h.set(NATS_HEADER.headers, userHeaderText);
      return h;
    };
    try {
      if (!this.holding) {
        this.bridge.publish(subject, payload, headers(), reply);
        this.metrics.messagesSent++;
        this.metrics.bytesSent += bytes;
      } else {
        this.outbox.push({ subject, payload, bytes, headers, reply, requestId: id });
      }
    } catch (err) {
      this.pending.take(id);
      return Promise.reject(err);
    }
    return promise;
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

  // ---- pub/sub ---------------------------------------------------------------------------------

  /**
   * Subscribes `handler(data, { topic, from })` to a pattern with smartipc's rules (`*` one
   * segment, `>` last and one or more), checked here: NATS itself would take `a..b` and read
   * `a.b*` as a literal. Resolves once nats-server has the subscription. `queue`: one subscriber of
   * the group (per pattern) gets each publish.
   */
  public async subscribe<T = unknown>(pattern: string, handler: smartipc.TSubscriptionHandler<T>, options: INatsSubscribeOptions = {}): Promise<void> {
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
      entry = { pattern, queue: options.queue, subscription, handlers: new Set() };
      this.subscriptions.set(key, entry);
      this.pubsubStats.subscriptions = this.subscriptions.size;
    }
    entry.handlers.add(handler as smartipc.TSubscriptionHandler);
    // Registered either way: the NATS client re-sends it after a reconnect.
    if (this.bridge.isConnected) await this.bridge.connection.flush().catch(() => undefined);
  }

  /** Removes one handler, or every handler of the pattern (with or without queue). */
  public async unsubscribe(pattern: string, handler?: smartipc.TSubscriptionHandler): Promise<void> {
    for (const [key, entry] of this.subscriptions) {
      if (entry.pattern !== pattern) continue;
      if (handler !== undefined) entry.handlers.delete(handler);
      if (handler === undefined || entry.handlers.size === 0) {
        entry.subscription.unsubscribe();
        this.subscriptions.delete(key);
      }
    }
    this.pubsubStats.subscriptions = this.subscriptions.size;
    if (this.bridge.isConnected) await this.bridge.connection.flush().catch(() => undefined);
  }

  /** Publishes to the hub's subscribers (local clients of every exposing host and NATS clients), never back to this client. */
  public publish<T = unknown>(topic: string, data?: T): Promise<void> {
    let payload: TNatsPayload;
    try {
      const problem = smartipc.describeInvalidTopic(topic);
      if (problem !== undefined) throw smartipc.invalidArgument(problem);
      this.checkUsable();
      payload = encodeData(data, this.json, `publish to "${topic}"`);
    } catch (err) {
      return Promise.reject(err);
    }
    this.pubsubStats.published++;
    return this.send(this.bridge.subjects.topic(this.id, topic), payload, `publish to "${topic}"`, this.publishHeaders, this.publishHeaderBytes);
  }

  // ---- streams ---------------------------------------------------------------------------------

  /**
   * Streams a readable to the server (one exposing host accepts it), chunked below max_payload,
   * with end-to-end credit: a slow reader slows the sender, neither side buffers more than a
   * window. Resolves when the server's 'stream' listener has it all. Needs a live connection.
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
      metrics: { ...this.metrics, requestsInFlight: this.pending.size, latency: { requests: {}, handlers: {} } },
      pubsub: { ...this.pubsubStats },
    };
  }

  // ---- the bridge's calls ------------------------------------------------------------------------

  /** @internal */
  public onBridgeDisconnect(reason: smartipc.IpcError): void {
    if (this.state !== 'connected') return;
    this.state = 'reconnecting';
    this.holding = true;
    this.pending.rejectAll((entry) => new smartipc.IpcError('CONNECTION_LOST', `request "${entry.type}" lost: ${reason.message}`, { cause: reason }));
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
    this.recovery ??= this.recover().finally(() => {
      this.recovery = undefined;
    });
  }

  /** @internal */
  public tick(now: number): void {
    this.streams.tick(now);
  }

  /** @internal Requests in flight have settled (drain). */
  public async whenIdle(): Promise<void> {
    while (this.pending.size > 0 || this.streams.outgoingCount > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  /** @internal */
  public async beginClose(): Promise<void> {
    // New requests and messages are refused from now on (checkUsable looks at the bridge).
    this.release(new smartipc.IpcError('NOT_CONNECTED', 'the NATS bridge is closing'));
  }

  /** @internal */
  public finishClose(reason: smartipc.IpcError): void {
    if (this.state === 'closed' || this.state === 'idle') {
      this.state = 'closed';
      return;
    }
    this.state = 'closed';
    this.release(new smartipc.IpcError('NOT_CONNECTED', reason.message), new smartipc.IpcError('CONNECTION_LOST', reason.message, { cause: reason }));
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

  /** Throws NOT_CONNECTED when this client cannot take a send (not connected, closed, or its bridge is closing). */
  private checkUsable(): void {
    if (this.bridge.isClosing) throw new smartipc.IpcError('NOT_CONNECTED', 'the NATS bridge is closing or closed');
    if (this.state !== 'connected' && this.state !== 'reconnecting') throw new smartipc.IpcError('NOT_CONNECTED', `client "${this.clientId}" is not connected; connect() first`);
  }

  private checkLive(what: string): void {
    this.checkUsable();
    if (this.holding || !this.bridge.isConnected) throw new smartipc.IpcError('NOT_CONNECTED', `NATS is not reachable right now; ${what} need a live connection`);
  }

  /** A message or publish: to NATS now, or into the outbox while holding. */
  private send(subject: string, payload: TNatsPayload, what: string, headers: MsgHdrs, headersBytes: number): Promise<void> {
    const bytes = payloadBytes(payload) + headersBytes;
    try {
      this.bridge.checkSize(bytes, what);
      if (!this.holding) {
        this.bridge.publish(subject, payload, headers);
        this.metrics.messagesSent++;
        this.metrics.bytesSent += bytes;
        return RESOLVED;
      }
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<void>((resolve, reject) => {
      try {
        this.outbox.push({ subject, payload, bytes, headers: () => headers, resolve, reject });
      } catch (err) {
        reject(err);
      }
    });
  }

  /**
   * After a reconnect every host must re-subscribe too, and may be later than this one: what
   * waited in the outbox goes out once a host answers for `id` again (or after the bridge's
   * recoveryTimeoutMs), in order. Sends made meanwhile queue behind it.
   */
  private async recover(): Promise<void> {
    if (this.outbox.size > 0 && this.hostSeen) {
      const answered = await this.bridge.probe(this.id, this.bridge.recoveryTimeoutMs, () => this.state !== 'connected');
      if (!answered) debugNats('client %s: no host answered for "%s" within %d ms after the reconnect; sending the outbox anyway', this.clientId, this.id, this.bridge.recoveryTimeoutMs);
    }
    if (this.state !== 'connected' || !this.bridge.isConnected) return;
    for (const entry of this.outbox.takeAll()) this.flushEntry(entry);
    this.holding = false;
  }

  private flushEntry(entry: INatsOutboxEntry): void {
    if (entry.requestId !== undefined && !this.pending.has(entry.requestId)) return; // timed out or aborted meanwhile
    try {
      this.bridge.publish(entry.subject, entry.payload, entry.headers(), entry.reply);
      this.metrics.messagesSent++;
      this.metrics.bytesSent += entry.bytes;
      entry.resolve?.();
    } catch (err) {
      const error = err as smartipc.IpcError;
      if (entry.requestId !== undefined) this.pending.take(entry.requestId)?.reject(error);
      else entry.reject?.(error);
    }
  }

  /** Fails what waits in the outbox (and, when given, the requests in flight). */
  private release(outboxError: smartipc.IpcError, inFlightError?: smartipc.IpcError): void {
    for (const entry of this.outbox.takeAll()) {
      if (entry.requestId !== undefined) this.pending.take(entry.requestId)?.reject(outboxError);
      else entry.reject?.(outboxError);
    }
    if (inFlightError) {
      this.pending.rejectAll(() => inFlightError);
      this.streams.failAll(inFlightError);
    }
    this.pending.disarmIfIdle();
  }

  private onInbox(msg: Msg): void {
    const subject = msg.subject;
    const token = subject.slice(subject.lastIndexOf('.') + 1);
    if (token.charCodeAt(0) > 0x39) {
      this.streams.onInbox(token, msg);
      return;
    }
    const entry = this.pending.take(Number(token));
    if (entry === undefined) return; // late: timed out or aborted
    this.metrics.messagesReceived++;
    this.metrics.bytesReceived += msg.data.length;
    const headers = msg.headers;
    if (headers !== undefined) {
      if (headers.code === 503) {
        entry.reject(new smartipc.IpcError('NO_HANDLER', `no host on NATS handles "${entry.type}" for server "${this.id}" (no responders on ${this.requestPrefix}…)`));
        return;
      }
      const code = headers.get(NATS_HEADER.error);
      if (code) {
        entry.reject(errorFromReply(code, msg.data));
        return;
      }
    }
    this.hostSeen = true;
    let value: unknown;
    try {
      value = decodeData(msg.data);
    } catch (err) {
      entry.reject(err as smartipc.IpcError);
      return;
    }
    entry.resolve(value);
  }

  private onPublish(entry: ISubscriptionEntry, msg: Msg): void {
    if (headerOf(msg, NATS_HEADER.src) === this.src) return; // our own publish: never echoed
    if (this.state !== 'connected' && this.state !== 'reconnecting') return;
    this.pubsubStats.received++;
    this.metrics.messagesReceived++;
    this.metrics.bytesReceived += msg.data.length;
    let data: unknown;
    try {
      data = decodeData(msg.data);
    } catch (err) {
      this.emitError(err as smartipc.IpcError);
      return;
    }
    const info: smartipc.IPublishInfo = { topic: decodeTopic(msg.subject.slice(this.topicPrefixLength)), from: headerOf(msg, NATS_HEADER.from) ?? '' };
    for (const handler of entry.handlers) {
      try {
        const result = handler(data, info);
        if (result && typeof (result as Promise<void>).then === 'function') {
          (result as Promise<void>).then(undefined, (err: unknown) => this.handlerFailed(info.topic, err));
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

  /** A message or request from the server (`sendToClient`, `requestClient`, `broadcast`). */
  private onServerMessage(msg: Msg, prefixLength: number): void {
    const type = decodeType(msg.subject.slice(prefixLength));
    const reply = msg.reply || undefined;
    this.metrics.messagesReceived++;
    this.metrics.bytesReceived += msg.data.length;
    const handler = this.handlers.get(type);
    const fail = (error: smartipc.IpcError) => {
      if (reply) this.bridge.publish(reply, errorBody(error), this.bridge.headers({ [NATS_HEADER.error]: error.code }));
      else this.emitError(error);
    };
    if (!handler) {
      if (reply) fail(new smartipc.IpcError('NO_HANDLER', `client "${this.clientId}" has no handler for "${type}"`));
      else debugNats('client %s: no handler for message "%s"; dropped', this.clientId, type);
      return;
    }
    let data: unknown;
    try {
      data = decodeData(msg.data);
    } catch (err) {
      fail(err as smartipc.IpcError);
      return;
    }
    const context = new smartipc.HandlerContext(type, reply !== undefined, this.id);
    const headers = userHeaders(msg.headers);
    if (headers) context.headers = headers;
    Promise.resolve()
      .then(() => handler(data, this.id, context))
      .then(
        (value) => {
          if (!reply) return;
          try {
            const payload = encodeData(value, this.json, `response to "${type}"`);
            this.bridge.checkSize(payloadBytes(payload), `response to "${type}"`);
            this.bridge.publish(reply, payload);
          } catch (err) {
            fail(err as smartipc.IpcError);
          }
        },
        (thrown: unknown) => {
          const remote = smartipc.toRemoteError(thrown);
          fail(new smartipc.IpcError('HANDLER_ERROR', reply ? remote.message : `handler for message "${type}" threw: ${remote.message}`, { cause: thrown, remote }));
        },
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


function positive(name: string, value: number | undefined, fallback: number, allowZero = false): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || Number.isNaN(v) || v < 0 || (!allowZero && v === 0)) {
    throw smartipc.invalidArgument(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${String(value)}`);
  }
  return v;
}
