/**
 * The wire format, version 2 (see docs/protocol.md). Every frame:
 *
 *   u32 BE  frameLength   bytes that follow this field (header + payload)
 *   u8      kind          EFrameKind
 *   u8      flags         bits 0-1 payload encoding (EPayloadEncoding), bit 2 headers present,
 *                         bit 3 deadline budget present, bit 4 attachments present
 *   u32 BE  id            request or stream correlation id, 0 when unused
 *   u16 BE  typeLength    then typeLength bytes of UTF-8: the message type or topic
 *   [u32 BE budgetMs]     only when bit 3 is set: what the caller's deadline leaves, in ms
 *   [u32 BE headersLength, then headersLength bytes of UTF-8 JSON]   only when bit 2 is set
 *   payload               the rest of the frame
 *
 * With bit 4 (JSON payloads only) the payload is `u32 BE count`, `count` x `u32 BE length`, the
 * JSON text, then the attachments' raw bytes in order: Buffers nested in the data travel beside
 * the JSON instead of inside it (see channel/serializer.ts).
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
  /** The caller gave up on request `id` (abort, timeout): payload JSON `{ code, message }`. */
  Cancel = 19,
  /** Services: a client announces (or withdraws) what it provides; answered on the same id. */
  Provide = 20,
  Unprovide = 21,
  /** Services: a routed call; type = `service` U+0000 `method`, id correlates the answer. */
  Call = 22,
  /** Peers: a message or request addressed to another client; type = `clientId` U+0000 `type`. */
  PeerMessage = 23,
  PeerRequest = 24,
}
export const FRAME_KIND_MAX = 24;

export enum EPayloadEncoding {
  None = 0,
  Json = 1,
  V8 = 2,
  Binary = 3,
}

export const FLAG_ENCODING_MASK = 0b11;
export const FLAG_HAS_HEADERS = 0b100;
export const FLAG_HAS_BUDGET = 0b1000;
export const FLAG_HAS_ATTACHMENTS = 0b10000;
export const FLAG_KNOWN_BITS = 0b11111;
/** The largest deadline budget a frame carries; longer budgets are sent as this (about 49 days). */
export const FRAME_MAX_BUDGET_MS = 0xfffffffe;

/**
 * A decoded frame. Its bytes are `buf[payloadStart, payloadEnd)`, a view into the received bytes.
 * Those are never reused or overwritten (every socket chunk and every frame joined from several
 * chunks is a fresh allocation; links must not read into recycled buffers), so a view may be
 * kept: it pins the chunk it lies in. `payload` makes a Buffer view on each access.
 */
export interface IFrame {
  kind: EFrameKind;
  flags: number;
  id: number;
  type: string;
  headers?: Record<string, unknown>;
  /** The caller's remaining deadline in ms (bit 3), or -1 when the frame carries none. */
  budgetMs: number;
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
  /** Raw bytes sent beside a JSON payload (bit 4). */
  attachments?: Buffer[];
  /** Deadline budget in ms (bit 3); omit or -1 for none. */
  budgetMs?: number;
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
  /** The client's authToken, when it has one. */
  token?: string;
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
