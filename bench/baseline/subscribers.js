// Baseline S6 subscribers: one process holding `subscribers` connections to the broker.
import { config, main, markMemoryStart, onStop, ready, result } from '../lib/child.js';
import { subscriberCounter } from '../lib/drivers.js';
import { connect } from './connection.js';
import { KIND, parseJson, readPrefixed } from './framer.js';

main(async () => {
  const connections = [];
  const onDelivery = subscriberCounter(
    config.subscribers,
    (n) => {
      connections[0].writer.writePrefixed(KIND.PUB, 0, 'bench.ack', JSON.stringify({ n }));
    },
    (figures) => void result(figures),
  );
  for (let i = 0; i < config.subscribers; i++) {
    const conn = await connect(config.socketPath, (kind, id, buf, start, end) => {
      if (kind !== KIND.DELIVER) throw new Error(`baseline subscriber: unexpected frame kind ${kind}`);
      const { bodyStart } = readPrefixed(buf, start); // the topic is decoded, as a subscriber learns it
      onDelivery(i, parseJson(buf, bodyStart, end));
    });
    conn.writer.writeString(KIND.SUB, 0, 'bench.tick');
    // Frames are handled in order: once this echo is back, the subscription is registered.
    await conn.request({ sync: true });
    connections.push(conn);
  }
  onStop(async () => {
    for (const conn of connections) conn.close();
  });
  markMemoryStart();
  await ready();
});
