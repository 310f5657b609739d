import type { ICallOptions, TServiceProxy } from '../../interfaces/services.js';

/**
 * A typed proxy over `call(method, params, options)`: every property is a method of the service.
 * Not a thenable (`await client.service('x')` must not call a method named "then").
 */
export function serviceProxy<TApi>(call: (method: string, params?: unknown, options?: ICallOptions) => Promise<unknown>): TServiceProxy<TApi> {
  const cache = new Map<string, (params?: unknown, options?: ICallOptions) => Promise<unknown>>();
  return new Proxy({} as TServiceProxy<TApi>, {
    get: (_target, property) => {
      if (typeof property !== 'string' || property === 'then') return undefined;
      let method = cache.get(property);
      if (method === undefined) {
        method = (params?: unknown, options?: ICallOptions) => call(property, params, options);
        cache.set(property, method);
      }
      return method;
    },
  });
}
