// A caller in its own process, for tests that SIGKILL it while its request is being handled (no
// goodbye, no cancel frame: the socket just dies). Usage:
//   node --import tsx child.requester.ts <id> <socketPath | tcp:port> <type> <timeoutMs>
// Connects, sends request <type> (its outcome ignored) and then { ready: clientId } over the IPC channel.
import { SmartIpc, type IIpcClientOptions } from '../../ts/index.js';

const [id, where, type, timeoutMs] = process.argv.slice(2);
const endpoint = where.startsWith('tcp:') ? { host: '127.0.0.1', port: Number(where.slice(4)) } : { socketPath: where };
const client = SmartIpc.createClient({ id, ...endpoint, clientOnly: true, heartbeat: false, reconnect: { enabled: false } } as IIpcClientOptions);
await client.connect();
client.request(type, { pid: process.pid }, { timeout: Number(timeoutMs) }).catch(() => undefined);
process.send?.({ ready: client.getClientId() });
// Stay alive until killed, but never outlive the parent.
process.on('disconnect', () => process.exit(0));
