// `npm start`: three processes talking through smartipc. This process is a client; it spawns the
// service (demo-server.js, the hub) and forks a worker (demo-worker.js) that provides a service
// through the hub. It exchanges a request, a service call through the hub, pub/sub events, a
// request from the server back to the client, and a file, printing what happens, and exits by
// itself. `npm start -- --stay` keeps the service up until Ctrl-C so you can poke it with the CLI.
import { createHash, randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SmartIpc } from '../dist_ts/index.js';

const log = (...args) => console.log('[client]', ...args);
const stay = process.argv.includes('--stay');
const socketPath = join(tmpdir(), `smartipc-demo-${process.pid}.sock`);
const serverScript = fileURLToPath(new URL('./demo-server.js', import.meta.url));
const workerScript = fileURLToPath(new URL('./demo-worker.js', import.meta.url));

const { client, serverProcess } = await SmartIpc.spawnAndConnect({
  serverScript,
  socketPath,
  id: 'demo-service',
  clientId: 'demo-client',
  env: { DEMO_SOCKET: socketPath },
  timeoutMs: 10_000,
});
log(`connected to demo-service on ${socketPath}`);

// 1. request / response
const { sum } = await client.request('add', { a: 20, b: 22 });
log(`add(20, 22) = ${sum}`);

// 2. a service call through the hub: the worker (a forked child) provides "inventory"
const { channel: worker, child: workerProcess } = await SmartIpc.fork(workerScript, { env: { ...process.env, DEMO_SOCKET: socketPath } });
await new Promise((resolve) => worker.onMessage('ready', resolve));
const inventory = client.service('inventory');
const reservation = await inventory.reserve({ item: 'widget', count: 3 });
log(`inventory.reserve via the hub: ${reservation.reserved} ${reservation.item}(s), ${reservation.left} left`);
try {
  await inventory.reserve({ item: 'gadget', count: 5 });
} catch (err) {
  log(`inventory.reserve refused: ${err.code} (${err.message})`);
}

// 3. pub/sub, plus a request from the server to this client
client.onMessage('whoAreYou', () => ({ name: 'demo-client', pid: process.pid }));
let progressEvents = 0;
const done = new Promise((resolve) => client.subscribe('jobs.done', (data) => resolve(data)));
await client.subscribe('jobs.*', (data, { topic }) => {
  if (topic === 'jobs.progress') {
    progressEvents++;
    log(`event ${topic}: step ${data.step} of ${data.of}`);
  }
});
await client.request('startJob', { steps: 3 });
const finished = await done;
log(`job finished after ${finished.steps} steps (${progressEvents} progress events)`);

// 4. a file, streamed in chunks with flow control, checked on both sides
const file = join(tmpdir(), `smartipc-demo-${process.pid}.bin`);
const content = randomBytes(4 * 1024 * 1024);
await writeFile(file, content);
const started = performance.now();
await client.sendFile(file);
const ms = performance.now() - started;
const local = createHash('sha256').update(content).digest('hex');
const remote = await client.request('fileDigest', { basename: file.split('/').pop() });
log(`sent a 4 MiB file in ${ms.toFixed(1)} ms; sha256 ${remote === local ? 'matches' : 'DIFFERS'} (${local.slice(0, 16)}...)`);
await rm(file, { force: true });

// 5. stats, then a clean goodbye
const { metrics } = client.getStats();
log(`client sent ${metrics.messagesSent} messages / ${metrics.bytesSent} bytes, received ${metrics.messagesReceived} messages; add() p50 ${metrics.latency.requests.add?.p50} ms`);
await worker.request('stop');
await new Promise((resolve) => workerProcess.once('exit', resolve));
if (stay) {
  log('the service stays up: poke it from another shell, then press Ctrl-C');
  log(`  npx smartipc ping --socket ${socketPath}`);
  log(`  npx smartipc request add '{"a":1,"b":2}' --socket ${socketPath} --id demo-service`);
  log(`  npx smartipc stats --socket ${socketPath} --id demo-service`);
  log(`  npx smartipc subscribe 'jobs.>' --socket ${socketPath} --id demo-service`);
  await new Promise((resolve) => process.once('SIGINT', resolve));
} else {
  log(`(npm start -- --stay keeps the service up, to poke it with: npx smartipc ping --socket <path>)`);
}
await client.request('shutdown');
await client.disconnect();
const exitCode = await new Promise((resolve) => serverProcess.once('exit', (code) => resolve(code)));
log(`server exited with code ${exitCode}; done`);
if (remote !== local || exitCode !== 0) process.exitCode = 1;
