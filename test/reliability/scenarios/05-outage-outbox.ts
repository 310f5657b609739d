// 5. Publishing through an outage: three publishers (outbox at its default, at 1 MiB, disabled)
// each publish 5,000 x 1 KiB while the server (its own process) is down for 2 s, then it restarts.
// A subscriber inside the server process holds the pattern before any other client can connect
// (the server binds a temporary path and renames it into place once subscribed), so a publish
// that left an outbox cannot miss it.
// Pass: delivered + rejected = sent for each publisher; the delivered ones arrive once, in order,
// and are exactly the accepted ones (a rejected publish never arrives).
import { SmartIpc, isIpcError, type IpcClient, type IIpcClientOptions } from '../../../ts/index.js';
import { KIB, MIB, fmtInt, fmtMs, now, sleep } from '../lib/measure.js';
import { pick, progress, runScenario, socketPath, startRole, until, type Role } from '../lib/scenario.js';

const MESSAGES = pick(2_500, 5_000);
const OUTAGE_MS = pick(1_000, 2_000);
const PAYLOAD = 'x'.repeat(KIB - 16);

interface IPublisher {
  name: string;
  outbox: IIpcClientOptions['outbox'];
  client?: IpcClient;
  accepted: number[];
  rejected: number[];
  otherCodes: Record<string, number>;
  hung: number;
}

runScenario('publishing through an outage', async (v) => {
  const path = socketPath('s');
  const id = 'rel-5';
  const serverConfig = { id, socketPath: path, localSubscriber: { pattern: 'outage.>' } };
  let server: Role = await startRole({ script: 'server.ts', name: 'server', config: serverConfig });
  const publishers: IPublisher[] = [
    { name: 'default', outbox: undefined, accepted: [], rejected: [], otherCodes: {}, hung: 0 },
    { name: '1MiB', outbox: { maxMessages: Infinity, maxBytes: MIB }, accepted: [], rejected: [], otherCodes: {}, hung: 0 },
    { name: 'disabled', outbox: { maxMessages: 0, maxBytes: 0 }, accepted: [], rejected: [], otherCodes: {}, hung: 0 },
  ];
  for (const p of publishers) {
    p.client = SmartIpc.createClient({ id, socketPath: path, clientOnly: true, clientId: `pub-${p.name}`, ...(p.outbox ? { outbox: p.outbox } : {}) });
    p.client.on('error', () => undefined);
    await p.client.connect();
  }

  // The outage: SIGKILL, and every publisher has seen the connection go before publishing.
  const down = publishers.map((p) => new Promise<void>((resolve) => p.client!.once('disconnect', () => resolve())));
  const killAt = now();
  server.signal('SIGKILL');
  await server.exited;
  await Promise.all(down);
  // Publish evenly over the outage (the last ones shortly before the restart).
  const publishes: Array<Promise<void>> = [];
  const spreadMs = OUTAGE_MS - 200;
  const t0 = now();
  for (let seq = 0; seq < MESSAGES; seq++) {
    const dueAt = t0 + (seq / MESSAGES) * spreadMs;
    if (dueAt > now()) await sleep(dueAt - now());
    for (const p of publishers) {
      publishes.push(p.client!.publish(`outage.${p.name}`, { seq, payload: PAYLOAD }).then(
        () => void p.accepted.push(seq),
        (err: unknown) => {
          if (isIpcError(err, 'NOT_CONNECTED')) p.rejected.push(seq);
          else {
            const code = (err as { code?: string }).code ?? 'other';
            p.otherCodes[code] = (p.otherCodes[code] ?? 0) + 1;
          }
        },
      ));
    }
  }
  await sleep(Math.max(0, killAt + OUTAGE_MS - now()));
  const restartAt = now();
  server = await startRole({ script: 'server.ts', name: 'server', config: serverConfig });
  // Every publish settles once its publisher has reconnected and flushed (bounded).
  const allSettled = await Promise.race([Promise.all(publishes).then(() => true), sleep(15_000).then(() => false)]);
  const settledMs = now() - restartAt;
  // Then the deliveries: what was accepted must arrive (bounded wait).
  const expected = publishers.reduce((sum, p) => sum + p.accepted.length, 0);
  let report = { received: {} as Record<string, number[]>, duplicates: 0 };
  await until(async () => {
    report = await server.call<typeof report>('localReport');
    return Object.values(report.received).reduce((sum, list) => sum + list.length, 0) >= expected;
  }, 5_000, 50);
  await sleep(200); // anything extra (a duplicate, a rejected one) would arrive now
  report = await server.call<typeof report>('localReport');

  let lost = 0;
  const parts: string[] = [];
  for (const p of publishers) {
    const got = report.received[`pub-${p.name}`] ?? [];
    const acceptedSet = new Set(p.accepted);
    const inOrder = got.every((seq, i) => i === 0 || seq > got[i - 1]);
    const missing = p.accepted.filter((seq) => !got.includes(seq)).length;
    const unexpected = got.filter((seq) => !acceptedSet.has(seq)).length;
    p.hung = MESSAGES - p.accepted.length - p.rejected.length - Object.values(p.otherCodes).reduce((a, b) => a + b, 0);
    lost += missing;
    v.check(got.length + p.rejected.length === MESSAGES && missing === 0, `outbox ${p.name}: delivered ${got.length} + rejected ${p.rejected.length} != sent ${MESSAGES} (${missing} accepted but not delivered, ${p.hung} never settled, other codes ${JSON.stringify(p.otherCodes)})`);
    v.check(inOrder && unexpected === 0, `outbox ${p.name}: ${inOrder ? 'in order' : 'OUT OF ORDER'}, ${unexpected} delivered that were rejected or duplicated`);
    v.figure(`${p.name}.accepted`, p.accepted.length);
    v.figure(`${p.name}.rejected`, p.rejected.length);
    v.figure(`${p.name}.delivered`, got.length);
    parts.push(`${p.name}: ${fmtInt(got.length)} delivered + ${fmtInt(p.rejected.length)} rejected = ${fmtInt(got.length + p.rejected.length)}`);
  }
  v.check(report.duplicates === 0, `${report.duplicates} publishes arrived twice or out of order`);
  v.check(allSettled, 'publishes still unsettled 15 s after the restart');
  progress(`${parts.join('; ')}; all settled ${fmtMs(settledMs)} after the restart`);
  v.figure('settledAfterRestartMs', settledMs);
  for (const p of publishers) await p.client!.disconnect();
  await server.call('stop', { graceMs: 0 });
  return {
    scenario: 'publishing through an outage',
    load: `3 publishers x ${fmtInt(MESSAGES)} x 1 KiB while the server is down ${fmtMs(OUTAGE_MS)} (outbox default, 1 MiB, disabled)`,
    faults: `server SIGKILLed, restarted after ${fmtMs(OUTAGE_MS)}`,
    badInputs: '-',
    lost: `${lost}`,
    figure: `${parts.join('; ')} (of ${fmtInt(MESSAGES)} each); delivered once, in order`,
  };
});
