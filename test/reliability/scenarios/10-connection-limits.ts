// 10. Connection limits.
// A. A server (its own process) with maxClients: 50 gets its 50 clients, then 100 more at once.
//    Pass: the 100 are refused quickly (each within 1 s) with TOO_MANY_CLIENTS; the 50 keep being served.
// B. A server started under `ulimit -n 256` gets raw connections (each completing a handshake)
//    until it runs out of file descriptors, then smartipc clients keep trying for a while.
//    Pass: no crash; no busy loop (server CPU < 50 % of a core while out of fds); those clients
//    fail with a code within their handshake timeout + 1 s; once the raw connections close, a new
//    client connects and is served.
import * as net from 'node:net';
import { SmartIpc, isIpcError, type IpcClient } from '../../../ts/index.js';
import { cpuPercentOver, fdsOf, fmtInt, fmtMs, isAlive, maxOf, now, quantile, sleep } from '../lib/measure.js';
import { FrameReader, KIND, dialUnix, helloFrame } from '../lib/wire.js';
import { pick, progress, runScenario, socketPath, startRole, until, within } from '../lib/scenario.js';

const MAX_CLIENTS = 50;
const EXTRA = 100;
const REFUSE_BOUND_MS = 1_000;
const FD_LIMIT = 256;
const RAW_TARGET = 300;
const EMFILE_WINDOW_MS = pick(2_000, 5_000);
const REGISTER_TIMEOUT_MS = 2_000;
const CPU_BOUND = 50;

async function partA(v: import('../lib/scenario.js').Verdict) {
  const path = socketPath('a');
  const id = 'rel-10a';
  const server = await startRole({ script: 'server.ts', name: 'server-maxclients', config: { id, socketPath: path, options: { maxClients: MAX_CLIENTS } } });
  // connectRetry: 100 connects at once are more than maxPendingHandshakes (64), so the server may
  // close the oldest pending ones with SERVER_UNAVAILABLE (busy) before reading their HELLO; they retry.
  const make = (n: number) => SmartIpc.createClient({ id, socketPath: path, clientOnly: true, clientId: `c${n}`, reconnect: { enabled: false }, connectRetry: { enabled: true, initialDelay: 20, maxAttempts: 10 } });
  const admitted: IpcClient[] = [];
  for (let n = 0; n < MAX_CLIENTS; n++) {
    const client = make(n);
    await client.connect();
    admitted.push(client);
  }
  const refusals: Array<{ code: string; ms: number }> = [];
  await Promise.all(Array.from({ length: EXTRA }, async (_, i) => {
    const client = make(MAX_CLIENTS + i);
    const t0 = performance.now();
    try {
      await within(client.connect(), 10_000, 'connect');
      refusals.push({ code: 'ADMITTED', ms: performance.now() - t0 });
      await client.disconnect();
    } catch (err) {
      refusals.push({ code: isIpcError(err) ? err.code : `uncoded: ${(err as Error).message}`, ms: performance.now() - t0 });
    }
  }));
  const served = await Promise.all(admitted.map((c) => c.request('echo', 1, { timeout: 2_000 }).then(() => true, () => false)));
  const stats = await server.call<{ connectedClients: number }>('stats');
  for (const c of admitted) await c.disconnect();
  await server.call('stop', { graceMs: 0 });
  const tooMany = refusals.filter((r) => r.code === 'TOO_MANY_CLIENTS');
  const times = refusals.map((r) => r.ms);
  const maxMs = maxOf(times);
  const codes: Record<string, number> = {};
  for (const r of refusals) codes[r.code] = (codes[r.code] ?? 0) + 1;
  v.check(tooMany.length === EXTRA, `of ${EXTRA} clients past maxClients ${MAX_CLIENTS}, ${tooMany.length} were refused with TOO_MANY_CLIENTS (${JSON.stringify(codes)})`);
  v.check(maxMs <= REFUSE_BOUND_MS, `a refusal took ${fmtMs(maxMs)} (bound ${fmtMs(REFUSE_BOUND_MS)})`);
  v.check(served.every(Boolean) && stats.connectedClients === MAX_CLIENTS, `the admitted clients: ${served.filter(Boolean).length}/${MAX_CLIENTS} served, server counts ${stats.connectedClients}`);
  v.figure('refusedTooManyClients', tooMany.length);
  v.figure('refuseP50Ms', quantile(times, 0.5));
  v.figure('refuseMaxMs', maxMs);
  progress(`maxClients ${MAX_CLIENTS}: ${tooMany.length}/${EXTRA} refused TOO_MANY_CLIENTS, p50 ${fmtMs(quantile(times, 0.5))}, max ${fmtMs(maxMs)}`);
  return { refused: tooMany.length, maxMs };
}

async function partB(v: import('../lib/scenario.js').Verdict) {
  const path = socketPath('b');
  const id = 'rel-10b';
  const server = await startRole({ script: 'server.ts', name: 'server-ulimit', ulimitFiles: FD_LIMIT, config: { id, socketPath: path, options: { registerTimeoutMs: REGISTER_TIMEOUT_MS } } });
  const fdsBase = fdsOf(server.pid) ?? 0;
  let crashed: string | undefined;
  server.on('fatal', (message: string) => {
    crashed = message.split('\n').slice(0, 3).join(' / ');
  });
  // Raw connections, each with a completed handshake, until the server runs out of fds.
  const raw: net.Socket[] = [];
  let welcomed = 0;
  let closedByServer = 0;
  let dialFailed = 0;
  for (let n = 0; n < RAW_TARGET && server.alive; n++) {
    let socket: net.Socket;
    try {
      socket = await dialUnix(path, 2_000);
    } catch {
      dialFailed++;
      continue;
    }
    socket.on('error', () => undefined);
    raw.push(socket);
    const answered = new Promise<'welcome' | 'closed' | 'silent'>((resolve) => {
      const timer = setTimeout(() => resolve('silent'), 1_000);
      const reader = new FrameReader((frame) => {
        if (frame.kind === KIND.Welcome) {
          clearTimeout(timer);
          resolve('welcome');
        }
      });
      socket.on('data', (chunk: Buffer) => reader.push(chunk));
      socket.once('close', () => {
        clearTimeout(timer);
        resolve('closed');
      });
    });
    socket.write(helloFrame(id, `raw-${n}`));
    const answer = await answered;
    if (answer === 'welcome') welcomed++;
    else if (answer === 'closed') closedByServer++;
    // Once the server refuses connections, a few more, then stop filling.
    if (closedByServer >= 20) break;
  }
  const fdsFull = fdsOf(server.pid) ?? 0;
  progress(`ulimit -n ${FD_LIMIT}: ${welcomed} raw connections admitted, ${closedByServer} closed by the server, ${dialFailed} dials failed; server fds ${fdsBase} -> ${fdsFull}; alive ${server.alive}`);

  // Out of fds: clients keep trying; the server must not spin.
  const attempts: Array<{ code: string; ms: number }> = [];
  const trying = (async () => {
    const end = now() + EMFILE_WINDOW_MS;
    let n = 0;
    while (now() < end && server.alive) {
      const client = SmartIpc.createClient({ id, socketPath: path, clientOnly: true, clientId: `late-${n++}`, reconnect: { enabled: false }, registerTimeoutMs: REGISTER_TIMEOUT_MS });
      const t0 = performance.now();
      try {
        await within(client.connect(), REGISTER_TIMEOUT_MS + 5_000, 'connect');
        attempts.push({ code: 'ADMITTED', ms: performance.now() - t0 });
        await client.disconnect();
      } catch (err) {
        attempts.push({ code: isIpcError(err) ? err.code : `uncoded: ${(err as Error).message.slice(0, 80)}`, ms: performance.now() - t0 });
      }
      await sleep(50);
    }
  })();
  await sleep(200);
  const cpu = server.alive ? await cpuPercentOver(server.pid, Math.max(500, EMFILE_WINDOW_MS - 400)) : undefined;
  await trying;
  const aliveUnderEmfile = server.alive && isAlive(server.pid);

  // Free the fds: a new client must be served.
  for (const socket of raw) socket.destroy();
  const freed = await until(() => (fdsOf(server.pid) ?? Infinity) <= fdsBase + 2, 5_000, 50);
  let servedAgain = false;
  let servedAgainMs = NaN;
  if (server.alive) {
    const t0 = performance.now();
    const client = SmartIpc.createClient({ id, socketPath: path, clientOnly: true, clientId: 'after', connectRetry: { enabled: true, maxAttempts: 20, totalTimeout: 5_000 } });
    try {
      await client.connect();
      servedAgain = (await client.request('echo', 'again', { timeout: 2_000 })) === 'again';
      servedAgainMs = performance.now() - t0;
      await client.disconnect();
    } catch {
      servedAgain = false;
    }
  }
  const codes: Record<string, number> = {};
  for (const a of attempts) codes[a.code] = (codes[a.code] ?? 0) + 1;
  const attemptMax = attempts.length ? maxOf(attempts.map((a) => a.ms)) : NaN;
  const uncoded = attempts.filter((a) => a.code.startsWith('uncoded')).length;
  progress(`under EMFILE: server CPU ${cpu === undefined ? '-' : `${cpu.toFixed(1)} %`}, ${attempts.length} client connects: ${JSON.stringify(codes)}, slowest ${fmtMs(attemptMax)}; fds freed ${freed}; served again ${servedAgain}${crashed ? `; crashed: ${crashed}` : ''}`);
  if (server.alive) await server.call('stop', { graceMs: 0 }).catch(() => undefined);
  await server.kill();

  v.check(crashed === undefined && aliveUnderEmfile, `the server crashed when it ran out of file descriptors: ${crashed ?? `exit ${JSON.stringify(server.exitInfo)}`}`);
  v.check(welcomed > 0 && closedByServer + dialFailed > 0, `the server never ran out of fds (${welcomed} admitted under ulimit -n ${FD_LIMIT})`);
  v.check(cpu !== undefined && cpu < CPU_BOUND, `server CPU while out of fds: ${cpu === undefined ? 'not measured (server gone)' : `${cpu.toFixed(1)} %`} (bound ${CPU_BOUND} %)`);
  v.check(uncoded === 0 && attemptMax <= REGISTER_TIMEOUT_MS + 1_000, `connects under EMFILE: ${uncoded} failed without a code, slowest ${fmtMs(attemptMax)} (bound ${fmtMs(REGISTER_TIMEOUT_MS + 1_000)})`);
  v.check(servedAgain, 'no client was served after the fds were freed');
  v.figure('emfileAdmitted', welcomed);
  v.figure('emfileClosedByServer', closedByServer);
  v.figure('emfileCpuPercent', cpu ?? null);
  v.figure('emfileAttempts', JSON.stringify(codes));
  v.figure('emfileServedAgainMs', servedAgainMs);
  v.figure('emfileCrash', crashed ?? null);
  return { welcomed, cpu, codes, servedAgain, crashed };
}

runScenario('connection limits and EMFILE', async (v) => {
  const a = await partA(v);
  const b = await partB(v);
  return {
    scenario: 'connection limits and EMFILE',
    load: `maxClients ${MAX_CLIENTS} + ${EXTRA} more at once; a server under ulimit -n ${FD_LIMIT} filled with ${fmtInt(b.welcomed)} connections`,
    faults: `fd exhaustion (EMFILE) for ${fmtMs(EMFILE_WINDOW_MS)}`,
    badInputs: '-',
    lost: b.crashed ? 'the server (crashed)' : '0',
    figure: `${a.refused}/${EXTRA} refused TOO_MANY_CLIENTS within ${fmtMs(a.maxMs)} (<= 1 s); under EMFILE: ${b.crashed ? 'CRASHED' : 'no crash'}, CPU ${b.cpu === undefined ? '-' : `${b.cpu.toFixed(0)} %`} (< 50 %), clients got ${Object.entries(b.codes).map(([c, n]) => `${n} ${c}`).join(', ') || 'nothing'}; served again after: ${b.servedAgain}`,
  };
});
