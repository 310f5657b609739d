// The child of smartipc/parent.js.
import { SmartIpc } from '../../dist_ts/index.js';

const channel = await SmartIpc.connectParent();
let received = 0;
channel.onMessage('tick', () => {
  received++;
});
channel.onMessage('echo', (data) => data);
channel.onMessage('count', () => received);
