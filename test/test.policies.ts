// The opt-in failure policies on real sockets: retry (idempotent only, the default codes and no
// others, exponential backoff with jitter measured, every attempt inside the call's one timeout,
// abort) and the per-target circuit breaker (opening, CIRCUIT_OPEN at once, half-open with exactly
// one trial, closing, events), plus withRetry's delays under an injected random.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as diagnosticsChannel from 'node:diagnostics_channel';
import { IpcError, SmartIpc, defaults, resolveRetry, serverConnectionOf, withRetry, type ITraceContext, type TIpcErrorCode } from '../ts/internal.js';
import {
  createPair,
  expectIpcError,
  isInvalidArgument,
  makeClient,
  startServer,
  startServerAt,
  uniqueId,
  uniqueSocketPath,
  waitForEvent,
  waitUntil,
} from './helpers/fixtures.js';

const T = { timeout: 30_000 };
const JITTER = defaults.BACKOFF_JITTER_FRACTION;
/** Timer and scheduling slack on a loaded two-core machine, in ms. */
const SLACK_MS = 25;

/** For handlers: answers after `ms` on an unref'd timer (a handler left waiting does not keep the process alive). */
const napFor = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
/** For test bodies: a plain wait that keeps the process alive. */
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** performance.now() of every attempt (a traced request start) of `type`, while recording. */
function recordAttempts(type: string): { times: number[]; dispose(): void } {
  const channel = diagnosticsChannel.tracingChannel<ITraceContext, ITraceContext>('smartipc:request');
  const times: number[] = [];
  const subscribers = {
    start: (ctx: ITraceContext) => {
      if (ctx.type === type) times.push(performance.now());
    },
    end: () => undefined,
    asyncStart: () => undefined,
    asyncEnd: () => undefined,
    error: () => undefined,
  };
  channel.subscribe(subscribers);
  return { times, dispose: () => channel.unsubscribe(subscribers) };
}

function gaps(times: number[]): number[] {
  return times.slice(1).map((t, i) => t - times[i]);
}

async function timed<T>(promise: Promise<T>): Promise<{ ms: number; result?: T; error?: unknown }> {
  const started = performance.now();
  try {
    const result = await promise;
    return { ms: performance.now() - started, result };
  } catch (error) {
    return { ms: performance.now() - started, error };
  }
}

function codeOf(error: unknown): TIpcErrorCode | undefined {
  return error instanceof IpcError ? error.code : undefined;
}

describe('retry', () => {
  test('retry without idempotent: true is INVALID_ARGUMENT (requests and calls), as is a bad retry', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    let ran = 0;
    pair.server.onMessage('r.echo', (data) => {
      ran++;
      return data;
    });
    await expectIpcError(pair.client.request('r.echo', 1, { retry: { attempts: 3 } }), 'INVALID_ARGUMENT');
    await expectIpcError(pair.client.request('r.echo', 1, { retry: { attempts: 3 }, idempotent: false }), 'INVALID_ARGUMENT');
    await expectIpcError(pair.client.call('svc', 'm', 1, { retry: { attempts: 3 } }), 'INVALID_ARGUMENT');
    await expectIpcError(pair.client.request('r.echo', 1, { retry: { attempts: 0 }, idempotent: true }), 'INVALID_ARGUMENT');
    await expectIpcError(pair.client.request('r.echo', 1, { retry: { attempts: 2, initialDelay: -1 }, idempotent: true }), 'INVALID_ARGUMENT');
    await expectIpcError(pair.client.request('r.echo', 1, { retry: { attempts: 2, on: 'TIMEOUT' as never }, idempotent: true }), 'INVALID_ARGUMENT');
    assert.equal(ran, 0, 'nothing was sent');
    assert.equal(await pair.client.request('r.echo', 2, { retry: { attempts: 3 }, idempotent: true }), 2);
    assert.equal(ran, 1, 'a success is not repeated');
  });

  test('retries NOT_CONNECTED until the client is connected (a default code)', T, async (t) => {
    const started = await startServer('unix', {}, 'retry-nc', (server) => server.onMessage('r.echo', (data) => data));
    t.after(() => started.stop());
    const client = makeClient(started);
    t.after(() => client.disconnect());
    const attempts = recordAttempts('r.echo');
    t.after(() => attempts.dispose());
    const answer = client.request('r.echo', 'late', { idempotent: true, retry: { attempts: 20, initialDelay: 20, maxDelay: 40 }, timeout: 5_000 });
    await waitUntil(() => attempts.times.length >= 2, 5_000, 'two attempts');
    await client.connect();
    assert.equal(await answer, 'late');
    assert.ok(attempts.times.length >= 2 && attempts.times.length < 20, `${attempts.times.length} attempts`);
  });

  test('retries SERVICE_NOT_FOUND until a provider appears (a call)', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    const attempts = recordAttempts('late.svc');
    t.after(() => attempts.dispose());
    const answer = pair.client.call('late', 'svc', 5, { idempotent: true, retry: { attempts: 30, initialDelay: 20, maxDelay: 60 }, timeout: 5_000 });
    await waitUntil(() => attempts.times.length >= 2, 5_000, 'two attempts');
    const provider = await pair.addClient();
    await provider.provide('late', { svc: (n: number) => n * 2 });
    assert.equal(await answer, 10);
    assert.ok(attempts.times.length >= 3, `${attempts.times.length} attempts`);
  });

  test('retries CONNECTION_LOST: the attempt after a dropped connection goes out once reconnected', T, async (t) => {
    const socketPath = uniqueSocketPath('retry-cl');
    const id = uniqueId('retry-cl');
    const server = await startServerAt(socketPath, id);
    t.after(() => server.stop());
    let invocations = 0;
    server.server.onMessage<string, unknown>('r.flaky', (data, clientId) => {
      invocations++;
      // The first two attempts lose their connection mid-request.
      if (invocations <= 2) {
        serverConnectionOf(server.server, clientId)!.destroy(new IpcError('CONNECTION_LOST', 'dropped by the test'));
        return napFor(1_000);
      }
      return `ok:${data}`;
    });
    const client = makeClient({ id, endpoint: { socketPath } }, { reconnect: { enabled: true, initialDelay: 10, maxDelay: 20 } });
    t.after(() => client.disconnect());
    await client.connect();
    const result = await client.request('r.flaky', 'x', { idempotent: true, retry: { attempts: 5, initialDelay: 20 }, timeout: 5_000 });
    assert.equal(result, 'ok:x');
    assert.equal(invocations, 3);
    // Without retry the same drop is the caller's CONNECTION_LOST.
    invocations = 0;
    await expectIpcError(client.request('r.flaky', 'y', { timeout: 5_000 }), 'CONNECTION_LOST');
    assert.equal(invocations, 1);
  });

  test('does not retry other codes (HANDLER_ERROR, NO_HANDLER) unless `on` names them', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    let invocations = 0;
    pair.server.onMessage('r.throws', () => {
      invocations++;
      throw new Error('permanent');
    });
    const opts = { idempotent: true, retry: { attempts: 4, initialDelay: 5 } };
    await expectIpcError(pair.client.request('r.throws', null, opts), 'HANDLER_ERROR');
    assert.equal(invocations, 1);
    const attempts = recordAttempts('r.nobody');
    t.after(() => attempts.dispose());
    await expectIpcError(pair.client.request('r.nobody', null, opts), 'NO_HANDLER');
    assert.equal(attempts.times.length, 1);
    invocations = 0;
    await expectIpcError(pair.client.request('r.throws', null, { idempotent: true, retry: { attempts: 4, initialDelay: 5, on: ['HANDLER_ERROR'] } }), 'HANDLER_ERROR');
    assert.equal(invocations, 4, 'retried as often as `attempts` says, then the last error');
    assert.deepEqual(defaults.DEFAULT_RETRY.on, ['CONNECTION_LOST', 'SERVICE_NOT_FOUND', 'NOT_CONNECTED', 'TIMEOUT']);
  });

  test('backs off exponentially with jitter: measured gaps between attempts', T, async (t) => {
    // A client that is not connected fails each attempt at once (NOT_CONNECTED): the gaps are the delays.
    const client = SmartIpc.createClient({ socketPath: uniqueSocketPath('nowhere'), id: 'nowhere', clientOnly: true, reconnect: { enabled: false } });
    const attempts = recordAttempts('r.backoff');
    t.after(() => attempts.dispose());
    const initialDelay = 40;
    const outcome = await timed(client.request('r.backoff', null, { idempotent: true, retry: { attempts: 6, initialDelay, maxDelay: 1_000 }, timeout: 10_000 }));
    assert.equal(codeOf(outcome.error), 'NOT_CONNECTED', 'the last error once attempts are spent');
    assert.equal(attempts.times.length, 6);
    const measured = gaps(attempts.times);
    const ratios = measured.map((gap, i) => gap / (initialDelay * 2 ** i));
    measured.forEach((gap, i) => {
      const base = initialDelay * 2 ** i;
      assert.ok(gap >= base * (1 - JITTER) - 2 && gap <= base * (1 + JITTER) + 2 * SLACK_MS, `gap ${i + 1}: ${gap.toFixed(1)} ms for a base of ${base} ms`);
    });
    for (let i = 3; i < measured.length; i++) assert.ok(measured[i] > measured[i - 1], `gaps grow: ${measured.map((g) => g.toFixed(1)).join(', ')}`);
    t.diagnostic(`gaps ${measured.map((g) => g.toFixed(1)).join(', ')} ms; gap / base ${ratios.map((r) => r.toFixed(3)).join(', ')}`);

    // maxDelay caps the base.
    attempts.times.length = 0;
    await timed(client.request('r.backoff', null, { idempotent: true, retry: { attempts: 5, initialDelay: 20, maxDelay: 40 }, timeout: 10_000 }));
    assert.equal(attempts.times.length, 5);
    // Bases 20, 40, 40, 40: the last three are capped (160 uncapped would be far above).
    for (const gap of gaps(attempts.times).slice(1)) assert.ok(gap >= 40 * (1 - JITTER) - 2 && gap <= 40 * (1 + JITTER) + 2 * SLACK_MS, `gap ${gap.toFixed(1)} ms under a 40 ms maxDelay`);
  });

  test('gives up within the call\'s one timeout: a hanging handler is tried once, not once per attempt', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    let invocations = 0;
    pair.server.onMessage('r.hang', () => {
      invocations++;
      return napFor(5_000);
    });
    const outcome = await timed(pair.client.request('r.hang', null, { idempotent: true, retry: { attempts: 5, initialDelay: 10 }, timeout: 200 }));
    assert.equal(codeOf(outcome.error), 'TIMEOUT');
    assert.ok(outcome.ms >= 195 && outcome.ms < 200 + 4 * SLACK_MS, `gave up after ${outcome.ms.toFixed(1)} ms (timeout 200)`);
    assert.equal(invocations, 1);
    t.diagnostic(`hanging handler, timeout 200 ms, 5 attempts: gave up after ${outcome.ms.toFixed(1)} ms`);
  });

  test('gives up within the call\'s one timeout while the target keeps failing fast (SERVICE_NOT_FOUND)', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    const attempts = recordAttempts('never.there');
    t.after(() => attempts.dispose());
    const outcome = await timed(pair.client.call('never', 'there', null, { idempotent: true, retry: { attempts: 1_000, initialDelay: 20, maxDelay: 80 }, timeout: 300 }));
    assert.ok(outcome.error instanceof IpcError, 'it rejects');
    assert.ok(['SERVICE_NOT_FOUND', 'TIMEOUT'].includes(codeOf(outcome.error)!), `code ${codeOf(outcome.error)}`);
    assert.ok(outcome.ms < 300 + 4 * SLACK_MS, `gave up after ${outcome.ms.toFixed(1)} ms (timeout 300)`);
    assert.ok(attempts.times.length >= 3 && attempts.times.length < 20, `${attempts.times.length} attempts`);
    assert.ok(attempts.times[attempts.times.length - 1] - attempts.times[0] <= 300 + SLACK_MS, 'every attempt started inside the timeout');
    t.diagnostic(`SERVICE_NOT_FOUND, timeout 300 ms: ${attempts.times.length} attempts, gave up after ${outcome.ms.toFixed(1)} ms with ${codeOf(outcome.error)}`);
  });

  test('a later attempt that hangs is cut at what is left of the one timeout', T, async (t) => {
    const pair = await createPair('unix');
    t.after(() => pair.close());
    const attempts = recordAttempts('hangs.later');
    t.after(() => attempts.dispose());
    let provided = false;
    const outcome = timed(pair.client.call('hangs', 'later', null, { idempotent: true, retry: { attempts: 10, initialDelay: 100, maxDelay: 100 }, timeout: 400 }));
    // The first attempt fails fast (SERVICE_NOT_FOUND); then a provider appears that never answers.
    await waitUntil(() => attempts.times.length === 1, 2_000, 'first attempt');
    const provider = await pair.addClient();
    await provider.provide('hangs', { later: () => napFor(5_000) });
    provided = true;
    const { ms, error } = await outcome;
    assert.ok(provided, 'the provider was there for the second attempt');
    assert.equal(codeOf(error), 'TIMEOUT');
    assert.equal(attempts.times.length, 2);
    assert.ok(ms < 400 + 4 * SLACK_MS, `gave up after ${ms.toFixed(1)} ms (timeout 400): the hanging attempt got only what was left`);
  });

  test('stops on abort: during the wait between attempts (at once), and during an attempt', T, async (t) => {
    const client = SmartIpc.createClient({ socketPath: uniqueSocketPath('nowhere'), id: 'nowhere', clientOnly: true, reconnect: { enabled: false } });
    const attempts = recordAttempts('r.abort');
    t.after(() => attempts.dispose());
    const controller = new AbortController();
    const pending = timed(client.request('r.abort', null, { idempotent: true, retry: { attempts: 10, initialDelay: 300, maxDelay: 300 }, timeout: 10_000, signal: controller.signal }));
    await waitUntil(() => attempts.times.length === 1, 2_000, 'first attempt');
    await sleep(50); // well inside the 300 ms wait before the second attempt
    const abortedAt = performance.now();
    controller.abort();
    const outcome = await pending;
    assert.equal(codeOf(outcome.error), 'ABORTED');
    assert.ok(performance.now() - abortedAt < SLACK_MS, `rejected ${(performance.now() - abortedAt).toFixed(1)} ms after the abort`);
    await sleep(450);
    assert.equal(attempts.times.length, 1, 'no attempt after the abort');

    const pair = await createPair('unix');
    t.after(() => pair.close());
    let invocations = 0;
    pair.server.onMessage('r.hang', () => {
      invocations++;
      return napFor(5_000);
    });
    const during = new AbortController();
    const hanging = pair.client.request('r.hang', null, { idempotent: true, retry: { attempts: 5, initialDelay: 10, on: ['ABORTED', 'TIMEOUT'] }, timeout: 5_000, signal: during.signal });
    await waitUntil(() => invocations === 1, 2_000, 'handler running');
    during.abort();
    await expectIpcError(hanging, 'ABORTED');
    await sleep(60);
    assert.equal(invocations, 1, 'an aborted call is not retried, even with ABORTED in `on`');
  });
});

describe('withRetry on its own (injected random)', () => {
  /** Runs withRetry against an attempt that always fails with `code`, returning the start times. */
  async function delaysFor(random: () => number, options: { attempts: number; initialDelay: number; maxDelay: number }): Promise<number[]> {
    const retry = resolveRetry({ idempotent: true, retry: options })!;
    const starts: number[] = [];
    await assert.rejects(
      withRetry(retry, 10_000, undefined, async () => {
        starts.push(performance.now());
        throw new IpcError('NOT_CONNECTED', 'down');
      }, random),
      (err: unknown) => codeOf(err) === 'NOT_CONNECTED',
    );
    return gaps(starts);
  }

  /** The smallest gap per position over three runs: load only ever lengthens a timer. */
  async function minDelaysFor(random: () => number, options: { attempts: number; initialDelay: number; maxDelay: number }): Promise<number[]> {
    const runs = [await delaysFor(random, options), await delaysFor(random, options), await delaysFor(random, options)];
    return runs[0].map((_, i) => Math.min(...runs.map((r) => r[i])));
  }

  test('random 0 waits base * (1 - jitter), random 1 base * (1 + jitter): the spread is real', T, async () => {
    const low = await minDelaysFor(() => 0, { attempts: 4, initialDelay: 40, maxDelay: 1_000 });
    const high = await minDelaysFor(() => 1, { attempts: 4, initialDelay: 40, maxDelay: 1_000 });
    [40, 80, 160].forEach((base, i) => {
      assert.ok(low[i] >= base * (1 - JITTER) - 2 && low[i] <= base * (1 - JITTER) + SLACK_MS, `low gap ${i}: ${low[i].toFixed(1)}`);
      assert.ok(high[i] >= base * (1 + JITTER) - 2 && high[i] <= base * (1 + JITTER) + SLACK_MS, `high gap ${i}: ${high[i].toFixed(1)}`);
    });
  });

  test('attempts receive what is left of the one timeout', T, async () => {
    const retry = resolveRetry({ idempotent: true, retry: { attempts: 3, initialDelay: 30 } })!;
    const budgets: number[] = [];
    await assert.rejects(
      withRetry(retry, 500, undefined, async (timeoutMs) => {
        budgets.push(timeoutMs);
        throw new IpcError('CONNECTION_LOST', 'gone');
      }, () => 0.5),
      (err: unknown) => codeOf(err) === 'CONNECTION_LOST',
    );
    assert.equal(budgets.length, 3);
    assert.ok(budgets[0] <= 500 && budgets[0] > 490, `first budget ${budgets[0]}`);
    // Delays 30 then 60 (random 0.5: no jitter); a timer may fire a fraction of a millisecond early.
    assert.ok(budgets[1] <= 472 && budgets[2] <= 412 && budgets[2] < budgets[1], `budgets ${budgets.map((b) => b.toFixed(1)).join(', ')}`);
  });

  test(
    'maxDelay is a maximum after jitter too (as the reconnect Backoff: at the cap a delay spreads downwards only)',
    T,
    async () => {
      const high = await minDelaysFor(() => 1, { attempts: 4, initialDelay: 50, maxDelay: 60 });
      for (const gap of high) assert.ok(gap <= 60 + SLACK_MS / 5, `gap ${gap.toFixed(1)} ms over maxDelay 60`);
    },
  );
});

describe('circuit breaker', () => {
  const openCode = (error: unknown) => codeOf(error) === 'CIRCUIT_OPEN';

  test('options are validated at construction (INVALID_ARGUMENT)', T, () => {
    const base = { socketPath: uniqueSocketPath('cbopt'), id: 'cbopt' };
    assert.throws(() => SmartIpc.createClient({ ...base, circuitBreaker: { failureThreshold: 0 } }), isInvalidArgument);
    assert.throws(() => SmartIpc.createClient({ ...base, circuitBreaker: { resetTimeoutMs: 0 } }), isInvalidArgument);
    assert.throws(() => SmartIpc.createClient({ ...base, circuitBreaker: { resetTimeoutMs: Infinity } }), isInvalidArgument);
    assert.throws(() => SmartIpc.createClient({ ...base, circuitBreaker: { on: 'TIMEOUT' as never } }), isInvalidArgument);
    assert.deepEqual({ ...defaults.DEFAULT_CIRCUIT_BREAKER, on: [...defaults.DEFAULT_CIRCUIT_BREAKER.on] }, {
      failureThreshold: 5,
      resetTimeoutMs: 10_000,
      on: ['TIMEOUT', 'CONNECTION_LOST', 'NOT_CONNECTED', 'SERVICE_NOT_FOUND', 'SERVER_UNAVAILABLE'],
    });
  });

  test('opens after failureThreshold consecutive timeouts, fails at once with CIRCUIT_OPEN, half-opens after resetTimeoutMs with exactly one trial, closes on success', T, async (t) => {
    const resetTimeoutMs = 400;
    const pair = await createPair('unix', { client: { circuitBreaker: { failureThreshold: 3, resetTimeoutMs } } });
    t.after(() => pair.close());
    let healthy = false;
    let invocations = 0;
    pair.server.onMessage('cb.flaky', async () => {
      invocations++;
      if (!healthy) return napFor(5_000);
      await sleep(100);
      return 'up';
    });
    pair.server.onMessage('cb.other', () => 'other');
    const opened: string[] = [];
    const closed: string[] = [];
    pair.client.on('circuitOpen', (target) => opened.push(target));
    pair.client.on('circuitClose', (target) => closed.push(target));

    for (let i = 0; i < 2; i++) await expectIpcError(pair.client.request('cb.flaky', null, { timeout: 30 }), 'TIMEOUT');
    assert.deepEqual(opened, [], 'still closed below the threshold');
    await expectIpcError(pair.client.request('cb.flaky', null, { timeout: 30 }), 'TIMEOUT');
    const openedAt = performance.now();
    assert.deepEqual(opened, ['cb.flaky']);
    const fast = await timed(pair.client.request('cb.flaky', null, { timeout: 5_000 }));
    assert.ok(openCode(fast.error), `CIRCUIT_OPEN, got ${codeOf(fast.error)}`);
    assert.ok(fast.ms < 10, `failed at once: ${fast.ms.toFixed(2)} ms`);
    assert.equal(invocations, 3, 'an open circuit sends nothing');
    // One breaker per target: another type goes through.
    assert.equal(await pair.client.request('cb.other'), 'other');

    // Still open shortly before resetTimeoutMs.
    await sleep(resetTimeoutMs - (performance.now() - openedAt) - 100);
    await expectIpcError(pair.client.request('cb.flaky'), 'CIRCUIT_OPEN');
    healthy = true;
    await sleep(resetTimeoutMs - (performance.now() - openedAt) + 20);
    // Half-open: one trial goes through; calls meanwhile fail at once.
    const trial = pair.client.request('cb.flaky', null, { timeout: 5_000 });
    const meanwhile = await Promise.all(Array.from({ length: 5 }, () => timed(pair.client.request('cb.flaky', null, { timeout: 5_000 }))));
    for (const m of meanwhile) assert.ok(openCode(m.error) && m.ms < 10, `a call during the trial: ${codeOf(m.error)} after ${m.ms.toFixed(2)} ms`);
    assert.equal(await trial, 'up');
    assert.equal(invocations, 4, 'exactly one trial');
    assert.deepEqual(closed, ['cb.flaky']);
    assert.equal(await pair.client.request('cb.flaky'), 'up');
    assert.equal(invocations, 5);
    assert.deepEqual(opened, ['cb.flaky'], 'opened once');
  });

  test('a failed trial opens it again for another resetTimeoutMs (no circuitClose)', T, async (t) => {
    const resetTimeoutMs = 200;
    const pair = await createPair('unix', { client: { circuitBreaker: { failureThreshold: 2, resetTimeoutMs } } });
    t.after(() => pair.close());
    pair.server.onMessage('cb.down', () => napFor(5_000));
    const closed: string[] = [];
    pair.client.on('circuitClose', (target) => closed.push(target));
    for (let i = 0; i < 2; i++) await expectIpcError(pair.client.request('cb.down', null, { timeout: 20 }), 'TIMEOUT');
    await expectIpcError(pair.client.request('cb.down'), 'CIRCUIT_OPEN');
    await sleep(resetTimeoutMs + 20);
    await expectIpcError(pair.client.request('cb.down', null, { timeout: 20 }), 'TIMEOUT');
    const reopened = await timed(pair.client.request('cb.down', null, { timeout: 5_000 }));
    assert.ok(openCode(reopened.error) && reopened.ms < 10, `open again at once: ${codeOf(reopened.error)} after ${reopened.ms.toFixed(2)} ms`);
    assert.deepEqual(closed, []);
  });

  test('against a server that goes away and comes back: TIMEOUTs in the outbox open it, it closes after the server is back', T, async (t) => {
    const socketPath = uniqueSocketPath('cbsrv');
    const id = uniqueId('cbsrv');
    let server = await startServerAt(socketPath, id);
    t.after(() => server.stop());
    const resetTimeoutMs = 300;
    const client = makeClient({ id, endpoint: { socketPath } }, { reconnect: { enabled: true, initialDelay: 20, maxDelay: 50 }, circuitBreaker: { failureThreshold: 3, resetTimeoutMs } });
    t.after(() => client.disconnect());
    await client.connect();
    const opened: string[] = [];
    const closed: string[] = [];
    client.on('circuitOpen', (target) => opened.push(target));
    client.on('circuitClose', (target) => closed.push(target));
    assert.equal(await client.request('echo', 1), 1);
    const lost = waitForEvent(client, 'disconnect');
    await server.stop();
    await lost;
    for (let i = 0; i < 3; i++) await expectIpcError(client.request('echo', i, { timeout: 40 }), 'TIMEOUT');
    assert.deepEqual(opened, ['echo']);
    await expectIpcError(client.request('echo', 9), 'CIRCUIT_OPEN');
    const back = waitForEvent(client, 'connect', 10_000);
    server = await startServerAt(socketPath, id);
    await back;
    // Reconnected, but the circuit stays open until resetTimeoutMs has passed.
    await waitUntil(() => {
      void client.request('echo', 0).catch(() => undefined);
      return closed.length === 1;
    }, 5_000, 'circuit closed by a trial');
    assert.deepEqual(closed, ['echo']);
    assert.equal(await client.request('echo', 'again'), 'again');
  });

  test('with no server at all (NOT_CONNECTED) it opens too', T, async (t) => {
    const client = SmartIpc.createClient({ socketPath: uniqueSocketPath('cbnone'), id: 'cbnone', clientOnly: true, reconnect: { enabled: false }, circuitBreaker: { failureThreshold: 2, resetTimeoutMs: 1_000 } });
    t.after(() => client.disconnect());
    const opened: string[] = [];
    client.on('circuitOpen', (target) => opened.push(target));
    await expectIpcError(client.request('x'), 'NOT_CONNECTED');
    await expectIpcError(client.request('x'), 'NOT_CONNECTED');
    await expectIpcError(client.request('x'), 'CIRCUIT_OPEN');
    assert.deepEqual(opened, ['x']);
  });

  test('only consecutive failures of the `on` codes count: HANDLER_ERROR does not, a success resets the count', T, async (t) => {
    const pair = await createPair('unix', { client: { circuitBreaker: { failureThreshold: 3, resetTimeoutMs: 5_000 } } });
    t.after(() => pair.close());
    let mode: 'throw' | 'hang' | 'ok' = 'throw';
    pair.server.onMessage<unknown, unknown>('cb.mixed', () => (mode === 'throw' ? Promise.reject(new Error('app error')) : mode === 'hang' ? napFor(5_000) : 'fine'));
    const opened: string[] = [];
    pair.client.on('circuitOpen', (target) => opened.push(target));
    for (let i = 0; i < 10; i++) await expectIpcError(pair.client.request('cb.mixed'), 'HANDLER_ERROR');
    mode = 'hang';
    for (let round = 0; round < 3; round++) {
      mode = 'hang';
      for (let i = 0; i < 2; i++) await expectIpcError(pair.client.request('cb.mixed', null, { timeout: 20 }), 'TIMEOUT');
      mode = 'ok';
      assert.equal(await pair.client.request('cb.mixed'), 'fine');
    }
    assert.deepEqual(opened, []);
    // A custom `on` counts what it names.
    const strict = await pair.addClient({ circuitBreaker: { failureThreshold: 2, resetTimeoutMs: 5_000, on: ['HANDLER_ERROR'] } });
    mode = 'throw';
    for (let i = 0; i < 2; i++) await expectIpcError(strict.request('cb.mixed'), 'HANDLER_ERROR');
    await expectIpcError(strict.request('cb.mixed'), 'CIRCUIT_OPEN');
  });

  test('one breaker per service.method for calls; a retry stops at an open circuit', T, async (t) => {
    const pair = await createPair('unix', { client: { circuitBreaker: { failureThreshold: 2, resetTimeoutMs: 5_000 } } });
    t.after(() => pair.close());
    const provider = await pair.addClient();
    await provider.provide('half', { up: () => 'up' });
    const opened: string[] = [];
    pair.client.on('circuitOpen', (target) => opened.push(target));
    for (let i = 0; i < 2; i++) await expectIpcError(pair.client.call('half', 'down'), 'METHOD_NOT_FOUND');
    for (let i = 0; i < 2; i++) await expectIpcError(pair.client.call('gone', 'm'), 'SERVICE_NOT_FOUND');
    await expectIpcError(pair.client.call('gone', 'm'), 'CIRCUIT_OPEN');
    assert.deepEqual(opened, ['gone.m'], 'METHOD_NOT_FOUND is not a default `on` code');
    await expectIpcError(pair.client.call('gone', 'n'), 'SERVICE_NOT_FOUND');
    assert.equal(await pair.client.call('half', 'up'), 'up');

    const attempts = recordAttempts('gone.x');
    t.after(() => attempts.dispose());
    const outcome = await timed(pair.client.call('gone', 'x', null, { idempotent: true, retry: { attempts: 6, initialDelay: 5 } }));
    assert.equal(codeOf(outcome.error), 'CIRCUIT_OPEN');
    assert.equal(attempts.times.length, 2, 'two failures opened it, the third attempt was refused without being sent');
    assert.deepEqual(opened, ['gone.m', 'gone.x']);
  });

  test(
    'a trial the caller aborts decides nothing: the circuit does not close on it',
    T,
    async (t) => {
      const resetTimeoutMs = 150;
      const pair = await createPair('unix', { client: { circuitBreaker: { failureThreshold: 1, resetTimeoutMs } } });
      t.after(() => pair.close());
      pair.server.onMessage('cb.dead', () => napFor(5_000));
      const closed: string[] = [];
      pair.client.on('circuitClose', (target) => closed.push(target));
      await expectIpcError(pair.client.request('cb.dead', null, { timeout: 20 }), 'TIMEOUT');
      await sleep(resetTimeoutMs + 20);
      const controller = new AbortController();
      const trial = pair.client.request('cb.dead', null, { signal: controller.signal });
      controller.abort();
      await expectIpcError(trial, 'ABORTED');
      assert.deepEqual(closed, [], 'an aborted trial closed the circuit');
    },
  );
});

