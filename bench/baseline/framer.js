// The hand-written node:net framer the benchmark compares smartipc against: as fast as we know how
// to write it, with nothing smartipc does not also need (no handshake, heartbeat, errors, options).
//
// Frame: u32 BE length (bytes after this field) | u8 kind | u32 BE id | payload.

export const HEADER_BYTES = 9;
const PREFIX_BYTES = 4;
/** Small frames are copied into one slab and leave in one write per tick. */
const SLAB_BYTES = 64 * 1024;
/** Payloads this large are written by reference, never copied. */
const COPY_THRESHOLD_BYTES = 16 * 1024;

export const KIND = Object.freeze({
  REQ: 1,
  RES: 2,
  MSG: 3,
  MARK: 4,
  DONE: 5,
  STREAM_OPEN: 6,
  CHUNK: 7,
  STREAM_END: 8,
  CREDIT: 9,
  SUB: 10,
  PUB: 11,
  DELIVER: 12,
  BIN: 13,
});

/** Batches every frame written in one tick into as few socket writes as possible (cork + writev). */
export class FrameWriter {
  constructor(socket) {
    this.socket = socket;
    this.slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    this.start = 0;
    this.offset = 0;
    this.segments = [];
    this.scheduled = false;
    this.flush = this.flush.bind(this);
  }

  /** True when the caller should wait for the socket's 'drain'. */
  get needsDrain() {
    return this.socket.writableNeedDrain;
  }

  writeString(kind, id, text) {
    const maxBytes = HEADER_BYTES + text.length * 3;
    if (maxBytes <= SLAB_BYTES) {
      this.reserve(maxBytes);
      const o = this.offset;
      const n = this.slab.write(text, o + HEADER_BYTES, 'utf8');
      this.header(o, kind, id, n);
      this.offset = o + HEADER_BYTES + n;
      this.schedule();
    } else {
      this.writeBuffer(kind, id, Buffer.from(text, 'utf8'));
    }
  }

  writeBuffer(kind, id, payload, start = 0, end = payload.length) {
    const n = end - start;
    if (n < COPY_THRESHOLD_BYTES) {
      this.reserve(HEADER_BYTES + n);
      const o = this.offset;
      this.header(o, kind, id, n);
      if (n > 0) payload.copy(this.slab, o + HEADER_BYTES, start, end);
      this.offset = o + HEADER_BYTES + n;
    } else {
      this.reserve(HEADER_BYTES);
      this.header(this.offset, kind, id, n);
      this.offset += HEADER_BYTES;
      this.cut();
      this.segments.push(start === 0 && end === payload.length ? payload : payload.subarray(start, end));
    }
    this.schedule();
  }

  /** A frame whose payload is `u16 length | prefix utf8 | body utf8` (topic + JSON), encoded in place. */
  writePrefixed(kind, id, prefix, body) {
    const maxBytes = HEADER_BYTES + 2 + (prefix.length + body.length) * 3;
    this.reserve(maxBytes);
    const o = this.offset;
    const p = this.slab.write(prefix, o + HEADER_BYTES + 2, 'utf8');
    this.slab.writeUInt16BE(p, o + HEADER_BYTES);
    const b = this.slab.write(body, o + HEADER_BYTES + 2 + p, 'utf8');
    this.header(o, kind, id, 2 + p + b);
    this.offset = o + HEADER_BYTES + 2 + p + b;
    this.schedule();
  }

  flush() {
    this.scheduled = false;
    this.cut();
    const segments = this.segments;
    if (segments.length === 0) return;
    this.segments = [];
    if (this.socket.destroyed) return;
    if (segments.length === 1) {
      this.socket.write(segments[0]);
      return;
    }
    this.socket.cork();
    for (const segment of segments) this.socket.write(segment);
    this.socket.uncork();
  }

  header(o, kind, id, payloadBytes) {
    const buf = this.slab;
    buf.writeUInt32BE(HEADER_BYTES - PREFIX_BYTES + payloadBytes, o);
    buf[o + 4] = kind;
    buf.writeUInt32BE(id, o + 5);
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    process.nextTick(this.flush);
  }

  reserve(bytes) {
    if (this.offset + bytes <= this.slab.length) return;
    this.cut();
    // Views of the old slab may still be queued in the socket: never write into it again.
    this.slab = Buffer.allocUnsafeSlow(Math.max(SLAB_BYTES, bytes));
    this.start = 0;
    this.offset = 0;
  }

  cut() {
    if (this.offset > this.start) {
      this.segments.push(this.slab.subarray(this.start, this.offset));
      this.start = this.offset;
    }
  }
}

/**
 * Turns socket chunks into frames. A frame inside one chunk is handed over as (buf, start, end)
 * without any copy or allocation; a frame spanning chunks is copied once, exactly its own bytes,
 * and the rest of the last chunk is parsed in place.
 * `onFrame(kind, id, buf, payloadStart, payloadEnd)`: the bytes are valid during the call only.
 */
export class FrameReader {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.pending = [];
    this.pendingBytes = 0;
    this.needed = -1;
  }

  push(chunk) {
    if (this.pendingBytes === 0) {
      this.parse(chunk, 0);
      return;
    }
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.needed < 0) {
      if (this.pendingBytes < PREFIX_BYTES) return;
      this.needed = PREFIX_BYTES + this.peekLength();
    }
    if (this.pendingBytes < this.needed) return;
    // Copy exactly the frame; whatever follows it in the last chunk is parsed where it lies.
    const frame = Buffer.allocUnsafe(this.needed);
    let filled = 0;
    const last = this.pending.length - 1;
    for (let i = 0; i < last; i++) filled += this.pending[i].copy(frame, filled);
    const used = this.needed - filled;
    chunk.copy(frame, filled, 0, used);
    this.pending = [];
    this.pendingBytes = 0;
    this.needed = -1;
    this.emit(frame, 0, frame.length);
    if (used < chunk.length) this.parse(chunk, used);
  }

  parse(buf, offset) {
    const end = buf.length;
    while (end - offset >= PREFIX_BYTES) {
      const frameEnd = offset + PREFIX_BYTES + buf.readUInt32BE(offset);
      if (frameEnd > end) break;
      this.emit(buf, offset, frameEnd);
      offset = frameEnd;
    }
    if (offset < end) {
      this.pending.push(offset === 0 ? buf : buf.subarray(offset));
      this.pendingBytes = end - offset;
      this.needed = end - offset >= PREFIX_BYTES ? PREFIX_BYTES + buf.readUInt32BE(offset) : -1;
    }
  }

  emit(buf, start, end) {
    this.onFrame(buf[start + 4], buf.readUInt32BE(start + 5), buf, start + HEADER_BYTES, end);
  }

  peekLength() {
    const prefix = Buffer.allocUnsafe(PREFIX_BYTES);
    let filled = 0;
    for (const chunk of this.pending) {
      filled += chunk.copy(prefix, filled, 0, Math.min(chunk.length, PREFIX_BYTES - filled));
      if (filled === PREFIX_BYTES) break;
    }
    return prefix.readUInt32BE(0);
  }
}

/** Reads the `u16 length | prefix | body` payload of writePrefixed: returns the prefix and where the body starts. */
export function readPrefixed(buf, start) {
  const n = buf.readUInt16BE(start);
  return { prefix: buf.toString('utf8', start + 2, start + 2 + n), bodyStart: start + 2 + n };
}

/** Decodes a JSON payload in place. */
export function parseJson(buf, start, end) {
  return JSON.parse(buf.toString('utf8', start, end));
}
