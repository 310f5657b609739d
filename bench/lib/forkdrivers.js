// S8/S9, parent and child processes: the parent's loops, written once for smartipc's fork link and
// for Node's own child_process IPC. An adapter provides:
//   send(data) -> Promise          one-way to the child; resolves when more may be sent
//   request(data) -> Promise       one request/response ('echo') to the child
//   received() -> Promise<number>  the child's count of one-way messages so far (a request itself)
import { smallObject, tinyObject } from './payloads.js';
import { now } from './child.js';

const BATCH = 128;

export async function runParent(adapter, config) {
  const messagesPerSec = await oneWay(adapter, config);
  const requestsPerSec = await pipelined(adapter, config);
  return { messagesPerSec, requestsPerSec };
}

/** Messages sent in batches for warm-up + duration; the rate is what the child counted in the window. */
async function oneWay(adapter, config) {
  let seq = 0;
  const sendFor = async (ms) => {
    const end = now() + ms;
    while (now() < end) {
      let last;
      for (let i = 0; i < BATCH; i++) last = adapter.send(tinyObject(seq++));
      await last;
    }
  };
  await sendFor(config.warmupMs);
  const c0 = await adapter.received();
  const t0 = now();
  await sendFor(config.durationMs);
  const c1 = await adapter.received();
  return (c1 - c0) / ((now() - t0) / 1000);
}

/** `inFlight` echo requests outstanding at all times; completions per second in the measured window. */
function pipelined(adapter, config) {
  return new Promise((resolve, reject) => {
    let seq = 0;
    let completed = 0;
    let measuring = false;
    let stopped = false;
    let c0 = 0;
    let t0 = 0;
    const issue = () => adapter.request(smallObject(seq++)).then(done, reject);
    const done = () => {
      completed++;
      if (!stopped) issue();
    };
    for (let i = 0; i < config.inFlight; i++) issue();
    setTimeout(() => {
      measuring = true;
      c0 = completed;
      t0 = now();
      setTimeout(() => {
        stopped = true;
        void measuring;
        resolve((completed - c0) / ((now() - t0) / 1000));
      }, config.durationMs);
    }, config.warmupMs);
  });
}
