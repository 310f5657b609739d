// A client in its own process, for the heartbeat tests (a process that can be frozen with SIGSTOP).
//   node --import tsx test/helpers/resilience-client.ts <socketPath> <id> <clientId>
// env RESILIENCE_CLIENT_OPTIONS: JSON of extra client options (heartbeat...).
// Sends { event: 'ready', pid } over IPC once connected; answers 'echo'.
import { SmartIpc, type IIpcClientOptions } from '../../ts/index.js';

const [socketPath, id, clientId] = process.argv.slice(2);
if (!socketPath || !id || !clientId) {
  process.stderr.write('usage: resilience-client.ts <socketPath> <id> <clientId>\n');
  process.exit(2);
}
const extra = JSON.parse(process.env.RESILIENCE_CLIENT_OPTIONS ?? '{}') as Partial<IIpcClientOptions>;

const client = SmartIpc.createClient({
  id,
  socketPath,
  clientId,
  clientOnly: true,
  connectRetry: { enabled: true, totalTimeout: 10_000 },
  ...extra,
} as IIpcClientOptions);
client.onMessage('echo', (data) => data);
client.on('error', () => undefined);
client.on('connect', () => process.send?.({ event: 'connect', pid: process.pid }));

process.on('disconnect', () => process.exit(0));

client.connect().then(
  () => process.send?.({ event: 'ready', pid: process.pid }),
  (err: Error) => {
    process.stderr.write(`resilience-client: connect failed: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
