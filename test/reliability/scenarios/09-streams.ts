// 9. Large streams beside small requests, between a server and a client in processes of their
// own, while the client sends a small request every millisecond on the same connection:
//   A. 256 MiB each way at once,   B. 1 GiB each way at once,   C. 16 concurrent 64 MiB streams (8 each way).
// Pass: every sha256 equal on both ends; RSS growth <= 64 MiB per process; small-request p99
// < 100 ms; B's time <= 6 x A's (4 x the bytes).
import { MIB, RssWatch, fmtBytes, fmtMiB, fmtMs, now } from '../lib/measure.js';
import { pick, progress, runScenario, socketPath, startRole, type Role } from '../lib/scenario.js';

const SMALL = pick(128 * MIB, 256 * MIB);
const BIG = SMALL * 4;
const MEDIUM = pick(16 * MIB, 64 * MIB);
const CONCURRENT = 16;
const RSS_BOUND = 64 * MIB;
const P99_BOUND_MS = 100;
const RATIO_BOUND = 6;

interface ISent {
  bytes: number;
  sha256: string;
  ms: number;
}
type TReceived = { bytes: number; sha256: string; ms: number } | { error: string };

let streamCounter = 0;

/** Streams `bytes` each way for every entry of `sizes` at once; resolves with the wall time and the mismatches. */
async function bothWays(server: Role, client: Role, sizes: number[], label: string): Promise<{ ms: number; mismatches: string[] }> {
  const t0 = now();
  const timeoutMs = 600_000;
  const runs = sizes.flatMap((bytes) => {
    const up = `${label}-up-${++streamCounter}`;
    const down = `${label}-down-${++streamCounter}`;
    return [
      (async () => {
        const sent = await client.call<ISent>('sendStream', { bytes, streamId: up, seed: streamCounter }, timeoutMs);
        const got = await server.call<TReceived>('streamResult', { streamId: up, timeoutMs: 30_000 }, 35_000);
        return { name: `${up} (${fmtBytes(bytes)} client -> server)`, sent, got };
      })(),
      (async () => {
        const sent = await server.call<ISent>('sendStream', { clientId: 'streamer', bytes, streamId: down, seed: streamCounter + 1 }, timeoutMs);
        const got = await client.call<TReceived>('incoming', { streamId: down, timeoutMs: 30_000 }, 35_000);
        return { name: `${down} (${fmtBytes(bytes)} server -> client)`, sent, got };
      })(),
    ];
  });
  const results = await Promise.all(runs);
  const ms = now() - t0;
  const mismatches: string[] = [];
  for (const r of results) {
    if ('error' in r.got) mismatches.push(`${r.name}: receiver failed: ${r.got.error}`);
    else if (r.got.sha256 !== r.sent.sha256 || r.got.bytes !== r.sent.bytes) mismatches.push(`${r.name}: received ${r.got.bytes} bytes sha256 ${r.got.sha256.slice(0, 12)}, sent ${r.sent.bytes} sha256 ${r.sent.sha256.slice(0, 12)}`);
  }
  return { ms, mismatches };
}

runScenario('large streams beside small requests', async (v) => {
  const path = socketPath('s');
  const id = 'rel-9';
  const server = await startRole({ script: 'server.ts', name: 'server', config: { id, socketPath: path } });
  const client = await startRole({ script: 'client.ts', name: 'client', config: { id, socketPath: path, clientId: 'streamer' } });
  // Warm up (JIT, buffers) before the baselines.
  await bothWays(server, client, [4 * MIB], 'warm');
  const serverRss = new RssWatch(server.pid);
  const clientRss = new RssWatch(client.pid);
  await client.call('pingsStart', { everyMs: 1 });

  const a = await bothWays(server, client, [SMALL], 'A');
  progress(`A: ${fmtBytes(SMALL)} each way in ${fmtMs(a.ms)}`);
  const b = await bothWays(server, client, [BIG], 'B');
  progress(`B: ${fmtBytes(BIG)} each way in ${fmtMs(b.ms)} (${(b.ms / a.ms).toFixed(2)} x A)`);
  const c = await bothWays(server, client, new Array<number>(CONCURRENT / 2).fill(MEDIUM), 'C');
  progress(`C: ${CONCURRENT} x ${fmtBytes(MEDIUM)} in ${fmtMs(c.ms)}`);

  const pings = await client.call<{ sent: number; ok: number; failed: number; p50: number; p99: number; max: number }>('pingsStop', undefined, 30_000);
  const serverGrowth = serverRss.stop().growthBytes;
  const clientGrowth = clientRss.stop().growthBytes;
  await client.kill();
  await server.call('stop', { graceMs: 0 });
  progress(`small requests: ${pings.ok}/${pings.sent} ok, p50 ${fmtMs(pings.p50)}, p99 ${fmtMs(pings.p99)}, max ${fmtMs(pings.max)}; RSS growth server ${fmtMiB(serverGrowth)}, client ${fmtMiB(clientGrowth)}`);

  const mismatches = [...a.mismatches, ...b.mismatches, ...c.mismatches];
  const ratio = b.ms / a.ms;
  v.check(mismatches.length === 0, `streams that arrived wrong: ${mismatches.join('; ')}`);
  v.check(serverGrowth <= RSS_BOUND, `server RSS grew ${fmtMiB(serverGrowth)} (bound ${fmtMiB(RSS_BOUND)})`);
  v.check(clientGrowth <= RSS_BOUND, `client RSS grew ${fmtMiB(clientGrowth)} (bound ${fmtMiB(RSS_BOUND)})`);
  v.check(pings.failed === 0 && pings.ok === pings.sent, `small requests: ${pings.failed} of ${pings.sent} failed`);
  v.check(pings.p99 < P99_BOUND_MS, `small-request p99 ${fmtMs(pings.p99)} (bound ${P99_BOUND_MS} ms)`);
  v.check(ratio <= RATIO_BOUND, `${fmtBytes(BIG)} took ${ratio.toFixed(2)} x the ${fmtBytes(SMALL)} time (bound ${RATIO_BOUND} x)`);
  v.figure('smallBytes', SMALL);
  v.figure('smallMs', a.ms);
  v.figure('bigMs', b.ms);
  v.figure('ratio', ratio);
  v.figure('concurrentMs', c.ms);
  v.figure('bigMBps', (2 * BIG) / 1e6 / (b.ms / 1000));
  v.figure('pingsSent', pings.sent);
  v.figure('pingP50Ms', pings.p50);
  v.figure('pingP99Ms', pings.p99);
  v.figure('pingMaxMs', pings.max);
  v.figure('serverRssGrowthMiB', serverGrowth / MIB);
  v.figure('clientRssGrowthMiB', clientGrowth / MIB);
  const total = 2 * SMALL + 2 * BIG + CONCURRENT * MEDIUM;
  return {
    scenario: 'large streams beside small requests',
    load: `${fmtBytes(SMALL)} and ${fmtBytes(BIG)} each way, ${CONCURRENT} x ${fmtBytes(MEDIUM)} at once (${fmtBytes(total)} in all), ${pings.sent.toLocaleString('en-US')} small requests at 1/ms`,
    faults: '-',
    badInputs: '-',
    lost: `${mismatches.length} streams, ${pings.failed} requests`,
    figure: `sha256 equal ${2 + 2 + CONCURRENT - mismatches.length}/${2 + 2 + CONCURRENT}; ${fmtBytes(BIG)} each way in ${fmtMs(b.ms)} = ${ratio.toFixed(2)} x the ${fmtBytes(SMALL)} time (<= 6); small p99 ${fmtMs(pings.p99)} (< 100 ms); RSS +${fmtMiB(serverGrowth)} server, +${fmtMiB(clientGrowth)} client (<= 64 MiB)`,
  };
});
