/**
 * Streams over NATS, with the core's OutgoingStream and IncomingStream (credit, checksum, object
 * mode, cancel) on a NATS link instead of a socket:
 *
 *   sender -> <ns>.str.<id>     open (queue group: one exposing host takes it), reply = <sender inbox>.s<n>
 *   receiver -> <sender>.s<n>   accept { to: <receiver inbox>.d<m> }, then credit (4 bytes, no headers), end (ack), cancel, ping
 *   sender -> <receiver>.d<m>   chunks (no headers), end { bytes, chunks, sha256? }, cancel, ping
 *
 * Chunks stay below the server's max_payload. A NATS drop fails every open stream with
 * CONNECTION_LOST at once; a peer that goes silent (no data, credit or ping for
 * NATS_STREAM_PEER_TIMEOUT_MS) fails it too, so a dead host never leaves a stream hanging.
 */
import * as plugins from './nats.plugins.js';
import { smartipc, type Msg } from './nats.plugins.js';
import {
  NATS_ENCODING,
  NATS_HEADER,
  NATS_STREAM_CHUNK_HEADROOM_BYTES,
  NATS_STREAM_PEER_TIMEOUT_MS,
  NATS_STREAM_PING_INTERVAL_MS,
  NATS_STREAM_WINDOW_BYTES,
} from './nats.constants.js';
import { InboundHeaders, asBuffer, decodeMsg, encodingFlags, fromEncoded, userHeaders, type TNatsPayload } from './nats.codec.js';
import type { NatsBridge } from './classes.natsbridge.js';
import { putUserHeaders } from './nats.codec.js';

const { EFrameKind, EPayloadEncoding } = smartipc;
type EFrameKind = smartipc.EFrameKind;

export interface INatsStreamEndpointOptions {
  /** The participant's inbox: feedback (`.s<n>`) and data (`.d<n>`) arrive under it. */
  inbox: string;
  json: boolean;
  maxConcurrentStreams: number;
  requestTimeoutMs: number;
  /** Sender identity on opens. */
  from: string;
  src: string;
  emitError(error: smartipc.IpcError): void;
}

const EMPTY = new Uint8Array(0);

function frameOf(kind: EFrameKind, flags: number, id: number, bytes: Uint8Array): smartipc.IFrame {
  const buf = asBuffer(bytes);
  return { kind, flags, id, type: '', budgetMs: -1, buf, payloadStart: 0, payloadEnd: buf.length, payload: buf };
}

function toPayload(encoded: smartipc.IEncodedPayload): TNatsPayload {
  return encoded.payload === undefined ? EMPTY : encoded.payload;
}

/** The sender's side of one stream. */
class OutgoingLink implements smartipc.IStreamSendHost {
  public stream!: smartipc.OutgoingStream;
  public dataSubject?: string;
  public lastHeard = performance.now();
  public lastSent = performance.now();
  private lost?: smartipc.IpcError;
  private opened?: { resolve: () => void; reject: (error: smartipc.IpcError) => void; timer: NodeJS.Timeout };

  constructor(
    private readonly endpoint: NatsStreamEndpoint,
    private readonly bridge: NatsBridge,
    public readonly n: number,
    private readonly targetId: string,
    public readonly streamId: string,
    private readonly objectMode: boolean,
  ) {}

  public get isConnected(): boolean {
    return this.bridge.isConnected && this.lost === undefined;
  }

  public get serialization(): smartipc.TSerialization {
    return this.endpoint.options.json ? 'json' : 'advanced';
  }

  public get canWrite(): boolean {
    return true;
  }

  public whenWritable(): Promise<void> {
    return Promise.resolve();
  }

  public send(kind: EFrameKind, type: string, encoded: smartipc.IEncodedPayload, _id: number, headers?: Record<string, unknown>): Promise<void> {
    try {
      if (!this.isConnected) throw this.lost ?? new smartipc.IpcError('CONNECTION_LOST', 'NATS connection lost');
      if (kind === EFrameKind.StreamOpen) return this.open(type, encoded, headers);
      if (this.dataSubject === undefined) return Promise.resolve(); // a cancel before the receiver accepted: nothing to tell
      const control = kind === EFrameKind.StreamEnd ? 'end' : kind === EFrameKind.StreamCancel ? 'cancel' : undefined;
      if (control === undefined) throw new smartipc.IpcError('PROTOCOL_ERROR', `unexpected stream frame kind ${kind}`);
      this.bridge.publish(this.dataSubject, toPayload(encoded), this.bridge.headers({ [NATS_HEADER.stream]: control }));
      this.lastSent = performance.now();
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  public sendNow(_kind: EFrameKind, _type: string, encoded: smartipc.IEncodedPayload): void {
    if (!this.isConnected) throw this.lost ?? new smartipc.IpcError('CONNECTION_LOST', 'NATS connection lost');
    // Bytes (the common case) go without headers; an object-mode value names its encoding unless it is JSON.
    const chunk = fromEncoded(encoded);
    const enc = chunk.encoding === NATS_ENCODING.binary && !this.objectMode ? undefined : chunk.encoding;
    this.bridge.checkSize(chunk.bytes + (enc === undefined ? 0 : 32), `stream "${this.streamId}" chunk`);
    this.bridge.publish(this.dataSubject!, chunk.payload, enc === undefined ? undefined : this.bridge.encodingHeaders(enc));
    this.lastSent = performance.now();
  }

  public forget(): void {
    this.endpoint.forgetOutgoing(this);
    if (this.opened) clearTimeout(this.opened.timer);
  }

  /** The link is gone (NATS dropped, or the peer went silent). */
  public fail(error: smartipc.IpcError): void {
    this.lost = error;
    this.settleOpen(error);
    this.stream.fail(error, false);
  }

  public onFeedback(msg: Msg): void {
    this.lastHeard = performance.now();
    const headers = msg.headers;
    if (headers === undefined) {
      if (msg.data.length === 4) this.stream.onCredit(asBuffer(msg.data).readUInt32BE(0));
      return;
    }
    if (headers.code === 503) {
      this.settleOpen(new smartipc.IpcError('NO_HANDLER', `no host on NATS takes streams for server "${this.targetId}" (no responders)`));
      return;
    }
    switch (headers.get(NATS_HEADER.stream)) {
      case 'accept': {
        try {
          const body = JSON.parse(asBuffer(msg.data).toString('utf8')) as { to?: unknown };
          if (typeof body.to !== 'string') throw new Error('no data subject');
          this.dataSubject = body.to;
          this.settleOpen();
        } catch (err) {
          this.settleOpen(new smartipc.IpcError('PROTOCOL_ERROR', `stream "${this.streamId}": unreadable accept (${(err as Error).message})`));
        }
        return;
      }
      case 'end':
        this.stream.onAcknowledged();
        return;
      case 'cancel': {
        const body = smartipc.parseCancelPayload(asBuffer(msg.data));
        const message = body.code === 'HANDLER_ERROR' ? `stream "${this.streamId}" failed at the receiver: ${body.message}` : body.message;
        const error = new smartipc.IpcError(body.code, message, body.remote ? { remote: body.remote } : {});
        if (this.opened) this.settleOpen(error);
        else this.stream.fail(error, false);
        return;
      }
      default:
        return; // ping
    }
  }

  public tick(now: number): void {
    if (this.dataSubject === undefined) return; // the open has its own timeout
    if (now - this.lastHeard > NATS_STREAM_PEER_TIMEOUT_MS) {
      this.fail(new smartipc.IpcError('CONNECTION_LOST', `stream "${this.streamId}": the receiving host has been silent for ${Math.round(now - this.lastHeard)} ms`));
      return;
    }
    if (now - this.lastSent > NATS_STREAM_PING_INTERVAL_MS && this.isConnected) {
      try {
        this.bridge.publish(this.dataSubject, EMPTY, this.bridge.headers({ [NATS_HEADER.stream]: 'ping' }));
        this.lastSent = now;
      } catch {
        // the drop is reported by the bridge
      }
    }
  }

  private open(streamId: string, encoded: smartipc.IEncodedPayload, headers?: Record<string, unknown>): Promise<void> {
    const fields: Record<string, string> = {
      [NATS_HEADER.from]: this.endpoint.options.from,
      [NATS_HEADER.src]: this.endpoint.options.src,
      [NATS_HEADER.stream]: 'open',
      [NATS_HEADER.streamId]: streamId,
    };
    putUserHeaders(fields, headers);
    const open = fromEncoded(encoded);
    if (open.encoding !== undefined) fields[NATS_HEADER.encoding] = open.encoding;
    return new Promise<void>((resolve, reject) => {
      const timeoutMs = this.endpoint.options.requestTimeoutMs;
      const timer = setTimeout(() => this.settleOpen(new smartipc.IpcError('TIMEOUT', `stream "${streamId}": no host accepted it within ${timeoutMs} ms`)), timeoutMs);
      timer.unref();
      this.opened = { resolve, reject, timer };
      try {
        this.bridge.publish(this.bridge.subjects.stream(this.targetId), open.payload, this.bridge.headers(fields), `${this.endpoint.options.inbox}.s${this.n}`);
        this.lastSent = performance.now();
      } catch (err) {
        this.settleOpen(err as smartipc.IpcError);
      }
    });
  }

  private settleOpen(error?: smartipc.IpcError): void {
    const opened = this.opened;
    if (!opened) return;
    this.opened = undefined;
    clearTimeout(opened.timer);
    this.lastHeard = performance.now();
    if (error) opened.reject(error);
    else opened.resolve();
  }
}

/** The receiver's side of one stream. */
class IncomingLink implements smartipc.IStreamReceiveHost {
  public stream!: smartipc.IncomingStream;
  public lastHeard = performance.now();
  public lastSent = performance.now();
  private verified = false;
  private delivered = false;
  private done = false;
  private cancelPayload?: TNatsPayload;
  private cancelSent = false;

  constructor(
    private readonly endpoint: NatsStreamEndpoint,
    private readonly bridge: NatsBridge,
    public readonly n: number,
    /** The sender's feedback subject. */
    private readonly feedback: string,
    public readonly objectMode: boolean,
  ) {}

  /** An object-mode chunk, by the encoding its Sipc-Enc header named (in the frame's flags). */
  public decode(frame: smartipc.IFrame): unknown {
    return smartipc.decodePayload((frame.flags & smartipc.wire.FLAG_ENCODING_MASK) !== EPayloadEncoding.V8, frame.flags, frame.buf, frame.payloadStart, frame.payloadEnd);
  }

  public send(kind: EFrameKind, _type: string, encoded: smartipc.IEncodedPayload): Promise<void> {
    try {
      if (!this.bridge.isConnected) throw new smartipc.IpcError('CONNECTION_LOST', 'NATS connection lost');
      if (kind === EFrameKind.StreamCredit) {
        this.bridge.publish(this.feedback, toPayload(encoded));
      } else if (kind === EFrameKind.StreamEnd) {
        // Everything arrived and checked; acknowledged once the local receiver has it too.
        this.verified = true;
        this.maybeAcknowledge();
        return Promise.resolve();
      } else if (kind === EFrameKind.StreamCancel) {
        // Sent on the next turn: when the local delivery fails, the readable is destroyed first
        // (a generic STREAM_CANCELLED) and the real reason (e.g. NO_HANDLER) follows as a rejection.
        this.done = true;
        this.cancelPayload = toPayload(encoded);
        setImmediate(() => this.flushCancel());
      }
      this.lastSent = performance.now();
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  public forget(): void {
    this.endpoint.forgetIncoming(this);
  }

  public onDelivered(error?: unknown): void {
    if (error === undefined) {
      this.delivered = true;
      this.maybeAcknowledge();
      return;
    }
    const reason = error instanceof smartipc.IpcError ? error : new smartipc.IpcError('HANDLER_ERROR', (error as Error)?.message ?? String(error), { cause: error, remote: smartipc.toRemoteError(error) });
    // The sender learns this reason, whether or not a cancel is already on its way.
    this.stream.cancel(reason);
    const payload = JSON.stringify(smartipc.toCancelPayload(reason));
    if (this.cancelPayload !== undefined) this.cancelPayload = payload;
    else if (!this.cancelSent) {
      this.done = true;
      this.cancelPayload = payload;
      this.flushCancel();
    }
    this.endpoint.forgetIncoming(this);
  }

  public onData(msg: Msg): void {
    this.lastHeard = performance.now();
    const headers = InboundHeaders.of(msg);
    const control = headers.any ? headers.get(NATS_HEADER.stream) : undefined;
    if (control === undefined) {
      let flags: number = EPayloadEncoding.Binary;
      if (this.objectMode) {
        try {
          flags = encodingFlags(headers.any ? headers.get(NATS_HEADER.encoding) : undefined, msg.data.length);
        } catch (err) {
          this.fail(err as smartipc.IpcError);
          return;
        }
      }
      this.stream.handleChunk(frameOf(EFrameKind.StreamChunk, flags, this.n, msg.data));
      return;
    }
    switch (control) {
      case 'end':
        this.stream.handleEnd(frameOf(EFrameKind.StreamEnd, EPayloadEncoding.Json, this.n, msg.data));
        return;
      case 'cancel': {
        const body = smartipc.parseCancelPayload(asBuffer(msg.data));
        this.done = true;
        this.stream.abort(new smartipc.IpcError('STREAM_CANCELLED', body.message, body.remote ? { remote: body.remote } : {}));
        this.endpoint.forgetIncoming(this);
        return;
      }
      default:
        return; // ping
    }
  }

  public fail(error: smartipc.IpcError): void {
    this.done = true;
    this.stream.abort(error);
    this.endpoint.forgetIncoming(this);
  }

  public tick(now: number): void {
    if (now - this.lastHeard > NATS_STREAM_PEER_TIMEOUT_MS && !this.verified) {
      this.fail(new smartipc.IpcError('CONNECTION_LOST', `stream "${this.stream.streamId}": the sending host has been silent for ${Math.round(now - this.lastHeard)} ms`));
      return;
    }
    if (now - this.lastSent > NATS_STREAM_PING_INTERVAL_MS && this.bridge.isConnected) {
      try {
        this.bridge.publish(this.feedback, EMPTY, this.bridge.headers({ [NATS_HEADER.stream]: 'ping' }));
        this.lastSent = now;
      } catch {
        // the drop is reported by the bridge
      }
    }
  }

  private flushCancel(): void {
    const payload = this.cancelPayload;
    if (payload === undefined || this.cancelSent) return;
    this.cancelPayload = undefined;
    this.cancelSent = true;
    try {
      this.bridge.publish(this.feedback, payload, this.bridge.headers({ [NATS_HEADER.stream]: 'cancel' }));
    } catch {
      // the sender fails on its own (drop or silence)
    }
  }

  private maybeAcknowledge(): void {
    if (!this.verified || !this.delivered || this.done) return;
    this.done = true;
    try {
      this.bridge.publish(this.feedback, EMPTY, this.bridge.headers({ [NATS_HEADER.stream]: 'end' }));
    } catch {
      // the sender fails on its own (drop or silence)
    }
    this.endpoint.forgetIncoming(this);
  }
}

/** The streams of one participant (a client sends, an exposure receives). */
export class NatsStreamEndpoint {
  private readonly outgoing = new Map<number, OutgoingLink>();
  private readonly outgoingByStreamId = new Map<string, OutgoingLink>();
  private readonly incoming = new Map<number, IncomingLink>();
  private lastN = 0;

  constructor(private readonly bridge: NatsBridge, public readonly options: INatsStreamEndpointOptions) {}

  public get outgoingCount(): number {
    return this.outgoing.size;
  }

  public get incomingCount(): number {
    return this.incoming.size;
  }

  // ---- sending ---------------------------------------------------------------------------------

  public sendStream(targetId: string, source: smartipc.TStreamSource, options: smartipc.ISendStreamOptions = {}): Promise<void> {
    let spec: smartipc.IOutgoingStreamSpec;
    try {
      spec = this.admit(options, (source as { readableObjectMode?: boolean }).readableObjectMode === true);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.start(targetId, spec, source);
  }

  public async sendFile(targetId: string, filePath: string, options: smartipc.ISendFileOptions = {}): Promise<void> {
    const stat = await plugins.fs.promises.stat(filePath);
    if (!stat.isFile()) throw smartipc.invalidArgument(`sendFile needs a regular file, ${filePath} is not one`);
    const meta: smartipc.IStreamMeta = { type: 'file', basename: plugins.path.basename(filePath), size: stat.size, ...options.meta };
    const spec = this.admit({ ...options, meta, objectMode: false, checksum: options.checksum ?? 'sha256' }, false);
    return this.start(targetId, spec, plugins.fs.createReadStream(filePath, { highWaterMark: spec.chunkSize }));
  }

  public cancelOutgoing(streamId: string, reason?: string): boolean {
    const link = this.outgoingByStreamId.get(streamId);
    if (!link) return false;
    link.stream.fail(new smartipc.IpcError('STREAM_CANCELLED', reason === undefined ? `stream "${streamId}" was cancelled by the sender` : `stream "${streamId}" was cancelled by the sender: ${reason}`), true);
    return true;
  }

  private admit(options: smartipc.ISendStreamOptions, sourceObjectMode: boolean): smartipc.IOutgoingStreamSpec {
    const maxChunk = this.bridge.maxPayload - NATS_STREAM_CHUNK_HEADROOM_BYTES;
    const asked = options.chunkSize ?? smartipc.defaults.DEFAULT_STREAM_CHUNK_SIZE_BYTES;
    if (!Number.isInteger(asked) || asked <= 0) throw smartipc.invalidArgument(`chunkSize must be a positive integer number of bytes, got ${String(options.chunkSize)}`);
    if (options.streamId !== undefined && (typeof options.streamId !== 'string' || options.streamId.length === 0)) throw smartipc.invalidArgument('streamId must be a non-empty string');
    if (options.signal?.aborted) throw new smartipc.IpcError('ABORTED', 'stream was aborted before it started', { cause: options.signal.reason });
    if (this.outgoing.size >= this.options.maxConcurrentStreams) {
      throw new smartipc.IpcError('TOO_MANY_STREAMS', `${this.outgoing.size} streams are already being sent by this client (maxConcurrentStreams ${this.options.maxConcurrentStreams})`);
    }
    const streamId = options.streamId ?? plugins.crypto.randomUUID();
    if (this.outgoingByStreamId.has(streamId)) throw new smartipc.IpcError('PROTOCOL_ERROR', `stream "${streamId}" is already being sent; streamIds must be unique`);
    this.lastN = this.lastN >= 0xffffffff ? 1 : this.lastN + 1;
    return {
      id: this.lastN,
      streamId,
      meta: options.meta ?? {},
      headers: options.headers,
      // Every chunk must fit one NATS message.
      chunkSize: Math.min(asked, maxChunk),
      objectMode: options.objectMode ?? sourceObjectMode,
      checksum: options.checksum ?? 'none',
      signal: options.signal,
    };
  }

  private start(targetId: string, spec: smartipc.IOutgoingStreamSpec, source: smartipc.TStreamSource): Promise<void> {
    const link = new OutgoingLink(this, this.bridge, spec.id, targetId, spec.streamId, spec.objectMode);
    link.stream = new smartipc.OutgoingStream(link, spec, source);
    this.outgoing.set(spec.id, link);
    this.outgoingByStreamId.set(spec.streamId, link);
    return link.stream.run();
  }

  /** @internal */
  public forgetOutgoing(link: OutgoingLink): void {
    if (this.outgoing.get(link.n) === link) this.outgoing.delete(link.n);
    if (this.outgoingByStreamId.get(link.streamId) === link) this.outgoingByStreamId.delete(link.streamId);
  }

  // ---- receiving -------------------------------------------------------------------------------

  /**
   * An open arrived on `<ns>.str.<id>`: accept it (and hand the readable to `deliver`) or refuse
   * it with a cancel that names the code.
   */
  public acceptOpen(msg: Msg, deliver: (info: smartipc.IStreamInfo, readable: plugins.stream.Readable) => Promise<void>): void {
    const feedback = msg.reply;
    if (!feedback) return;
    const headers = InboundHeaders.of(msg);
    const refuse = (error: smartipc.IpcError) => {
      try {
        this.bridge.publish(feedback, JSON.stringify(smartipc.toCancelPayload(error)), this.bridge.headers({ [NATS_HEADER.stream]: 'cancel' }));
      } catch {
        // the sender times out
      }
    };
    const streamId = headers.get(NATS_HEADER.streamId) ?? '';
    if (streamId.length === 0) {
      refuse(new smartipc.IpcError('PROTOCOL_ERROR', 'stream open without a streamId'));
      return;
    }
    if (this.incoming.size >= this.options.maxConcurrentStreams) {
      refuse(new smartipc.IpcError('TOO_MANY_STREAMS', `stream "${streamId}" refused: the receiving host already has ${this.incoming.size} open streams (maxConcurrentStreams ${this.options.maxConcurrentStreams})`));
      return;
    }
    let open: smartipc.IStreamOpenPayload;
    try {
      open = decodeMsg(msg, headers) as smartipc.IStreamOpenPayload;
      if (open === null || typeof open !== 'object') throw new Error('not an object');
    } catch (err) {
      refuse(new smartipc.IpcError('PROTOCOL_ERROR', `stream "${streamId}": unreadable open (${(err as Error).message})`));
      return;
    }
    this.lastN = this.lastN >= 0xffffffff ? 1 : this.lastN + 1;
    const n = this.lastN;
    const peerId = headers.get(NATS_HEADER.from) ?? '';
    const objectMode = open.objectMode === true;
    const info: smartipc.IStreamInfo = {
      streamId,
      meta: open.meta !== null && typeof open.meta === 'object' ? open.meta : {},
      headers: userHeaders(headers) ?? {},
      clientId: peerId,
      peerId,
      objectMode,
    };
    const link = new IncomingLink(this, this.bridge, n, feedback, objectMode);
    link.stream = new smartipc.IncomingStream(link, n, info, open.checksum === 'sha256' ? 'sha256' : 'none', NATS_STREAM_WINDOW_BYTES);
    this.incoming.set(n, link);
    try {
      this.bridge.publish(feedback, JSON.stringify({ to: `${this.options.inbox}.d${n}` }), this.bridge.headers({ [NATS_HEADER.stream]: 'accept' }));
    } catch (err) {
      this.incoming.delete(n);
      link.stream.destroy();
      this.options.emitError(err as smartipc.IpcError);
      return;
    }
    let delivering: Promise<void>;
    try {
      delivering = deliver(info, link.stream);
    } catch (err) {
      delivering = Promise.reject(err);
    }
    delivering.then(
      () => link.onDelivered(),
      (err: unknown) => link.onDelivered(err ?? new Error('stream delivery failed')),
    );
  }

  /** @internal */
  public forgetIncoming(link: IncomingLink): void {
    if (this.incoming.get(link.n) === link) this.incoming.delete(link.n);
  }

  // ---- routing, liveness, failure ----------------------------------------------------------------

  /** A message under this participant's inbox: `s<n>` feedback for a stream it sends, `d<n>` data for one it receives. */
  public onInbox(token: string, msg: Msg): void {
    const n = Number(token.slice(1));
    if (token.charCodeAt(0) === 0x73 /* s */) this.outgoing.get(n)?.onFeedback(msg);
    else if (token.charCodeAt(0) === 0x64 /* d */) this.incoming.get(n)?.onData(msg);
  }

  public tick(now: number): void {
    for (const link of [...this.outgoing.values()]) link.tick(now);
    for (const link of [...this.incoming.values()]) link.tick(now);
  }

  /** NATS dropped (or the participant closes): every open stream fails at once. */
  public failAll(reason: smartipc.IpcError): void {
    for (const link of [...this.outgoing.values()]) link.fail(new smartipc.IpcError('CONNECTION_LOST', `stream "${link.streamId}" lost: ${reason.message}`, { cause: reason }));
    for (const link of [...this.incoming.values()]) link.fail(new smartipc.IpcError('CONNECTION_LOST', `stream lost: ${reason.message}`, { cause: reason }));
  }
}
