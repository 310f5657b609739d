import * as plugins from '../../plugins.js';
import { IpcError, isIpcError } from '../../smartipc.errors.js';
import { DEFAULT_STREAM_CHUNK_SIZE_BYTES, STREAM_SEND_QUEUE_BYTES, STREAM_WINDOW_BYTES } from '../../smartipc.defaults.js';
import { EFrameKind, type IFrame, type TSerialization } from '../../interfaces/wire.js';
import type { ISendFileOptions, ISendStreamOptions, IStreamInfo, IStreamMeta, TStreamSource } from '../../interfaces/streams.js';
import type { IpcChannel } from '../classes.ipcchannel.js';
import { decodePayload, type IEncodedPayload } from '../serializer.js';
import { debug } from '../../smartipc.log.js';
import { OutgoingStream, type IOutgoingStreamSpec, type IStreamSendHost } from './classes.outgoingstream.js';
import { IncomingStream, type IStreamReceiveHost } from './classes.incomingstream.js';
import { FROM_RECEIVER, FROM_SENDER, jsonPayload, parseCancelPayload, toCancelPayload, type IStreamOpenPayload } from './protocol.js';

export interface IStreamManagerOptions {
  serialization: TSerialization;
  /** Open streams per direction on this link; one more is refused with TOO_MANY_STREAMS. */
  maxConcurrentStreams: number;
}

/**
 * The streams of one channel: starts outgoing streams, accepts incoming ones (emitting `stream`
 * on the channel), routes stream frames by id and fails every open stream when the link drops.
 * Each direction has its own id space: the opener's id names the stream in both directions.
 */
export class StreamManager implements IStreamSendHost, IStreamReceiveHost {
  private readonly outgoing = new Map<number, OutgoingStream>();
  private readonly outgoingByStreamId = new Map<string, OutgoingStream>();
  private readonly incoming = new Map<number, IncomingStream>();
  private readonly incomingByStreamId = new Map<string, IncomingStream>();
  private lastId = 0;

  constructor(private readonly channel: IpcChannel, private readonly options: IStreamManagerOptions) {
    channel.setFrameHook(EFrameKind.StreamOpen, (frame) => this.onOpen(frame));
    channel.setFrameHook(EFrameKind.StreamChunk, (frame) => this.incoming.get(frame.id)?.handleChunk(frame));
    channel.setFrameHook(EFrameKind.StreamEnd, (frame) => this.onEnd(frame));
    channel.setFrameHook(EFrameKind.StreamCancel, (frame) => this.onCancel(frame));
    channel.setFrameHook(EFrameKind.StreamCredit, (frame) => this.onCredit(frame));
  }

  public get serialization(): TSerialization {
    return this.options.serialization;
  }

  public get isConnected(): boolean {
    return this.channel.isConnected;
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
    if (!stat.isFile()) throw new TypeError(`smartipc: sendFile needs a regular file, ${filePath} is not one`);
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

  /** The link dropped: every open stream fails with CONNECTION_LOST. */
  public failAll(reason: IpcError): void {
    for (const stream of [...this.outgoing.values()]) {
      stream.fail(new IpcError('CONNECTION_LOST', `stream "${stream.streamId}" lost: ${reason.message}`, { cause: reason }), false);
    }
    for (const stream of [...this.incoming.values()]) {
      stream.abort(new IpcError('CONNECTION_LOST', `stream "${stream.streamId}" lost: ${reason.message}`, { cause: reason }));
    }
  }

  /** Validates and reserves a new outgoing stream; throws (nothing sent) when it cannot start. */
  private admit(options: ISendStreamOptions, sourceObjectMode: boolean): IOutgoingStreamSpec {
    const chunkSize = options.chunkSize ?? DEFAULT_STREAM_CHUNK_SIZE_BYTES;
    if (!Number.isInteger(chunkSize) || chunkSize <= 0) throw new TypeError(`smartipc: chunkSize must be a positive integer number of bytes, got ${String(options.chunkSize)}`);
    if (options.streamId !== undefined && (typeof options.streamId !== 'string' || options.streamId.length === 0)) {
      throw new TypeError('smartipc: streamId must be a non-empty string');
    }
    if (options.signal?.aborted) throw new IpcError('ABORTED', 'stream was aborted before it started', { cause: options.signal.reason });
    if (!this.channel.isConnected) throw new IpcError('NOT_CONNECTED', `not connected to ${this.channel.peerId || this.channel.transportDescription}; streams need a live connection`);
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
    return stream.run();
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
    return this.channel.sendEncoded(kind, type, encoded, id, headers);
  }

  public sendNow(kind: EFrameKind, type: string, encoded: IEncodedPayload, id: number): void {
    if (!this.channel.isConnected) throw new IpcError('CONNECTION_LOST', 'connection lost');
    try {
      this.channel.sendEncodedNow(kind, type, encoded, id);
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
      open = decodePayload(frame.flags, frame.payload) as IStreamOpenPayload;
      if (open === null || typeof open !== 'object') throw new Error('not an object');
    } catch (err) {
      refuse(new IpcError('PROTOCOL_ERROR', `stream "${streamId}": unreadable open frame (${(err as Error).message})`));
      return;
    }
    if (this.channel.listenerCount('stream') === 0) {
      refuse(new IpcError('NO_HANDLER', `no 'stream' listener on the receiving side for stream "${streamId}"`));
      return;
    }
    const meta = open.meta !== null && typeof open.meta === 'object' ? open.meta : {};
    const info: IStreamInfo = { streamId, meta, headers: frame.headers ?? {}, peerId: this.channel.peerId, objectMode: open.objectMode === true };
    const stream = new IncomingStream(this, frame.id, info, open.checksum === 'sha256' ? 'sha256' : 'none', STREAM_WINDOW_BYTES);
    this.incoming.set(frame.id, stream);
    this.incomingByStreamId.set(streamId, stream);
    try {
      this.channel.emit('stream', info, stream);
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
