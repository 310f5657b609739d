// 11. Chaos soak: 20 clients in 4 processes run mixed requests, publishes, messages and 1 MiB
// streams against a server in its own process, while a random fault strikes every 5-15 s:
// SIGKILL and restart of the server, a connection reset (the server drops a random client's
// socket), or a stalled reader (a subscriber process SIGSTOPped for 2-6 s).
// Pass: every call ends in success or a documented code within its timeout + 1 s (fire-and-forget
// sends within 10 s); sent = ok + failed; no memory kept: with the workload paused and every
// client connected, the JS heap and ArrayBuffer memory after a forced GC at the end are within
// 1 MiB (heap: 1 MiB per minute of soak, at least 2 MiB) of the same read before the soak; RSS
// after a forced GC every 3 s grows < 1 MiB/min (the median of the last 5 samples after the
// warm-up, 20 s quick and 60 s full, against the median of the first 5, at least the
// RSS_RESOLUTION_MIB that comparison resolves); fds of every long-lived process stable.
import { MIB, fdsOf, fmtInt, fmtMs, now, robustSlope, sleep } from '../lib/measure.js';
import { Random, seedFromEnv } from '../lib/random.js';
import { pick, progress, runScenario, socketPath, startRole, until, type Role } from '../lib/scenario.js';

const fmtMiBs = (mib: number) => `${mib.toFixed(2)} MiB`;

const DURATION_MS = pick(60_000, 300_000);
const PROCESSES = 4;
const CLIENTS_PER_PROCESS = 5;
const OPS_PER_SECOND_PER_CLIENT = 40;
/**
 * Before the soak the workload runs for a while and goes through one SIGKILL + restart and one
 * reset: the first reconnect of a process raises its RSS by 1-3 MiB once (allocator and JIT
 * warm-up, measured), which in a 60 s soak would read as a slope.
 */
const PREWARM_MS = pick(3_000, 10_000);
/** Memory growth is judged on the samples after this much of the soak. */
const SLOPE_FROM_MS = pick(20_000, 60_000);
const SLOPE_BOUND_MIB_PER_MIN = 1;
/**
 * What the RSS comparison can resolve. RSS right after a GC still holds the buffers of the calls in
 * flight (streams of 1 MiB, 4 MiB credit windows) and whatever malloc keeps cached, and malloc's
 * level moves in steps: through 60 server restarts one client process wandered over 95-103 MiB with
 * no trend, and a quick run in CI read one step (101 -> 105 MiB after a restart inside its 40 s
 * window) as 3.5 MiB of growth. Over the full profile's 4 minutes the steps average out (worst
 * +2.3 MiB in 225 s); over the quick 40 s RSS guards against gross native growth only, and the
 * quiet heap and ArrayBuffer comparison is what tells a leak.
 */
const RSS_RESOLUTION_MIB = pick(8, 2);
/**
 * Quiet heap after GC: warm-up (JIT, V8's caches, the library's bounded caches and dead-letter
 * ring filling) adds 0.2-0.7 MiB over the quick soak, most of it early (the full soak's heap slope
 * is 0.04-0.08 MiB/min). Quiet ArrayBuffer memory is exact: 1.44 MiB before and after in every
 * process of six quick runs, since nothing is in flight.
 */
const QUIET_HEAP_MIN_MIB = 2;
const QUIET_BUFFERS_MIB = 1;
const SAMPLE_MS = 3_000;

interface ITally {
  sent: number;
  ok: number;
  failed: number;
  byKind: Record<string, { sent: number; ok: number; failed: number; maxMs: number }>;
  codes: Record<string, number>;
  undocumented: Record<string, number>;
  overBound: number;
  worstOverBound: string;
  received: number;
  unsettled: number;
}

/** MiB per minute of [ms, bytes] samples taken at or after `fromMs` (Theil–Sen). */
function mibPerMinute(samples: Array<[number, number]>, fromMs: number): number {
  return robustSlope(samples.filter(([t]) => t >= fromMs).map(([t, bytes]) => [t / 60_000, bytes / MIB]));
}

/** Net growth over the window: the median of its last 5 samples minus the median of its first 5, and the minutes between them. */
function netGrowth(samples: Array<[number, number]>, fromMs: number): { mib: number; minutes: number } {
  const window = samples.filter(([t]) => t >= fromMs);
  if (window.length < 10) return { mib: NaN, minutes: 0 };
  const median = (points: Array<[number, number]>, i: 0 | 1) => [...points].map((p) => p[i]).sort((a, b) => a - b)[2];
  const first = window.slice(0, 5);
  const last = window.slice(-5);
  return { mib: (median(last, 1) - median(first, 1)) / MIB, minutes: (median(last, 0) - median(first, 0)) / 60_000 };
}

interface IMemory {
  heapUsed: number;
  arrayBuffers: number;
  rss: number;
}

runScenario('chaos soak', async (v) => {
  const rng = new Random(seedFromEnv());
  const path = socketPath('s');
  const id = 'rel-11';
  const serverConfig = { id, socketPath: path };
  let server: Role = await startRole({ script: 'server.ts', name: 'server', config: serverConfig });
  const workers: Role[] = [];
  for (let p = 0; p < PROCESSES; p++) {
    workers.push(await startRole({ script: 'chaos-client.ts', name: `clients-${p}`, config: { id, socketPath: path, prefix: `w${p}`, clients: CLIENTS_PER_PROCESS } }));
  }
  const staller = await startRole({ script: 'client.ts', name: 'staller', config: { id, socketPath: path, clientId: 'staller' } });
  await staller.call('subscribe', { pattern: 'chaos.>' });
  await sleep(300);
  const fdsStart = new Map(workers.map((w) => [w.pid, fdsOf(w.pid) ?? -1]));
  const stallerFdsStart = fdsOf(staller.pid) ?? -1;
  const serverFdsStart = fdsOf(server.pid) ?? -1;
  // Memory after a forced GC in every client process, every few seconds: RSS (the bound) and the
  // JS heap (a leak of JS objects shows here first). Raw RSS between GCs is a sawtooth of +-5 MiB.
  const rss = new Map<number, Array<[number, number]>>(workers.map((w) => [w.pid, []]));
  const heap = new Map<number, Array<[number, number]>>(workers.map((w) => [w.pid, []]));
  let soakStart = Infinity;
  const sampler = setInterval(() => {
    for (const w of workers) {
      void w.call<IMemory>('gc').then((m) => {
        rss.get(w.pid)!.push([now() - soakStart, m.rss]);
        heap.get(w.pid)!.push([now() - soakStart, m.heapUsed]);
      }, () => undefined);
    }
  }, SAMPLE_MS);
  progress(`seed ${rng.seed}; ${PROCESSES * CLIENTS_PER_PROCESS} clients at ~${OPS_PER_SECOND_PER_CLIENT} ops/s each for ${fmtMs(DURATION_MS)}`);

  /** Memory after GC of every client process once the workload is stopped: nothing in flight, every client connected. */
  const quietMemory = async (): Promise<IMemory[]> => {
    await until(async () => (await Promise.all(workers.map((w) => w.call<number>('connected')))).every((n) => n === CLIENTS_PER_PROCESS), 10_000, 100);
    await sleep(500);
    return Promise.all(workers.map((w) => w.call<IMemory>('gc')));
  };
  const restartServer = async () => {
    server.signal('SIGKILL');
    await server.exited;
    const t = now();
    server = await startRole({ script: 'server.ts', name: 'server', config: serverConfig });
    // Recovered: every client back (the workers' and, unless it is stalled, the staller).
    await until(async () => (await server.call<{ connectedClients: number }>('stats')).connectedClients >= PROCESSES * CLIENTS_PER_PROCESS + (now() < stallUntil ? 0 : 1), 15_000, 50);
    return now() - t;
  };
  let stallUntil = 0;
  for (const w of workers) await w.call('start', { opsPerSecond: OPS_PER_SECOND_PER_CLIENT });
  await sleep(1_000);
  await restartServer();
  await server.call('destroyClient', {});
  await sleep(PREWARM_MS);
  await Promise.all(workers.map((w) => w.call('stop', undefined, 30_000)));
  const quietBefore = await quietMemory();
  for (const w of workers) await w.call('start', { opsPerSecond: OPS_PER_SECOND_PER_CLIENT });
  const t0 = now();
  soakStart = t0;
  const faults: string[] = [];
  const recoveries: number[] = [];
  const kinds = ['kill', 'reset', 'stall'] as const;
  let cycle: Array<(typeof kinds)[number]> = [];
  while (now() - t0 < DURATION_MS - 3_000) {
    const wait = rng.int(5_000, 15_000);
    if (now() - t0 + wait > DURATION_MS - 3_000) {
      await sleep(Math.max(0, t0 + DURATION_MS - now()));
      break;
    }
    await sleep(wait);
    if (cycle.length === 0) cycle = [...kinds].sort(() => rng.next() - 0.5);
    const kind = cycle.shift()!;
    const at = fmtMs(now() - t0);
    if (kind === 'kill') {
      const recovery = await restartServer();
      recoveries.push(recovery);
      faults.push(`${at} SIGKILL+restart (all back after ${fmtMs(recovery)})`);
    } else if (kind === 'reset') {
      const victim = await server.call<string | null>('destroyClient', {});
      faults.push(`${at} reset ${victim}`);
    } else {
      const ms = rng.int(2_000, 6_000);
      staller.signal('SIGSTOP');
      stallUntil = now() + ms;
      setTimeout(() => staller.signal('SIGCONT'), ms).unref();
      faults.push(`${at} stalled reader ${fmtMs(ms)}`);
    }
    progress(`fault: ${faults[faults.length - 1]}`);
  }
  staller.signal('SIGCONT');
  const tallies = await Promise.all(workers.map((w) => w.call<ITally>('stop', undefined, 30_000)));
  clearInterval(sampler);
  const soakMs = now() - t0;
  // Quiet again: every client reconnected (the server sees them all), then memory and fds.
  await until(async () => (await server.call<{ connectedClients: number }>('stats')).connectedClients === PROCESSES * CLIENTS_PER_PROCESS + 1, 10_000, 100);
  const quietAfter = await quietMemory();
  const fdsEnd = new Map(workers.map((w) => [w.pid, fdsOf(w.pid) ?? -1]));
  const stallerFdsEnd = fdsOf(staller.pid) ?? -1;
  const serverFdsEnd = fdsOf(server.pid) ?? -1;
  const serverStats = await server.call<{ counters: { errors: number } }>('stats');

  const total = tallies.reduce((acc, t) => {
    acc.sent += t.sent;
    acc.ok += t.ok;
    acc.failed += t.failed;
    acc.overBound += t.overBound;
    acc.unsettled += t.unsettled;
    acc.received += t.received;
    for (const [code, n] of Object.entries(t.codes)) acc.codes[code] = (acc.codes[code] ?? 0) + n;
    for (const [code, n] of Object.entries(t.undocumented)) acc.undocumented[code] = (acc.undocumented[code] ?? 0) + n;
    for (const [kind, k] of Object.entries(t.byKind)) {
      const a = (acc.byKind[kind] ??= { sent: 0, ok: 0, failed: 0, maxMs: 0 });
      a.sent += k.sent;
      a.ok += k.ok;
      a.failed += k.failed;
      a.maxMs = Math.max(a.maxMs, k.maxMs);
    }
    if (t.worstOverBound) acc.worst.push(t.worstOverBound);
    return acc;
  }, { sent: 0, ok: 0, failed: 0, overBound: 0, unsettled: 0, received: 0, codes: {} as Record<string, number>, undocumented: {} as Record<string, number>, byKind: {} as ITally['byKind'], worst: [] as string[] });
  const slopes = workers.map((w) => mibPerMinute(rss.get(w.pid)!, SLOPE_FROM_MS));
  const heapSlopes = workers.map((w) => mibPerMinute(heap.get(w.pid)!, SLOPE_FROM_MS));
  const maxSlope = Math.max(...slopes);
  const growths = workers.map((w) => netGrowth(rss.get(w.pid)!, SLOPE_FROM_MS));
  const allowedMib = (g: { minutes: number }) => Math.max(SLOPE_BOUND_MIB_PER_MIN * g.minutes, RSS_RESOLUTION_MIB);
  const worstGrowth = growths.reduce((worst, g) => (g.mib - allowedMib(g) > worst.mib - allowedMib(worst) ? g : worst), growths[0]);
  const heapKept = workers.map((_, i) => ({ mib: (quietAfter[i].heapUsed - quietBefore[i].heapUsed) / MIB }));
  const buffersKept = workers.map((_, i) => ({ mib: (quietAfter[i].arrayBuffers - quietBefore[i].arrayBuffers) / MIB }));
  const heapKeptBound = Math.max(SLOPE_BOUND_MIB_PER_MIN * (soakMs / 60_000), QUIET_HEAP_MIN_MIB);
  const mibList = (gs: Array<{ mib: number }>) => gs.map((g) => g.mib.toFixed(2)).join(', ');
  const signedList = (gs: Array<{ mib: number }>) => gs.map((g) => `${g.mib >= 0 ? '+' : ''}${g.mib.toFixed(1)}`).join('/');
  const netSlopes = growths.map((g) => (g.minutes > 0 ? g.mib / g.minutes : NaN));
  const rssText = (w: Role) => rss.get(w.pid)!.filter(([t]) => t >= 0).map(([, b]) => (b / MIB).toFixed(0)).join(' ');
  const fdsDrift = workers.map((w) => (fdsEnd.get(w.pid) ?? 0) - (fdsStart.get(w.pid) ?? 0));
  progress(`${fmtInt(total.sent)} calls: ${fmtInt(total.ok)} ok, ${fmtInt(total.failed)} failed ${JSON.stringify(total.codes)}; over bound ${total.overBound}; by kind ${JSON.stringify(total.byKind)}`);
  for (const w of workers) progress(`${w.name} RSS after GC (MiB, every ${SAMPLE_MS / 1000} s): ${rssText(w)}`);
  progress(`RSS after GC net growth ${growths.map((g) => `${g.mib.toFixed(2)} MiB in ${(g.minutes * 60).toFixed(0)} s`).join(', ')} (allowed ${fmtMiBs(allowedMib(worstGrowth))}); kept while quiet: JS heap ${mibList(heapKept)} MiB, ArrayBuffers ${mibList(buffersKept)} MiB; Theil–Sen RSS slopes ${slopes.map((s) => s.toFixed(2)).join(', ')} MiB/min, JS heap slopes ${heapSlopes.map((s) => s.toFixed(2)).join(', ')} MiB/min (after ${fmtMs(SLOPE_FROM_MS)}); fds drift ${fdsDrift.join(', ')}, staller ${stallerFdsEnd - stallerFdsStart}, server ${serverFdsStart} -> ${serverFdsEnd}`);
  for (const w of workers) await w.kill();
  await staller.kill();
  await server.call('stop', { graceMs: 0 }).catch(() => undefined);

  v.check(faults.length >= 3, `only ${faults.length} faults in ${fmtMs(DURATION_MS)}`);
  v.check(total.unsettled === 0, `${total.unsettled} calls never settled`);
  v.check(total.sent === total.ok + total.failed, `sent ${total.sent} != ok ${total.ok} + failed ${total.failed}`);
  v.check(Object.keys(total.undocumented).length === 0, `calls ended with undocumented outcomes: ${JSON.stringify(total.undocumented)}`);
  v.check(total.overBound === 0, `${total.overBound} calls took longer than their timeout + 1 s; worst: ${total.worst.join('; ')}`);
  v.check(growths.every((g) => g.mib <= allowedMib(g)), `RSS after GC grew ${worstGrowth.mib.toFixed(2)} MiB in ${(worstGrowth.minutes * 60).toFixed(0)} s in a client process (bound ${SLOPE_BOUND_MIB_PER_MIN} MiB/min, at least the ${RSS_RESOLUTION_MIB} MiB resolution: ${allowedMib(worstGrowth).toFixed(2)} MiB); per process ${mibList(growths)} MiB`);
  v.check(heapKept.every((g) => g.mib <= heapKeptBound), `a client process kept JS heap after the soak: ${mibList(heapKept)} MiB more than before it, quiet (bound ${heapKeptBound.toFixed(2)} MiB)`);
  v.check(buffersKept.every((g) => g.mib <= QUIET_BUFFERS_MIB), `a client process kept ArrayBuffer memory after the soak: ${mibList(buffersKept)} MiB more than before it, quiet (bound ${QUIET_BUFFERS_MIB} MiB)`);
  v.check(fdsDrift.every((d) => d === 0) && stallerFdsEnd === stallerFdsStart, `client process fds drifted by ${fdsDrift.join(', ')} (staller ${stallerFdsEnd - stallerFdsStart})`);
  v.check(serverFdsEnd === serverFdsStart, `server fds ${serverFdsStart} at the start, ${serverFdsEnd} at the end with the same clients connected`);
  v.figure('seed', rng.seed);
  v.figure('soakMs', soakMs);
  v.figure('faults', faults.join('; '));
  v.figure('calls', total.sent);
  v.figure('ok', total.ok);
  v.figure('failed', total.failed);
  v.figure('codes', JSON.stringify(total.codes));
  v.figure('byKind', JSON.stringify(total.byKind));
  v.figure('publishesReceived', total.received);
  v.figure('rssNetGrowthMiB', mibList(growths));
  v.figure('heapKeptMiB', mibList(heapKept));
  v.figure('arrayBuffersKeptMiB', mibList(buffersKept));
  v.figure('rssNetSlopesMiBPerMin', netSlopes.map((s) => s.toFixed(2)).join(', '));
  v.figure('rssWindowS', Math.round(worstGrowth.minutes * 60));
  v.figure('rssTheilSenSlopesMiBPerMin', slopes.map((s) => s.toFixed(3)).join(', '));
  v.figure('heapSlopesMiBPerMin', heapSlopes.map((s) => s.toFixed(3)).join(', '));
  v.figure('rssAfterGcMiB', workers.map(rssText).join(' | '));
  v.figure('recoveryMs', recoveries.map((r) => Math.round(r)).join(', '));
  v.figure('serverErrors', serverStats.counters.errors);
  const faultCount = (word: string) => faults.filter((f) => f.includes(word)).length;
  const failedShare = total.sent ? ((total.failed / total.sent) * 100).toFixed(1) : '0';
  return {
    scenario: 'chaos soak',
    load: `${fmtMs(soakMs)}: ${PROCESSES * CLIENTS_PER_PROCESS} clients, ${fmtInt(total.sent)} calls (requests, publishes, messages, 1 MiB streams)`,
    faults: `${faults.length} in ${fmtMs(soakMs)}: ${faultCount('SIGKILL')} SIGKILL + restart (back after ${recoveries.length ? `${fmtMs(Math.min(...recoveries))}-${fmtMs(Math.max(...recoveries))}` : '-'}), ${faultCount('reset')} connection resets, ${faultCount('stalled')} stalled readers`,
    badInputs: '-',
    lost: `${total.unsettled} unsettled, ${Object.values(total.undocumented).reduce((a, b) => a + b, 0)} undocumented outcomes`,
    figure: `sent ${fmtInt(total.sent)} = ${fmtInt(total.ok)} ok + ${fmtInt(total.failed)} failed (${failedShare} %, ${Object.entries(total.codes).map(([c, n]) => `${fmtInt(n)} ${c}`).join(', ')}); ${total.overBound} over timeout + 1 s; RSS after GC ${signedList(growths)} MiB in ${(worstGrowth.minutes * 60).toFixed(0)} s (< 1 MiB/min, resolution ${RSS_RESOLUTION_MIB} MiB), kept while quiet: heap ${signedList(heapKept)} MiB, ArrayBuffers ${signedList(buffersKept)} MiB; fds stable: ${fdsDrift.every((d) => d === 0) && serverFdsEnd === serverFdsStart}`,
  };
});
