/**
 * Payloads, headers and error replies on NATS.
 *
 * A payload is what the core serializer makes of the data, and its encoding travels in the
 * `Sipc-Enc` header, so a receiver never guesses: absent is JSON text (or undefined when the
 * payload is empty: no JSON text is), `v8` a node:v8 structured clone, `binary` the raw bytes of a
 * Buffer or Uint8Array (the whole payload), `json+attachments` JSON whose nested Buffers follow the
 * text raw (the core's attachment layout). So Buffers arrive as Buffers with the same bytes in both
 * serializations, as on a local connection, and a 'json' host and an 'advanced' one read each
 * other (what JSON cannot carry stays the sender's problem).
 */
import { smartipc, type Msg } from './nats.plugins.js';
import { NATS_ENCODING, NATS_HEADER, NATS_HEADER_OVERHEAD_BYTES } from './nats.constants.js';

const { EPayloadEncoding, FLAG_HAS_ATTACHMENTS } = smartipc;
const FLAG_ENCODING_MASK = smartipc.wire.FLAG_ENCODING_MASK;
const EMPTY = new Uint8Array(0);

export type TNatsPayload = string | Uint8Array;

/** Data as it goes on NATS: the payload, its Sipc-Enc value (undefined: JSON or empty) and its size. */
export interface INatsEncoded {
  payload: TNatsPayload;
  encoding: string | undefined;
  bytes: number;
}

const scratch: smartipc.IEncodedPayload = { encoding: EPayloadEncoding.None, payload: undefined };

/** Data as a NATS payload. Throws PROTOCOL_ERROR for data the serialization cannot carry. */
export function encodeData(data: unknown, json: boolean, what: string): INatsEncoded {
  smartipc.encodeInto(scratch, data, json, what);
  const encoded = fromEncoded(scratch);
  scratch.payload = undefined;
  scratch.attachments = undefined;
  return encoded;
}

/** A payload the core encoded (a tapped publish, a stream value) as a NATS payload, its bytes never decoded. */
export function fromEncoded(encoded: smartipc.IEncodedPayload): INatsEncoded {
  const payload = encoded.payload;
  const kind = encoded.encoding & FLAG_ENCODING_MASK;
  if (payload === undefined) {
    // An empty Buffer passed on from a local client's frame has no payload bytes, but stays a Buffer.
    return { payload: EMPTY, encoding: kind === EPayloadEncoding.Binary ? NATS_ENCODING.binary : undefined, bytes: 0 };
  }
  if ((encoded.encoding & FLAG_HAS_ATTACHMENTS) !== 0) {
    // Passed on as it arrived from a local client: the bytes already hold the attachment table.
    return { payload, encoding: NATS_ENCODING.jsonAttachments, bytes: byteLength(payload) };
  }
  if (kind === EPayloadEncoding.Json) {
    const attachments = encoded.attachments;
    if (attachments !== undefined && attachments.length > 0) {
      const laidOut = withAttachments(payload, attachments);
      return { payload: laidOut, encoding: NATS_ENCODING.jsonAttachments, bytes: laidOut.length };
    }
    // nats.js would encode a string with TextEncoder (~4x slower than Buffer.from for small payloads).
    const bytes = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
    return { payload: bytes, encoding: undefined, bytes: bytes.length };
  }
  if (kind === EPayloadEncoding.V8) return { payload, encoding: NATS_ENCODING.v8, bytes: byteLength(payload) };
  if (kind === EPayloadEncoding.Binary) return { payload, encoding: NATS_ENCODING.binary, bytes: byteLength(payload) };
  return { payload: EMPTY, encoding: undefined, bytes: 0 };
}

/** JSON text and its Buffers in the core's attachment layout (one copy of each Buffer). */
function withAttachments(text: string | Buffer, attachments: Buffer[]): Buffer {
  const json = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  let total = 4 + 4 * attachments.length + json.length;
  for (const attachment of attachments) total += attachment.length;
  const out = Buffer.allocUnsafe(total);
  out.writeUInt32BE(attachments.length, 0);
  let o = 4;
  for (const attachment of attachments) {
    out.writeUInt32BE(attachment.length, o);
    o += 4;
  }
  o += json.copy(out, o);
  for (const attachment of attachments) o += attachment.copy(out, o);
  return out;
}

function byteLength(payload: string | Uint8Array): number {
  return typeof payload === 'string' ? Buffer.byteLength(payload, 'utf8') : payload.byteLength;
}

export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The core's encoding bits for a Sipc-Enc value (absent: JSON, or None for an empty payload). Throws PROTOCOL_ERROR for an unknown one. */
export function encodingFlags(encoding: string | undefined, length: number): number {
  if (encoding === undefined) return length === 0 ? EPayloadEncoding.None : EPayloadEncoding.Json;
  switch (encoding) {
    case NATS_ENCODING.json:
      return length === 0 ? EPayloadEncoding.None : EPayloadEncoding.Json;
    case NATS_ENCODING.v8:
      return EPayloadEncoding.V8;
    case NATS_ENCODING.binary:
      return EPayloadEncoding.Binary;
    case NATS_ENCODING.jsonAttachments:
      return EPayloadEncoding.Json | FLAG_HAS_ATTACHMENTS;
    default:
      throw new smartipc.IpcError('PROTOCOL_ERROR', `unknown payload encoding ${JSON.stringify(encoding)} (${NATS_HEADER.encoding})`);
  }
}

/** A NATS payload as data, by its Sipc-Enc value. Throws PROTOCOL_ERROR for bytes that do not decode. */
export function decodeData(bytes: Uint8Array, encoding: string | undefined): unknown {
  if (encoding === undefined) {
    if (bytes.length === 0) return undefined;
    try {
      return JSON.parse(asBuffer(bytes).toString('utf8'));
    } catch (err) {
      throw new smartipc.IpcError('PROTOCOL_ERROR', `payload does not decode: ${(err as Error).message}`, { cause: err });
    }
  }
  const flags = encodingFlags(encoding, bytes.length);
  // Either serialization is read on NATS: pick the decoder the encoding names.
  return smartipc.decodePayload((flags & FLAG_ENCODING_MASK) !== EPayloadEncoding.V8, flags, asBuffer(bytes), 0, bytes.length);
}

/** Bytes the headers add to a message (what counts against max_payload beside the payload). */
export function headerBytes(fields: Record<string, string>): number {
  let bytes = NATS_HEADER_OVERHEAD_BYTES;
  for (const key in fields) bytes += key.length + Buffer.byteLength(fields[key], 'utf8') + 4;
  return bytes;
}

// ---- reading headers -------------------------------------------------------------------------------

/**
 * The header block of a message as text, read straight from the bytes nats.js keeps (its MsgImpl
 * holds the raw message and the header length): decoding every header into a MsgHdrsImpl per
 * message costs ~6 % of the one-way message rate. '' when the message has no headers; undefined
 * when nats.js does not expose the raw bytes (then use `msg.headers`).
 */
function rawHeaderBlock(msg: Msg): string | undefined {
  const impl = msg as unknown as { _msg?: { hdr?: unknown }; _rdata?: unknown };
  const hdr = impl._msg?.hdr;
  const raw = impl._rdata;
  if (typeof hdr !== 'number' || !(raw instanceof Uint8Array)) return undefined;
  if (hdr <= 0) return '';
  const end = Math.min(hdr, raw.byteLength);
  return Buffer.isBuffer(raw) ? raw.toString('latin1', 0, end) : Buffer.from(raw.buffer, raw.byteOffset, end).toString('latin1');
}

/** The headers the bridge reads, from one message. Only for headers the bridge itself writes (`Name: value`, one value each). */
export class InboundHeaders {
  private constructor(private readonly block: string | undefined, private readonly msg: Msg) {}

  public static of(msg: Msg): InboundHeaders {
    return new InboundHeaders(rawHeaderBlock(msg), msg);
  }

  /** Whether the message has any headers. */
  public get any(): boolean {
    return this.block === undefined ? this.msg.headers !== undefined : this.block.length > 0;
  }

  /** The NATS status code (503: no responders), or 0: from the block's first line, `NATS/1.0 503`. */
  public get status(): number {
    const block = this.block;
    if (block === undefined) return this.msg.headers?.code ?? 0;
    if (block.length < 12 || block.charCodeAt(8) !== 0x20) return 0;
    const code = Number(block.slice(9, 12));
    return Number.isInteger(code) ? code : 0;
  }

  /** Whether the block is all ASCII (then no value needs UTF-8 decoding); tested once per message. */
  private ascii?: boolean;

  public get(name: string): string | undefined {
    const block = this.block;
    if (block === undefined) return this.msg.headers?.get(name) || undefined;
    if (block.length === 0) return undefined;
    const key = headerKey(name);
    const at = block.indexOf(key);
    if (at < 0) return undefined;
    const start = at + key.length;
    const end = block.indexOf('\r\n', start);
    const value = block.slice(start, end < 0 ? block.length : end);
    // The block was read as latin1 (cheap); only non-ASCII values need UTF-8 decoding.
    this.ascii ??= !/[^\x00-\x7f]/.test(block);
    return this.ascii || !/[^\x00-\x7f]/.test(value) ? value : Buffer.from(value, 'latin1').toString('utf8');
  }
}

/** `\r\nName: ` of each header name the bridge reads (a handful), built once. */
const headerKeys = new Map<string, string>();
function headerKey(name: string): string {
  let key = headerKeys.get(name);
  if (key === undefined) {
    key = `\r\n${name}: `;
    headerKeys.set(name, key);
  }
  return key;
}

/** The data of a message, by its Sipc-Enc header. Throws PROTOCOL_ERROR. */
export function decodeMsg(msg: Msg, headers: InboundHeaders): unknown {
  return decodeData(msg.data, headers.any ? headers.get(NATS_HEADER.encoding) : undefined);
}

/**
 * The caller's headers of a request, call or stream open: Sipc-Headers JSON, with traceparent
 * (which travels in its own NATS header) put back. Undefined when there are none.
 */
export function userHeaders(headers: InboundHeaders): Record<string, unknown> | undefined {
  if (!headers.any) return undefined;
  const text = headers.get(NATS_HEADER.headers);
  let parsed: Record<string, unknown> | undefined;
  if (text) {
    try {
      const value = JSON.parse(text) as unknown;
      if (value !== null && typeof value === 'object' && !Array.isArray(value)) parsed = value as Record<string, unknown>;
    } catch {
      parsed = undefined;
    }
  }
  const traceparent = headers.get(NATS_HEADER.traceparent);
  if (traceparent !== undefined) (parsed ??= {}).traceparent = traceparent;
  return parsed;
}

/** The remaining budget a request carries (ms), or undefined (no deadline). */
export function budgetOf(headers: InboundHeaders): number | undefined {
  if (!headers.any) return undefined;
  const text = headers.get(NATS_HEADER.timeoutMs);
  if (text === undefined) return undefined;
  const budget = Number(text);
  return Number.isFinite(budget) && budget >= 0 ? budget : undefined;
}

// ---- writing headers -------------------------------------------------------------------------------

/**
 * The NATS header fields for a caller's `headers` option: traceparent in its own header (NATS-aware
 * tracing sees it), the rest as Sipc-Headers JSON. Adds to `fields`; returns it.
 */
export function putUserHeaders(fields: Record<string, string>, headers: Record<string, unknown> | undefined): Record<string, string> {
  if (headers === undefined) return fields;
  let rest: Record<string, unknown> | undefined = headers;
  const traceparent = headers.traceparent;
  if (typeof traceparent === 'string' && /^[\x20-\x7e]*$/.test(traceparent)) {
    fields[NATS_HEADER.traceparent] = traceparent;
    rest = undefined;
    for (const key in headers) {
      if (key === 'traceparent') continue;
      (rest ??= {})[key] = headers[key];
    }
  }
  if (rest !== undefined) fields[NATS_HEADER.headers] = JSON.stringify(rest);
  return fields;
}

/** A chain of service names as a header value: each URI-encoded (plain names stay readable), comma-separated. */
export function encodeChain(chain: readonly string[]): string {
  return chain.map(encodeURIComponent).join(',');
}

export function decodeChain(value: string | undefined): string[] | undefined {
  if (value === undefined || value.length === 0) return undefined;
  try {
    return value.split(',').map(decodeURIComponent);
  } catch {
    return undefined;
  }
}

export function encodeRoot(root: string): string {
  return encodeURIComponent(root);
}

export function decodeRoot(value: string | undefined): string | undefined {
  if (value === undefined || value.length === 0) return undefined;
  try {
    return decodeURIComponent(value);
  } catch {
    return undefined;
  }
}

// ---- error replies -----------------------------------------------------------------------------------

/** The body of an error reply (its code travels in the Sipc-Error header). */
export interface INatsErrorBody {
  message: string;
  remote?: smartipc.IRemoteError;
  retryAfterMs?: number;
}

export function errorBody(error: smartipc.IpcError): string {
  const body: INatsErrorBody = { message: error.message, ...(error.remote ? { remote: error.remote } : {}) };
  return JSON.stringify(body);
}

/** An IpcError from an error reply (code from the header, message and remote from the body). */
export function errorFromReply(code: string, bytes: Uint8Array): smartipc.IpcError {
  let body: Partial<INatsErrorBody> = {};
  try {
    body = JSON.parse(asBuffer(bytes).toString('utf8')) as INatsErrorBody;
  } catch {
    body = { message: `error reply with code ${code}` };
  }
  const known = smartipc.isIpcErrorCode(code) ? code : 'HANDLER_ERROR';
  return new smartipc.IpcError(known, typeof body.message === 'string' ? body.message : `error ${code}`, body.remote ? { remote: body.remote } : {});
}

/** What a serving side answers for a thrown value: library refusals and relayed failures keep their code, anything else is HANDLER_ERROR with `remote`. */
export function toReplyError(thrown: unknown): smartipc.IpcError {
  if (smartipc.isPassThrough(thrown)) return thrown;
  const remote = smartipc.toRemoteError(thrown);
  return new smartipc.IpcError('HANDLER_ERROR', remote.message, { cause: thrown, remote });
}

