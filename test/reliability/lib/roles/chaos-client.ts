// Several smartipc clients in one process, each running a mixed workload until told to stop:
// requests (echo, delay 0-100 ms) with a 1 s timeout, publishes, fire-and-forget messages and
// 1 MiB streams (aborted after 5 s), a few in flight at a time. Every call is timed and its outcome
// recorded: success, a documented code, or something else.
// Commands: start, stop (waits for everything in flight, bounded) -> the tally; stats.
import { Readable } from 'node:stream';
import { SmartIpc, isIpcError, type IpcClient } from '../../../../ts/index.js';
import { runRole } from '../role.js';
import { patternSource } from '../data.js';
import { fdsOf, now, rssOf, sleep } from '../measure.js';

interface IChaosClientConfig {
  hardTimeoutMs?: number;
  id: string;
  socketPath: string;
  prefix: string;
  clients: number;
}

/** Codes a call of this workload may end with while the server is killed, reset or slow. */
const DOCUMENTED = new Set(['TIMEOUT', 'CONNECTION_LOST', 'NOT_CONNECTED', 'ABORTED', 'STREAM_CANCELLED']);

/** How long each kind of call may take: its timeout + 1 s (fire-and-forget: the outbox wait while reconnecting). */
const BOUND_MS = { request: 1_000 + 1_000, stream: 5_000 + 1_000, publish: 10_000, message: 10_000 } as const;
type TKind = keyof typeof BOUND_MS;

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
}

runRole<IChaosClientConfig>('chaos-client', async (config) => {
  const tally: ITally = { sent: 0, ok: 0, failed: 0, byKind: {}, codes: {}, undocumented: {}, overBound: 0, worstOverBound: '', received: 0 };
  let worstOver = 0;
  const clients: IpcClient[] = [];
  for (let i = 0; i < config.clients; i++) {
    const client = SmartIpc.createClient({ id: config.id, socketPath: config.socketPath, clientOnly: true, clientId: `${config.prefix}-${i}` });
    client.on('error', () => undefined);
    await client.connect();
    await client.subscribe('chaos.>', () => {
      tally.received++;
    });
    clients.push(client);
  }

  const inFlight = new Set<Promise<void>>();
  const track = (kind: TKind, start: () => Promise<unknown>) => {
    const k = (tally.byKind[kind] ??= { sent: 0, ok: 0, failed: 0, maxMs: 0 });
    tally.sent++;
    k.sent++;
    const t0 = now();
    let p: Promise<void>;
    try {
      p = start().then(
        () => {
          tally.ok++;
          k.ok++;
        },
        (err: unknown) => {
          tally.failed++;
          k.failed++;
          const code = isIpcError(err) ? err.code : `uncoded: ${String((err as Error)?.message ?? err).slice(0, 60)}`;
          tally.codes[code] = (tally.codes[code] ?? 0) + 1;
          if (!DOCUMENTED.has(code)) tally.undocumented[code] = (tally.undocumented[code] ?? 0) + 1;
        },
      );
    } catch (err) {
      // A synchronous throw is a failure of its own: calls must reject, not throw.
      tally.failed++;
      k.failed++;
      const code = `threw: ${String((err as Error)?.message ?? err).slice(0, 60)}`;
      tally.undocumented[code] = (tally.undocumented[code] ?? 0) + 1;
      return;
    }
    const tracked = p.finally(() => {
      const ms = now() - t0;
      if (ms > k.maxMs) k.maxMs = ms;
      if (ms > BOUND_MS[kind]) {
        tally.overBound++;
        if (ms - BOUND_MS[kind] > worstOver) {
          worstOver = ms - BOUND_MS[kind];
          tally.worstOverBound = `${kind} took ${Math.round(ms)} ms (bound ${BOUND_MS[kind]} ms)`;
        }
      }
      inFlight.delete(tracked);
    });
    inFlight.add(tracked);
  };

  let running = false;
  let loops: Array<Promise<void>> = [];
  const loop = async (client: IpcClient, index: number, opsPerSecond: number) => {
    let n = 0;
    while (running) {
      const r = Math.random();
      n++;
      if (r < 0.4) track('request', () => client.request('echo', { n }, { timeout: 1_000 }));
      else if (r < 0.6) track('request', () => client.request('delay', { ms: Math.floor(Math.random() * 100), v: n }, { timeout: 1_000 }));
      else if (r < 0.8) track('publish', () => client.publish(`chaos.t${index % 5}`, { n }));
      else if (r < 0.99) track('message', () => client.sendMessage('note', { n }));
      else track('stream', () => client.sendStream(patternSource(1024 * 1024, 64 * 1024, n).readable as Readable, { signal: AbortSignal.timeout(5_000) }));
      await sleep((1000 / opsPerSecond) * (0.5 + Math.random()));
    }
  };

  return {
    commands: {
      start: (args: { opsPerSecond: number }) => {
        running = true;
        loops = clients.map((client, i) => loop(client, i, args.opsPerSecond));
        return null;
      },
      stop: async () => {
        running = false;
        await Promise.all(loops);
        const settled = await Promise.race([Promise.all([...inFlight]).then(() => true), sleep(15_000).then(() => false)]);
        return { ...tally, unsettled: settled ? 0 : inFlight.size };
      },
      connected: () => clients.filter((c) => c.getIsConnected()).length,
      gc: async () => {
        // A GC right after a burst leaves up to 6 MiB of dead ArrayBuffers counted (their backing
        // stores are freed afterwards); a second one 50 ms later reads what is alive.
        const gc = (globalThis as { gc?: () => void }).gc;
        gc?.();
        await sleep(50);
        gc?.();
        const memory = process.memoryUsage();
        return { heapUsed: memory.heapUsed, rss: rssOf(), external: memory.external, arrayBuffers: memory.arrayBuffers };
      },
      stats: () => ({ rss: rssOf(), fds: fdsOf(), heapUsed: process.memoryUsage().heapUsed, connected: clients.filter((c) => c.getIsConnected()).length }),
    },
  };
});
