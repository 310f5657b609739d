// 2. Concurrent requests: 10,000 on one connection and 1,000 on each of 100 more, all issued at
// once, answered by a server in its own process after a random 0-50 ms delay each.
// Pass: each request resolves once, with its own response; afterwards the pending tables and the
// server's in-flight count are back to 0 and the timers back to their baseline (unref'd library
// timers included: an armed deadline timer may outlive the table by up to the request timeout).
import { SmartIpc, clientConnectionOf, type IpcClient } from '../../../ts/internal.js';
import { fmtInt, fmtMs } from '../lib/measure.js';
import { trackTimers } from '../lib/timers.js';
import { pick, progress, runScenario, socketPath, startRole, until } from '../lib/scenario.js';

const ON_FIRST = 10_000;
const OTHERS = 100;
const PER_OTHER = pick(100, 1_000);
const TOTAL = ON_FIRST + OTHERS * PER_OTHER;
const MAX_DELAY_MS = 50;
const REQUEST_TIMEOUT_MS = pick(2_000, 10_000);

interface IServerStats {
  metrics: { requestsInFlight: number };
  timers: number | null;
}

runScenario('concurrent requests', async (v) => {
  const path = socketPath('s');
  const id = 'rel-2';
  const server = await startRole({ script: 'server.ts', name: 'server', config: { id, socketPath: path, trackTimers: true } });
  const timers = trackTimers();
  const clients: IpcClient[] = [];
  for (let c = 0; c <= OTHERS; c++) {
    const client = SmartIpc.createClient({ id, socketPath: path, clientOnly: true, clientId: `c${c}`, requestTimeout: REQUEST_TIMEOUT_MS });
    clients.push(client);
  }
  await Promise.all(clients.map((client) => client.connect()));
  // The baseline before any request: heartbeats and the like, no deadline timer armed yet.
  await new Promise((resolve) => setTimeout(resolve, 100));
  const clientTimersBase = timers.live();
  const serverTimersBase = (await server.call<IServerStats>('stats')).timers ?? 0;

  let resolvedOk = 0;
  let mismatched = 0;
  let rejected = 0;
  const codes: Record<string, number> = {};
  const all: Array<Promise<void>> = [];
  const t0 = performance.now();
  let lastIssuedAt = 0;
  for (let c = 0; c <= OTHERS; c++) {
    const client = clients[c];
    const count = c === 0 ? ON_FIRST : PER_OTHER;
    for (let i = 0; i < count; i++) {
      const nonce = Math.floor(Math.random() * 1e9);
      const ms = Math.floor(Math.random() * (MAX_DELAY_MS + 1));
      all.push(
        client.request<{ ms: number; v: { c: number; i: number; nonce: number } }, { c: number; i: number; nonce: number }>('delay', { ms, v: { c, i, nonce } }).then(
          (answer) => {
            if (answer && answer.c === c && answer.i === i && answer.nonce === nonce) resolvedOk++;
            else mismatched++;
          },
          (err: { code?: string }) => {
            rejected++;
            codes[err.code ?? 'other'] = (codes[err.code ?? 'other'] ?? 0) + 1;
          },
        ),
      );
    }
  }
  lastIssuedAt = performance.now();
  const issueMs = lastIssuedAt - t0;
  await Promise.all(all);
  const allMs = performance.now() - t0;
  progress(`${fmtInt(TOTAL)} requests issued in ${fmtMs(issueMs)}, all settled after ${fmtMs(allMs)}: ${fmtInt(resolvedOk)} ok, ${mismatched} mismatched, ${rejected} rejected ${JSON.stringify(codes)}`);

  const pending = clients.reduce((sum, client) => sum + clientConnectionOf(client).pendingRequests, 0);
  const clientInFlight = clients.reduce((sum, client) => sum + client.getStats().metrics.requestsInFlight, 0);
  const serverAfter = await server.call<IServerStats>('stats');
  const clientTimersAtSettle = timers.live() - clientTimersBase;
  const serverTimersAtSettle = (serverAfter.timers ?? 0) - serverTimersBase;
  // Armed deadline timers fire once at the earliest deadline they knew and are not re-armed.
  const timersBack = await until(() => timers.live() <= clientTimersBase, Math.max(0, lastIssuedAt + REQUEST_TIMEOUT_MS + 1_000 - performance.now()), 50);
  const timersBackMs = performance.now() - lastIssuedAt;
  const serverTimersBack = await until(async () => ((await server.call<IServerStats>('stats')).timers ?? 0) <= serverTimersBase, 2_000, 50);
  timers.stop();
  await Promise.all(clients.map((client) => client.disconnect()));
  await server.call('stop', { graceMs: 0 });

  v.check(resolvedOk === TOTAL, `${fmtInt(resolvedOk)}/${fmtInt(TOTAL)} resolved with their own response (${mismatched} with another, ${rejected} rejected ${JSON.stringify(codes)})`);
  v.check(pending === 0 && clientInFlight === 0, `client pending tables hold ${pending} requests (${clientInFlight} in flight) after all settled`);
  v.check(serverAfter.metrics.requestsInFlight === 0, `server requestsInFlight ${serverAfter.metrics.requestsInFlight} after all settled`);
  v.check(timersBack, `client timers ${timers.live() - clientTimersBase} above baseline ${fmtMs(REQUEST_TIMEOUT_MS + 1_000)} after the last request`);
  v.check(serverTimersBack, `server timers ${serverTimersAtSettle} above baseline after all settled`);
  v.figure('requests', TOTAL);
  v.figure('connections', OTHERS + 1);
  v.figure('issueMs', issueMs);
  v.figure('allSettledMs', allMs);
  v.figure('mismatched', mismatched);
  v.figure('rejected', rejected);
  v.figure('clientTimersAboveBaselineAtSettle', clientTimersAtSettle);
  v.figure('clientTimersBackAfterMs', timersBackMs);
  v.figure('serverTimersAboveBaselineAtSettle', serverTimersAtSettle);
  return {
    scenario: 'concurrent requests',
    load: `${fmtInt(TOTAL)} concurrent requests (${fmtInt(ON_FIRST)} on one connection, ${fmtInt(PER_OTHER)} on each of ${OTHERS} more), answered after 0-${MAX_DELAY_MS} ms`,
    faults: '-',
    badInputs: '-',
    lost: `${TOTAL - resolvedOk}`,
    figure: `${fmtInt(resolvedOk)}/${fmtInt(TOTAL)} resolved once with their own response in ${fmtMs(allMs)}, 0 mismatched; pending ${pending}, server in flight ${serverAfter.metrics.requestsInFlight}; timers back to baseline (client: ${clientTimersAtSettle} deadline timers still armed at settle, gone ${fmtMs(timersBackMs)} after the last request)`,
  };
});
