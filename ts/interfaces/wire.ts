/**
 * The wire format, version 1. Every frame:
 *
 *   u32 BE  frameLength   bytes that follow this field (header + payload)
 *   u8      kind          EFrameKind
 *   u8      flags         bits 0-1 payload encoding (EPayloadEncoding), bit 2 headers present
 *   u32 BE  id            request or stream correlation id, 0 when unused
 *   u16 BE  typeLength    then typeLength bytes of UTF-8: the message type or topic
 *   [u32 BE headersLength, then headersLength bytes of UTF-8 JSON]   only when bit 2 is set
 *   payload               the rest of the frame
 */
export const FRAME_PREFIX_BYTES = 4;
/** kind + flags + id + typeLength */
export const FRAME_FIXED_HEADER_BYTES = 8;
export const FRAME_MAX_TYPE_BYTES = 0xffff;

export enum EFrameKind {
  Hello = 1,
  Welcome = 2,
  Reject = 3,
  Message = 4,
  Request = 5,
  Response = 6,
  ErrorResponse = 7,
  Ping = 8,
  Pong = 9,
  Goodbye = 10,
  Subscribe = 11,
  Unsubscribe = 12,
  Publish = 13,
  StreamOpen = 14,
  StreamChunk = 15,
  StreamEnd = 16,
  StreamCancel = 17,
  StreamCredit = 18,
}
export const FRAME_KIND_MAX = 18;

export enum EPayloadEncoding {
  None = 0,
  Json = 1,
  V8 = 2,
  Binary = 3,
}

export const FLAG_ENCODING_MASK = 0b11;
export const FLAG_HAS_HEADERS = 0b100;
export const FLAG_KNOWN_BITS = 0b111;

/**
 * A decoded frame. Its bytes are `buf[payloadStart, payloadEnd)`, a view into the received bytes.
 * Those are never reused or overwritten (every socket chunk and every frame joined from several
 * chunks is a fresh allocation; transports must not read into recycled buffers), so a view may be
 * kept: it pins the chunk it lies in. `payload` makes a Buffer view on each access.
 */
export interface IFrame {
  kind: EFrameKind;
  flags: number;
  id: number;
  type: string;
  headers?: Record<string, unknown>;
  buf: Buffer;
  payloadStart: number;
  payloadEnd: number;
  readonly payload: Buffer;
}

/** A frame to encode. A string payload is written as UTF-8 without an intermediate Buffer. */
export interface IOutgoingFrame {
  kind: EFrameKind;
  encoding: EPayloadEncoding;
  id: number;
  type: string;
  headers?: Record<string, unknown>;
  payload?: Buffer | string;
}

/** The handshake, always JSON whatever the serialization, so a mismatch can be reported. */
export interface IHelloPayload {
  serverId: string;
  clientId: string;
  metadata: Record<string, unknown>;
  protocolVersion: number;
  serialization: TSerialization;
  maxMessageSize: number;
  /** A readiness probe (waitForServer): answered with a WELCOME, then closed; never registered as a client. An empty serverId matches any server. */
  probe?: boolean;
}

export interface IWelcomePayload {
  serverId: string;
  clientId: string;
  protocolVersion: number;
  serialization: TSerialization;
  maxMessageSize: number;
}

export interface IRejectPayload {
  code: string;
  message: string;
}

export interface IGoodbyePayload {
  reason: string;
  /** Why, for machines: 'replaced' tells a client not to reconnect (a newer connection took its clientId). */
  code?: TGoodbyeCode;
}

export type TGoodbyeCode = 'stopping' | 'closing' | 'replaced';

export type TSerialization = 'json' | 'advanced';
