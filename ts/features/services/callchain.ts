// The call chain: which calls a call is made on behalf of. It travels in the Call frame's type
// (service, method, caller, root, chain); the hub reads it (depth guard) and passes it on.
import * as plugins from '../../plugins.js';
import { invalidArgument } from '../../smartipc.errors.js';
import { HandlerContext, currentHandlerContext } from '../../channel/rpc/classes.handlercontext.js';
import type { ICallContext } from '../../interfaces/services.js';

/** Separates service and method (and clientId and type) in a frame type: never valid in a name. */
export const NAME_SEPARATOR = '\u0000';
/** Longest service or method name, in UTF-16 units. */
export const MAX_NAME_LENGTH = 256;

export interface ICallChainHeader {
  root: string;
  chain: string[];
}

/**
 * Everything the hub routes a call by, in the Call frame's type (no JSON to parse or write per
 * hop): `service` U+0000 `method` U+0000 `callerId` U+0000 `root` U+0000 `chain[0]` ... The caller
 * leaves callerId empty; the hub writes the caller's real clientId before passing it on.
 */
export interface ICallAddress extends ICallChainHeader {
  service: string;
  method: string;
  callerId: string;
}

export function encodeCall(address: ICallAddress): string {
  let type = address.service + NAME_SEPARATOR + address.method + NAME_SEPARATOR + address.callerId + NAME_SEPARATOR + address.root;
  for (const name of address.chain) type += NAME_SEPARATOR + name;
  return type;
}

/** The Call type with its callerId segment replaced (the hub writes the real caller in). */
export function withCallerId(type: string, callerId: string): string {
  const second = type.indexOf(NAME_SEPARATOR, type.indexOf(NAME_SEPARATOR) + 1);
  const third = type.indexOf(NAME_SEPARATOR, second + 1);
  return type.slice(0, second + 1) + callerId + type.slice(third);
}

/** The address of a Call frame's type, or undefined when it is malformed. */
export function decodeCall(type: string): ICallAddress | undefined {
  const parts = type.split(NAME_SEPARATOR);
  if (parts.length < 5 || parts[0].length === 0 || parts[1].length === 0 || parts[3].length === 0) return undefined;
  return { service: parts[0], method: parts[1], callerId: parts[2], root: parts[3], chain: parts.slice(4) };
}

/** `service.method`: how a call is named in permissions, latency and traces. */
export function callLabel(type: string): string {
  const first = type.indexOf(NAME_SEPARATOR);
  if (first < 0) return type;
  const second = type.indexOf(NAME_SEPARATOR, first + 1);
  return `${type.slice(0, first)}.${second < 0 ? type.slice(first + 1) : type.slice(first + 1, second)}`;
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
  return { root: newRootId(), chain: [service] };
}

// A root id only has to be unique among the calls in flight: a random prefix per process and a counter.
const ROOT_PREFIX = plugins.crypto.randomBytes(8).toString('base64url');
let rootCounter = 0;

function newRootId(): string {
  rootCounter = rootCounter >= Number.MAX_SAFE_INTEGER ? 1 : rootCounter + 1;
  return ROOT_PREFIX + rootCounter.toString(36);
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
