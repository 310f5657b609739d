/**
 * The handlers a bridge runs for NATS callers, while they run: aborted when the caller's budget
 * runs out (no clock sync: the budget arrived as "ms left", the deadline is this host's clock now
 * plus that), when the caller gives up (a message on `<ns>.cancel` naming the request's reply
 * subject), when NATS drops, or when their exposure or client closes. Only handlers still running
 * after they returned (a promise) are tracked: a synchronous answer costs nothing here.
 *
 * Deadlines are kept in buckets of NATS_DEADLINE_GRANULARITY_MS with one timer for all, so a
 * handler is aborted at most that much after its deadline and never before.
 */
import { smartipc } from './nats.plugins.js';
import { NATS_DEADLINE_GRANULARITY_MS } from './nats.constants.js';

/** One handler serving a NATS caller. */
export interface IRunningHandler {
  /** The reply subject of the request or call (what a cancel names). */
  readonly reply: string;
  /** The exposure or client that runs it. */
  readonly owner: object;
  /** performance.now() at which the caller gives up; Infinity: never. */
  readonly deadline: number;
  abort(reason: smartipc.IpcError): void;
}

/**
 * The part of an AbortSignal that `bridgeHooks().invoke` uses (it subscribes to 'abort' and reads
 * `aborted` / `reason`): a real AbortController costs ~3 us per request, this a few ns. Handed only
 * to invoke, never to user code (the handler's own `context.signal` is a real AbortSignal).
 */
export class LiteSignal {
  public aborted = false;
  public reason: unknown = undefined;
  private listener?: () => void;

  public addEventListener(_type: 'abort', listener: () => void): void {
    this.listener = listener;
  }

  public removeEventListener(): void {
    this.listener = undefined;
  }

  public abort(reason: smartipc.IpcError): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const listener = this.listener;
    this.listener = undefined;
    listener?.();
  }

  /** As a handler context has it (serveReply). */
  public get isAborted(): boolean {
    return this.aborted;
  }

  public asSignal(): AbortSignal {
    return this as unknown as AbortSignal;
  }
}

export class NatsServing {
  private readonly byReply = new Map<string, IRunningHandler>();
  private readonly buckets = new Map<number, Set<IRunningHandler>>();
  private timer?: NodeJS.Timeout;
  private timerAt = Infinity;

  public get size(): number {
    return this.byReply.size;
  }

  public track(entry: IRunningHandler): void {
    this.byReply.set(entry.reply, entry);
    if (entry.deadline === Infinity) return;
    const bucket = Math.ceil(entry.deadline / NATS_DEADLINE_GRANULARITY_MS) * NATS_DEADLINE_GRANULARITY_MS;
    let set = this.buckets.get(bucket);
    if (set === undefined) {
      set = new Set();
      this.buckets.set(bucket, set);
    }
    set.add(entry);
    if (bucket < this.timerAt) this.arm(bucket);
  }

  public untrack(entry: IRunningHandler): void {
    if (this.byReply.get(entry.reply) === entry) this.byReply.delete(entry.reply);
    if (entry.deadline === Infinity) return;
    const bucket = Math.ceil(entry.deadline / NATS_DEADLINE_GRANULARITY_MS) * NATS_DEADLINE_GRANULARITY_MS;
    const set = this.buckets.get(bucket);
    if (set === undefined) return;
    set.delete(entry);
    if (set.size === 0) this.buckets.delete(bucket);
  }

  /** A caller gave up on the request with this reply subject. */
  public cancel(reply: string, reason: smartipc.IpcError): void {
    const entry = this.byReply.get(reply);
    if (entry === undefined) return;
    this.untrack(entry);
    entry.abort(reason);
  }

  /** Aborts what `owner` runs (every handler when owner is undefined). */
  public abortAll(reason: smartipc.IpcError, owner?: object): void {
    for (const entry of [...this.byReply.values()]) {
      if (owner !== undefined && entry.owner !== owner) continue;
      this.untrack(entry);
      entry.abort(reason);
    }
  }

  public stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  private arm(at: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(this.expire, Math.max(0, Math.ceil(at - performance.now())));
    this.timer.unref();
  }

  private readonly expire = (): void => {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    const due: IRunningHandler[] = [];
    for (const [bucket, set] of this.buckets) {
      if (bucket > now) {
        if (bucket < next) next = bucket;
        continue;
      }
      for (const entry of set) due.push(entry);
      this.buckets.delete(bucket);
    }
    for (const entry of due) {
      if (this.byReply.get(entry.reply) === entry) this.byReply.delete(entry.reply);
      entry.abort(new smartipc.IpcError('TIMEOUT', `the caller's budget ran out (${Math.round(now - entry.deadline)} ms ago)`));
    }
    if (next !== Infinity) this.arm(next);
  };
}
