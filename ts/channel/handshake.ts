import { IpcError, isIpcErrorCode } from '../smartipc.errors.js';
import { EFrameKind, EPayloadEncoding, type IFrame, type IHelloPayload, type IRejectPayload, type IWelcomePayload, type TSerialization } from '../interfaces/wire.js';
import { DEFAULT_HANDSHAKE_MAX_FRAME_BYTES, PROTOCOL_VERSION } from '../smartipc.defaults.js';
import type { FramedLink, ILinkHandler } from '../framing/classes.framedlink.js';
import { detachFrame } from '../framing/classes.framecodec.js';
import { startTimer } from '../smartipc.timers.js';

/**
 * Holds a link during its handshake. The frame that completes the handshake may share a chunk
 * with the peer's first messages, so everything after it is kept and replayed to the connection
 * that takes over: nothing is lost in the hand-over. The replay waits until the code awaiting the
 * handshake has run (a setImmediate: after every microtask), so handlers registered right after
 * `await connect()` see those first messages too.
 */
export class HandshakeGate implements ILinkHandler {
  private backlog: IFrame[] = [];
  private closedWith: { error: IpcError | undefined } | undefined;
  private next?: ILinkHandler;
  private settled = false;
  /** The accepting side: whether the peer may send yet (its WELCOME is out). The connecting side is open from the start. */
  private opened: boolean;
  /** Frames dropped because they came before `open()`; they count against the backlog bound. */
  private dropped = 0;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly link: FramedLink,
    private readonly expect: (frame: IFrame) => void,
    private readonly fail: (error: IpcError) => void,
    timeoutMs: number,
    timeoutError: () => IpcError,
    /** Frames a peer may send after its handshake frame before it is admitted (a client should wait for WELCOME). */
    private readonly maxBacklogFrames = Infinity,
    /** false for the accepting side: frames before `open()` are dropped, never dispatched, and make `open()` refuse the peer. */
    openAtStart = true,
  ) {
    this.opened = openAtStart;
    link.setHandler(this);
    this.timer = startTimer(() => {
      this.settle();
      const error = timeoutError();
      link.destroy(error);
      this.fail(error);
    }, timeoutMs);
  }

  /**
   * The accepting side is about to send its WELCOME: from now on the peer may send. Returns the
   * PROTOCOL_ERROR to reject the peer with when it sent frames before (they were dropped unread):
   * a peer that does not wait is refused rather than having its first requests vanish.
   */
  public open(): IpcError | undefined {
    this.opened = true;
    if (this.dropped === 0) return undefined;
    return new IpcError('PROTOCOL_ERROR', `${this.link.describe()}: the peer sent ${this.dropped} frame(s) before its handshake was answered (a client waits for the WELCOME)`);
  }

  /** Ends the waiting part: later frames are buffered until `handOver`. */
  public settle(): boolean {
    if (this.settled) return false;
    this.settled = true;
    if (this.timer) clearTimeout(this.timer);
    return true;
  }

  public handOver(handler: ILinkHandler): void {
    this.next = handler;
    setImmediate(() => {
      // Frames that arrived meanwhile went to the backlog too, so order is kept.
      const backlog = this.backlog;
      this.backlog = [];
      if (!this.closedWith) this.link.setHandler(handler);
      for (const frame of backlog) handler.onFrame(frame);
      if (this.closedWith) handler.onClose(this.closedWith.error);
    });
  }

  public onFrame(frame: IFrame): void {
    if (!this.settled) {
      this.expect(frame);
      return;
    }
    if (this.backlog.length + this.dropped >= this.maxBacklogFrames) {
      this.link.destroy(new IpcError('PROTOCOL_ERROR', `${this.link.describe()}: the peer sent more than ${this.maxBacklogFrames} frames before its handshake was answered`));
      return;
    }
    if (!this.opened) {
      // A smartipc client waits for the WELCOME: what a peer sends before never runs. It is dropped
      // and counted, not answered at once, so a refusal decided meanwhile (AUTH_FAILED) still reaches
      // the peer; `open()` then refuses the peer with PROTOCOL_ERROR.
      this.dropped++;
      return;
    }
    // The payload is a view into a socket chunk; keep our own copy until it is replayed.
    this.backlog.push(detachFrame(frame));
  }

  public onFrameError(error: IpcError): void {
    if (this.settle()) this.fail(error);
    else if (this.next) this.next.onFrameError(error);
  }

  public onClose(error: IpcError | undefined): void {
    if (this.settle()) {
      this.fail(error ?? new IpcError('CONNECTION_LOST', `connection to ${this.link.describe()} closed during the handshake`));
      return;
    }
    this.closedWith = { error };
  }
}

function parseJson<T>(frame: IFrame, what: string): T {
  try {
    return JSON.parse(frame.payload.toString('utf8')) as T;
  } catch (err) {
    throw new IpcError('PROTOCOL_ERROR', `${what} is not valid JSON`, { cause: err });
  }
}

/** Sends a handshake frame with `body` as JSON; returns the JSON sent. */
export function sendJsonFrame(link: FramedLink, kind: EFrameKind, body: object): string {
  const json = JSON.stringify(body);
  link.send({ kind, encoding: EPayloadEncoding.Json, id: 0, type: '', payload: json });
  return json;
}

/**
 * Waits for the one frame a handshake step expects and turns it into a value with `read`, which
 * throws an IpcError for a wrong frame (the connection is then destroyed). Times out with the
 * error `timeoutError` makes.
 */
function handshakeStep<T>(
  link: FramedLink,
  timeoutMs: number,
  timeoutError: () => IpcError,
  read: (frame: IFrame) => T,
  maxBacklogFrames = Infinity,
  openAtStart = true,
): Promise<{ value: T; gate: HandshakeGate }> {
  return new Promise((resolve, reject) => {
    const gate: HandshakeGate = new HandshakeGate(
      link,
      (frame) => {
        if (!gate.settle()) return;
        try {
          resolve({ value: read(frame), gate });
        } catch (err) {
          link.destroy(err as IpcError);
          reject(err);
        }
      },
      reject,
      timeoutMs,
      timeoutError,
      maxBacklogFrames,
      openAtStart,
    );
  });
}

/** Client side: sends HELLO and waits for WELCOME (or REJECT, turned into its IpcError). */
export async function registerWithServer(
  link: FramedLink,
  hello: IHelloPayload,
  timeoutMs: number,
): Promise<{ welcome: IWelcomePayload; gate: HandshakeGate }> {
  const answer = handshakeStep(
    link,
    timeoutMs,
    () => new IpcError('REGISTER_TIMEOUT', `server at ${link.describe()} did not answer the handshake within ${timeoutMs} ms`),
    (frame) => {
      if (frame.kind === EFrameKind.Reject) {
        const body = parseJson<IRejectPayload>(frame, 'handshake rejection');
        throw new IpcError(isIpcErrorCode(body.code) ? body.code : 'PROTOCOL_ERROR', body.message);
      }
      if (frame.kind !== EFrameKind.Welcome) {
        throw new IpcError('PROTOCOL_ERROR', `expected the handshake answer, got frame kind ${frame.kind}`);
      }
      const welcome = parseJson<IWelcomePayload>(frame, 'handshake answer');
      if (welcome.serverId !== hello.serverId && !(hello.probe && hello.serverId === '')) {
        throw new IpcError('ID_MISMATCH', `server at ${link.describe()} is "${welcome.serverId}", not "${hello.serverId}"`);
      }
      link.setPeerMaxMessageSize(welcome.maxMessageSize);
      // Admitted: from the next frame (it may be in this very chunk) our own limit applies.
      link.setMaxIncomingFrameBytes(hello.maxMessageSize);
      return welcome;
    },
  );
  // Until the server answers, nothing bigger than a handshake frame is accepted from it.
  link.setMaxIncomingFrameBytes(Math.min(hello.maxMessageSize, DEFAULT_HANDSHAKE_MAX_FRAME_BYTES));
  let helloJson: string;
  try {
    helloJson = sendJsonFrame(link, EFrameKind.Hello, hello);
  } catch (err) {
    answer.catch(() => undefined); // settles through the destroy below; the send error is the one to report
    link.destroy(err as IpcError);
    throw err;
  }
  try {
    const { value, gate } = await answer;
    return { welcome: value, gate };
  } catch (err) {
    throw explainOversizedHello(err, Buffer.byteLength(helloJson));
  }
}

/**
 * A server closes a connection whose HELLO is over its handshakeMaxFrameBytes without an answer
 * (it never reads the frame), so the client only sees the close: say the likely reason.
 */
function explainOversizedHello(err: unknown, helloBytes: number): unknown {
  if (!(err instanceof IpcError) || err.code !== 'CONNECTION_LOST' || helloBytes <= DEFAULT_HANDSHAKE_MAX_FRAME_BYTES) return err;
  return new IpcError(
    'CONNECTION_LOST',
    `${err.message}; this client's HELLO is ${helloBytes} bytes, over the ${DEFAULT_HANDSHAKE_MAX_FRAME_BYTES} bytes a server accepts before admitting a client unless its handshakeMaxFrameBytes is raised: shrink authToken or metadata`,
    { cause: err },
  );
}

/** Frames a client may send after its HELLO before it is admitted: a smartipc client sends none. */
const MAX_FRAMES_BEFORE_WELCOME = 16;

/** Server side: waits for a well-formed HELLO. Validation and the answer are the caller's. */
export async function awaitHello(link: FramedLink, timeoutMs: number): Promise<{ hello: IHelloPayload; gate: HandshakeGate }> {
  const { value, gate } = await handshakeStep(
    link,
    timeoutMs,
    () => new IpcError('REGISTER_TIMEOUT', `peer did not send its handshake within ${timeoutMs} ms`),
    (frame) => {
      if (frame.kind !== EFrameKind.Hello) {
        throw new IpcError('PROTOCOL_ERROR', `expected a handshake, got frame kind ${frame.kind}`);
      }
      const hello = parseJson<IHelloPayload>(frame, 'handshake');
      if (typeof hello !== 'object' || hello === null || typeof hello.clientId !== 'string' || hello.clientId.length === 0) {
        throw new IpcError('PROTOCOL_ERROR', 'handshake without a clientId');
      }
      hello.metadata = hello.metadata && typeof hello.metadata === 'object' && !Array.isArray(hello.metadata) ? hello.metadata : {};
      if (hello.token !== undefined && typeof hello.token !== 'string') throw new IpcError('PROTOCOL_ERROR', 'handshake with a token that is not a string');
      return hello;
    },
    MAX_FRAMES_BEFORE_WELCOME,
    false,
  );
  return { hello: value, gate };
}

/** What the accepting side checks a HELLO against. */
export interface IHandshakeLocal {
  id: string;
  serialization: TSerialization;
  maxMessageSize: number;
}

/**
 * Checks a HELLO against this side: the service id (a probe with an empty id matches any), the
 * protocol version, the serialization (not for probes: they carry no data) and a usable
 * maxMessageSize. Capacity (maxClients, one peer per channel) is the caller's.
 */
export function checkHello(hello: IHelloPayload, local: IHandshakeLocal): IpcError | undefined {
  if (hello.serverId !== local.id && !(hello.probe && hello.serverId === '')) {
    return new IpcError('ID_MISMATCH', `this server is "${local.id}", the peer asked for "${hello.serverId}"`);
  }
  if (hello.protocolVersion !== PROTOCOL_VERSION) {
    return new IpcError('PROTOCOL_ERROR', `protocol version mismatch: the peer speaks ${hello.protocolVersion}, this side ${PROTOCOL_VERSION}`);
  }
  if (!hello.probe && hello.serialization !== local.serialization) {
    return new IpcError('PROTOCOL_ERROR', `serialization mismatch: the peer uses '${hello.serialization}', this side '${local.serialization}'`);
  }
  if (typeof hello.maxMessageSize !== 'number' || !(hello.maxMessageSize > 0)) {
    return new IpcError('PROTOCOL_ERROR', 'handshake without a valid maxMessageSize');
  }
  return undefined;
}

/** Accepts a checked HELLO: learns the peer's limit and answers with our id and limit. */
export function sendWelcome(link: FramedLink, hello: IHelloPayload, local: IHandshakeLocal): void {
  link.setPeerMaxMessageSize(hello.maxMessageSize);
  sendJsonFrame(link, EFrameKind.Welcome, {
    serverId: local.id,
    clientId: hello.clientId,
    protocolVersion: PROTOCOL_VERSION,
    serialization: local.serialization,
    maxMessageSize: local.maxMessageSize,
  } satisfies IWelcomePayload);
}

/** Refuses a handshake: the peer gets the code and message, then the connection closes. */
export function rejectHello(link: FramedLink, error: IpcError): void {
  if (!link.isWritable) return; // already refused (a pending handshake evicted while authenticate ran)
  try {
    sendJsonFrame(link, EFrameKind.Reject, { code: error.code, message: error.message } satisfies IRejectPayload);
    link.end();
  } catch {
    link.destroy(error);
  }
}
