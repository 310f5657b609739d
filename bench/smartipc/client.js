// smartipc client: the scenario drivers through the built package's public API.
import { Readable } from 'node:stream';
import { SmartIpc } from '../../dist_ts/index.js';
import { config, fail, main, markMemoryStart, onStop, ready, result, skip } from '../lib/child.js';
import { runClient } from '../lib/drivers.js';
import { binaryBlock, STREAM_CHUNK_BYTES } from '../lib/payloads.js';
import { missingFeature } from './features.js';

main(async () => {
  const serialization = config.scenario === 'S11' ? 'advanced' : 'json';
  const client = SmartIpc.createClient({ id: 'bench', socketPath: config.socketPath, clientId: 'bench-client', serialization });
  client.on('error', (error) => void fail(error));
  onStop(() => client.disconnect());
  const missing = missingFeature(client, config.scenario);
  if (missing) {
    await ready();
    await skip(missing);
    return;
  }
  await client.connect();

  const streamWaiters = new Map();
  client.onMessage('streamDone', (figures) => streamWaiters.get(figures.phase)?.resolve(figures));
  const block = config.scenario === 'S5' || config.scenario === 'S7' ? binaryBlock() : undefined;

  const adapter = {
    request: (data) => client.request('echo', data),
    call: (data) => client.call('bench', 'echo', data),
    hubCpu: () => client.request('cpu'),
    send: (type, data) => client.sendMessage(type, data),
    streamBytes(totalBytes, phase, shouldStop) {
      return new Promise((resolve, reject) => {
        streamWaiters.set(phase, { resolve, reject });
        let sent = 0;
        const source = new Readable({
          highWaterMark: block.length,
          read() {
            if (sent >= totalBytes || shouldStop()) {
              this.push(null);
              return;
            }
            sent += block.length;
            this.push(block);
          },
        });
        const started = client.sendStream(source, { meta: { phase }, chunkSize: STREAM_CHUNK_BYTES });
        if (started && typeof started.then === 'function') started.then(undefined, reject);
      });
    },
    subscribe: (topic, handler) => client.subscribe(topic, handler),
    publish: (topic, data) => client.publish(topic, data),
  };

  markMemoryStart();
  await ready();
  await result(await runClient(adapter, config));
});
