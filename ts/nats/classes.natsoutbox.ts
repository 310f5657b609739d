import { smartipc, type MsgHdrs } from './nats.plugins.js';
import type { TNatsPayload } from './nats.codec.js';

/** One send that waits while NATS is unreachable. */
export interface INatsOutboxEntry {
  subject: string;
  payload: TNatsPayload;
  /** Bytes counted against the outbox bound (payload and headers). */
  bytes: number;
  /** Built when sent: requests carry their remaining budget, which is only known then. */
  headers: () => MsgHdrs | undefined;
  reply?: string;
  /** Requests: the pending id; a request that timed out or was aborted meanwhile is not sent. */
  requestId?: number;
  /** Service calls: the service (after a reconnect the outbox waits for its providers too). */
  service?: string;
  /** Messages and publishes settle when sent (or fail). Requests settle through their pending entry. */
  resolve?: () => void;
  reject?: (error: smartipc.IpcError) => void;
}

/**
 * What a client (or an exposure) sent while its NATS connection was down, in order, bounded by
 * count and bytes like a local client's reconnect outbox: past the bound a send rejects with
 * NOT_CONNECTED at once. NATS itself drops what is published while disconnected.
 */
export class NatsOutbox {
  private entries: INatsOutboxEntry[] = [];
  private bytes = 0;

  constructor(private readonly maxMessages: number, private readonly maxBytes: number) {}

  public get size(): number {
    return this.entries.length;
  }

  public push(entry: INatsOutboxEntry): void {
    if (this.entries.length >= this.maxMessages || this.bytes + entry.bytes > this.maxBytes) {
      throw new smartipc.IpcError(
        'NOT_CONNECTED',
        `not connected to NATS, and the outbox is full (${this.entries.length} messages, ${this.bytes} bytes; bounds ${this.maxMessages} / ${this.maxBytes})`,
      );
    }
    this.entries.push(entry);
    this.bytes += entry.bytes;
  }

  /** What waits, in order (not taken). */
  public get waiting(): readonly INatsOutboxEntry[] {
    return this.entries;
  }

  public takeAll(): INatsOutboxEntry[] {
    const entries = this.entries;
    this.entries = [];
    this.bytes = 0;
    return entries;
  }
}
