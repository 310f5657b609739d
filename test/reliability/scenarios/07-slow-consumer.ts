// 7. Slow consumer: a publisher (its own process) floods 1 KiB publishes through the server (its
// own process) to three subscribers in this process and one in a process of its own, which is
// SIGSTOPped (stops reading) for 5 s.
// Pass: the other subscribers get 100 %; publisher RSS growth < 64 MiB (the server's is shown, unbounded);
// the slow one's drops are counted exactly (what it got + what was dropped for it = published).
// Then the same with the server option slowConsumerPolicy: 'disconnect' (when the library has it):
// the slow subscriber is cut within 2 s of reaching pubsubMaxQueuedBytes, and sees CONNECTION_LOST.
import { SmartIpc, type IpcClient } from '../../../ts/index.js';
import { MIB, RssWatch, fmtInt, fmtMiB, fmtMs, now, sleep } from '../lib/measure.js';
import { pick, progress, runScenario, socketPath, startRole, until } from '../lib/scenario.js';

const RATE = 20_000;
const LEAD_MS = pick(300, 500);
const STALL_MS = pick(1_500, 5_000);
const TAIL_MS = pick(300, 1_000);
const FAST = 3;
const RSS_BOUND = 64 * MIB;
const CUT_BOUND_MS = 2_000;

interface IPhase {
  available: boolean;
  sent: number;
  fastReceived: number[];
  slowReceived: number;
  slowDropped: number | null;
  slowDelivered: number | null;
  slowConsumerEvents: number;
  publisherGrowth: number;
  serverGrowth: number;
  cutMs: number | null;
  slowSawCode: string | null;
  outOfOrder: number;
}

interface IPatternStats {
  pubsub: { dropped: number; patterns: Record<string, { delivered: number; dropped: number }> };
}

async function phase(policy: 'drop' | 'disconnect'): Promise<IPhase> {
  const path = socketPath(policy);
  const id = 'rel-7';
  const options: Record<string, unknown> = policy === 'disconnect' ? { slowConsumerPolicy: 'disconnect' } : {};
  const server = await startRole({ script: 'server.ts', name: `server-${policy}`, config: { id, socketPath: path, options, events: ['slowConsumer', 'clientDisconnect'] } });
  const result: IPhase = { available: true, sent: 0, fastReceived: [], slowReceived: 0, slowDropped: null, slowDelivered: null, slowConsumerEvents: 0, publisherGrowth: 0, serverGrowth: 0, cutMs: null, slowSawCode: null, outOfOrder: 0 };
  if (policy === 'disconnect' && (server.readyData as { slowConsumerPolicy: unknown }).slowConsumerPolicy !== 'disconnect') {
    await server.kill();
    return { ...result, available: false };
  }
  const slowConsumerAt: number[] = [];
  let slowDisconnectAt: number | undefined;
  server.on('slowConsumer', (e: { clientId: string; at: number }) => {
    if (e.clientId === 'slow') slowConsumerAt.push(e.at);
  });
  server.on('clientDisconnect', (e: { clientId: string; at: number }) => {
    if (e.clientId === 'slow' && slowDisconnectAt === undefined) slowDisconnectAt = e.at;
  });

  const slow = await startRole({ script: 'client.ts', name: 'slow-subscriber', config: { id, socketPath: path, clientId: 'slow' } });
  await slow.call('subscribe', { pattern: 'flood.>' });
  const fast: IpcClient[] = [];
  const fastCounts = new Array<number>(FAST).fill(0);
  let outOfOrder = 0;
  for (let i = 0; i < FAST; i++) {
    const client = SmartIpc.createClient({ id, socketPath: path, clientOnly: true, clientId: `fast-${i}` });
    await client.connect();
    let last = -1;
    await client.subscribe<{ seq: number }>('flood.*', (data) => {
      if (data.seq <= last) outOfOrder++;
      last = data.seq;
      fastCounts[i]++;
    });
    fast.push(client);
  }
  const publisher = await startRole({ script: 'client.ts', name: 'publisher', config: { id, socketPath: path, clientId: 'publisher' } });
  const publisherRss = new RssWatch(publisher.pid);
  const serverRss = new RssWatch(server.pid);

  const flood = publisher.call<{ sent: number; failed: number; ms: number }>('flood', { topic: 'flood.x', rate: RATE, durationMs: LEAD_MS + STALL_MS + TAIL_MS, payloadBytes: 1000 }, LEAD_MS + STALL_MS + TAIL_MS + 20_000);
  await sleep(LEAD_MS);
  slow.signal('SIGSTOP');
  await sleep(STALL_MS);
  slow.signal('SIGCONT');
  const flooded = await flood;
  result.sent = flooded.sent;
  await until(() => fastCounts.every((n) => n >= flooded.sent), 5_000, 20);
  result.fastReceived = [...fastCounts];
  result.outOfOrder = outOfOrder;
  result.publisherGrowth = publisherRss.stop().growthBytes;
  result.serverGrowth = serverRss.stop().growthBytes;

  // The slow one reads what was queued for it; wait until its count stops moving.
  let previous = -1;
  await until(async () => {
    const s = await slow.call<{ received: number }>('stats');
    const settled = s.received === previous;
    previous = s.received;
    return settled;
  }, 10_000, 200);
  const slowStats = await slow.call<{ received: number; outOfOrder: number; disconnects: Array<{ code: string; at: number }> }>('stats');
  result.slowReceived = slowStats.received;
  result.outOfOrder += slowStats.outOfOrder;
  result.slowConsumerEvents = slowConsumerAt.length;
  const serverStats = await server.call<IPatternStats>('stats');
  const pattern = serverStats.pubsub.patterns['flood.>'];
  result.slowDropped = pattern?.dropped ?? null;
  result.slowDelivered = pattern?.delivered ?? null;
  if (policy === 'disconnect') {
    result.cutMs = slowDisconnectAt !== undefined && slowConsumerAt.length > 0 ? slowDisconnectAt - slowConsumerAt[0] : null;
    result.slowSawCode = slowStats.disconnects[0]?.code ?? null;
  }
  for (const client of fast) await client.disconnect();
  await slow.kill();
  await publisher.kill();
  await server.call('stop', { graceMs: 0 });
  return result;
}

runScenario('slow consumer', async (v) => {
  const drop = await phase('drop');
  progress(`drop policy: ${fmtInt(drop.sent)} published; fast ${drop.fastReceived.join('/')}; slow got ${fmtInt(drop.slowReceived)}, dropped ${drop.slowDropped}; publisher RSS +${fmtMiB(drop.publisherGrowth)}, server +${fmtMiB(drop.serverGrowth)}`);
  v.check(drop.sent > 0 && drop.fastReceived.every((n) => n === drop.sent), `the other subscribers got ${drop.fastReceived.join('/')} of ${drop.sent}`);
  v.check(drop.outOfOrder === 0, `${drop.outOfOrder} publishes arrived out of order or twice`);
  v.check(drop.publisherGrowth < RSS_BOUND, `publisher RSS grew ${fmtMiB(drop.publisherGrowth)} (bound ${fmtMiB(RSS_BOUND)})`);
  v.check((drop.slowDropped ?? 0) > 0, `the stalled subscriber had nothing dropped (${drop.slowDropped}): it never became a slow consumer`);
  v.check(drop.slowReceived + (drop.slowDropped ?? 0) === drop.sent, `slow subscriber: received ${drop.slowReceived} + dropped ${drop.slowDropped} != published ${drop.sent}`);
  v.check(drop.slowDelivered === drop.slowReceived, `slow subscriber: the server queued ${drop.slowDelivered} for it, it received ${drop.slowReceived}`);

  const cut = await phase('disconnect');
  let policyText: string;
  if (!cut.available) {
    policyText = "disconnect policy not available (no slowConsumerPolicy option in this build)";
  } else {
    progress(`disconnect policy: slow cut ${cut.cutMs === null ? 'never' : fmtMs(cut.cutMs)} after the bound; it saw ${cut.slowSawCode}; fast ${cut.fastReceived.join('/')} of ${cut.sent}`);
    v.check(cut.cutMs !== null && cut.cutMs <= CUT_BOUND_MS, `disconnect policy: the slow subscriber was cut ${cut.cutMs === null ? 'never' : fmtMs(cut.cutMs)} after reaching the bound (bound ${fmtMs(CUT_BOUND_MS)})`);
    v.check(cut.slowSawCode === 'CONNECTION_LOST', `disconnect policy: the slow subscriber saw ${cut.slowSawCode}, not CONNECTION_LOST`);
    v.check(cut.fastReceived.every((n) => n === cut.sent), `disconnect policy: the other subscribers got ${cut.fastReceived.join('/')} of ${cut.sent}`);
    v.check(cut.publisherGrowth < RSS_BOUND, `disconnect policy: publisher RSS grew ${fmtMiB(cut.publisherGrowth)}`);
    policyText = `disconnect policy: cut ${fmtMs(cut.cutMs ?? NaN)} after the bound (<= 2 s), saw ${cut.slowSawCode}`;
  }
  v.figure('published', drop.sent);
  v.figure('fastReceived', drop.fastReceived.join('/'));
  v.figure('slowReceived', drop.slowReceived);
  v.figure('slowDropped', drop.slowDropped);
  v.figure('slowConsumerEvents', drop.slowConsumerEvents);
  v.figure('publisherRssGrowthMiB', drop.publisherGrowth / MIB);
  v.figure('serverRssGrowthMiB', drop.serverGrowth / MIB);
  v.figure('disconnectPolicy', cut.available ? 'available' : 'not available');
  v.figure('disconnectCutMs', cut.cutMs);
  v.figure('disconnectSawCode', cut.slowSawCode);
  return {
    scenario: 'slow consumer',
    load: `${fmtInt(drop.sent)} x 1 KiB publishes at ${fmtInt(RATE)}/s to ${FAST + 1} subscribers`,
    faults: `one subscriber SIGSTOPped (stops reading) for ${fmtMs(STALL_MS)}`,
    badInputs: '-',
    lost: `0 for the others (${drop.fastReceived.map((n) => `${((n / Math.max(1, drop.sent)) * 100).toFixed(0)}%`).join('/')}); ${fmtInt(drop.slowDropped ?? 0)} dropped for the stalled one, all counted`,
    figure: `others 100 %; stalled one got ${fmtInt(drop.slowReceived)} + ${fmtInt(drop.slowDropped ?? 0)} dropped = ${fmtInt(drop.slowReceived + (drop.slowDropped ?? 0))}; publisher RSS +${fmtMiB(drop.publisherGrowth)} (< 64 MiB), server +${fmtMiB(drop.serverGrowth)}; ${policyText}`,
  };
});
