// A smartipc server in its own process (so it can be SIGKILLed, SIGSTOPped, ulimited and measured
// from outside), used by most scenarios. Handlers:
//   echo (data)                 answers its data
//   delay { ms, v }             answers v after ms
//   hang                        never answers; counts arrivals and aborts by the signal's reason code
//   late { ms }                 ignores its signal and answers after ms (a late result the library must drop)
//   blob { seq, data }          (message) counts bytes and checks seq order
//   blobStats                   what blob saw
//   note                        (message) counted
// Streams: every incoming stream is hashed (sha256) and its result kept by streamId.
// Commands: stats, publish, stop, destroyClient, clientIds, streamResult, sendStream, localReport, gc.
import * as fs from 'node:fs';
import { Readable } from 'node:stream';
import { SmartIpc, IpcError, serverConnectionOf, type IpcClient, type IpcServer, type IIpcServerOptions } from '../../../../ts/internal.js';
import { runRole } from '../role.js';
import { hashSink, patternSource } from '../data.js';
import { fdsOf, now, peakRssOf, rssOf } from '../measure.js';
import { trackTimers, type ITimerTracker } from '../timers.js';

export interface IServerRoleConfig {
  hardTimeoutMs?: number;
  id: string;
  socketPath?: string;
  host?: string;
  port?: number;
  /** Extra server options (JSON). */
  options?: Record<string, unknown>;
  /** Server events reported to the parent as role events. */
  events?: Array<'clientConnect' | 'clientDisconnect' | 'slowConsumer' | 'messageError'>;
  /**
   * A subscriber in this process that holds `pattern` before any other client can reach the server:
   * the server binds `socketPath + '.tmp'`, the subscriber connects and subscribes there, then the
   * file is renamed to `socketPath` (scenario 5: nothing published after the restart can miss it).
   */
  localSubscriber?: { pattern: string };
  /** Count live timers (unref'd included) for `stats.timers`; slows promises down. */
  trackTimers?: boolean;
}

runRole<IServerRoleConfig>('server', async (config, context) => {
  const timers: ITimerTracker | undefined = config.trackTimers ? trackTimers() : undefined;
  const counters = { hangReceived: 0, hangAborted: {} as Record<string, number>, lateAnswered: 0, lateAfterAbort: 0, notes: 0, errors: 0, messageErrors: {} as Record<string, number> };
  const blob = { count: 0, bytes: 0, lastSeq: -1, outOfOrder: 0, firstAt: 0, lastAt: 0 };
  const streams = new Map<string, { bytes: number; sha256: string; ms: number } | { error: string }>();
  const streamWaiters = new Map<string, Array<() => void>>();

  const bindPath = config.localSubscriber && config.socketPath ? `${config.socketPath}.tmp` : config.socketPath;
  const endpoint = bindPath !== undefined ? { socketPath: bindPath } : { host: config.host ?? '127.0.0.1', port: config.port ?? 0 };
  const server: IpcServer = SmartIpc.createServer({ id: config.id, autoCleanupSocketFile: true, ...endpoint, ...(config.options ?? {}) } as IIpcServerOptions);

  server.onMessage('echo', (data) => data);
  server.onMessage('delay', (data: { ms: number; v: unknown }) => new Promise((resolve) => setTimeout(() => resolve(data.v), data.ms)));
  server.onMessage('hang', (_data, _clientId, ctx) => {
    counters.hangReceived++;
    ctx.signal.addEventListener('abort', () => {
      const code = (ctx.signal.reason as IpcError | undefined)?.code ?? 'unknown';
      counters.hangAborted[code] = (counters.hangAborted[code] ?? 0) + 1;
    }, { once: true });
    return new Promise(() => undefined);
  });
  server.onMessage('late', (data: { ms: number }, _clientId, ctx) => new Promise((resolve) => setTimeout(() => {
    counters.lateAnswered++;
    if (ctx.signal.aborted) counters.lateAfterAbort++;
    resolve('late');
  }, data.ms)));
  server.onMessage('blob', (data: { seq: number; data: Buffer }) => {
    if (data.seq !== blob.lastSeq + 1) blob.outOfOrder++;
    blob.lastSeq = data.seq;
    blob.count++;
    blob.bytes += Buffer.isBuffer(data.data) ? data.data.length : 0;
    blob.lastAt = now();
    if (blob.firstAt === 0) blob.firstAt = blob.lastAt;
  });
  server.onMessage('blobStats', () => ({ ...blob }));
  server.onMessage('note', () => {
    counters.notes++;
  });

  server.on('stream', (info, readable) => {
    const t0 = now();
    hashSink(readable).then(
      (result) => streams.set(info.streamId, { ...result, ms: now() - t0 }),
      (err: Error) => streams.set(info.streamId, { error: `${(err as IpcError).code ?? ''} ${err.message}` }),
    ).finally(() => {
      for (const wake of streamWaiters.get(info.streamId) ?? []) wake();
      streamWaiters.delete(info.streamId);
    });
  });

  server.on('error', () => {
    counters.errors++;
  });
  server.on('messageError', (error) => {
    counters.messageErrors[error.code] = (counters.messageErrors[error.code] ?? 0) + 1;
    if (config.events?.includes('messageError')) context.emit('messageError', { code: error.code, at: now() });
  });
  for (const event of config.events ?? []) {
    if (event === 'clientConnect') server.on('clientConnect', (clientId) => context.emit('clientConnect', { clientId, at: now() }));
    if (event === 'clientDisconnect') server.on('clientDisconnect', (clientId, reason) => context.emit('clientDisconnect', { clientId, code: reason.code, message: reason.message, at: now() }));
    if (event === 'slowConsumer') server.on('slowConsumer', (clientId, queuedBytes) => context.emit('slowConsumer', { clientId, queuedBytes, at: now() }));
  }

  const startedAt = now();
  await server.start();
  const readyAt = now();

  // Scenario 5: a subscriber that is in place before anyone else can connect.
  let local: IpcClient | undefined;
  const received: Record<string, number[]> = {};
  let duplicates = 0;
  if (config.localSubscriber && config.socketPath && bindPath) {
    local = SmartIpc.createClient({ id: config.id, socketPath: bindPath, clientOnly: true, clientId: 'local-subscriber', reconnect: { enabled: false } });
    await local.connect();
    await local.subscribe<{ seq: number }>(config.localSubscriber.pattern, (data, { from }) => {
      const list = (received[from] ??= []);
      if (list.length > 0 && list[list.length - 1] >= data.seq) duplicates++;
      list.push(data.seq);
    });
    fs.renameSync(bindPath, config.socketPath);
  }

  const address = server.getAddress();
  return {
    ready: { pid: process.pid, address, startedAt, readyAt, slowConsumerPolicy: (server.options as unknown as Record<string, unknown>).slowConsumerPolicy ?? null },
    commands: {
      stats: () => {
        const stats = server.getStats();
        return { ...stats, counters, rss: rssOf(), peakRss: peakRssOf(), fds: fdsOf(), heapUsed: process.memoryUsage().heapUsed, timers: timers?.live() ?? null };
      },
      gc: () => {
        (globalThis as { gc?: () => void }).gc?.();
        return { heapUsed: process.memoryUsage().heapUsed, rss: rssOf() };
      },
      publish: (args: { topic: string; data?: unknown; count?: number }) => {
        for (let i = 0; i < (args.count ?? 1); i++) void server.publish(args.topic, args.data);
        return server.getStats().pubsub;
      },
      stop: async (args: { graceMs?: number; exit?: boolean }) => {
        const t0 = now();
        await local?.disconnect();
        await server.stop({ graceMs: args?.graceMs ?? 0 });
        const ms = now() - t0;
        if (args?.exit !== false) setTimeout(() => process.exit(0), 20);
        return { ms };
      },
      clientIds: () => server.getClientIds(),
      destroyClient: (args: { clientId?: string }) => {
        const ids = server.getClientIds().filter((id) => id !== 'local-subscriber');
        const clientId = args?.clientId ?? ids[Math.floor(Math.random() * ids.length)];
        if (clientId === undefined) return null;
        serverConnectionOf(server, clientId)?.destroy(new IpcError('CONNECTION_LOST', 'connection reset by the scenario'));
        return clientId;
      },
      streamResult: async (args: { streamId: string; timeoutMs?: number }) => {
        if (!streams.has(args.streamId)) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, args.timeoutMs ?? 60_000);
            const list = streamWaiters.get(args.streamId) ?? [];
            list.push(() => {
              clearTimeout(timer);
              resolve();
            });
            streamWaiters.set(args.streamId, list);
          });
        }
        return streams.get(args.streamId) ?? { error: 'no such stream (yet)' };
      },
      sendStream: async (args: { clientId: string; bytes: number; streamId: string; chunkSize?: number; seed?: number }) => {
        const source = patternSource(args.bytes, args.chunkSize ?? 64 * 1024, args.seed ?? 1);
        const t0 = now();
        await server.sendStreamToClient(args.clientId, source.readable as Readable, { streamId: args.streamId, meta: { bytes: args.bytes } });
        return { bytes: args.bytes, sha256: await source.sha256, ms: now() - t0 };
      },
      localReport: () => ({ received, duplicates }),
      blobStats: () => ({ ...blob }),
    },
  };
});
