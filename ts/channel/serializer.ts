import * as plugins from '../plugins.js';
import { IpcError } from '../smartipc.errors.js';
import { readUtf8 } from '../framing/utf8.js';
import { EPayloadEncoding, FLAG_ENCODING_MASK, type TSerialization } from '../interfaces/wire.js';

export interface IEncodedPayload {
  encoding: EPayloadEncoding;
  payload: string | Buffer | undefined;
}

/** Turns user data into payload bytes for the negotiated serialization. Throws PROTOCOL_ERROR for data it cannot carry. */
export function encodePayload(data: unknown, serialization: TSerialization, what: string): IEncodedPayload {
  const payload = serialize(data, serialization === 'json', what);
  return { encoding: encodingOf(payload), payload };
}

/** Decodes a frame payload by the encoding its flags name. Throws PROTOCOL_ERROR for bytes that do not parse. */
export function decodePayload(flags: number, payload: Buffer): unknown {
  return decodeRange(flags, payload, 0, payload.length);
}

export function payloadSize(encoded: IEncodedPayload): number {
  const payload = encoded.payload;
  if (payload === undefined) return 0;
  return payload.length;
}

/**
 * User data as payload: a JSON string, a v8 Buffer or undefined, no wrapper object (the hot path;
 * `encodePayload` wraps it). Its encoding follows from its type: see `encodingOf`.
 */
export function serialize(data: unknown, json: boolean, what: string): string | Buffer | undefined {
  if (data === undefined) return undefined;
  if (json) {
    try {
      return JSON.stringify(data);
    } catch (err) {
      throw new IpcError('PROTOCOL_ERROR', `${what} cannot be serialized as JSON: ${(err as Error).message} (serialization: 'advanced' carries BigInt, Map, Set, Buffer)`, { cause: err });
    }
  }
  try {
    return plugins.v8.serialize(data);
  } catch (err) {
    throw new IpcError('PROTOCOL_ERROR', `${what} cannot be serialized with structured clone: ${(err as Error).message}`, { cause: err });
  }
}

export function encodingOf(payload: string | Buffer | undefined): EPayloadEncoding {
  return payload === undefined ? EPayloadEncoding.None : typeof payload === 'string' ? EPayloadEncoding.Json : EPayloadEncoding.V8;
}

/** Decodes buf[start, end) by the encoding the frame flags name; JSON needs no Buffer view. Throws PROTOCOL_ERROR. */
export function decodeRange(flags: number, buf: Buffer, start: number, end: number): unknown {
  const encoding = flags & FLAG_ENCODING_MASK;
  try {
    switch (encoding) {
      case EPayloadEncoding.Json:
        return JSON.parse(readUtf8(buf, start, end));
      case EPayloadEncoding.None:
        return undefined;
      case EPayloadEncoding.V8:
        return plugins.v8.deserialize(buf.subarray(start, end));
      default:
        return buf.subarray(start, end);
    }
  } catch (err) {
    throw new IpcError('PROTOCOL_ERROR', `payload does not decode: ${(err as Error).message}`, { cause: err });
  }
}
