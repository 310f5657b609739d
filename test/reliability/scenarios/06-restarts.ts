// 6. Restarts with subscribers: the server (its own process) is restarted again and again,
// graceful stop and SIGKILL alternating, while 20 subscribers hold 2 topics each of 10.
// Pass: after each restart every subscription is restored on the server (within 5 s of it being
// ready), and each message published after that arrives once at every subscriber of its topic.
import { SmartIpc, type IpcClient } from '../../../ts/index.js';
import { fmtInt, fmtMs, maxOf, now, quantile, sleep } from '../lib/measure.js';
import { pick, progress, runScenario, socketPath, startRole, until, type Role } from '../lib/scenario.js';

const RESTARTS = pick(3, 50);
const SUBSCRIBERS = 20;
const TOPICS = 10;
const RESTORE_BOUND_MS = 5_000;
const DELIVERY_BOUND_MS = 3_000;

runScenario('restarts with subscribers', async (v) => {
  const path = socketPath('s');
  const id = 'rel-6';
  const serverConfig = { id, socketPath: path };
  let server: Role = await startRole({ script: 'server.ts', name: 'server', config: serverConfig });
  // deliveries[`${round}:${topic}:${subscriber}`] = times delivered
  const deliveries = new Map<string, number>();
  const topicsOf = (s: number) => [s % TOPICS, (s + 3) % TOPICS];
  const subscribers: IpcClient[] = [];
  for (let s = 0; s < SUBSCRIBERS; s++) {
    const client = SmartIpc.createClient({ id, socketPath: path, clientOnly: true, clientId: `sub-${s}` });
    client.on('error', () => undefined);
    await client.connect();
    for (const t of topicsOf(s)) {
      await client.subscribe<{ round: number; topic: number }>(`rel.t${t}`, (data) => {
        const key = `${data.round}:${data.topic}:${s}`;
        deliveries.set(key, (deliveries.get(key) ?? 0) + 1);
      });
    }
    subscribers.push(client);
  }
  const publisher = SmartIpc.createClient({ id, socketPath: path, clientOnly: true, clientId: 'publisher' });
  publisher.on('error', () => undefined);
  await publisher.connect();
  const expectedSubscriptions = SUBSCRIBERS * 2;

  const restoreMs: number[] = [];
  const restartToReadyMs: number[] = [];
  let missing = 0;
  let duplicates = 0;
  let unrestored = 0;
  let published = 0;
  const expectedPerRound = SUBSCRIBERS * 2;
  const publishRound = async (round: number) => {
    for (let t = 0; t < TOPICS; t++) await publisher.publish(`rel.t${t}`, { round, topic: t });
    published += TOPICS;
    const count = () => {
      let n = 0;
      for (let s = 0; s < SUBSCRIBERS; s++) for (const t of topicsOf(s)) if (deliveries.has(`${round}:${t}:${s}`)) n++;
      return n;
    };
    await until(() => count() >= expectedPerRound, DELIVERY_BOUND_MS, 5);
    return count();
  };
  await publishRound(0);

  for (let round = 1; round <= RESTARTS; round++) {
    const graceful = round % 2 === 1;
    const faultAt = now();
    if (graceful) await server.call('stop', { graceMs: 500 });
    else server.signal('SIGKILL');
    await server.waitExit(5_000);
    const spawnAt = now();
    server = await startRole({ script: 'server.ts', name: 'server', config: serverConfig });
    const readyAt = (server.readyData as { readyAt: number }).readyAt;
    restartToReadyMs.push(readyAt - spawnAt);
    const restored = await until(async () => {
      const stats = await server.call<{ pubsub: { subscriptions: number } }>('stats');
      return stats.pubsub.subscriptions === expectedSubscriptions && publisher.getIsConnected();
    }, RESTORE_BOUND_MS + (now() - readyAt), 10);
    const restoredAt = now();
    if (!restored) {
      unrestored++;
      const stats = await server.call<{ pubsub: { subscriptions: number } }>('stats');
      v.check(false, `restart ${round} (${graceful ? 'graceful' : 'SIGKILL'}): ${stats.pubsub.subscriptions}/${expectedSubscriptions} subscriptions restored ${fmtMs(RESTORE_BOUND_MS)} after the server was ready`);
      continue;
    }
    restoreMs.push(restoredAt - readyAt);
    const got = await publishRound(round);
    if (got < expectedPerRound) missing += expectedPerRound - got;
    if (round % 10 === 0 || round === RESTARTS) progress(`restart ${round}/${RESTARTS}: fault to ready ${fmtMs(readyAt - faultAt)}, restored ${fmtMs(restoredAt - readyAt)} after ready`);
  }
  await sleep(300); // a duplicate would arrive by now
  for (const times of deliveries.values()) if (times > 1) duplicates += times - 1;
  for (const client of [...subscribers, publisher]) await client.disconnect();
  await server.call('stop', { graceMs: 0 });

  v.check(missing === 0, `${missing} deliveries of messages published after restoration did not arrive within ${fmtMs(DELIVERY_BOUND_MS)}`);
  v.check(duplicates === 0, `${duplicates} deliveries arrived more than once`);
  const restoreMax = restoreMs.length ? maxOf(restoreMs) : NaN;
  v.check(restoreMax <= RESTORE_BOUND_MS, `subscriptions restored up to ${fmtMs(restoreMax)} after the server was ready (bound ${fmtMs(RESTORE_BOUND_MS)})`);
  v.figure('restarts', RESTARTS);
  v.figure('unrestored', unrestored);
  v.figure('restoreP50Ms', quantile(restoreMs, 0.5));
  v.figure('restoreMaxMs', restoreMax);
  v.figure('restartToReadyP50Ms', quantile(restartToReadyMs, 0.5));
  v.figure('published', published);
  v.figure('missing', missing);
  v.figure('duplicates', duplicates);
  return {
    scenario: 'restarts with subscribers',
    load: `${SUBSCRIBERS} subscribers x 2 of ${TOPICS} topics, ${fmtInt(published)} publishes (${fmtInt(published * 4)} deliveries expected)`,
    faults: `${RESTARTS} restarts, graceful stop and SIGKILL alternating`,
    badInputs: '-',
    lost: `${missing}`,
    figure: `${RESTARTS - unrestored}/${RESTARTS} restarts with all ${expectedSubscriptions} subscriptions restored, p50 ${fmtMs(quantile(restoreMs, 0.5))}, max ${fmtMs(restoreMax)} after the server was ready (<= 5 s); every later publish arrived once (${missing} missing, ${duplicates} duplicates)`,
  };
});
