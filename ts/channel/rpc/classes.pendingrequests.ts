import { IpcError, withoutStack } from '../../smartipc.errors.js';
import { clampDelay } from '../../smartipc.timers.js';
import { systemClock, type IClock, type TClockTimer } from '../clock.js';

export interface IPendingRequest {
  readonly id: number;
  readonly type: string;
  readonly timeoutMs: number;
  /** performance.now() at which it times out; Infinity for a request without a timeout. */
  readonly deadline: number;
  /** performance.now() when it was added (its round trip is measured from here). */
  readonly startedAt: number;
  resolve(value: unknown): void;
  reject(error: IpcError): void;
  settled: boolean;
  signal?: AbortSignal;
  /** Runs once when the entry leaves the table, however it settles (unlinks it from a parent handler's cancellation). */
  cleanup?: () => void;
  /** Resolve with the answer as it arrived (a RawPayload), not decoded: a hub forwarding it. */
  raw?: boolean;
}

/** The caller gave up on a request (abort, timeout): the peer may still be working on it. */
export type TGiveUpListener = (entry: IPendingRequest, reason: IpcError) => void;

/** The requests of one timeout value, in deadline order (= insertion order). */
interface IDeadlineQueue {
  items: IPendingRequest[];
  head: number;
  /** Unsettled entries at or after `head`. */
  live: number;
}

const INITIAL_SLOTS = 1024;

/**
 * Requests awaiting their response.
 *
 * Lookup is a power-of-two slot table indexed by `id & mask`, not a Map: a Map under constant
 * set/delete keeps rehashing, and once an obsolete table is promoted to old space every later
 * table and entry it links to survives the scavenges too (measured: 14 % of a busy client's time
 * in GC). Ids are sequential, so a slot is only taken when a request is older than the table is
 * large; such ids are skipped, and the table doubles when it is half full.
 *
 * Deadlines: one timer for all. Requests are queued per timeout value, so within a queue
 * insertion order is deadline order and expiry only looks at queue heads. The timer is not reset
 * per request: it fires at the earliest deadline it knew of, expires what is due and re-arms.
 */
export class PendingRequests {
  private slots: Array<IPendingRequest | undefined> = new Array(INITIAL_SLOTS).fill(undefined);
  private mask = INITIAL_SLOTS - 1;
  private count = 0;
  private nextId: number;
  private readonly queues = new Map<number, IDeadlineQueue>();
  private timer?: TClockTimer;
  private timerDeadline = Infinity;
  private readonly signals = new WeakMap<AbortSignal, { ids: Set<number>; listener: () => void }>();

  /**
   * @param clock time and timers (tests pass a manual clock)
   * @param firstId the first id `allocateId` returns, 1..0xffffffff (tests start near the wrap-around)
   * @param onGiveUp hears of every request the caller abandoned (so the handler's side can be told)
   */
  constructor(private readonly clock: IClock = systemClock, firstId = 1, private readonly onGiveUp?: TGiveUpListener) {
    this.nextId = firstId - 1;
  }

  public get size(): number {
    return this.count;
  }

  /** A fresh correlation id, never 0 and never one in use. */
  public allocateId(): number {
    if (this.count * 2 >= this.slots.length) this.grow();
    for (;;) {
      this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
      if (this.slots[this.nextId & this.mask] === undefined) return this.nextId;
    }
  }

  /** Registers request `id` (from `allocateId`); the promise settles with its response, TIMEOUT or ABORTED. */
  public add<T>(id: number, type: string, timeoutMs: number, signal?: AbortSignal, cleanup?: () => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      // Infinity: no deadline at all; anything else is clamped to what a timer can wait for.
      const timeout = timeoutMs === Infinity ? Infinity : clampDelay(timeoutMs);
      const now = this.clock.now();
      const entry: IPendingRequest = {
        id,
        type,
        timeoutMs: timeout,
        deadline: now + timeout,
        startedAt: now,
        resolve: resolve as (value: unknown) => void,
        reject,
        settled: false,
      };
      if (cleanup) entry.cleanup = cleanup;
      if (signal) {
        entry.signal = signal;
        this.watch(signal, id);
      }
      this.slots[id & this.mask] = entry;
      this.count++;
      if (timeout === Infinity) return;
      let queue = this.queues.get(timeout);
      if (queue === undefined) {
        queue = { items: [], head: 0, live: 0 };
        this.queues.set(timeout, queue);
      }
      queue.items.push(entry);
      queue.live++;
      if (entry.deadline < this.timerDeadline) this.arm(entry.deadline);
    });
  }

  /** Removes and returns the request, or undefined if it already settled. */
  public take(id: number): IPendingRequest | undefined {
    const slot = id & this.mask;
    const entry = this.slots[slot];
    if (entry === undefined || entry.id !== id) return undefined;
    this.slots[slot] = undefined;
    this.count--;
    entry.settled = true;
    if (entry.signal) this.unwatch(entry.signal, id);
    if (entry.cleanup) entry.cleanup();
    const queue = this.queues.get(entry.timeoutMs);
    if (queue !== undefined) {
      queue.live--;
      this.trim(queue);
    }
    return entry;
  }

  /**
   * One abort listener per signal, however many requests share it (a shared signal over many
   * requests would otherwise trip Node's MaxListenersExceededWarning).
   */
  private watch(signal: AbortSignal, id: number): void {
    let watched = this.signals.get(signal);
    if (watched === undefined) {
      const ids = new Set<number>();
      const listener = () => {
        this.signals.delete(signal);
        for (const pendingId of [...ids]) {
          const entry = this.peek(pendingId);
          if (entry !== undefined) this.giveUp(pendingId, new IpcError('ABORTED', `request "${entry.type}" was aborted`, { cause: signal.reason }));
        }
      };
      watched = { ids, listener };
      this.signals.set(signal, watched);
      signal.addEventListener('abort', listener, { once: true });
    }
    watched.ids.add(id);
  }

  private unwatch(signal: AbortSignal, id: number): void {
    const watched = this.signals.get(signal);
    if (watched === undefined) return;
    watched.ids.delete(id);
    if (watched.ids.size === 0) {
      this.signals.delete(signal);
      signal.removeEventListener('abort', watched.listener);
    }
  }

  /**
   * The caller gives up on request `id` (its signal aborted, a parent handler was cancelled): it
   * rejects with `reason` and the peer is told (onGiveUp). False when it already settled.
   */
  public giveUp(id: number, reason: IpcError): boolean {
    const entry = this.take(id);
    if (!entry) return false;
    entry.reject(reason);
    this.onGiveUp?.(entry, reason);
    return true;
  }

  /** The entry of `id` while it is pending. */
  public peek(id: number): IPendingRequest | undefined {
    const entry = this.slots[id & this.mask];
    return entry !== undefined && entry.id === id ? entry : undefined;
  }

  public has(id: number): boolean {
    return this.slots[id & this.mask]?.id === id;
  }

  /** Rejects every pending request with an error made for it (CONNECTION_LOST on a drop), and stops the timer. */
  public rejectAll(makeError: (entry: IPendingRequest) => IpcError): void {
    const entries = this.slots.filter((entry): entry is IPendingRequest => entry !== undefined);
    entries.sort((a, b) => a.deadline - b.deadline);
    withoutStack(() => {
      for (const entry of entries) {
        this.take(entry.id);
        entry.reject(makeError(entry));
      }
    });
    this.queues.clear();
    this.disarm();
  }

  /** Drops settled entries from the queue head; compacts when settled ones pile up behind a slow request. */
  private trim(queue: IDeadlineQueue): void {
    const items = queue.items;
    while (queue.head < items.length && items[queue.head].settled) queue.head++;
    if (queue.head === items.length) {
      items.length = 0;
      queue.head = 0;
      return;
    }
    const held = items.length - queue.head;
    if (held > 1024 && held > queue.live * 2) {
      queue.items = items.filter((entry, index) => index >= queue.head && !entry.settled);
      queue.head = 0;
    } else if (queue.head > 1024 && queue.head * 2 > items.length) {
      queue.items = items.slice(queue.head);
      queue.head = 0;
    }
  }

  private grow(): void {
    const old = this.slots;
    let size = old.length * 2;
    for (;;) {
      const mask = size - 1;
      const slots: Array<IPendingRequest | undefined> = new Array(size).fill(undefined);
      let collided = false;
      for (const entry of old) {
        if (entry === undefined) continue;
        if (slots[entry.id & mask] !== undefined) {
          collided = true;
          break;
        }
        slots[entry.id & mask] = entry;
      }
      if (!collided) {
        this.slots = slots;
        this.mask = mask;
        return;
      }
      size *= 2;
    }
  }

  /** Stops the timer when nothing is pending (the owner is closing); while busy it stays armed on purpose. */
  public disarmIfIdle(): void {
    if (this.count === 0) {
      this.queues.clear();
      this.disarm();
    }
  }

  private arm(deadline: number): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timerDeadline = deadline;
    this.timer = this.clock.setTimeout(this.expire, clampDelay(Math.ceil(deadline - this.clock.now())));
  }

  private disarm(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDeadline = Infinity;
  }

  private expire = (): void => {
    this.timer = undefined;
    this.timerDeadline = Infinity;
    const now = this.clock.now();
    let next = Infinity;
    const due: IPendingRequest[] = [];
    let queuesDue = 0;
    for (const [timeoutMs, queue] of this.queues) {
      const before = due.length;
      while (queue.head < queue.items.length) {
        const entry = queue.items[queue.head];
        if (entry.settled) {
          queue.head++;
          continue;
        }
        if (entry.deadline > now) {
          if (entry.deadline < next) next = entry.deadline;
          break;
        }
        this.take(entry.id);
        due.push(entry);
      }
      if (due.length > before) queuesDue++;
      this.trim(queue);
      if (queue.live === 0) this.queues.delete(timeoutMs);
    }
    // Each queue is in deadline order; requests of several timeouts due together (a late timer) are merged.
    if (queuesDue > 1) due.sort((a, b) => a.deadline - b.deadline);
    let lastType = '';
    let lastTimeout = -1;
    let message = '';
    withoutStack(() => {
      for (const entry of due) {
        if (entry.type !== lastType || entry.timeoutMs !== lastTimeout) {
          lastType = entry.type;
          lastTimeout = entry.timeoutMs;
          message = `request "${lastType}" timed out after ${lastTimeout} ms`;
        }
        const error = new IpcError('TIMEOUT', message);
        entry.reject(error);
        this.onGiveUp?.(entry, error);
      }
    });
    if (next !== Infinity) this.arm(next);
  };
}
