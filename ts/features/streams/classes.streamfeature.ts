import * as plugins from '../../plugins.js';
import { IpcError, invalidArgument, isIpcError } from '../../smartipc.errors.js';
import { DEFAULT_STREAM_CHUNK_SIZE_BYTES, STREAM_SEND_QUEUE_BYTES, STREAM_WINDOW_BYTES } from '../../smartipc.defaults.js';
import { EFrameKind, type IFrame, type TSerialization } from '../../interfaces/wire.js';
import type { ISendFileOptions, ISendStreamOptions, IStreamInfo, IStreamMeta, TStreamSource } from '../../interfaces/streams.js';
import type { IConnectionFeature, IConnectionHost } from '../../interfaces/hosts.js';
import type { IEncodedPayload } from '../../channel/serializer.js';
import { debug } from '../../smartipc.log.js';
import { streamChannel } from '../observability/tracing.js';
import { OutgoingStream, type IOutgoingStreamSpec, type IStreamSendHost } from './classes.outgoingstream.js';
import { IncomingStream, type IStreamReceiveHost } from './classes.incomingstream.js';
import { FROM_RECEIVER, FROM_SENDER, jsonPayload, parseCancelPayload, toCancelPayload, type IStreamOpenPayload } from './protocol.js';

export interface IStreamFeatureOptions {
  /** Open streams per direction on this link; one more is refused with TOO_MANY_STREAMS. */
  maxConcurrentStreams: number;
  /** A stream arrived: hand it to the owner's `stream` listeners. false: nobody listens (refused with NO_HANDLER). */
  onStream(info: IStreamInfo, readable: plugins.stream.Readable): boolean;
}

const STREAM_FRAME_KINDS = [EFrameKind.StreamOpen, EFrameKind.StreamChunk, EFrameKind.StreamEnd, EFrameKind.StreamCancel, EFrameKind.StreamCredit] as const;

/**
 * The streams of one connection: starts outgoing streams, accepts incoming ones (handing them to
 * the owner), routes stream frames by id and fails every open stream when the link drops. Each
 * direction has its own id space: the opener's id names the stream in both directions.
 */
export class StreamFeature implements IConnectionFeature, IStreamSendHost, IStreamReceiveHost {
  public readonly frameKinds = STREAM_FRAME_KINDS;
  private readonly outgoing = new Map<number, OutgoingStream>();
  private readonly outgoingByStreamId = new Map<string, OutgoingStream>();
  private readonly incoming = new Map<number, IncomingStream>();
  private readonly incomingByStreamId = new Map<string, IncomingStream>();
  private lastId = 0;

  constructor(private readonly channel: IConnectionHost, private readonly options: IStreamFeatureOptions) {}

  public onFrame(frame: IFrame): void {
    switch (frame.kind) {
      case EFrameKind.StreamOpen:
        return this.onOpen(frame);
      case EFrameKind.StreamChunk:
        return this.incoming.get(frame.id)?.handleChunk(frame);
      case EFrameKind.StreamEnd:
        return this.onEnd(frame);
      case EFrameKind.StreamCancel:
        return this.onCancel(frame);
      case EFrameKind.StreamCredit:
        return this.onCredit(frame);
    }
  }

  /** The link dropped: every open stream fails with CONNECTION_LOST. */
  public onDisconnect(reason: IpcError): void {
    this.failAll(reason);
  }

  public get serialization(): TSerialization {
    return this.channel.serialization;
  }

  public get isConnected(): boolean {
    return this.channel.isConnected;
  }

  /** Decodes an object-mode chunk (or open frame) for the connection's serialization. */
  public decode(frame: IFrame): unknown {
    return this.channel.decode(frame);
  }

  public get openStreams(): { incoming: number; outgoing: number } {
    return { incoming: this.incoming.size, outgoing: this.outgoing.size };
  }

  // ---- sending ---------------------------------------------------------------------------------

  public sendStream(source: TStreamSource, options: ISendStreamOptions = {}): Promise<void> {
    let spec: IOutgoingStreamSpec;
    try {
      spec = this.admit(options, (source as { readableObjectMode?: boolean }).readableObjectMode === true);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.start(spec, source);
  }

  /** Streams a file with its name and size in meta and a sha256 the receiver checks. */
  public async sendFile(filePath: string, options: ISendFileOptions = {}): Promise<void> {
    const stat = await plugins.fs.promises.stat(filePath);
    if (!stat.isFile()) throw invalidArgument(`sendFile needs a regular file, ${filePath} is not one`);
    const meta: IStreamMeta = { type: 'file', basename: plugins.path.basename(filePath), size: stat.size, ...options.meta };
    const spec = this.admit({ ...options, meta, objectMode: false, checksum: options.checksum ?? 'sha256' }, false);
    return this.start(spec, plugins.fs.createReadStream(filePath, { highWaterMark: spec.chunkSize }));
  }

  /** Cancels a stream this side sends: the receiver's readable errors with STREAM_CANCELLED, the send rejects with it. */
  public cancelOutgoing(streamId: string, reason?: string | IpcError): boolean {
    const stream = this.outgoingByStreamId.get(streamId);
    if (!stream) return false;
    stream.fail(toIpcError(reason, `stream "${streamId}" was cancelled by the sender`), true);
    return true;
  }

  /** Cancels a stream this side receives: the sender's send rejects with STREAM_CANCELLED (or the reason's code); the readable closes. */
  public cancelIncoming(streamId: string, reason?: string | IpcError): boolean {
    const stream = this.incomingByStreamId.get(streamId);
    if (!stream) return false;
    stream.cancel(toIpcError(reason, `stream "${streamId}" was cancelled by the receiver`));
    return true;
  }

  private failAll(reason: IpcError): void {
    const code = 'CONNECTION_LOST';
    for (const stream of [...this.outgoing.values()]) {
      stream.fail(new IpcError(code, `stream "${stream.streamId}" lost: ${reason.message}`, { cause: reason }), false);
    }
    for (const stream of [...this.incoming.values()]) {
      stream.abort(new IpcError(code, `stream "${stream.streamId}" lost: ${reason.message}`, { cause: reason }));
    }
  }

  /** Validates and reserves a new outgoing stream; throws (nothing sent) when it cannot start. */
  private admit(options: ISendStreamOptions, sourceObjectMode: boolean): IOutgoingStreamSpec {
    const chunkSize = options.chunkSize ?? DEFAULT_STREAM_CHUNK_SIZE_BYTES;
    if (!Number.isInteger(chunkSize) || chunkSize <= 0) throw invalidArgument(`chunkSize must be a positive integer number of bytes, got ${String(options.chunkSize)}`);
    if (options.streamId !== undefined && (typeof options.streamId !== 'string' || options.streamId.length === 0)) {
      throw invalidArgument('streamId must be a non-empty string');
    }
    if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw invalidArgument('signal must be an AbortSignal');
    if (options.signal?.aborted) throw new IpcError('ABORTED', 'stream was aborted before it started', { cause: options.signal.reason });
    if (!this.channel.isConnected) throw new IpcError('NOT_CONNECTED', `not connected to ${this.channel.peerId || this.channel.description}; streams need a live connection`);
    if (this.outgoing.size >= this.options.maxConcurrentStreams) {
      throw new IpcError('TOO_MANY_STREAMS', `${this.outgoing.size} streams are already being sent on this connection (maxConcurrentStreams ${this.options.maxConcurrentStreams})`);
    }
    const streamId = options.streamId ?? plugins.crypto.randomUUID();
    if (this.outgoingByStreamId.has(streamId)) throw new IpcError('PROTOCOL_ERROR', `stream "${streamId}" is already being sent; streamIds must be unique`);
    return {
      id: this.allocateId(),
      streamId,
      meta: options.meta ?? {},
      headers: options.headers,
      chunkSize,
      objectMode: options.objectMode ?? sourceObjectMode,
      checksum: options.checksum ?? 'none',
      signal: options.signal,
    };
  }

  private start(spec: IOutgoingStreamSpec, source: TStreamSource): Promise<void> {
    const stream = new OutgoingStream(this, spec, source);
    this.outgoing.set(spec.id, stream);
    this.outgoingByStreamId.set(spec.streamId, stream);
    if (!streamChannel.hasSubscribers) return stream.run();
    return streamChannel.tracePromise(() => stream.run(), { streamId: spec.streamId, peerId: this.channel.peerId, meta: spec.meta });
  }

  private allocateId(): number {
    do {
      this.lastId = this.lastId >= 0xffffffff ? 1 : this.lastId + 1;
    } while (this.outgoing.has(this.lastId));
    return this.lastId;
  }

  // ---- host for the streams --------------------------------------------------------------------

  /** Stream frames only travel on a live link; they never wait in a reconnect outbox. */
  public send(kind: EFrameKind, type: string, encoded: IEncodedPayload, id: number, headers?: Record<string, unknown>): Promise<void> {
    if (!this.channel.isConnected) return Promise.reject(new IpcError('CONNECTION_LOST', 'connection lost'));
    return this.channel.send(kind, type, encoded, id, headers);
  }

  public sendNow(kind: EFrameKind, type: string, encoded: IEncodedPayload, id: number): void {
    if (!this.channel.isConnected) throw new IpcError('CONNECTION_LOST', 'connection lost');
    try {
      this.channel.sendNow(kind, type, encoded, id);
    } catch (err) {
      if (isIpcError(err, 'NOT_CONNECTED')) throw new IpcError('CONNECTION_LOST', 'connection lost', { cause: err });
      throw err;
    }
  }

  /** A stream stops queueing chunks at this many unsent bytes on the link, so other traffic waits behind little. */
  public get canWrite(): boolean {
    return this.channel.queuedBytes < STREAM_SEND_QUEUE_BYTES;
  }

  public whenWritable(): Promise<void> {
    return this.channel.waitForDrain();
  }

  public forget(stream: OutgoingStream | IncomingStream): void {
    if (stream instanceof OutgoingStream) {
      if (this.outgoing.get(stream.id) === stream) this.outgoing.delete(stream.id);
      if (this.outgoingByStreamId.get(stream.streamId) === stream) this.outgoingByStreamId.delete(stream.streamId);
    } else {
      if (this.incoming.get(stream.id) === stream) this.incoming.delete(stream.id);
      if (this.incomingByStreamId.get(stream.streamId) === stream) this.incomingByStreamId.delete(stream.streamId);
    }
  }

  // ---- receiving -------------------------------------------------------------------------------

  private onOpen(frame: IFrame): void {
    const streamId = frame.type;
    const refuse = (error: IpcError) => {
      debug('refusing stream "%s" from %s: %s', streamId, this.channel.peerId, error.message);
      this.send(EFrameKind.StreamCancel, FROM_RECEIVER, jsonPayload(toCancelPayload(error)), frame.id).catch(() => undefined);
    };
    if (streamId.length === 0 || this.incoming.has(frame.id) || this.incomingByStreamId.has(streamId)) {
      refuse(new IpcError('PROTOCOL_ERROR', `stream "${streamId}" (#${frame.id}) is already open or has no id`));
      return;
    }
    if (this.incoming.size >= this.options.maxConcurrentStreams) {
      refuse(new IpcError('TOO_MANY_STREAMS', `stream "${streamId}" refused: the receiver already has ${this.incoming.size} open streams (maxConcurrentStreams ${this.options.maxConcurrentStreams})`));
      return;
    }
    let open: IStreamOpenPayload;
    try {
      open = this.channel.decode(frame) as IStreamOpenPayload;
      if (open === null || typeof open !== 'object') throw new Error('not an object');
    } catch (err) {
      refuse(new IpcError('PROTOCOL_ERROR', `stream "${streamId}": unreadable open frame (${(err as Error).message})`));
      return;
    }
    const meta = open.meta !== null && typeof open.meta === 'object' ? open.meta : {};
    const info: IStreamInfo = { streamId, meta, headers: frame.headers ?? {}, peerId: this.channel.peerId, objectMode: open.objectMode === true };
    const stream = new IncomingStream(this, frame.id, info, open.checksum === 'sha256' ? 'sha256' : 'none', STREAM_WINDOW_BYTES);
    this.incoming.set(frame.id, stream);
    this.incomingByStreamId.set(streamId, stream);
    try {
      if (!this.options.onStream(info, stream)) {
        stream.cancel(new IpcError('NO_HANDLER', `no 'stream' listener on the receiving side for stream "${streamId}"`));
      }
    } catch (err) {
      // A listener that throws must not take the connection down with it: the sender learns why.
      stream.cancel(new IpcError('HANDLER_ERROR', `'stream' listener threw: ${(err as Error)?.message ?? String(err)}`, { cause: err }));
    }
  }

  private onEnd(frame: IFrame): void {
    if (frame.type === FROM_RECEIVER) this.outgoing.get(frame.id)?.onAcknowledged();
    else this.incoming.get(frame.id)?.handleEnd(frame);
  }

  private onCancel(frame: IFrame): void {
    const body = parseCancelPayload(frame.payload);
    if (frame.type === FROM_RECEIVER) {
      const stream = this.outgoing.get(frame.id);
      if (!stream) return;
      const message = body.code === 'HANDLER_ERROR' ? `stream "${stream.streamId}" failed at the receiver: ${body.message}` : body.message;
      stream.fail(new IpcError(body.code, message, body.remote ? { remote: body.remote } : {}), false);
      return;
    }
    if (frame.type !== FROM_SENDER) return;
    const stream = this.incoming.get(frame.id);
    stream?.abort(new IpcError('STREAM_CANCELLED', body.message, body.remote ? { remote: body.remote } : {}));
  }

  private onCredit(frame: IFrame): void {
    if (frame.payload.length !== 4) return;
    this.outgoing.get(frame.id)?.onCredit(frame.payload.readUInt32BE(0));
  }
}

function toIpcError(reason: string | IpcError | undefined, what: string): IpcError {
  if (reason instanceof IpcError) return reason;
  return new IpcError('STREAM_CANCELLED', reason === undefined ? what : `${what}: ${reason}`);
}
