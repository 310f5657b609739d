// A client in its own process that floods a server with requests, for the rate-limit tests: the
// adversary does not share the server's event loop.
//   node --import tsx test/helpers/security-flooder.ts '<client options JSON>' <durationMs> <inFlight>
// Sends { ready: clientId } once connected; on { go: true } keeps <inFlight> requests of type
// 'echo' in flight for <durationMs>, then sends { result } and exits.
import { IpcError, SmartIpc, type IIpcClientOptions } from '../../ts/index.js';

const [optionsJson, durationArg, inFlightArg] = process.argv.slice(2);
const durationMs = Number(durationArg);
const inFlight = Number(inFlightArg);
const client = SmartIpc.createClient({ clientOnly: true, reconnect: { enabled: false }, ...(JSON.parse(optionsJson) as object) } as IIpcClientOptions);
client.on('error', () => undefined);
process.on('disconnect', () => process.exit(0));

interface IFloodResult {
  ok: number;
  limited: number;
  other: Record<string, number>;
  /** performance.now() span from the first request sent to the last answer, ms. */
  spanMs: number;
  /** Smallest and largest retryAfterMs seen on RATE_LIMITED. */
  retryAfterMs: [number, number];
}

async function flood(): Promise<IFloodResult> {
  const result: IFloodResult = { ok: 0, limited: 0, other: {}, spanMs: 0, retryAfterMs: [Infinity, 0] };
  const start = performance.now();
  const end = start + durationMs;
  let last = start;
  const lane = async () => {
    while (performance.now() < end) {
      try {
        await client.request('echo', 1, { timeout: 5_000 });
        result.ok++;
      } catch (err) {
        const code = err instanceof IpcError ? err.code : 'OTHER';
        if (code === 'RATE_LIMITED') {
          result.limited++;
          const after = (err as IpcError).retryAfterMs ?? -1;
          result.retryAfterMs = [Math.min(result.retryAfterMs[0], after), Math.max(result.retryAfterMs[1], after)];
        } else result.other[code] = (result.other[code] ?? 0) + 1;
      }
      last = performance.now();
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  result.spanMs = last - start;
  return result;
}

process.on('message', (message: { go?: boolean }) => {
  if (!message?.go) return;
  flood().then(
    async (result) => {
      process.send?.({ result }, () => undefined);
      await client.disconnect();
      process.exit(0);
    },
    (err: Error) => {
      process.stderr.write(`security-flooder: ${err.stack ?? err.message}\n`);
      process.exit(1);
    },
  );
});

client.connect().then(
  () => process.send?.({ ready: client.getClientId() }),
  (err: Error) => {
    process.stderr.write(`security-flooder: connect failed: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
