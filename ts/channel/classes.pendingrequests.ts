import { IpcError } from '../smartipc.errors.js';
import { MAX_TIMER_DELAY_MS } from '../smartipc.defaults.js';

export interface IPendingRequest {
  readonly id: number;
  readonly type: string;
  readonly timeoutMs: number;
  readonly deadline: number;
  resolve(value: unknown): void;
  reject(error: IpcError): void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/**
 * Requests awaiting their response. One timer serves all deadlines: requests are grouped by
 * timeout value, and within a group insertion order is deadline order, so expiry only ever looks
 * at the front of each group. Adding, settling and expiring are O(1) (per distinct timeout).
 */
export class PendingRequests {
  private readonly byId = new Map<number, IPendingRequest>();
  private readonly groups = new Map<number, Map<number, IPendingRequest>>();
  private nextId = 1;
  private timer?: NodeJS.Timeout;
  private timerDeadline = Infinity;

  public get size(): number {
    return this.byId.size;
  }

  /** A fresh correlation id, never 0 and never one in use. */
  public allocateId(): number {
    do {
      this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    } while (this.byId.has(this.nextId));
    return this.nextId;
  }

  public add<T>(id: number, type: string, timeoutMs: number, signal?: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const clamped = Math.min(Math.max(timeoutMs, 0), MAX_TIMER_DELAY_MS);
      const entry: IPendingRequest = {
        id,
        type,
        timeoutMs: clamped,
        deadline: performance.now() + clamped,
        resolve: resolve as (value: unknown) => void,
        reject,
      };
      if (signal) {
        entry.signal = signal;
        entry.onAbort = () => {
          if (this.take(id)) reject(new IpcError('ABORTED', `request "${type}" was aborted`, { cause: signal.reason }));
        };
        signal.addEventListener('abort', entry.onAbort, { once: true });
      }
      this.byId.set(id, entry);
      let group = this.groups.get(clamped);
      if (!group) {
        group = new Map();
        this.groups.set(clamped, group);
      }
      group.set(id, entry);
      if (entry.deadline < this.timerDeadline) this.arm(entry.deadline);
    });
  }

  /** Removes and returns the request, or undefined if it already settled. */
  public take(id: number): IPendingRequest | undefined {
    const entry = this.byId.get(id);
    if (!entry) return undefined;
    this.byId.delete(id);
    this.groups.get(entry.timeoutMs)?.delete(id);
    if (entry.onAbort) entry.signal!.removeEventListener('abort', entry.onAbort);
    if (this.byId.size === 0) this.disarm();
    return entry;
  }

  public has(id: number): boolean {
    return this.byId.has(id);
  }

  /** Rejects every pending request with an error made for it (CONNECTION_LOST on a drop). */
  public rejectAll(makeError: (entry: IPendingRequest) => IpcError): void {
    const entries = [...this.byId.values()];
    for (const entry of entries) {
      this.take(entry.id);
      entry.reject(makeError(entry));
    }
  }

  private arm(deadline: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timerDeadline = deadline;
    this.timer = setTimeout(this.expire, Math.max(0, Math.ceil(deadline - performance.now())));
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDeadline = Infinity;
  }

  private expire = (): void => {
    this.timer = undefined;
    this.timerDeadline = Infinity;
    const now = performance.now();
    let next = Infinity;
    for (const [timeoutMs, group] of this.groups) {
      for (const entry of group.values()) {
        if (entry.deadline > now) {
          if (entry.deadline < next) next = entry.deadline;
          break;
        }
        this.take(entry.id);
        entry.reject(new IpcError('TIMEOUT', `request "${entry.type}" timed out after ${entry.timeoutMs} ms`));
      }
      if (group.size === 0) this.groups.delete(timeoutMs);
    }
    if (next !== Infinity && this.byId.size > 0) this.arm(next);
  };
}
