import { smartipc, type MsgHdrs, type NatsConnection, type Status, type Subscription, type TNatsModule } from './nats.plugins.js';
import * as plugins from './nats.plugins.js';
import {
  DEFAULT_NATS_MAX_RECONNECT_ATTEMPTS,
  DEFAULT_NATS_NAMESPACE,
  DEFAULT_NATS_RECOVERY_TIMEOUT_MS,
  NATS_HEADER,
  NATS_PROBE_INITIAL_DELAY_MS,
  NATS_PROBE_MAX_DELAY_MS,
  NATS_PROBE_TIMEOUT_MS,
  NATS_STREAM_PING_INTERVAL_MS,
  NATS_CLOSE_DRAIN_TIMEOUT_MS,
} from './nats.constants.js';
import { describeInvalidNamespace, NatsSubjects } from './nats.subjects.js';
import { debugNats } from './nats.log.js';
import { headerBytes, type TNatsPayload } from './nats.codec.js';
import type { INatsBridgeEvents, INatsBridgeOptions, INatsClientOptions, INatsExposeOptions } from './interfaces.js';
import { NatsClient } from './classes.natsclient.js';
import { NatsExposure } from './classes.natsexposure.js';
import { NatsServing } from './nats.serving.js';

/** Encoded sender headers and their size on the wire. */
export interface ISenderHeaders {
  headers: MsgHdrs;
  bytes: number;
}

/** Distinct senders (local clients publishing through an exposure) whose headers are kept encoded. */
const SENDER_HEADER_CACHE_MAX = 1_024;

const NATS_PACKAGE = '@nats-io/transport-node';

/**
 * What the bridge tells the clients and exposures that live on its connection (they match it
 * structurally: its members are @internal, so the shipped .d.ts has no `implements` to check).
 */
export interface INatsParticipant {
  onBridgeDisconnect(reason: smartipc.IpcError): void;
  onBridgeReconnecting(attempt: number, delayMs: number): void;
  onBridgeReconnect(): void;
  /** Streams: send pings, fail silent peers. */
  tick(now: number): void;
  /** Resolves once nothing this participant started or serves is in flight (for a draining close), or at `deadline` (performance.now()). */
  whenIdle(deadline: number): Promise<void>;
  /** The bridge closes: stop taking new work from NATS (drain subscriptions). */
  beginClose(): Promise<void>;
  /** The bridge closed: release everything. */
  finishClose(reason: smartipc.IpcError): void;
}

type TBridgeState = 'connected' | 'reconnecting' | 'draining' | 'closed';

/**
 * One connection to NATS that any number of smartipc clients (`createClient`) and exposed local
 * servers (`expose`) share. It watches the connection's status and tells them about drops and
 * reconnects; subscriptions are restored by the NATS client, what was sent meanwhile waits in each
 * client's bounded outbox. `close()` drains.
 */
export class NatsBridge extends plugins.events.EventEmitter<INatsBridgeEvents> {
  public readonly subjects: NatsSubjects;
  /** How this bridge encodes what it sends. */
  public readonly serialization: smartipc.TSerialization;
  public readonly recoveryTimeoutMs: number;
  /** `_INBOX.<nuid>` (or the inboxPrefix option): every client and exposure gets `<inbox>.<n>` under it. */
  private readonly inboxBase: string;
  /** @internal The inboxPrefix option (undefined: nats.js's _INBOX). */
  public readonly inboxPrefix?: string;
  /** @internal The handlers this bridge runs for NATS callers (deadlines, cancels, drops). */
  public readonly serving = new NatsServing();
  /** `<ns>.cancel`: ends with the connection. */
  private readonly cancelSubscription: Subscription;
  private readonly encodingHeaderCache = new Map<string, MsgHdrs>();
  private readonly senderHeaderCache = new Map<string, ISenderHeaders>();
  private inboxCount = 0;
  private state: TBridgeState = 'connected';
  private readonly participants = new Set<INatsParticipant>();
  private readonly exposures = new Set<NatsExposure>();
  private lastMaxPayload: number;
  private reconnectAttempts = 0;
  private readonly reconnectDelayMs: number;
  private readonly ticker: NodeJS.Timeout;
  private readonly statusLoop: Promise<void>;
  private closing?: Promise<void>;

  private constructor(
    /** The loaded `@nats-io/transport-node` module. @internal */
    public readonly nats: TNatsModule,
    /** The NATS connection. Use it for anything the bridge does not wrap; do not close it yourself (use `close()`). */
    public readonly connection: NatsConnection,
    options: INatsBridgeOptions,
  ) {
    super();
    this.subjects = new NatsSubjects(options.namespace ?? DEFAULT_NATS_NAMESPACE);
    this.serialization = options.serialization ?? 'json';
    this.recoveryTimeoutMs = options.recoveryTimeoutMs ?? DEFAULT_NATS_RECOVERY_TIMEOUT_MS;
    this.inboxPrefix = options.inboxPrefix;
    this.inboxBase = nats.createInbox(options.inboxPrefix);
    // Callers that give up before their time say so here; whoever runs the handler aborts it.
    this.cancelSubscription = connection.subscribe(this.subjects.cancel, {
      callback: (err, msg) => {
        if (err) return;
        const reply = Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength).toString('utf8');
        this.serving.cancel(reply, new smartipc.IpcError('ABORTED', 'the caller aborted'));
      },
    });
    this.lastMaxPayload = connection.info?.max_payload ?? 1024 * 1024;
    this.reconnectDelayMs = options.reconnectTimeWait ?? 2_000;
    this.ticker = setInterval(() => {
      const now = performance.now();
      for (const participant of this.participants) participant.tick(now);
    }, NATS_STREAM_PING_INTERVAL_MS / 2);
    this.ticker.unref();
    this.statusLoop = this.watchStatus();
  }

  /**
   * Loads `@nats-io/transport-node` (an optional peer dependency: INVALID_ARGUMENT naming it when
   * it is not installed), connects, and resolves once the connection is up. Unreachable servers:
   * SERVER_UNAVAILABLE. nats.js options pass through; `maxReconnectAttempts` defaults to -1
   * (never give up), like a smartipc client.
   */
  public static async connect(options: INatsBridgeOptions): Promise<NatsBridge> {
    if (!options || typeof options !== 'object') throw smartipc.invalidArgument('NatsBridge.connect needs options ({ servers })');
    const { servers, namespace, serialization, recoveryTimeoutMs, ...natsOptions } = options;
    if (servers === undefined || (Array.isArray(servers) ? servers.length === 0 || servers.some((s) => typeof s !== 'string' || s.length === 0) : typeof servers !== 'string' || servers.length === 0)) {
      throw smartipc.invalidArgument('NatsBridge.connect: servers must be a nats-server URL or a non-empty list of them (e.g. "nats://127.0.0.1:4222")');
    }
    const problem = describeInvalidNamespace(namespace ?? DEFAULT_NATS_NAMESPACE);
    if (problem !== undefined) throw smartipc.invalidArgument(`NatsBridge.connect: ${problem}`);
    if (serialization !== undefined && serialization !== 'json' && serialization !== 'advanced') {
      throw smartipc.invalidArgument(`NatsBridge.connect: serialization must be 'json' or 'advanced', got ${String(serialization)}`);
    }
    if (recoveryTimeoutMs !== undefined && (typeof recoveryTimeoutMs !== 'number' || !(recoveryTimeoutMs >= 0))) {
      throw smartipc.invalidArgument(`NatsBridge.connect: recoveryTimeoutMs must be a non-negative number of ms, got ${String(recoveryTimeoutMs)}`);
    }
    const nats = await loadNatsModule();
    let connection: NatsConnection;
    try {
      connection = await nats.connect({ maxReconnectAttempts: DEFAULT_NATS_MAX_RECONNECT_ATTEMPTS, ...natsOptions, servers });
    } catch (err) {
      throw new smartipc.IpcError('SERVER_UNAVAILABLE', `NATS at ${[servers].flat().join(', ')} is not reachable: ${(err as Error).message}`, { cause: err });
    }
    return new NatsBridge(nats, connection, options);
  }

  // ---- public API ------------------------------------------------------------------------------

  /** A client with the IpcClient API whose server is whichever host exposes `options.id` on this NATS. Call `connect()` on it. */
  public createClient(options: INatsClientOptions): NatsClient {
    if (this.state === 'draining' || this.state === 'closed') throw new smartipc.IpcError('NOT_CONNECTED', 'the NATS bridge is closed');
    return new NatsClient(this, options);
  }

  /**
   * Makes a local server (its hub) reachable over NATS: its handlers answer requests and messages
   * sent to its id (hosts exposing the same id share the load through a queue group), its pub/sub
   * joins NATS both ways, streams from NATS clients reach its `stream` listeners, its services
   * (its own and its clients') are callable over NATS and services provided elsewhere on NATS
   * become callable by its clients (see INatsExposeOptions). Resolves once the subscriptions are
   * in place. One bridge per server.
   */
  public async expose(server: smartipc.IpcServer, options: INatsExposeOptions = {}): Promise<NatsExposure> {
    if (this.state === 'draining' || this.state === 'closed') throw new smartipc.IpcError('NOT_CONNECTED', 'the NATS bridge is closed');
    if (!(server instanceof smartipc.IpcServer)) throw smartipc.invalidArgument('expose() needs an IpcServer');
    if (options === null || typeof options !== 'object') throw smartipc.invalidArgument('expose() options must be an object');
    for (const key of ['exportServices', 'importServices'] as const) {
      if (options[key] !== undefined && typeof options[key] !== 'boolean') throw smartipc.invalidArgument(`expose(): ${key} must be a boolean`);
    }
    const exposure = new NatsExposure(this, server, options);
    this.exposures.add(exposure);
    try {
      await exposure.open();
    } catch (err) {
      this.exposures.delete(exposure);
      exposure.finishClose(new smartipc.IpcError('CLOSED', 'expose() failed'));
      throw err;
    }
    return exposure;
  }

  /** Undoes one expose(): drains its subscriptions, lets running handlers finish. */
  public async unexpose(exposure: NatsExposure): Promise<void> {
    if (!this.exposures.delete(exposure)) return;
    await exposure.beginClose();
    await exposure.whenIdle(performance.now() + NATS_CLOSE_DRAIN_TIMEOUT_MS);
    exposure.finishClose(new smartipc.IpcError('CLOSED', 'unexposed'));
  }

  /**
   * Drains: new requests reject with NOT_CONNECTED at once, requests in flight (sent by this
   * bridge's clients or being handled by its exposed servers) complete, then the NATS connection
   * drains and closes. Every client emits `disconnect` with code CLOSED.
   */
  public close(): Promise<void> {
    this.closing ??= this.drainAndClose();
    return this.closing;
  }

  public getIsConnected(): boolean {
    return this.state === 'connected';
  }

  public get namespace(): string {
    return this.subjects.namespace;
  }

  /** The server's max_payload (of the current connection, or the last one while reconnecting). */
  public get maxPayload(): number {
    return this.connection.info?.max_payload ?? this.lastMaxPayload;
  }

  // ---- for clients and exposures ------------------------------------------------------------------

  /** @internal */
  public get isConnected(): boolean {
    return this.state === 'connected';
  }

  /** @internal Not accepting new work (draining or closed). */
  public get isClosing(): boolean {
    return this.state === 'draining' || this.state === 'closed';
  }

  /** @internal */
  public get isClosed(): boolean {
    return this.state === 'closed';
  }

  /** @internal */
  public get currentReconnectAttempts(): number {
    return this.reconnectAttempts;
  }

  /** @internal A fresh inbox subject prefix for one participant. */
  public newInbox(): string {
    return `${this.inboxBase}.${++this.inboxCount}`;
  }

  /** @internal */
  public register(participant: INatsParticipant): void {
    this.participants.add(participant);
  }

  /** @internal */
  public unregister(participant: INatsParticipant): void {
    this.participants.delete(participant);
  }

  /**
   * @internal Headers that never change (a client's From and Src), encoded once: nats.js encodes
   * a header object on every publish otherwise. Frozen: do not set fields on the result.
   */
  public constantHeaders(fields: Record<string, string>): MsgHdrs {
    const headers = this.headers(fields) as MsgHdrs & { encode?: () => Uint8Array };
    if (typeof headers.encode === 'function') {
      const bytes = headers.encode();
      headers.encode = () => bytes;
    }
    return headers;
  }

  /**
   * @internal The headers of a message or publish from `from` (Src on publishes, Sipc-Enc for
   * payloads other than JSON) and their size, encoded once per combination (a bounded cache).
   */
  public senderHeaders(from: string, src: string | undefined, encoding: string | undefined): ISenderHeaders {
    const key = `${from}\u0000${src ?? ''}\u0000${encoding ?? ''}`;
    let cached = this.senderHeaderCache.get(key);
    if (cached === undefined) {
      const fields: Record<string, string> = { [NATS_HEADER.from]: from };
      if (src !== undefined) fields[NATS_HEADER.src] = src;
      if (encoding !== undefined) fields[NATS_HEADER.encoding] = encoding;
      cached = { headers: this.constantHeaders(fields), bytes: headerBytes(fields) };
      if (this.senderHeaderCache.size >= SENDER_HEADER_CACHE_MAX) this.senderHeaderCache.clear();
      this.senderHeaderCache.set(key, cached);
    }
    return cached;
  }

  /** @internal The one header a reply or message in a payload encoding other than JSON carries (Sipc-Enc), encoded once. */
  public encodingHeaders(encoding: string): MsgHdrs {
    let headers = this.encodingHeaderCache.get(encoding);
    if (headers === undefined) {
      headers = this.constantHeaders({ [NATS_HEADER.encoding]: encoding });
      this.encodingHeaderCache.set(encoding, headers);
    }
    return headers;
  }

  /**
   * @internal Connected, and the NATS client's socket is up. Between the socket closing and the
   * 'disconnect' status reaching the bridge, nats.js would keep what is published in a buffer that
   * it empties at its next dial (lost): senders that see the link down hold it in their outbox.
   */
  public get linkUp(): boolean {
    return this.state === 'connected' && (this.connection as unknown as { protocol?: { connected?: boolean } }).protocol?.connected !== false;
  }

  /** @internal A caller gave up on the request whose reply subject this is: whoever runs its handler aborts it. */
  public publishCancel(reply: string): void {
    if (!this.isConnected) return;
    try {
      this.connection.publish(this.subjects.cancel, reply);
    } catch {
      // the handler runs to its own deadline
    }
  }

  /** @internal NATS headers with these fields. */
  public headers(fields: Record<string, string>): MsgHdrs {
    const headers = this.nats.headers();
    for (const key in fields) headers.set(key, fields[key]);
    return headers;
  }

  /**
   * @internal Publishes; maps the NATS client's refusals to codes (over max_payload:
   * MESSAGE_TOO_LARGE; closed or draining: NOT_CONNECTED).
   */
  public publish(subject: string, payload: TNatsPayload, headers?: MsgHdrs, reply?: string): void {
    try {
      this.connection.publish(subject, payload, headers === undefined && reply === undefined ? undefined : { headers, reply });
    } catch (err) {
      throw this.mapPublishError(err, subject);
    }
  }

  /** @internal */
  public mapPublishError(err: unknown, subject: string): smartipc.IpcError {
    if (err instanceof smartipc.IpcError) return err;
    const message = (err as Error)?.message ?? String(err);
    if (/max_payload/i.test(message)) {
      return new smartipc.IpcError('MESSAGE_TOO_LARGE', `message to ${subject} exceeds the NATS server's max_payload of ${this.maxPayload} bytes; send large data with sendStream`, { cause: err });
    }
    if (this.connection.isClosed() || this.connection.isDraining()) return new smartipc.IpcError('NOT_CONNECTED', 'the NATS connection is closed', { cause: err });
    return new smartipc.IpcError('PROTOCOL_ERROR', `NATS refused a message to ${subject}: ${message}`, { cause: err });
  }

  /** @internal Throws MESSAGE_TOO_LARGE when payload and headers do not fit the server's max_payload. */
  public checkSize(bytes: number, what: string): void {
    const max = this.maxPayload;
    if (bytes > max) {
      throw new smartipc.IpcError('MESSAGE_TOO_LARGE', `${what} is ${bytes} bytes with its headers, over the NATS server's max_payload of ${max} bytes; send large data with sendStream or sendFile`);
    }
  }

  /**
   * @internal Whether some host answers for server `id` (its `<ns>.hello.<id>` subscription),
   * retrying with backoff until `budgetMs` is spent. Resolves false when nobody answered in time.
   */
  public probe(id: string, budgetMs: number, shouldStop: () => boolean = () => false, once = false): Promise<boolean> {
    return this.probeSubject(this.subjects.hello(id), budgetMs, shouldStop, once);
  }

  /** @internal Whether anyone answers on `subject` (a hello or a service probe), retrying with backoff until `budgetMs` is spent. */
  public async probeSubject(subject: string, budgetMs: number, shouldStop: () => boolean = () => false, once = false): Promise<boolean> {
    const deadline = performance.now() + budgetMs;
    let delay = NATS_PROBE_INITIAL_DELAY_MS;
    for (;;) {
      if (this.isClosing || shouldStop()) return false;
      if (this.isConnected) {
        try {
          const remaining = Math.max(1, Math.min(NATS_PROBE_TIMEOUT_MS, deadline - performance.now()));
          await this.connection.request(subject, undefined, { timeout: remaining });
          return true;
        } catch {
          // no responders (nobody exposes it yet), or timed out
        }
      }
      const remaining = deadline - performance.now();
      if (once || remaining <= 0) return false;
      await new Promise((resolve) => setTimeout(resolve, Math.min(delay, remaining)).unref());
      delay = Math.min(delay * 2, NATS_PROBE_MAX_DELAY_MS);
    }
  }

  /** @internal 'error' without a listener would throw; such failures go to the debug log instead. */
  public emitError(error: smartipc.IpcError): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
    else debugNats('unhandled bridge error: %s', error.message);
  }

  // ---- connection status ---------------------------------------------------------------------------

  private async watchStatus(): Promise<void> {
    try {
      for await (const status of this.connection.status()) this.onStatus(status);
    } catch (err) {
      debugNats('status loop ended: %s', (err as Error).message);
    }
    // The connection closed (close(), or nats.js gave up reconnecting).
    if (this.state !== 'closed' && this.state !== 'draining') {
      const reason = new smartipc.IpcError('CONNECTION_LOST', 'the NATS connection closed and will not reconnect');
      this.state = 'closed';
      clearInterval(this.ticker);
      this.serving.abortAll(reason);
      this.serving.stop();
      for (const participant of [...this.participants]) participant.finishClose(reason);
      this.emit('close');
    }
  }

  private onStatus(status: Status): void {
    switch (status.type) {
      case 'disconnect': {
        if (this.state !== 'connected') return;
        this.state = 'reconnecting';
        this.lastMaxPayload = this.connection.info?.max_payload ?? this.lastMaxPayload;
        const reason = new smartipc.IpcError('CONNECTION_LOST', `lost the connection to NATS at ${status.server}`);
        // The callers can no longer hear an answer: handlers running for them are aborted.
        this.serving.abortAll(reason);
        for (const participant of [...this.participants]) participant.onBridgeDisconnect(reason);
        this.emit('disconnect', reason);
        return;
      }
      case 'reconnecting': {
        if (this.state !== 'reconnecting') return;
        this.reconnectAttempts++;
        for (const participant of [...this.participants]) participant.onBridgeReconnecting(this.reconnectAttempts, this.reconnectDelayMs);
        this.emit('reconnecting', this.reconnectAttempts, this.reconnectDelayMs);
        return;
      }
      case 'reconnect': {
        if (this.state !== 'reconnecting') return;
        this.state = 'connected';
        this.lastMaxPayload = this.connection.info?.max_payload ?? this.lastMaxPayload;
        for (const participant of [...this.participants]) participant.onBridgeReconnect();
        this.emit('reconnect');
        return;
      }
      case 'error':
        this.emitError(new smartipc.IpcError('PROTOCOL_ERROR', `NATS reported: ${status.error.message}`, { cause: status.error }));
        return;
      default:
        return;
    }
  }

  private async drainAndClose(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'draining';
    const participants = [...this.participants];
    // No new work from NATS; what arrived already is handled.
    await Promise.all(participants.map((participant) => participant.beginClose().catch(() => undefined)));
    // Handlers get a bounded time to answer; what still runs then is aborted (its result would be dropped).
    const idleBy = performance.now() + NATS_CLOSE_DRAIN_TIMEOUT_MS;
    await Promise.all(participants.map((participant) => participant.whenIdle(idleBy)));
    this.serving.abortAll(new smartipc.IpcError('CLOSED', 'the NATS bridge is closing'));
    try {
      // A drain flushes through the server: bounded, so a close during an outage does not wait for NATS to come back.
      if (!this.connection.isClosed()) {
        let timer: NodeJS.Timeout | undefined;
        const drained = this.connection.drain();
        const gaveUp = await Promise.race([
          drained.then(() => false),
          new Promise<boolean>((resolve) => {
            timer = setTimeout(() => resolve(true), NATS_CLOSE_DRAIN_TIMEOUT_MS);
          }),
        ]);
        clearTimeout(timer);
        if (gaveUp) {
          drained.catch(() => undefined);
          await this.connection.close();
        }
      }
    } catch (err) {
      debugNats('drain failed, closing: %s', (err as Error).message);
      await this.connection.close().catch(() => undefined);
    }
    this.state = 'closed';
    clearInterval(this.ticker);
    const reason = new smartipc.IpcError('CLOSED', 'the NATS bridge was closed');
    this.serving.abortAll(reason);
    this.serving.stop();
    for (const participant of [...this.participants]) participant.finishClose(reason);
    this.participants.clear();
    this.exposures.clear();
    await this.statusLoop;
    this.emit('close');
  }
}


async function loadNatsModule(): Promise<TNatsModule> {
  try {
    return await import('@nats-io/transport-node');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new smartipc.IpcError('INVALID_ARGUMENT', `smartipc/nats needs the NATS client: npm install ${NATS_PACKAGE} (an optional peer dependency of @push.rocks/smartipc)`, { cause: err });
    }
    throw new smartipc.IpcError('INVALID_ARGUMENT', `smartipc/nats could not load ${NATS_PACKAGE}: ${(err as Error).message}`, { cause: err });
  }
}

