/**
 * Payloads and error replies on NATS. A payload is what the core serializer makes of the data: a
 * JSON string, a node:v8 structured-clone Buffer, or nothing (undefined). The receiver needs no
 * header to tell them apart: an empty payload is undefined, a v8 buffer starts with its version
 * tag 0xFF (which no JSON text does), anything else is JSON. So a host serializing 'advanced' and
 * one serializing 'json' can still read each other (what JSON cannot carry stays the sender's problem).
 */
import * as v8 from 'node:v8';
import { smartipc, type Msg, type MsgHdrs } from './nats.plugins.js';
import { NATS_HEADER, NATS_HEADER_OVERHEAD_BYTES } from './nats.constants.js';

const V8_VERSION_TAG = 0xff;
const EMPTY = new Uint8Array(0);

export type TNatsPayload = string | Uint8Array;

/** Data as a NATS payload. Throws PROTOCOL_ERROR for data the serialization cannot carry. */
export function encodeData(data: unknown, json: boolean, what: string): TNatsPayload {
  if (data === undefined) return EMPTY;
  try {
    return json ? (JSON.stringify(data) ?? EMPTY) : v8.serialize(data);
  } catch (err) {
    throw new smartipc.IpcError('PROTOCOL_ERROR', `${what} cannot be serialized: ${(err as Error).message}`, { cause: err });
  }
}

/** The payload encoding a receiver infers (see the file comment). */
export function encodingOfBytes(bytes: Uint8Array): smartipc.EPayloadEncoding {
  if (bytes.length === 0) return smartipc.EPayloadEncoding.None;
  return bytes[0] === V8_VERSION_TAG ? smartipc.EPayloadEncoding.V8 : smartipc.EPayloadEncoding.Json;
}

export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A NATS payload as data. Throws PROTOCOL_ERROR for bytes that do not decode. */
export function decodeData(bytes: Uint8Array): unknown {
  if (bytes.length === 0) return undefined;
  const buffer = asBuffer(bytes);
  try {
    return encodingOfBytes(bytes) === smartipc.EPayloadEncoding.V8 ? v8.deserialize(buffer) : JSON.parse(buffer.toString('utf8'));
  } catch (err) {
    throw new smartipc.IpcError('PROTOCOL_ERROR', `payload does not decode: ${(err as Error).message}`, { cause: err });
  }
}

export function payloadBytes(payload: TNatsPayload): number {
  return typeof payload === 'string' ? Buffer.byteLength(payload, 'utf8') : payload.byteLength;
}

/** Bytes the headers add to a message (what counts against max_payload beside the payload). */
export function headerBytes(fields: Record<string, string>): number {
  let bytes = NATS_HEADER_OVERHEAD_BYTES;
  for (const key in fields) bytes += key.length + Buffer.byteLength(fields[key], 'utf8') + 4;
  return bytes;
}

/** The body of an error reply (its code travels in the Sipc-Error header). */
export interface INatsErrorBody {
  message: string;
  remote?: smartipc.IRemoteError;
}

export function errorBody(error: smartipc.IpcError): string {
  const body: INatsErrorBody = { message: error.message, ...(error.remote ? { remote: error.remote } : {}) };
  return JSON.stringify(body);
}

/** An IpcError from an error reply (code from the header, message and remote from the body). */
export function errorFromReply(code: string, bytes: Uint8Array): smartipc.IpcError {
  let body: Partial<INatsErrorBody> = {};
  try {
    body = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')) as INatsErrorBody;
  } catch {
    body = { message: `error reply with code ${code}` };
  }
  const known = smartipc.isIpcErrorCode(code) ? code : 'HANDLER_ERROR';
  return new smartipc.IpcError(known, typeof body.message === 'string' ? body.message : `error ${code}`, body.remote ? { remote: body.remote } : {});
}

/** Parses the Sipc-Headers JSON of a message; undefined when absent or unreadable. */
export function userHeaders(headers: MsgHdrs | undefined): Record<string, unknown> | undefined {
  const text = headers?.get(NATS_HEADER.headers);
  if (!text) return undefined;
  try {
    const parsed = JSON.parse(text) as unknown;
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * One header's value, read straight from the message's header block when nats.js exposes it
 * (its MsgImpl keeps the raw bytes and the header length): decoding every header into a
 * MsgHdrsImpl per message costs ~6 % of the one-way message rate. Falls back to `msg.headers`.
 * Only for headers the bridge itself writes (`Name: value`, one value each).
 */
export function headerOf(msg: Msg, name: string): string | undefined {
  const impl = msg as unknown as { _msg?: { hdr?: unknown }; _rdata?: unknown };
  const hdr = impl._msg?.hdr;
  const raw = impl._rdata;
  if (typeof hdr !== 'number' || !(raw instanceof Uint8Array)) return msg.headers?.get(name) || undefined;
  if (hdr <= 0) return undefined;
  const block = Buffer.from(raw.buffer, raw.byteOffset, Math.min(hdr, raw.byteLength)).toString('utf8');
  const key = `\r\n${name}: `;
  const at = block.indexOf(key);
  if (at < 0) return undefined;
  const start = at + key.length;
  const end = block.indexOf('\r\n', start);
  return block.slice(start, end < 0 ? block.length : end);
}
