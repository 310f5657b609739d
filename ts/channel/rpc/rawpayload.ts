import type { IpcError } from '../../smartipc.errors.js';

/**
 * A payload passed on as it arrived: its encoding bits and bytes, never decoded or re-encoded.
 * A hub forwards calls and peer requests this way; a handler that returns one answers with it
 * unchanged.
 */
export class RawPayload {
  constructor(
    /** Encoding bits of the frame it came in (FLAG_ENCODING_MASK | FLAG_HAS_ATTACHMENTS). */
    public readonly flags: number,
    public readonly bytes: Buffer | undefined,
  ) {}
}

const PASS_THROUGH = Symbol('smartipc.passThrough');

/**
 * Marks an IpcError thrown inside a handler as the library's own (a routing refusal, a relayed
 * failure): the caller gets its code, instead of HANDLER_ERROR describing it.
 */
export function passThrough(error: IpcError): IpcError {
  (error as unknown as Record<symbol, boolean>)[PASS_THROUGH] = true;
  return error;
}

export function isPassThrough(value: unknown): value is IpcError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[PASS_THROUGH] === true;
}
