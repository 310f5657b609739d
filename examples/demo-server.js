// The service side of the demo: a process that answers requests, publishes job events and
// receives a file. Started by demo.js through SmartIpc.spawnAndConnect.
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SmartIpc } from '../dist_ts/index.js';

const log = (...args) => console.log('  [server]', ...args);
const socketPath = process.env.DEMO_SOCKET;

const server = SmartIpc.createServer({ id: 'demo-service', socketPath, autoCleanupSocketFile: true });

server.on('clientConnect', (clientId, metadata) => log(`client ${clientId} connected`, metadata));
server.on('clientDisconnect', (clientId) => log(`client ${clientId} left`));

server.onMessage('add', ({ a, b }, clientId) => {
  log(`add(${a}, ${b}) for ${clientId}`);
  return { sum: a + b };
});

server.onMessage('startJob', async ({ steps }, clientId) => {
  for (let step = 1; step <= steps; step++) {
    await server.publish('jobs.progress', { step, of: steps });
  }
  // Ask the client something back: requests work in both directions.
  const who = await server.requestClient(clientId, 'whoAreYou', {});
  log(`the client says it is ${who.name} (pid ${who.pid})`);
  await server.publish('jobs.done', { steps });
  return { accepted: true };
});

// basename -> promise of the sha256 of what arrived (hashed while it streams to disk)
const received = new Map();
server.on('stream', (info, readable) => {
  const target = join(tmpdir(), `smartipc-demo-received-${process.pid}-${info.meta.basename}`);
  log(`receiving ${info.meta.basename} (${info.meta.size} bytes) from ${info.clientId}`);
  const hash = createHash('sha256');
  readable.on('data', (chunk) => hash.update(chunk));
  const digest = SmartIpc.pipeStreamToFile(readable, target).then(async () => {
    await rm(target, { force: true });
    return hash.digest('hex');
  });
  digest.catch(() => undefined);
  received.set(info.meta.basename, digest);
});

server.onMessage('fileDigest', ({ basename }) => received.get(basename) ?? null);

server.onMessage('shutdown', async () => {
  log('shutting down');
  setImmediate(async () => {
    await server.stop();
    process.exit(0);
  });
  return 'bye';
});

await server.start({ readyWhen: 'accepting' });
log(`listening on ${socketPath}`);
