import { DEFAULT_DEAD_LETTER_CAPACITY } from '../../smartipc.defaults.js';
import type { IDeadLetter } from '../../interfaces/observability.js';
import { publishDeadLetter } from './tracing.js';
import { debug } from '../../smartipc.log.js';

/**
 * The last `capacity` dead letters, a count of all, and the event. The listener runs inside a
 * try/catch: a throwing listener is logged, never thrown into the library.
 */
export class DeadLetters {
  private readonly ring: IDeadLetter[] = [];
  private next = 0;
  private total = 0;

  constructor(private readonly capacity: number = DEFAULT_DEAD_LETTER_CAPACITY, private readonly emit: (letter: IDeadLetter) => void) {}

  public get count(): number {
    return this.total;
  }

  public record(letter: IDeadLetter): void {
    this.total++;
    if (this.capacity > 0) {
      if (this.ring.length < this.capacity) this.ring.push(letter);
      else this.ring[this.next] = letter;
      this.next = (this.next + 1) % this.capacity;
    }
    publishDeadLetter(letter);
    try {
      this.emit(letter);
    } catch (err) {
      debug('a deadLetter listener threw: %s', (err as Error)?.message ?? String(err));
    }
  }

  /** Oldest first. */
  public list(): IDeadLetter[] {
    if (this.ring.length < this.capacity) return [...this.ring];
    return [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
  }
}
