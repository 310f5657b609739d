import * as plugins from '../plugins.js';
import { IpcError } from '../smartipc.errors.js';
import { DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_STOP_GRACE_MS } from '../smartipc.defaults.js';
import { EFrameKind, type IHelloPayload } from '../interfaces/wire.js';
import type { IIpcServerOptions, IRequestOptions, IServerStartOptions, IServerStopOptions, TAddress } from '../interfaces/options.js';
import type { IIpcMetrics, IIpcServerEvents, IMessageContext, TMessageHandler } from '../interfaces/events.js';
import { createTransport } from '../framing/transport.factory.js';
import type { IIpcListener, IpcTransport, ITransportHandler } from '../framing/classes.transport.js';
import { IpcChannel } from '../channel/classes.ipcchannel.js';
import { awaitHello, checkHello, rejectHello, sendWelcome } from '../channel/handshake.js';
import { encodePayload } from '../channel/serializer.js';
import { emptyMetrics, resolveServer, type IResolvedServer } from '../smartipc.options.js';
import { connectProbe } from './readiness.js';
import { PubSubBroker } from './classes.pubsubbroker.js';
import type { IServerPubSubStats } from '../interfaces/pubsub.js';
import { debug } from '../smartipc.log.js';
import type { ISendFileOptions, ISendStreamOptions, IStreamInfo, TStreamSource } from '../interfaces/streams.js';

export interface IClientInfo {
  clientId: string;
  connectedAt: number;
  lastActivity: number;
  metadata: Record<string, unknown>;
}

export interface IIpcServerStats {
  isRunning: boolean;
  connectedClients: number;
  totalConnections: number;
  /** Milliseconds since start, 0 when stopped. */
  uptime: number;
  metrics: IIpcMetrics;
  /** Pub/sub counters: published, delivered, dropped, per pattern. */
  pubsub?: IServerPubSubStats;
}

interface IClientEntry {
  channel: IpcChannel;
  metadata: Record<string, unknown>;
}

type TServerState = 'stopped' | 'starting' | 'running' | 'stopping';

/**
 * Accepts many clients on one endpoint. Each connection gets its own IpcChannel after the
 * handshake; handlers and counters are shared by all of them. A newer connection with a clientId
 * already in use replaces the older one (the older is closed): that is what a reconnecting client
 * whose old connection the server has not yet seen die looks like.
 */
export class IpcServer extends plugins.events.EventEmitter<IIpcServerEvents> {
  public readonly options: IResolvedServer;
  private readonly handlers = new Map<string, TMessageHandler>();
  private readonly metrics: IIpcMetrics = emptyMetrics();
  private readonly clients = new Map<string, IClientEntry>();
  private readonly handshaking = new Set<IpcTransport>();
  /** Connections closed because a newer one took their clientId: their disconnect was already reported. */
  private readonly replaced = new WeakSet<IpcChannel>();
  private readonly medium: IpcTransport;
  private listener?: IIpcListener;
  /** Features (pub/sub, streams) that set up each client's channel before it goes live. */
  private readonly channelSetups: Array<(clientId: string, channel: IpcChannel) => void> = [];
  private state: TServerState = 'stopped';
  private ready = false;
  private startedAt = 0;
  private totalConnections = 0;
  private readonly pubsub: PubSubBroker;

  constructor(options: IIpcServerOptions) {
    super();
    this.options = resolveServer(options);
    this.medium = createTransport(this.options.endpoint, this.limits(), {
      autoCleanupSocketFile: this.options.autoCleanupSocketFile,
      socketMode: this.options.socketMode,
    });
    this.pubsub = new PubSubBroker({
      serialization: this.options.serialization,
      maxQueuedBytes: this.options.pubsubMaxQueuedBytes,
      onSlowConsumer: (clientId, queuedBytes) => this.emit('slowConsumer', clientId, queuedBytes),
      onError: (error, clientId) => this.emitError(error, clientId),
    });
    this.registerChannelSetup((clientId, channel) => this.pubsub.attach(clientId, channel));
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  /** Binds the endpoint. With readyWhen 'accepting' (default) it also proves a connection is accepted. */
  public async start(options: IServerStartOptions = {}): Promise<void> {
    if (this.state !== 'stopped') throw new IpcError('ADDRESS_IN_USE', `server "${this.options.id}" is already ${this.state}`);
    this.state = 'starting';
    try {
      this.listener = await this.medium.listen((socket) => this.accept(socket));
    } catch (err) {
      this.state = 'stopped';
      throw err;
    }
    this.state = 'running';
    this.startedAt = Date.now();
    debug('server %s listening on %s', this.options.id, this.medium.describe());
    this.emit('start');
    if ((options.readyWhen ?? 'accepting') === 'accepting') {
      try {
        await connectProbe(this.listener.address(), this.medium.describe());
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
    this.state = 'stopping';
    this.ready = false;
    const graceMs = options.graceMs ?? DEFAULT_STOP_GRACE_MS;
    await this.listener?.close();
    this.listener = undefined;
    for (const transport of this.handshaking) transport.destroy(new IpcError('CONNECTION_LOST', 'server stopping'));
    const channels = [...this.clients.values()].map((entry) => entry.channel);
    if (graceMs > 0 && channels.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(channels.map((channel) => channel.whenIdle())),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, graceMs);
          timer.unref();
        }),
      ]);
      clearTimeout(timer);
    }
    await Promise.all(channels.map((channel) => this.closeChannel(channel, 'server stopping')));
    this.state = 'stopped';
    this.startedAt = 0;
    this.emit('stop');
  }

  // ---- handlers and sending --------------------------------------------------------------------

  /** One handler per type serves messages and requests; for a request its return value is the answer. */
  public onMessage<TReq = unknown, TRes = unknown>(type: string, handler: (data: TReq, clientId: string, context: IMessageContext) => TRes | Promise<TRes> | void): this {
    this.handlers.set(type, handler as TMessageHandler);
    return this;
  }

  public offMessage(type: string): this {
    this.handlers.delete(type);
    return this;
  }

  public sendToClient(clientId: string, type: string, data?: unknown): Promise<void> {
    const entry = this.clients.get(clientId);
    if (!entry) return Promise.reject(this.clientNotFound(clientId));
    return entry.channel.sendMessage(type, data);
  }

  public requestClient<TReq = unknown, TRes = unknown>(clientId: string, type: string, data?: TReq, options?: IRequestOptions): Promise<TRes> {
    const entry = this.clients.get(clientId);
    if (!entry) return Promise.reject(this.clientNotFound(clientId));
    return entry.channel.request<TRes>(type, data, options);
  }

  /** Sends to every connected client; the payload is encoded once. Resolves when all are queued. */
  public broadcast(type: string, data?: unknown): Promise<void> {
    return this.broadcastTo([...this.clients.keys()], type, data);
  }

  /** Sends to the named clients. Rejects with CLIENT_NOT_FOUND naming any that are not connected (the others still get it). */
  public async broadcastTo(clientIds: string[], type: string, data?: unknown): Promise<void> {
    const encoded = encodePayload(data, this.options.serialization, `broadcast "${type}"`);
    const missing: string[] = [];
    const sends: Promise<void>[] = [];
    for (const clientId of clientIds) {
      const entry = this.clients.get(clientId);
      if (entry) sends.push(entry.channel.sendEncoded(EFrameKind.Message, type, encoded));
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
    return entry.channel.sendStream(readable, options);
  }

  /** Streams a file to one client (meta: type 'file', basename, size; sha256 checked by the client). */
  public sendFileToClient(clientId: string, filePath: string, options?: ISendFileOptions): Promise<void> {
    const entry = this.clients.get(clientId);
    if (!entry) return Promise.reject(this.clientNotFound(clientId));
    return entry.channel.sendFile(filePath, options);
  }

  /** Cancels a stream a client is sending to this server. Returns false when there is no such stream. */
  public cancelIncomingStreamFromClient(clientId: string, streamId: string, reason?: string): boolean {
    return this.clients.get(clientId)?.channel.cancelIncomingStream(streamId, reason) ?? false;
  }

  /** Cancels a stream this server is sending to a client. Returns false when there is no such stream. */
  public cancelOutgoingStreamToClient(clientId: string, streamId: string, reason?: string): boolean {
    return this.clients.get(clientId)?.channel.cancelOutgoingStream(streamId, reason) ?? false;
  }

  /**
   * Publishes to every client subscribed to a matching pattern (`from` is 'server'); the payload
   * is encoded once. Resolves once queued: subscribers never hold the publisher back, a slow one
   * loses messages instead (see `pubsubMaxQueuedBytes`). An invalid topic rejects with a TypeError.
   */
  public publish<T = unknown>(topic: string, data?: T): Promise<void> {
    try {
      this.pubsub.publish(topic, data);
    } catch (err) {
      return Promise.reject(err);
    }
    return Promise.resolve();
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

  public getClientInfo(clientId: string): IClientInfo | undefined {
    const entry = this.clients.get(clientId);
    if (!entry) return undefined;
    return { clientId, connectedAt: entry.channel.connectedAt, lastActivity: entry.channel.lastActivity, metadata: entry.metadata };
  }

  public getStats(): IIpcServerStats {
    let requestsInFlight = 0;
    for (const entry of this.clients.values()) requestsInFlight += entry.channel.requestsInFlight;
    return {
      isRunning: this.state === 'running',
      connectedClients: this.clients.size,
      totalConnections: this.totalConnections,
      uptime: this.startedAt ? Date.now() - this.startedAt : 0,
      metrics: { ...this.metrics, requestsInFlight },
      pubsub: this.pubsub.getStats(),
    };
  }

  /** @internal Lets a feature module prepare every client channel (frame hooks, listeners) before its first frame. */
  public registerChannelSetup(setup: (clientId: string, channel: IpcChannel) => void): void {
    this.channelSetups.push(setup);
  }

  /** @internal The live channel of a client, for feature modules. */
  public getChannelOf(clientId: string): IpcChannel | undefined {
    return this.clients.get(clientId)?.channel;
  }

  // ---- connections -----------------------------------------------------------------------------

  private limits() {
    return { maxMessageSize: this.options.maxMessageSize };
  }

  private accept(socket: plugins.net.Socket): void {
    if (this.state !== 'running') {
      socket.destroy();
      return;
    }
    this.totalConnections++;
    const transport = this.medium.forAccepted(socket);
    transport.counters = this.metrics;
    this.handshaking.add(transport);
    awaitHello(transport, this.options.registerTimeoutMs).then(
      ({ hello, gate }) => {
        this.handshaking.delete(transport);
        const refusal = checkHello(hello, this.options) ?? (hello.probe ? undefined : this.checkCapacity(hello));
        if (refusal) {
          debug('refusing %s: %s', hello.clientId, refusal.message);
          rejectHello(transport, refusal);
          return;
        }
        if (hello.probe) {
          // waitForServer: answered, then closed; never registered as a client.
          sendWelcome(transport, hello, this.options);
          transport.end();
          return;
        }
        this.admit(transport, hello, (handler) => gate.handOver(handler));
      },
      (err: IpcError) => {
        this.handshaking.delete(transport);
        transport.destroy(err);
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

  /** maxClients: a newer connection that replaces one with its clientId does not count twice. */
  private checkCapacity(hello: IHelloPayload): IpcError | undefined {
    const replacing = this.clients.has(hello.clientId) ? 1 : 0;
    if (this.clients.size - replacing >= this.options.maxClients) {
      return new IpcError('TOO_MANY_CLIENTS', `server "${this.options.id}" already serves its maximum of ${this.options.maxClients} clients`);
    }
    return undefined;
  }

  private admit(transport: IpcTransport, hello: IHelloPayload, handOver: (handler: ITransportHandler) => void): void {
    const clientId = hello.clientId;
    const previous = this.clients.get(clientId);
    if (previous) {
      // The older connection leaves first, so that presence tracked from the events stays right:
      // clientDisconnect(old) now, clientConnect(new) below, nothing later from the old one.
      debug('client %s connected again; closing its previous connection', clientId);
      const reason = new IpcError('CONNECTION_LOST', `replaced by a newer connection with clientId "${clientId}"`);
      this.replaced.add(previous.channel);
      this.clients.delete(clientId);
      this.emit('clientDisconnect', clientId, reason);
      previous.channel.close(reason.message, 'replaced');
    }
    sendWelcome(transport, hello, this.options);
    const channel = new IpcChannel({
      serialization: this.options.serialization,
      requestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS,
      heartbeat: this.options.heartbeat,
      handlers: this.handlers,
      metrics: this.metrics,
      outbox: { maxMessages: 0, maxBytes: 0 },
      maxConcurrentStreams: this.options.maxConcurrentStreams,
    });
    this.clients.set(clientId, { channel, metadata: hello.metadata });
    channel.on('disconnect', (reason) => {
      if (this.replaced.delete(channel)) return;
      if (this.clients.get(clientId)?.channel === channel) this.clients.delete(clientId);
      this.emit('clientDisconnect', clientId, reason);
    });
    channel.on('heartbeatTimeout', () => {
      this.emit('heartbeatTimeout', clientId);
      if (this.options.heartbeatThrowOnTimeout) this.emitError(new IpcError('TIMEOUT', `heartbeat timeout for client "${clientId}"`), clientId);
    });
    channel.on('messageError', (error) => this.emit('messageError', error, clientId));
    channel.on('error', (error) => this.emitError(error, clientId));
    channel.on('stream', (info, readable) => this.onClientStream(clientId, channel, info, readable));
    for (const setup of this.channelSetups) setup(clientId, channel);
    channel.attach(transport, clientId, handOver);
    this.emit('clientConnect', clientId, hello.metadata);
  }

  private closeChannel(channel: IpcChannel, reason: string): Promise<void> {
    if (!channel.isConnected) return Promise.resolve();
    return new Promise((resolve) => {
      channel.once('disconnect', () => resolve());
      channel.close(reason, 'stopping');
    });
  }

  private onClientStream(clientId: string, channel: IpcChannel, info: IStreamInfo, readable: plugins.stream.Readable): void {
    if (this.listenerCount('stream') === 0) {
      channel.cancelIncomingStream(info.streamId, new IpcError('NO_HANDLER', `server "${this.options.id}" has no 'stream' listener for stream "${info.streamId}"`));
      return;
    }
    this.emit('stream', { ...info, clientId }, readable);
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
