import * as plugins from '../../plugins.js';
import { IpcError, isIpcError } from '../../smartipc.errors.js';
import { EFrameKind, EPayloadEncoding, type TSerialization } from '../../interfaces/wire.js';
import type { IStreamMeta, TStreamSource } from '../../interfaces/streams.js';
import { encodePayload, type IEncodedPayload } from '../serializer.js';
import { SendCredit } from './classes.creditwindow.js';
import { chunkCost, FROM_SENDER, jsonPayload, toCancelPayload, type IStreamEndPayload, type IStreamOpenPayload, type TChecksum } from './protocol.js';

/** What a sending stream needs from its channel. */
export interface IStreamSendHost {
  readonly isConnected: boolean;
  readonly serialization: TSerialization;
  /** Queues a frame; resolves when the transport can take more (its backpressure). */
  send(kind: EFrameKind, type: string, encoded: IEncodedPayload, id: number, headers?: Record<string, unknown>): Promise<void>;
  /** The stream is over (settled either way): drop it from the registry. */
  forget(stream: OutgoingStream): void;
}

export interface IOutgoingStreamSpec {
  id: number;
  streamId: string;
  meta: IStreamMeta;
  headers?: Record<string, unknown>;
  chunkSize: number;
  objectMode: boolean;
  checksum: TChecksum;
  signal?: AbortSignal;
}

/**
 * One stream being sent: announces itself, then reads the source only while it holds credit
 * (so a slow receiver slows the source), sends each piece as a chunk frame (payloads go to the
 * socket by reference), ends with the byte count (and digest), and resolves on the receiver's
 * acknowledgement. Any failure destroys the source and rejects.
 */
export class OutgoingStream {
  public readonly credit = new SendCredit();
  private failure?: IpcError;
  private finished = false;
  /** Rejects whatever the stream is waiting on (source, credit, drain, acknowledgement) when it fails. */
  private interrupt?: (error: IpcError) => void;
  private acknowledge?: () => void;
  private iterator?: AsyncIterator<unknown>;
  private bytes = 0;
  private chunks = 0;
  private readonly hash?: plugins.crypto.Hash;
  private readonly onAbort = () => {
    this.fail(new IpcError('ABORTED', `stream "${this.spec.streamId}" was aborted`, { cause: this.spec.signal?.reason }), true);
  };

  constructor(
    private readonly host: IStreamSendHost,
    private readonly spec: IOutgoingStreamSpec,
    private readonly source: TStreamSource,
  ) {
    if (spec.checksum === 'sha256') this.hash = plugins.crypto.createHash('sha256');
  }

  public get id(): number {
    return this.spec.id;
  }

  public get streamId(): string {
    return this.spec.streamId;
  }

  /** Runs the whole stream; settles once. */
  public async run(): Promise<void> {
    this.spec.signal?.addEventListener('abort', this.onAbort, { once: true });
    try {
      const open: IStreamOpenPayload = { meta: this.spec.meta, objectMode: this.spec.objectMode, checksum: this.spec.checksum };
      await this.wait(this.host.send(EFrameKind.StreamOpen, this.spec.streamId, encodePayload(open, this.host.serialization, `stream "${this.spec.streamId}" meta`), this.spec.id, this.spec.headers));
      await this.pump();
      const acknowledged = new Promise<void>((resolve) => {
        this.acknowledge = resolve;
      });
      const end: IStreamEndPayload = { bytes: this.bytes, chunks: this.chunks, ...(this.hash ? { sha256: this.hash.digest('hex') } : {}) };
      this.checkUsable();
      await this.wait(this.host.send(EFrameKind.StreamEnd, FROM_SENDER, jsonPayload(end), this.spec.id));
      await this.wait(acknowledged);
      this.finished = true;
    } catch (err) {
      const error = this.failure ?? this.sourceFailure(err);
      this.fail(error, true);
      throw error;
    } finally {
      this.spec.signal?.removeEventListener('abort', this.onAbort);
      this.host.forget(this);
    }
  }

  public onCredit(bytes: number): void {
    this.credit.grant(bytes);
  }

  public onAcknowledged(): void {
    this.acknowledge?.();
  }

  /**
   * Stops the stream: destroys the source, tells the receiver (when `notifyPeer` and the link is
   * up) and rejects the pending run. No-op once settled.
   */
  public fail(error: IpcError, notifyPeer: boolean): void {
    if (this.finished || this.failure) return;
    this.failure = error;
    if (notifyPeer && this.host.isConnected) {
      // The receiver always sees STREAM_CANCELLED; the message says why.
      const payload = { ...toCancelPayload(error), code: 'STREAM_CANCELLED' as const };
      this.host.send(EFrameKind.StreamCancel, FROM_SENDER, jsonPayload(payload), this.spec.id).catch(() => undefined);
    }
    this.stopSource();
    this.interrupt?.(error);
  }

  /** Reads the source and sends it as chunks, within the credit. */
  private async pump(): Promise<void> {
    const iterator = (this.source as AsyncIterable<unknown>)[Symbol.asyncIterator]();
    this.iterator = iterator;
    for (;;) {
      const step = await this.wait(iterator.next());
      if (step.done) return;
      if (this.spec.objectMode) {
        await this.sendObject(step.value);
        continue;
      }
      const buffer = toBuffer(step.value);
      const chunkSize = this.spec.chunkSize;
      for (let offset = 0; offset < buffer.length; offset += chunkSize) {
        const piece = offset === 0 && buffer.length <= chunkSize ? buffer : buffer.subarray(offset, offset + chunkSize);
        await this.sendChunk({ encoding: EPayloadEncoding.Binary, payload: piece }, piece.length);
      }
    }
  }

  private async sendObject(value: unknown): Promise<void> {
    if (value === null) throw new IpcError('PROTOCOL_ERROR', 'object-mode streams cannot carry null (it would end the receiver\'s readable)');
    const encoded = encodePayload(value, this.host.serialization, `stream "${this.spec.streamId}" value`);
    const payload = encoded.payload;
    const bytes = payload === undefined ? 0 : typeof payload === 'string' ? Buffer.byteLength(payload, 'utf8') : payload.length;
    await this.sendChunk(encoded, bytes);
  }

  private async sendChunk(encoded: IEncodedPayload, bytes: number): Promise<void> {
    if (bytes === 0 && !this.spec.objectMode) return;
    if (!this.credit.hasCredit) await this.wait(this.credit.whenAvailable());
    this.checkUsable();
    const queued = this.host.send(EFrameKind.StreamChunk, '', encoded, this.spec.id);
    this.credit.spend(chunkCost(bytes, this.spec.objectMode));
    this.bytes += bytes;
    this.chunks++;
    if (this.hash && encoded.payload !== undefined) this.hash.update(encoded.payload);
    await this.wait(queued);
  }

  /** A frame must never wait in a reconnect outbox: a stream lives and dies with its connection. */
  private checkUsable(): void {
    if (this.failure) throw this.failure;
    if (!this.host.isConnected) throw new IpcError('CONNECTION_LOST', `stream "${this.spec.streamId}": connection lost`);
  }

  /** Awaits `promise` unless the stream fails first. One wait at a time, so no listener piles up. */
  private wait<T>(promise: Promise<T>): Promise<T> {
    if (this.failure) {
      promise.catch(() => undefined);
      return Promise.reject(this.failure);
    }
    return new Promise<T>((resolve, reject) => {
      this.interrupt = reject;
      promise.then(
        (value) => {
          this.interrupt = undefined;
          resolve(value);
        },
        (err) => {
          this.interrupt = undefined;
          reject(err);
        },
      );
    });
  }

  private sourceFailure(err: unknown): IpcError {
    if (isIpcError(err)) return err;
    const message = err instanceof Error ? err.message : String(err);
    return new IpcError('STREAM_CANCELLED', `stream "${this.spec.streamId}": the source failed: ${message}`, { cause: err });
  }

  private stopSource(): void {
    const source = this.source as Partial<plugins.stream.Readable>;
    try {
      if (typeof source.destroy === 'function') source.destroy();
      else if (typeof this.iterator?.return === 'function') Promise.resolve(this.iterator.return()).catch(() => undefined);
    } catch {
      // a source that cannot be stopped is left to its owner
    }
  }
}

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8');
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new IpcError('PROTOCOL_ERROR', `binary streams carry Buffers, Uint8Arrays or strings, got ${typeof chunk}; pass objectMode: true to send values`);
}
