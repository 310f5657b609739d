/** Every failure smartipc reports carries one of these codes; they are a stable API. */
export type TIpcErrorCode =
  | 'TIMEOUT'
  | 'ABORTED'
  | 'NOT_CONNECTED'
  | 'CONNECTION_LOST'
  | 'SERVER_UNAVAILABLE'
  | 'REGISTER_TIMEOUT'
  | 'ID_MISMATCH'
  | 'NO_HANDLER'
  | 'HANDLER_ERROR'
  | 'MESSAGE_TOO_LARGE'
  | 'PROTOCOL_ERROR'
  | 'ADDRESS_IN_USE'
  | 'CLIENT_NOT_FOUND'
  | 'STREAM_CANCELLED'
  | 'TOO_MANY_STREAMS'
  | 'TOO_MANY_CLIENTS'
  | 'AUTH_FAILED'
  | 'RATE_LIMITED'
  | 'FORBIDDEN';

export const IPC_ERROR_CODES: readonly TIpcErrorCode[] = [
  'TIMEOUT', 'ABORTED', 'NOT_CONNECTED', 'CONNECTION_LOST', 'SERVER_UNAVAILABLE',
  'REGISTER_TIMEOUT', 'ID_MISMATCH', 'NO_HANDLER', 'HANDLER_ERROR', 'MESSAGE_TOO_LARGE',
  'PROTOCOL_ERROR', 'ADDRESS_IN_USE', 'CLIENT_NOT_FOUND', 'STREAM_CANCELLED',
  'TOO_MANY_STREAMS', 'TOO_MANY_CLIENTS', 'AUTH_FAILED', 'RATE_LIMITED', 'FORBIDDEN',
];

/** What a remote handler threw, as it crossed the wire. */
export interface IRemoteError {
  name: string;
  message: string;
  code?: string;
}

export interface IIpcErrorOptions {
  cause?: unknown;
  remote?: IRemoteError;
}

export class IpcError extends Error {
  public readonly code: TIpcErrorCode;
  /** Set when the failure happened in the other process (HANDLER_ERROR and errors relayed from the peer). */
  public readonly remote?: IRemoteError;

  constructor(code: TIpcErrorCode, message: string, options: IIpcErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    if (options.remote) this.remote = options.remote;
  }
}

export function isIpcError(value: unknown, code?: TIpcErrorCode): value is IpcError {
  return value instanceof IpcError && (code === undefined || value.code === code);
}

export function isIpcErrorCode(value: unknown): value is TIpcErrorCode {
  return typeof value === 'string' && (IPC_ERROR_CODES as readonly string[]).includes(value);
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
