// A worker of the demo: forked by demo.js (SmartIpc.fork, a private pipe to its parent), it joins
// the hub as a client and provides the "inventory" service there, then tells its parent it is ready.
import { SmartIpc } from '../dist_ts/index.js';

const log = (...args) => console.log('    [worker]', ...args);
const parent = await SmartIpc.connectParent();
const socketPath = process.env.DEMO_SOCKET;

const hub = SmartIpc.createClient({ id: 'demo-service', socketPath, clientId: 'inventory-worker', clientOnly: true });
const stock = new Map([['widget', 7], ['gadget', 2]]);
await hub.provide('inventory', {
  reserve: ({ item, count }, ctx) => {
    const left = stock.get(item) ?? 0;
    if (left < count) throw new Error(`only ${left} ${item}(s) left`);
    stock.set(item, left - count);
    log(`reserved ${count} ${item}(s) for ${ctx.callerId} (chain ${ctx.chain.join(' -> ')}, ${Math.round(ctx.remainingMs())} ms left)`);
    return { item, reserved: count, left: left - count };
  },
});
await hub.connect();
parent.onMessage('stop', async () => {
  await hub.disconnect();
  setImmediate(() => void parent.stop());
  return 'stopped';
});
await parent.sendMessage('ready', { pid: process.pid });
