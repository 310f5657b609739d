import { systemClock, type IClock, type TClockTimer } from './clock.js';
import { stalledFor } from '../smartipc.timers.js';

/** What the heartbeat needs from its connection; small so it can be tested without sockets. */
export interface IHeartbeatHost {
  sendPing(): void;
  onHeartbeatTimeout(silentForMs: number): void;
}

export interface IHeartbeatOptions {
  intervalMs: number;
  timeoutMs: number;
  initialGraceMs: number;
}

/**
 * Pings the peer every interval and declares a timeout when nothing at all (frames of any kind)
 * arrived for longer than timeoutMs. Frames only set a flag (the hot path takes no clock reading),
 * so a check dates what it heard to itself: a timeout is never declared early, and at most two
 * checks late. Checking eight times per timeout bounds that to a quarter of the timeout.
 */
/** Checks per timeout: detection comes at most two checks (a quarter of the timeout) late. */
const CHECKS_PER_TIMEOUT = 8;

export class Heartbeat {
  private timer?: TClockTimer;
  private lastHeard = 0;
  private lastPing = 0;
  private startedAt = 0;
  private heard = false;
  private lastTick = 0;
  private tickMs = 0;

  constructor(
    private readonly host: IHeartbeatHost,
    private readonly options: IHeartbeatOptions,
    private readonly clock: IClock = systemClock,
  ) {}

  public start(): void {
    this.stop();
    const now = this.clock.now();
    this.startedAt = now;
    this.lastHeard = now;
    this.lastPing = now;
    this.lastTick = now;
    this.tickMs = Math.max(10, Math.min(this.options.intervalMs, Math.floor(this.options.timeoutMs / CHECKS_PER_TIMEOUT)));
    this.timer = this.clock.setInterval(this.tick, this.tickMs);
  }

  /** Called for every frame received; cheap on purpose (the hot path). */
  public heardFromPeer(): void {
    this.heard = true;
  }

  public stop(): void {
    if (this.timer !== undefined) this.clock.clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick = (): void => {
    const now = this.clock.now();
    if (this.heard) {
      this.heard = false;
      this.lastHeard = now;
    }
    // This process stalled: the peer's silence meanwhile is not its own.
    const stalled = stalledFor(now, this.lastTick, this.tickMs);
    this.lastTick = now;
    if (stalled > 0) this.lastHeard = Math.min(now, this.lastHeard + stalled);
    const silentFor = now - this.lastHeard;
    const inGrace = now - this.startedAt < this.options.initialGraceMs + this.options.timeoutMs;
    if (silentFor > this.options.timeoutMs && !inGrace) {
      this.stop();
      this.host.onHeartbeatTimeout(Math.round(silentFor));
      return;
    }
    if (now - this.lastPing >= this.options.intervalMs) {
      this.lastPing = now;
      this.host.sendPing();
    }
  };
}
