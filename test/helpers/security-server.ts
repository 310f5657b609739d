// A server in its own process, so that its memory can be measured alone (the security tests).
//   node --import tsx test/helpers/security-server.ts '<server options JSON>'
// Sends { ready: address } once serving; answers { rss: true } with { rss } (bytes) and
// { stats: true } with { stats } (getStats()). 'echo' answers its data.
import { SmartIpc, type IIpcServerOptions } from '../../ts/index.js';

const options = JSON.parse(process.argv[2] ?? '{}') as IIpcServerOptions;
const server = SmartIpc.createServer({ heartbeat: false, ...options });
server.onMessage('echo', (data: unknown) => data);
let messageErrors = 0;
server.on('messageError', () => messageErrors++);
await server.start();
process.on('message', (message: { rss?: boolean; stats?: boolean }) => {
  if (message?.rss) process.send?.({ rss: process.memoryUsage().rss });
  if (message?.stats) process.send?.({ stats: { ...server.getStats(), messageErrors } });
});
process.send?.({ ready: server.getAddress() });
process.on('disconnect', () => process.exit(0));
