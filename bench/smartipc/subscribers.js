// smartipc S6 subscribers: one process holding `subscribers` clients of the server.
import { SmartIpc } from '../../dist_ts/index.js';
import { config, fail, main, markMemoryStart, onStop, ready, result, skip } from '../lib/child.js';
import { subscriberCounter } from '../lib/drivers.js';
import { missingFeature } from './features.js';

main(async () => {
  const clients = [];
  onStop(() => Promise.all(clients.map((client) => client.disconnect())));
  const onDelivery = subscriberCounter(
    config.subscribers,
    (n) => {
      clients[0].publish('bench.ack', { n }).catch(fail);
    },
    (figures) => void result(figures),
  );
  for (let i = 0; i < config.subscribers; i++) {
    const client = SmartIpc.createClient({ id: 'bench', socketPath: config.socketPath, clientId: `bench-sub-${i}` });
    const missing = missingFeature(client, 'S6');
    if (missing) {
      await ready();
      await skip(missing);
      return;
    }
    client.on('error', (error) => void fail(error));
    clients.push(client);
    await client.connect();
    await client.subscribe('bench.tick', (data) => onDelivery(i, data));
    // Frames are handled in order: once this echo is back, the subscription is registered.
    await client.request('echo', { sync: true });
  }
  markMemoryStart();
  await ready();
});
