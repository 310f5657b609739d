// The wire format written out by hand (docs/protocol.md), independent of the library's codec: the
// fuzzer and the raw peers build and read frames with this, so a bug in the codec cannot hide in
// both ends at once.
//
//   u32 frameLength | u8 kind | u8 flags | u32 id | u16 typeLength | type | [u32 budget] | [u32 hlen, headers] | payload
import * as net from 'node:net';
import { defaults } from '../../../ts/index.js';

export const KIND = {
  Hello: 1,
  Welcome: 2,
  Reject: 3,
  Message: 4,
  Request: 5,
  Response: 6,
  ErrorResponse: 7,
  Ping: 8,
  Pong: 9,
  Goodbye: 10,
  Subscribe: 11,
  Unsubscribe: 12,
  Publish: 13,
  StreamOpen: 14,
  StreamChunk: 15,
  StreamEnd: 16,
  StreamCancel: 17,
  StreamCredit: 18,
  Cancel: 19,
} as const;
/** The highest kind the library knows (protocol version 2). */
export const KIND_MAX = 24;

export const ENC = { None: 0, Json: 1, V8: 2, Binary: 3 } as const;
export const FLAG_HEADERS = 0b100;
export const FLAG_BUDGET = 0b1000;

export interface IRawFrame {
  kind: number;
  flags?: number;
  id?: number;
  /** The type as bytes (so bad UTF-8 can be sent) or a string. */
  type?: Buffer | string;
  budgetMs?: number;
  /** Raw header bytes (not necessarily JSON). */
  headers?: Buffer | string;
  payload?: Buffer | string;
}

const toBytes = (value: Buffer | string | undefined) => (value === undefined ? Buffer.alloc(0) : typeof value === 'string' ? Buffer.from(value, 'utf8') : value);

/** Encodes one frame exactly as given (flags are not fixed up: say FLAG_HEADERS / FLAG_BUDGET yourself). */
export function buildFrame(frame: IRawFrame): Buffer {
  const type = toBytes(frame.type);
  const headers = frame.headers === undefined ? undefined : toBytes(frame.headers);
  const payload = toBytes(frame.payload);
  const flags = frame.flags ?? 0;
  const parts: Buffer[] = [];
  const fixed = Buffer.alloc(4 + 8);
  const length = 8 + type.length + (frame.budgetMs !== undefined ? 4 : 0) + (headers ? 4 + headers.length : 0) + payload.length;
  fixed.writeUInt32BE(length, 0);
  fixed[4] = frame.kind & 0xff;
  fixed[5] = flags & 0xff;
  fixed.writeUInt32BE((frame.id ?? 0) >>> 0, 6);
  fixed.writeUInt16BE(type.length & 0xffff, 10);
  parts.push(fixed, type);
  if (frame.budgetMs !== undefined) {
    const budget = Buffer.alloc(4);
    budget.writeUInt32BE(frame.budgetMs >>> 0);
    parts.push(budget);
  }
  if (headers) {
    const hlen = Buffer.alloc(4);
    hlen.writeUInt32BE(headers.length);
    parts.push(hlen, headers);
  }
  parts.push(payload);
  return Buffer.concat(parts);
}

export function jsonFrame(kind: number, id: number, type: string, body: unknown): Buffer {
  return buildFrame({ kind, flags: ENC.Json, id, type, payload: JSON.stringify(body) });
}

/** A HELLO as a json client sends it. */
export function helloFrame(serverId: string, clientId: string, extra: Record<string, unknown> = {}): Buffer {
  return jsonFrame(KIND.Hello, 0, '', {
    serverId,
    clientId,
    metadata: {},
    protocolVersion: defaults.PROTOCOL_VERSION,
    serialization: 'json',
    maxMessageSize: defaults.DEFAULT_MAX_MESSAGE_SIZE_BYTES,
    ...extra,
  });
}

export interface IParsedFrame {
  kind: number;
  flags: number;
  id: number;
  type: string;
  budgetMs: number;
  payload: Buffer;
}

/** Splits a byte stream into frames, whatever the chunking. */
export class FrameReader {
  private buffered: Buffer = Buffer.alloc(0);

  constructor(private readonly onFrame: (frame: IParsedFrame) => void) {}

  public push(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    let offset = 0;
    while (this.buffered.length - offset >= 4) {
      const length = this.buffered.readUInt32BE(offset);
      if (this.buffered.length - offset - 4 < length) break;
      const start = offset + 4;
      const end = start + length;
      const kind = this.buffered[start];
      const flags = this.buffered[start + 1];
      const id = this.buffered.readUInt32BE(start + 2);
      const typeLength = this.buffered.readUInt16BE(start + 6);
      let o = start + 8;
      const type = this.buffered.toString('utf8', o, o + typeLength);
      o += typeLength;
      let budgetMs = -1;
      if (flags & FLAG_BUDGET) {
        budgetMs = this.buffered.readUInt32BE(o);
        o += 4;
      }
      if (flags & FLAG_HEADERS) o += 4 + this.buffered.readUInt32BE(o);
      this.onFrame({ kind, flags, id, type, budgetMs, payload: Buffer.from(this.buffered.subarray(o, end)) });
      offset = end;
    }
    this.buffered = offset === this.buffered.length ? Buffer.alloc(0) : this.buffered.subarray(offset);
  }
}

/** Dials a Unix socket (bounded). */
export function dialUnix(socketPath: string, timeoutMs = 5_000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ path: socketPath });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`raw dial of ${socketPath} timed out`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
