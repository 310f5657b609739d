// smartipc server: the receiving side of every scenario, through the built package's public API.
import { SmartIpc } from '../../dist_ts/index.js';
import { config, fail, main, markMemoryStart, now, onStop, ready, result } from '../lib/child.js';

main(async () => {
  const scenario = config.scenario;
  const serialization = scenario === 'S11' ? 'advanced' : 'json';
  const server = SmartIpc.createServer({ id: 'bench', socketPath: config.socketPath, autoCleanupSocketFile: true, serialization });
  server.on('error', (error) => void fail(error));

  // S1, S2, S7, and the subscribers' sync in S6: echo the decoded object.
  server.onMessage('echo', (data) => data);
  // S12: the hub's CPU use (its cost per routed call).
  server.onMessage('cpu', () => process.cpuUsage());

  // S3, S4: count (decoded) messages between mark and done.
  let t0 = 0;
  let count = 0;
  let payloadBytes = 0;
  const countOne = () => {
    count++;
  };
  server.onMessage('tick', countOne);
  server.onMessage('blob', countOne);
  server.onMessage('bin', countOne);
  server.onMessage('mark', (data) => {
    payloadBytes = data?.payloadBytes ?? 0;
    count = 0;
    t0 = now();
  });
  server.onMessage('done', () => {
    const seconds = (now() - t0) / 1000;
    if (scenario === 'S4' || scenario === 'S10' || scenario === 'S11') void result({ mbPerSec: (count * payloadBytes) / 1e6 / seconds, messages: count });
    else void result({ messagesPerSec: count / seconds, messages: count });
  });

  // S5, S7: consume streams, tell the sender when one has ended.
  server.on('stream', (info, readable) => {
    const phase = info.meta?.phase;
    const started = now();
    let bytes = 0;
    readable.on('data', (chunk) => {
      bytes += chunk.length;
    });
    readable.on('error', (error) => void fail(error));
    readable.on('end', () => {
      const seconds = (now() - started) / 1000;
      const figures = { mbPerSec: bytes / 1e6 / seconds, bytes };
      if (phase === 'measure') void result(figures);
      server.sendToClient(info.clientId, 'streamDone', { phase, ...figures }).catch(fail);
    });
  });

  await server.start();
  onStop(() => server.stop({ graceMs: 0 }));
  markMemoryStart();
  await ready();
});
