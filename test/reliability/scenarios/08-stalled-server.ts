// 8. A server that stops reading: a client (its own process) offers 1 GiB as 1 MiB messages, each
// send awaited, while the server (its own process) is SIGSTOPped for 10 s in the middle.
// Pass: client RSS growth < 64 MiB; every send either waits (resolves later) or rejects with a
// code; everything accepted is delivered, once and in order.
import { MIB, RssWatch, fmtBytes, fmtInt, fmtMiB, fmtMs, now, sleep } from '../lib/measure.js';
import { pick, progress, runScenario, socketPath, startRole, until } from '../lib/scenario.js';

const TOTAL_BYTES = pick(128 * MIB, 1024 * MIB);
const BLOB_BYTES = MIB;
const STALL_MS = pick(2_000, 10_000);
const STALL_AFTER_MS = 200;
const RSS_BOUND = 64 * MIB;

interface IBlobs {
  accepted: number;
  rejected: number;
  codes: Record<string, number>;
  maxWaitMs: number;
  ms: number;
  acceptedBytes: number;
}

runScenario('server stops reading', async (v) => {
  const path = socketPath('s');
  const id = 'rel-8';
  const server = await startRole({ script: 'server.ts', name: 'server', config: { id, socketPath: path } });
  const client = await startRole({ script: 'client.ts', name: 'client', config: { id, socketPath: path, clientId: 'offerer' } });
  await sleep(100);
  const clientRss = new RssWatch(client.pid);
  const sending = client.call<IBlobs>('blobs', { totalBytes: TOTAL_BYTES, blobBytes: BLOB_BYTES }, STALL_MS + 120_000);
  await sleep(STALL_AFTER_MS);
  const stoppedAt = now();
  server.signal('SIGSTOP');
  await sleep(STALL_MS);
  server.signal('SIGCONT');
  const resumedAt = now();
  const sent = await sending;
  const rss = clientRss.stop();
  let blob = { count: 0, bytes: 0, lastSeq: -1, outOfOrder: 0, firstAt: 0, lastAt: 0 };
  const delivered = await until(async () => {
    blob = await server.call<typeof blob>('blobStats');
    return blob.count >= sent.accepted;
  }, 20_000, 100);
  const clientStats = await client.call<{ disconnects: unknown[] }>('stats');
  await client.kill();
  await server.call('stop', { graceMs: 0 });
  progress(`${fmtInt(sent.accepted)} accepted, ${sent.rejected} rejected ${JSON.stringify(sent.codes)}, longest wait ${fmtMs(sent.maxWaitMs)}, ${fmtBytes(sent.acceptedBytes)} in ${fmtMs(sent.ms)}; client RSS +${fmtMiB(rss.growthBytes)}; server got ${fmtInt(blob.count)} (${blob.outOfOrder} out of order), last at +${fmtMs(blob.lastAt - resumedAt)} after SIGCONT`);

  const uncoded = sent.codes.uncoded ?? 0;
  v.check(rss.growthBytes < RSS_BOUND, `client RSS grew ${fmtMiB(rss.growthBytes)} (bound ${fmtMiB(RSS_BOUND)})`);
  v.check(uncoded === 0, `${uncoded} sends rejected without a code`);
  v.check(sent.accepted + sent.rejected === Math.floor(TOTAL_BYTES / BLOB_BYTES), `${sent.accepted} accepted + ${sent.rejected} rejected != ${Math.floor(TOTAL_BYTES / BLOB_BYTES)} offered`);
  v.check(delivered && blob.count === sent.accepted && blob.bytes === sent.acceptedBytes, `delivered ${blob.count} messages / ${fmtBytes(blob.bytes)} of ${sent.accepted} / ${fmtBytes(sent.acceptedBytes)} accepted`);
  v.check(blob.outOfOrder === 0, `${blob.outOfOrder} messages out of order`);
  v.check(clientStats.disconnects.length === 0, `the client was disconnected during the stall: ${JSON.stringify(clientStats.disconnects)}`);
  v.figure('offeredBytes', TOTAL_BYTES);
  v.figure('accepted', sent.accepted);
  v.figure('rejected', sent.rejected);
  v.figure('codes', JSON.stringify(sent.codes));
  v.figure('longestSendWaitMs', sent.maxWaitMs);
  v.figure('stallMs', resumedAt - stoppedAt);
  v.figure('clientRssGrowthMiB', rss.growthBytes / MIB);
  v.figure('delivered', blob.count);
  v.figure('sendMs', sent.ms);
  return {
    scenario: 'server stops reading',
    load: `${fmtBytes(TOTAL_BYTES)} offered as ${fmtInt(TOTAL_BYTES / BLOB_BYTES)} x 1 MiB messages, each send awaited`,
    faults: `server SIGSTOPped ${fmtMs(STALL_MS)} mid-way`,
    badInputs: '-',
    lost: `${sent.accepted - blob.count}`,
    figure: `client RSS +${fmtMiB(rss.growthBytes)} (< 64 MiB); sends waited up to ${fmtMs(sent.maxWaitMs)}, ${sent.rejected} rejected; ${fmtInt(blob.count)}/${fmtInt(sent.accepted)} accepted delivered in order (${fmtBytes(blob.bytes)})`,
  };
});
