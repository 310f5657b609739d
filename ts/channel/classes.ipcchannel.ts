import * as plugins from '../plugins.js';
import { IpcError, toRemoteError, type IRemoteError, isIpcErrorCode } from '../smartipc.errors.js';
import { EFrameKind, EPayloadEncoding, type IFrame, type IGoodbyePayload, type TGoodbyeCode, type TSerialization } from '../interfaces/wire.js';
import type { IRequestOptions } from '../interfaces/options.js';
import type { IIpcChannelEvents, IIpcMetrics, IMessageContext, TMessageHandler } from '../interfaces/events.js';
import type { IpcTransport, ITransportHandler } from '../framing/classes.transport.js';
import { PendingRequests } from './classes.pendingrequests.js';
import { Heartbeat, type IHeartbeatOptions } from './classes.heartbeat.js';
import { Outbox } from './classes.outbox.js';
import { decodeRange, encodingOf, serialize, type IEncodedPayload } from './serializer.js';
import { sendJsonFrame } from './handshake.js';
import { debug } from '../smartipc.log.js';
import { DEFAULT_MAX_CONCURRENT_STREAMS } from '../smartipc.defaults.js';
import type { ISendFileOptions, ISendStreamOptions, TStreamSource } from '../interfaces/streams.js';
import { StreamManager } from './streams/classes.streammanager.js';

/** Everything a link needs, resolved once by its owner (server, client or standalone channel). */
export interface IChannelConfig {
  serialization: TSerialization;
  requestTimeoutMs: number;
  /** undefined: no heartbeat. */
  heartbeat?: IHeartbeatOptions;
  /** Handlers by type; a server shares one map among all its client links. */
  handlers: Map<string, TMessageHandler>;
  /** Counters; a server shares one object among all its client links. */
  metrics: IIpcMetrics;
  /** Bounds of the outbox used while reconnecting. */
  outbox: { maxMessages: number; maxBytes: number };
  /** Open streams per direction on this link. @default 32 */
  maxConcurrentStreams?: number;
}

interface IErrorResponseBody {
  code: string;
  message: string;
  remote?: IRemoteError;
}

const RESOLVED: Promise<void> = Promise.resolve();

/**
 * Frames that count in messagesSent / messagesReceived: what the user sent or answered. Stream
 * chunks, pub/sub acknowledgements, heartbeats and handshakes count in bytes only.
 */
const COUNTS_AS_MESSAGE: readonly boolean[] = (() => {
  const counted: boolean[] = [];
  for (const kind of [EFrameKind.Message, EFrameKind.Request, EFrameKind.Response, EFrameKind.ErrorResponse, EFrameKind.Publish]) counted[kind] = true;
  return counted;
})();
const NO_OPTIONS: IRequestOptions = Object.freeze({});

/** A handler for frame kinds beyond messages and requests (pub/sub, streams). */
export type TFrameHook = (frame: IFrame) => void;

/**
 * One logical link to one peer: request/response correlation, message dispatch, heartbeat and
 * the outbox that holds sends while the owner reconnects. The transport under it can be replaced
 * (a client reconnects); pending requests never outlive the transport they were sent on.
 */
export class IpcChannel extends plugins.events.EventEmitter<IIpcChannelEvents> implements ITransportHandler {
  /** The peer's id: its clientId seen from a server, the server's id seen from a client. */
  public peerId = '';
  public connectedAt = 0;
  /** Date.now() of the peer's last message or request (heartbeats do not count), or of connecting. */
  public get lastActivity(): number {
    return Math.max(this.connectedAt, this.lastMessageAt);
  }
  private lastMessageAt = 0;

  private transport?: IpcTransport;
  private readonly pending = new PendingRequests();
  private heartbeat?: Heartbeat;
  private outbox?: Outbox;
  private goodbye?: IGoodbyePayload;
  private activeHandlers = 0;
  private idleWaiters: Array<() => void> = [];
  private readonly frameHooks = new Map<EFrameKind, TFrameHook>();
  private readonly streams: StreamManager;

  /** serialization === 'json', looked up once instead of per message. */
  private readonly json: boolean;

  constructor(private readonly config: IChannelConfig) {
    super();
    this.json = config.serialization === 'json';
    this.streams = new StreamManager(this, {
      serialization: config.serialization,
      maxConcurrentStreams: config.maxConcurrentStreams ?? DEFAULT_MAX_CONCURRENT_STREAMS,
    });
  }

  public get isConnected(): boolean {
    return this.transport?.isOpen === true;
  }

  /** Sends wait in the outbox instead of failing (set by a reconnecting client). */
  public get isHoldingSends(): boolean {
    return this.outbox !== undefined;
  }

  /** Requests sent and not settled plus requests received and not yet answered. */
  public get requestsInFlight(): number {
    return this.pending.size + this.activeHandlers;
  }

  public get transportDescription(): string {
    return this.transport?.describe() ?? '(not connected)';
  }

  // ---- link management -------------------------------------------------------------------------

  /** Takes over a transport whose handshake is done. Queued outbox entries leave first, in order. */
  public attach(transport: IpcTransport, peerId: string, handOver: (handler: ITransportHandler) => void): void {
    this.transport = transport;
    transport.counters = this.config.metrics;
    this.peerId = peerId;
    this.goodbye = undefined;
    this.connectedAt = Date.now();
    this.flushOutbox();
    if (this.config.heartbeat) {
      this.heartbeat = new Heartbeat(
        {
          sendPing: () => this.sendControl(EFrameKind.Ping),
          onHeartbeatTimeout: (silentForMs) => this.onHeartbeatTimeout(silentForMs),
        },
        this.config.heartbeat,
      );
      this.heartbeat.start();
    }
    handOver(this);
  }

  /** From now on sends wait (bounded) for the next `attach` instead of failing. */
  public holdSends(): void {
    this.outbox ??= new Outbox(this.config.outbox.maxMessages, this.config.outbox.maxBytes);
  }

  /** Fails whatever waits in the outbox and stops holding sends. */
  public releaseSends(error: IpcError): void {
    const outbox = this.outbox;
    this.outbox = undefined;
    if (!outbox) return;
    for (const entry of outbox.takeAll()) {
      if (entry.kind === EFrameKind.Request) this.pending.take(entry.id)?.reject(error);
      else entry.reject?.(error);
    }
    this.pending.disarmIfIdle();
  }

  /** What the peer said when it closed the current (or last) connection, if it said anything. */
  public get peerGoodbye(): IGoodbyePayload | undefined {
    return this.goodbye;
  }

  /** Tells the peer why we are leaving, then closes once queued frames are out. */
  public close(reason: string, code: TGoodbyeCode = 'closing'): void {
    const transport = this.transport;
    if (!transport?.isOpen) return;
    try {
      sendJsonFrame(transport, EFrameKind.Goodbye, { reason, code } satisfies IGoodbyePayload);
    } catch {
      // closing anyway
    }
    transport.end();
  }

  /** Closes at once with an error (protocol fault, heartbeat timeout, replaced connection). */
  public destroy(error: IpcError): void {
    this.transport?.destroy(error);
  }

  /** Resolves when no handler is running (for a graceful stop). */
  public whenIdle(): Promise<void> {
    if (this.activeHandlers === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  public setFrameHook(kind: EFrameKind, hook: TFrameHook): void {
    this.frameHooks.set(kind, hook);
  }

  // ---- sending ---------------------------------------------------------------------------------

  /** Fire-and-forget. Resolves once the frame is queued for the socket (waiting for drain when the socket is full). */
  public sendMessage(type: string, data?: unknown): Promise<void> {
    let payload: string | Buffer | undefined;
    try {
      payload = serialize(data, this.json, `message "${type}"`);
    } catch (err) {
      return Promise.reject(err);
    }
    const transport = this.transport;
    if (transport !== undefined && transport.isOpen) {
      // The per-message path: no wrapper objects, one shared resolved promise.
      try {
        transport.sendFrame(EFrameKind.Message, encodingOf(payload), 0, type, undefined, payload);
      } catch (err) {
        return Promise.reject(err);
      }
      this.config.metrics.messagesSent++;
      return transport.needsDrain ? transport.waitForDrain() : RESOLVED;
    }
    return this.sendEncoded(EFrameKind.Message, type, { encoding: encodingOf(payload), payload });
  }

  /** Sends an already-encoded frame of any kind (used by pub/sub and streams too). */
  public sendEncoded(kind: EFrameKind, type: string, encoded: IEncodedPayload, id = 0, headers?: Record<string, unknown>): Promise<void> {
    const transport = this.transport;
    if (transport?.isOpen) {
      try {
        transport.send({ kind, encoding: encoded.encoding, id, type, headers, payload: encoded.payload });
      } catch (err) {
        return Promise.reject(err);
      }
      if (COUNTS_AS_MESSAGE[kind]) this.config.metrics.messagesSent++;
      return transport.needsDrain ? transport.waitForDrain() : RESOLVED;
    }
    if (this.outbox) {
      return new Promise((resolve, reject) => {
        try {
          this.outbox!.push({ kind, id, type, encoded, headers, resolve, reject });
        } catch (err) {
          reject(err);
        }
      });
    }
    return Promise.reject(this.notConnected());
  }

  /**
   * Queues an encoded frame on the open connection without waiting for drain, for fan-out whose
   * caller bounds the queue itself (see `queuedBytes`). Throws NOT_CONNECTED or MESSAGE_TOO_LARGE.
   */
  public sendEncodedNow(kind: EFrameKind, type: string, encoded: IEncodedPayload, id = 0, headers?: Record<string, unknown>): void {
    const transport = this.transport;
    if (!transport?.isOpen) throw this.notConnected();
    transport.send({ kind, encoding: encoded.encoding, id, type, headers, payload: encoded.payload });
    if (COUNTS_AS_MESSAGE[kind]) this.config.metrics.messagesSent++;
  }

  /**
   * Queues a complete frame encoded once elsewhere (`encodeFrame`, length prefix included) on the
   * open connection, without waiting for drain: fan-out encodes a publish once for all subscribers.
   * Throws NOT_CONNECTED or MESSAGE_TOO_LARGE (over this peer's limit).
   */
  public sendPrebuiltNow(frame: Buffer): void {
    const transport = this.transport;
    if (!transport?.isOpen) throw this.notConnected();
    transport.sendEncoded(frame);
    this.config.metrics.messagesSent++;
  }

  /** Bytes queued for the peer and not yet taken by the kernel (0 when not connected). */
  public get queuedBytes(): number {
    return this.transport?.queuedBytes ?? 0;
  }

  /** Resolves once the socket has written out its queue, or at once when it has none or is closed. */
  public waitForDrain(): Promise<void> {
    return this.transport?.waitForDrain() ?? Promise.resolve();
  }

  public request<TRes = unknown>(type: string, data?: unknown, options: IRequestOptions = NO_OPTIONS): Promise<TRes> {
    if (options.signal?.aborted) {
      return Promise.reject(new IpcError('ABORTED', `request "${type}" was aborted before it was sent`, { cause: options.signal.reason }));
    }
    let payload: string | Buffer | undefined;
    try {
      payload = serialize(data, this.json, `request "${type}"`);
    } catch (err) {
      return Promise.reject(err);
    }
    const transport = this.transport;
    const open = transport?.isOpen === true;
    if (!open && !this.outbox) return Promise.reject(this.notConnected());
    const id = this.pending.allocateId();
    const promise = this.pending.add<TRes>(id, type, options.timeout ?? this.config.requestTimeoutMs, options.signal);
    try {
      if (open) {
        const headersJson = options.headers === undefined ? undefined : JSON.stringify(options.headers);
        transport!.sendFrame(EFrameKind.Request, encodingOf(payload), id, type, headersJson, payload);
        this.config.metrics.messagesSent++;
      } else {
        this.outbox!.push({ kind: EFrameKind.Request, id, type, encoded: { encoding: encodingOf(payload), payload }, headers: options.headers });
      }
    } catch (err) {
      this.pending.take(id);
      return Promise.reject(err);
    }
    return promise;
  }

  // ---- streams (see ./streams/) -----------------------------------------------------------------

  /** Sends a readable as a stream; resolves when the receiver has the last byte. See ISendStreamOptions. */
  public sendStream(readable: TStreamSource, options?: ISendStreamOptions): Promise<void> {
    return this.streams.sendStream(readable, options);
  }

  /** Sends a file (meta: type 'file', basename, size; sha256 checked by the receiver). */
  public sendFile(filePath: string, options?: ISendFileOptions): Promise<void> {
    return this.streams.sendFile(filePath, options);
  }

  /** Cancels a stream this side sends. Returns false when no such stream is open. */
  public cancelOutgoingStream(streamId: string, reason?: string | IpcError): boolean {
    return this.streams.cancelOutgoing(streamId, reason);
  }

  /** Cancels a stream this side receives. Returns false when no such stream is open. */
  public cancelIncomingStream(streamId: string, reason?: string | IpcError): boolean {
    return this.streams.cancelIncoming(streamId, reason);
  }

  /** Streams open on this link, per direction. */
  public get openStreams(): { incoming: number; outgoing: number } {
    return this.streams.openStreams;
  }

  private sendControl(kind: EFrameKind): void {
    try {
      this.transport?.send({ kind, encoding: EPayloadEncoding.None, id: 0, type: '' });
    } catch {
      // the connection is closing; its close handler reports it
    }
  }

  private flushOutbox(): void {
    const outbox = this.outbox;
    this.outbox = undefined;
    if (!outbox) return;
    for (const entry of outbox.takeAll()) {
      if (entry.kind === EFrameKind.Request && !this.pending.has(entry.id)) continue; // timed out or aborted meanwhile
      try {
        this.transport!.send({ kind: entry.kind, encoding: entry.encoded.encoding, id: entry.id, type: entry.type, headers: entry.headers, payload: entry.encoded.payload });
        if (COUNTS_AS_MESSAGE[entry.kind]) this.config.metrics.messagesSent++;
        entry.resolve?.();
      } catch (err) {
        if (entry.kind === EFrameKind.Request) this.pending.take(entry.id)?.reject(err as IpcError);
        else entry.reject?.(err as IpcError);
      }
    }
  }

  private notConnected(): IpcError {
    return new IpcError('NOT_CONNECTED', `not connected to ${this.peerId || this.transportDescription}`);
  }

  // ---- receiving -------------------------------------------------------------------------------

  public onFrame(frame: IFrame): void {
    this.heartbeat?.heardFromPeer();
    switch (frame.kind) {
      case EFrameKind.Message:
        this.config.metrics.messagesReceived++;
        this.dispatch(frame, false);
        return;
      case EFrameKind.Request:
        this.config.metrics.messagesReceived++;
        this.dispatch(frame, true);
        return;
      case EFrameKind.Response:
        this.config.metrics.messagesReceived++;
        this.settleResponse(frame);
        return;
      case EFrameKind.ErrorResponse:
        this.config.metrics.messagesReceived++;
        this.settleError(frame);
        return;
      case EFrameKind.Ping:
        this.sendControl(EFrameKind.Pong);
        return;
      case EFrameKind.Pong:
        return;
      case EFrameKind.Goodbye:
        try {
          const body = JSON.parse(frame.payload.toString('utf8')) as IGoodbyePayload;
          this.goodbye = { reason: String(body.reason), ...(typeof body.code === 'string' ? { code: body.code } : {}) };
        } catch {
          this.goodbye = { reason: 'closed by peer' };
        }
        return;
      default: {
        if (frame.kind === EFrameKind.Publish) this.config.metrics.messagesReceived++;
        const hook = this.frameHooks.get(frame.kind);
        if (hook) hook(frame);
        else debug('ignoring frame kind %d from %s', frame.kind, this.peerId);
      }
    }
  }

  public onFrameError(error: IpcError): void {
    this.config.metrics.errors++;
    this.emit('messageError', error);
  }

  public onClose(error: IpcError | undefined): void {
    this.heartbeat?.stop();
    this.heartbeat = undefined;
    this.transport = undefined;
    const reason = this.goodbye !== undefined
      ? new IpcError('CONNECTION_LOST', `${this.peerId} closed the connection: ${this.goodbye.reason}`)
      : error ?? new IpcError('CONNECTION_LOST', `connection to ${this.peerId} closed`);
    if (reason.code === 'CONNECTION_LOST' && error && error.code !== 'CONNECTION_LOST') this.config.metrics.errors++;
    this.pending.rejectAll(
      (entry) => new IpcError('CONNECTION_LOST', `request "${entry.type}" lost: ${reason.message}`, { cause: reason }),
    );
    this.streams.failAll(reason);
    this.emit('disconnect', reason);
  }

  private dispatch(frame: IFrame, isRequest: boolean): void {
    const handler = this.config.handlers.get(frame.type);
    if (!handler) {
      if (isRequest) this.replyError(frame.id, { code: 'NO_HANDLER', message: `no handler for "${frame.type}"` });
      else debug('no handler for message "%s" from %s; dropped', frame.type, this.peerId);
      return;
    }
    let data: unknown;
    try {
      data = decodeRange(frame.flags, frame.buf, frame.payloadStart, frame.payloadEnd);
    } catch (err) {
      this.config.metrics.errors++;
      if (isRequest) this.replyError(frame.id, { code: 'PROTOCOL_ERROR', message: (err as Error).message });
      else this.emit('error', err as IpcError);
      return;
    }
    // Handlers that declare a third parameter get the context; the others skip its allocation.
    let context: IMessageContext | undefined;
    if (handler.length > 2) {
      context = { type: frame.type, isRequest };
      if (frame.headers) context.headers = frame.headers;
    }
    const id = isRequest ? frame.id : 0;
    const type = frame.type;
    // The socket chunk's arrival time: no Date.now() per frame.
    this.lastMessageAt = this.transport?.lastReceivedAt ?? this.lastMessageAt;
    this.activeHandlers++;
    let result: unknown;
    try {
      result = handler(data, this.peerId, context as IMessageContext);
    } catch (err) {
      this.handlerFailed(id, type, isRequest, err);
      return;
    }
    if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function') {
      (result as PromiseLike<unknown>).then(
        (value) => this.handlerDone(id, type, isRequest, value),
        (err) => this.handlerFailed(id, type, isRequest, err),
      );
    } else {
      this.handlerDone(id, type, isRequest, result);
    }
  }

  private handlerDone(id: number, type: string, isRequest: boolean, value: unknown): void {
    this.handlerFinished();
    if (!isRequest) return;
    const transport = this.transport;
    if (transport === undefined || !transport.isOpen) {
      debug('response to "%s" for %s dropped: connection closed', type, this.peerId);
      return;
    }
    let payload: string | Buffer | undefined;
    try {
      payload = serialize(value, this.json, `response to "${type}"`);
    } catch (err) {
      this.config.metrics.errors++;
      this.replyError(id, { code: 'HANDLER_ERROR', message: (err as Error).message });
      return;
    }
    try {
      transport.sendFrame(EFrameKind.Response, encodingOf(payload), id, '', undefined, payload);
      this.config.metrics.messagesSent++;
    } catch (err) {
      const error = err as IpcError;
      this.config.metrics.errors++;
      this.replyError(id, { code: isIpcErrorCode(error.code) ? error.code : 'HANDLER_ERROR', message: `response to "${type}": ${error.message}` });
    }
  }

  private handlerFailed(id: number, type: string, isRequest: boolean, thrown: unknown): void {
    this.handlerFinished();
    this.config.metrics.errors++;
    const remote = toRemoteError(thrown);
    if (isRequest) {
      this.replyError(id, { code: 'HANDLER_ERROR', message: remote.message, remote });
    } else {
      this.emit('error', new IpcError('HANDLER_ERROR', `handler for message "${type}" threw: ${remote.message}`, { cause: thrown, remote }));
    }
  }

  private handlerFinished(): void {
    this.activeHandlers--;
    if (this.activeHandlers === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  private replyError(id: number, body: IErrorResponseBody): void {
    try {
      this.transport?.send({ kind: EFrameKind.ErrorResponse, encoding: EPayloadEncoding.Json, id, type: '', payload: JSON.stringify(body) });
      this.config.metrics.messagesSent++;
    } catch (err) {
      debug('could not send error response to %s: %s', this.peerId, (err as Error).message);
    }
  }

  private settleResponse(frame: IFrame): void {
    const entry = this.pending.take(frame.id);
    if (!entry) {
      debug('late response %d from %s ignored', frame.id, this.peerId);
      return;
    }
    let value: unknown;
    try {
      value = decodeRange(frame.flags, frame.buf, frame.payloadStart, frame.payloadEnd);
    } catch (err) {
      this.config.metrics.errors++;
      entry.reject(err as IpcError);
      return;
    }
    entry.resolve(value);
  }

  private settleError(frame: IFrame): void {
    const entry = this.pending.take(frame.id);
    if (!entry) return;
    let body: IErrorResponseBody;
    try {
      body = JSON.parse(frame.payload.toString('utf8')) as IErrorResponseBody;
    } catch {
      body = { code: 'PROTOCOL_ERROR', message: 'unreadable error response' };
    }
    const code = isIpcErrorCode(body.code) ? body.code : 'HANDLER_ERROR';
    entry.reject(new IpcError(code, body.message, body.remote ? { remote: body.remote } : {}));
  }

  private onHeartbeatTimeout(silentForMs: number): void {
    const error = new IpcError('TIMEOUT', `heartbeat timeout: nothing heard from ${this.peerId} for ${silentForMs} ms`);
    this.emit('heartbeatTimeout', this.peerId);
    this.destroy(error);
  }
}
