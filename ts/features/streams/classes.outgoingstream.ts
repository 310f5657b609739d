import * as plugins from '../../plugins.js';
import { IpcError, isIpcError } from '../../smartipc.errors.js';
import { EFrameKind, EPayloadEncoding, type TSerialization } from '../../interfaces/wire.js';
import type { IStreamMeta, TStreamSource } from '../../interfaces/streams.js';
import { encodePayload, flattenAttachments, type IEncodedPayload } from '../../channel/serializer.js';
import { SendCredit } from './classes.creditwindow.js';
import { chunkCost, FROM_SENDER, jsonPayload, toCancelPayload, type IStreamEndPayload, type IStreamOpenPayload, type TChecksum } from './protocol.js';

/** What a sending stream needs from its channel. */
export interface IStreamSendHost {
  readonly isConnected: boolean;
  readonly serialization: TSerialization;
  /** Queues a frame; resolves when the transport can take more (its backpressure). */
  send(kind: EFrameKind, type: string, encoded: IEncodedPayload, id: number, headers?: Record<string, unknown>): Promise<void>;
  /** Queues a frame now, whatever is queued already (the caller checks `canWrite`); throws when it cannot. */
  sendNow(kind: EFrameKind, type: string, encoded: IEncodedPayload, id: number): void;
  /** False while the link holds so many unsent bytes that a stream should wait for `whenWritable()`. */
  readonly canWrite: boolean;
  /** Resolves once the link has written out its queue (or closed). */
  whenWritable(): Promise<void>;
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
 *
 * Pieces are queued synchronously while there is credit and room on the link; the stream waits
 * (and pauses its source) only when one of them runs out, not once per chunk.
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
  /** Binary mode: the source chunk being sent and how much of it went; object mode: a value waiting for credit. */
  private held?: Buffer;
  private heldOffset = 0;
  private heldValue?: IEncodedPayload;
  private heldValueBytes = 0;
  /** The link just drained: one piece may go without looking at its queue (a closing socket never "needs drain"). */
  private drained = false;
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
    const source = this.source;
    // A 'readable' listener would keep a flowing stream from flowing; such a source is iterated.
    if (source instanceof plugins.stream.Readable && source.listenerCount('readable') === 0) {
      await this.wait(this.pumpReadable(source));
      return;
    }
    const iterator = (source as AsyncIterable<unknown>)[Symbol.asyncIterator]();
    this.iterator = iterator;
    for (;;) {
      const step = await this.wait(iterator.next());
      if (step.done) return;
      this.take(step.value);
      while (!this.sendHeld()) await this.wait(this.whenSendable());
    }
  }

  /**
   * A stream.Readable is taken chunk by chunk as it was pushed ('data' in flowing mode), and
   * paused while credit or the link runs out. (Its async iterator calls read() without a size,
   * which concatenates everything buffered into a new Buffer: a copy of up to a highWaterMark per
   * step.) Settles when the source ended and all of it was sent, or with the source's error.
   * A failure of the stream itself interrupts the caller's wait and destroys the source.
   */
  private pumpReadable(source: plugins.stream.Readable): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let blocked = false;
      let ended = false;
      let settled = false;
      /** The source failed while the stream was blocked: reported when it would read again, as iterating would. */
      let failedWhileBlocked: Error | undefined;
      // Chunks emitted while blocked (pause() stops a flowing Readable at once; this is a safety net).
      const early: unknown[] = [];
      let stopWatching = (): void => undefined;
      const settle = (error?: unknown): void => {
        if (settled) return;
        settled = true;
        source.removeListener('data', onData);
        stopWatching();
        if (error === undefined) resolve();
        else reject(error);
      };
      const block = (): void => {
        blocked = true;
        source.pause();
        this.whenSendable().then(() => {
          if (settled) return;
          if (failedWhileBlocked) {
            settle(failedWhileBlocked);
            return;
          }
          blocked = false;
          advance();
        }, settle);
      };
      /** Sends what is held and what came early; then lets the source flow again (or settles once it ended). */
      const advance = (): void => {
        try {
          while (this.sendHeld()) {
            if (early.length === 0) {
              if (ended) settle();
              else source.resume();
              return;
            }
            this.take(early.shift());
          }
        } catch (err) {
          settle(err);
          return;
        }
        block();
      };
      const onData = (chunk: unknown): void => {
        if (settled) return;
        if (blocked) {
          early.push(chunk);
          return;
        }
        try {
          this.take(chunk);
          if (this.sendHeld()) return;
        } catch (err) {
          settle(err);
          return;
        }
        block();
      };
      // 'end' may come while the last chunk still waits for credit: settle only when it is sent.
      // Errors and a close before the end (ERR_STREAM_PREMATURE_CLOSE) reject, as iterating would;
      // while blocked, only once credit came (the source's read-ahead is not a read of ours).
      stopWatching = plugins.stream.finished(source, { writable: false }, (err) => {
        if (err) {
          if (blocked) failedWhileBlocked = err;
          else settle(err);
          return;
        }
        ended = true;
        if (!blocked) settle();
      });
      source.on('data', onData);
      source.resume();
    });
  }

  /** Takes the next value of the source in hand (a Buffer to split, or an encoded value). */
  private take(value: unknown): void {
    if (!this.spec.objectMode) {
      this.held = toBuffer(value);
      this.heldOffset = 0;
      return;
    }
    if (value === null) throw new IpcError('PROTOCOL_ERROR', 'object-mode streams cannot carry null (it would end the receiver\'s readable)');
    // Counted and hashed as the frame carries it (nested Buffers included).
    const encoded = flattenAttachments(encodePayload(value, this.host.serialization, `stream "${this.spec.streamId}" value`));
    const payload = encoded.payload;
    this.heldValue = encoded;
    this.heldValueBytes = payload === undefined ? 0 : typeof payload === 'string' ? Buffer.byteLength(payload, 'utf8') : payload.length;
  }

  /** Sends as much of what is in hand as credit and the link allow; true once all of it went. */
  private sendHeld(): boolean {
    if (this.spec.objectMode) {
      const encoded = this.heldValue;
      if (encoded === undefined) return true;
      if (!this.maySend()) return false;
      this.heldValue = undefined;
      this.sendChunk(encoded, this.heldValueBytes);
      return true;
    }
    const buffer = this.held;
    if (buffer === undefined) return true;
    const length = buffer.length;
    const chunkSize = this.spec.chunkSize;
    let offset = this.heldOffset;
    while (offset < length) {
      if (!this.maySend()) {
        this.heldOffset = offset;
        return false;
      }
      const end = Math.min(offset + chunkSize, length);
      // Oversized chunks are split into views, not copies.
      const piece = offset === 0 && end === length ? buffer : buffer.subarray(offset, end);
      this.sendChunk({ encoding: EPayloadEncoding.Binary, payload: piece }, piece.length);
      offset = end;
    }
    this.held = undefined;
    return true;
  }

  private maySend(): boolean {
    if (!this.credit.hasCredit) return false;
    if (this.drained) {
      this.drained = false;
      return true;
    }
    return this.host.canWrite;
  }

  /** Resolves once a piece may go: there is credit, and the link has room (or just drained). */
  private async whenSendable(): Promise<void> {
    if (!this.credit.hasCredit) await this.credit.whenAvailable();
    this.checkUsable();
    if (!this.host.canWrite) {
      await this.host.whenWritable();
      this.drained = true;
    }
  }

  private sendChunk(encoded: IEncodedPayload, bytes: number): void {
    this.checkUsable();
    this.host.sendNow(EFrameKind.StreamChunk, '', encoded, this.spec.id);
    this.credit.spend(chunkCost(bytes, this.spec.objectMode));
    this.bytes += bytes;
    this.chunks++;
    if (this.hash && encoded.payload !== undefined) this.hash.update(encoded.payload);
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
