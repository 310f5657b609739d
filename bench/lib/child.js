// The harness every benchmark child process runs under: its configuration, messages to the runner,
// memory figures, and the guarantees that it never outlives the runner or its time bound.
//
// Messages to the runner (process.send; printed as JSON lines on stdout when run by hand):
//   { type: 'ready' }                 the role is listening / connected and may be measured against
//   { type: 'result', data }          the role's figures for this run
//   { type: 'skip', reason }          the library lacks a feature this scenario needs
//   { type: 'final', data }           memory figures, sent when the runner says 'stop', just before exit
//   { type: 'error', message }        anything that went wrong; the child exits 1 after it

/** { scenario, role, socketPath, warmupMs, durationMs, streamBytes, warmupStreamBytes, subscribers, inFlight, hardTimeoutMs } */
export const config = JSON.parse(process.argv[2] ?? '{}');

export const now = () => performance.now();
export const yieldToLoop = () => new Promise((resolve) => setImmediate(resolve));
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function post(message) {
  return new Promise((resolve) => {
    if (process.send && process.connected) process.send(message, () => resolve());
    else {
      process.stdout.write(`${JSON.stringify(message)}\n`);
      resolve();
    }
  });
}

export const ready = () => post({ type: 'ready' });
export const result = (data) => post({ type: 'result', data });

/** The feature is missing from the built library: say so and wait for 'stop'. */
export function skip(reason) {
  return post({ type: 'skip', reason });
}

export async function fail(error) {
  await post({ type: 'error', message: error?.stack ?? String(error) });
  process.exit(1);
}

// ---- memory --------------------------------------------------------------------------------------

let rssStartBytes = process.memoryUsage.rss();

/** Call once setup is done (connected, payloads built): growth is measured from here. */
export function markMemoryStart() {
  rssStartBytes = process.memoryUsage.rss();
}

function memoryReport() {
  // maxRSS is the kernel's lifetime peak (KiB): it cannot miss a short spike the way sampling can.
  const peakRssBytes = process.resourceUsage().maxRSS * 1024;
  return { rssStartBytes, peakRssBytes, rssGrowthBytes: Math.max(0, peakRssBytes - rssStartBytes) };
}

// ---- lifecycle -----------------------------------------------------------------------------------

let cleanup = async () => {};

/** What to close when the runner says 'stop' (servers stopped, sockets closed). */
export function onStop(fn) {
  cleanup = fn;
}

process.on('message', async (message) => {
  if (message?.type !== 'stop') return;
  const memory = memoryReport();
  try {
    await Promise.race([cleanup(), sleep(2_000)]);
  } catch {
    // exiting anyway
  }
  await post({ type: 'final', data: memory });
  process.exit(0);
});

// The runner died or closed the channel: never linger.
process.on('disconnect', () => process.exit(2));
process.on('uncaughtException', (err) => void fail(err));
process.on('unhandledRejection', (err) => void fail(err));

const hardTimer = setTimeout(() => {
  process.stderr.write(`bench child ${config.role} (${config.scenario}) hit its hard timeout of ${config.hardTimeoutMs} ms\n`);
  process.exit(3);
}, config.hardTimeoutMs ?? 120_000);
hardTimer.unref();

/** Runs the role's main function, reporting a throw. */
export function main(fn) {
  fn().catch((err) => fail(err));
}
