import * as plugins from '../../plugins.js';
import type { IpcError } from '../../smartipc.errors.js';
import type { IMessageContext } from '../../interfaces/events.js';

/**
 * What a handler learns beside the data, and the thread its nested calls follow. Cheap on purpose
 * (one per request or message): the AbortController behind `signal` (about 2.5 us to make) is
 * created only when a handler reads `signal`; cancellation reaches nested calls through plain
 * callbacks.
 */
export class HandlerContext implements IMessageContext {
  public headers?: Record<string, unknown>;
  /** Wall-clock ms at which the caller gives up; undefined for messages and requests without a timeout. */
  public deadline?: number;
  /** @internal performance.now() when the handler started (its latency). */
  public startedAt = 0;
  /** @internal A message's decoded data, kept for its dead letter if the handler fails. */
  public data?: unknown;
  private controller?: AbortController;
  private abortReason?: IpcError;
  private finished = false;
  private onAbortCallbacks?: Set<(reason: IpcError) => void>;

  constructor(
    public readonly type: string,
    public readonly isRequest: boolean,
    /** The sender: its clientId on a server, the server's id on a client. */
    public readonly peerId: string,
  ) {}

  /** Aborts when the caller aborts, its timeout expires or its connection drops; `reason` is the IpcError. */
  public get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.abortReason !== undefined) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  /** Milliseconds until `deadline`, never negative; Infinity without a deadline. */
  public remainingMs(): number {
    if (this.deadline === undefined) return Infinity;
    const left = this.deadline - Date.now();
    return left > 0 ? left : 0;
  }

  public get isAborted(): boolean {
    return this.abortReason !== undefined;
  }

  public get reason(): IpcError | undefined {
    return this.abortReason;
  }

  /** The handler settled: work it started later (a timer, a socket) is no longer on its behalf. */
  public finish(): void {
    this.finished = true;
    if (this.abortReason === undefined) this.onAbortCallbacks = undefined;
  }

  public get isFinished(): boolean {
    return this.finished;
  }

  /** Called once by the library: the caller is gone. */
  public abort(reason: IpcError): void {
    if (this.abortReason !== undefined) return;
    this.abortReason = reason;
    this.controller?.abort(reason);
    const callbacks = this.onAbortCallbacks;
    this.onAbortCallbacks = undefined;
    if (callbacks) for (const callback of callbacks) callback(reason);
  }

  /** Registers a nested call's cancellation; returns the function that unregisters it. */
  public onAbort(callback: (reason: IpcError) => void): () => void {
    if (this.abortReason !== undefined) {
      callback(this.abortReason);
      return noop;
    }
    (this.onAbortCallbacks ??= new Set()).add(callback);
    return () => this.onAbortCallbacks?.delete(callback);
  }
}

function noop(): void {}

/** The context of the handler whose code is running: nested requests and calls read it. Holds no payloads. */
export const handlerContextStorage = new plugins.asyncHooks.AsyncLocalStorage<HandlerContext>();

/**
 * The running handler's context, if any. A context stays in the async scope of everything its
 * handler started (timers too), so one whose handler has settled no longer counts.
 */
export function currentHandlerContext(): HandlerContext | undefined {
  const context = handlerContextStorage.getStore();
  // A cancelled one still counts: what it started is cancelled with it.
  return context === undefined || (context.isFinished && !context.isAborted) ? undefined : context;
}
