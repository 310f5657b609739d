// What a bridge to another messaging system (the ./nats subpath) needs from a local server: run
// its handlers and services for remote callers, and join its pub/sub. Internal: not exported from
// the package root.
import type { Readable } from 'node:stream';
import { IpcError } from '../smartipc.errors.js';
import type { TSerialization } from '../interfaces/wire.js';
import type { TMessageHandler } from '../interfaces/events.js';
import type { IStreamInfo } from '../interfaces/streams.js';
import type { IServiceInfo } from '../interfaces/services.js';
import { HandlerContext, handlerContextStorage } from '../channel/rpc/classes.handlercontext.js';
import { passThrough } from '../channel/rpc/rawpayload.js';
import { decodeEncoded, encodePayload, type IEncodedPayload } from '../channel/serializer.js';
import { isReservedType } from '../channel/handlers.js';
import { CallContext } from '../features/services/callchain.js';
import type { PubSubBroker } from '../features/pubsub/classes.broker.js';
import type { HubServices } from '../features/services/classes.hubservices.js';

/** A handler invocation from beyond the hub. */
export interface IBridgeInvocation {
  type: string;
  /** The remote caller's id (the handler's peerId). */
  peerId: string;
  isRequest: boolean;
  headers?: Record<string, unknown>;
  /** Epoch ms at which the caller gives up. */
  deadline?: number;
  /** Aborts when the caller goes away (its budget ran out, the bridge closed). */
  signal?: AbortSignal;
}

/** A service call from beyond the hub, with the chain it belongs to. */
export interface IBridgeCall extends Omit<IBridgeInvocation, 'type' | 'isRequest'> {
  service: string;
  method: string;
  root?: string;
  /** The chain before this call (the callee is appended). */
  chain?: string[];
}

export interface IBridgeHooks {
  readonly id: string;
  readonly serialization: TSerialization;
  /** The message types with a handler (reserved ones left out). */
  getHandlerTypes(): string[];
  /** `listener` runs whenever a handler is added or removed; returns the unsubscribe. */
  onHandlersChanged(listener: () => void): () => void;
  /** Runs the handler of `invocation.type` with a handler context; throws NO_HANDLER (pass-through) when there is none. */
  invoke(data: unknown, invocation: IBridgeInvocation): unknown;
  /** Every local publish (from a local client or the server) as it was encoded; returns the unsubscribe. */
  tapPublishes(listener: (topic: string, encoded: IEncodedPayload, from: string) => void): () => void;
  /** Publishes into the local broker as `from`; not seen by the tap. */
  publishLocal(topic: string, data: unknown, from: string): void;
  /** Decodes a tapped payload (for a listener that needs the data, not the bytes). */
  decode(encoded: IEncodedPayload): unknown;
  /** Hands a stream from beyond to the server's `stream` listeners; resolves once it was read to its end. */
  deliverStream(info: IStreamInfo, readable: Readable): Promise<void>;
  getServices(): IServiceInfo[];
  /** `listener` runs whenever a service instance comes or goes; returns the unsubscribe. */
  onServicesChanged(listener: () => void): () => void;
  /** Calls a service of this hub (its own or a client's) on behalf of a remote caller. */
  callService(params: unknown, call: IBridgeCall): Promise<unknown>;
}

export interface IBridgeHookSources {
  id: string;
  serialization: TSerialization;
  handlers: Map<string, TMessageHandler>;
  handlerListeners: Set<() => void>;
  serviceListeners: Set<() => void>;
  pubsub: PubSubBroker;
  services: HubServices;
  requestTimeoutMs: number;
  emitStream(info: IStreamInfo, readable: Readable): boolean;
}

function contextOf<T extends HandlerContext>(context: T, invocation: Omit<IBridgeInvocation, 'type' | 'isRequest'>): T {
  if (invocation.headers !== undefined) context.headers = invocation.headers;
  if (invocation.deadline !== undefined) context.deadline = invocation.deadline;
  const signal = invocation.signal;
  if (signal !== undefined) {
    const abort = () => context.abort(signal.reason instanceof IpcError ? signal.reason : new IpcError('ABORTED', 'the remote caller went away', { cause: signal.reason }));
    if (signal.aborted) abort();
    else signal.addEventListener('abort', abort, { once: true });
  }
  return context;
}

export function createBridgeHooks(sources: IBridgeHookSources): IBridgeHooks {
  const json = sources.serialization === 'json';
  return {
    id: sources.id,
    serialization: sources.serialization,
    getHandlerTypes: () => [...sources.handlers.keys()].filter((type) => !isReservedType(type)),
    onHandlersChanged: (listener) => {
      sources.handlerListeners.add(listener);
      return () => sources.handlerListeners.delete(listener);
    },
    invoke: (data, invocation) => {
      const handler = sources.handlers.get(invocation.type);
      if (handler === undefined || isReservedType(invocation.type)) throw passThrough(new IpcError('NO_HANDLER', `no handler for "${invocation.type}" on server "${sources.id}"`));
      const context = contextOf(new HandlerContext(invocation.type, invocation.isRequest, invocation.peerId), invocation);
      return handlerContextStorage.run(context, handler, data, invocation.peerId, context);
    },
    tapPublishes: (listener) => {
      sources.pubsub.setTap(listener);
      return () => sources.pubsub.setTap(undefined);
    },
    publishLocal: (topic, data, from) => {
      sources.pubsub.publishFrom(topic, encodePayload(data, sources.serialization, `publish to "${topic}"`), from);
    },
    decode: (encoded) => decodeEncoded(json, encoded),
    deliverStream: (info, readable) =>
      new Promise<void>((resolve, reject) => {
        if (!sources.emitStream(info, readable)) {
          reject(new IpcError('NO_HANDLER', `server "${sources.id}" has no 'stream' listener`));
          return;
        }
        readable.once('end', () => resolve());
        readable.once('error', reject);
        readable.once('close', () => resolve());
      }),
    getServices: () => sources.services.getServices(),
    onServicesChanged: (listener) => {
      sources.serviceListeners.add(listener);
      return () => sources.serviceListeners.delete(listener);
    },
    callService: (params, call) => {
      // Run inside a context carrying the remote chain, so the hub's call extends it (and inherits the deadline and signal).
      const chain = call.chain ?? [];
      if (chain.length === 0) {
        return sources.services.call(call.service, call.method, params, { headers: call.headers, ...(call.deadline !== undefined ? { timeout: Math.max(0, call.deadline - Date.now()) } : {}), ...(call.signal ? { signal: call.signal } : {}) }, sources.requestTimeoutMs);
      }
      const outer = contextOf(new CallContext(chain.at(-1)!, '(remote)', call.peerId, call.root ?? `${call.peerId}:${Date.now()}`, chain, true), call);
      return handlerContextStorage.run(outer, () => sources.services.call(call.service, call.method, params, { headers: call.headers }, sources.requestTimeoutMs));
    },
  };
}
