// A child started by SmartIpc.fork in test.fork.ts. Its behaviour is chosen by argv[2].
import * as crypto from 'node:crypto';
import { Readable } from 'node:stream';
import { SmartIpc } from '../../ts/index.js';

const mode = process.argv[2] ?? 'serve';

if (mode === 'never') {
  // Never calls connectParent: fork must time out and kill it.
  setTimeout(() => undefined, 60_000);
} else if (mode === 'exit-early') {
  process.exit(3);
} else {
  const channel = await SmartIpc.connectParent({ heartbeatInterval: 200, heartbeatTimeout: 1_000, heartbeatInitialGracePeriodMs: 0 });
  // Registered right after the await: requests the parent sends at once must still find them.
  channel.onMessage('echo', (data) => data);
  channel.onMessage('add', (data: { a: number; b: number }) => data.a + data.b);
  channel.onMessage('pid', () => process.pid);
  channel.onMessage('ask-parent', async (data: number) => channel.request<number, number>('double', data));
  channel.onMessage('tell-parent', async (text: string) => {
    await channel.sendMessage('told', `child heard: ${text}`);
  });
  channel.onMessage('hang', () => new Promise(() => undefined));
  channel.onMessage('crash', () => {
    process.kill(process.pid, 'SIGKILL');
  });
  channel.onMessage('send-bytes', async (size: number) => {
    const block = crypto.randomBytes(size);
    await channel.sendStream(Readable.from([block], { objectMode: false }), { meta: { size }, checksum: 'sha256' });
    return crypto.createHash('sha256').update(block).digest('hex');
  });
  channel.onMessage('stats', () => channel.getStats());
  channel.on('stream', (info, readable) => {
    const hash = crypto.createHash('sha256');
    let bytes = 0;
    readable.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    readable.on('end', () => void channel.sendMessage('stream-digest', { streamId: info.streamId, bytes, sha256: hash.digest('hex'), meta: info.meta }));
  });
  // The parent closing the link ends the child: nothing else keeps it alive.
  channel.on('disconnect', (reason) => {
    if (mode === 'report-disconnect') process.exitCode = reason.code === 'CONNECTION_LOST' ? 42 : 43;
  });
  if (mode === 'stop-itself') {
    channel.onMessage('stop-now', () => {
      setImmediate(() => void channel.stop());
      return 'stopping';
    });
  }
}
