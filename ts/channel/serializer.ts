// User data <-> frame payloads, for the negotiated serialization.
//
// Binary data travels raw in both serializations: a Buffer or Uint8Array as the whole payload is
// a Binary frame; nested inside JSON it is an attachment (flag bit 4: the bytes follow the JSON
// text, a placeholder marks their place). Nested inside 'advanced' it rides in the v8 structured
// clone as Node writes it (one copy when sending, none when receiving). Every received Uint8Array
// comes back as a Buffer. On 'advanced' connections, plain data (what JSON carries exactly) is sent
// as JSON: it reads back the same and costs a third of a structured clone.
import * as plugins from '../plugins.js';
import { IpcError } from '../smartipc.errors.js';
import { readUtf8 } from '../framing/utf8.js';
import { EPayloadEncoding, FLAG_ENCODING_MASK, FLAG_HAS_ATTACHMENTS, type TSerialization } from '../interfaces/wire.js';
import { DEFAULT_MAX_JSON_DEPTH } from '../smartipc.defaults.js';
import { checkJsonDepth } from '../framing/jsondepth.js';

export interface IEncodedPayload {
  /**
   * The payload encoding. A payload passed on as it arrived may carry FLAG_HAS_ATTACHMENTS here
   * too (its bytes already hold the attachment table).
   */
  encoding: EPayloadEncoding;
  payload: string | Buffer | undefined;
  /** Raw bytes beside a JSON payload (nested Buffers), in placeholder order. */
  attachments?: Buffer[];
}

/**
 * The placeholder of an attachment in the JSON text is an object with exactly this one key and the
 * attachment's index. User objects whose keys start with U+0000 get one more U+0000 in front of
 * those keys (and lose it again on arrival), so no user object can be read as a placeholder.
 */
const ATTACHMENT_KEY = '\u0000';
/**
 * Deeper structures are not searched: they take the replacer path, which finds every Buffer at any
 * depth (and JSON.stringify refuses a cycle there).
 */
const BINARY_SEARCH_MAX_DEPTH = 1_000;

/** A Uint8Array as a Buffer over the same bytes (no copy). */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Encodes user data into `out` (a scratch object the caller reuses: the per-message path allocates
 * no wrapper). Throws PROTOCOL_ERROR for data the serialization cannot carry.
 */
export function encodeInto(out: IEncodedPayload, data: unknown, json: boolean, what: string): void {
  out.attachments = undefined;
  if (data === undefined) {
    out.encoding = EPayloadEncoding.None;
    out.payload = undefined;
    return;
  }
  if (data instanceof Uint8Array) {
    out.encoding = EPayloadEncoding.Binary;
    out.payload = asBuffer(data);
    return;
  }
  if (!json) {
    // Plain data reads back the same from JSON, which costs a third of a structured clone.
    if (isPlainJson(data, 0)) {
      out.encoding = EPayloadEncoding.Json;
      out.payload = JSON.stringify(data);
      return;
    }
    out.encoding = EPayloadEncoding.V8;
    try {
      out.payload = plugins.v8.serialize(data);
    } catch (err) {
      throw new IpcError('PROTOCOL_ERROR', `${what} cannot be serialized with structured clone: ${(err as Error).message}`, { cause: err });
    }
    return;
  }
  let text: string | undefined;
  try {
    if (typeof data === 'object' && data !== null && containsBinary(data, 0)) {
      const attachments: Buffer[] = [];
      text = JSON.stringify(data, attachingReplacer(attachments));
      out.attachments = attachments;
    } else {
      text = JSON.stringify(data);
    }
  } catch (err) {
    throw new IpcError('PROTOCOL_ERROR', `${what} cannot be serialized as JSON: ${(err as Error).message} (serialization: 'advanced' carries BigInt, Map, Set, cycles)`, { cause: err });
  }
  // JSON.stringify(() => {}) is undefined: such data arrives as undefined, as it would in JSON.
  out.encoding = text === undefined ? EPayloadEncoding.None : EPayloadEncoding.Json;
  out.payload = text;
}

/** `encodeInto` with a fresh result object (paths that keep the encoding, e.g. fan-out and outboxes). */
export function encodePayload(data: unknown, serialization: TSerialization, what: string): IEncodedPayload {
  const out: IEncodedPayload = { encoding: EPayloadEncoding.None, payload: undefined };
  encodeInto(out, data, serialization === 'json', what);
  return out;
}

/**
 * A payload with attachments as one Buffer in the wire layout (table, JSON text, the bytes), its
 * encoding carrying the attachments bit: for code that must hash or count exactly what a frame
 * carries (object-mode stream chunks). Copies; payloads without attachments are returned as they are.
 */
export function flattenAttachments(encoded: IEncodedPayload): IEncodedPayload {
  const attachments = encoded.attachments;
  if (attachments === undefined || attachments.length === 0) return encoded;
  const json = Buffer.from(String(encoded.payload ?? ''), 'utf8');
  const table = Buffer.allocUnsafe(4 + 4 * attachments.length);
  table.writeUInt32BE(attachments.length, 0);
  attachments.forEach((attachment, i) => table.writeUInt32BE(attachment.length, 4 + 4 * i));
  return { encoding: (encoded.encoding | FLAG_HAS_ATTACHMENTS) as EPayloadEncoding, payload: Buffer.concat([table, json, ...attachments]) };
}

/** Bytes the payload takes on the wire (attachments included). */
export function payloadSize(encoded: IEncodedPayload): number {
  let size = encoded.payload === undefined ? 0 : typeof encoded.payload === 'string' ? encoded.payload.length : encoded.payload.length;
  if (encoded.attachments) for (const attachment of encoded.attachments) size += attachment.length + 4;
  return size;
}

/** Whether a Buffer or Uint8Array sits anywhere in plain objects and arrays (a cheap walk: 10-25 ns for a small object). */
function containsBinary(value: object, depth: number): boolean {
  if (ArrayBuffer.isView(value)) return value instanceof Uint8Array;
  if (depth >= BINARY_SEARCH_MAX_DEPTH) return true;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      if (typeof item === 'object' && item !== null && containsBinary(item, depth + 1)) return true;
    }
    return false;
  }
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return false;
  for (const key in value) {
    const item: unknown = (value as Record<string, unknown>)[key];
    if (typeof item === 'object' && item !== null && containsBinary(item, depth + 1)) return true;
  }
  return false;
}

/**
 * Plain data goes as JSON on 'advanced' connections only up to this depth; deeper (or cyclic) data
 * takes the structured clone.
 */
const PLAIN_JSON_MAX_DEPTH = 32;

/**
 * Whether JSON carries `value` exactly as a structured clone would: strings, booleans, null,
 * finite numbers other than -0, dense arrays and objects with Object.prototype (or none) of those,
 * no `undefined` anywhere. Anything else (a Date, a Map, a Buffer, a class instance, NaN, BigInt,
 * a hole) makes the whole payload a structured clone. It stops at the first miss.
 */
function isPlainJson(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value) && !(value === 0 && 1 / value < 0);
    case 'object': {
      if (value === null) return true;
      if (depth >= PLAIN_JSON_MAX_DEPTH) return false;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          if (!isPlainJson(value[i], depth + 1)) return false; // a hole reads as undefined
        }
        return true;
      }
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) return false;
      for (const key in value) {
        if (!isPlainJson((value as Record<string, unknown>)[key], depth + 1)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

/** An own, enumerable key, whatever its name: assigning `"__proto__"` would set the prototype instead. */
function defineKey(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function attachingReplacer(attachments: Buffer[]): (this: Record<string, unknown>, key: string, value: unknown) => unknown {
  return function (key, value) {
    // `this[key]` is the value before toJSON (a Buffer's toJSON would make it { type, data }).
    const original = this[key];
    if (original instanceof Uint8Array) {
      attachments.push(asBuffer(original));
      return { [ATTACHMENT_KEY]: attachments.length - 1 };
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
    let escaped: Record<string, unknown> | undefined;
    for (const k in value) {
      if (k.charCodeAt(0) === 0) {
        escaped ??= {};
        break;
      }
    }
    if (escaped === undefined) return value;
    for (const [k, v] of Object.entries(value)) defineKey(escaped, k.charCodeAt(0) === 0 ? ATTACHMENT_KEY + k : k, v);
    return escaped;
  };
}

/**
 * Decodes buf[start, end) by the encoding its frame flags name, for a connection of the given
 * serialization: a peer cannot pick a deserializer the handshake did not agree on. Throws
 * PROTOCOL_ERROR (the caller decides whether the connection survives it).
 */
export function decodePayload(json: boolean, flags: number, buf: Buffer, start: number, end: number, maxJsonDepth = DEFAULT_MAX_JSON_DEPTH): unknown {
  const encoding = flags & FLAG_ENCODING_MASK;
  try {
    if ((flags & FLAG_HAS_ATTACHMENTS) !== 0) {
      if (!json || encoding !== EPayloadEncoding.Json) throw new Error('attachments are only defined for JSON payloads');
      return decodeWithAttachments(buf, start, end, maxJsonDepth);
    }
    switch (encoding) {
      case EPayloadEncoding.Json:
        checkJsonDepth(buf, start, end, maxJsonDepth);
        return JSON.parse(readUtf8(buf, start, end));
      case EPayloadEncoding.None:
        return undefined;
      case EPayloadEncoding.V8:
        if (json) throw new Error("a v8 payload on a 'json' connection (the handshake agreed on 'json')");
        return deserializeV8(buf.subarray(start, end));
      default:
        return buf.subarray(start, end);
    }
  } catch (err) {
    throw new IpcError('PROTOCOL_ERROR', `payload does not decode: ${(err as Error).message}`, { cause: err });
  }
}

/** Whether a frame's encoding bits are allowed on a connection of this serialization. */
export function isAllowedEncoding(json: boolean, flags: number): boolean {
  const encoding = flags & FLAG_ENCODING_MASK;
  if ((flags & FLAG_HAS_ATTACHMENTS) !== 0) return json && encoding === EPayloadEncoding.Json;
  // JSON is allowed on 'advanced' connections too (plain data is sent that way); v8 never on 'json' ones.
  return encoding === EPayloadEncoding.None || encoding === EPayloadEncoding.Binary || encoding === EPayloadEncoding.Json || (!json && encoding === EPayloadEncoding.V8);
}

/**
 * Decodes an IEncodedPayload as it was built for sending (a JSON string with its attachments
 * beside it, a v8 or binary Buffer, or bytes passed on with the attachments bit): for code that
 * sees payloads before they become frames (a bridge tapping publishes).
 */
export function decodeEncoded(json: boolean, encoded: IEncodedPayload): unknown {
  const payload = encoded.payload;
  if (payload === undefined) return undefined;
  if (typeof payload === 'string') {
    const attachments = encoded.attachments;
    try {
      return attachments === undefined || attachments.length === 0 ? JSON.parse(payload) : JSON.parse(payload, reviver(attachments));
    } catch (err) {
      throw new IpcError('PROTOCOL_ERROR', `payload does not decode: ${(err as Error).message}`, { cause: err });
    }
  }
  return decodePayload(json, encoded.encoding, payload, 0, payload.length);
}

function decodeWithAttachments(buf: Buffer, start: number, end: number, maxJsonDepth: number): unknown {
  if (end - start < 4) throw new Error('attachment table runs past the payload');
  const count = buf.readUInt32BE(start);
  let o = start + 4;
  if (count === 0 || o + count * 4 > end) throw new Error('attachment table runs past the payload');
  const lengths: number[] = new Array(count);
  let total = 0;
  for (let i = 0; i < count; i++) {
    lengths[i] = buf.readUInt32BE(o);
    total += lengths[i];
    o += 4;
  }
  const jsonEnd = end - total;
  if (jsonEnd < o) throw new Error('attachments run past the payload');
  // The depth bound looks at the JSON text only: the raw bytes beside it may hold any byte.
  checkJsonDepth(buf, o, jsonEnd, maxJsonDepth);
  // Views into the received bytes (never reused, see IFrame): no copy.
  const attachments: Buffer[] = new Array(count);
  let a = jsonEnd;
  for (let i = 0; i < count; i++) {
    attachments[i] = buf.subarray(a, a + lengths[i]);
    a += lengths[i];
  }
  return JSON.parse(readUtf8(buf, o, jsonEnd), reviver(attachments));
}

/** Puts attachments back in place of their placeholders, and unescapes user keys that start with U+0000. */
function reviver(attachments: Buffer[]): (key: string, value: unknown) => unknown {
  const count = attachments.length;
  return function (_key, value) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
    let hasMarked = false;
    for (const k in value) {
      if (k.charCodeAt(0) === 0) {
        hasMarked = true;
        break;
      }
    }
    if (!hasMarked) return value;
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record);
    if (keys.length === 1 && keys[0] === ATTACHMENT_KEY) {
      const index = record[ATTACHMENT_KEY];
      if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= count) throw new Error(`attachment ${String(index)} does not exist`);
      return attachments[index];
    }
    const unescaped: Record<string, unknown> = {};
    for (const k of keys) defineKey(unescaped, k.charCodeAt(0) === 0 ? k.slice(1) : k, record[k]);
    return unescaped;
  };
}

/** v8.deserialize, except that a Uint8Array arrives as a Buffer over the same bytes. */
class BufferDeserializer extends plugins.v8.DefaultDeserializer {
  public _readHostObject(): unknown {
    const value = (plugins.v8.DefaultDeserializer.prototype as unknown as { _readHostObject(this: unknown): unknown })._readHostObject.call(this);
    if (value instanceof Uint8Array && value.constructor === Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    return value;
  }
}

function deserializeV8(bytes: Buffer): unknown {
  const deserializer = new BufferDeserializer(bytes);
  deserializer.readHeader();
  return deserializer.readValue();
}
