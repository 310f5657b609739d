// The seams between layers. A feature (streams, pub/sub, services) depends on these interfaces,
// never on the classes that implement them.
import type { IpcError } from '../smartipc.errors.js';
import type { EFrameKind, IFrame, TSerialization } from './wire.js';
import type { IRequestOptions } from './options.js';
import type { IEncodedPayload } from '../channel/serializer.js';
import type { HandlerContext } from '../channel/rpc/classes.handlercontext.js';
import type { RawPayload } from '../channel/rpc/rawpayload.js';
import type { TDeadLetterReason } from './observability.js';

/** What a feature sees of the connection it is attached to. */
export interface IConnectionHost {
  /** The peer's id: its clientId seen from a server, the server's id seen from a client. */
  readonly peerId: string;
  readonly isConnected: boolean;
  readonly serialization: TSerialization;
  /** The endpoint, for messages. */
  readonly description: string;
  /** Bytes queued for the peer and not yet taken by the kernel (0 when not connected). */
  readonly queuedBytes: number;
  /** Queues a frame; resolves when the link can take more. While reconnecting, waits in the outbox (bounded). */
  send(kind: EFrameKind, type: string, encoded: IEncodedPayload, id?: number, headers?: Record<string, unknown>): Promise<void>;
  /** Queues a frame on the open link now, whatever is queued already; throws NOT_CONNECTED or MESSAGE_TOO_LARGE. */
  sendNow(kind: EFrameKind, type: string, encoded: IEncodedPayload, id?: number, headers?: Record<string, unknown>): void;
  /** Queues a complete frame encoded once elsewhere (length prefix included); throws as sendNow. */
  sendPrebuiltNow(frame: Buffer): void;
  /** Resolves once the link has written out its queue, or at once when it has none or is closed. */
  waitForDrain(): Promise<void>;
  /**
   * Sends `data` as a frame of `kind` awaiting a Response or ErrorResponse on the same id, with the
   * request contract: timeout, signal, headers, deadline budget, cancel frames, propagation from
   * the running handler.
   */
  request<TRes>(kind: EFrameKind, type: string, data: unknown, options?: IRequestOptions): Promise<TRes>;
  /**
   * Runs `handler` for a received frame of a request-like kind as onMessage handlers run: decoded
   * data, a context whose signal follows the caller, the answer (or HANDLER_ERROR) on the frame's id.
   */
  serve(frame: IFrame, isRequest: boolean, handler: (data: unknown, peerId: string, context: HandlerContext) => unknown, context: HandlerContext, raw?: boolean): void;
  /** A handler context for a received frame (or `context`, filled in): its deadline from the frame's budget, its headers. */
  contextFor(frame: IFrame, isRequest: boolean, context?: HandlerContext): HandlerContext;
  /** Fire-and-forget of a frame kind that carries user data (a message, a peer message). */
  sendMessage(type: string, data?: unknown, kind?: EFrameKind): Promise<void>;
  /** Passes a request on without decoding it; the answer comes back the same way (see IpcConnection.forward). */
  /** `onSettled` runs once when the forwarded request settles, however it does. */
  forward(kind: EFrameKind, type: string, payload: RawPayload, headers: Record<string, unknown> | undefined, context: HandlerContext, onSettled?: () => void): Promise<RawPayload>;
  /** Sends a frame whose payload is passed on as it arrived. */
  sendRaw(kind: EFrameKind, type: string, payload: RawPayload, headers?: Record<string, unknown>): void;
  /** Answers request `id` with an error (NO_HANDLER, FORBIDDEN, ...). */
  replyError(id: number, error: IpcError): void;
  /** Decodes a frame's payload for this connection's serialization; throws PROTOCOL_ERROR. */
  decode(frame: IFrame): unknown;
  /** A protocol fault of the peer: it is told why and dropped. */
  fail(error: IpcError): void;
  /** Closes the link at once (no goodbye: the queue may be full). */
  destroy(error: IpcError): void;
  /** Records a message accepted and not delivered (with its data when small). */
  deadLetter(frame: IFrame, reason: TDeadLetterReason, type: string, peerId: string, error: IpcError): void;
}

/** A feature attached to one connection with `connection.use(feature)`. */
export interface IConnectionFeature {
  /** The frame kinds this feature receives. */
  readonly frameKinds: readonly EFrameKind[];
  onFrame(frame: IFrame): void;
  /** A link was attached (the first connection and every reconnection). */
  onConnect?(): void;
  /** The link is gone; everything in flight on it must settle now. */
  onDisconnect?(reason: IpcError): void;
  /**
   * A message (`isRequest` false) or request that no local handler serves: return true to take it
   * (a gateway forwards it), false to let the connection answer NO_HANDLER.
   */
  claim?(frame: IFrame, isRequest: boolean): boolean;
}
