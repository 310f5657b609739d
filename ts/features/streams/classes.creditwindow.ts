/**
 * The sender's side of end-to-end flow control: bytes it may still send, granted by the
 * receiver. A sender sends while its credit is positive; the last chunk may overdraw it, which
 * bounds what is in flight by the window plus one chunk.
 */
export class SendCredit {
  private available = 0;
  private waiter?: () => void;

  public get hasCredit(): boolean {
    return this.available > 0;
  }

  public grant(bytes: number): void {
    this.available += bytes;
    if (this.available > 0 && this.waiter) {
      const wake = this.waiter;
      this.waiter = undefined;
      wake();
    }
  }

  public spend(bytes: number): void {
    this.available -= bytes;
  }

  /** Resolves once there is credit. One waiter at a time (a stream sends one chunk at a time). */
  public whenAvailable(): Promise<void> {
    if (this.available > 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }
}

/**
 * The receiver's side: how much it granted and received, and how much more to grant given what
 * its reader has not consumed yet. Credit is granted in batches (a quarter window) to keep
 * credit frames rare, except when the sender would otherwise be stalled.
 */
export class ReceiveWindow {
  private granted = 0;
  private received = 0;

  constructor(public readonly size: number) {}

  /** Counts an arriving chunk; false when the sender had no credit left for it (a protocol breach). */
  public accept(cost: number): boolean {
    if (this.received >= this.granted) return false;
    this.received += cost;
    return true;
  }

  /** Credit to grant now, given the bytes buffered unread; 0 means "not yet". The grant is recorded. */
  public grantFor(bufferedBytes: number): number {
    const inFlight = this.granted - this.received;
    const grant = this.size - bufferedBytes - inFlight;
    if (grant <= 0) return 0;
    if (grant < this.size / 4 && inFlight > 0) return 0;
    this.granted += grant;
    return grant;
  }
}
