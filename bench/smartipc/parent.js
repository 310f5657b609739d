// smartipc parent (S8 json, S9 advanced): SmartIpc.fork over the private pipe.
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SmartIpc } from '../../dist_ts/index.js';
import { config, main, markMemoryStart, onStop, ready, result } from '../lib/child.js';
import { runParent } from '../lib/forkdrivers.js';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'forkchild.js');

main(async () => {
  const serialization = config.scenario === 'S9' ? 'advanced' : 'json';
  const { channel, child } = await SmartIpc.fork(CHILD, { serialization, execArgv: [] });
  onStop(async () => {
    await channel.stop();
    child.kill();
  });
  const adapter = {
    send: (data) => channel.sendMessage('tick', data),
    request: (data) => channel.request('echo', data),
    received: () => channel.request('count'),
  };
  markMemoryStart();
  await ready();
  await result(await runParent(adapter, config));
});
