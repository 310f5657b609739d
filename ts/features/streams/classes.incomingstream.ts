import * as plugins from '../../plugins.js';
import { IpcError } from '../../smartipc.errors.js';
import { STREAM_OBJECT_HIGH_WATER_MARK } from '../../smartipc.defaults.js';
import { EFrameKind, EPayloadEncoding, FLAG_ENCODING_MASK, type IFrame } from '../../interfaces/wire.js';
import type { IStreamInfo } from '../../interfaces/streams.js';
import type { IEncodedPayload } from '../../channel/serializer.js';
import { ReceiveWindow } from './classes.creditwindow.js';
import { chunkCost, creditPayload, FROM_RECEIVER, jsonPayload, protocolError, toCancelPayload, type IStreamEndPayload, type TChecksum } from './protocol.js';

/** What a receiving stream needs from its channel. */
export interface IStreamReceiveHost {
  send(kind: EFrameKind, type: string, encoded: IEncodedPayload, id: number): Promise<void>;
  /** Decodes an object-mode chunk for the connection's serialization (PROTOCOL_ERROR otherwise). */
  decode(frame: IFrame): unknown;
  /** The stream no longer takes frames: drop it from the registry. */
  forget(stream: IncomingStream): void;
}

type TIncomingState = 'open' | 'complete' | 'closed';

/**
 * The receiver's readable. Credit is granted as the consumer reads (see `read`):
 * a reader that stops makes the sender stop after at most one window. The end frame's byte count
 * (and digest) is checked before the readable ends; a mismatch errors it with PROTOCOL_ERROR and
 * tells the sender.
 */
export class IncomingStream extends plugins.stream.Readable {
  /** 'complete': everything arrived and checked (the reader may still be busy); 'closed': cancelled or failed. */
  private state: TIncomingState = 'open';
  private readonly window: ReceiveWindow;
  private bytes = 0;
  private chunks = 0;
  private readonly hash?: plugins.crypto.Hash;
  /** Object mode: credit cost of each value pushed and not yet read, oldest first. */
  private costs: number[] = [];
  private costsHead = 0;
  private costsBytes = 0;
  private creditCheckScheduled = false;

  constructor(
    private readonly host: IStreamReceiveHost,
    public readonly id: number,
    public readonly info: IStreamInfo,
    checksum: TChecksum,
    windowBytes: number,
  ) {
    super({ objectMode: info.objectMode, highWaterMark: info.objectMode ? STREAM_OBJECT_HIGH_WATER_MARK : windowBytes });
    this.window = new ReceiveWindow(windowBytes);
    if (checksum === 'sha256') this.hash = plugins.crypto.createHash('sha256');
  }

  public get streamId(): string {
    return this.info.streamId;
  }

  public handleChunk(frame: IFrame): void {
    if (this.state !== 'open') return;
    const payload = frame.payload;
    const objectMode = this.info.objectMode;
    const cost = chunkCost(payload.length, objectMode);
    if (!this.window.accept(cost)) {
      this.failProtocol(`stream "${this.streamId}": the sender sent beyond the credit it was granted`);
      return;
    }
    this.bytes += payload.length;
    this.chunks++;
    this.hash?.update(payload);
    if (!objectMode) {
      if ((frame.flags & FLAG_ENCODING_MASK) !== EPayloadEncoding.Binary) {
        this.failProtocol(`stream "${this.streamId}": a binary stream got a non-binary chunk`);
        return;
      }
      // A view into the received bytes, which are never reused (see IFrame): no copy needed.
      this.push(payload);
      return;
    }
    let value: unknown;
    try {
      value = this.host.decode(frame);
    } catch (err) {
      this.failProtocol(`stream "${this.streamId}": ${(err as Error).message}`);
      return;
    }
    if (value === null) {
      this.failProtocol(`stream "${this.streamId}": an object-mode chunk was null`);
      return;
    }
    this.costs.push(cost);
    this.costsBytes += cost;
    this.push(value);
  }

  public handleEnd(frame: IFrame): void {
    if (this.state !== 'open') return;
    let end: Partial<IStreamEndPayload>;
    try {
      end = JSON.parse(frame.payload.toString('utf8')) as Partial<IStreamEndPayload>;
    } catch {
      this.failProtocol(`stream "${this.streamId}": unreadable end frame`);
      return;
    }
    if (end.bytes !== this.bytes || end.chunks !== this.chunks) {
      this.failProtocol(`stream "${this.streamId}": the sender sent ${end.bytes} bytes in ${end.chunks} chunks, ${this.bytes} bytes in ${this.chunks} chunks arrived`);
      return;
    }
    if (this.hash) {
      const digest = this.hash.digest('hex');
      if (end.sha256 !== digest) {
        this.failProtocol(`stream "${this.streamId}": sha256 mismatch (sender ${String(end.sha256)}, received ${digest})`);
        return;
      }
    }
    this.state = 'complete';
    this.host.forget(this);
    this.host.send(EFrameKind.StreamEnd, FROM_RECEIVER, { encoding: EPayloadEncoding.None, payload: undefined }, this.id).catch(() => undefined);
    this.push(null);
  }

  /** The sender cancelled, or the connection dropped: the readable errors with `error`. Data that all arrived is kept. */
  public abort(error: IpcError): void {
    if (this.state !== 'open') return;
    this.markClosed();
    this.destroy(error);
  }

  /** Cancelled by this side: the sender learns `reason`; the readable closes without an error. */
  public cancel(reason: IpcError): void {
    if (this.state !== 'open') return;
    this.markClosed();
    this.tellSender(reason);
    this.destroy();
  }

  /**
   * Every consumer (pipe, 'data', 'readable', async iteration) takes data through read(), so
   * credit is reconsidered after each read, once the data it took has left the buffer. (_read
   * alone is not enough: Node calls it before removing what it reads, and not again until a push,
   * so a grant refused there could never be revisited.)
   */
  public override read(size?: number): any {
    const chunk = super.read(size);
    this.scheduleCreditCheck();
    return chunk;
  }

  public override _read(): void {
    this.scheduleCreditCheck();
  }

  private scheduleCreditCheck(): void {
    if (this.creditCheckScheduled || this.state !== 'open') return;
    this.creditCheckScheduled = true;
    process.nextTick(this.checkCredit);
  }

  private readonly checkCredit = (): void => {
    this.creditCheckScheduled = false;
    if (this.state !== 'open') return;
    const grant = this.window.grantFor(this.unreadBytes());
    if (grant > 0) this.host.send(EFrameKind.StreamCredit, '', creditPayload(grant), this.id).catch(() => undefined);
  };

  /**
   * The consumer destroyed the readable (pipeline failure, early exit): the sender is told why.
   * Like http.IncomingMessage, the error is emitted only to an 'error' listener (pipeline, for
   * await and stream.finished add one): a peer that dies must not crash a process whose code
   * merely `.pipe()`d the stream somewhere.
   */
  public override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.state === 'open') {
      this.markClosed();
      this.tellSender(error ?? new IpcError('STREAM_CANCELLED', `stream "${this.streamId}" was destroyed by its reader`));
    }
    callback(error && this.listenerCount('error') > 0 ? error : null);
  }

  private failProtocol(message: string): void {
    const error = protocolError(message);
    this.markClosed();
    this.tellSender(error);
    this.destroy(error);
  }

  private markClosed(): void {
    this.state = 'closed';
    this.host.forget(this);
  }

  private tellSender(reason: Error): void {
    this.host.send(EFrameKind.StreamCancel, FROM_RECEIVER, jsonPayload(toCancelPayload(reason)), this.id).catch(() => undefined);
  }

  /** Credit-relevant bytes the reader has not taken yet. */
  private unreadBytes(): number {
    if (!this.info.objectMode) return this.readableLength;
    const unreadValues = this.readableLength;
    while (this.costs.length - this.costsHead > unreadValues) {
      this.costsBytes -= this.costs[this.costsHead++];
    }
    if (this.costsHead > 1024 && this.costsHead * 2 > this.costs.length) {
      this.costs = this.costs.slice(this.costsHead);
      this.costsHead = 0;
    }
    return this.costsBytes;
  }
}
