// A raw node:net server speaking the wire protocol by hand (lib/wire.ts): it completes the
// handshake, answers `echo` at once and every other request only after its deadline budget has
// passed (plus `lateByMs`), ignoring cancel frames. A client must drop those late replies.
// Commands: stats -> { requests, lateRepliesSent, cancelsReceived, budgets }.
import * as fs from 'node:fs';
import * as net from 'node:net';
import { runRole } from '../role.js';
import { ENC, FrameReader, KIND, buildFrame, jsonFrame } from '../wire.js';
import { defaults } from '../../../../ts/index.js';

interface ILatePeerConfig {
  hardTimeoutMs?: number;
  id: string;
  socketPath: string;
  /** Replies come this much (ms, uniformly random up to it) after the request's budget ran out. */
  lateByMs: number;
}

runRole<ILatePeerConfig>('late-peer', async (config) => {
  const stats = { requests: 0, lateRepliesSent: 0, cancelsReceived: 0, withoutBudget: 0 };
  fs.rmSync(config.socketPath, { force: true });
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    let welcomed = false;
    const reader = new FrameReader((frame) => {
      if (!welcomed) {
        if (frame.kind !== KIND.Hello) return socket.destroy();
        const hello = JSON.parse(frame.payload.toString('utf8')) as { clientId: string; maxMessageSize: number };
        socket.write(jsonFrame(KIND.Welcome, 0, '', { serverId: config.id, clientId: hello.clientId, protocolVersion: defaults.PROTOCOL_VERSION, serialization: 'json', maxMessageSize: defaults.DEFAULT_MAX_MESSAGE_SIZE_BYTES }));
        welcomed = true;
        return;
      }
      if (frame.kind === KIND.Ping) return void socket.write(buildFrame({ kind: KIND.Pong }));
      if (frame.kind === KIND.Cancel) return void stats.cancelsReceived++;
      if (frame.kind !== KIND.Request) return;
      stats.requests++;
      const reply = buildFrame({ kind: KIND.Response, flags: ENC.Json, id: frame.id, payload: JSON.stringify(frame.type === 'echo' ? frame.payload.toString('utf8') : 'late') });
      if (frame.type === 'echo') return void socket.write(reply);
      if (frame.budgetMs < 0) stats.withoutBudget++;
      const after = Math.max(0, frame.budgetMs) + 1 + Math.random() * config.lateByMs;
      setTimeout(() => {
        if (socket.destroyed) return;
        socket.write(reply);
        stats.lateRepliesSent++;
      }, after);
    });
    socket.on('data', (chunk: Buffer) => reader.push(chunk));
  });
  await new Promise<void>((resolve) => server.listen({ path: config.socketPath }, resolve));
  return { commands: { stats: () => ({ ...stats }) } };
});
