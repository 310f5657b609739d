// 4. The server is SIGKILLed with 1,000 requests pending and restarted 500 ms later.
// Pass: every pending request rejects with CONNECTION_LOST within 1 s of the kill; the first
// request succeeds within 2 s of the restart. Full profile: 3 rounds, the worst one counts.
import { SmartIpc, isIpcError } from '../../../ts/index.js';
import { fmtInt, fmtMs, maxOf, now, quantile, sleep } from '../lib/measure.js';
import { pick, progress, runScenario, socketPath, startRole, until, type Role } from '../lib/scenario.js';

const PENDING = 1_000;
const RESTART_AFTER_MS = 500;
const ROUNDS = pick(1, 3);
const LOST_BOUND_MS = 1_000;
const FIRST_SUCCESS_BOUND_MS = 2_000;

runScenario('SIGKILL with requests pending', async (v) => {
  const path = socketPath('s');
  const id = 'rel-4';
  const serverConfig = { id, socketPath: path };
  let server: Role = await startRole({ script: 'server.ts', name: 'server', config: serverConfig });
  const client = SmartIpc.createClient({ id, socketPath: path, clientOnly: true });
  client.on('error', () => undefined);
  await client.connect();

  let worstLostMs = 0;
  let worstFirstSuccessMs = 0;
  let worstDeadMs = 0;
  let wrongCodes = 0;
  let resolved = 0;
  const rounds: Array<Record<string, number>> = [];
  for (let round = 1; round <= ROUNDS; round++) {
    await client.request('echo', 'warm', { timeout: 5_000 });
    const settledAt: number[] = [];
    const settles: Array<Promise<void>> = [];
    for (let i = 0; i < PENDING; i++) {
      settles.push(
        client.request('hang', i, { timeout: 30_000 }).then(
          () => {
            resolved++;
          },
          (err: unknown) => {
            if (!isIpcError(err, 'CONNECTION_LOST')) wrongCodes++;
            settledAt.push(now());
          },
        ),
      );
    }
    // All of them are at the server (its handler holds them) before the kill.
    const arrived = await until(async () => (await server.call<{ counters: { hangReceived: number } }>('stats')).counters.hangReceived >= PENDING, 10_000, 20);
    v.check(arrived, `round ${round}: the ${PENDING} requests did not all reach the server within 10 s`);

    const killAt = now();
    server.signal('SIGKILL');
    const allSettled = await Promise.race([Promise.all(settles).then(() => true), sleep(10_000).then(() => false)]);
    v.check(allSettled, `round ${round}: ${PENDING - settledAt.length} pending requests still unsettled 10 s after the kill`);
    await server.exited;
    const lostMs = settledAt.map((t) => t - killAt);
    const lostMax = lostMs.length > 0 ? maxOf(lostMs) : Infinity;

    // The restart, 500 ms after the kill; meanwhile and after it, a probe request every 20 ms.
    await sleep(Math.max(0, killAt + RESTART_AFTER_MS - now()));
    const restartAt = now();
    const nextServer = startRole({ script: 'server.ts', name: 'server', config: serverConfig });
    let firstSuccessAt = Infinity;
    const probes: Array<Promise<void>> = [];
    const probeUntil = restartAt + 10_000;
    while (firstSuccessAt === Infinity && now() < probeUntil) {
      probes.push(client.request('echo', 'probe', { timeout: 1_000 }).then(() => {
        firstSuccessAt = Math.min(firstSuccessAt, now());
      }, () => undefined));
      await sleep(20);
    }
    server = await nextServer;
    await Promise.all(probes);
    const readyAt = (server.readyData as { readyAt: number }).readyAt;
    const firstSuccessMs = firstSuccessAt - restartAt;
    const deadMs = firstSuccessAt - readyAt;
    rounds.push({ lostP50Ms: quantile(lostMs, 0.5), lostMaxMs: lostMax, restartToReadyMs: readyAt - restartAt, firstSuccessMs, deadMs });
    progress(`round ${round}: ${settledAt.length}/${PENDING} CONNECTION_LOST, last ${fmtMs(lostMax)} after the kill; server ready ${fmtMs(readyAt - restartAt)} after the restart, first success ${fmtMs(firstSuccessMs)} (${fmtMs(deadMs)} after ready)`);
    worstLostMs = Math.max(worstLostMs, lostMax);
    worstFirstSuccessMs = Math.max(worstFirstSuccessMs, firstSuccessMs);
    worstDeadMs = Math.max(worstDeadMs, deadMs);
  }
  await client.disconnect();
  await server.call('stop', { graceMs: 0 }).catch(() => undefined);

  v.check(resolved === 0, `${resolved} requests to a handler that never answers resolved`);
  v.check(wrongCodes === 0, `${wrongCodes} requests rejected with another code than CONNECTION_LOST`);
  v.check(worstLostMs <= LOST_BOUND_MS, `pending requests rejected up to ${fmtMs(worstLostMs)} after the kill (bound ${fmtMs(LOST_BOUND_MS)})`);
  v.check(worstFirstSuccessMs <= FIRST_SUCCESS_BOUND_MS, `first success ${fmtMs(worstFirstSuccessMs)} after the restart (bound ${fmtMs(FIRST_SUCCESS_BOUND_MS)}; ${fmtMs(worstDeadMs)} of it after the server was ready)`);
  v.figure('rounds', JSON.stringify(rounds));
  v.figure('worstLostMs', worstLostMs);
  v.figure('worstFirstSuccessMs', worstFirstSuccessMs);
  v.figure('worstDeadMs', worstDeadMs);
  return {
    scenario: 'SIGKILL with requests pending',
    load: `${fmtInt(PENDING)} pending requests${ROUNDS > 1 ? ` x ${ROUNDS} rounds` : ''}`,
    faults: `server SIGKILLed, restarted ${RESTART_AFTER_MS} ms later`,
    badInputs: '-',
    lost: `${resolved + wrongCodes} (${fmtInt(PENDING * ROUNDS - wrongCodes - resolved)}/${fmtInt(PENDING * ROUNDS)} CONNECTION_LOST)`,
    figure: `all rejected within ${fmtMs(worstLostMs)} (<= 1 s); first success ${fmtMs(worstFirstSuccessMs)} after the restart (<= 2 s), ${fmtMs(worstDeadMs)} after the server was ready`,
  };
});
