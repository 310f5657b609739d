import * as plugins from './nats.plugins.js';
import { smartipc, type Msg, type MsgHdrs, type Subscription } from './nats.plugins.js';
import { DEFAULT_NATS_MAX_CONCURRENT_STREAMS, NATS_HEADER } from './nats.constants.js';
import { decodeTopic, decodeType, encodeType } from './nats.subjects.js';
import { decodeData, encodeData, errorBody, errorFromReply, headerBytes, headerOf, payloadBytes, userHeaders, type TNatsPayload } from './nats.codec.js';
import { NatsOutbox } from './classes.natsoutbox.js';
import { NatsStreamEndpoint } from './classes.natsstreams.js';
import type { INatsParticipant, NatsBridge } from './classes.natsbridge.js';
import { debugNats } from './nats.log.js';
import type { INatsExposableServer } from './interfaces.js';

/**
 * One local server made reachable over NATS (`bridge.expose(server)`). It subscribes, in the
 * queue group `<ns>.<id>` so that hosts exposing the same id share the load:
 * - requests and messages: per handler type when the server can list its types, else all types;
 * - `<ns>.str.<id>` (stream opens) and `<ns>.hello.<id>` (presence probes);
 * and, without a queue group (every host needs every publish):
 * - `<ns>.pub.<id>.>`: remote publishes, handed to the local broker with their `from`.
 * Local publishes are forwarded to `<ns>.pub.<id>.<topic>`; what came from NATS is never sent back.
 */
export class NatsExposure implements INatsParticipant {
  public readonly id: string;
  /** This exposure, for echo suppression on pub/sub. */
  private readonly src = plugins.crypto.randomBytes(8).toString('hex');
  private readonly json: boolean;
  private readonly queue: string;
  private readonly inbox: string;
  private readonly typeSubscriptions = new Map<string, Subscription[]>();
  private readonly subscriptions: Subscription[] = [];
  private stopTap?: () => void;
  private stopHandlerWatch?: () => void;
  private readonly streams: NatsStreamEndpoint;
  private readonly pending = new smartipc.PendingRequests();
  private readonly outbox = new NatsOutbox(smartipc.defaults.DEFAULT_OUTBOX_MAX_MESSAGES, smartipc.defaults.DEFAULT_OUTBOX_MAX_BYTES);
  private activeHandlers = 0;
  private closing = false;
  private readonly abort = new AbortController();
  private readonly requestPrefix: string;
  private readonly messagePrefix: string;
  private readonly topicPrefixLength: number;
  /** Handled requests and messages, forwarded publishes. */
  public readonly stats = { requests: 0, messages: 0, publishesIn: 0, publishesOut: 0, errors: 0 };

  /** @internal Use `bridge.expose(server)`. */
  constructor(private readonly bridge: NatsBridge, private readonly server: INatsExposableServer) {
    this.id = server.id;
    this.json = server.serialization === 'json';
    this.queue = bridge.subjects.queue(this.id);
    this.inbox = bridge.newInbox();
    this.requestPrefix = bridge.subjects.requestPrefix(this.id);
    this.messagePrefix = bridge.subjects.messagePrefix(this.id);
    this.topicPrefixLength = bridge.subjects.topicPrefix(this.id).length;
    this.streams = new NatsStreamEndpoint(bridge, {
      inbox: this.inbox,
      json: this.json,
      maxConcurrentStreams: DEFAULT_NATS_MAX_CONCURRENT_STREAMS,
      requestTimeoutMs: smartipc.defaults.DEFAULT_REQUEST_TIMEOUT_MS,
      from: this.id,
      src: this.src,
      emitError: (error) => this.emitError(error),
    });
  }

  /** @internal */
  public async open(): Promise<void> {
    await this.server.open?.();
    const connection = this.bridge.connection;
    const sub = (subject: string, queue: string | undefined, onMsg: (msg: Msg) => void): Subscription =>
      connection.subscribe(subject, { ...(queue ? { queue } : {}), callback: (err, msg) => {
        if (!err) onMsg(msg);
      } });
    this.subscriptions.push(sub(`${this.inbox}.*`, undefined, (msg) => this.onInbox(msg)));
    this.subscriptions.push(sub(this.bridge.subjects.hello(this.id), this.queue, (msg) => this.onHello(msg)));
    this.subscriptions.push(sub(this.bridge.subjects.stream(this.id), this.queue, (msg) => this.onStreamOpen(msg)));
    this.subscriptions.push(sub(`${this.bridge.subjects.topicPrefix(this.id)}>`, undefined, (msg) => this.onRemotePublish(msg)));
    const types = this.server.getHandlerTypes?.();
    if (types === undefined) {
      // The server cannot list its handlers: take every type, answer NO_HANDLER for unknown ones.
      this.subscriptions.push(sub(`${this.requestPrefix}>`, this.queue, (msg) => this.onRequest(msg, undefined)));
      this.subscriptions.push(sub(`${this.messagePrefix}>`, this.queue, (msg) => this.onMessage(msg, undefined)));
    } else {
      this.syncHandlerTypes(types);
      this.stopHandlerWatch = this.server.onHandlersChanged?.(() => this.syncHandlerTypes(this.server.getHandlerTypes?.() ?? []));
    }
    this.stopTap = await this.server.tapPublishes((topic, data, from) => this.forwardPublish(topic, data, from));
    this.bridge.register(this);
    await connection.flush();
  }

  // ---- server to NATS clients --------------------------------------------------------------------

  /** A message to one NATS client of this server (its `onMessage` handler). Resolves once handed to NATS. */
  public sendToClient(clientId: string, type: string, data?: unknown): Promise<void> {
    try {
      this.checkOpen();
      const payload = encodeData(data, this.json, `message "${type}"`);
      this.bridge.checkSize(payloadBytes(payload), `message "${type}"`);
      this.bridge.publish(this.bridge.subjects.toClientPrefix(this.id, clientId) + encodeType(type), payload);
    } catch (err) {
      return Promise.reject(err);
    }
    return Promise.resolve();
  }

  /** A request to one NATS client of this server: CLIENT_NOT_FOUND at once when it is not subscribed. */
  public requestClient<TReq = unknown, TRes = unknown>(clientId: string, type: string, data?: TReq, options: smartipc.IRequestOptions = {}): Promise<TRes> {
    let payload: TNatsPayload;
    try {
      this.checkOpen();
      payload = encodeData(data, this.json, `request "${type}"`);
      this.bridge.checkSize(payloadBytes(payload), `request "${type}"`);
    } catch (err) {
      return Promise.reject(err);
    }
    const requestId = this.pending.allocateId();
    const promise = this.pending.add<TRes>(requestId, `${clientId}/${type}`, options.timeout ?? smartipc.defaults.DEFAULT_REQUEST_TIMEOUT_MS, options.signal);
    try {
      const headers = options.headers === undefined ? undefined : this.bridge.headers({ [NATS_HEADER.headers]: JSON.stringify(options.headers) });
      this.bridge.publish(this.bridge.subjects.toClientPrefix(this.id, clientId) + encodeType(type), payload, headers, `${this.inbox}.${requestId}`);
    } catch (err) {
      this.pending.take(requestId);
      return Promise.reject(err);
    }
    return promise;
  }

  /** A message to every NATS client of this server. */
  public broadcast(type: string, data?: unknown): Promise<void> {
    try {
      this.checkOpen();
      const payload = encodeData(data, this.json, `broadcast "${type}"`);
      this.bridge.checkSize(payloadBytes(payload), `broadcast "${type}"`);
      this.bridge.publish(this.bridge.subjects.broadcastPrefix(this.id) + encodeType(type), payload);
    } catch (err) {
      return Promise.reject(err);
    }
    return Promise.resolve();
  }

  // ---- participant -----------------------------------------------------------------------------

  /** @internal */
  public onBridgeDisconnect(reason: smartipc.IpcError): void {
    this.pending.rejectAll((entry) => new smartipc.IpcError('CONNECTION_LOST', `request "${entry.type}" lost: ${reason.message}`, { cause: reason }));
    this.streams.failAll(reason);
  }

  /** @internal */
  public onBridgeReconnecting(): void {
    // nothing: the NATS client restores the subscriptions
  }

  /** @internal Publishes forwarded while NATS was down go out now, in order. */
  public onBridgeReconnect(): void {
    for (const entry of this.outbox.takeAll()) {
      try {
        this.bridge.publish(entry.subject, entry.payload, entry.headers(), entry.reply);
        this.stats.publishesOut++;
      } catch (err) {
        this.emitError(err as smartipc.IpcError);
      }
    }
  }

  /** @internal */
  public tick(now: number): void {
    this.streams.tick(now);
  }

  /** @internal */
  public async whenIdle(): Promise<void> {
    while (this.activeHandlers > 0 || this.pending.size > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  /** @internal No new work: drain the subscriptions (what arrived is still handled), stop forwarding publishes. */
  public async beginClose(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.stopTap?.();
    this.stopTap = undefined;
    this.stopHandlerWatch?.();
    const inbox = this.subscriptions.shift(); // replies to requestClient still arrive until the end
    const all = [...this.subscriptions, ...[...this.typeSubscriptions.values()].flat()];
    this.subscriptions.length = 0;
    if (inbox) this.subscriptions.push(inbox);
    this.typeSubscriptions.clear();
    if (this.bridge.isConnected) await Promise.all(all.map((s) => s.drain().catch(() => s.unsubscribe())));
    else for (const s of all) s.unsubscribe();
  }

  /** @internal */
  public finishClose(reason: smartipc.IpcError): void {
    this.closing = true;
    this.abort.abort(reason);
    for (const s of this.subscriptions.splice(0)) s.unsubscribe();
    this.pending.rejectAll(() => new smartipc.IpcError('CONNECTION_LOST', reason.message, { cause: reason }));
    this.streams.failAll(reason);
    this.outbox.takeAll();
    this.bridge.unregister(this);
    this.server.close?.().catch((err: unknown) => debugNats('closing exposed server adapter: %s', (err as Error).message));
  }

  // ---- inbound -----------------------------------------------------------------------------------

  private syncHandlerTypes(types: string[]): void {
    if (this.closing) return;
    const wanted = new Set(types);
    for (const [type, subs] of this.typeSubscriptions) {
      if (wanted.has(type)) continue;
      for (const s of subs) s.unsubscribe();
      this.typeSubscriptions.delete(type);
    }
    const connection = this.bridge.connection;
    for (const type of wanted) {
      if (this.typeSubscriptions.has(type)) continue;
      const tail = encodeType(type);
      this.typeSubscriptions.set(type, [
        connection.subscribe(this.requestPrefix + tail, { queue: this.queue, callback: (err, msg) => {
      if (!err) this.onRequest(msg, type);
    } }),
        connection.subscribe(this.messagePrefix + tail, { queue: this.queue, callback: (err, msg) => {
      if (!err) this.onMessage(msg, type);
    } }),
      ]);
    }
  }

  private onRequest(msg: Msg, knownType: string | undefined): void {
    const reply = msg.reply;
    if (!reply) return;
    const type = knownType ?? decodeTypeTail(msg.subject, this.requestPrefix.length);
    const headers = msg.headers;
    let data: unknown;
    try {
      data = decodeData(msg.data);
    } catch (err) {
      this.replyError(reply, err as smartipc.IpcError);
      return;
    }
    const budget = Number(headers?.get(NATS_HEADER.timeoutMs));
    const invocationHeaders = userHeaders(headers);
    this.stats.requests++;
    this.activeHandlers++;
    let result: unknown;
    try {
      result = this.server.invoke(data, {
        type,
        peerId: headers?.get(NATS_HEADER.from) ?? '',
        isRequest: true,
        ...(invocationHeaders ? { headers: invocationHeaders } : {}),
        ...(Number.isFinite(budget) ? { deadline: Date.now() + budget } : {}),
        signal: this.abort.signal,
      });
    } catch (err) {
      this.activeHandlers--;
      this.replyError(reply, toIpcError(err));
      return;
    }
    if (!isThenable(result)) {
      this.activeHandlers--;
      this.reply(reply, type, result);
      return;
    }
    result.then(
      (value) => {
        this.activeHandlers--;
        this.reply(reply, type, value);
      },
      (err: unknown) => {
        this.activeHandlers--;
        this.replyError(reply, toIpcError(err));
      },
    );
  }

  private onMessage(msg: Msg, knownType: string | undefined): void {
    const type = knownType ?? decodeTypeTail(msg.subject, this.messagePrefix.length);
    let data: unknown;
    try {
      data = decodeData(msg.data);
    } catch (err) {
      this.emitError(err as smartipc.IpcError);
      return;
    }
    this.stats.messages++;
    this.activeHandlers++;
    const failed = (err: unknown) => {
      this.activeHandlers--;
      const error = toIpcError(err);
      if (error.code === 'NO_HANDLER') debugNats('exposure %s: no handler for message "%s"; dropped', this.id, type);
      else this.emitError(error);
    };
    let result: unknown;
    try {
      result = this.server.invoke(data, { type, peerId: headerOf(msg, NATS_HEADER.from) ?? '', isRequest: false, signal: this.abort.signal });
    } catch (err) {
      failed(err);
      return;
    }
    if (!isThenable(result)) {
      this.activeHandlers--;
      return;
    }
    result.then(() => {
      this.activeHandlers--;
    }, failed);
  }

  private reply(reply: string, type: string, value: unknown): void {
    let payload: TNatsPayload;
    try {
      payload = encodeData(value, this.json, `response to "${type}"`);
      this.bridge.checkSize(payloadBytes(payload), `response to "${type}"`);
    } catch (err) {
      this.replyError(reply, err as smartipc.IpcError);
      return;
    }
    try {
      this.bridge.publish(reply, payload);
    } catch (err) {
      debugNats('exposure %s: response to "%s" dropped: %s', this.id, type, (err as Error).message);
    }
  }

  private replyError(reply: string, error: smartipc.IpcError): void {
    try {
      this.bridge.publish(reply, errorBody(error), this.bridge.headers({ [NATS_HEADER.error]: error.code }));
    } catch (err) {
      debugNats('exposure %s: error response dropped: %s', this.id, (err as Error).message);
    }
  }

  private onHello(msg: Msg): void {
    if (!msg.reply || this.closing) return;
    try {
      this.bridge.publish(msg.reply, JSON.stringify({ id: this.id }));
    } catch {
      // the prober retries
    }
  }

  private onStreamOpen(msg: Msg): void {
    if (this.closing) return;
    this.streams.acceptOpen(msg, (info, readable) => this.server.deliverStream(info, readable));
  }

  /** A publish from NATS (a NATS client, or another host's local broker): into the local broker, unless it is our own. */
  private onRemotePublish(msg: Msg): void {
    if (headerOf(msg, NATS_HEADER.src) === this.src) return;
    let data: unknown;
    try {
      data = decodeData(msg.data);
    } catch (err) {
      this.emitError(err as smartipc.IpcError);
      return;
    }
    this.stats.publishesIn++;
    const topic = decodeTopic(msg.subject.slice(this.topicPrefixLength));
    this.server.publishLocal(topic, data, headerOf(msg, NATS_HEADER.from) ?? '').catch((err: unknown) => this.emitError(toIpcError(err)));
  }

  /** A local publish: to NATS (once), held in the outbox while NATS is down. */
  private forwardPublish(topic: string, data: unknown, from: string): void {
    if (this.closing) return;
    let payload: TNatsPayload;
    const fields = { [NATS_HEADER.from]: from, [NATS_HEADER.src]: this.src };
    try {
      payload = encodeData(data, this.json, `publish to "${topic}"`);
    } catch (err) {
      this.emitError(err as smartipc.IpcError);
      return;
    }
    const subject = this.bridge.subjects.topic(this.id, topic);
    const bytes = payloadBytes(payload) + headerBytes(fields);
    let headers: MsgHdrs | undefined;
    const makeHeaders = () => (headers ??= this.bridge.headers(fields));
    try {
      this.bridge.checkSize(bytes, `publish to "${topic}"`);
      if (this.bridge.isConnected) {
        this.bridge.publish(subject, payload, makeHeaders());
        this.stats.publishesOut++;
      } else {
        this.outbox.push({ subject, payload, bytes, headers: makeHeaders });
      }
    } catch (err) {
      this.emitError(err as smartipc.IpcError);
    }
  }

  private onInbox(msg: Msg): void {
    const subject = msg.subject;
    const token = subject.slice(subject.lastIndexOf('.') + 1);
    if (token.charCodeAt(0) > 0x39) {
      this.streams.onInbox(token, msg);
      return;
    }
    const entry = this.pending.take(Number(token));
    if (!entry) return;
    const headers = msg.headers;
    if (headers?.code === 503) {
      entry.reject(new smartipc.IpcError('CLIENT_NOT_FOUND', `no NATS client "${entry.type.split('/')[0]}" of server "${this.id}" is subscribed (no responders)`));
      return;
    }
    const code = headers?.get(NATS_HEADER.error);
    if (code) {
      entry.reject(errorFromReply(code, msg.data));
      return;
    }
    try {
      entry.resolve(decodeData(msg.data));
    } catch (err) {
      entry.reject(err as smartipc.IpcError);
    }
  }

  private checkOpen(): void {
    if (this.closing || this.bridge.isClosing) throw new smartipc.IpcError('NOT_CONNECTED', `exposure of "${this.id}" is closed`);
    if (!this.bridge.isConnected) throw new smartipc.IpcError('NOT_CONNECTED', 'NATS is not reachable right now');
  }

  private emitError(error: smartipc.IpcError): void {
    this.stats.errors++;
    this.bridge.emitError(error);
  }
}

function decodeTypeTail(subject: string, prefixLength: number): string {
  return decodeType(subject.slice(prefixLength));
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as PromiseLike<unknown>).then === 'function';
}

function toIpcError(err: unknown): smartipc.IpcError {
  if (err instanceof smartipc.IpcError) return err;
  const remote = smartipc.toRemoteError(err);
  return new smartipc.IpcError('HANDLER_ERROR', remote.message, { cause: err, remote });
}
