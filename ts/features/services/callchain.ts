// The call chain: which calls a call is made on behalf of. It travels in one reserved header
// beside the user's headers; the hub reads it (depth guard) and passes it on.
import * as plugins from '../../plugins.js';
import { invalidArgument } from '../../smartipc.errors.js';
import { HandlerContext, currentHandlerContext } from '../../channel/rpc/classes.handlercontext.js';
import type { ICallContext } from '../../interfaces/services.js';

/** The reserved header that carries `{ root, chain }`; user headers never see it. */
export const CALL_HEADER = '$call';
/** Separates service and method (and clientId and type) in a frame type: never valid in a name. */
export const NAME_SEPARATOR = '\u0000';
/** Longest service or method name, in UTF-16 units. */
export const MAX_NAME_LENGTH = 256;

export interface ICallChainHeader {
  root: string;
  chain: string[];
}

/** The context of a running service method. */
export class CallContext extends HandlerContext implements ICallContext {
  public readonly depth: number;

  constructor(
    public readonly service: string,
    public readonly method: string,
    public readonly callerId: string,
    public readonly root: string,
    public readonly chain: readonly string[],
    isRequest: boolean,
  ) {
    super(`${service}.${method}`, isRequest, callerId);
    this.depth = chain.length;
  }
}

/** The chain a call to `service` made now carries: the running method's chain extended, or a new one. */
export function nextChain(service: string): ICallChainHeader {
  const current = currentHandlerContext();
  if (current instanceof CallContext) return { root: current.root, chain: [...current.chain, service] };
  return { root: plugins.crypto.randomUUID(), chain: [service] };
}

/** Reads (and removes) the chain header of an arriving call; undefined when it is missing or malformed. */
export function takeChain(headers: Record<string, unknown> | undefined): ICallChainHeader | undefined {
  if (headers === undefined) return undefined;
  const value = headers[CALL_HEADER] as Partial<ICallChainHeader> | undefined;
  delete headers[CALL_HEADER];
  if (value === null || typeof value !== 'object' || typeof value.root !== 'string' || !Array.isArray(value.chain)) return undefined;
  if (!value.chain.every((entry) => typeof entry === 'string')) return undefined;
  return { root: value.root, chain: value.chain as string[] };
}

/** Why a service or method name is not usable, or undefined. */
export function describeInvalidName(kind: 'service' | 'method' | 'clientId', name: unknown): string | undefined {
  if (typeof name !== 'string' || name.length === 0) return `a ${kind} name must be a non-empty string, got ${JSON.stringify(name)}`;
  if (name.length > MAX_NAME_LENGTH) return `a ${kind} name must be at most ${MAX_NAME_LENGTH} characters, got ${name.length}`;
  if (name.includes(NAME_SEPARATOR)) return `a ${kind} name must not contain U+0000`;
  return undefined;
}

export function assertValidName(kind: 'service' | 'method' | 'clientId', name: unknown): asserts name is string {
  const problem = describeInvalidName(kind, name);
  if (problem !== undefined) throw invalidArgument(problem);
}

/** `service` U+0000 `method` (a Call frame's type), split back. */
export function joinNames(first: string, second: string): string {
  return first + NAME_SEPARATOR + second;
}

export function splitNames(type: string): [string, string] | undefined {
  const at = type.indexOf(NAME_SEPARATOR);
  if (at <= 0 || at === type.length - 1) return undefined;
  return [type.slice(0, at), type.slice(at + 1)];
}
