import { IpcError } from '../smartipc.errors.js';
import type { EFrameKind } from '../interfaces/wire.js';
import type { IEncodedPayload } from './serializer.js';
import { payloadSize } from './serializer.js';

export interface IOutboxEntry {
  kind: EFrameKind;
  id: number;
  type: string;
  encoded: IEncodedPayload;
  headers?: Record<string, unknown>;
  /** A request's pending id: it settles through its pending entry (and is skipped if that already settled). */
  pendingId?: number;
  /** Fire-and-forget messages settle when written; requests settle through their pending entry. */
  resolve?: () => void;
  reject?: (error: IpcError) => void;
}

/** What was sent while reconnecting, in order, bounded by count and bytes. */
export class Outbox {
  private entries: IOutboxEntry[] = [];
  private bytes = 0;

  constructor(private readonly maxMessages: number, private readonly maxBytes: number) {}

  public get size(): number {
    return this.entries.length;
  }

  /** Queues an entry, or throws NOT_CONNECTED when the bound is reached. */
  public push(entry: IOutboxEntry): void {
    const size = payloadSize(entry.encoded);
    if (this.entries.length >= this.maxMessages || this.bytes + size > this.maxBytes) {
      throw new IpcError(
        'NOT_CONNECTED',
        `not connected, and the reconnect outbox is full (${this.entries.length} messages, ${this.bytes} bytes; bounds ${this.maxMessages} / ${this.maxBytes})`,
      );
    }
    this.entries.push(entry);
    this.bytes += size;
  }

  public takeAll(): IOutboxEntry[] {
    const entries = this.entries;
    this.entries = [];
    this.bytes = 0;
    return entries;
  }
}
