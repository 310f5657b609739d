import { IpcError } from '../smartipc.errors.js';
import { readUtf8, writeUtf8 } from './utf8.js';
import { checkJsonDepth } from './jsondepth.js';

/** Headers are small JSON objects; nesting deeper than this is refused with the frame. */
const HEADERS_MAX_JSON_DEPTH = 64;
import { ASSEMBLE_IN_PLACE_FROM_BYTES, WRITE_COPY_THRESHOLD_BYTES, WRITE_SLAB_BYTES } from '../smartipc.defaults.js';
import {
  FLAG_ENCODING_MASK,
  FLAG_HAS_ATTACHMENTS,
  FLAG_HAS_BUDGET,
  FLAG_HAS_HEADERS,
  FLAG_KNOWN_BITS,
  FRAME_MAX_BUDGET_MS,
  FRAME_FIXED_HEADER_BYTES,
  FRAME_KIND_MAX,
  FRAME_MAX_TYPE_BYTES,
  FRAME_PREFIX_BYTES,
  type EFrameKind,
  type EPayloadEncoding,
  type IFrame,
  type IOutgoingFrame,
} from '../interfaces/wire.js';

/**
 * Encodes frames into a reusable slab so that many small frames become one contiguous write.
 * Payloads at or above WRITE_COPY_THRESHOLD_BYTES are not copied: they are queued by reference.
 * Pure: it knows nothing about sockets; `take()` hands over what was encoded so far.
 */
export class FrameEncoder {
  private slab: Buffer = Buffer.allocUnsafeSlow(WRITE_SLAB_BYTES);
  /** Start of the bytes not yet taken, and the write position, inside `slab`. */
  private start = 0;
  private offset = 0;
  /** Completed segments (slab views and by-reference payloads) in wire order. */
  private segments: Buffer[] = [];
  private segmentBytes = 0;
  /** The last type written and its UTF-8 bytes: runs of one type skip re-measuring and re-encoding it. */
  private lastType = '';
  private lastTypeBytes: Buffer = Buffer.alloc(0);

  /** Bytes encoded and not yet taken. */
  public get pendingBytes(): number {
    return this.segmentBytes + (this.offset - this.start);
  }

  /** Appends one frame described by an object (see `appendFrame` for the hot path). */
  public append(frame: IOutgoingFrame, maxFrameBytes: number): number {
    const headersJson = frame.headers === undefined ? undefined : JSON.stringify(frame.headers);
    return this.appendFrame(frame.kind, frame.encoding, frame.id, frame.type, headersJson, frame.payload, maxFrameBytes, frame.budgetMs ?? -1, frame.attachments);
  }

  /**
   * Appends one frame and returns its size on the wire. Throws MESSAGE_TOO_LARGE (and encodes
   * nothing) when the frame would exceed `maxFrameBytes`, the receiver's limit.
   */
  public appendFrame(
    kind: EFrameKind,
    encoding: EPayloadEncoding,
    id: number,
    type: string,
    headersJson: string | undefined,
    payload: Buffer | string | undefined,
    maxFrameBytes: number,
    budgetMs = -1,
    attachments?: Buffer[],
  ): number {
    const typeBuffer = this.typeBytes(type);
    const typeBytes = typeBuffer.length;
    const headersBytes = headersJson === undefined ? 0 : Buffer.byteLength(headersJson, 'utf8');
    const hasBudget = budgetMs >= 0;
    const headerLength = FRAME_PREFIX_BYTES + FRAME_FIXED_HEADER_BYTES + typeBytes + (hasBudget ? 4 : 0) + (headersJson === undefined ? 0 : 4 + headersBytes);
    // `encoding` may carry the attachments bit for a payload passed on as it arrived (table included).
    let flags = (encoding & (FLAG_ENCODING_MASK | FLAG_HAS_ATTACHMENTS)) | (headersJson === undefined ? 0 : FLAG_HAS_HEADERS) | (hasBudget ? FLAG_HAS_BUDGET : 0);
    if (attachments !== undefined && attachments.length > 0) {
      flags |= FLAG_HAS_ATTACHMENTS;
      return this.appendWithAttachments(kind, flags, id, type, typeBuffer, headersJson, headersBytes, headerLength, budgetMs, String(payload ?? ''), attachments, maxFrameBytes);
    }

    // A string payload's UTF-8 size is at most 3 bytes per UTF-16 unit: if that fits, write in place.
    if (typeof payload === 'string' && payload.length * 3 + headerLength <= WRITE_SLAB_BYTES) {
      this.reserve(headerLength + payload.length * 3);
      const payloadStart = this.offset + headerLength;
      const payloadBytes = payload.length === 0 ? 0 : writeUtf8(this.slab, payload, payloadStart);
      const frameLength = headerLength - FRAME_PREFIX_BYTES + payloadBytes;
      if (frameLength > maxFrameBytes) throw tooLarge(type, frameLength, maxFrameBytes);
      this.writeHeader(frameLength, kind, flags, id, typeBuffer, budgetMs, headersJson, headersBytes);
      this.offset = payloadStart + payloadBytes;
      return frameLength + FRAME_PREFIX_BYTES;
    }

    const payloadBuffer = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
    const payloadBytes = payloadBuffer === undefined ? 0 : payloadBuffer.length;
    const frameLength = headerLength - FRAME_PREFIX_BYTES + payloadBytes;
    if (frameLength > maxFrameBytes) throw tooLarge(type, frameLength, maxFrameBytes);

    if (payloadBytes < WRITE_COPY_THRESHOLD_BYTES) {
      this.reserve(headerLength + payloadBytes);
      this.writeHeader(frameLength, kind, flags, id, typeBuffer, budgetMs, headersJson, headersBytes);
      this.offset += headerLength;
      if (payloadBuffer !== undefined && payloadBytes > 0) {
        this.slab.set(payloadBuffer, this.offset);
        this.offset += payloadBytes;
      }
    } else {
      this.reserve(headerLength);
      this.writeHeader(frameLength, kind, flags, id, typeBuffer, budgetMs, headersJson, headersBytes);
      this.offset += headerLength;
      this.cutSegment();
      this.segments.push(payloadBuffer!);
      this.segmentBytes += payloadBytes;
    }
    return frameLength + FRAME_PREFIX_BYTES;
  }

  /**
   * A JSON payload with raw attachments: the table and the JSON text go into the slab, each
   * attachment follows by reference (or copied when small), so a nested 1 MiB Buffer is never
   * copied by the encoder.
   */
  private appendWithAttachments(
    kind: EFrameKind,
    flags: number,
    id: number,
    type: string,
    typeBuffer: Buffer,
    headersJson: string | undefined,
    headersBytes: number,
    headerLength: number,
    budgetMs: number,
    json: string,
    attachments: Buffer[],
    maxFrameBytes: number,
  ): number {
    const tableBytes = 4 + 4 * attachments.length;
    const jsonBytes = Buffer.byteLength(json, 'utf8');
    let attachmentBytes = 0;
    for (const attachment of attachments) attachmentBytes += attachment.length;
    const frameLength = headerLength - FRAME_PREFIX_BYTES + tableBytes + jsonBytes + attachmentBytes;
    if (frameLength > maxFrameBytes) throw tooLarge(type, frameLength, maxFrameBytes);
    this.reserve(headerLength + tableBytes + jsonBytes);
    this.writeHeader(frameLength, kind, flags, id, typeBuffer, budgetMs, headersJson, headersBytes);
    let o = this.offset + headerLength;
    const buf = this.slab;
    buf.writeUInt32BE(attachments.length, o);
    o += 4;
    for (const attachment of attachments) {
      buf.writeUInt32BE(attachment.length, o);
      o += 4;
    }
    if (jsonBytes > 0) o += writeUtf8(buf, json, o);
    this.offset = o;
    for (const attachment of attachments) {
      if (attachment.length < WRITE_COPY_THRESHOLD_BYTES) {
        this.reserve(attachment.length);
        this.slab.set(attachment, this.offset);
        this.offset += attachment.length;
      } else {
        this.cutSegment();
        this.segments.push(attachment);
        this.segmentBytes += attachment.length;
      }
    }
    return frameLength + FRAME_PREFIX_BYTES;
  }

  /**
   * Appends a complete, already-encoded frame (length prefix included), e.g. one publish encoded
   * once for many subscribers. Small frames are copied into the slab; large ones go by reference.
   */
  public appendEncoded(frame: Buffer, maxFrameBytes: number): number {
    const frameLength = frame.length - FRAME_PREFIX_BYTES;
    if (frameLength > maxFrameBytes) throw tooLarge('(encoded)', frameLength, maxFrameBytes);
    if (frame.length < WRITE_COPY_THRESHOLD_BYTES) {
      this.reserve(frame.length);
      this.slab.set(frame, this.offset);
      this.offset += frame.length;
    } else {
      this.cutSegment();
      this.segments.push(frame);
      this.segmentBytes += frame.length;
    }
    return frame.length;
  }

  /** Hands over everything encoded since the last take, in order. The slab is never rewritten under a taken view. */
  public take(): Buffer[] {
    this.cutSegment();
    const segments = this.segments;
    this.segments = [];
    this.segmentBytes = 0;
    return segments;
  }

  private typeBytes(type: string): Buffer {
    if (type === this.lastType) return this.lastTypeBytes;
    const bytes = Buffer.from(type, 'utf8');
    if (bytes.length > FRAME_MAX_TYPE_BYTES) {
      throw new IpcError('PROTOCOL_ERROR', `type "${type.slice(0, 64)}..." is longer than ${FRAME_MAX_TYPE_BYTES} bytes`);
    }
    this.lastType = type;
    this.lastTypeBytes = bytes;
    return bytes;
  }

  /** Plain byte stores: Buffer#writeUInt32BE re-validates its arguments on every call. */
  private writeHeader(frameLength: number, kind: number, flags: number, id: number, typeBuffer: Buffer, budgetMs: number, headersJson: string | undefined, headersBytes: number): void {
    const buf = this.slab;
    let o = this.offset;
    buf[o] = frameLength >>> 24;
    buf[o + 1] = frameLength >>> 16;
    buf[o + 2] = frameLength >>> 8;
    buf[o + 3] = frameLength;
    buf[o + 4] = kind;
    buf[o + 5] = flags;
    buf[o + 6] = id >>> 24;
    buf[o + 7] = id >>> 16;
    buf[o + 8] = id >>> 8;
    buf[o + 9] = id;
    const typeBytes = typeBuffer.length;
    buf[o + 10] = typeBytes >>> 8;
    buf[o + 11] = typeBytes;
    o += 12;
    if (typeBytes > 0) {
      if (typeBytes <= 16) for (let i = 0; i < typeBytes; i++) buf[o + i] = typeBuffer[i];
      else buf.set(typeBuffer, o);
      o += typeBytes;
    }
    if (budgetMs >= 0) {
      buf.writeUInt32BE(Math.min(Math.ceil(budgetMs), FRAME_MAX_BUDGET_MS), o);
      o += 4;
    }
    if (headersJson !== undefined) {
      buf.writeUInt32BE(headersBytes, o);
      buf.write(headersJson, o + 4);
    }
  }

  /** Makes sure `bytes` fit after `offset`, moving to a fresh slab (or a one-off buffer) if not. */
  private reserve(bytes: number): void {
    if (this.offset + bytes <= this.slab.length) return;
    this.cutSegment();
    this.slab = Buffer.allocUnsafeSlow(Math.max(WRITE_SLAB_BYTES, bytes));
    this.start = 0;
    this.offset = 0;
  }

  private cutSegment(): void {
    if (this.offset > this.start) {
      this.segments.push(this.slab.subarray(this.start, this.offset));
      this.segmentBytes += this.offset - this.start;
      this.start = this.offset;
    }
  }
}

function tooLarge(type: string, frameLength: number, maxFrameBytes: number): IpcError {
  return new IpcError('MESSAGE_TOO_LARGE', `frame "${type}" is ${frameLength} bytes, over the receiver's maxMessageSize of ${maxFrameBytes} bytes`);
}

/** One encoder for `encodeFrame`: a fresh one per call would allocate a 64 KiB slab each time. */
const sharedEncoder = new FrameEncoder();

/**
 * Encodes a single frame into a Buffer of its own (one-off writes, frames encoded once and sent to
 * many peers, tests). Connections batch through their own FrameEncoder instead.
 */
export function encodeFrame(frame: IOutgoingFrame, maxFrameBytes = Infinity): Buffer {
  const size = sharedEncoder.append(frame, maxFrameBytes);
  return Buffer.concat(sharedEncoder.take(), size);
}

/** A frame as decoded: no Buffer view is made unless someone asks for `payload`. */
export class DecodedFrame implements IFrame {
  constructor(
    public kind: EFrameKind,
    public flags: number,
    public id: number,
    public type: string,
    public headers: Record<string, unknown> | undefined,
    public budgetMs: number,
    public buf: Buffer,
    public payloadStart: number,
    public payloadEnd: number,
  ) {}

  public get payload(): Buffer {
    return this.buf.subarray(this.payloadStart, this.payloadEnd);
  }
}

/** A frame that owns a copy of its payload (kept past the tick it arrived in). */
export function detachFrame(frame: IFrame): IFrame {
  const copy = Buffer.from(frame.buf.subarray(frame.payloadStart, frame.payloadEnd));
  return new DecodedFrame(frame.kind, frame.flags, frame.id, frame.type, frame.headers, frame.budgetMs, copy, 0, copy.length);
}

export interface IFrameDecoderSink {
  onFrame(frame: IFrame): void;
  /** The stream is unusable after this: the decoder ignores all further input. */
  onFrameError(error: IpcError): void;
  /** Whether this stream may hold `bytes` for one incomplete frame (a server's partial budget); absent: yes. */
  mayHold?(bytes: number): boolean;
}

/**
 * Turns a byte stream into frames, whatever the chunk boundaries. Frames wholly inside a chunk are
 * views into it (no copy); a frame that spans chunks is copied once: joined when its last byte
 * arrives or, for a large one, assembled in place from three quarters received.
 * The length prefix is checked against `maxFrameBytes` before a byte of the frame is buffered.
 */
export class FrameDecoder {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private assembly: Buffer | undefined;
  /** Total size (prefix included) of the frame being assembled, or -1 until its prefix is known. */
  private needed = -1;
  private failed = false;
  private lastType = '';
  private lastTypeBytes: Buffer = Buffer.alloc(0);

  constructor(private maxFrameBytes: number, private readonly sink: IFrameDecoderSink) {}

  /** Bytes held for an incomplete frame (the whole frame once it is being assembled in place). */
  public get bufferedBytes(): number {
    return this.assembly !== undefined ? this.assembly.length : this.pendingBytes;
  }

  /** Frames decoded so far: a link tells from it whether the incomplete frame it holds is a new one. */
  public framesDecoded = 0;

  /** True while part of a frame has arrived and the rest has not. */
  public get hasPartialFrame(): boolean {
    return this.pendingBytes > 0;
  }

  /** Changes the largest frame accepted from now on (a small limit until the handshake completes). */
  public setMaxFrameBytes(maxFrameBytes: number): void {
    this.maxFrameBytes = maxFrameBytes;
    // A frame already being assembled must fit the new limit too.
    if (this.needed > FRAME_PREFIX_BYTES + maxFrameBytes) this.acceptLength(this.needed - FRAME_PREFIX_BYTES);
  }

  public push(chunk: Buffer): void {
    if (this.failed || chunk.length === 0) return;
    if (this.pendingBytes === 0) {
      this.parse(chunk);
      return;
    }
    if (this.assembly !== undefined) {
      const room = this.needed - this.pendingBytes;
      if (chunk.length < room) {
        chunk.copy(this.assembly, this.pendingBytes);
        this.pendingBytes += chunk.length;
        return;
      }
      chunk.copy(this.assembly, this.pendingBytes, 0, room);
      const frame = this.assembly;
      this.assembly = undefined;
      this.pendingBytes = 0;
      this.needed = -1;
      this.parse(frame);
      if (room < chunk.length && !this.failed) this.push(chunk.subarray(room));
      return;
    }
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.needed < 0) {
      if (this.pendingBytes < FRAME_PREFIX_BYTES) return;
      const length = this.peekPrefix();
      if (!this.acceptLength(length)) return;
      this.needed = FRAME_PREFIX_BYTES + length;
    }
    if (this.pendingBytes < this.needed) {
      // Most of a large frame is here: assemble the rest in place as it arrives (each chunk copied
      // while fresh, none kept). Never before three quarters arrived, so a peer that announces a
      // large frame makes us hold at most 4/3 of what it sent, and only within the budget.
      if (this.needed >= ASSEMBLE_IN_PLACE_FROM_BYTES && this.pendingBytes * 4 >= this.needed * 3 && this.sink.mayHold?.(this.needed) !== false) {
        this.assembly = Buffer.allocUnsafe(this.needed);
        let at = 0;
        for (const part of this.pending) at += part.copy(this.assembly, at);
        this.pending = [];
      }
      return;
    }
    const joined = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.needed = -1;
    this.parse(joined);
  }

  /** Parses every whole frame in `buf`, keeping the tail for later. */
  private parse(buf: Buffer): void {
    let offset = 0;
    const end = buf.length;
    while (!this.failed) {
      if (end - offset < FRAME_PREFIX_BYTES) break;
      const length = buf.readUInt32BE(offset);
      if (!this.acceptLength(length)) return;
      const frameEnd = offset + FRAME_PREFIX_BYTES + length;
      if (frameEnd > end) {
        this.needed = FRAME_PREFIX_BYTES + length;
        break;
      }
      const frame = this.decodeFrame(buf, offset + FRAME_PREFIX_BYTES, frameEnd);
      offset = frameEnd;
      if (frame === undefined) return;
      this.framesDecoded++;
      this.sink.onFrame(frame);
    }
    if (!this.failed && offset < end) {
      this.pending.push(offset === 0 ? buf : buf.subarray(offset));
      this.pendingBytes = end - offset;
    }
  }

  private peekPrefix(): number {
    const first = this.pending[0];
    if (first.length >= FRAME_PREFIX_BYTES) return first.readUInt32BE(0);
    const prefix = Buffer.alloc(FRAME_PREFIX_BYTES);
    let filled = 0;
    for (const chunk of this.pending) {
      filled += chunk.copy(prefix, filled, 0, Math.min(chunk.length, FRAME_PREFIX_BYTES - filled));
      if (filled === FRAME_PREFIX_BYTES) break;
    }
    return prefix.readUInt32BE(0);
  }

  private acceptLength(length: number): boolean {
    if (length > this.maxFrameBytes) {
      this.fail(new IpcError('MESSAGE_TOO_LARGE', `incoming frame announces ${length} bytes, over maxMessageSize of ${this.maxFrameBytes} bytes`));
      return false;
    }
    if (length < FRAME_FIXED_HEADER_BYTES) {
      this.fail(new IpcError('PROTOCOL_ERROR', `incoming frame announces ${length} bytes, shorter than the ${FRAME_FIXED_HEADER_BYTES}-byte header`));
      return false;
    }
    return true;
  }

  private decodeFrame(buf: Buffer, start: number, end: number): IFrame | undefined {
    const kind = buf[start];
    const flags = buf[start + 1];
    if (kind === 0 || kind > FRAME_KIND_MAX || (flags & ~FLAG_KNOWN_BITS) !== 0) {
      this.fail(new IpcError('PROTOCOL_ERROR', `invalid frame header (kind ${kind}, flags ${flags})`));
      return undefined;
    }
    const id = buf.readUInt32BE(start + 2);
    const typeBytes = buf.readUInt16BE(start + 6);
    let o = start + FRAME_FIXED_HEADER_BYTES;
    if (o + typeBytes > end) {
      this.fail(new IpcError('PROTOCOL_ERROR', `frame type length ${typeBytes} runs past the frame end`));
      return undefined;
    }
    const type = this.readType(buf, o, typeBytes);
    o += typeBytes;
    let budgetMs = -1;
    if ((flags & FLAG_HAS_BUDGET) !== 0) {
      if (o + 4 > end) {
        this.fail(new IpcError('PROTOCOL_ERROR', 'frame deadline runs past the frame end'));
        return undefined;
      }
      budgetMs = buf.readUInt32BE(o);
      o += 4;
    }
    let headers: Record<string, unknown> | undefined;
    if ((flags & FLAG_HAS_HEADERS) !== 0) {
      if (o + 4 > end || o + 4 + buf.readUInt32BE(o) > end) {
        this.fail(new IpcError('PROTOCOL_ERROR', 'frame headers run past the frame end'));
        return undefined;
      }
      const headersBytes = buf.readUInt32BE(o);
      try {
        checkJsonDepth(buf, o + 4, o + 4 + headersBytes, HEADERS_MAX_JSON_DEPTH);
        const parsed: unknown = JSON.parse(buf.toString('utf8', o + 4, o + 4 + headersBytes));
        if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new TypeError('headers are not an object');
        headers = parsed as Record<string, unknown>;
      } catch (err) {
        this.fail(new IpcError('PROTOCOL_ERROR', `frame headers are not a JSON object: ${(err as Error).message}`, { cause: err }));
        return undefined;
      }
      o += 4 + headersBytes;
    }
    return new DecodedFrame(kind, flags, id, type, headers, budgetMs, buf, o, end);
  }

  /** The type string; a run of frames of one type (the common case) reuses the last string. */
  private readType(buf: Buffer, start: number, length: number): string {
    if (length === 0) return '';
    const last = this.lastTypeBytes;
    if (length === last.length && length <= 32) {
      let same = true;
      for (let i = 0; i < length; i++) {
        if (buf[start + i] !== last[i]) {
          same = false;
          break;
        }
      }
      if (same) return this.lastType;
    }
    const type = readUtf8(buf, start, start + length);
    if (length <= 32) {
      this.lastType = type;
      this.lastTypeBytes = Buffer.from(buf.subarray(start, start + length));
    }
    return type;
  }

  private fail(error: IpcError): void {
    this.failed = true;
    this.pending = [];
    this.assembly = undefined;
    this.pendingBytes = 0;
    this.sink.onFrameError(error);
  }
}
