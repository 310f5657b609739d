import * as plugins from './nats.plugins.js';
import { smartipc, handlerContextStorage, type Msg, type Subscription } from './nats.plugins.js';
import { DEFAULT_NATS_MAX_CONCURRENT_STREAMS, NATS_HEADER } from './nats.constants.js';
import { decodeTopic, encodeType } from './nats.subjects.js';
import { InboundHeaders, budgetOf, decodeMsg, encodeChain, encodeData, encodeRoot, fromEncoded, headerBytes, toReplyError, userHeaders, type INatsEncoded } from './nats.codec.js';
import { NatsOutbox } from './classes.natsoutbox.js';
import { NatsStreamEndpoint } from './classes.natsstreams.js';
import { LiteSignal } from './nats.serving.js';
import { NOT_ABORTABLE, NatsRequester, NatsServiceAnnouncer, NatsServiceDirectory, readCall, replyError, requestFields, retireSubscriptions, serveReply } from './nats.calls.js';
import type { NatsBridge } from './classes.natsbridge.js';
import { debugNats } from './nats.log.js';
import type { INatsExposeOptions } from './interfaces.js';

/** A server's bridge hooks allow one publish tap: one exposure per server. */
const exposed = new WeakSet<smartipc.IpcServer>();

interface IExportedService {
  methods: Map<string, Subscription>;
  probe: Subscription;
}

/**
 * One local IpcServer made reachable over NATS (`bridge.expose(server)`), through the server's
 * bridge hooks (no local connection in between). It subscribes, in the queue group `<ns>.<id>` so
 * that hosts exposing the same id share the load:
 * - `<ns>.req.<id>.<type>` / `<ns>.msg.<id>.<type>` for each handler type the server has (kept in
 *   step as handlers come and go), run with a real handler context: the caller's clientId as
 *   `peerId`, its headers, its deadline (nested requests inherit it), a signal that aborts when the
 *   caller's budget runs out, the caller cancels or NATS drops;
 * - `<ns>.str.<id>` (stream opens, to the server's `stream` listeners) and `<ns>.hello.<id>` (presence);
 * and, without a queue group (every host needs every publish), `<ns>.pub.<id>.>`: remote
 * publishes, into the local broker with the remote publisher's id as `from`. Local publishes go out
 * on `<ns>.pub.<id>.<topic>` as the broker encoded them; what came from NATS is never sent back.
 *
 * Services: the hub's services (its own and its clients') are exported as `<ns>.svc.<service>.<method>`
 * in the queue group `<ns>.svc.<service>` and listed on the registry; services other providers list
 * on NATS that the hub has no instance of are imported (the hub provides a relay itself), so the
 * hub's clients call them like local ones.
 */
export class NatsExposure {
  public readonly id: string;
  /** This exposure, for echo suppression on pub/sub and as its provider id in the service registry. */
  private readonly src = plugins.crypto.randomBytes(8).toString('hex');
  private readonly hooks: smartipc.IBridgeHooks;
  private readonly json: boolean;
  private readonly queue: string;
  private readonly inbox: string;
  private readonly typeSubscriptions = new Map<string, Subscription[]>();
  private readonly subscriptions: Subscription[] = [];
  private stopTap?: () => void;
  private stopHandlerWatch?: () => void;
  private stopServiceWatch?: () => void;
  private readonly streams: NatsStreamEndpoint;
  private readonly requester: NatsRequester;
  private readonly outbox = new NatsOutbox(smartipc.defaults.DEFAULT_OUTBOX_MAX_MESSAGES, smartipc.defaults.DEFAULT_OUTBOX_MAX_BYTES);
  private activeHandlers = 0;
  private closing = false;
  private readonly requestPrefix: string;
  private readonly messagePrefix: string;
  private readonly topicPrefixLength: number;
  private readonly exportServices: boolean;
  private readonly importServices: boolean;
  private readonly exported = new Map<string, IExportedService>();
  /** Services the hub provides as relays to NATS: name -> their methods. */
  private readonly imported = new Map<string, string[]>();
  private readonly announcer: NatsServiceAnnouncer;
  private readonly directory?: NatsServiceDirectory;
  private servicesSyncQueued = false;
  private syncingServices = false;
  /** Handled requests and messages, forwarded publishes, service calls served and relayed. */
  public readonly stats = { requests: 0, messages: 0, publishesIn: 0, publishesOut: 0, callsIn: 0, callsOut: 0, errors: 0 };

  /** @internal Use `bridge.expose(server)`. */
  constructor(private readonly bridge: NatsBridge, private readonly server: smartipc.IpcServer, options: INatsExposeOptions = {}) {
    if (exposed.has(server)) throw smartipc.invalidArgument(`server "${server.options.id}" is already exposed on a NATS bridge; unexpose it first`);
    this.hooks = server.bridgeHooks();
    this.id = this.hooks.id;
    this.json = this.hooks.serialization === 'json';
    this.queue = bridge.subjects.queue(this.id);
    this.inbox = bridge.newInbox();
    this.requestPrefix = bridge.subjects.requestPrefix(this.id);
    this.messagePrefix = bridge.subjects.messagePrefix(this.id);
    this.topicPrefixLength = bridge.subjects.topicPrefix(this.id).length;
    this.exportServices = options.exportServices ?? true;
    this.importServices = options.importServices ?? true;
    this.requester = new NatsRequester(bridge, this.inbox, (type) => new smartipc.IpcError('CLIENT_NOT_FOUND', `no NATS client "${type.split('/')[0]}" of server "${this.id}" is subscribed (no responders)`));
    this.streams = new NatsStreamEndpoint(bridge, {
      inbox: this.inbox,
      json: this.json,
      maxConcurrentStreams: DEFAULT_NATS_MAX_CONCURRENT_STREAMS,
      requestTimeoutMs: smartipc.defaults.DEFAULT_REQUEST_TIMEOUT_MS,
      from: this.id,
      src: this.src,
      emitError: (error) => this.emitError(error),
    });
    this.announcer = new NatsServiceAnnouncer(bridge, this.src, 'hub', this.id, () => this.exportList());
    if (this.importServices) this.directory = new NatsServiceDirectory(bridge, this.src, () => this.queueServicesSync());
    exposed.add(server);
  }

  /** @internal */
  public async open(): Promise<void> {
    const connection = this.bridge.connection;
    const sub = (subject: string, queue: string | undefined, onMsg: (msg: Msg) => void): Subscription =>
      connection.subscribe(subject, { ...(queue ? { queue } : {}), callback: (err, msg) => {
        if (!err) onMsg(msg);
      } });
    this.subscriptions.push(sub(`${this.inbox}.*`, undefined, (msg) => this.onInbox(msg)));
    this.subscriptions.push(sub(this.bridge.subjects.hello(this.id), this.queue, (msg) => this.onHello(msg)));
    this.subscriptions.push(sub(this.bridge.subjects.stream(this.id), this.queue, (msg) => this.onStreamOpen(msg)));
    this.subscriptions.push(sub(`${this.bridge.subjects.topicPrefix(this.id)}>`, undefined, (msg) => this.onRemotePublish(msg)));
    this.syncHandlerTypes();
    this.stopHandlerWatch = this.hooks.onHandlersChanged(() => this.syncHandlerTypes());
    this.stopTap = this.hooks.tapPublishes((topic, encoded, from) => this.forwardPublish(topic, encoded, from));
    this.stopServiceWatch = this.hooks.onServicesChanged(() => this.queueServicesSync());
    this.bridge.register(this);
    this.syncServices();
    await connection.flush();
    await this.directory?.open();
  }

  // ---- server to NATS clients --------------------------------------------------------------------

  /** A message to one NATS client of this server (its `onMessage` handler). Resolves once handed to NATS. */
  public sendToClient(clientId: string, type: string, data?: unknown): Promise<void> {
    return this.sendOut(this.bridge.subjects.toClientPrefix(this.id, clientId) + encodeType(type), data, `message "${type}"`);
  }

  /** A message to every NATS client of this server. */
  public broadcast(type: string, data?: unknown): Promise<void> {
    return this.sendOut(this.bridge.subjects.broadcastPrefix(this.id) + encodeType(type), data, `broadcast "${type}"`);
  }

  private sendOut(subject: string, data: unknown, what: string): Promise<void> {
    try {
      this.checkOpen();
      const encoded = encodeData(data, this.json, what);
      this.bridge.checkSize(encoded.bytes + (encoded.encoding === undefined ? 0 : 32), what);
      this.bridge.publish(subject, encoded.payload, encoded.encoding === undefined ? undefined : this.bridge.encodingHeaders(encoded.encoding));
    } catch (err) {
      return Promise.reject(err);
    }
    return Promise.resolve();
  }

  /** A request to one NATS client of this server: CLIENT_NOT_FOUND at once when it is not subscribed. Inside a handler it inherits its deadline and cancellation. */
  public requestClient<TReq = unknown, TRes = unknown>(clientId: string, type: string, data?: TReq, options: smartipc.IRequestOptions = {}): Promise<TRes> {
    let encoded: INatsEncoded;
    let call: ReturnType<NatsRequester['open']>;
    try {
      this.checkOpen();
      encoded = encodeData(data, this.json, `request "${type}"`);
      call = this.requester.open<TRes>(`${clientId}/${type}`, options, this.server.options.requestTimeoutMs, undefined);
    } catch (err) {
      return Promise.reject(err);
    }
    try {
      const fields = requestFields(this.id, encoded, call.headers, call.deadline);
      this.bridge.checkSize(encoded.bytes + headerBytes(fields), `request "${type}"`);
      this.bridge.publish(this.bridge.subjects.toClientPrefix(this.id, clientId) + encodeType(type), encoded.payload, this.bridge.headers(fields), call.reply);
    } catch (err) {
      this.requester.fail(call.id, err as smartipc.IpcError);
    }
    return call.promise as Promise<TRes>;
  }

  // ---- participant -----------------------------------------------------------------------------

  /** @internal */
  public onBridgeDisconnect(reason: smartipc.IpcError): void {
    this.requester.rejectAll((entry) => new smartipc.IpcError('CONNECTION_LOST', `request "${entry.type}" lost: ${reason.message}`, { cause: reason }));
    this.streams.failAll(reason);
  }

  /** @internal */
  public onBridgeReconnecting(): void {
    // nothing: the NATS client restores the subscriptions
  }

  /** @internal Publishes forwarded while NATS was down go out now, in order; the registry catches up. */
  public onBridgeReconnect(): void {
    for (const entry of this.outbox.takeAll()) {
      try {
        this.bridge.publish(entry.subject, entry.payload, entry.headers(), entry.reply);
        this.stats.publishesOut++;
      } catch (err) {
        this.emitError(err as smartipc.IpcError);
      }
    }
    this.announcer.reannounce();
    void this.directory?.refresh();
  }

  /** @internal */
  public tick(now: number): void {
    this.streams.tick(now);
  }

  /** @internal */
  public async whenIdle(deadline: number): Promise<void> {
    while ((this.activeHandlers > 0 || this.requester.size > 0) && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  /** @internal No new work: drain the subscriptions (what arrived is still handled), stop forwarding publishes, withdraw services. */
  public async beginClose(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.stopTap?.();
    this.stopTap = undefined;
    this.stopHandlerWatch?.();
    this.stopServiceWatch?.();
    this.directory?.close();
    this.dropImports();
    this.announcer.close();
    const inbox = this.subscriptions.shift(); // replies to requestClient and relayed calls still arrive until the end
    const all = [...this.subscriptions, ...[...this.typeSubscriptions.values()].flat()];
    for (const service of this.exported.values()) all.push(service.probe, ...service.methods.values());
    this.exported.clear();
    this.subscriptions.length = 0;
    if (inbox) this.subscriptions.push(inbox);
    this.typeSubscriptions.clear();
    await retireSubscriptions(this.bridge, all);
  }

  /** @internal */
  public finishClose(reason: smartipc.IpcError): void {
    if (!this.closing) {
      this.closing = true;
      this.stopTap?.();
      this.stopHandlerWatch?.();
      this.stopServiceWatch?.();
      this.directory?.close();
      this.dropImports();
      this.announcer.close();
    }
    this.bridge.serving.abortAll(reason, this);
    for (const s of this.subscriptions.splice(0)) s.unsubscribe();
    for (const subs of this.typeSubscriptions.values()) for (const s of subs) s.unsubscribe();
    this.typeSubscriptions.clear();
    for (const service of this.exported.values()) for (const s of [service.probe, ...service.methods.values()]) s.unsubscribe();
    this.exported.clear();
    this.requester.rejectAll(() => new smartipc.IpcError('CONNECTION_LOST', reason.message, { cause: reason }));
    this.streams.failAll(reason);
    this.outbox.takeAll();
    this.bridge.unregister(this);
    exposed.delete(this.server);
  }

  // ---- requests and messages ---------------------------------------------------------------------

  private syncHandlerTypes(): void {
    if (this.closing) return;
    const wanted = new Set(this.hooks.getHandlerTypes());
    for (const [type, subs] of this.typeSubscriptions) {
      if (wanted.has(type)) continue;
      // What was already routed here is answered (NO_HANDLER), not left to time out.
      void retireSubscriptions(this.bridge, subs);
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

  private onRequest(msg: Msg, type: string): void {
    const reply = msg.reply;
    if (!reply) return;
    const headers = InboundHeaders.of(msg);
    let data: unknown;
    try {
      data = decodeMsg(msg, headers);
    } catch (err) {
      replyError(this.bridge, reply, err as smartipc.IpcError);
      return;
    }
    const budget = budgetOf(headers);
    if (budget === 0) {
      replyError(this.bridge, reply, new smartipc.IpcError('TIMEOUT', `request "${type}" arrived after its deadline; not dispatched`));
      return;
    }
    const invocationHeaders = userHeaders(headers);
    const signal = new LiteSignal();
    this.stats.requests++;
    this.activeHandlers++;
    serveReply(
      this.bridge,
      {
        reply,
        owner: this,
        budgetMs: budget,
        json: this.json,
        what: `response to "${type}"`,
        context: signal,
        onEnd: () => this.activeHandlers--,
        onLate: () => debugNats('exposure %s: late response to "%s" dropped', this.id, type),
      },
      () =>
        this.hooks.invoke(data, {
          type,
          peerId: headers.get(NATS_HEADER.from) ?? '',
          isRequest: true,
          ...(invocationHeaders ? { headers: invocationHeaders } : {}),
          ...(budget !== undefined ? { deadline: Date.now() + budget } : {}),
          signal: signal.asSignal(),
        }),
    );
  }

  private onMessage(msg: Msg, type: string): void {
    const headers = InboundHeaders.of(msg);
    let data: unknown;
    try {
      data = decodeMsg(msg, headers);
    } catch (err) {
      this.emitError(err as smartipc.IpcError);
      return;
    }
    this.stats.messages++;
    this.activeHandlers++;
    serveReply(
      this.bridge,
      {
        reply: undefined,
        owner: this,
        budgetMs: undefined,
        json: this.json,
        what: `message "${type}"`,
        context: NOT_ABORTABLE,
        onEnd: () => this.activeHandlers--,
        onError: (error, thrown) => {
          if (error.code === 'NO_HANDLER') debugNats('exposure %s: no handler for message "%s"; dropped', this.id, type);
          else this.emitError(new smartipc.IpcError(error.code, `handler for message "${type}" threw: ${error.message}`, { cause: thrown, ...(error.remote ? { remote: error.remote } : {}) }));
        },
      },
      () => this.hooks.invoke(data, { type, peerId: headers.get(NATS_HEADER.from) ?? '', isRequest: false }),
    );
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
    this.streams.acceptOpen(msg, (info, readable) => this.hooks.deliverStream(info, readable));
  }

  // ---- pub/sub -----------------------------------------------------------------------------------

  /** A publish from NATS (a NATS client, or another host's local broker): into the local broker as its publisher, unless it is our own. */
  private onRemotePublish(msg: Msg): void {
    const headers = InboundHeaders.of(msg);
    if (headers.get(NATS_HEADER.src) === this.src) return;
    let data: unknown;
    try {
      data = decodeMsg(msg, headers);
    } catch (err) {
      this.emitError(err as smartipc.IpcError);
      return;
    }
    this.stats.publishesIn++;
    const topic = decodeTopic(msg.subject.slice(this.topicPrefixLength));
    try {
      this.hooks.publishLocal(topic, data, headers.get(NATS_HEADER.from) ?? '');
    } catch (err) {
      this.emitError(err instanceof smartipc.IpcError ? err : toReplyError(err));
    }
  }

  /** A local publish, as the broker encoded it: to NATS (once), held in the outbox while NATS is down. */
  private forwardPublish(topic: string, local: smartipc.IEncodedPayload, from: string): void {
    if (this.closing) return;
    const encoded = fromEncoded(local);
    const headers = this.bridge.senderHeaders(from, this.src, encoded.encoding);
    const subject = this.bridge.subjects.topic(this.id, topic);
    const bytes = encoded.bytes + headers.bytes;
    try {
      this.bridge.checkSize(bytes, `publish to "${topic}"`);
      if (this.bridge.linkUp) {
        this.bridge.publish(subject, encoded.payload, headers.headers);
        this.stats.publishesOut++;
      } else {
        this.outbox.push({ subject, payload: encoded.payload, bytes, headers: () => headers.headers });
      }
    } catch (err) {
      this.emitError(err as smartipc.IpcError);
    }
  }

  // ---- services ----------------------------------------------------------------------------------

  /** The hub's services as the registry shows them, without the relays this exposure imported. */
  private exportList(): smartipc.IServiceInfo[] {
    if (!this.exportServices || this.closing) return [];
    const out: smartipc.IServiceInfo[] = [];
    for (const service of this.hooks.getServices()) {
      const instances = service.instances.filter((instance) => !(instance.clientId === 'server' && this.imported.has(service.name)));
      if (instances.length > 0) out.push({ name: service.name, instances });
    }
    return out;
  }

  /** Services changed (a local client provided or left, a remote provider announced): sync once, on the next microtask. */
  private queueServicesSync(): void {
    if (this.syncingServices || this.servicesSyncQueued || this.closing) return;
    this.servicesSyncQueued = true;
    queueMicrotask(() => {
      this.servicesSyncQueued = false;
      this.syncServices();
    });
  }

  private syncServices(): void {
    if (this.closing || this.syncingServices) return;
    this.syncingServices = true;
    try {
      this.syncImports();
      this.syncExports();
    } finally {
      this.syncingServices = false;
    }
  }

  /** Subscriptions for every method of every exported service; the registry hears of the change. */
  private syncExports(): void {
    const list = this.exportList();
    const wanted = new Map<string, Set<string>>();
    for (const service of list) {
      const methods = new Set<string>();
      for (const instance of service.instances) for (const method of instance.methods) methods.add(method);
      wanted.set(service.name, methods);
    }
    const connection = this.bridge.connection;
    let changed = false;
    for (const [name, entry] of this.exported) {
      const methods = wanted.get(name);
      if (methods === undefined) {
        void retireSubscriptions(this.bridge, [entry.probe, ...entry.methods.values()]);
        this.exported.delete(name);
        changed = true;
        continue;
      }
      for (const [method, s] of entry.methods) {
        if (methods.has(method)) continue;
        void retireSubscriptions(this.bridge, [s]);
        entry.methods.delete(method);
        changed = true;
      }
    }
    for (const [name, methods] of wanted) {
      let entry = this.exported.get(name);
      const queue = this.bridge.subjects.serviceQueue(name);
      if (entry === undefined) {
        entry = {
          methods: new Map(),
          probe: connection.subscribe(this.bridge.subjects.serviceProbe(name), { queue, callback: (err, msg) => {
            if (!err) this.onServiceProbe(msg, name);
          } }),
        };
        this.exported.set(name, entry);
        changed = true;
      }
      for (const method of methods) {
        if (entry.methods.has(method)) continue;
        entry.methods.set(method, connection.subscribe(this.bridge.subjects.serviceCall(name, method), { queue, callback: (err, msg) => {
          if (!err) this.onServiceCall(msg, name, method);
        } }));
        changed = true;
      }
    }
    // Instance counts and inFlight change too; the registry only needs to hear of methods coming and going.
    if (changed) this.announcer.changed();
  }

  private onServiceProbe(msg: Msg, service: string): void {
    if (!msg.reply) return;
    const methods = this.exported.get(service)?.methods;
    if (methods === undefined) return;
    try {
      this.bridge.publish(msg.reply, JSON.stringify({ service, methods: [...methods.keys()] }));
    } catch {
      // the caller reports SERVICE_NOT_FOUND
    }
  }

  /**
   * A NATS call of one of the hub's services: the hub routes it (fewest in flight among its
   * instances), in a context that carries the caller's chain, root and deadline, so the hub's depth
   * guard sees the whole chain and the instance inherits the deadline. Aborted like a request.
   */
  private onServiceCall(msg: Msg, service: string, method: string): void {
    const reply = msg.reply;
    if (!reply) return;
    let call: ReturnType<typeof readCall>;
    try {
      call = readCall(msg, service);
    } catch (err) {
      replyError(this.bridge, reply, err as smartipc.IpcError);
      return;
    }
    if (call.budgetMs === 0) {
      replyError(this.bridge, reply, new smartipc.IpcError('TIMEOUT', `call ${service}.${method} arrived after its deadline; not dispatched`));
      return;
    }
    this.stats.callsIn++;
    // The chain before this call: the hub appends the callee (and refuses it over its maxCallDepth).
    const before = call.chain.slice(0, -1);
    const outer = new smartipc.CallContext(before.at(-1) ?? service, method, call.callerId, call.root, before, true);
    if (call.budgetMs !== undefined) outer.deadline = Date.now() + call.budgetMs;
    this.activeHandlers++;
    serveReply(
      this.bridge,
      {
        reply,
        owner: this,
        budgetMs: call.budgetMs,
        json: this.json,
        what: `result of ${service}.${method}`,
        context: outer,
        onEnd: () => this.activeHandlers--,
        // The hub's own refusals and its instances' failures (already HANDLER_ERROR with remote) keep their code.
        toError: (err) => (err instanceof smartipc.IpcError ? err : toReplyError(err)),
      },
      () => handlerContextStorage.run(outer, () => this.hooks.callService(call.params, { service, method, peerId: call.callerId, ...(call.headers ? { headers: call.headers } : {}), chain: [] })),
    );
  }

  /**
   * Services other providers list on NATS that the hub has no instance of: the hub provides a
   * relay for each (its instance 'server'), so its clients' calls go over NATS. A service the hub
   * or one of its clients provides itself is not imported (and an import is dropped when one comes).
   */
  private syncImports(): void {
    if (this.directory === undefined) return;
    const remote = this.directory.remoteServices();
    const local = new Set<string>();
    for (const service of this.hooks.getServices()) {
      const own = service.instances.filter((instance) => !(instance.clientId === 'server' && this.imported.has(service.name)));
      if (own.length > 0) local.add(service.name);
    }
    for (const [name, methods] of [...this.imported]) {
      const now = remote.get(name);
      if (now !== undefined && !local.has(name) && sameMethods(methods, now)) continue;
      this.imported.delete(name);
      this.server.unprovide(name).catch(() => undefined);
    }
    for (const [name, methods] of remote) {
      if (local.has(name) || this.imported.has(name) || methods.size === 0) continue;
      const names = [...methods].sort();
      const relay: smartipc.TServiceMethods = {};
      for (const method of names) relay[method] = ((params: unknown, context: smartipc.ICallContext) => this.relayCall(name, method, params, context)) as smartipc.TServiceMethod;
      this.imported.set(name, names);
      this.server.provide(name, relay, { metadata: { nats: { imported: true, namespace: this.bridge.namespace } } }).catch((err: unknown) => {
        // The hub provides it itself after all (server.provide raced us): keep theirs.
        this.imported.delete(name);
        debugNats('exposure %s: service "%s" not imported: %s', this.id, name, (err as Error).message);
      });
    }
  }

  private dropImports(): void {
    for (const name of this.imported.keys()) this.server.unprovide(name).catch(() => undefined);
    this.imported.clear();
  }

  /** A local caller called an imported service: the call goes on over NATS with its chain, deadline, headers and caller. */
  private relayCall(service: string, method: string, params: unknown, context: smartipc.ICallContext): Promise<unknown> {
    let encoded: INatsEncoded;
    let call: ReturnType<NatsRequester['open']>;
    try {
      this.checkOpen();
      encoded = encodeData(params, this.json, `call ${service}.${method}`);
      // The hub runs this in the call's context: the requester inherits its deadline and cancellation.
      call = this.requester.open(`${service}.${method}`, {}, this.server.options.requestTimeoutMs, { service, method });
    } catch (err) {
      return Promise.reject(smartipc.passThrough(err as smartipc.IpcError));
    }
    this.stats.callsOut++;
    try {
      const fields = requestFields(context.callerId, encoded, context.headers, call.deadline);
      fields[NATS_HEADER.root] = encodeRoot(context.root);
      fields[NATS_HEADER.chain] = encodeChain(context.chain);
      this.bridge.checkSize(encoded.bytes + headerBytes(fields), `call ${service}.${method}`);
      this.bridge.publish(this.bridge.subjects.serviceCall(service, method), encoded.payload, this.bridge.headers(fields), call.reply);
    } catch (err) {
      this.requester.fail(call.id, err as smartipc.IpcError);
    }
    return call.promise.catch((err: unknown) => {
      const error = err instanceof smartipc.IpcError ? err : toReplyError(err);
      if (error.code === 'SERVICE_NOT_FOUND' || error.code === 'METHOD_NOT_FOUND') void this.directory?.refresh();
      // The local caller gets the code from NATS, not HANDLER_ERROR describing it.
      throw smartipc.passThrough(error);
    });
  }

  // ---- inbox -------------------------------------------------------------------------------------

  private onInbox(msg: Msg): void {
    const subject = msg.subject;
    const token = subject.slice(subject.lastIndexOf('.') + 1);
    if (token.charCodeAt(0) > 0x39) {
      this.streams.onInbox(token, msg);
      return;
    }
    this.requester.onReply(Number(token), msg);
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

function sameMethods(a: string[], b: Set<string>): boolean {
  if (a.length !== b.size) return false;
  for (const method of a) if (!b.has(method)) return false;
  return true;
}


