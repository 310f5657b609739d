// A server in its own process, for tests that kill it mid-request (SIGKILL: no goodbye, no FIN
// from smartipc). Usage: node --import tsx child.hangserver.ts <id> <socketPath | tcp:port>
// Sends { ready: address } over the IPC channel once serving; 'hang' never answers, 'echo' does.
import { SmartIpc, type IIpcServerOptions } from '../../ts/index.js';

const [id, where] = process.argv.slice(2);
const endpoint = where.startsWith('tcp:') ? { host: '127.0.0.1', port: Number(where.slice(4)) } : { socketPath: where };
const server = SmartIpc.createServer({ id, ...endpoint, heartbeat: false } as IIpcServerOptions);
server.onMessage('hang', () => new Promise(() => undefined));
server.onMessage('echo', (data: unknown) => data);
await server.start();
process.send?.({ ready: server.getAddress() });
// Stay alive until killed, but never outlive the parent.
process.on('disconnect', () => process.exit(0));
