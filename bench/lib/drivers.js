// The sending side of every scenario, written once and driven through an adapter, so smartipc and
// the baseline run exactly the same loops. An adapter provides:
//   request(data) -> Promise<echo>                     one request/response ('echo')
//   send(type, data) -> Promise                        fire-and-forget; resolves when more may be sent
//   streamBytes(totalBytes, phase, shouldStop) -> Promise<{ mbPerSec }>
//                                                     a binary stream, resolved when the receiver saw its end
//   subscribe(topic, handler) -> Promise, publish(topic, data) -> Promise   (S6)
import { bigObject, binaryBlock, smallObject, tinyObject } from './payloads.js';
import { latencySummary } from './stats.js';
import { now, yieldToLoop } from './child.js';

/** Messages sent per turn of the event loop in the one-way scenarios. */
const BATCH = 128;
/** S6: how far the publisher may run ahead of the slowest subscriber (messages). */
const PUBLISH_WINDOW = 20_000;
/** S6: the subscribers acknowledge every this many deliveries. */
export const ACK_EVERY = 1_000;

export async function runClient(adapter, config) {
  switch (config.scenario) {
    case 'S1':
      return sequential(adapter, config);
    case 'S2':
      return pipelined(adapter, config);
    case 'S3':
      return oneWay(adapter, config, 'tick', tinyObject, BATCH, {});
    case 'S4': {
      const big = bigObject();
      const payloadBytes = Buffer.byteLength(JSON.stringify(big));
      return oneWay(adapter, config, 'blob', () => big, 1, { payloadBytes });
    }
    case 'S12':
      return routed(adapter, config);
    case 'S10':
    case 'S11': {
      const block = binaryBlock();
      return oneWay(adapter, config, 'bin', () => block, 1, { payloadBytes: block.length });
    }
    case 'S5':
      return stream(adapter, config);
    case 'S6':
      return publisher(adapter, config);
    case 'S7':
      return latencyUnderStream(adapter, config);
    default:
      throw new Error(`unknown scenario ${config.scenario}`);
  }
}

/** Sequential requests for `ms` (1 in flight); returns each round trip in ms. */
async function requestsFor(adapter, ms, seq, record) {
  const latencies = [];
  const end = now() + ms;
  let t = now();
  while (t < end) {
    const start = t;
    await adapter.request(smallObject(seq++));
    t = now();
    if (record) latencies.push(t - start);
  }
  return latencies;
}

/** S1: one request in flight. */
async function sequential(adapter, config) {
  await requestsFor(adapter, config.warmupMs, 0, false);
  const t0 = now();
  const latencies = await requestsFor(adapter, config.durationMs, 1e6, true);
  const seconds = (now() - t0) / 1000;
  return { roundTripsPerSec: latencies.length / seconds, ...latencySummary(latencies) };
}

/** S2: `inFlight` requests outstanding at all times; counts completions during the measured window. */
function pipelined(adapter, config) {
  return new Promise((resolve, reject) => {
    let seq = 0;
    let completed = 0;
    let outstanding = 0;
    let stopped = false;
    let c0 = 0;
    let t0 = 0;
    let figures;
    const issue = () => {
      outstanding++;
      adapter.request(smallObject(seq++)).then(done, reject);
    };
    const done = () => {
      outstanding--;
      completed++;
      if (!stopped) issue();
      else if (outstanding === 0) resolve(figures);
    };
    setTimeout(() => {
      c0 = completed;
      t0 = now();
      setTimeout(() => {
        const seconds = (now() - t0) / 1000;
        figures = { requestsPerSec: (completed - c0) / seconds, requests: completed - c0 };
        stopped = true;
      }, config.durationMs);
    }, config.warmupMs);
    for (let i = 0; i < config.inFlight; i++) issue();
  });
}

/** S3, S4: one-way messages; the receiver counts between 'mark' and 'done'. */
async function oneWay(adapter, config, type, makePayload, batch, markData) {
  let seq = 0;
  const blast = async (ms) => {
    const end = now() + ms;
    while (now() < end) {
      let last;
      for (let i = 0; i < batch; i++) last = adapter.send(type, makePayload(seq++));
      await last;
      await yieldToLoop();
    }
  };
  await blast(config.warmupMs);
  await adapter.send('mark', markData);
  await blast(config.durationMs);
  await adapter.send('done', {});
  return { sent: seq };
}

/** S5: a warm-up stream, then the measured one; throughput is measured by the receiver. */
async function stream(adapter, config) {
  await adapter.streamBytes(config.warmupStreamBytes, 'warmup', () => false);
  const figures = await adapter.streamBytes(config.streamBytes, 'measure', () => false);
  return { sentBytes: config.streamBytes, senderSeenMbPerSec: figures.mbPerSec };
}

/** S7: sequential requests on a connection that also carries an endless bulk stream. */
async function latencyUnderStream(adapter, config) {
  let stop = false;
  const streamDone = adapter.streamBytes(Infinity, 'bulk', () => stop);
  let streamError;
  streamDone.catch((err) => {
    streamError = err;
  });
  await requestsFor(adapter, config.warmupMs, 0, false);
  const t0 = now();
  const latencies = await requestsFor(adapter, config.durationMs, 1e6, true);
  const seconds = (now() - t0) / 1000;
  stop = true;
  if (streamError) throw streamError;
  const streamFigures = await streamDone;
  return { ...latencySummary(latencies), roundTripsPerSec: latencies.length / seconds, streamMbPerSec: streamFigures.mbPerSec };
}

/** S6 publisher: publishes tiny messages, never more than PUBLISH_WINDOW ahead of the slowest subscriber. */
async function publisher(adapter, config) {
  let acked = 0;
  let wake;
  await adapter.subscribe('bench.ack', (data) => {
    if (data.n > acked) acked = data.n;
    wake?.();
  });
  let seq = 0;
  const blast = async (ms) => {
    const end = now() + ms;
    while (now() < end) {
      if (seq - acked >= PUBLISH_WINDOW) {
        await new Promise((resolve) => {
          wake = resolve;
        });
        wake = undefined;
        continue;
      }
      let last;
      for (let i = 0; i < BATCH; i++) last = adapter.publish('bench.tick', tinyObject(seq++));
      await last;
      await yieldToLoop();
    }
  };
  await blast(config.warmupMs);
  await adapter.publish('bench.tick', { m: 1 });
  await blast(config.durationMs);
  await adapter.publish('bench.tick', { d: 1 });
  return { published: seq };
}

/**
 * S6 subscribers: counts deliveries per subscriber between the publisher's mark and done, and
 * acknowledges progress (the slowest subscriber's count) so the publisher's window moves.
 * Returns `onDelivery(index, data)`; calls `ack(n)` and `report(figures)`.
 */
export function subscriberCounter(subscribers, ack, report) {
  const total = new Array(subscribers).fill(0);
  const measured = new Array(subscribers).fill(0);
  let lastAck = 0;
  let t0 = 0;
  let marks = 0;
  let dones = 0;
  return (index, data) => {
    if (data.m !== undefined) {
      if (marks++ === 0) t0 = now();
      measured[index] = 0;
      return;
    }
    if (data.d !== undefined) {
      if (++dones === subscribers) {
        const seconds = (now() - t0) / 1000;
        const deliveries = measured.reduce((a, b) => a + b, 0);
        report({ deliveriesPerSec: deliveries / seconds, deliveries });
      }
      return;
    }
    total[index]++;
    measured[index]++;
    if (total[index] % ACK_EVERY === 0) {
      const slowest = Math.min(...total);
      if (slowest >= lastAck + ACK_EVERY) {
        lastAck = slowest;
        ack(slowest);
      }
    }
  };
}

/** S12: direct requests and routed calls (through the hub to a provider), pipelined and one at a time. */
async function routed(adapter, config) {
  const direct = await pipelined(adapter, config);
  const cpuBefore = await adapter.hubCpu();
  const routedFigures = await pipelined({ request: (data) => adapter.call(data) }, config);
  const cpuAfter = await adapter.hubCpu();
  const cpuUs = cpuAfter.user + cpuAfter.system - (cpuBefore.user + cpuBefore.system);
  const short = { ...config, warmupMs: Math.min(config.warmupMs, 500), durationMs: Math.max(200, Math.floor(config.durationMs / 2)) };
  const directLatency = await requestsFor(adapter, short.warmupMs, 0, false).then(() => requestsFor(adapter, short.durationMs, 1e6, true));
  const routedAdapter = { request: (data) => adapter.call(data) };
  const routedLatency = await requestsFor(routedAdapter, short.warmupMs, 0, false).then(() => requestsFor(routedAdapter, short.durationMs, 2e6, true));
  const directP50Us = latencySummary(directLatency).p50Us;
  const routedP50Us = latencySummary(routedLatency).p50Us;
  return {
    directPerSec: direct.requestsPerSec,
    routedPerSec: routedFigures.requestsPerSec,
    routedOverDirect: routedFigures.requestsPerSec / direct.requestsPerSec,
    directP50Us,
    routedP50Us,
    p50RoutedOverDirect: routedP50Us / directP50Us,
    // The cpu figure covers the routed phase and its drain (the last calls in flight).
    hubCpuUsPerCall: cpuUs / Math.max(1, routedFigures.requests),
  };
}
