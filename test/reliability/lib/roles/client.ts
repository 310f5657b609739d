// A smartipc client in its own process (so it can be SIGSTOPped and measured from outside).
// Commands:
//   subscribe { pattern }                  counts what arrives, per publisher, checking order
//   flood { topic, rate, durationMs, payloadBytes }   paced publishes; resolves with { sent, failed }
//   blobs { totalBytes, blobBytes }        sendMessage('blob', { seq, data }) one after the other, each awaited
//   sendStream { bytes, streamId }         a pattern stream to the server; resolves with { sha256, ms }
//   incoming { streamId }                  waits for a stream the server sends; { bytes, sha256, ms }
//   pingsStart { everyMs } / pingsStop     a small request every everyMs until stopped; latencies
//   stats                                  counters, disconnect reasons, memory
import { Readable } from 'node:stream';
import { SmartIpc, type IpcClient, type IIpcClientOptions } from '../../../../ts/index.js';
import { runRole } from '../role.js';
import { hashSink, patternSource } from '../data.js';
import { fdsOf, now, peakRssOf, quantile, rssOf, sleep } from '../measure.js';

interface IClientRoleConfig {
  hardTimeoutMs?: number;
  id: string;
  socketPath: string;
  clientId: string;
  options?: Record<string, unknown>;
}

runRole<IClientRoleConfig>('client', async (config, context) => {
  const client: IpcClient = SmartIpc.createClient({ id: config.id, socketPath: config.socketPath, clientOnly: true, clientId: config.clientId, ...(config.options ?? {}) } as IIpcClientOptions);
  const disconnects: Array<{ code: string; at: number }> = [];
  const sub = { received: 0, outOfOrder: 0, lastSeq: new Map<string, number>() };
  const incoming = new Map<string, { bytes: number; sha256: string; ms: number } | { error: string }>();
  const incomingWaiters = new Map<string, () => void>();
  const pinger = { stop: true, latencies: [] as number[], failed: 0, sent: 0, done: Promise.resolve() };
  client.on('error', () => undefined);
  client.on('disconnect', (reason) => {
    disconnects.push({ code: reason.code, at: now() });
    context.emit('disconnect', { code: reason.code, at: now() });
  });
  client.on('stream', (info, readable) => {
    const t0 = now();
    hashSink(readable).then(
      (r) => incoming.set(info.streamId, { ...r, ms: now() - t0 }),
      (err: Error & { code?: string }) => incoming.set(info.streamId, { error: `${err.code ?? ''} ${err.message}` }),
    ).finally(() => incomingWaiters.get(info.streamId)?.());
  });
  await client.connect();

  return {
    commands: {
      subscribe: async (args: { pattern: string }) => {
        await client.subscribe<{ seq: number }>(args.pattern, (data, { from }) => {
          sub.received++;
          const last = sub.lastSeq.get(from) ?? -1;
          if (data.seq <= last) sub.outOfOrder++;
          sub.lastSeq.set(from, data.seq);
        });
        return null;
      },
      flood: async (args: { topic: string; rate: number; durationMs: number; payloadBytes: number }) => {
        const payload = 'f'.repeat(args.payloadBytes);
        let sent = 0;
        let failed = 0;
        let seq = 0;
        const t0 = now();
        const end = t0 + args.durationMs;
        const stepMs = 10;
        const perStep = Math.max(1, Math.round((args.rate * stepMs) / 1000));
        let due = t0;
        while (now() < end) {
          const batch: Array<Promise<void>> = [];
          for (let i = 0; i < perStep; i++) {
            batch.push(client.publish(args.topic, { seq: seq++, payload }).then(() => void sent++, () => void failed++));
          }
          await Promise.all(batch);
          due += stepMs;
          if (due > now()) await sleep(due - now());
        }
        return { sent, failed, ms: now() - t0 };
      },
      blobs: async (args: { totalBytes: number; blobBytes: number }) => {
        const data = Buffer.alloc(args.blobBytes, 0x5a);
        let accepted = 0;
        let rejected = 0;
        const codes: Record<string, number> = {};
        let maxWaitMs = 0;
        const t0 = now();
        const count = Math.floor(args.totalBytes / args.blobBytes);
        for (let seq = 0; seq < count; seq++) {
          const s0 = now();
          try {
            await client.sendMessage('blob', { seq: accepted, data });
            accepted++;
          } catch (err) {
            rejected++;
            const code = (err as { code?: string }).code ?? 'uncoded';
            codes[code] = (codes[code] ?? 0) + 1;
          }
          maxWaitMs = Math.max(maxWaitMs, now() - s0);
        }
        return { accepted, rejected, codes, maxWaitMs, ms: now() - t0, acceptedBytes: accepted * args.blobBytes };
      },
      sendStream: async (args: { bytes: number; streamId: string; seed?: number }) => {
        const source = patternSource(args.bytes, 64 * 1024, args.seed ?? 2);
        const t0 = now();
        await client.sendStream(source.readable as Readable, { streamId: args.streamId, meta: { bytes: args.bytes } });
        return { bytes: args.bytes, sha256: await source.sha256, ms: now() - t0 };
      },
      incoming: async (args: { streamId: string; timeoutMs?: number }) => {
        if (!incoming.has(args.streamId)) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, args.timeoutMs ?? 120_000);
            incomingWaiters.set(args.streamId, () => {
              clearTimeout(timer);
              resolve();
            });
          });
        }
        return incoming.get(args.streamId) ?? { error: 'not received' };
      },
      pingsStart: (args: { everyMs: number; timeoutMs?: number }) => {
        pinger.stop = false;
        pinger.latencies = [];
        pinger.failed = 0;
        pinger.sent = 0;
        pinger.done = (async () => {
          const inFlight: Array<Promise<void>> = [];
          let due = now();
          while (!pinger.stop) {
            const s0 = performance.now();
            pinger.sent++;
            inFlight.push(client.request('echo', 1, { timeout: args.timeoutMs ?? 5_000 }).then(() => void pinger.latencies.push(performance.now() - s0), () => void pinger.failed++));
            due += args.everyMs;
            if (due > now()) await sleep(due - now());
            else await new Promise((resolve) => setImmediate(resolve));
          }
          await Promise.all(inFlight);
        })();
        return null;
      },
      pingsStop: async () => {
        pinger.stop = true;
        await pinger.done;
        const l = pinger.latencies;
        return { sent: pinger.sent, ok: l.length, failed: pinger.failed, p50: quantile(l, 0.5), p99: quantile(l, 0.99), max: l.reduce((a, b) => Math.max(a, b), 0) };
      },
      stats: () => ({
        received: sub.received,
        outOfOrder: sub.outOfOrder,
        disconnects,
        connected: client.getIsConnected(),
        stats: client.getStats(),
        rss: rssOf(),
        peakRss: peakRssOf(),
        fds: fdsOf(),
      }),
      disconnect: async () => {
        await client.disconnect();
        return null;
      },
    },
  };
});
