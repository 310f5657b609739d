/**
 * Every code smartipc reports, in one list: the union type is derived from it, so a code cannot be
 * added to one and forgotten in the other. Codes are a stable API; messages are not.
 */
export const IPC_ERROR_CODES = [
  'TIMEOUT',
  'ABORTED',
  'NOT_CONNECTED',
  'CONNECTION_LOST',
  'CLOSED',
  'SERVER_UNAVAILABLE',
  'REGISTER_TIMEOUT',
  'ID_MISMATCH',
  'NO_HANDLER',
  'HANDLER_ERROR',
  'MESSAGE_TOO_LARGE',
  'PROTOCOL_ERROR',
  'ADDRESS_IN_USE',
  'CLIENT_NOT_FOUND',
  'STREAM_CANCELLED',
  'TOO_MANY_STREAMS',
  'TOO_MANY_CLIENTS',
  'AUTH_FAILED',
  'RATE_LIMITED',
  'FORBIDDEN',
  'TLS_ERROR',
  'INVALID_ARGUMENT',
  'SERVICE_NOT_FOUND',
  'METHOD_NOT_FOUND',
  'MAX_DEPTH_EXCEEDED',
  'CIRCUIT_OPEN',
] as const;

/** Every failure smartipc reports carries one of these codes. */
export type TIpcErrorCode = (typeof IPC_ERROR_CODES)[number];

const CODE_SET: ReadonlySet<string> = new Set(IPC_ERROR_CODES);

/** What a remote handler threw, as it crossed the wire. */
export interface IRemoteError {
  name: string;
  message: string;
  code?: string;
}

export interface IIpcErrorOptions {
  cause?: unknown;
  remote?: IRemoteError;
  /** RATE_LIMITED: milliseconds until the caller may try again. */
  retryAfterMs?: number;
}

/**
 * The one error class of the library. `code` says what happened (switch on it, never on the
 * message); `remote` describes what a handler in the other process threw; `retryAfterMs` comes
 * with RATE_LIMITED.
 */
export class IpcError extends Error {
  public readonly code: TIpcErrorCode;
  /** Set when the failure happened in the other process (HANDLER_ERROR and errors relayed from the peer). */
  public readonly remote?: IRemoteError;
  /** RATE_LIMITED: when the caller may try again, in ms. */
  public readonly retryAfterMs?: number;

  constructor(code: TIpcErrorCode, message: string, options: IIpcErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    if (options.remote) this.remote = options.remote;
    if (options.retryAfterMs !== undefined) this.retryAfterMs = options.retryAfterMs;
  }
}

/** True for an IpcError (of `code`, when given). Narrows `unknown` in a catch block. */
export function isIpcError(value: unknown, code?: TIpcErrorCode): value is IpcError {
  return value instanceof IpcError && (code === undefined || value.code === code);
}

export function isIpcErrorCode(value: unknown): value is TIpcErrorCode {
  return typeof value === 'string' && CODE_SET.has(value);
}

/** A bad option or argument: thrown at once, before anything is sent. */
export function invalidArgument(message: string, cause?: unknown): IpcError {
  return new IpcError('INVALID_ARGUMENT', `smartipc: ${message}`, cause === undefined ? {} : { cause });
}

/** Describes anything thrown so it can cross the wire; never throws itself. */
export function toRemoteError(thrown: unknown): IRemoteError {
  if (thrown instanceof Error) {
    const code = (thrown as { code?: unknown }).code;
    return {
      name: thrown.name,
      message: thrown.message,
      ...(typeof code === 'string' ? { code } : {}),
    };
  }
  let message: string;
  try {
    message = typeof thrown === 'string' ? thrown : JSON.stringify(thrown) ?? String(thrown);
  } catch {
    message = String(thrown);
  }
  return { name: 'Error', message };
}

/** Wraps a socket-level error (ECONNRESET, EPIPE...) without losing it. */
export function fromSocketError(err: unknown, context: string): IpcError {
  if (err instanceof IpcError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const detail = err instanceof Error ? err.message : String(err);
  return new IpcError('CONNECTION_LOST', `${context}: ${code ?? detail}`, { cause: err });
}

/**
 * Runs `fn` with stack traces off. For errors made in a timer, a close callback or for a frame
 * from the network: their stacks show library internals only, never the caller, and capturing
 * them (3-5 us each) made 50,000 timeouts due at once hundreds of ms late.
 */
export function withoutStack<T>(fn: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return fn();
  } finally {
    Error.stackTraceLimit = limit;
  }
}
