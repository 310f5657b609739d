import * as plugins from '../plugins.js';
import { IpcError, isIpcError } from '../smartipc.errors.js';
import { PROTOCOL_VERSION } from '../smartipc.defaults.js';
import { EFrameKind, type IHelloPayload } from '../interfaces/wire.js';
import type { IIpcChannelOptions, IRequestOptions, TTransportKind } from '../interfaces/options.js';
import type { IIpcChannelEvents, IIpcMetrics, IMessageContext, TMessageHandler } from '../interfaces/events.js';
import type { ISendFileOptions, ISendStreamOptions, TStreamSource } from '../interfaces/streams.js';
import { FramedLink } from '../framing/classes.framedlink.js';
import { createMedium, type IMedium, type IMediumListener, type IOpenedStream } from '../framing/media/index.js';
import { IpcConnection } from './classes.connection.js';
import { awaitHello, checkHello, registerWithServer, rejectHello, sendWelcome } from './handshake.js';
import { StreamFeature } from '../features/streams/classes.streamfeature.js';
import { Observer } from '../features/observability/classes.observer.js';
import type { IDeadLetter } from '../interfaces/observability.js';
import { resolveChannel, type IResolvedChannelOwn, type IResolvedCommon } from '../smartipc.options.js';
import { checkHandler } from './handlers.js';

/** What `getStats()` of a channel returns. */
export interface IIpcChannelStats {
  connected: boolean;
  /** The role this side took: 'server' listens (or is the parent), 'client' dials (or is the child). */
  role?: 'server' | 'client';
  /** The other side's id, once connected. */
  peerId?: string;
  transport: TTransportKind;
  metrics: IIpcMetrics;
  streams: { incoming: number; outgoing: number };
}

type TRole = 'auto' | 'server' | 'client';

/** @internal How a channel opens its link: an endpoint (socket, pipe, TCP), or the pipe to a parent or child. */
export interface IChannelSetup extends IResolvedCommon, IResolvedChannelOwn {
  role: TRole;
  medium: IMedium;
  autoCleanupSocketFile?: boolean;
  socketMode?: number;
  /** The parent's side of a child link: one peer, ever (the pipe cannot be reopened). */
  singlePeer?: boolean;
}

/**
 * One symmetric link between exactly two processes, with the same messaging API on both ends:
 * messages, requests both ways, streams, heartbeat. Opened on an endpoint (role 'server' listens
 * and takes one peer at a time, 'client' connects, 'auto' connects if someone listens and listens
 * otherwise) or by `SmartIpc.fork` / `SmartIpc.connectParent` over a private pipe.
 * A dropped link emits `disconnect`; the listening side then waits for the next peer, the
 * connecting side calls `start()` again (IpcClient reconnects by itself).
 */
export class IpcChannel extends plugins.events.EventEmitter<IIpcChannelEvents> {
  private readonly setup: IChannelSetup;
  private readonly handlers = new Map<string, TMessageHandler>();
  private readonly observer: Observer;
  private readonly connection: IpcConnection;
  private readonly streams: StreamFeature;
  private listener?: IMediumListener;
  private activeRole?: 'server' | 'client';
  private hadPeer = false;

  constructor(options: IIpcChannelOptions);
  /** @internal A channel over a given medium (SmartIpc.fork and connectParent). */
  constructor(options: undefined, setup: IChannelSetup);
  constructor(options: IIpcChannelOptions | undefined, setup?: IChannelSetup) {
    super();
    if (setup !== undefined) {
      this.setup = setup;
    } else {
      const resolved = resolveChannel(options!);
      this.setup = { ...resolved, medium: createMedium(resolved.endpoint) };
    }
    this.observer = new Observer(this.setup.deadLetterCapacity, (letter) => this.emit('deadLetter', letter));
    [this.connection, this.streams] = this.build();
  }

  private build(): [IpcConnection, StreamFeature] {
    const connection = new IpcConnection({
      serialization: this.setup.serialization,
      requestTimeoutMs: this.setup.requestTimeoutMs,
      heartbeat: this.setup.heartbeat,
      handlers: this.handlers,
      metrics: this.observer.counters,
      observer: this.observer,
      maxJsonDepth: this.setup.maxJsonDepth,
      outbox: { maxMessages: 0, maxBytes: 0 },
      owner: {
        onDisconnect: (reason) => this.emit('disconnect', reason),
        onHeartbeatTimeout: () => {
          this.emit('heartbeatTimeout', connection.peerId);
          if (this.setup.heartbeatThrowOnTimeout) this.emitError(new IpcError('TIMEOUT', `heartbeat timeout: ${connection.peerId} went silent`));
        },
        onError: (error) => this.emitError(error),
        onFrameError: (error) => this.emit('messageError', error),
      },
    });
    const streams = new StreamFeature(connection, {
      maxConcurrentStreams: this.setup.maxConcurrentStreams,
      onStream: (info, readable) => {
        if (this.listenerCount('stream') === 0) return false;
        this.emit('stream', info, readable);
        return true;
      },
    });
    connection.use(streams);
    return [connection, streams];
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  /** Connects or listens (per role). As a listener it resolves once bound; `connect` fires when the peer arrives. */
  public async start(): Promise<void> {
    const role = this.setup.role;
    if (role === 'client') return this.startAsClient();
    if (role === 'server') return this.startAsServer();
    try {
      await this.startAsClient();
    } catch (err) {
      if (!isIpcError(err, 'SERVER_UNAVAILABLE')) throw err;
      try {
        await this.startAsServer();
      } catch (listenErr) {
        // Both sides started at once and the other one bound first: connect to it.
        if (isIpcError(listenErr, 'ADDRESS_IN_USE')) return this.startAsClient();
        throw listenErr;
      }
    }
  }

  /** Closes the link (the peer is told why; `disconnect` fires with code CLOSED) and stops listening. */
  public async stop(): Promise<void> {
    const listener = this.listener;
    this.listener = undefined;
    if (this.connection.isConnected) {
      await new Promise<void>((resolve) => {
        this.once('disconnect', () => resolve());
        this.connection.close('channel stopped');
      });
    }
    await listener?.close();
  }

  // ---- messaging -------------------------------------------------------------------------------

  /** One handler per type serves messages and requests; for a request its return value is the answer. */
  public onMessage<TReq = unknown, TRes = unknown>(type: string, handler: (data: TReq, peerId: string, context: IMessageContext) => TRes | Promise<TRes> | void): this {
    checkHandler(type, handler);
    this.handlers.set(type, handler as TMessageHandler);
    return this;
  }

  public offMessage(type: string): this {
    this.handlers.delete(type);
    return this;
  }

  /** Fire-and-forget; resolves once queued. */
  public sendMessage<T = unknown>(type: string, data?: T): Promise<void> {
    return this.connection.sendMessage(type, data);
  }

  /** Resolves with the peer handler's answer; rejects TIMEOUT, ABORTED, NO_HANDLER, HANDLER_ERROR, CONNECTION_LOST... */
  public request<TReq = unknown, TRes = unknown>(type: string, data?: TReq, options?: IRequestOptions): Promise<TRes> {
    return this.connection.request<TRes>(EFrameKind.Request, type, data, options);
  }

  // ---- streams ---------------------------------------------------------------------------------

  /** Sends a readable as a stream; resolves when the receiver has the last byte. */
  public sendStream(readable: TStreamSource, options?: ISendStreamOptions): Promise<void> {
    return this.streams.sendStream(readable, options);
  }

  /** Sends a file (meta: type 'file', basename, size; sha256 checked by the receiver). */
  public sendFile(filePath: string, options?: ISendFileOptions): Promise<void> {
    return this.streams.sendFile(filePath, options);
  }

  /** Cancels a stream this side sends. Returns false when no such stream is open. */
  public cancelOutgoingStream(streamId: string, reason?: string): boolean {
    return this.streams.cancelOutgoing(streamId, reason);
  }

  /** Cancels a stream this side receives. Returns false when no such stream is open. */
  public cancelIncomingStream(streamId: string, reason?: string): boolean {
    return this.streams.cancelIncoming(streamId, reason);
  }

  // ---- introspection ---------------------------------------------------------------------------

  /** The last dead letters (deadLetterCapacity of them), oldest first. */
  public getDeadLetters(): IDeadLetter[] {
    return this.observer.deadLetters.list();
  }

  /** The role this process took, once started. */
  public getRole(): 'server' | 'client' | undefined {
    return this.activeRole;
  }

  public getIsConnected(): boolean {
    return this.connection.isConnected;
  }

  /** The other side's id (its clientId, or the channel id seen from the connecting side), once connected. */
  public getPeerId(): string | undefined {
    return this.connection.peerId || undefined;
  }

  public getStats(): IIpcChannelStats {
    return {
      connected: this.connection.isConnected,
      ...(this.activeRole ? { role: this.activeRole } : {}),
      ...(this.connection.peerId ? { peerId: this.connection.peerId } : {}),
      transport: this.setup.medium.kind,
      metrics: this.observer.metrics(this.connection.requestsInFlight),
      streams: this.streams.openStreams,
    };
  }

  // ---- connecting ------------------------------------------------------------------------------

  private hello(): IHelloPayload {
    return {
      serverId: this.setup.id,
      clientId: `peer-${process.pid}-${plugins.crypto.randomBytes(3).toString('hex')}`,
      metadata: {},
      protocolVersion: PROTOCOL_VERSION,
      serialization: this.setup.serialization,
      maxMessageSize: this.setup.maxMessageSize,
    };
  }

  private link(opened: IOpenedStream): FramedLink {
    return new FramedLink(opened.stream, { maxMessageSize: this.setup.maxMessageSize, description: this.setup.medium.describe(), peer: opened.peer });
  }

  private async startAsClient(): Promise<void> {
    const link = this.link(await this.setup.medium.dial());
    const { welcome, gate } = await registerWithServer(link, this.hello(), this.setup.registerTimeoutMs);
    this.activeRole = 'client';
    this.connection.attach(link, welcome.serverId);
    gate.handOver(this.connection);
    this.emit('connect');
  }

  private async startAsServer(): Promise<void> {
    this.listener = await this.setup.medium.listen((opened) => this.accept(opened), {
      autoCleanupSocketFile: this.setup.autoCleanupSocketFile,
      socketMode: this.setup.socketMode,
    });
    this.activeRole = 'server';
  }

  private accept(opened: IOpenedStream): void {
    const link = this.link(opened);
    awaitHello(link, this.setup.registerTimeoutMs).then(
      ({ hello, gate }) => {
        const busy = this.connection.isConnected || (this.setup.singlePeer === true && this.hadPeer);
        const refusal = checkHello(hello, this.setup) ?? (busy && !hello.probe ? new IpcError('TOO_MANY_CLIENTS', `channel "${this.setup.id}" already has its peer`) : undefined);
        const failure = refusal ?? gate.open();
        if (failure) return rejectHello(link, failure);
        sendWelcome(link, hello, this.setup);
        if (hello.probe) return link.end();
        this.hadPeer = true;
        this.connection.attach(link, hello.clientId);
        gate.handOver(this.connection);
        this.emit('connect');
      },
      (err: IpcError) => {
        link.destroy(err);
        if (err.code === 'PROTOCOL_ERROR' || err.code === 'MESSAGE_TOO_LARGE') this.emit('messageError', err);
      },
    );
  }

  /** @internal Closes the link at once (the child of a fork exited). */
  public destroyLink(error: IpcError): void {
    this.connection.destroy(error);
  }

  /** 'error' without a listener would throw inside a socket callback and crash the process. */
  private emitError(error: IpcError): void {
    this.observer.counters.errors++;
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }
}
