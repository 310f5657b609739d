// Baseline client: the scenario drivers over the raw node:net framer.
import { config, main, markMemoryStart, onStop, ready, result } from '../lib/child.js';
import { runClient } from '../lib/drivers.js';
import { binaryBlock, STREAM_CHUNK_BYTES } from '../lib/payloads.js';
import { connect } from './connection.js';
import { KIND, parseJson, readPrefixed } from './framer.js';

/** A stream's sender may have this many bytes unacknowledged by the receiver. */
const STREAM_WINDOW_BYTES = 1024 * 1024;
const EMPTY = Buffer.alloc(0);
const MESSAGE_KINDS = { tick: KIND.MSG, blob: KIND.MSG, mark: KIND.MARK, done: KIND.DONE };

main(async () => {
  let credit = STREAM_WINDOW_BYTES;
  let creditWaiter;
  const streamWaiters = new Map();
  const topicHandlers = new Map();

  const conn = await connect(config.socketPath, (kind, id, buf, start, end) => {
    switch (kind) {
      case KIND.CREDIT:
        credit += id;
        creditWaiter?.();
        return;
      case KIND.DONE: {
        const figures = parseJson(buf, start, end);
        streamWaiters.get(figures.phase)?.(figures);
        return;
      }
      case KIND.DELIVER: {
        const { prefix, bodyStart } = readPrefixed(buf, start);
        topicHandlers.get(prefix)?.(parseJson(buf, bodyStart, end));
        return;
      }
      default:
        throw new Error(`baseline client: unexpected frame kind ${kind}`);
    }
  });

  let nextStreamId = 1;
  const block = config.scenario === 'S5' || config.scenario === 'S7' ? binaryBlock() : undefined;

  const adapter = {
    request: (data) => conn.request(data),
    send: (type, data) => {
      if (type !== 'bin') return conn.send(MESSAGE_KINDS[type], data);
      conn.writer.writeBuffer(KIND.BIN, 0, data);
      return conn.drained();
    },
    async streamBytes(totalBytes, phase, shouldStop) {
      const done = new Promise((resolve) => streamWaiters.set(phase, resolve));
      const streamId = nextStreamId++;
      const writer = conn.writer;
      writer.writeString(KIND.STREAM_OPEN, streamId, JSON.stringify({ phase }));
      let sent = 0;
      let offset = 0;
      while (sent < totalBytes && !shouldStop()) {
        if (credit < STREAM_CHUNK_BYTES) {
          await new Promise((resolve) => {
            creditWaiter = resolve;
          });
          creditWaiter = undefined;
          continue;
        }
        // Fill the window in one go; the writer sends it as one writev.
        while (credit >= STREAM_CHUNK_BYTES && sent < totalBytes) {
          writer.writeBuffer(KIND.CHUNK, streamId, block, offset, offset + STREAM_CHUNK_BYTES);
          offset = (offset + STREAM_CHUNK_BYTES) % block.length;
          credit -= STREAM_CHUNK_BYTES;
          sent += STREAM_CHUNK_BYTES;
        }
        await conn.drained();
      }
      writer.writeBuffer(KIND.STREAM_END, streamId, EMPTY);
      return done;
    },
    async subscribe(topic, handler) {
      topicHandlers.set(topic, handler);
      conn.writer.writeString(KIND.SUB, 0, topic);
      await conn.request({ sync: true });
    },
    publish(topic, data) {
      conn.writer.writePrefixed(KIND.PUB, 0, topic, JSON.stringify(data));
      return conn.drained();
    },
  };

  onStop(async () => conn.close());
  markMemoryStart();
  await ready();
  await result(await runClient(adapter, config));
});
