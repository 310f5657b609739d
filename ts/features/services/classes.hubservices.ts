import { IpcError, invalidArgument } from '../../smartipc.errors.js';
import { EFrameKind, EPayloadEncoding, type IFrame } from '../../interfaces/wire.js';
import type { IConnectionFeature, IConnectionHost } from '../../interfaces/hosts.js';
import type {
  ICallCompletedInfo,
  ICallOptions,
  ICallRoutedInfo,
  IProvideOptions,
  IServiceInfo,
  IServiceRegisteredInfo,
  IServiceUnregisteredInfo,
  TServiceMethods,
} from '../../interfaces/services.js';
import type { IRequestOptions } from '../../interfaces/options.js';
import { HandlerContext, currentHandlerContext, handlerContextStorage } from '../../channel/rpc/classes.handlercontext.js';
import { requestChannel, traceWithoutResult, type ITraceContext } from '../observability/tracing.js';
import { RawPayload, passThrough } from '../../channel/rpc/rawpayload.js';
import { checkRequestOptions, plainObject } from '../../smartipc.options.js';
import { debug } from '../../smartipc.log.js';
import { CallContext, MAX_NAME_LENGTH, assertValidName, decodeCall, describeInvalidName, encodeCall, joinNames, nextChain, splitNames, withCallerId, type ICallAddress, type ICallChainHeader } from './callchain.js';

/** A chain for a message: its first and last few names (a long one would not fit a small frame). */
function describeChain(chain: readonly string[]): string {
  return chain.length <= 10 ? chain.join(' -> ') : `${chain.slice(0, 6).join(' -> ')} -> ... -> ${chain.slice(-3).join(' -> ')}`;
}

/** A chain the hub will not pass on: names that are not service names, a root that is not an id, one that does not end in the callee. */
function describeInvalidChain(address: ICallAddress): string | undefined {
  if (address.root.length === 0 || address.root.length > MAX_NAME_LENGTH) return `the call's root must be 1 to ${MAX_NAME_LENGTH} characters`;
  if (address.chain.length === 0 || address.chain[address.chain.length - 1] !== address.service) return 'the call chain must end with the service called';
  for (const name of address.chain) {
    if (name.length === 0 || name.length > MAX_NAME_LENGTH) return `every name in the call chain must be 1 to ${MAX_NAME_LENGTH} characters`;
  }
  return undefined;
}

/** The clientId of services the hub provides itself, and of calls the hub makes. */
export const HUB_ID = 'server';

/** What the hub's services need from their server. */
export interface IHubServicesHost {
  /** Calls deeper than this are refused with MAX_DEPTH_EXCEEDED. */
  maxCallDepth: number;
  /** The live connection of a client (peers are routed by clientId). */
  connectionOf(clientId: string): IConnectionHost | undefined;
  clientIds(): string[];
  onRegistered(info: IServiceRegisteredInfo): void;
  onUnregistered(info: IServiceUnregisteredInfo): void;
  /** Whether anyone listens to callRouted / callCompleted (no info objects are built otherwise). */
  wantsCallEvents(): boolean;
  onCallRouted(info: ICallRoutedInfo): void;
  onCallCompleted(info: ICallCompletedInfo): void;
}

interface IInstance {
  readonly clientId: string;
  /** undefined for a service the hub provides itself. */
  readonly connection: IConnectionHost | undefined;
  readonly local: TServiceMethods | undefined;
  readonly methods: ReadonlySet<string>;
  readonly version?: string;
  readonly metadata: Record<string, unknown>;
  inFlight: number;
}

interface IServiceEntry {
  readonly name: string;
  instances: IInstance[];
  /** Round robin among instances with equally few calls in flight. */
  turn: number;
}

/**
 * The hub's side of services and peers: the registry of what connections (and the hub itself)
 * provide, and the router. A call goes to exactly one instance (fewest calls in flight, ties in
 * turn); its payload and its answer pass through as they arrived, never decoded; the chain in the frame type
 * is checked against maxCallDepth; cancellation follows the call (a cancel from the caller reaches
 * the instance). An instance that leaves fails the calls it held with CONNECTION_LOST.
 */
export class HubServices {
  private readonly services = new Map<string, IServiceEntry>();

  constructor(private readonly host: IHubServicesHost) {}

  /** The services frames of one client connection, as a feature. */
  public featureFor(clientId: string, connection: IConnectionHost): IConnectionFeature {
    return {
      frameKinds: [EFrameKind.Provide, EFrameKind.Unprovide, EFrameKind.Call, EFrameKind.PeerMessage, EFrameKind.PeerRequest],
      onFrame: (frame) => {
        switch (frame.kind) {
          case EFrameKind.Provide:
            return this.onProvide(clientId, connection, frame);
          case EFrameKind.Unprovide:
            this.remove(frame.type, clientId, connection);
            return this.acknowledge(connection, frame);
          case EFrameKind.Call:
            return this.onCall(clientId, connection, frame);
          default:
            return this.onPeer(clientId, connection, frame, frame.kind === EFrameKind.PeerRequest);
        }
      },
      onDisconnect: () => {
        for (const entry of [...this.services.values()]) {
          for (const instance of entry.instances) if (instance.connection === connection) this.remove(entry.name, clientId, connection);
        }
      },
    };
  }

  // ---- registry --------------------------------------------------------------------------------

  public getServices(): IServiceInfo[] {
    return [...this.services.values()].map((entry) => this.describe(entry));
  }

  public getService(name: string): IServiceInfo | undefined {
    const entry = this.services.get(name);
    return entry === undefined ? undefined : this.describe(entry);
  }

  public isServiceAvailable(name: string): boolean {
    return (this.services.get(name)?.instances.length ?? 0) > 0;
  }

  /** The hub provides a service itself (clientId 'server'); callers reach it like any other. */
  public provideLocal(service: string, methods: TServiceMethods, options: IProvideOptions = {}): void {
    assertValidName('service', service);
    if (options === null || typeof options !== 'object') throw invalidArgument('provide options must be an object');
    if (options.version !== undefined && typeof options.version !== 'string') throw invalidArgument('version must be a string');
    if (methods === null || typeof methods !== 'object' || Object.keys(methods).length === 0) throw invalidArgument(`provide("${service}") needs an object of methods`);
    for (const [name, fn] of Object.entries(methods)) {
      assertValidName('method', name);
      if (typeof fn !== 'function') throw invalidArgument(`method "${name}" of service "${service}" must be a function`);
    }
    plainObject('metadata', options.metadata);
    if (this.services.get(service)?.instances.some((instance) => instance.local !== undefined)) {
      throw invalidArgument(`the hub already provides service "${service}"; unprovide it first`);
    }
    this.add(service, { clientId: HUB_ID, connection: undefined, local: { ...methods }, methods: new Set(Object.keys(methods)), version: options.version, metadata: options.metadata ?? {}, inFlight: 0 });
  }

  public unprovideLocal(service: string): void {
    this.remove(service, HUB_ID, undefined);
  }

  private describe(entry: IServiceEntry): IServiceInfo {
    return {
      name: entry.name,
      instances: entry.instances.map((instance) => ({
        clientId: instance.clientId,
        methods: [...instance.methods],
        ...(instance.version !== undefined ? { version: instance.version } : {}),
        metadata: instance.metadata,
        inFlight: instance.inFlight,
      })),
    };
  }

  private onProvide(clientId: string, connection: IConnectionHost, frame: IFrame): void {
    const service = frame.type;
    const problem = describeInvalidName('service', service);
    if (problem !== undefined) return this.acknowledge(connection, frame, new IpcError('INVALID_ARGUMENT', problem));
    let announcement: { methods?: unknown; version?: unknown; metadata?: unknown };
    try {
      announcement = JSON.parse(frame.payload.toString('utf8')) as typeof announcement;
      if (announcement === null || typeof announcement !== 'object') throw new Error('not an object');
    } catch {
      return this.acknowledge(connection, frame, new IpcError('PROTOCOL_ERROR', `unreadable announcement of service "${service}"`));
    }
    const methods = announcement.methods;
    if (!Array.isArray(methods) || methods.length === 0 || methods.some((m) => describeInvalidName('method', m) !== undefined)) {
      return this.acknowledge(connection, frame, new IpcError('INVALID_ARGUMENT', `service "${service}" must announce a non-empty list of valid method names`));
    }
    if (this.services.get(service)?.instances.some((instance) => instance.connection === connection)) {
      return this.acknowledge(connection, frame, new IpcError('INVALID_ARGUMENT', `service "${service}" is already provided on this connection`));
    }
    const metadata = announcement.metadata !== null && typeof announcement.metadata === 'object' && !Array.isArray(announcement.metadata) ? (announcement.metadata as Record<string, unknown>) : {};
    this.add(service, {
      clientId,
      connection,
      local: undefined,
      methods: new Set(methods as string[]),
      version: typeof announcement.version === 'string' ? announcement.version : undefined,
      metadata,
      inFlight: 0,
    });
    this.acknowledge(connection, frame);
  }

  private add(service: string, instance: IInstance): void {
    let entry = this.services.get(service);
    if (entry === undefined) {
      entry = { name: service, instances: [], turn: 0 };
      this.services.set(service, entry);
    }
    entry.instances.push(instance);
    debug('service %s provided by %s (%d instances)', service, instance.clientId, entry.instances.length);
    this.host.onRegistered({
      service,
      clientId: instance.clientId,
      methods: [...instance.methods],
      ...(instance.version !== undefined ? { version: instance.version } : {}),
      metadata: instance.metadata,
    });
  }

  private remove(service: string, clientId: string, connection: IConnectionHost | undefined): void {
    const entry = this.services.get(service);
    if (entry === undefined) return;
    const before = entry.instances.length;
    entry.instances = entry.instances.filter((instance) => !(instance.clientId === clientId && instance.connection === connection));
    if (entry.instances.length === before) return;
    if (entry.instances.length === 0) this.services.delete(service);
    this.host.onUnregistered({ service, clientId });
  }

  /** Answers a Provide or Unprovide on its id: empty for done, a JSON refusal otherwise. */
  private acknowledge(connection: IConnectionHost, frame: IFrame, refusal?: IpcError): void {
    const body = refusal === undefined ? { encoding: EPayloadEncoding.None, payload: undefined } : { encoding: EPayloadEncoding.Json, payload: JSON.stringify({ code: refusal.code, message: refusal.message }) };
    try {
      connection.sendNow(frame.kind, frame.type, body, frame.id);
    } catch (err) {
      debug('services acknowledgement not sent: %s', (err as Error).message);
    }
  }

  // ---- routing ---------------------------------------------------------------------------------

  /** Picks the instance for a call: fewest calls in flight among those with the method, ties in turn. */
  private pick(service: string, method: string): IInstance | IpcError {
    const entry = this.services.get(service);
    if (entry === undefined || entry.instances.length === 0) return passThrough(new IpcError('SERVICE_NOT_FOUND', `no instance provides service "${service}"`));
    const count = entry.instances.length;
    let best: IInstance | undefined;
    for (let i = 0; i < count; i++) {
      const instance = entry.instances[(entry.turn + i) % count];
      if (!instance.methods.has(method)) continue;
      if (best === undefined || instance.inFlight < best.inFlight) best = instance;
    }
    if (best === undefined) return passThrough(new IpcError('METHOD_NOT_FOUND', `service "${service}" has no method "${method}"`));
    entry.turn = (entry.instances.indexOf(best) + 1) % count;
    return best;
  }

  /** A call from a client: checked, then run here (a hub service) or forwarded as it arrived. */
  private onCall(callerId: string, caller: IConnectionHost, frame: IFrame): void {
    const address = decodeCall(frame.type);
    if (address === undefined) return caller.replyError(frame.id, new IpcError('PROTOCOL_ERROR', 'a call frame without service, method and chain'));
    const { service, method, chain } = address;
    if (chain.length > this.host.maxCallDepth) {
      return caller.replyError(frame.id, new IpcError('MAX_DEPTH_EXCEEDED', `call ${service}.${method} is ${chain.length} deep (${describeChain(chain)}), over maxCallDepth ${this.host.maxCallDepth}`));
    }
    const problem = describeInvalidChain(address);
    if (problem !== undefined) return caller.replyError(frame.id, new IpcError('PROTOCOL_ERROR', `call ${service}.${method}: ${problem}`));
    if (frame.budgetMs === 0) {
      return caller.replyError(frame.id, new IpcError('TIMEOUT', `call ${service}.${method} reached the hub after its deadline; not dispatched`));
    }
    const instance = this.pick(service, method);
    if (instance instanceof IpcError) return caller.replyError(frame.id, instance);
    const context = caller.contextFor(frame, true, new CallContext(service, method, callerId, address.root, chain, true));
    if (instance.local !== undefined) {
      const settle = this.track(instance, callerId, service, method, address);
      const local = instance.local[method] as (params: unknown, context: unknown) => unknown;
      caller.serve(frame, true, (params, _peerId, ctx) => settle(new Promise((resolve) => resolve(local(params, ctx)))), context);
      return;
    }
    // Forwarded as it arrived: the hub reads only the type (with the chain) and the budget, and
    // writes in who the caller is (a caller cannot claim another's id).
    const type = withCallerId(frame.type, callerId);
    const target = instance.connection!;
    if (!this.host.wantsCallEvents()) {
      // Nothing to report: counted in and out by the forward itself, no promise in between.
      instance.inFlight++;
      const settled = () => void instance.inFlight--;
      caller.serve(frame, true, (payload) => target.forward(EFrameKind.Call, type, payload as RawPayload, frame.headers, context, settled), context, true);
      return;
    }
    const settle = this.track(instance, callerId, service, method, address);
    caller.serve(frame, true, (payload) => settle(target.forward(EFrameKind.Call, type, payload as RawPayload, frame.headers, context)), context, true);
  }

  /**
   * Counts a routed call in its instance's inFlight (the pick looks at it) and reports it; the
   * returned function wraps the call's promise and settles the count and the report with it.
   */
  private track(instance: IInstance, from: string, service: string, method: string, chain: ICallChainHeader): <T>(call: Promise<T>) => Promise<T> {
    instance.inFlight++;
    const events = this.host.wantsCallEvents();
    const startedAt = events ? performance.now() : 0;
    if (events) this.host.onCallRouted({ from, to: instance.clientId, service, method, root: chain.root, depth: chain.chain.length });
    const done = (ok: boolean, code?: string) => {
      instance.inFlight--;
      if (events) this.host.onCallCompleted({ from, to: instance.clientId, service, method, ok, ...(code !== undefined ? { code } : {}), durationMs: performance.now() - startedAt });
    };
    return (call) =>
      call.then(
        (value) => {
          done(true);
          return value;
        },
        (err: unknown) => {
          done(false, err instanceof IpcError ? err.code : 'HANDLER_ERROR');
          throw err;
        },
      );
  }

  /** A message or request from one client to another: routed by clientId, passed on as it arrived. */
  private onPeer(fromId: string, from: IConnectionHost, frame: IFrame, isRequest: boolean): void {
    const names = splitNames(frame.type);
    if (names === undefined) {
      if (isRequest) from.replyError(frame.id, new IpcError('PROTOCOL_ERROR', 'a peer frame without target and type'));
      return;
    }
    const [targetId, type] = names;
    const target = this.host.connectionOf(targetId);
    const routedType = joinNames(fromId, type);
    if (target === undefined) {
      const error = new IpcError('CLIENT_NOT_FOUND', `no connected client "${targetId}" for "${type}"`);
      if (isRequest) from.replyError(frame.id, error);
      else from.deadLetter(frame, 'unknownPeer', type, fromId, error);
      return;
    }
    if (!isRequest) {
      try {
        target.sendRaw(
          EFrameKind.PeerMessage,
          routedType,
          new RawPayload(frame.flags, frame.payloadEnd > frame.payloadStart ? frame.buf.subarray(frame.payloadStart, frame.payloadEnd) : undefined),
          frame.headers,
        );
      } catch (err) {
        debug('peer message to %s not sent: %s', targetId, (err as Error).message);
      }
      return;
    }
    const context = from.contextFor(frame, true, new HandlerContext(type, true, fromId));
    from.serve(frame, true, (payload) => target.forward(EFrameKind.PeerRequest, routedType, payload as RawPayload, frame.headers, context), context, true);
  }

  // ---- calls made by the hub -------------------------------------------------------------------

  /** `server.call(...)`: the hub calls a service, its own or a client's. */
  public call<TRes>(service: string, method: string, params: unknown, options: ICallOptions | undefined, requestTimeoutMs: number): Promise<TRes> {
    try {
      assertValidName('service', service);
      assertValidName('method', method);
      if (options !== undefined) checkRequestOptions(options);
    } catch (err) {
      return Promise.reject(err);
    }
    const instance = this.pick(service, method);
    if (instance instanceof IpcError) return Promise.reject(new IpcError(instance.code, instance.message));
    const chain = nextChain(service);
    if (chain.chain.length > this.host.maxCallDepth) {
      return Promise.reject(new IpcError('MAX_DEPTH_EXCEEDED', `call ${service}.${method} would be ${chain.chain.length} deep, over maxCallDepth ${this.host.maxCallDepth}`));
    }
    if (instance.connection !== undefined) {
      instance.inFlight++;
      return instance.connection.request<TRes>(EFrameKind.Call, encodeCall({ service, method, callerId: HUB_ID, ...chain }), params, options as IRequestOptions).finally(() => {
        instance.inFlight--;
      });
    }
    if (!requestChannel.hasSubscribers) return this.callLocal<TRes>(instance, service, method, params, options, requestTimeoutMs, chain);
    // Traced like a call that crosses a connection (a start subscriber may add headers).
    const trace: ITraceContext = { type: `${service}.${method}`, peerId: HUB_ID, id: 0, service, method, headers: { ...(options?.headers ?? {}) }, bytes: 0 };
    return traceWithoutResult(requestChannel, trace, () => this.callLocal<TRes>(instance, service, method, params, { ...options, headers: trace.headers }, requestTimeoutMs, chain));
  }

  /** A hub service called by the hub: no wire, but the same context (deadline, signal, chain). */
  private async callLocal<TRes>(instance: IInstance, service: string, method: string, params: unknown, options: ICallOptions | undefined, requestTimeoutMs: number, chain: ICallChainHeader): Promise<TRes> {
    const parent = options?.propagate === false ? undefined : currentHandlerContext();
    let timeoutMs = options?.timeout ?? requestTimeoutMs;
    if (parent !== undefined) timeoutMs = Math.min(timeoutMs, parent.remainingMs());
    const context = new CallContext(service, method, HUB_ID, chain.root, chain.chain, true);
    const traceparent = parent?.headers?.traceparent;
    if (options?.headers !== undefined || traceparent !== undefined) {
      context.headers = { ...(traceparent !== undefined ? { traceparent } : {}), ...options?.headers };
    }
    if (timeoutMs !== Infinity) context.deadline = Date.now() + timeoutMs;
    const unlinkParent = parent?.onAbort((reason) => context.abort(reason));
    const onAbort = () => context.abort(new IpcError('ABORTED', `call ${service}.${method} was aborted`, { cause: options?.signal?.reason }));
    options?.signal?.addEventListener('abort', onAbort, { once: true });
    let timer: NodeJS.Timeout | undefined;
    instance.inFlight++;
    try {
      // A synchronous throw is a rejection too (HANDLER_ERROR below), like an async one.
      const result = new Promise((resolve) => resolve(handlerContextStorage.run(context, () => (instance.local![method] as (p: unknown, c: unknown) => unknown)(params, context))));
      const cancelled = new Promise<never>((_, reject) => {
        context.onAbort(reject);
        if (timeoutMs !== Infinity) {
          timer = setTimeout(() => context.abort(new IpcError('TIMEOUT', `call ${service}.${method} timed out after ${timeoutMs} ms`)), timeoutMs);
          timer.unref();
        }
      });
      try {
        return (await Promise.race([result, cancelled])) as TRes;
      } catch (err) {
        if (err instanceof IpcError && context.isAborted) throw err;
        const message = err instanceof Error ? err.message : String(err);
        throw new IpcError('HANDLER_ERROR', message, { cause: err, remote: { name: (err as Error)?.name ?? 'Error', message } });
      }
    } finally {
      instance.inFlight--;
      clearTimeout(timer);
      unlinkParent?.();
      options?.signal?.removeEventListener('abort', onAbort);
    }
  }
}
