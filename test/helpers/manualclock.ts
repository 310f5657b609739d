// A clock for unit tests of the timer-driven pieces (PendingRequests, Heartbeat): time moves only
// when a test says so, and timers fire exactly at their due time. No real timer is ever started.
import type { IClock, TClockTimer } from '../../ts/internal.js';

interface IManualTimer {
  due: number;
  /** Set for intervals: the period. */
  every?: number;
  fn: () => void;
  /** Creation order, to break ties between timers due at the same time (as Node does). */
  seq: number;
}

export class ManualClock implements IClock {
  private time = 0;
  private seq = 0;
  private readonly timers = new Map<number, IManualTimer>();
  /** The delay of every setTimeout/setInterval call, in call order. */
  public readonly requestedDelays: number[] = [];

  public now(): number {
    return this.time;
  }

  public setTimeout(fn: () => void, ms: number): TClockTimer {
    return this.add(fn, ms, false);
  }

  public clearTimeout(timer: TClockTimer): void {
    this.timers.delete(timer as number);
  }

  public setInterval(fn: () => void, ms: number): TClockTimer {
    return this.add(fn, ms, true);
  }

  public clearInterval(timer: TClockTimer): void {
    this.timers.delete(timer as number);
  }

  /** Timers (timeouts and intervals) started and not yet fired or cleared. */
  public get pendingTimers(): number {
    return this.timers.size;
  }

  /** When the next timer is due, or undefined if none is pending. */
  public get nextDue(): number | undefined {
    return this.earliest(Infinity)?.[1].due;
  }

  /** Moves time forward by `ms`, firing every timer that falls due on time (each sees now() = its due time). */
  public advance(ms: number): void {
    const target = this.time + ms;
    for (;;) {
      const found = this.earliest(target);
      if (!found) break;
      this.time = Math.max(this.time, found[1].due);
      this.fire(...found);
    }
    this.time = target;
  }

  /**
   * The event loop was blocked for `ms`: time jumps first, then every timer that fell due fires
   * late, all seeing the same now(). An interval fires once and resumes its period from now (Node's
   * behaviour after a blocked loop).
   */
  public stall(ms: number): void {
    this.time += ms;
    for (;;) {
      const found = this.earliest(this.time);
      if (!found) break;
      this.fire(...found);
    }
  }

  private add(fn: () => void, ms: number, repeat: boolean): number {
    const delay = Number.isFinite(ms) && ms > 0 ? ms : repeat ? 1 : 0;
    this.requestedDelays.push(ms);
    const handle = ++this.seq;
    this.timers.set(handle, { due: this.time + delay, every: repeat ? Math.max(1, delay) : undefined, fn, seq: handle });
    return handle;
  }

  private earliest(limit: number): [number, IManualTimer] | undefined {
    let best: [number, IManualTimer] | undefined;
    for (const entry of this.timers) {
      const timer = entry[1];
      if (timer.due > limit) continue;
      if (!best || timer.due < best[1].due || (timer.due === best[1].due && timer.seq < best[1].seq)) best = entry;
    }
    return best;
  }

  private fire(handle: number, timer: IManualTimer): void {
    if (timer.every !== undefined) {
      // on time: the next period; late (stall): a full period from now
      timer.due = (this.time > timer.due ? this.time : timer.due) + timer.every;
      timer.seq = ++this.seq;
    } else {
      this.timers.delete(handle);
    }
    timer.fn();
  }
}

/** Lets queued promise reactions (rejections of settled requests) run. */
export function flushMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
