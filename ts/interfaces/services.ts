import type { IMessageContext } from './events.js';
import type { IRequestOptions } from './options.js';

/**
 * What a service method learns beside its params: the handler context (signal, deadline) plus
 * where the call came from and the chain it belongs to.
 */
export interface ICallContext extends IMessageContext {
  /** The service this method belongs to. */
  readonly service: string;
  readonly method: string;
  /** The clientId of the caller ('server' when the hub itself called). */
  readonly callerId: string;
  /** The id of the first call of the chain; the same for every nested call made on its behalf. */
  readonly root: string;
  /** The services of the chain so far, this one last: `['order', 'user', 'role']`. */
  readonly chain: readonly string[];
  /** The length of the chain: 1 for a call made outside any service method. */
  readonly depth: number;
}

/** A service's methods: `(params, ctx) => result | Promise<result>`. */
export type TServiceMethod = (params: never, context: ICallContext) => unknown;
export type TServiceMethods = Record<string, TServiceMethod>;

export interface IProvideOptions {
  /** Shown in the registry (`getServices()`); not checked. */
  version?: string;
  /** Anything describing this instance, shown in the registry. */
  metadata?: Record<string, unknown>;
}

/** Options of one call: a request's options (timeout, signal, headers, propagate). */
export type ICallOptions = IRequestOptions;

/** One connection providing a service. */
export interface IServiceInstanceInfo {
  /** The providing client's id ('server' for a service the hub provides itself). */
  clientId: string;
  methods: string[];
  version?: string;
  metadata: Record<string, unknown>;
  /** Calls routed to this instance and not yet answered. */
  inFlight: number;
}

/** A service in the hub's registry: every instance providing it. */
export interface IServiceInfo {
  name: string;
  instances: IServiceInstanceInfo[];
}

/**
 * A typed proxy of a service: `api.method(params, opts?)` is `call(service, 'method', params, opts)`
 * with the parameter and result types of `TApi`'s method.
 */
export type TServiceProxy<TApi> = {
  readonly [K in keyof TApi & string]: TApi[K] extends (...args: infer A) => infer R
    ? [] extends A
      ? (params?: A[0], options?: ICallOptions) => Promise<Awaited<R>>
      : (params: A[0], options?: ICallOptions) => Promise<Awaited<R>>
    : never;
};

/** `serviceRegistered` on the hub. */
export interface IServiceRegisteredInfo {
  service: string;
  clientId: string;
  methods: string[];
  version?: string;
  metadata: Record<string, unknown>;
}

/** `serviceUnregistered` on the hub (unprovide, or the connection left). */
export interface IServiceUnregisteredInfo {
  service: string;
  clientId: string;
}

/** `callRouted` on the hub: a call is on its way to an instance. */
export interface ICallRoutedInfo {
  from: string;
  to: string;
  service: string;
  method: string;
  root: string;
  depth: number;
}

/** `callCompleted` on the hub: the answer (or the failure) went back to the caller. */
export interface ICallCompletedInfo {
  from: string;
  to: string;
  service: string;
  method: string;
  ok: boolean;
  /** The failure's code when `ok` is false. */
  code?: string;
  durationMs: number;
}
