// A whole session in a fresh process that must then exit BY ITSELF (no process.exit): proves the
// library leaves no timer or handle that keeps the event loop alive.
// Usage: node --import tsx child.lifecycle.ts <socketPath>
import { SmartIpc } from '../../ts/index.js';

const socketPath = process.argv[2];
const id = `lifecycle-${process.pid}`;
const server = SmartIpc.createServer({ id, socketPath, heartbeatInterval: 100, heartbeatTimeout: 400 });
server.onMessage('echo', (data: unknown) => data);
server.onMessage('slow', () => new Promise((resolve) => setTimeout(() => resolve('slow'), 200)));
await server.start();

const tcp = SmartIpc.createServer({ id, host: '127.0.0.1', port: 0 });
tcp.onMessage('echo', (data: unknown) => data);
await tcp.start();
const tcpPort = (tcp.getAddress() as { port: number }).port;

// Default client options: heartbeat on, reconnect on (stubborn), requestTimeout 30 s.
const client = SmartIpc.createClient({ id, socketPath, clientOnly: true, heartbeatInterval: 100, heartbeatTimeout: 400 });
const tcpClient = SmartIpc.createClient({ id, host: '127.0.0.1', port: tcpPort, clientOnly: true });
await client.connect();
await tcpClient.connect();
await client.request('echo', 1);
await tcpClient.request('echo', 2);
await client.request('slow').catch(() => undefined);
await client.request('slow', undefined, { timeout: 10 }).catch(() => undefined);
await client.request('nothing-handles-this').catch(() => undefined);
const aborted = new AbortController();
const pendingAbort = client.request('slow', undefined, { signal: aborted.signal }).catch(() => undefined);
aborted.abort();
await pendingAbort;
// A request left pending over the disconnect.
const pending = client.request('slow').catch(() => undefined);
await client.disconnect();
await pending;
await tcpClient.disconnect();
await server.stop();
await tcp.stop();

// A failed connect with retries.
const lonely = SmartIpc.createClient({ id, socketPath, clientOnly: true, connectRetry: { enabled: true, initialDelay: 10, maxAttempts: 3 } });
await lonely.connect().catch(() => undefined);
await lonely.disconnect();

process.send?.({ done: true });
process.disconnect?.();
// Nothing else: the process must now exit on its own.
