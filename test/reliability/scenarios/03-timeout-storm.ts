// 3. Timeout storm: requests with a 50 ms timeout to a handler that never answers (a server in its
// own process), in waves, then one wave issued all at once; then requests to a raw peer that
// answers every one of them after its deadline, ignoring the cancel frames.
// Pass: every request rejects with TIMEOUT within timeout + 100 ms, in both shapes; the client's
// heap after GC within +10 MiB of where it started; the server's in-flight count back to 0 (the
// cancel frames reached the handlers) and a graceful stop that does not wait for them; late
// replies dropped (none resolves a request) and counted.
import { SmartIpc, clientConnectionOf, isIpcError, type IpcClient } from '../../../ts/internal.js';
import { MIB, fmtInt, fmtMiB, fmtMs, maxOf, now, quantile, sleep } from '../lib/measure.js';
import { pick, progress, runScenario, socketPath, startRole, until } from '../lib/scenario.js';

const TIMEOUT_MS = 50;
const LATE_BOUND_MS = 100;
const WAVE_SIZE = pick(2_000, 5_000);
const WAVES = pick(10, 20);
const BIG_WAVE = pick(10_000, 50_000);
const LATE_REQUESTS = pick(2_000, 10_000);
const HEAP_BOUND = 10 * MIB;

interface IShape {
  issued: number;
  timedOut: number;
  otherCodes: Record<string, number>;
  resolved: number;
  lateness: number[];
  issueMs: number;
  /** From the first to the last rejection (one synchronous batch when they are due together). */
  expirySpreadMs: number;
}

/** Issues `count` requests at once; resolves when all settled. */
async function wave(client: IpcClient, type: string, count: number): Promise<IShape> {
  const shape: IShape = { issued: count, timedOut: 0, otherCodes: {}, resolved: 0, lateness: [], issueMs: 0, expirySpreadMs: 0 };
  const settles: Array<Promise<void>> = [];
  let first = Infinity;
  let last = 0;
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const issuedAt = performance.now();
    settles.push(client.request(type, i, { timeout: TIMEOUT_MS }).then(
      () => {
        shape.resolved++;
      },
      (err: unknown) => {
        const at = performance.now();
        if (at < first) first = at;
        if (at > last) last = at;
        if (isIpcError(err, 'TIMEOUT')) {
          shape.timedOut++;
          shape.lateness.push(at - issuedAt - TIMEOUT_MS);
        } else {
          const code = (err as { code?: string }).code ?? 'other';
          shape.otherCodes[code] = (shape.otherCodes[code] ?? 0) + 1;
        }
      },
    ));
  }
  shape.issueMs = performance.now() - t0;
  await Promise.all(settles);
  shape.expirySpreadMs = last - first;
  return shape;
}

function merge(shapes: IShape[]): IShape {
  return shapes.reduce((a, b) => ({
    issued: a.issued + b.issued,
    timedOut: a.timedOut + b.timedOut,
    otherCodes: Object.fromEntries([...new Set([...Object.keys(a.otherCodes), ...Object.keys(b.otherCodes)])].map((k) => [k, (a.otherCodes[k] ?? 0) + (b.otherCodes[k] ?? 0)])),
    resolved: a.resolved + b.resolved,
    lateness: a.lateness.concat(b.lateness),
    issueMs: Math.max(a.issueMs, b.issueMs),
    expirySpreadMs: Math.max(a.expirySpreadMs, b.expirySpreadMs),
  }));
}

function heapAfterGc(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed;
}

interface IServerStats {
  metrics: { requestsInFlight: number };
  counters: { hangReceived: number; hangAborted: Record<string, number> };
}

runScenario('timeout storm', async (v) => {
  const path = socketPath('s');
  const peerPath = socketPath('p');
  const id = 'rel-3';
  const server = await startRole({ script: 'server.ts', name: 'server', config: { id, socketPath: path } });
  const peer = await startRole({ script: 'late-peer.ts', name: 'late-peer', config: { id, socketPath: peerPath, lateByMs: 50 } });
  const client = SmartIpc.createClient({ id, socketPath: path, clientOnly: true, clientId: 'storm' });
  const lateClient = SmartIpc.createClient({ id, socketPath: peerPath, clientOnly: true, clientId: 'late' });
  await client.connect();
  await lateClient.connect();
  // Warm both paths up (JIT), then take the heap baseline.
  await wave(client, 'hang', 500);
  await wave(lateClient, 'late', 200);
  await until(async () => (await server.call<IServerStats>('stats')).metrics.requestsInFlight === 0, 3_000, 50);
  const heapBefore = heapAfterGc();
  const serverBefore = await server.call<IServerStats>('stats');

  // Shape 1: waves, one every 100 ms (each expires before the next is issued).
  const waves: IShape[] = [];
  for (let w = 0; w < WAVES; w++) {
    const started = now();
    waves.push(await wave(client, 'hang', WAVE_SIZE));
    await sleep(Math.max(0, started + 100 - now()));
  }
  const wavesShape = merge(waves);
  progress(`waves: ${WAVES} x ${fmtInt(WAVE_SIZE)}: ${fmtInt(wavesShape.timedOut)} TIMEOUT, late p99 ${fmtMs(quantile(wavesShape.lateness, 0.99))}, max ${fmtMs(maxOf(wavesShape.lateness))}`);
  // Shape 2: one wave, all at once.
  const big = await wave(client, 'hang', BIG_WAVE);
  progress(`one wave of ${fmtInt(BIG_WAVE)}: issued in ${fmtMs(big.issueMs)}, rejections spread over ${fmtMs(big.expirySpreadMs)}, late p50 ${fmtMs(quantile(big.lateness, 0.5))}, max ${fmtMs(maxOf(big.lateness))}`);

  // The handlers hear of every timeout through a cancel frame: nothing stays in flight.
  const sent = wavesShape.issued + big.issued;
  const drained = await until(async () => {
    const s = await server.call<IServerStats>('stats');
    return s.metrics.requestsInFlight === 0 && s.counters.hangReceived - serverBefore.counters.hangReceived === sent;
  }, 5_000, 50);
  const serverAfter = await server.call<IServerStats>('stats');
  const abortedByTimeout = (serverAfter.counters.hangAborted.TIMEOUT ?? 0) - (serverBefore.counters.hangAborted.TIMEOUT ?? 0);

  // Late replies: the raw peer answers every request after its deadline.
  const peerBefore = await peer.call<{ lateRepliesSent: number; cancelsReceived: number; requests: number; withoutBudget: number }>('stats');
  const late = await wave(lateClient, 'late', LATE_REQUESTS);
  const repliesIn = await until(async () => (await peer.call<{ lateRepliesSent: number }>('stats')).lateRepliesSent - peerBefore.lateRepliesSent >= LATE_REQUESTS, 5_000, 50);
  await sleep(100); // the last replies reach the client
  const peerAfter = await peer.call<{ lateRepliesSent: number; cancelsReceived: number; requests: number; withoutBudget: number }>('stats');
  const lateSent = peerAfter.lateRepliesSent - peerBefore.lateRepliesSent;
  const cancels = peerAfter.cancelsReceived - peerBefore.cancelsReceived;
  const stillUsable = await lateClient.request('echo', 'after the late replies', { timeout: 2_000 }).then(() => true, () => false);
  const pendingAfter = clientConnectionOf(client).pendingRequests + clientConnectionOf(lateClient).pendingRequests;
  progress(`late replies: ${fmtInt(lateSent)} sent after the deadline, ${late.resolved} resolved a request, ${fmtInt(cancels)} cancel frames reached the peer; late p99 ${fmtMs(quantile(late.lateness, 0.99))}`);

  const heapAfter = heapAfterGc();
  const stopT0 = now();
  // A handler that never answers no longer holds a graceful stop: its caller cancelled it.
  const pinned = client.request('hang', 'held by stop', { timeout: 60_000 }).catch(() => undefined);
  await until(async () => (await server.call<IServerStats>('stats')).metrics.requestsInFlight === 1, 2_000, 20);
  await client.disconnect();
  const stop = await server.call<{ ms: number }>('stop', { graceMs: 5_000 });
  const stopMs = now() - stopT0;
  await pinned;
  await lateClient.disconnect();

  const all = merge([wavesShape, big, late]);
  const maxLate = {
    waves: maxOf(wavesShape.lateness),
    big: maxOf(big.lateness),
    late: maxOf(late.lateness),
  };
  const heapGrowth = heapAfter - heapBefore;
  v.check(all.timedOut === all.issued, `${fmtInt(all.issued - all.timedOut)} of ${fmtInt(all.issued)} requests did not reject with TIMEOUT (${all.resolved} resolved, ${JSON.stringify(all.otherCodes)})`);
  v.check(maxLate.waves <= LATE_BOUND_MS, `waves of ${fmtInt(WAVE_SIZE)}: a TIMEOUT came ${fmtMs(maxLate.waves)} late (bound ${LATE_BOUND_MS} ms)`);
  v.check(maxLate.big <= LATE_BOUND_MS, `one wave of ${fmtInt(BIG_WAVE)} at once: TIMEOUTs up to ${fmtMs(maxLate.big)} late (bound ${LATE_BOUND_MS} ms; issuing took ${fmtMs(big.issueMs)}, the rejections were spread over ${fmtMs(big.expirySpreadMs)})`);
  v.check(maxLate.late <= LATE_BOUND_MS, `late-reply requests: a TIMEOUT came ${fmtMs(maxLate.late)} late (bound ${LATE_BOUND_MS} ms)`);
  v.check(heapGrowth <= HEAP_BOUND, `client heap after GC grew ${fmtMiB(heapGrowth)} (bound ${fmtMiB(HEAP_BOUND)})`);
  v.check(drained, `server requestsInFlight ${serverAfter.metrics.requestsInFlight} 5 s after the storm (cancel frames lost?)`);
  v.check(abortedByTimeout === sent, `${fmtInt(abortedByTimeout)} of ${fmtInt(sent)} handlers saw their signal abort with TIMEOUT`);
  v.check(stopMs < 1_000, `stop({ graceMs: 5000 }) took ${fmtMs(stopMs)} with only a cancelled handler running`);
  v.check(repliesIn && lateSent === LATE_REQUESTS && late.resolved === 0, `late replies: ${lateSent}/${LATE_REQUESTS} sent by the peer, ${late.resolved} resolved a request that had timed out`);
  v.check(pendingAfter === 0 && stillUsable, `after the late replies: ${pendingAfter} requests pending, connection usable: ${stillUsable}`);

  v.figure('waves', `${WAVES} x ${WAVE_SIZE}`);
  v.figure('wavesLateP99Ms', quantile(wavesShape.lateness, 0.99));
  v.figure('wavesLateMaxMs', maxLate.waves);
  v.figure('bigWave', BIG_WAVE);
  v.figure('bigWaveIssueMs', big.issueMs);
  v.figure('bigWaveExpirySpreadMs', big.expirySpreadMs);
  v.figure('bigWaveLateP50Ms', quantile(big.lateness, 0.5));
  v.figure('bigWaveLateMaxMs', maxLate.big);
  v.figure('lateRepliesSent', lateSent);
  v.figure('lateRepliesResolved', late.resolved);
  v.figure('cancelFramesAtPeer', cancels);
  v.figure('lateWaveLateMaxMs', maxLate.late);
  v.figure('heapGrowthMiB', heapGrowth / MIB);
  v.figure('serverAbortedByTimeout', abortedByTimeout);
  v.figure('stopMs', stopMs);
  v.figure('stopInServerMs', stop.ms);
  return {
    scenario: 'timeout storm',
    load: `${fmtInt(sent + LATE_REQUESTS)} requests at ${TIMEOUT_MS} ms: ${WAVES} waves of ${fmtInt(WAVE_SIZE)}, one of ${fmtInt(BIG_WAVE)} at once, ${fmtInt(LATE_REQUESTS)} to a peer that answers late`,
    faults: 'handler never answers; replies after the deadline',
    badInputs: '-',
    lost: `${all.issued - all.timedOut} (every request ended in TIMEOUT; ${late.resolved} late replies accepted)`,
    figure: `late by max ${fmtMs(maxLate.waves)} (waves), ${fmtMs(maxLate.big)} (${fmtInt(BIG_WAVE)} at once), ${fmtMs(maxLate.late)} (late peer), bound 100 ms; heap +${fmtMiB(heapGrowth)} after GC (<= 10 MiB); server in flight back to 0, ${fmtInt(abortedByTimeout)} handlers cancelled; ${fmtInt(lateSent)} late replies dropped; stop(grace 5 s) ${fmtMs(stopMs)}`,
  };
});
