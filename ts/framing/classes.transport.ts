import * as plugins from '../plugins.js';
import { IpcError, fromSocketError } from '../smartipc.errors.js';
import { END_DESTROY_AFTER_MS, WRITE_HIGH_WATER_MARK_BYTES } from '../smartipc.defaults.js';
import type { EFrameKind, EPayloadEncoding, IFrame, IOutgoingFrame } from '../interfaces/wire.js';
import type { TAddress } from '../interfaces/options.js';
import { FrameDecoder, FrameEncoder, type IFrameDecoderSink } from './classes.framecodec.js';
import { debug } from '../smartipc.log.js';

/** What a transport reports to its owner. Plain callbacks: this is the hot path. */
export interface ITransportHandler {
  onFrame(frame: IFrame): void;
  /** The bytes were not a valid frame; the transport is being destroyed. */
  onFrameError(error: IpcError): void;
  /** Called exactly once. `error` is undefined for a clean close by either side. */
  onClose(error: IpcError | undefined): void;
}

export interface IByteCounters {
  bytesSent: number;
  bytesReceived: number;
}

export interface ITransportLimits {
  /** Largest frame accepted from the peer. */
  maxMessageSize: number;
}

/** A bound listener of some medium. */
export interface IIpcListener {
  address(): TAddress;
  /** Stops accepting; resolves once the listening socket is closed and its file (if any) removed. */
  close(): Promise<void>;
}

/**
 * One framed, bidirectional connection over a byte stream. Frames written in one tick leave in
 * one write; `write()` returning false (or a large unflushed queue) is reported by `needsDrain`
 * and awaited with `waitForDrain()`. Subclasses only open and close sockets of their medium.
 */
export abstract class IpcTransport implements IFrameDecoderSink {
  /** Byte counters; an owner may swap in its own object to aggregate several connections. */
  public counters: IByteCounters = { bytesSent: 0, bytesReceived: 0 };
  /** Date.now() of the last bytes received: taken once per socket chunk, not per frame. */
  public lastReceivedAt = 0;
  /** The peer's maxMessageSize once the handshake told it; until then our own. */
  public peerMaxMessageSize: number;

  protected socket?: plugins.net.Socket;
  private handler?: ITransportHandler;
  private readonly encoder = new FrameEncoder();
  private readonly decoder: FrameDecoder;
  private flushScheduled = false;
  private closed = false;
  private closeError?: IpcError;
  private drainWaiters: Array<() => void> = [];

  constructor(protected readonly limits: ITransportLimits) {
    this.decoder = new FrameDecoder(limits.maxMessageSize, this);
    this.peerMaxMessageSize = limits.maxMessageSize;
  }

  /** Human-readable endpoint for messages: a path or host:port. */
  public abstract describe(): string;
  /** Opens a client socket of this medium. It must emit `connectEvent` once usable. */
  protected abstract dial(): plugins.net.Socket;
  /** The event that says a dialled socket is usable. */
  protected get connectEvent(): string {
    return 'connect';
  }
  /** Binds a listener of this medium; `onSocket` receives each accepted, usable socket. */
  public abstract listen(onSocket: (socket: plugins.net.Socket) => void): Promise<IIpcListener>;
  /** A transport of the same medium for an accepted socket. */
  public abstract forAccepted(socket: plugins.net.Socket): IpcTransport;

  public get isOpen(): boolean {
    return this.socket !== undefined && !this.closed;
  }

  public setHandler(handler: ITransportHandler): void {
    this.handler = handler;
  }

  /** Dials the endpoint. Rejects with the raw socket error (the caller decides what it means). */
  public connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = this.dial();
      const onError = (err: Error) => {
        socket.removeListener(this.connectEvent, onConnect);
        socket.destroy();
        reject(err);
      };
      const onConnect = () => {
        socket.removeListener('error', onError);
        this.attach(socket);
        resolve();
      };
      socket.once('error', onError);
      socket.once(this.connectEvent, onConnect);
    });
  }

  /** Takes over an open socket: from here on its bytes are frames. */
  public attach(socket: plugins.net.Socket): void {
    this.socket = socket;
    socket.setNoDelay?.(true);
    // Each 'data' chunk is a fresh Buffer; frames handed on may keep views of it (see IFrame).
    socket.on('data', (chunk: Buffer) => {
      this.counters.bytesReceived += chunk.length;
      this.lastReceivedAt = Date.now();
      this.decoder.push(chunk);
    });
    socket.on('drain', () => this.releaseDrainWaiters());
    socket.on('error', (err) => {
      this.closeError ??= fromSocketError(err, `connection to ${this.describe()} failed`);
    });
    socket.on('close', () => this.finish());
  }

  /**
   * Queues a frame; it leaves with the others of this tick. Returns its size on the wire. Throws
   * MESSAGE_TOO_LARGE (nothing queued) when it exceeds the peer's limit, NOT_CONNECTED when closed.
   */
  public send(frame: IOutgoingFrame): number {
    this.assertOpen();
    const size = this.encoder.append(frame, this.peerMaxMessageSize);
    this.scheduleFlush();
    return size;
  }

  /** `send` without a frame object: the per-message hot path. `headersJson` is the JSON text of the headers. */
  public sendFrame(kind: EFrameKind, encoding: EPayloadEncoding, id: number, type: string, headersJson: string | undefined, payload: Buffer | string | undefined): number {
    this.assertOpen();
    const size = this.encoder.appendFrame(kind, encoding, id, type, headersJson, payload, this.peerMaxMessageSize);
    this.scheduleFlush();
    return size;
  }

  /** Queues a frame encoded once elsewhere (length prefix included), e.g. one publish for many subscribers. */
  public sendEncoded(frame: Buffer): number {
    this.assertOpen();
    const size = this.encoder.appendEncoded(frame, this.peerMaxMessageSize);
    this.scheduleFlush();
    return size;
  }

  private assertOpen(): void {
    if (this.socket === undefined || this.closed) throw new IpcError('NOT_CONNECTED', `connection to ${this.describe()} is closed`);
  }

  private scheduleFlush(): void {
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(this.flush);
    }
  }

  /** True when callers should wait before queueing more. */
  public get needsDrain(): boolean {
    return this.encoder.pendingBytes > WRITE_HIGH_WATER_MARK_BYTES || this.socket?.writableNeedDrain === true;
  }

  /** Bytes queued for the peer and not yet taken by the kernel: encoded this tick plus buffered in the socket. */
  public get queuedBytes(): number {
    return this.encoder.pendingBytes + (this.socket?.writableLength ?? 0);
  }

  /** Resolves when the kernel has taken enough of the queue (or the connection closed). */
  public waitForDrain(): Promise<void> {
    if (this.encoder.pendingBytes > 0) this.flush();
    if (!this.isOpen || !this.socket!.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Writes what is queued now, in one syscall where possible. */
  public flush = (): void => {
    this.flushScheduled = false;
    const socket = this.socket;
    const segments = this.encoder.take();
    if (socket === undefined || this.closed || segments.length === 0) return;
    if (segments.length === 1) {
      this.counters.bytesSent += segments[0].length;
      socket.write(segments[0]);
      return;
    }
    socket.cork();
    for (const segment of segments) {
      this.counters.bytesSent += segment.length;
      socket.write(segment);
    }
    socket.uncork();
  };

  /** Flushes, then half-closes: the peer sees a clean end after the last queued frame. */
  public end(): void {
    if (!this.isOpen) return;
    this.flush();
    this.socket!.end();
    // A peer that never closes its side must not keep us open.
    const timer = setTimeout(() => this.socket?.destroy(), END_DESTROY_AFTER_MS);
    timer.unref();
    this.socket!.once('close', () => clearTimeout(timer));
  }

  /** Closes at once; queued frames are dropped. */
  public destroy(error?: IpcError): void {
    if (error) this.closeError ??= error;
    if (this.socket === undefined) {
      this.finish();
      return;
    }
    this.socket.destroy();
  }

  public onFrame(frame: IFrame): void {
    this.handler?.onFrame(frame);
  }

  public onFrameError(error: IpcError): void {
    debug('frame error from %s: %s', this.describe(), error.message);
    this.closeError ??= error;
    this.handler?.onFrameError(error);
    this.socket?.destroy();
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
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
