import type { Duplex } from 'node:stream';
import { IpcError, fromSocketError } from '../smartipc.errors.js';
import { EARLY_FLUSH_BYTES, END_DESTROY_AFTER_MS, WRITE_HIGH_WATER_MARK_BYTES } from '../smartipc.defaults.js';
import type { EFrameKind, EPayloadEncoding, IFrame, IOutgoingFrame } from '../interfaces/wire.js';
import type { TTransportKind } from '../interfaces/options.js';
import { FrameDecoder, FrameEncoder, type IFrameDecoderSink } from './classes.framecodec.js';
import { debug } from '../smartipc.log.js';

/** What a link reports to its owner. Plain callbacks: this is the hot path. */
export interface ILinkHandler {
  onFrame(frame: IFrame): void;
  /** The bytes were not a valid frame; the link is being destroyed. */
  onFrameError(error: IpcError): void;
  /** Called exactly once. `error` is undefined for a clean close by either side. */
  onClose(error: IpcError | undefined): void;
}

export interface IByteCounters {
  bytesSent: number;
  bytesReceived: number;
}

/** Who is at the other end, as far as the medium knows. */
export interface ILinkPeer {
  kind: TTransportKind;
  /** The peer's certificate on a TLS link that asked for one (mutual TLS). */
  tlsPeerCertificate?: import('node:tls').PeerCertificate;
  /** Mutual TLS: why the peer's certificate is not trusted (the server refuses it with TLS_ERROR). */
  tlsAuthorizationError?: string;
}

/** Bytes that several links together may hold for frames not fully arrived (a server's cap). */
export interface IPartialFrameBudget {
  used: number;
  readonly limit: number;
}

export interface ILinkOptions {
  /** Largest frame accepted from the peer (a server starts a link with its small handshake limit). */
  maxMessageSize: number;
  /** Shared with the server's other links: going over it closes this link. */
  partialBudget?: IPartialFrameBudget;
  /** The endpoint, for messages: a path, host:port or 'child process 1234'. */
  description: string;
  peer: ILinkPeer;
}

/**
 * One framed, bidirectional connection over any byte stream (a socket, a pipe, an in-memory
 * Duplex). Frames written in one tick leave in one write; `write()` returning false (or a large
 * unflushed queue) is reported by `needsDrain` and awaited with `waitForDrain()`. The medium that
 * opened the stream is not known here: see framing/media/.
 */
export class FramedLink implements IFrameDecoderSink {
  private counters: IByteCounters = { bytesSent: 0, bytesReceived: 0 };
  private receivedAt = 0;
  private peerLimit: number;
  private handler?: ILinkHandler;
  private readonly encoder = new FrameEncoder();
  private readonly decoder: FrameDecoder;
  private flushScheduled = false;
  /** Bytes of an incomplete frame counted in the partial budget, and since when (Date.now(); 0: none). */
  private partialBytes = 0;
  private partialSinceMs = 0;
  /** The decoder's frame count when partialSinceMs was set: another frame completed since means another frame began. */
  private partialFramesDecoded = 0;
  /** True while the frames of a received chunk are being handled (see scheduleFlush). */
  private dispatching = false;
  private closed = false;
  private closeError?: IpcError;
  private drainWaiters: Array<() => void> = [];

  constructor(private readonly stream: Duplex, private readonly options: ILinkOptions) {
    this.decoder = new FrameDecoder(options.maxMessageSize, this);
    this.peerLimit = options.maxMessageSize;
    (stream as { setNoDelay?: (noDelay: boolean) => void }).setNoDelay?.(true);
    // Each 'data' chunk is a fresh Buffer; frames handed on may keep views of it (see IFrame).
    stream.on('data', (chunk: Buffer) => {
      this.counters.bytesReceived += chunk.length;
      const now = Date.now();
      this.receivedAt = now;
      this.dispatching = true;
      try {
        this.decoder.push(chunk);
      } finally {
        this.dispatching = false;
      }
      this.trackPartial(now);
    });
    stream.on('drain', () => this.releaseDrainWaiters());
    stream.on('error', (err) => {
      this.closeError ??= fromSocketError(err, `connection to ${this.describe()} failed`);
    });
    // A plain Duplex does not end its writable side when the readable side ends (a socket with
    // allowHalfOpen false does): end it, so 'close' follows on every kind of stream.
    stream.on('end', () => stream.end());
    stream.on('close', () => this.finish());
    if (stream.destroyed) process.nextTick(() => this.finish());
  }

  /** Human-readable endpoint for messages. */
  public describe(): string {
    return this.options.description;
  }

  public get peer(): ILinkPeer {
    return this.options.peer;
  }

  public get isOpen(): boolean {
    return !this.closed;
  }

  /** Open and not ending: a frame sent now still goes out. */
  public get isWritable(): boolean {
    return !this.closed && !this.stream.writableEnded;
  }

  public setHandler(handler: ILinkHandler): void {
    this.handler = handler;
  }

  /** Counts bytes into `counters` from now on (an owner aggregates several links in one object). */
  public countInto(counters: IByteCounters): void {
    this.counters = counters;
  }

  /** Date.now() of the last bytes received: taken once per chunk, not per frame. */
  public get lastReceivedAt(): number {
    return this.receivedAt;
  }

  /** The peer's maxMessageSize, once the handshake told it; until then our own. */
  public get peerMaxMessageSize(): number {
    return this.peerLimit;
  }

  public setPeerMaxMessageSize(bytes: number): void {
    this.peerLimit = bytes;
  }

  /** The largest frame accepted from the peer from now on (small until the handshake completes). */
  public setMaxIncomingFrameBytes(bytes: number): void {
    this.decoder.setMaxFrameBytes(bytes);
  }

  /** Bytes held for a frame that has started to arrive but is not complete. */
  public get partialFrameBytes(): number {
    return this.decoder.bufferedBytes;
  }

  /** Date.now() when the incomplete frame began to arrive, 0 when there is none (a server times it). */
  public get partialSince(): number {
    return this.partialSinceMs;
  }

  /** Time this side was not running (a stopped process, a blocked event loop) is not the peer's: the frame's clock moves on by it. */
  public excusePartialFrame(ms: number): void {
    if (this.partialSinceMs !== 0) this.partialSinceMs += ms;
  }

  /**
   * IFrameDecoderSink: a large frame is assembled in place (a copy that leaves the chunks already
   * received as garbage) only while a quarter of the server's partial budget covers it; under
   * pressure chunks are kept as they came, so a flood of partial frames makes no garbage either.
   */
  public mayHold(bytes: number): boolean {
    const budget = this.options.partialBudget;
    return budget === undefined || budget.used - this.partialBytes + bytes <= budget.limit / 4;
  }

  /** After each chunk: when an incomplete frame began, and its share of the server's partial budget. */
  private trackPartial(now: number): void {
    const held = this.decoder.bufferedBytes;
    if (held === 0) {
      this.partialSinceMs = 0;
    } else if (this.partialSinceMs === 0 || this.decoder.framesDecoded !== this.partialFramesDecoded) {
      // Frames that keep arriving back to back, none ending where a chunk ends, are each timed on their own.
      this.partialSinceMs = now;
      this.partialFramesDecoded = this.decoder.framesDecoded;
    }
    const budget = this.options.partialBudget;
    if (budget === undefined || held === this.partialBytes) return;
    budget.used += held - this.partialBytes;
    this.partialBytes = held;
    if (budget.used > budget.limit && held > 0 && !this.closed) {
      this.destroy(new IpcError('PROTOCOL_ERROR', `connection from ${this.describe()} closed: incomplete frames of all connections hold over ${budget.limit} bytes`));
    }
  }

  /**
   * Queues a frame; it leaves with the others of this tick. Returns its size on the wire. Throws
   * MESSAGE_TOO_LARGE (nothing queued) when it exceeds the peer's limit, NOT_CONNECTED when closed.
   */
  public send(frame: IOutgoingFrame): number {
    this.assertOpen();
    const size = this.encoder.append(frame, this.peerLimit);
    this.scheduleFlush();
    return size;
  }

  /** `send` without a frame object: the per-message hot path. `headersJson` is the JSON text of the headers. */
  public sendFrame(
    kind: EFrameKind,
    encoding: EPayloadEncoding,
    id: number,
    type: string,
    headersJson: string | undefined,
    payload: Buffer | string | undefined,
    budgetMs = -1,
    attachments?: Buffer[],
  ): number {
    this.assertOpen();
    const size = this.encoder.appendFrame(kind, encoding, id, type, headersJson, payload, this.peerLimit, budgetMs, attachments);
    this.scheduleFlush();
    return size;
  }

  /** Queues a frame encoded once elsewhere (length prefix included), e.g. one publish for many subscribers. */
  public sendEncoded(frame: Buffer): number {
    this.assertOpen();
    const size = this.encoder.appendEncoded(frame, this.peerLimit);
    this.scheduleFlush();
    return size;
  }

  private assertOpen(): void {
    if (this.closed) throw new IpcError('NOT_CONNECTED', `connection to ${this.describe()} is closed`);
  }

  private scheduleFlush(): void {
    // Answers produced while a received chunk is being dispatched leave in slices, not at the end
    // of the chunk: the peer starts on the first answers while this side works on the rest.
    if (this.dispatching && this.encoder.pendingBytes >= EARLY_FLUSH_BYTES) {
      this.flush();
      return;
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(this.flush);
    }
  }

  /** True when callers should wait before queueing more. */
  public get needsDrain(): boolean {
    return this.encoder.pendingBytes > WRITE_HIGH_WATER_MARK_BYTES || this.stream.writableNeedDrain;
  }

  /** Bytes queued for the peer and not yet taken by the kernel: encoded this tick plus buffered in the stream. */
  public get queuedBytes(): number {
    return this.encoder.pendingBytes + this.stream.writableLength;
  }

  /** Resolves when the stream has taken enough of the queue (or the link closed). */
  public waitForDrain(): Promise<void> {
    if (this.encoder.pendingBytes > 0) this.flush();
    if (this.closed || !this.stream.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Writes what is queued now, in one syscall where possible. */
  public flush = (): void => {
    this.flushScheduled = false;
    const segments = this.encoder.take();
    if (this.closed || segments.length === 0 || this.stream.writableEnded) return;
    const stream = this.stream;
    if (segments.length === 1) {
      this.counters.bytesSent += segments[0].length;
      stream.write(segments[0]);
      return;
    }
    stream.cork();
    for (const segment of segments) {
      this.counters.bytesSent += segment.length;
      stream.write(segment);
    }
    stream.uncork();
  };

  /** Flushes, then half-closes: the peer sees a clean end after the last queued frame. */
  public end(): void {
    if (this.closed || this.stream.writableEnded) return;
    this.flush();
    this.stream.end();
    // A peer that never closes its side must not keep us open. Not sooner: closing with its bytes
    // unread would reset the connection, and a reset can discard our last frame (a REJECT) unread.
    const timer = setTimeout(() => this.stream.destroy(), END_DESTROY_AFTER_MS);
    timer.unref();
    this.stream.once('close', () => clearTimeout(timer));
  }

  /** Closes at once; queued frames are dropped. */
  public destroy(error?: IpcError): void {
    if (error) this.closeError ??= error;
    this.stream.destroy();
  }

  public onFrame(frame: IFrame): void {
    this.handler?.onFrame(frame);
  }

  public onFrameError(error: IpcError): void {
    debug('frame error from %s: %s', this.describe(), error.message);
    this.closeError ??= error;
    this.handler?.onFrameError(error);
    this.stream.destroy();
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.options.partialBudget !== undefined) {
      this.options.partialBudget.used -= this.partialBytes;
      this.partialBytes = 0;
    }
    this.releaseDrainWaiters();
    this.handler?.onClose(this.closeError);
  }

  private releaseDrainWaiters(): void {
    const waiters = this.drainWaiters;
    if (waiters.length === 0) return;
    this.drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
