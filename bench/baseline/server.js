// Baseline server: the receiving side of every scenario, on a raw node:net Unix socket.
import * as fs from 'node:fs';
import * as net from 'node:net';
import { config, fail, now, onStop, ready, result, markMemoryStart, main } from '../lib/child.js';
import { FrameReader, FrameWriter, KIND, parseJson, readPrefixed } from './framer.js';

/** Credit is granted back to a stream's sender in steps of this many bytes. */
const CREDIT_STEP_BYTES = 256 * 1024;

main(async () => {
  const scenario = config.scenario;
  const topics = new Map(); // S6: topic -> Set of connections
  let connections = 0;
  const sockets = new Set();
  const EMPTY = Buffer.alloc(0);

  const server = net.createServer((socket) => {
    const connectionId = ++connections;
    socket.setNoDelay?.(true);
    socket.on('error', () => {});
    sockets.add(socket);
    const writer = new FrameWriter(socket);
    const peer = { id: connectionId, writer };
    // Per-connection counters (S3, S4) and the stream being received (S5, S7).
    let t0 = 0;
    let count = 0;
    let payloadBytes = 0;
    let stream;
    let credit = 0;

    const reader = new FrameReader((kind, id, buf, start, end) => {
      switch (kind) {
        case KIND.REQ: // S1, S2, S6 (sync), S7: echo the decoded object
          writer.writeString(KIND.RES, id, JSON.stringify(parseJson(buf, start, end)));
          return;
        case KIND.MSG: // S3, S4: decode and count
          parseJson(buf, start, end);
          count++;
          return;
        case KIND.BIN: // S10, S11: a binary payload: nothing to decode, the bytes are the message
          count++;
          return;
        case KIND.MARK:
          payloadBytes = end > start ? parseJson(buf, start, end).payloadBytes ?? 0 : 0;
          count = 0;
          t0 = now();
          return;
        case KIND.DONE: {
          const seconds = (now() - t0) / 1000;
          if (scenario === 'S4' || scenario === 'S10' || scenario === 'S11') void result({ mbPerSec: (count * payloadBytes) / 1e6 / seconds, messages: count });
          else void result({ messagesPerSec: count / seconds, messages: count });
          return;
        }
        case KIND.STREAM_OPEN:
          stream = { id, phase: parseJson(buf, start, end).phase, bytes: 0, t0: now() };
          credit = 0;
          return;
        case KIND.CHUNK:
          stream.bytes += end - start;
          credit += end - start;
          if (credit >= CREDIT_STEP_BYTES) {
            writer.writeBuffer(KIND.CREDIT, credit, EMPTY);
            credit = 0;
          }
          return;
        case KIND.STREAM_END: {
          const seconds = (now() - stream.t0) / 1000;
          const figures = { mbPerSec: stream.bytes / 1e6 / seconds, bytes: stream.bytes };
          if (stream.phase === 'measure') void result(figures);
          writer.writeString(KIND.DONE, stream.id, JSON.stringify({ phase: stream.phase, ...figures }));
          stream = undefined;
          return;
        }
        case KIND.SUB: {
          const topic = buf.toString('utf8', start, end);
          if (!topics.has(topic)) topics.set(topic, new Set());
          topics.get(topic).add(peer);
          return;
        }
        case KIND.PUB: {
          // Forward the payload as it came (topic + JSON): a broker need not decode it.
          const { prefix } = readPrefixed(buf, start);
          const subscribers = topics.get(prefix);
          if (subscribers === undefined) return;
          for (const subscriber of subscribers) {
            if (subscriber !== peer) subscriber.writer.writeBuffer(KIND.DELIVER, connectionId, buf, start, end);
          }
          return;
        }
        default:
          throw new Error(`baseline server: unexpected frame kind ${kind}`);
      }
    });
    socket.on('data', (chunk) => reader.push(chunk));
    socket.on('close', () => {
      sockets.delete(socket);
      for (const set of topics.values()) set.delete(peer);
    });
  });

  fs.rmSync(config.socketPath, { force: true });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.socketPath, resolve);
  });
  onStop(async () => {
    await new Promise((resolve) => {
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    });
    fs.rmSync(config.socketPath, { force: true });
  });
  markMemoryStart();
  await ready();
});
