import { IpcError, invalidArgument, isIpcErrorCode } from '../../smartipc.errors.js';
import { EFrameKind, EPayloadEncoding, type IFrame } from '../../interfaces/wire.js';
import type { IConnectionFeature, IConnectionHost } from '../../interfaces/hosts.js';
import type { TMessageHandler } from '../../interfaces/events.js';
import type { ICallOptions, IProvideOptions, IServiceInfo, TServiceMethods, TServiceProxy } from '../../interfaces/services.js';
import { HandlerContext } from '../../channel/rpc/classes.handlercontext.js';
import { passThrough } from '../../channel/rpc/rawpayload.js';
import { plainObject } from '../../smartipc.options.js';
import { startTimer } from '../../smartipc.timers.js';
import { debug } from '../../smartipc.log.js';
import { serviceProxy } from './proxy.js';
import { CallContext, assertValidName, decodeCall, encodeCall, joinNames, nextChain, splitNames } from './callchain.js';

/** What the client side of services needs from its client. */
export interface IClientServicesHost {
  connection: IConnectionHost;
  /** The client's onMessage handlers: peer messages and requests reach them. */
  handlers: Map<string, TMessageHandler>;
  /** How long a provide waits for the hub's acknowledgement (the client's requestTimeout). */
  ackTimeoutMs: number;
  emitError(error: IpcError): void;
}

interface IProvided {
  readonly service: string;
  readonly methods: TServiceMethods;
  readonly announcement: string;
}

interface IPendingAck {
  resolve(): void;
  reject(error: IpcError): void;
  timer?: NodeJS.Timeout;
}

/** The reserved request types the hub answers for every client (see server/introspection.ts). */
export const SERVICES_REQUEST = '$smartipc.services';
export const PEERS_REQUEST = '$smartipc.peers';

/**
 * A client's side of services and peers: what it provides (announced at every (re)connection, so
 * the hub's registry follows the connection), calls it makes through the hub, and the calls and
 * peer messages the hub routes to it. Its own registry is the source of truth; the hub keeps a copy
 * per connection.
 */
export class ClientServices implements IConnectionFeature {
  public readonly frameKinds = [EFrameKind.Provide, EFrameKind.Unprovide, EFrameKind.Call, EFrameKind.PeerMessage, EFrameKind.PeerRequest] as const;
  private readonly provided = new Map<string, IProvided>();
  private readonly pendingAcks = new Map<number, IPendingAck>();
  private lastAckId = 0;

  constructor(private readonly host: IClientServicesHost) {}

  // ---- providing -------------------------------------------------------------------------------

  public provide(service: string, methods: TServiceMethods, options: IProvideOptions = {}): Promise<void> {
    try {
      assertValidName('service', service);
      if (methods === null || typeof methods !== 'object') throw invalidArgument(`provide("${service}") needs an object of methods`);
      const names = Object.keys(methods);
      if (names.length === 0) throw invalidArgument(`provide("${service}") needs at least one method`);
      for (const name of names) {
        assertValidName('method', name);
        if (typeof methods[name] !== 'function') throw invalidArgument(`method "${name}" of service "${service}" must be a function`);
      }
      if (options === null || typeof options !== 'object') throw invalidArgument('provide options must be an object');
      if (options.version !== undefined && typeof options.version !== 'string') throw invalidArgument('version must be a string');
      plainObject('metadata', options.metadata);
      if (this.provided.has(service)) throw invalidArgument(`service "${service}" is already provided by this client; unprovide it first`);
      const announcement = JSON.stringify({ methods: names, ...(options.version !== undefined ? { version: options.version } : {}), metadata: options.metadata ?? {} });
      this.provided.set(service, { service, methods: { ...methods }, announcement });
    } catch (err) {
      return Promise.reject(err);
    }
    // Not connected yet: the announcement goes out with the next connection.
    if (!this.host.connection.isConnected) return Promise.resolve();
    return this.announce(this.provided.get(service)!).catch((err: IpcError) => {
      this.provided.delete(service);
      throw err;
    });
  }

  public unprovide(service: string): Promise<void> {
    try {
      assertValidName('service', service);
    } catch (err) {
      return Promise.reject(err);
    }
    if (!this.provided.delete(service) || !this.host.connection.isConnected) return Promise.resolve();
    return this.acknowledged(EFrameKind.Unprovide, service, undefined);
  }

  /** The services this client provides. */
  public get providedServices(): string[] {
    return [...this.provided.keys()];
  }

  /** Every (re)connection: the hub learns what this client provides before anything the user sends. */
  public onConnect(): void {
    for (const entry of this.provided.values()) {
      this.announce(entry).catch((err: IpcError) => {
        if (err.code === 'CONNECTION_LOST' || err.code === 'NOT_CONNECTED') return; // the next connection announces again
        this.provided.delete(entry.service);
        this.host.emitError(new IpcError(err.code, `the hub refused service "${entry.service}": ${err.message}`, { cause: err }));
      });
    }
  }

  public onDisconnect(reason: IpcError): void {
    const lost = new IpcError('CONNECTION_LOST', `connection lost before the hub acknowledged: ${reason.message}`, { cause: reason });
    for (const ack of this.pendingAcks.values()) {
      clearTimeout(ack.timer);
      ack.reject(lost);
    }
    this.pendingAcks.clear();
  }

  private announce(entry: IProvided): Promise<void> {
    return this.acknowledged(EFrameKind.Provide, entry.service, entry.announcement);
  }

  /** Sends a Provide or Unprovide frame and resolves on the hub's answer (same kind and id). */
  private acknowledged(kind: EFrameKind.Provide | EFrameKind.Unprovide, service: string, json: string | undefined): Promise<void> {
    this.lastAckId = this.lastAckId >= 0xffffffff ? 1 : this.lastAckId + 1;
    const id = this.lastAckId;
    return new Promise<void>((resolve, reject) => {
      const ack: IPendingAck = { resolve, reject };
      ack.timer = startTimer(() => {
        this.pendingAcks.delete(id);
        reject(new IpcError('TIMEOUT', `the hub did not acknowledge ${kind === EFrameKind.Provide ? 'provide' : 'unprovide'}("${service}") within ${this.host.ackTimeoutMs} ms`));
      }, this.host.ackTimeoutMs);
      this.pendingAcks.set(id, ack);
      const payload = json === undefined ? { encoding: EPayloadEncoding.None, payload: undefined } : { encoding: EPayloadEncoding.Json, payload: json };
      this.host.connection.send(kind, service, payload, id).catch((err: IpcError) => {
        if (!this.pendingAcks.delete(id)) return;
        clearTimeout(ack.timer);
        reject(err);
      });
    });
  }

  // ---- calling ---------------------------------------------------------------------------------

  public call<TRes = unknown, TParams = unknown>(service: string, method: string, params?: TParams, options?: ICallOptions): Promise<TRes> {
    try {
      assertValidName('service', service);
      assertValidName('method', method);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.host.connection.request<TRes>(EFrameKind.Call, encodeCall({ service, method, callerId: '', ...nextChain(service) }), params, options);
  }

  public proxy<TApi>(service: string): TServiceProxy<TApi> {
    assertValidName('service', service);
    return serviceProxy<TApi>((method, params, options) => this.call(service, method, params, options));
  }

  public listServices(): Promise<IServiceInfo[]> {
    return this.host.connection.request<IServiceInfo[]>(EFrameKind.Request, SERVICES_REQUEST, undefined, { propagate: false });
  }

  public listPeers(): Promise<string[]> {
    return this.host.connection.request<string[]>(EFrameKind.Request, PEERS_REQUEST, undefined, { propagate: false });
  }

  public sendToPeer(clientId: string, type: string, data?: unknown): Promise<void> {
    try {
      assertValidName('clientId', clientId);
      assertValidName('method', type);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.host.connection.sendMessage(joinNames(clientId, type), data, EFrameKind.PeerMessage);
  }

  public requestPeer<TRes>(clientId: string, type: string, data?: unknown, options?: ICallOptions): Promise<TRes> {
    try {
      assertValidName('clientId', clientId);
      assertValidName('method', type);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.host.connection.request<TRes>(EFrameKind.PeerRequest, joinNames(clientId, type), data, options);
  }

  // ---- frames from the hub ---------------------------------------------------------------------

  public onFrame(frame: IFrame): void {
    switch (frame.kind) {
      case EFrameKind.Provide:
      case EFrameKind.Unprovide:
        return this.onAck(frame);
      case EFrameKind.Call:
        return this.onCall(frame);
      default:
        return this.onPeer(frame, frame.kind === EFrameKind.PeerRequest);
    }
  }

  private onAck(frame: IFrame): void {
    const ack = this.pendingAcks.get(frame.id);
    if (ack === undefined) return;
    this.pendingAcks.delete(frame.id);
    clearTimeout(ack.timer);
    if (frame.payloadEnd === frame.payloadStart) {
      ack.resolve();
      return;
    }
    try {
      const body = JSON.parse(frame.payload.toString('utf8')) as { code?: unknown; message?: unknown };
      ack.reject(new IpcError(isIpcErrorCode(body.code) ? body.code : 'PROTOCOL_ERROR', String(body.message)));
    } catch {
      ack.reject(new IpcError('PROTOCOL_ERROR', 'unreadable answer from the hub'));
    }
  }

  /** A call the hub routed here: run the method with its call context. */
  private onCall(frame: IFrame): void {
    const host = this.host.connection;
    const address = decodeCall(frame.type);
    if (address === undefined) {
      host.replyError(frame.id, new IpcError('PROTOCOL_ERROR', 'a call frame without service, method and chain'));
      return;
    }
    const { service, method } = address;
    const entry = this.provided.get(service);
    const fn = entry?.methods[method];
    if (fn === undefined) {
      // Unprovided while the call was on its way.
      host.replyError(frame.id, new IpcError(entry === undefined ? 'SERVICE_NOT_FOUND' : 'METHOD_NOT_FOUND', `this client does not provide ${service}.${method}`));
      return;
    }
    const callerId = address.callerId || host.peerId;
    const context = host.contextFor(frame, true, new CallContext(service, method, callerId, address.root, address.chain, true));
    const run = fn as unknown as (params: unknown, ctx: CallContext) => unknown;
    host.serve(frame, true, (params, _peerId, ctx) => run(params, ctx as CallContext), context);
  }

  /** A message or request from another client, routed by the hub: type = sender U+0000 type. */
  private onPeer(frame: IFrame, isRequest: boolean): void {
    const host = this.host.connection;
    const names = splitNames(frame.type);
    if (names === undefined) {
      if (isRequest) host.replyError(frame.id, new IpcError('PROTOCOL_ERROR', 'a peer frame without sender and type'));
      return;
    }
    const [from, type] = names;
    const handler = this.host.handlers.get(type);
    if (handler === undefined) {
      const error = new IpcError('NO_HANDLER', `no handler for "${type}" on the receiving client`);
      if (isRequest) host.replyError(frame.id, passThrough(error));
      else host.deadLetter(frame, 'noHandler', type, from, error);
      return;
    }
    const context = host.contextFor(frame, isRequest, new HandlerContext(type, isRequest, from));
    host.serve(frame, isRequest, handler as (data: unknown, peerId: string, context: HandlerContext) => unknown, context);
  }
}
