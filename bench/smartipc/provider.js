// smartipc S12 provider: a client that provides the "bench" service through the hub.
import { SmartIpc } from '../../dist_ts/index.js';
import { config, fail, main, markMemoryStart, onStop, ready } from '../lib/child.js';

main(async () => {
  const client = SmartIpc.createClient({ id: 'bench', socketPath: config.socketPath, clientId: 'bench-provider' });
  client.on('error', (error) => void fail(error));
  onStop(() => client.disconnect());
  await client.provide('bench', { echo: (params) => params });
  await client.connect();
  // Announced before connect() resolved its handshake; one round trip makes sure the hub has it.
  await client.request('echo', { sync: true });
  markMemoryStart();
  await ready();
});
