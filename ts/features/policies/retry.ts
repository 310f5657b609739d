import { IpcError, invalidArgument, type TIpcErrorCode } from '../../smartipc.errors.js';
import { BACKOFF_JITTER_FRACTION, DEFAULT_RETRY } from '../../smartipc.defaults.js';
import type { IRetryOptions } from '../../interfaces/observability.js';
import type { IRequestOptions } from '../../interfaces/options.js';
import { count, durationMs } from '../../smartipc.options.js';

/** Request options with the opt-in failure policies. */
export interface IPolicyRequestOptions extends IRequestOptions {
  /** Retry transient failures: only together with `idempotent: true`. */
  retry?: IRetryOptions;
  /** The caller's promise that repeating this request is harmless: required for `retry`. */
  idempotent?: boolean;
}

interface IResolvedRetry {
  attempts: number;
  initialDelay: number;
  maxDelay: number;
  on: ReadonlySet<TIpcErrorCode>;
}

export function resolveRetry(options: IPolicyRequestOptions): IResolvedRetry | undefined {
  const retry = options.retry;
  if (retry === undefined) return undefined;
  if (options.idempotent !== true) throw invalidArgument('retry needs idempotent: true (only the caller knows that repeating a request is harmless)');
  if (retry === null || typeof retry !== 'object') throw invalidArgument('retry must be an object: { attempts, initialDelay?, maxDelay?, on? }');
  const on = retry.on ?? DEFAULT_RETRY.on;
  if (!Array.isArray(on)) throw invalidArgument('retry.on must be an array of error codes');
  return {
    attempts: count('retry.attempts', retry.attempts, 1),
    initialDelay: durationMs('retry.initialDelay', retry.initialDelay, DEFAULT_RETRY.initialDelay, { allowInfinity: false }),
    maxDelay: durationMs('retry.maxDelay', retry.maxDelay, DEFAULT_RETRY.maxDelay, { allowInfinity: false }),
    on: new Set(on),
  };
}

/**
 * Runs `attempt(timeoutMs)` until it succeeds, fails with a code not in `on`, runs out of attempts,
 * or the one overall timeout is spent: every attempt gets what is left of it, and the waits
 * between attempts (exponential, with jitter) never run past it.
 */
export async function withRetry<T>(retry: IResolvedRetry, timeoutMs: number, signal: AbortSignal | undefined, attempt: (timeoutMs: number) => Promise<T>, random: () => number = Math.random): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (let n = 1; ; n++) {
    const left = deadline - performance.now();
    try {
      return await attempt(timeoutMs === Infinity ? Infinity : Math.max(0, left));
    } catch (err) {
      const error = err as IpcError;
      const remaining = deadline - performance.now();
      if (n >= retry.attempts || !(error instanceof IpcError) || !retry.on.has(error.code) || remaining <= 0 || signal?.aborted) throw error;
      const base = Math.min(retry.maxDelay, retry.initialDelay * 2 ** Math.min(n - 1, 30));
      // Jitter first, then the caps: never past maxDelay, never past the one timeout.
      const delay = Math.min(remaining, retry.maxDelay, Math.max(0, base * (1 + BACKOFF_JITTER_FRACTION * (random() * 2 - 1))));
      await sleep(delay, signal);
      if (signal?.aborted) throw new IpcError('ABORTED', 'aborted while waiting to retry', { cause: signal.reason });
    }
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * A request or call with its `retry` option (if any): `call(options)` runs once per attempt with
 * the timeout of that attempt. Without `retry` it is just `call(options)`.
 */
export function callWithRetry<T>(options: IPolicyRequestOptions | undefined, defaultTimeoutMs: number, call: (options: IPolicyRequestOptions | undefined) => Promise<T>): Promise<T> {
  if (options?.retry === undefined) return call(options);
  let retry: IResolvedRetry | undefined;
  try {
    retry = resolveRetry(options);
  } catch (err) {
    return Promise.reject(err);
  }
  return withRetry(retry!, options.timeout ?? defaultTimeoutMs, options.signal, (timeoutMs) => call({ ...options, timeout: timeoutMs }));
}
