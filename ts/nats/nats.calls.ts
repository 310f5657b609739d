/**
 * What clients and exposures share on the calling and the serving side of NATS:
 *
 * - NatsRequester: requests and service calls awaiting their reply under a participant's inbox
 *   (`<inbox>.<n>`), with the running handler's deadline and cancellation inherited (unless
 *   `propagate: false`), traceparent carried into nested calls, and a cancel on `<ns>.cancel` when
 *   the caller gives up before its time (an abort). No responders: NO_HANDLER for requests; for a
 *   call one probe of `<ns>.svc.<service>` tells SERVICE_NOT_FOUND from METHOD_NOT_FOUND.
 * - serveCall: runs a service method for a NATS caller in a CallContext (chain, depth guard,
 *   deadline, cancellation), in the async context nested calls read, and replies.
 * - The service registry on NATS: NatsServiceAnnouncer (a provider's list on `<ns>.svcreg` when it
 *   changes, and as an answer on `<ns>.svclist`), NatsServiceDirectory (what the providers list,
 *   kept current), gatherLists (one `<ns>.svclist` round).
 */
import * as plugins from './nats.plugins.js';
import { smartipc, handlerContextStorage, type Msg, type Subscription } from './nats.plugins.js';
import { NATS_HEADER, NATS_SERVICE_LIST_MAX_WAIT_MS, NATS_SERVICE_LIST_STALL_MS, NATS_SERVICE_PROBE_TIMEOUT_MS } from './nats.constants.js';
import {
  InboundHeaders,
  budgetOf,
  decodeChain,
  decodeMsg,
  decodeRoot,
  encodeData,
  errorBody,
  errorFromReply,
  userHeaders,
  putUserHeaders,
  toReplyError,
  type INatsEncoded,
} from './nats.codec.js';
import type { NatsBridge } from './classes.natsbridge.js';
import type { IRunningHandler } from './nats.serving.js';
import { debugNats } from './nats.log.js';
import type { INatsServiceInfo } from './interfaces.js';

// ---- calling -------------------------------------------------------------------------------------

/** One request or call registered with a NatsRequester, not yet sent. */
export interface IOutgoingCall<T> {
  id: number;
  reply: string;
  promise: Promise<T>;
  /** performance.now() at which the caller gives up; Infinity: never. */
  deadline: number;
  /** The caller's headers plus the running handler's traceparent, when it had one and the caller set none. */
  headers: Record<string, unknown> | undefined;
}

interface ICallTarget {
  service: string;
  method: string;
}

/** How a requester names a no-responders answer to a request (calls have their own). */
export type TNoResponder = (type: string) => smartipc.IpcError;

export class NatsRequester {
  public readonly pending: smartipc.PendingRequests;
  private readonly calls = new Map<number, ICallTarget>();

  constructor(
    private readonly bridge: NatsBridge,
    private readonly inbox: string,
    private readonly noResponder: TNoResponder,
    /** Someone answered (not "no responders"): a request (target undefined) or a call of target.service. */
    private readonly onAnswered?: (target: ICallTarget | undefined) => void,
  ) {
    this.pending = new smartipc.PendingRequests(smartipc.systemClock, 1, (entry, reason) => this.gaveUp(entry, reason));
  }

  public get size(): number {
    return this.pending.size;
  }

  /**
   * Registers a request (or, with `target`, a call). Its timeout is the smaller of its own and what
   * the handler it is made in has left, and it is cancelled with that handler. Throws ABORTED when
   * the signal or that handler already gave up.
   */
  public open<T>(type: string, options: smartipc.IRequestOptions, defaultTimeoutMs: number, target?: ICallTarget): IOutgoingCall<T> {
    if (options.signal?.aborted) throw new smartipc.IpcError('ABORTED', `${target ? 'call' : 'request'} "${type}" was aborted before it was sent`, { cause: options.signal.reason });
    let timeoutMs = options.timeout ?? defaultTimeoutMs;
    const parent = options.propagate === false ? undefined : smartipc.currentHandlerContext();
    let headers = options.headers;
    if (parent !== undefined) {
      if (parent.isAborted) {
        throw new smartipc.IpcError('ABORTED', `${target ? 'call' : 'request'} "${type}" not sent: the handler it was made in was cancelled (${parent.reason!.message})`, { cause: parent.reason });
      }
      const left = parent.remainingMs();
      if (left < timeoutMs) timeoutMs = left;
      const traceparent = parent.headers?.traceparent;
      if (typeof traceparent === 'string' && headers?.traceparent === undefined) headers = { ...headers, traceparent };
    }
    const id = this.pending.allocateId();
    let cleanup: (() => void) | undefined;
    if (parent !== undefined) {
      const unlink = parent.onAbort((reason) => {
        this.pending.giveUp(id, new smartipc.IpcError('ABORTED', `${target ? 'call' : 'request'} "${type}" was cancelled with the handler it was made in: ${reason.message}`, { cause: reason }));
      });
      cleanup = target === undefined ? unlink : () => {
        unlink();
        this.calls.delete(id);
      };
    } else if (target !== undefined) {
      cleanup = () => this.calls.delete(id);
    }
    if (target !== undefined) this.calls.set(id, target);
    const promise = this.pending.add<T>(id, type, timeoutMs, options.signal, cleanup);
    const clamped = timeoutMs === Infinity ? Infinity : Math.min(Math.max(timeoutMs, 0), smartipc.defaults.MAX_TIMER_DELAY_MS);
    return { id, reply: `${this.inbox}.${id}`, promise, deadline: performance.now() + clamped, headers };
  }

  /** The Sipc-Timeout-Ms value for a deadline: what is left now, rounded up (the host gives up a little later than the caller, never earlier). */
  public static budget(deadline: number): string | undefined {
    return deadline === Infinity ? undefined : String(Math.max(0, Math.ceil(deadline - performance.now())));
  }

  /** Sending failed: the call is forgotten, the error goes to the caller. */
  public fail(id: number, error: smartipc.IpcError): void {
    this.pending.take(id)?.reject(error);
  }

  /** A reply under `<inbox>.<n>`. Returns the bytes it carried (for metrics), or -1 when nobody waits for it any more. */
  public onReply(id: number, msg: Msg): number {
    const target = this.calls.get(id);
    const entry = this.pending.take(id);
    if (entry === undefined) return -1;
    const headers = InboundHeaders.of(msg);
    if (headers.any) {
      if (headers.status === 503) {
        if (target === undefined) entry.reject(this.noResponder(entry.type));
        else this.noServiceResponder(target).then((error) => entry.reject(error), (error: smartipc.IpcError) => entry.reject(error));
        return msg.data.length;
      }
      const code = headers.get(NATS_HEADER.error);
      if (code) {
        this.onAnswered?.(target);
        entry.reject(errorFromReply(code, msg.data));
        return msg.data.length;
      }
    }
    this.onAnswered?.(target);
    let value: unknown;
    try {
      value = decodeMsg(msg, headers);
    } catch (err) {
      entry.reject(err as smartipc.IpcError);
      return msg.data.length;
    }
    entry.resolve(value);
    return msg.data.length;
  }

  /** NATS dropped, or the participant closes. */
  public rejectAll(makeError: (entry: smartipc.IPendingRequest) => smartipc.IpcError): void {
    this.pending.rejectAll(makeError);
  }

  /** A call nobody answered: does anyone provide the service at all? */
  private async noServiceResponder(target: ICallTarget): Promise<smartipc.IpcError> {
    const name = `${target.service}.${target.method}`;
    try {
      if (!this.bridge.isConnected) throw new Error('not connected');
      await this.bridge.connection.request(this.bridge.subjects.serviceProbe(target.service), undefined, { timeout: NATS_SERVICE_PROBE_TIMEOUT_MS });
      return smartipc.passThrough(new smartipc.IpcError('METHOD_NOT_FOUND', `service "${target.service}" has no method "${target.method}" (no instance on NATS answers ${name})`));
    } catch {
      return smartipc.passThrough(new smartipc.IpcError('SERVICE_NOT_FOUND', `no instance provides service "${target.service}" on NATS (namespace "${this.bridge.namespace}")`));
    }
  }

  /** The caller gave up before its time (an abort, or the handler it was made in was cancelled): the serving side hears of it. */
  private gaveUp(entry: smartipc.IPendingRequest, reason: smartipc.IpcError): void {
    if (reason.code === 'TIMEOUT') return; // the serving side's own deadline covers it
    this.bridge.publishCancel(`${this.inbox}.${entry.id}`);
  }
}

/** The header fields every request and call carries: From, the budget, the encoding, the caller's headers. */
export function requestFields(from: string, encoded: INatsEncoded, headers: Record<string, unknown> | undefined, deadline: number): Record<string, string> {
  const fields: Record<string, string> = { [NATS_HEADER.from]: from };
  const budget = NatsRequester.budget(deadline);
  if (budget !== undefined) fields[NATS_HEADER.timeoutMs] = budget;
  if (encoded.encoding !== undefined) fields[NATS_HEADER.encoding] = encoded.encoding;
  return putUserHeaders(fields, headers);
}


/**
 * Ends subscriptions without losing what nats-server already routed to them: drain (UNSUB, then
 * what arrives until the server confirmed it is still handled), so a caller never waits for its
 * timeout on a message that reached a subscription being removed. Unsubscribes at once while NATS is down.
 */
export function retireSubscriptions(bridge: NatsBridge, subscriptions: Subscription[]): Promise<void> {
  if (subscriptions.length === 0) return Promise.resolve();
  if (!bridge.isConnected) {
    for (const s of subscriptions) s.unsubscribe();
    return Promise.resolve();
  }
  return Promise.all(subscriptions.map((s) => s.drain().catch(() => s.unsubscribe()))).then(() => undefined);
}

// ---- replying --------------------------------------------------------------------------------------

/** Replies with a value (JSON: no headers at all; another encoding: one Sipc-Enc header). A value too large becomes MESSAGE_TOO_LARGE. */
export function replyValue(bridge: NatsBridge, reply: string, value: unknown, json: boolean, what: string): void {
  let encoded: INatsEncoded;
  try {
    encoded = encodeData(value, json, what);
    bridge.checkSize(encoded.bytes + (encoded.encoding === undefined ? 0 : 32), what);
  } catch (err) {
    replyError(bridge, reply, err instanceof smartipc.IpcError ? err : new smartipc.IpcError('HANDLER_ERROR', (err as Error).message));
    return;
  }
  try {
    bridge.publish(reply, encoded.payload, encoded.encoding === undefined ? undefined : bridge.encodingHeaders(encoded.encoding));
  } catch (err) {
    debugNats('%s dropped: %s', what, (err as Error).message);
  }
}

export function replyError(bridge: NatsBridge, reply: string, error: smartipc.IpcError): void {
  try {
    bridge.publish(reply, errorBody(error), bridge.headers({ [NATS_HEADER.error]: error.code }));
  } catch (err) {
    debugNats('error reply dropped: %s', (err as Error).message);
  }
}

// ---- serving a service call -------------------------------------------------------------------------

/** What a NATS call of `service.method` arriving at a provider carries. */
export interface IInboundCall {
  params: unknown;
  callerId: string;
  root: string;
  /** The chain with the callee last. */
  chain: string[];
  headers?: Record<string, unknown>;
  /** Ms left when it was sent, or undefined. */
  budgetMs?: number;
}

/** Reads a call message (throws PROTOCOL_ERROR for a payload that does not decode). */
export function readCall(msg: Msg, service: string): IInboundCall {
  const headers = InboundHeaders.of(msg);
  const params = decodeMsg(msg, headers);
  const callerId = headers.get(NATS_HEADER.from) ?? '';
  let chain = decodeChain(headers.get(NATS_HEADER.chain));
  // A caller that sent no chain (a plain NATS client) starts one; a chain must end with the callee.
  if (chain === undefined) chain = [service];
  else if (chain.at(-1) !== service) chain = [...chain, service];
  const root = decodeRoot(headers.get(NATS_HEADER.root)) ?? plugins.crypto.randomUUID();
  const user = userHeaders(headers);
  const budgetMs = budgetOf(headers);
  return { params, callerId, root, chain, ...(user ? { headers: user } : {}), ...(budgetMs !== undefined ? { budgetMs } : {}) };
}

export interface IServeOptions {
  bridge: NatsBridge;
  owner: object;
  json: boolean;
  maxCallDepth: number;
  /** Counts the call while it runs (drain, inFlight). */
  onStart(): void;
  onEnd(): void;
}

/**
 * Runs `fn(params, ctx)` for a call that arrived over NATS, as the hub would run it for a local
 * caller: refused with MAX_DEPTH_EXCEEDED over the depth, TIMEOUT when its budget was spent on the
 * way; otherwise in a CallContext (so nested requests and calls inherit its deadline, chain and
 * cancellation) that aborts when the budget runs out, the caller cancels or NATS drops.
 */
export function serveCall(options: IServeOptions, msg: Msg, service: string, method: string, fn: (params: unknown, context: smartipc.CallContext) => unknown): void {
  const reply = msg.reply;
  if (!reply) return;
  const { bridge } = options;
  let call: IInboundCall;
  try {
    call = readCall(msg, service);
  } catch (err) {
    replyError(bridge, reply, err as smartipc.IpcError);
    return;
  }
  if (call.chain.length > options.maxCallDepth) {
    replyError(bridge, reply, new smartipc.IpcError('MAX_DEPTH_EXCEEDED', `call ${service}.${method} is ${call.chain.length} deep (${call.chain.join(' -> ')}), over maxCallDepth ${options.maxCallDepth}`));
    return;
  }
  if (call.budgetMs === 0) {
    replyError(bridge, reply, new smartipc.IpcError('TIMEOUT', `call ${service}.${method} arrived after its deadline; not dispatched`));
    return;
  }
  const context = new smartipc.CallContext(service, method, call.callerId, call.root, call.chain, true);
  if (call.headers !== undefined) context.headers = call.headers;
  if (call.budgetMs !== undefined) context.deadline = Date.now() + call.budgetMs;
  options.onStart();
  serveReply(
    bridge,
    {
      reply,
      owner: options.owner,
      budgetMs: call.budgetMs,
      json: options.json,
      what: `result of ${service}.${method}`,
      context,
      onEnd: options.onEnd,
      onLate: () => debugNats('late result of %s.%s dropped: %s', service, method, context.reason!.message),
    },
    () => handlerContextStorage.run(context, fn, call.params, context),
  );
}

/** How `serveReply` answers one handler run for a NATS caller. */
export interface IServeReply {
  /** The reply subject; without one (a message) nothing is answered and failures go to `onError`. */
  reply: string | undefined;
  owner: object;
  /** The caller's budget (ms left when it arrived); undefined: none. */
  budgetMs: number | undefined;
  json: boolean;
  /** What the answer is, for encoding errors. */
  what: string;
  /** Aborted (budget spent, caller gone, NATS dropped): its late result is dropped. */
  context: { readonly isAborted: boolean; abort(reason: smartipc.IpcError): void };
  /** Runs once when the handler stops counting: answered, failed, or aborted. */
  onEnd(): void;
  onLate?(): void;
  /** How a failure is answered (default toReplyError: the library's refusals keep their code, the rest is HANDLER_ERROR). */
  toError?(thrown: unknown): smartipc.IpcError;
  /** A failure with no reply subject to answer on (a fire-and-forget message). */
  onError?(error: smartipc.IpcError, thrown: unknown): void;
}

/** The context of a fire-and-forget message: nobody waits for it, so nothing aborts it. */
export const NOT_ABORTABLE: IServeReply['context'] = { isAborted: false, abort: () => undefined };

/**
 * Runs a handler for a NATS caller and answers its reply subject: at once when it answers
 * synchronously, else when its promise settles, tracked meanwhile (bridge.serving) so the caller's
 * budget, its cancel or a NATS drop aborts it.
 */
export function serveReply(bridge: NatsBridge, serve: IServeReply, run: () => unknown): void {
  const fail = (thrown: unknown): void => {
    const error = (serve.toError ?? toReplyError)(thrown);
    if (serve.reply !== undefined) replyError(bridge, serve.reply, error);
    else serve.onError?.(error, thrown);
  };
  let result: unknown;
  try {
    result = run();
  } catch (err) {
    serve.onEnd();
    fail(err);
    return;
  }
  if (!smartipc.isThenable(result)) {
    serve.onEnd();
    if (serve.reply !== undefined) replyValue(bridge, serve.reply, result, serve.json, serve.what);
    return;
  }
  const { context, reply } = serve;
  const running: IRunningHandler | undefined =
    reply === undefined
      ? undefined
      : {
          reply,
          owner: serve.owner,
          deadline: serve.budgetMs === undefined ? Infinity : performance.now() + serve.budgetMs,
          abort: (reason) => {
            if (context.isAborted) return;
            serve.onEnd();
            context.abort(reason);
          },
        };
  if (running !== undefined) bridge.serving.track(running);
  result.then(
    (value) => {
      if (context.isAborted) return serve.onLate?.();
      if (running !== undefined) bridge.serving.untrack(running);
      serve.onEnd();
      if (reply !== undefined) replyValue(bridge, reply, value, serve.json, serve.what);
    },
    (err: unknown) => {
      if (context.isAborted) return;
      if (running !== undefined) bridge.serving.untrack(running);
      serve.onEnd();
      fail(err);
    },
  );
}


// ---- the registry on NATS ----------------------------------------------------------------------------

/** What a provider (a NATS client, or an exposure for its hub) lists on `<ns>.svcreg` and `<ns>.svclist`. */
export interface INatsProviderList {
  /** The provider instance (random per client or exposure). */
  src: string;
  kind: 'client' | 'hub';
  /** The NATS client's clientId, or the exposed hub's id. */
  id: string;
  services: smartipc.IServiceInfo[];
  /** The provider left (its services with it). */
  gone?: boolean;
}

function parseList(msg: Msg): INatsProviderList | undefined {
  try {
    const list = JSON.parse(Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength).toString('utf8')) as INatsProviderList;
    if (list === null || typeof list !== 'object' || typeof list.src !== 'string' || !Array.isArray(list.services)) return undefined;
    return list;
  } catch {
    return undefined;
  }
}

/** One `<ns>.svclist` round: every provider's list, gathered until answers stop coming (NATS_SERVICE_LIST_STALL_MS) or at most NATS_SERVICE_LIST_MAX_WAIT_MS. No provider: [] at once. */
export function gatherLists(bridge: NatsBridge): Promise<INatsProviderList[]> {
  if (!bridge.isConnected) return Promise.reject(new smartipc.IpcError('NOT_CONNECTED', 'NATS is not reachable right now'));
  const inbox = bridge.nats.createInbox(bridge.inboxPrefix);
  return new Promise((resolve) => {
    const lists: INatsProviderList[] = [];
    let stall: NodeJS.Timeout | undefined;
    let sub: Subscription | undefined = undefined;
    const done = () => {
      clearTimeout(stall);
      clearTimeout(max);
      sub?.unsubscribe();
      resolve(lists);
    };
    const max = setTimeout(done, NATS_SERVICE_LIST_MAX_WAIT_MS);
    sub = bridge.connection.subscribe(inbox, {
      callback: (err, msg) => {
        if (err || InboundHeaders.of(msg).status === 503) return done();
        const list = parseList(msg);
        if (list !== undefined) lists.push(list);
        clearTimeout(stall);
        stall = setTimeout(done, NATS_SERVICE_LIST_STALL_MS);
      },
    });
    try {
      bridge.publish(bridge.subjects.serviceList, '', undefined, inbox);
    } catch {
      done();
    }
  });
}

/** Provider lists as the registry a user reads: one entry per service, every instance on NATS (those behind an exposed hub name it). */
export function mergeLists(lists: INatsProviderList[]): INatsServiceInfo[] {
  const byName = new Map<string, INatsServiceInfo>();
  for (const list of lists) {
    if (list.gone) continue;
    for (const service of list.services) {
      if (!service || typeof service.name !== 'string' || !Array.isArray(service.instances)) continue;
      let entry = byName.get(service.name);
      if (entry === undefined) {
        entry = { name: service.name, instances: [] };
        byName.set(service.name, entry);
      }
      for (const instance of service.instances) entry.instances.push(list.kind === 'hub' ? { ...instance, hub: list.id } : instance);
    }
  }
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * A provider's side of the registry: answers `<ns>.svclist` while it lists anything, and publishes
 * its list on `<ns>.svcreg` whenever it changed (and `gone` when it closes), so importing hubs and
 * listServices see it.
 */
export class NatsServiceAnnouncer {
  private listSub?: Subscription;
  private announcedNonEmpty = false;

  constructor(
    private readonly bridge: NatsBridge,
    private readonly src: string,
    private readonly kind: 'client' | 'hub',
    private readonly id: string,
    private readonly list: () => smartipc.IServiceInfo[],
  ) {}

  private snapshot(gone = false): string {
    const body: INatsProviderList = { src: this.src, kind: this.kind, id: this.id, services: gone ? [] : this.list(), ...(gone ? { gone: true } : {}) };
    return JSON.stringify(body);
  }

  /** The list changed (or NATS is back): tell the registry. */
  public changed(): void {
    const services = this.list();
    if (services.length > 0 && this.listSub === undefined) {
      this.listSub = this.bridge.connection.subscribe(this.bridge.subjects.serviceList, {
        callback: (err, msg) => {
          if (err || !msg.reply) return;
          try {
            this.bridge.publish(msg.reply, this.snapshot());
          } catch {
            // the lister gets the others
          }
        },
      });
    } else if (services.length === 0 && this.listSub !== undefined) {
      this.listSub.unsubscribe();
      this.listSub = undefined;
    }
    if (services.length === 0 && !this.announcedNonEmpty) return;
    this.announcedNonEmpty = services.length > 0;
    if (!this.bridge.isConnected) return; // announced again after the reconnect
    try {
      this.bridge.publish(this.bridge.subjects.serviceRegistry, services.length > 0 ? this.snapshot() : this.snapshot(true));
    } catch (err) {
      debugNats('service announcement dropped: %s', (err as Error).message);
    }
  }

  /** NATS is back: the registry may have missed announcements. */
  public reannounce(): void {
    if (this.announcedNonEmpty && this.bridge.isConnected) {
      try {
        this.bridge.publish(this.bridge.subjects.serviceRegistry, this.snapshot());
      } catch {
        // a later change announces again
      }
    }
  }

  public close(): void {
    this.listSub?.unsubscribe();
    this.listSub = undefined;
    if (!this.announcedNonEmpty) return;
    this.announcedNonEmpty = false;
    try {
      if (this.bridge.isConnected) this.bridge.publish(this.bridge.subjects.serviceRegistry, this.snapshot(true));
    } catch {
      // importers find out on their next refresh
    }
  }
}

/**
 * What every other provider on NATS lists, kept current: announcements on `<ns>.svcreg` as they
 * come, and one `<ns>.svclist` round at the start, after each reconnect and when asked (a call that
 * found nobody). A provider that died without saying so stays listed until the next round; calls
 * to it fail with SERVICE_NOT_FOUND / METHOD_NOT_FOUND meanwhile, never hang.
 */
export class NatsServiceDirectory {
  private readonly providers = new Map<string, INatsProviderList>();
  private sub?: Subscription;
  private refreshing?: Promise<void>;
  private refreshAgain = false;
  private closed = false;

  constructor(
    private readonly bridge: NatsBridge,
    private readonly ownSrc: string,
    private readonly onChange: () => void,
  ) {}

  public open(): Promise<void> {
    this.sub = this.bridge.connection.subscribe(this.bridge.subjects.serviceRegistry, {
      callback: (err, msg) => {
        if (err || this.closed) return;
        const list = parseList(msg);
        if (list === undefined || list.src === this.ownSrc) return;
        if (list.gone || list.services.length === 0) this.providers.delete(list.src);
        else this.providers.set(list.src, list);
        this.onChange();
      },
    });
    return this.refresh();
  }

  /** Services other providers list: name -> the union of their methods. */
  public remoteServices(): Map<string, Set<string>> {
    const out = new Map<string, Set<string>>();
    for (const list of this.providers.values()) {
      for (const service of list.services) {
        if (!service || typeof service.name !== 'string' || !Array.isArray(service.instances)) continue;
        let methods = out.get(service.name);
        if (methods === undefined) {
          methods = new Set();
          out.set(service.name, methods);
        }
        for (const instance of service.instances) for (const method of instance.methods ?? []) if (typeof method === 'string') methods.add(method);
      }
    }
    return out;
  }

  /** One list round; the registry becomes what it returned (plus announcements that arrive meanwhile). */
  public refresh(): Promise<void> {
    if (this.refreshing) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      do {
        this.refreshAgain = false;
        if (this.closed || !this.bridge.isConnected) break;
        const lists = await gatherLists(this.bridge).catch(() => undefined);
        if (lists === undefined || this.closed) break;
        this.providers.clear();
        for (const list of lists) if (list.src !== this.ownSrc && !list.gone && list.services.length > 0) this.providers.set(list.src, list);
        this.onChange();
      } while (this.refreshAgain);
    })().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  public close(): void {
    this.closed = true;
    this.sub?.unsubscribe();
    this.sub = undefined;
    this.providers.clear();
  }
}

