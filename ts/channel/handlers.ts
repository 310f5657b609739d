import { invalidArgument } from '../smartipc.errors.js';

/** Request types that start with this are the library's own (introspection); user handlers cannot take them. */
export const RESERVED_TYPE_PREFIX = '$smartipc.';

/** Checks an onMessage registration: a non-empty type that is not reserved, and a function. */
export function checkHandler(type: unknown, handler: unknown): void {
  if (typeof type !== 'string' || type.length === 0) throw invalidArgument(`a message type must be a non-empty string, got ${JSON.stringify(type)}`);
  if (type.startsWith(RESERVED_TYPE_PREFIX)) throw invalidArgument(`message types starting with "${RESERVED_TYPE_PREFIX}" are reserved for the library, got "${type}"`);
  if (typeof handler !== 'function') throw invalidArgument(`the handler for "${type}" must be a function`);
}

export function isReservedType(type: unknown): boolean {
  return typeof type === 'string' && type.startsWith(RESERVED_TYPE_PREFIX);
}
