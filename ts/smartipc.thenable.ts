/**
 * Whether a handler answered with a promise (or any thenable) rather than a value: handlers may
 * answer either way, and a synchronous answer is served without a promise.
 */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as PromiseLike<unknown>).then === 'function';
}
