import { IpcError, invalidArgument, isIpcErrorCode, toRemoteError, withoutStack, type IRemoteError, type TIpcErrorCode } from '../smartipc.errors.js';
import { EFrameKind, EPayloadEncoding, FLAG_ENCODING_MASK, FLAG_HAS_ATTACHMENTS, type IFrame, type IGoodbyePayload, type TGoodbyeCode, type TSerialization } from '../interfaces/wire.js';
import type { IRequestOptions } from '../interfaces/options.js';
import type { TMessageHandler } from '../interfaces/events.js';
import type { TDeadLetterReason } from '../interfaces/observability.js';
import type { Observer } from '../features/observability/classes.observer.js';
import { handleChannel, messageChannel, requestChannel, traceMaybeAsync, traceWithoutResult, type ITraceContext } from '../features/observability/tracing.js';
import type { IConnectionFeature, IConnectionHost } from '../interfaces/hosts.js';
import type { FramedLink, ILinkHandler } from '../framing/classes.framedlink.js';
import { PendingRequests, type IPendingRequest } from './rpc/classes.pendingrequests.js';
import { systemClock } from './clock.js';
import { HandlerContext, currentHandlerContext, handlerContextStorage } from './rpc/classes.handlercontext.js';
import { IdTable } from './rpc/classes.idtable.js';
import { Heartbeat, type IHeartbeatOptions } from './classes.heartbeat.js';
import { Outbox } from './classes.outbox.js';
import { decodePayload, encodeInto, isAllowedEncoding, type IEncodedPayload } from './serializer.js';
import { RawPayload, isPassThrough, passThrough } from './rpc/rawpayload.js';
import { checkRequestOptions, type TCounters } from '../smartipc.options.js';
import { clampDelay } from '../smartipc.timers.js';
import { callLabel } from '../features/services/callchain.js';
import { GUARDED_KINDS, type IFrameGuard } from '../features/security/classes.guard.js';
import { DEAD_LETTER_MAX_DATA_BYTES, DEFAULT_MAX_JSON_DEPTH } from '../smartipc.defaults.js';
import { isThenable } from '../smartipc.thenable.js';
import { debug } from '../smartipc.log.js';

/** What the owner of a connection (server, client, channel) hears from it. */
export interface IConnectionOwner {
  /** Called once per attached link, when it is gone. */
  onDisconnect(reason: IpcError): void;
  onHeartbeatTimeout(silentForMs: number): void;
  /** A failure nobody awaits: a message handler threw, a message did not decode. */
  onError(error: IpcError): void;
  /** The peer sent bytes that are not a valid frame; it is being dropped. */
  onFrameError(error: IpcError): void;
  /** A fire-and-forget frame (message, publish) the guard refused: dropped (FORBIDDEN, RATE_LIMITED). */
  onRefused?(frame: IFrame, reason: IpcError): void;
}

/** Everything a connection needs, resolved once by its owner. */
export interface IConnectionConfig {
  serialization: TSerialization;
  requestTimeoutMs: number;
  /** undefined: no heartbeat. */
  heartbeat?: IHeartbeatOptions;
  /** Handlers by type; a server shares one map among all its connections. */
  handlers: Map<string, TMessageHandler>;
  /** Counters; a server shares one object among all its connections (the observer's). */
  metrics: TCounters;
  /** Latency and dead letters of the owner. */
  observer: Observer;
  /** Bounds of the outbox used while reconnecting. */
  outbox: { maxMessages: number; maxBytes: number };
  owner: IConnectionOwner;
  /** Added to NO_HANDLER messages (a client hosting its own endpoint says so). */
  noHandlerHint?: () => string;
  /** Permissions and rate limit of this connection (a server's, after authentication). */
  guard?: IFrameGuard;
  /** Decoded JSON nested deeper than this is refused. @default 1000 */
  maxJsonDepth?: number;
}

interface IErrorResponseBody {
  code: string;
  message: string;
  remote?: IRemoteError;
  retryAfterMs?: number;
}

const RESOLVED: Promise<void> = Promise.resolve();

/**
 * Frames that count in messagesSent / messagesReceived: what the user sent or answered. Stream
 * chunks, pub/sub acknowledgements, heartbeats and handshakes count in bytes only.
 */
const COUNTS_AS_MESSAGE: readonly boolean[] = kindTable([
  EFrameKind.Message, EFrameKind.Request, EFrameKind.Response, EFrameKind.ErrorResponse, EFrameKind.Publish,
  EFrameKind.Call, EFrameKind.PeerMessage, EFrameKind.PeerRequest,
]);
/** Frames whose payload is user data, encoded in the negotiated serialization (checked on arrival). */
const CARRIES_USER_DATA: readonly boolean[] = kindTable([
  EFrameKind.Message, EFrameKind.Request, EFrameKind.Response, EFrameKind.Publish, EFrameKind.StreamOpen,
  EFrameKind.StreamChunk, EFrameKind.Call, EFrameKind.PeerMessage, EFrameKind.PeerRequest,
]);
const NO_OPTIONS: IRequestOptions = Object.freeze({});

/** `clientId` and `type` of a peer frame's type. */
function splitPeerType(type: string): [string, string] | undefined {
  const at = type.indexOf('\u0000');
  return at < 0 ? undefined : [type.slice(0, at), type.slice(at + 1)];
}

/** A nested request cancelled with its handler: TIMEOUT when the caller's deadline passed (as its own timer would say), else ABORTED. */
function inheritedCode(reason: IpcError): TIpcErrorCode {
  return reason.code === 'TIMEOUT' ? 'TIMEOUT' : 'ABORTED';
}

/** `service` and `method` of a call frame's type (see callchain.ts), split. */
function splitCallType(type: string): [string, string] | undefined {
  const label = callLabel(type);
  const at = label.indexOf('.');
  return at < 0 ? undefined : [label.slice(0, at), label.slice(at + 1)];
}

/** A frame's payload as it arrived: encoding bits and bytes (a view: received bytes are never reused). */
function rawPayloadOf(frame: IFrame): RawPayload {
  return new RawPayload(frame.flags & (FLAG_ENCODING_MASK | FLAG_HAS_ATTACHMENTS), frame.payloadEnd > frame.payloadStart ? frame.buf.subarray(frame.payloadStart, frame.payloadEnd) : undefined);
}

function kindTable(kinds: EFrameKind[]): boolean[] {
  const table: boolean[] = [];
  for (const kind of kinds) table[kind] = true;
  return table;
}

/**
 * One logical link to one peer: request/response correlation with deadlines and cancellation,
 * message dispatch with a handler context, heartbeat, and the outbox that holds sends while the
 * owner reconnects. The link under it can be replaced (a client reconnects); requests in flight
 * never outlive the link they were sent on. Features (streams, pub/sub, services) attach with
 * `use()` and see it only through IConnectionHost.
 */
export class IpcConnection implements IConnectionHost, ILinkHandler {
  /** The peer's id: its clientId seen from a server, the server's id seen from a client. */
  public peerId = '';
  public connectedAt = 0;
  private lastMessageAt = 0;

  private link?: FramedLink;
  private readonly pending: PendingRequests;
  /** Handlers still running for the peer's requests (and async message handlers), by request id. */
  private readonly running = new IdTable<HandlerContext>();
  private runningMessages?: Set<HandlerContext>;
  private heartbeat?: Heartbeat;
  private outbox?: Outbox;
  private goodbye?: IGoodbyePayload;
  private closingByUs = false;
  private activeHandlers = 0;
  /** The part of activeHandlers that answers requests (requestsInFlight counts only these). */
  private activeRequests = 0;
  private idleWaiters: Array<() => void> = [];
  private closeWaiters: Array<() => void> = [];
  private readonly features: IConnectionFeature[] = [];
  private readonly featureByKind: Array<IConnectionFeature | undefined> = [];
  /** Reused for every encode on the per-message path: no wrapper object per message. */
  private readonly scratch: IEncodedPayload = { encoding: EPayloadEncoding.None, payload: undefined };
  /** serialization === 'json', looked up once instead of per message. */
  private readonly json: boolean;
  private readonly maxJsonDepth: number;
  private readonly guard?: IFrameGuard;

  constructor(private readonly config: IConnectionConfig) {
    this.json = config.serialization === 'json';
    this.maxJsonDepth = config.maxJsonDepth ?? DEFAULT_MAX_JSON_DEPTH;
    this.guard = config.guard;
    this.pending = new PendingRequests(systemClock, 1, (entry, reason) => this.tellPeerGaveUp(entry, reason));
  }

  public get serialization(): TSerialization {
    return this.config.serialization;
  }

  public get isConnected(): boolean {
    return this.link?.isOpen === true;
  }

  /** Sends wait in the outbox instead of failing (set by a reconnecting client). */
  public get isHoldingSends(): boolean {
    return this.outbox !== undefined;
  }

  /** Requests sent and not settled plus requests received and not yet answered (cancelled ones excluded). */
  public get requestsInFlight(): number {
    return this.pending.size + this.activeRequests;
  }

  /** Requests this side sent and awaits. */
  public get pendingRequests(): number {
    return this.pending.size;
  }

  /** Handlers running for the peer (requests not yet answered and not cancelled). */
  public get activeHandlerCount(): number {
    return this.activeHandlers;
  }

  public get description(): string {
    return this.link?.describe() ?? '(not connected)';
  }

  /** Date.now() of the peer's last message or request (heartbeats do not count), or of connecting. */
  public get lastActivity(): number {
    return Math.max(this.connectedAt, this.lastMessageAt);
  }

  /** The link while attached (a server sweeps for slow frames). */
  public get currentLink(): FramedLink | undefined {
    return this.link;
  }

  /** The link's peer information (medium, TLS certificate), while connected. */
  public get linkPeer(): FramedLink['peer'] | undefined {
    return this.link?.peer;
  }

  // ---- features --------------------------------------------------------------------------------

  /** Attaches a feature: from now on it receives its frame kinds and the link's lifecycle. */
  public use(feature: IConnectionFeature): void {
    for (const kind of feature.frameKinds) {
      if (this.featureByKind[kind] !== undefined) throw new Error(`frame kind ${kind} already has a feature`);
      this.featureByKind[kind] = feature;
    }
    this.features.push(feature);
  }

  // ---- link management -------------------------------------------------------------------------

  /**
   * Takes over a link whose handshake is done (the owner then hands it over from the handshake
   * gate). Queued outbox entries leave first, in order.
   */
  public attach(link: FramedLink, peerId: string): void {
    this.link = link;
    link.countInto(this.config.metrics);
    this.peerId = peerId;
    this.goodbye = undefined;
    this.closingByUs = false;
    this.connectedAt = Date.now();
    this.flushOutbox();
    if (this.config.heartbeat) {
      this.heartbeat = new Heartbeat(
        {
          sendPing: () => this.sendControl(EFrameKind.Ping),
          onHeartbeatTimeout: (silentForMs) => this.onHeartbeatTimeout(silentForMs),
        },
        this.config.heartbeat,
      );
      this.heartbeat.start();
    }
    for (const feature of this.features) feature.onConnect?.();
  }

  /** From now on sends wait (bounded) for the next `attach` instead of failing. */
  public holdSends(): void {
    this.outbox ??= new Outbox(this.config.outbox.maxMessages, this.config.outbox.maxBytes);
  }

  /** Fails whatever waits in the outbox and stops holding sends. */
  public releaseSends(error: IpcError): void {
    const outbox = this.outbox;
    this.outbox = undefined;
    if (!outbox) return;
    for (const entry of outbox.takeAll()) {
      if (entry.pendingId !== undefined) this.pending.take(entry.pendingId)?.reject(error);
      else entry.reject?.(error);
    }
    this.pending.disarmIfIdle();
  }

  /** What the peer said when it closed the current (or last) connection, if it said anything. */
  public get peerGoodbye(): IGoodbyePayload | undefined {
    return this.goodbye;
  }

  /** Tells the peer why we are leaving, then closes once queued frames are out. The disconnect reason is CLOSED. */
  public close(reason: string, code: TGoodbyeCode = 'closing'): void {
    const link = this.link;
    if (!link?.isOpen) return;
    this.closingByUs = true;
    try {
      link.send({ kind: EFrameKind.Goodbye, encoding: EPayloadEncoding.Json, id: 0, type: '', payload: JSON.stringify({ reason, code } satisfies IGoodbyePayload) });
    } catch {
      // closing anyway
    }
    link.end();
  }

  /** Closes at once with an error (protocol fault, heartbeat timeout, replaced connection). */
  public destroy(error: IpcError): void {
    this.link?.destroy(error);
  }

  /** A protocol fault of the peer: dropped with the reason. */
  public fail(error: IpcError): void {
    this.config.metrics.errors++;
    this.config.owner.onFrameError(error);
    this.destroy(error);
  }

  /** Resolves once the current link is closed and everything on it settled (at once when none is attached). */
  public whenClosed(): Promise<void> {
    if (!this.isConnected) return RESOLVED;
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  /** Resolves when no handler is running (for a graceful stop). Cancelled handlers do not count. */
  public whenIdle(): Promise<void> {
    if (this.activeHandlers === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  // ---- sending ---------------------------------------------------------------------------------

  /** Fire-and-forget. Resolves once the frame is queued for the socket (waiting for drain when the socket is full). */
  public sendMessage(type: string, data?: unknown, kind: EFrameKind = EFrameKind.Message): Promise<void> {
    if (typeof type !== 'string') return Promise.reject(invalidArgument(`a message type must be a string, got ${typeof type}`));
    const out = this.scratch;
    try {
      encodeInto(out, data, this.json, `message "${type}"`);
    } catch (err) {
      return Promise.reject(err);
    }
    const link = this.link;
    if (link !== undefined && link.isOpen) {
      // The per-message path: no wrapper objects, one shared resolved promise.
      try {
        link.sendFrame(kind, out.encoding, 0, type, undefined, out.payload, -1, out.attachments);
      } catch (err) {
        return Promise.reject(err);
      }
      this.config.metrics.messagesSent++;
      if (messageChannel.hasSubscribers) messageChannel.publish({ direction: 'sent', type, peerId: this.peerId });
      return link.needsDrain ? link.waitForDrain() : RESOLVED;
    }
    return this.send(kind, type, { encoding: out.encoding, payload: out.payload, attachments: out.attachments });
  }

  /** Sends an already-encoded frame of any kind (features use it); waits in the outbox while reconnecting. */
  public send(kind: EFrameKind, type: string, encoded: IEncodedPayload, id = 0, headers?: Record<string, unknown>): Promise<void> {
    const link = this.link;
    if (link?.isOpen) {
      try {
        link.send({ kind, encoding: encoded.encoding, id, type, headers, payload: encoded.payload, attachments: encoded.attachments });
      } catch (err) {
        return Promise.reject(err);
      }
      if (COUNTS_AS_MESSAGE[kind]) this.config.metrics.messagesSent++;
      return link.needsDrain ? link.waitForDrain() : RESOLVED;
    }
    if (this.outbox) {
      return new Promise((resolve, reject) => {
        try {
          this.outbox!.push({ kind, id, type, encoded, headers, resolve, reject });
        } catch (err) {
          reject(err);
        }
      });
    }
    return Promise.reject(this.notConnected());
  }

  public sendNow(kind: EFrameKind, type: string, encoded: IEncodedPayload, id = 0, headers?: Record<string, unknown>): void {
    const link = this.link;
    if (!link?.isOpen) throw this.notConnected();
    link.send({ kind, encoding: encoded.encoding, id, type, headers, payload: encoded.payload, attachments: encoded.attachments });
    if (COUNTS_AS_MESSAGE[kind]) this.config.metrics.messagesSent++;
  }

  public sendPrebuiltNow(frame: Buffer): void {
    const link = this.link;
    if (!link?.isOpen) throw this.notConnected();
    link.sendEncoded(frame);
    this.config.metrics.messagesSent++;
  }

  public get queuedBytes(): number {
    return this.link?.queuedBytes ?? 0;
  }

  public waitForDrain(): Promise<void> {
    return this.link?.waitForDrain() ?? RESOLVED;
  }

  /**
   * A request (or another request-like frame kind: a service call, a peer request). Its timeout is
   * capped by the deadline of the handler it is made in, and it is cancelled with that handler
   * (unless `propagate: false`). Giving up (abort, timeout) sends a cancel frame to the peer.
   */
  public request<TRes = unknown>(kind: EFrameKind, type: string, data?: unknown, options: IRequestOptions = NO_OPTIONS): Promise<TRes> {
    if (!requestChannel.hasSubscribers) return this.requestInner<TRes>(kind, type, data, options, undefined);
    // Traced: a `start` subscriber may write the headers (a traceparent) before anything is encoded.
    const names = kind === EFrameKind.Call ? splitCallType(type) : undefined;
    const peer = kind === EFrameKind.PeerRequest ? splitPeerType(type) : undefined;
    const trace: ITraceContext = {
      type: names ? `${names[0]}.${names[1]}` : peer ? peer[1] : type,
      peerId: peer ? peer[0] : this.peerId,
      id: 0,
      ...(names ? { service: names[0], method: names[1] } : {}),
      headers: { ...(options.headers ?? {}) },
      bytes: 0,
    };
    return traceWithoutResult(requestChannel, trace, () => this.requestInner<TRes>(kind, type, data, options, trace));
  }

  private requestInner<TRes>(kind: EFrameKind, type: string, data: unknown, options: IRequestOptions, trace: ITraceContext | undefined): Promise<TRes> {
    if (typeof type !== 'string') return Promise.reject(invalidArgument(`a request type must be a string, got ${typeof type}`));
    if (options !== NO_OPTIONS) {
      try {
        checkRequestOptions(options);
      } catch (err) {
        return Promise.reject(err);
      }
      if (options.signal?.aborted) {
        return Promise.reject(new IpcError('ABORTED', `request "${type}" was aborted before it was sent`, { cause: options.signal.reason }));
      }
    }
    let timeoutMs = options.timeout ?? this.config.requestTimeoutMs;
    let unlinkParent: (() => void) | undefined;
    const parent = options.propagate === false ? undefined : currentHandlerContext();
    if (parent !== undefined) {
      if (parent.isAborted) {
        return Promise.reject(new IpcError(inheritedCode(parent.reason!), `request "${type}" not sent: the handler it was made in was cancelled (${parent.reason!.message})`, { cause: parent.reason }));
      }
      const left = parent.remainingMs();
      if (left < timeoutMs) timeoutMs = left;
    }
    let headers = trace !== undefined ? trace.headers : options.headers;
    // A trace that runs through a handler runs on through the calls it makes.
    const traceparent = parent?.headers?.traceparent;
    if (traceparent !== undefined && (headers === undefined || headers.traceparent === undefined)) headers = { ...headers, traceparent };
    const out = this.scratch;
    try {
      encodeInto(out, data, this.json, `request "${type}"`);
    } catch (err) {
      return Promise.reject(err);
    }
    const link = this.link;
    const open = link?.isOpen === true;
    if (!open && !this.outbox) return Promise.reject(this.notConnected());
    const id = this.pending.allocateId();
    if (parent !== undefined) {
      unlinkParent = parent.onAbort((reason) => {
        this.pending.giveUp(id, new IpcError(inheritedCode(reason), `request "${type}" was cancelled with the handler it was made in: ${reason.message}`, { cause: reason }));
      });
    }
    // Errors, latency and traces name a call `service.method`, not its whole routing type.
    const label = kind === EFrameKind.Call ? callLabel(type) : kind === EFrameKind.PeerRequest ? (splitPeerType(type)?.[1] ?? type) : type;
    const promise = this.pending.add<TRes>(id, label, timeoutMs, options.signal, unlinkParent);
    try {
      if (open) {
        // A traced request carries a headers object for the tracer; left empty, nothing is sent.
        const noHeaders = headers === undefined || (trace !== undefined && options.headers === undefined && Object.keys(headers).length === 0);
        const headersJson = noHeaders ? undefined : JSON.stringify(headers);
        // The budget is what the caller's (clamped) timer will wait, not more.
        const bytes = link!.sendFrame(kind, out.encoding, id, type, headersJson, out.payload, timeoutMs === Infinity ? -1 : clampDelay(timeoutMs), out.attachments);
        this.config.metrics.messagesSent++;
        if (trace !== undefined) {
          trace.id = id;
          trace.bytes = bytes;
        }
      } else {
        this.outbox!.push({
          kind,
          id,
          type,
          encoded: { encoding: out.encoding, payload: out.payload, attachments: out.attachments },
          headers,
          pendingId: id,
        });
      }
    } catch (err) {
      this.pending.take(id);
      return Promise.reject(err);
    }
    return promise;
  }

  /**
   * Passes a request on to this connection's peer without decoding it (a hub routing a call or a
   * peer request): the payload goes as it arrived, the answer comes back the same way, and every
   * failure is relayed with its code (pass-through). Linked to `context`: when its caller goes away
   * the peer is told (a cancel frame).
   */
  public forward(kind: EFrameKind, type: string, payload: RawPayload, headers: Record<string, unknown> | undefined, context: HandlerContext, onSettled?: () => void): Promise<RawPayload> {
    const link = this.link;
    if (link === undefined || !link.isOpen) {
      onSettled?.();
      return Promise.reject(passThrough(this.notConnected()));
    }
    const budgetMs = context.deadline === undefined ? -1 : context.remainingMs();
    const id = this.pending.allocateId();
    const unlink = context.onAbort((reason) => {
      this.pending.giveUp(id, new IpcError(reason.code, `forwarded "${type}" cancelled: ${reason.message}`, { cause: reason }));
    });
    const cleanup = onSettled === undefined ? unlink : () => {
      unlink();
      onSettled();
    };
    const promise = this.pending.add<RawPayload>(id, type, budgetMs < 0 ? Infinity : budgetMs, undefined, cleanup);
    const entry = this.pending.peek(id)!;
    entry.raw = true;
    // Every failure is relayed with its code: marked where it is rejected (no promise in between).
    const reject = entry.reject;
    entry.reject = (err: IpcError) => reject(passThrough(err));
    try {
      link.sendFrame(kind, payload.flags, id, type, headers === undefined ? undefined : JSON.stringify(headers), payload.bytes, budgetMs);
      this.config.metrics.messagesSent++;
    } catch (err) {
      this.pending.take(id);
      entry.reject(err as IpcError);
    }
    return promise;
  }

  /** Sends a frame whose payload is passed on as it arrived (a routed message). */
  public sendRaw(kind: EFrameKind, type: string, payload: RawPayload, headers?: Record<string, unknown>): void {
    const link = this.link;
    if (link === undefined || !link.isOpen) throw this.notConnected();
    link.sendFrame(kind, payload.flags, 0, type, headers === undefined ? undefined : JSON.stringify(headers), payload.bytes);
    if (COUNTS_AS_MESSAGE[kind]) this.config.metrics.messagesSent++;
  }

  /** The caller gave up on a request the peer may still be working on: tell it, so its handler's signal aborts. */
  private lastCancel = { code: '', message: '', json: '' };

  private tellPeerGaveUp(entry: IPendingRequest, reason: IpcError): void {
    // A hub's forwarded call that times out is the caller's timeout, counted there.
    if (reason.code === 'TIMEOUT' && !entry.raw) this.config.metrics.timeouts++;
    const link = this.link;
    if (link === undefined || !link.isOpen) return;
    // Requests that time out together share their reason's text: one JSON body for the whole batch.
    if (reason.message !== this.lastCancel.message || reason.code !== this.lastCancel.code) {
      this.lastCancel = { code: reason.code, message: reason.message, json: JSON.stringify({ code: reason.code, message: reason.message }) };
    }
    try {
      link.sendFrame(EFrameKind.Cancel, EPayloadEncoding.Json, entry.id, '', undefined, this.lastCancel.json);
    } catch {
      // the link is closing; the peer learns it from the close
    }
  }

  private sendControl(kind: EFrameKind): void {
    try {
      this.link?.sendFrame(kind, EPayloadEncoding.None, 0, '', undefined, undefined);
    } catch {
      // the connection is closing; its close handler reports it
    }
  }

  private flushOutbox(): void {
    const outbox = this.outbox;
    this.outbox = undefined;
    if (!outbox) return;
    for (const entry of outbox.takeAll()) {
      let budgetMs = -1;
      if (entry.pendingId !== undefined) {
        const pending = this.pending.peek(entry.pendingId);
        if (pending === undefined) continue; // timed out or aborted meanwhile
        if (pending.deadline !== Infinity) budgetMs = Math.max(0, pending.deadline - performance.now());
      }
      try {
        const { encoding, payload, attachments } = entry.encoded;
        this.link!.send({ kind: entry.kind, encoding, id: entry.id, type: entry.type, headers: entry.headers, payload, attachments, budgetMs });
        if (COUNTS_AS_MESSAGE[entry.kind]) this.config.metrics.messagesSent++;
        entry.resolve?.();
      } catch (err) {
        if (entry.pendingId !== undefined) this.pending.take(entry.pendingId)?.reject(err as IpcError);
        else entry.reject?.(err as IpcError);
      }
    }
  }

  private notConnected(): IpcError {
    return new IpcError('NOT_CONNECTED', `not connected to ${this.peerId || this.description}`);
  }

  // ---- receiving -------------------------------------------------------------------------------

  public onFrame(frame: IFrame): void {
    this.heartbeat?.heardFromPeer();
    const kind = frame.kind;
    if (CARRIES_USER_DATA[kind] && !isAllowedEncoding(this.json, frame.flags)) {
      this.fail(new IpcError('PROTOCOL_ERROR', `frame kind ${kind} from ${this.peerId || this.description} is encoded in a way the '${this.config.serialization}' serialization agreed at the handshake does not allow (flags ${frame.flags})`));
      return;
    }
    if (this.guard !== undefined && GUARDED_KINDS[kind]) {
      const refusal = this.guard.check(frame, this.link?.lastReceivedAt ?? Date.now());
      if (refusal !== undefined) {
        this.refuse(frame, refusal);
        return;
      }
    }
    switch (kind) {
      case EFrameKind.Message:
        this.config.metrics.messagesReceived++;
        this.dispatch(frame, false);
        return;
      case EFrameKind.Request:
        this.config.metrics.messagesReceived++;
        this.dispatch(frame, true);
        return;
      case EFrameKind.Response:
        this.config.metrics.messagesReceived++;
        this.settleResponse(frame);
        return;
      case EFrameKind.ErrorResponse:
        this.config.metrics.messagesReceived++;
        this.settleError(frame);
        return;
      case EFrameKind.Cancel:
        this.onCancel(frame);
        return;
      case EFrameKind.Ping:
        this.sendControl(EFrameKind.Pong);
        return;
      case EFrameKind.Pong:
        return;
      case EFrameKind.Goodbye:
        try {
          const body = JSON.parse(frame.payload.toString('utf8')) as IGoodbyePayload;
          this.goodbye = { reason: String(body.reason), ...(typeof body.code === 'string' ? { code: body.code } : {}) };
        } catch {
          this.goodbye = { reason: 'closed by peer' };
        }
        return;
      default: {
        if (COUNTS_AS_MESSAGE[kind]) this.config.metrics.messagesReceived++;
        const feature = this.featureByKind[kind];
        if (feature) feature.onFrame(frame);
        else debug('ignoring frame kind %d from %s', kind, this.peerId);
      }
    }
  }

  /** A frame the guard refused: a request-like one is answered with the refusal, a subscribe or provide refused on its id, the rest dropped. */
  private refuse(frame: IFrame, refusal: IpcError): void {
    if (COUNTS_AS_MESSAGE[frame.kind]) this.config.metrics.messagesReceived++;
    if (refusal.code === 'RATE_LIMITED') this.config.metrics.rateLimited++;
    switch (frame.kind) {
      case EFrameKind.Request:
      case EFrameKind.Call:
      case EFrameKind.PeerRequest:
        this.replyError(frame.id, refusal);
        return;
      case EFrameKind.Subscribe:
      case EFrameKind.Provide:
        try {
          this.sendNow(frame.kind, frame.type, { encoding: EPayloadEncoding.Json, payload: JSON.stringify({ code: refusal.code, message: refusal.message }) }, frame.id);
        } catch {
          // closing
        }
        return;
      default:
        debug('%s from %s dropped: %s', EFrameKind[frame.kind], this.peerId, refusal.message);
        this.config.owner.onRefused?.(frame, refusal);
        this.deadLetter(frame, refusal.code === 'RATE_LIMITED' ? 'rateLimited' : 'forbidden', frame.type, this.peerId, refusal);
    }
  }

  public onFrameError(error: IpcError): void {
    this.config.metrics.errors++;
    this.config.owner.onFrameError(error);
  }

  public onClose(error: IpcError | undefined): void {
    this.heartbeat?.stop();
    this.heartbeat = undefined;
    this.link = undefined;
    const reason = this.closingByUs
      ? new IpcError('CLOSED', `connection to ${this.peerId} closed by this side`)
      : this.goodbye !== undefined
        ? new IpcError('CONNECTION_LOST', `${this.peerId} closed the connection: ${this.goodbye.reason}`)
        : error ?? new IpcError('CONNECTION_LOST', `connection to ${this.peerId} closed`);
    if (reason.code === 'CONNECTION_LOST' && error && error.code !== 'CONNECTION_LOST') this.config.metrics.errors++;
    // What was in flight is lost either way (the `disconnect` reason says whether this side closed).
    this.pending.rejectAll((entry) => new IpcError('CONNECTION_LOST', `request "${entry.type}" lost: ${reason.message}`, { cause: reason }));
    // The caller is gone: every handler still running for it is cancelled.
    const callerGone = new IpcError('CONNECTION_LOST', `the caller's connection closed: ${reason.message}`, { cause: reason });
    for (const context of this.running.takeAll()) this.cancelHandler(context, callerGone);
    if (this.runningMessages) {
      const messages = this.runningMessages;
      this.runningMessages = undefined;
      for (const context of messages) this.cancelHandler(context, callerGone);
    }
    for (const feature of this.features) feature.onDisconnect?.(reason);
    this.config.owner.onDisconnect(reason);
    const waiters = this.closeWaiters;
    this.closeWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private dispatch(frame: IFrame, isRequest: boolean): void {
    const handler = this.config.handlers.get(frame.type);
    if (handler === undefined) {
      for (const feature of this.features) if (feature.claim?.(frame, isRequest)) return;
      if (isRequest) {
        this.replyError(frame.id, new IpcError('NO_HANDLER', `no handler for "${frame.type}"${this.config.noHandlerHint?.() ?? ''}`));
      } else {
        debug('no handler for message "%s" from %s; dead letter', frame.type, this.peerId);
        this.deadLetter(frame, 'noHandler', frame.type, this.peerId, new IpcError('NO_HANDLER', `no handler for "${frame.type}"`));
      }
      return;
    }
    if (!isRequest && messageChannel.hasSubscribers) messageChannel.publish({ direction: 'received', type: frame.type, peerId: this.peerId });
    this.serve(frame, isRequest, handler, this.contextFor(frame, isRequest));
  }

  /** The context of a received request or message; its deadline from the frame's budget, measured from the chunk's arrival. */
  public contextFor(frame: IFrame, isRequest: boolean, context: HandlerContext = new HandlerContext(frame.type, isRequest, this.peerId)): HandlerContext {
    if (frame.headers !== undefined) context.headers = frame.headers;
    if (frame.budgetMs >= 0) context.deadline = (this.link?.lastReceivedAt ?? Date.now()) + frame.budgetMs;
    return context;
  }

  /**
   * Runs a handler for a frame: decodes the data, calls it in the context's async scope (so nested
   * requests inherit its deadline and cancellation), and answers a request with its result.
   */
  public serve(frame: IFrame, isRequest: boolean, handler: (data: unknown, peerId: string, context: HandlerContext) => unknown, context: HandlerContext, raw = false): void {
    let data: unknown;
    try {
      // A handler that forwards (raw) gets the payload as it arrived.
      data = raw ? rawPayloadOf(frame) : decodePayload(this.json, frame.flags, frame.buf, frame.payloadStart, frame.payloadEnd, this.maxJsonDepth);
    } catch (err) {
      this.config.metrics.errors++;
      if (isRequest) this.replyError(frame.id, err as IpcError);
      else {
        this.deadLetter(frame, 'undecodable', context.type, context.peerId, err as IpcError, false);
        this.config.owner.onError(err as IpcError);
      }
      return;
    }
    const id = isRequest ? frame.id : 0;
    // The chunk's arrival time: no Date.now() per frame.
    this.lastMessageAt = this.link?.lastReceivedAt ?? this.lastMessageAt;
    this.activeHandlers++;
    if (isRequest) this.activeRequests++;
    // Handler time: every request (a hub's forward too: the time the routed call took); messages
    // sampled per type, as two clock readings are a fifth of a small message's cost. -1: counted, not timed.
    context.startedAt = isRequest || this.config.observer.handlers.shouldTime(context.type) ? performance.now() : -1;
    if (!raw && !isRequest) context.data = data;
    let result: unknown;
    try {
      // A forwarding handler (raw) is handed its context and makes no nested calls of its own: no async scope to enter.
      result = handleChannel.hasSubscribers
        ? this.traceHandler(frame, handler, data, context)
        : raw
          ? handler(data, context.peerId, context)
          : handlerContextStorage.run(context, handler, data, context.peerId, context);
    } catch (err) {
      this.handlerFailed(id, context, err);
      return;
    }
    if (isThenable(result)) {
      // An asynchronous message handler is always timed (from here: its synchronous start is short).
      if (context.startedAt < 0) context.startedAt = performance.now();
      // Only handlers still running can be cancelled: a synchronous answer needs no bookkeeping.
      if (isRequest) this.running.set(id, context);
      else (this.runningMessages ??= new Set()).add(context);
      (result as PromiseLike<unknown>).then(
        (value) => this.settleHandler(id, context, true, value),
        (err) => this.settleHandler(id, context, false, err),
      );
    } else {
      this.handlerDone(id, context, result);
    }
  }

  private settleHandler(id: number, context: HandlerContext, ok: boolean, value: unknown): void {
    if (context.isRequest) {
      if (this.running.get(id) === context) this.running.take(id);
    } else {
      this.runningMessages?.delete(context);
    }
    // Cancelled: it was no longer counted, and its caller wants no answer.
    if (context.isAborted) {
      debug('late result of "%s" for %s dropped: %s', context.type, this.peerId, context.reason!.message);
      return;
    }
    if (ok) this.handlerDone(id, context, value);
    else this.handlerFailed(id, context, value);
  }

  private handlerDone(id: number, context: HandlerContext, value: unknown): void {
    this.handlerFinished(context);
    this.recordHandlerTime(context);
    if (!context.isRequest) return;
    const link = this.link;
    if (link === undefined || !link.isOpen) {
      debug('response to "%s" for %s dropped: connection closed', context.type, this.peerId);
      return;
    }
    if (value instanceof RawPayload) {
      // A forwarded answer: its bytes and encoding bits go on unchanged.
      try {
        link.sendFrame(EFrameKind.Response, value.flags, id, '', undefined, value.bytes);
        this.config.metrics.messagesSent++;
      } catch (err) {
        this.replyError(id, err as IpcError);
      }
      return;
    }
    const out = this.scratch;
    try {
      encodeInto(out, value, this.json, `response to "${context.type}"`);
    } catch (err) {
      this.config.metrics.errors++;
      this.replyError(id, new IpcError('HANDLER_ERROR', (err as Error).message));
      return;
    }
    try {
      link.sendFrame(EFrameKind.Response, out.encoding, id, '', undefined, out.payload, -1, out.attachments);
      this.config.metrics.messagesSent++;
    } catch (err) {
      const error = err as IpcError;
      this.config.metrics.errors++;
      this.replyError(id, new IpcError(isIpcErrorCode(error.code) ? error.code : 'HANDLER_ERROR', `response to "${context.type}": ${error.message}`));
    }
  }

  private recordHandlerTime(context: HandlerContext): void {
    if (context.startedAt > 0) {
      const now = performance.now();
      this.config.observer.handlers.record(context.type, now - context.startedAt, now);
    } else if (context.startedAt < 0) {
      this.config.observer.handlers.skip(context.type);
    }
  }

  private handlerFailed(id: number, context: HandlerContext, thrown: unknown): void {
    this.handlerFinished(context);
    this.recordHandlerTime(context);
    if (isPassThrough(thrown)) {
      // The library's own refusal or a relayed failure: the caller gets its code, not HANDLER_ERROR.
      if (context.isRequest) this.replyError(id, thrown);
      else this.config.owner.onError(thrown);
      return;
    }
    this.config.metrics.errors++;
    const remote = toRemoteError(thrown);
    if (context.isRequest) {
      this.replyError(id, new IpcError('HANDLER_ERROR', remote.message, { remote }));
    } else {
      const error = new IpcError('HANDLER_ERROR', `handler for message "${context.type}" threw: ${remote.message}`, { cause: thrown, remote });
      this.config.observer.deadLetter({ reason: 'handlerError', type: context.type, peerId: context.peerId, ...(context.data !== undefined ? { data: context.data } : {}), code: 'HANDLER_ERROR', at: Date.now() });
      this.config.owner.onError(error);
    }
  }

  private handlerFinished(context: HandlerContext): void {
    context.finish();
    if (context.isRequest) this.activeRequests--;
    this.activeHandlers--;
    if (this.activeHandlers === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /** The caller cancelled request `frame.id` (abort, timeout): the handler's signal aborts with that code. */
  private onCancel(frame: IFrame): void {
    const context = this.running.take(frame.id);
    if (context === undefined) return; // answered already, or never ran
    let code: TIpcErrorCode = 'ABORTED';
    let message = 'the caller cancelled the request';
    try {
      const body = JSON.parse(frame.payload.toString('utf8')) as { code?: unknown; message?: unknown };
      if (isIpcErrorCode(body.code)) code = body.code;
      if (typeof body.message === 'string') message = body.message;
    } catch {
      // a cancel is a cancel
    }
    // Made for a frame from the network: a stack would show only this dispatch, and costs more than the rest of the cancel.
    this.cancelHandler(context, withoutStack(() => new IpcError(code, `request "${context.type}" from ${this.peerId}: ${message}`)));
  }

  private cancelHandler(context: HandlerContext, reason: IpcError): void {
    if (context.isAborted) return;
    context.abort(reason);
    // It no longer counts as in flight, and a graceful stop need not wait for it.
    this.handlerFinished(context);
  }

  /** Answers request `id` with an error; its code crosses the wire. */
  public replyError(id: number, error: IpcError): void {
    const body: IErrorResponseBody = { code: error.code, message: error.message };
    if (error.remote) body.remote = error.remote;
    if (error.retryAfterMs !== undefined) body.retryAfterMs = error.retryAfterMs;
    try {
      this.link?.send({ kind: EFrameKind.ErrorResponse, encoding: EPayloadEncoding.Json, id, type: '', payload: JSON.stringify(body) });
      this.config.metrics.messagesSent++;
    } catch (err) {
      debug('could not send error response to %s: %s', this.peerId, (err as Error).message);
    }
  }

  public decode(frame: IFrame): unknown {
    return decodePayload(this.json, frame.flags, frame.buf, frame.payloadStart, frame.payloadEnd, this.maxJsonDepth);
  }

  private settleResponse(frame: IFrame): void {
    const entry = this.pending.take(frame.id);
    if (!entry) {
      debug('late response %d from %s ignored', frame.id, this.peerId);
      return;
    }
    if (entry.raw) {
      entry.resolve(rawPayloadOf(frame));
      return;
    }
    const now = performance.now();
    this.config.observer.requests.record(entry.type, now - entry.startedAt, now);
    let value: unknown;
    try {
      value = this.decode(frame);
    } catch (err) {
      this.config.metrics.errors++;
      entry.reject(err as IpcError);
      return;
    }
    entry.resolve(value);
  }

  private settleError(frame: IFrame): void {
    const entry = this.pending.take(frame.id);
    if (!entry) return;
    if (!entry.raw) {
      const now = performance.now();
      this.config.observer.requests.record(entry.type, now - entry.startedAt, now);
    }
    let body: IErrorResponseBody;
    try {
      body = JSON.parse(frame.payload.toString('utf8')) as IErrorResponseBody;
    } catch {
      body = { code: 'PROTOCOL_ERROR', message: 'unreadable error response' };
    }
    const code = isIpcErrorCode(body.code) ? body.code : 'HANDLER_ERROR';
    if (code === 'RATE_LIMITED') this.config.metrics.rateLimited++;
    // The other side ran out of this request's time first (a hub's budget): a timeout all the same.
    else if (code === 'TIMEOUT' && !entry.raw) this.config.metrics.timeouts++;
    const retryAfterMs = typeof body.retryAfterMs === 'number' ? body.retryAfterMs : undefined;
    entry.reject(new IpcError(code, String(body.message), { ...(body.remote ? { remote: body.remote } : {}), ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) }));
  }

  /**
   * Records a message that was accepted and not delivered. Its data comes along when the payload
   * is small (decoded here unless `decodable` is false).
   */
  public deadLetter(frame: IFrame, reason: TDeadLetterReason, type: string, peerId: string, error: IpcError, decodable = true): void {
    let data: unknown;
    if (decodable && frame.payloadEnd - frame.payloadStart <= DEAD_LETTER_MAX_DATA_BYTES) {
      try {
        data = this.decode(frame);
      } catch {
        // kept without its data
      }
    }
    this.config.observer.deadLetter({ reason, type, peerId, ...(data !== undefined ? { data } : {}), code: error.code, at: Date.now() });
  }

  /** A handler run on the smartipc:handle tracing channel (only while someone subscribes). */
  private traceHandler(frame: IFrame, handler: (data: unknown, peerId: string, context: HandlerContext) => unknown, data: unknown, context: HandlerContext): unknown {
    const call = context as HandlerContext & { service?: string; method?: string };
    const trace: ITraceContext = {
      type: context.type,
      peerId: context.peerId,
      id: frame.id,
      ...(call.service !== undefined ? { service: call.service, method: call.method } : {}),
      headers: context.headers ?? {},
      bytes: frame.payloadEnd - frame.payloadStart,
    };
    return traceMaybeAsync(handleChannel, trace, () => handlerContextStorage.run(context, handler, data, context.peerId, context));
  }

  private onHeartbeatTimeout(silentForMs: number): void {
    const error = new IpcError('TIMEOUT', `heartbeat timeout: nothing heard from ${this.peerId} for ${silentForMs} ms`);
    this.config.owner.onHeartbeatTimeout(silentForMs);
    this.destroy(error);
  }
}
