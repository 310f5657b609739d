/**
 * Stream frames. The opener picks a numeric id (frame id) that names the stream in both
 * directions; the receiver answers on the same id.
 *
 *   sender -> receiver   StreamOpen   type = streamId, payload = IStreamOpenPayload (serialized), headers = caller's
 *                        StreamChunk  type = '', payload = bytes (Binary) or one value (Json / V8)
 *                        StreamEnd    type = FROM_SENDER, payload = IStreamEndPayload (JSON)
 *                        StreamCancel type = FROM_SENDER, payload = IStreamCancelPayload (JSON)
 *   receiver -> sender   StreamCredit type = '', payload = u32 BE bytes granted
 *                        StreamEnd    type = FROM_RECEIVER: everything arrived and checked
 *                        StreamCancel type = FROM_RECEIVER: refused or cancelled, with the code
 *
 * A sender sends chunks only while it holds credit, so the first credit also means "accepted".
 */
import { IpcError, isIpcError, isIpcErrorCode, toRemoteError, type IRemoteError, type TIpcErrorCode } from '../../smartipc.errors.js';
import { STREAM_OBJECT_CHUNK_OVERHEAD_BYTES } from '../../smartipc.defaults.js';
import { EPayloadEncoding } from '../../interfaces/wire.js';
import type { IStreamMeta } from '../../interfaces/streams.js';
import type { IEncodedPayload } from '../../channel/serializer.js';

/** StreamEnd and StreamCancel go both ways; their type says who sent them. */
export const FROM_SENDER = 's';
export const FROM_RECEIVER = 'r';

export type TChecksum = 'sha256' | 'none';

export interface IStreamOpenPayload {
  meta: IStreamMeta;
  objectMode: boolean;
  checksum: TChecksum;
}

export interface IStreamEndPayload {
  /** Payload bytes of all chunks. */
  bytes: number;
  chunks: number;
  /** Hex digest of all chunk payloads, when the stream was opened with checksum 'sha256'. */
  sha256?: string;
}

export interface IStreamCancelPayload {
  code: TIpcErrorCode;
  message: string;
  remote?: IRemoteError;
}

/** What a chunk costs in credit; both sides compute it the same way. */
export function chunkCost(payloadBytes: number, objectMode: boolean): number {
  return objectMode ? payloadBytes + STREAM_OBJECT_CHUNK_OVERHEAD_BYTES : payloadBytes;
}

export function creditPayload(bytes: number): IEncodedPayload {
  const payload = Buffer.allocUnsafe(4);
  payload.writeUInt32BE(bytes, 0);
  return { encoding: EPayloadEncoding.Binary, payload };
}

export function jsonPayload(body: object): IEncodedPayload {
  return { encoding: EPayloadEncoding.Json, payload: JSON.stringify(body) };
}

/** Describes why a stream stops, for the peer: IpcErrors keep their code, anything else is a HANDLER_ERROR. */
export function toCancelPayload(reason: unknown, fallback: TIpcErrorCode = 'STREAM_CANCELLED'): IStreamCancelPayload {
  if (isIpcError(reason)) {
    return { code: reason.code, message: reason.message, ...(reason.remote ? { remote: reason.remote } : {}) };
  }
  if (reason === undefined) return { code: fallback, message: 'cancelled' };
  const remote = toRemoteError(reason);
  return { code: 'HANDLER_ERROR', message: remote.message, remote };
}

export function parseCancelPayload(payload: Buffer): IStreamCancelPayload {
  try {
    const body = JSON.parse(payload.toString('utf8')) as Partial<IStreamCancelPayload>;
    return {
      code: isIpcErrorCode(body.code) ? body.code : 'STREAM_CANCELLED',
      message: typeof body.message === 'string' ? body.message : 'cancelled by the peer',
      ...(body.remote ? { remote: body.remote } : {}),
    };
  } catch {
    return { code: 'STREAM_CANCELLED', message: 'cancelled by the peer' };
  }
}

export function protocolError(message: string, cause?: unknown): IpcError {
  return new IpcError('PROTOCOL_ERROR', message, cause === undefined ? {} : { cause });
}
