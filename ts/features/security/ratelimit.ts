/**
 * A token bucket: `burst` tokens at most, refilled at `perSecond`. Time comes from the caller (the
 * chunk's arrival time, already taken per chunk), so a take costs no clock reading.
 */
export class TokenBucket {
  private tokens: number;
  private updatedAt: number;

  constructor(private readonly perSecond: number, private readonly burst: number, now: number) {
    this.tokens = burst;
    this.updatedAt = now;
  }

  /** Takes one token; returns 0 when it was there, else the ms until one will be. */
  public take(now: number): number {
    if (now > this.updatedAt) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.updatedAt) * this.perSecond) / 1000);
      this.updatedAt = now;
    }
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil(((1 - this.tokens) * 1000) / this.perSecond));
  }
}
