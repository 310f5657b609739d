// A server in its own process, for the resilience tests.
//   node --import tsx test/helpers/resilience-server.ts <socketPath> <id>
// env RESILIENCE_SERVER_OPTIONS: JSON of extra server options (heartbeat, autoCleanupSocketFile...);
// RESILIENCE_QUIET=1 keeps stdout empty (spawnAndConnect lets the child write to the test's stdout).
// Says "ready <pid>" on stdout and { event: 'ready', pid } over IPC (when forked) once accepting.
// IPC commands: { cmd: 'restart', graceMs } (stop and start again in this process), { cmd: 'stop' }.
import { SmartIpc, type IpcServer, type IIpcServerOptions } from '../../ts/index.js';

const [socketPath, id] = process.argv.slice(2);
if (!socketPath || !id) {
  process.stderr.write('usage: resilience-server.ts <socketPath> <id>\n');
  process.exit(2);
}
const extra = JSON.parse(process.env.RESILIENCE_SERVER_OPTIONS ?? '{}') as Partial<IIpcServerOptions>;

// What arrived through 'record' (messages and requests alike), across in-process restarts.
const recorded: number[] = [];
let violations = 0;
let hanging = 0;

function createServer(): IpcServer {
  const server = SmartIpc.createServer({ id, socketPath, autoCleanupSocketFile: true, ...extra } as IIpcServerOptions);
  server.onMessage('echo', (data) => data);
  server.onMessage('whoami', (_data, clientId) => clientId);
  server.onMessage('clients', () => server.getClientIds());
  server.onMessage('pid', () => process.pid);
  // Never answers: requests to it stay pending until the connection goes.
  server.onMessage('hang', () => {
    hanging++;
    return new Promise(() => undefined);
  });
  server.onMessage('hanging', () => hanging);
  server.onMessage('slow', (data: { ms: number; value?: unknown }) => new Promise((resolve) => setTimeout(() => resolve(data.value), data.ms)));
  // Sequence numbers from one sender must only ever grow: a repeat or a step back is a violation.
  server.onMessage('record', (data: { seq: number }) => {
    const last = recorded.length > 0 ? recorded[recorded.length - 1] : -Infinity;
    if (!(data.seq > last)) violations++;
    recorded.push(data.seq);
    return data.seq;
  });
  server.onMessage('log', () => ({ seqs: recorded, violations }));
  server.on('error', () => undefined);
  return server;
}

let server = createServer();

function announceReady(): void {
  if (process.env.RESILIENCE_QUIET !== '1') process.stdout.write(`ready ${process.pid}\n`);
  process.send?.({ event: 'ready', pid: process.pid });
}

async function main(): Promise<void> {
  await server.start({ readyWhen: 'accepting' });
  announceReady();
}

process.on('message', (message: { cmd: string; graceMs?: number }) => {
  void (async () => {
    if (message.cmd === 'restart') {
      await server.stop({ graceMs: message.graceMs ?? 0 });
      server = createServer();
      await server.start({ readyWhen: 'accepting' });
      announceReady();
    } else if (message.cmd === 'stop') {
      await server.stop({ graceMs: message.graceMs ?? 0 });
      process.exit(0);
    }
  })().catch((err: Error) => {
    process.stderr.write(`resilience-server: ${message.cmd} failed: ${err.stack ?? err.message}\n`);
    process.exit(1);
  });
});
// The test that forked us is gone: do not outlive it.
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => {
  void server.stop({ graceMs: 0 }).finally(() => process.exit(0));
});

main().catch((err: Error) => {
  process.stderr.write(`resilience-server: start failed: ${(err as { code?: string }).code ?? ''} ${err.stack ?? err.message}\n`);
  process.exit(1);
});
