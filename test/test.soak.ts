// Soak: 50 restarts of a server process while one client sends without pause. Every request must be
// answered with its own value or rejected with a code (never hang, never cross-wired), the server
// must see each sender's sequence numbers only ever grow (nothing twice, nothing reordered, also
// across reconnects), and the client's heap must stay flat. Most restarts are stop/start inside
// the server process (fast); every tenth kills the process with SIGKILL and forks a new one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { IpcError, SmartIpc } from '../ts/index.js';
import { uniqueId, uniqueSocketPath, waitUntil, withTimeout } from './helpers/fixtures.js';
import { sleep, spawnServer, type IChild } from './helpers/resilience-process.js';

/** SMARTIPC_SOAK_CYCLES runs a longer soak by hand. */
const CYCLES = Number(process.env.SMARTIPC_SOAK_CYCLES ?? 50);
const KILL_EVERY = 10;
const WINDOW = 16;
/** Requests answered per server lifetime before the next restart. */
const ACKS_PER_CYCLE = 200;
/** Codes a send may fail with while its server restarts; anything else fails the soak. */
const EXPECTED_CODES = new Set(['CONNECTION_LOST', 'NOT_CONNECTED']);

/** A real gc() even without --expose-gc, so heap readings are not noise. */
function getGc(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

function heapAfterGc(gc: () => void): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

test(`soak: ${CYCLES} server restarts under continuous sending; every send settles with its answer or a code, none lost silently, heap flat`, { timeout: 120_000 }, async (t) => {
  const gc = getGc();
  const socketPath = uniqueSocketPath('soak');
  const id = uniqueId('soak');
  let serverProcess: IChild = await spawnServer(socketPath, id);
  const client = SmartIpc.createClient({ id, socketPath, clientOnly: true, requestTimeout: 15_000, reconnect: { initialDelay: 20, maxDelay: 200 } });
  let running = true;
  t.after(async () => {
    running = false;
    await client.disconnect();
    await serverProcess.kill();
    fs.rmSync(socketPath, { force: true });
  });
  const clientErrors: unknown[] = [];
  client.on('error', (error) => clientErrors.push(error));
  let connects = 0;
  client.on('connect', () => connects++);
  await client.connect();

  const tally = { acked: 0, written: 0, wrongAnswer: 0, rejected: new Map<string, number>(), unexpected: [] as unknown[] };
  const inFlight = new Set<Promise<void>>();
  let seq = 0;
  const reject = (err: unknown) => {
    if (err instanceof IpcError && EXPECTED_CODES.has(err.code)) tally.rejected.set(err.code, (tally.rejected.get(err.code) ?? 0) + 1);
    else tally.unexpected.push(err);
  };
  const sendOne = () => {
    const s = ++seq;
    // One in four is fire-and-forget; the rest are requests that must come back with their own seq.
    const op = s % 4 === 0
      ? client.sendMessage('record', { seq: s }).then(() => {
          tally.written++;
        }, reject)
      : client.request<{ seq: number }, number>('record', { seq: s }).then((answer) => {
          if (answer === s) tally.acked++;
          else tally.wrongAnswer++;
        }, reject);
    const tracked = op.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  };
  const sender = (async () => {
    while (running) {
      while (inFlight.size < WINDOW) sendOne();
      await Promise.race(inFlight);
      await sleep(2); // a steady stream, not a CPU hog on a shared machine
    }
  })();

  /** Asks the current server process what it recorded; its sequence must only ever have grown. */
  const checkServerLog = async (when: string) => {
    const log = await client.request<unknown, { seqs: number[]; violations: number }>('log', undefined, { timeout: 10_000 });
    assert.equal(log.violations, 0, `${when}: the server saw a sequence number repeat or go back`);
    assert.ok(log.seqs.length > 0, `${when}: the server recorded nothing`);
  };

  let baselineHeap = 0;
  for (let cycle = 1; cycle <= CYCLES; cycle++) {
    // Served again after the last restart: new answers arrive.
    const ackedBefore = tally.acked;
    await waitUntil(() => tally.acked >= ackedBefore + ACKS_PER_CYCLE, 15_000, `cycle ${cycle}: requests answered after the restart`);
    if (cycle === 10) baselineHeap = heapAfterGc(gc);
    if (process.env.SMARTIPC_SOAK_TRACE && cycle % 10 === 0) t.diagnostic(`cycle ${cycle}: heap ${(heapAfterGc(gc) / 1e6).toFixed(2)} MB, seq ${seq}`);
    if (cycle % KILL_EVERY === 0) {
      await checkServerLog(`before SIGKILL in cycle ${cycle}`);
      await serverProcess.kill('SIGKILL');
      await sleep(50);
      serverProcess = await spawnServer(socketPath, id);
    } else {
      serverProcess.send({ cmd: 'restart', graceMs: 0 });
      await serverProcess.next('ready', 10_000);
    }
  }
  await waitUntil(() => client.getIsConnected(), 15_000, 'connected after the last restart');
  const ackedAfterLast = tally.acked;
  await waitUntil(() => tally.acked >= ackedAfterLast + 20, 15_000, 'requests answered after the last restart');
  await checkServerLog('at the end');

  running = false;
  await sender;
  await withTimeout(Promise.all(inFlight), 20_000, 'the last sends');
  const finalHeap = heapAfterGc(gc);

  const total = tally.acked + tally.written + tally.wrongAnswer + tally.unexpected.length + [...tally.rejected.values()].reduce((a, b) => a + b, 0);
  const summary = `seq ${seq}, acked ${tally.acked}, written ${tally.written}, rejected ${JSON.stringify(Object.fromEntries(tally.rejected))}, connects ${connects}, heap ${(baselineHeap / 1e6).toFixed(1)} -> ${(finalHeap / 1e6).toFixed(1)} MB`;
  t.diagnostic(summary);
  assert.equal(total, seq, `every send settled exactly once (${summary})`);
  assert.equal(tally.wrongAnswer, 0, 'an answer came back for another request');
  assert.deepEqual(tally.unexpected, [], 'rejections without an expected code');
  assert.ok(tally.acked > CYCLES * ACKS_PER_CYCLE, summary);
  assert.equal(connects, CYCLES + 1, 'the first connection and one reconnection per restart');
  assert.equal(client.getStats().metrics.requestsInFlight, 0, 'nothing left pending');
  assert.deepEqual(clientErrors, []);
  // A leak of a few hundred bytes per send (some ten thousand sends after the baseline) shows as MBs.
  assert.ok(finalHeap - baselineHeap < 3 * 1024 * 1024, `client heap grew by ${((finalHeap - baselineHeap) / 1e6).toFixed(1)} MB (${summary})`);
});
