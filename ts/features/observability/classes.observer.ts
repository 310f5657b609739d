import type { IIpcMetrics } from '../../interfaces/events.js';
import type { IDeadLetter } from '../../interfaces/observability.js';
import { emptyMetrics, type TCounters } from '../../smartipc.options.js';
import { DeadLetters } from './classes.deadletters.js';
import { LatencyRecorder } from './classes.latency.js';

/**
 * What one owner (a server with all its connections, a client, a channel) counts and keeps:
 * counters, latency per type, dead letters. Its connections record into it.
 */
export class Observer {
  public readonly counters: TCounters = emptyMetrics();
  public readonly requests = new LatencyRecorder();
  public readonly handlers = new LatencyRecorder();
  public readonly deadLetters: DeadLetters;

  constructor(deadLetterCapacity: number, onDeadLetter: (letter: IDeadLetter) => void) {
    this.deadLetters = new DeadLetters(deadLetterCapacity, (letter) => {
      this.counters.deadLetters++;
      onDeadLetter(letter);
    });
  }

  public deadLetter(letter: IDeadLetter): void {
    this.deadLetters.record(letter);
  }

  /** The metrics of getStats(): a copy of the counters, in flight now, latency summaries. */
  public metrics(requestsInFlight: number): IIpcMetrics {
    return { ...this.counters, requestsInFlight, latency: { requests: this.requests.summaries(), handlers: this.handlers.summaries() } };
  }
}
