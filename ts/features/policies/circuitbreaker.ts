import { IpcError, invalidArgument, type TIpcErrorCode } from '../../smartipc.errors.js';
import { DEFAULT_CIRCUIT_BREAKER } from '../../smartipc.defaults.js';
import type { ICircuitBreakerOptions } from '../../interfaces/observability.js';
import { count, durationMs } from '../../smartipc.options.js';

type TState = 'closed' | 'open' | 'halfOpen';

/** Failures that say nothing about the target (the caller gave up, the call never went out): a trial that ends so decides nothing. */
const UNDECIDED: ReadonlySet<TIpcErrorCode> = new Set(['ABORTED', 'CIRCUIT_OPEN', 'INVALID_ARGUMENT', 'CLOSED']);

interface IBreaker {
  state: TState;
  failures: number;
  openedAt: number;
}

/**
 * One breaker per target (request type or `service.method`): closed, it counts consecutive
 * failures of the `on` codes; at failureThreshold it opens and calls fail at once with
 * CIRCUIT_OPEN; after resetTimeoutMs one trial call is let through (half-open): its success
 * closes the breaker, its failure opens it again.
 */
export class CircuitBreakers {
  private readonly breakers = new Map<string, IBreaker>();
  private readonly failureThreshold: number;
  private readonly resetTimeoutMs: number;
  private readonly on: ReadonlySet<TIpcErrorCode>;

  constructor(options: ICircuitBreakerOptions, private readonly events: { open(target: string): void; close(target: string): void }) {
    if (options === null || typeof options !== 'object') throw invalidArgument('circuitBreaker must be an object');
    this.failureThreshold = count('circuitBreaker.failureThreshold', options.failureThreshold, DEFAULT_CIRCUIT_BREAKER.failureThreshold);
    this.resetTimeoutMs = durationMs('circuitBreaker.resetTimeoutMs', options.resetTimeoutMs, DEFAULT_CIRCUIT_BREAKER.resetTimeoutMs, { allowZero: false, allowInfinity: false });
    const on = options.on ?? DEFAULT_CIRCUIT_BREAKER.on;
    if (!Array.isArray(on)) throw invalidArgument('circuitBreaker.on must be an array of error codes');
    this.on = new Set(on);
  }

  /** Runs `call` through the target's breaker. */
  public async run<T>(target: string, call: () => Promise<T>): Promise<T> {
    let breaker = this.breakers.get(target);
    if (breaker === undefined) {
      breaker = { state: 'closed', failures: 0, openedAt: 0 };
      this.breakers.set(target, breaker);
    }
    if (breaker.state === 'open') {
      if (performance.now() - breaker.openedAt < this.resetTimeoutMs) throw this.openError(target);
      breaker.state = 'halfOpen';
    } else if (breaker.state === 'halfOpen') {
      // The trial call is out: everyone else waits for its verdict.
      throw this.openError(target);
    }
    const trial = breaker.state === 'halfOpen';
    try {
      const result = await call();
      this.succeeded(target, breaker);
      return result;
    } catch (err) {
      if (err instanceof IpcError && this.on.has(err.code)) this.failed(target, breaker);
      else if (trial && err instanceof IpcError && UNDECIDED.has(err.code)) breaker.state = 'open'; // no verdict: the next call is the trial
      else if (trial) this.succeeded(target, breaker); // the target answered: it is up
      throw err;
    }
  }

  public stateOf(target: string): TState {
    return this.breakers.get(target)?.state ?? 'closed';
  }

  private succeeded(target: string, breaker: IBreaker): void {
    const wasOpen = breaker.state !== 'closed';
    breaker.state = 'closed';
    breaker.failures = 0;
    if (wasOpen) this.events.close(target);
  }

  private failed(target: string, breaker: IBreaker): void {
    breaker.failures++;
    if (breaker.state === 'halfOpen' || breaker.failures >= this.failureThreshold) {
      const wasClosed = breaker.state === 'closed';
      breaker.state = 'open';
      breaker.openedAt = performance.now();
      if (wasClosed) this.events.open(target);
    }
  }

  private openError(target: string): IpcError {
    return new IpcError('CIRCUIT_OPEN', `the circuit for "${target}" is open: calls fail at once for up to ${this.resetTimeoutMs} ms after repeated failures`);
  }
}
