#!/usr/bin/env node
// Pub/sub at scale: does the publish rate hold up when the broker holds 10,000 subscriptions
// across 100 clients? Two parts, both on the built library (npm run build first):
//
//  1. matching alone: TopicTrie.match against a linear scan (topicMatches over every pattern),
//     10,000 patterns, in this process;
//  2. end to end: the server (broker) in this process; 100 subscriber clients and one publisher
//     client in a child process. The publisher sends N publishes, each matching exactly one
//     client, and the child reports when all N have arrived. Run with 1 and with 100
//     subscriptions per client: with a trie the two rates are close; a broker that scanned every
//     subscription would slow down by the number of patterns.
//
//   node bench/pubsub-scale.js [--messages 50000] [--json <path>]
// Bounded: the child is killed after its deadline; the whole run ends within about a minute.
import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SmartIpc, TopicTrie, topicMatches } from '../dist_ts/index.js';

const CLIENTS = 100;
const HARD_TIMEOUT_MS = 60_000;
const SELF = fileURLToPath(import.meta.url);

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback;
}

/** Pattern `i` of client `c`: mostly literal topics, every tenth with a `*`, one `>` per client. */
function patternOf(c, i) {
  if (i === 0) return `svc${c}.all.>`;
  return i % 10 === 0 ? `svc${c}.*.evt${i}` : `svc${c}.t${i}.evt${i}`;
}
/** A topic that matches exactly one pattern of exactly one client. */
function topicOf(c, i, perClient) {
  const k = perClient === 1 ? 0 : 1 + (i % (perClient - 1));
  if (k === 0) return `svc${c}.all.x`;
  return k % 10 === 0 ? `svc${c}.any.evt${k}` : `svc${c}.t${k}.evt${k}`;
}

// ---- child: 100 subscribers and one publisher -----------------------------------------------

async function child() {
  const { socketPath, perClient, messages } = JSON.parse(process.argv[3]);
  const deadline = setTimeout(() => process.exit(2), HARD_TIMEOUT_MS);
  deadline.unref();
  const clients = [];
  let received = 0;
  let done;
  const allArrived = new Promise((resolve) => (done = resolve));
  const onMessage = () => {
    if (++received === messages) done();
  };
  for (let c = 0; c < CLIENTS; c++) {
    const client = SmartIpc.createClient({ id: 'pubsub-scale', socketPath, clientId: `sub-${c}`, clientOnly: true });
    await client.connect();
    clients.push(client);
    const subscribes = [];
    for (let i = 0; i < perClient; i++) subscribes.push(client.subscribe(patternOf(c, i), onMessage));
    await Promise.all(subscribes);
  }
  const publisher = SmartIpc.createClient({ id: 'pubsub-scale', socketPath, clientId: 'publisher', clientOnly: true });
  await publisher.connect();
  const payload = { at: 0, body: 'x'.repeat(64) };
  const started = performance.now();
  for (let n = 0; n < messages; n++) {
    payload.at = n;
    await publisher.publish(topicOf(n % CLIENTS, Math.floor(n / CLIENTS), perClient), payload);
  }
  await allArrived;
  const elapsedMs = performance.now() - started;
  process.send({ elapsedMs, received });
  await Promise.all([publisher, ...clients].map((client) => client.disconnect()));
  process.exit(0);
}

// ---- runner ------------------------------------------------------------------------------------

function matchingBench() {
  const trie = new TopicTrie();
  const patterns = [];
  for (let c = 0; c < CLIENTS; c++) {
    for (let i = 0; i < 100; i++) {
      const pattern = patternOf(c, i);
      patterns.push(pattern);
      trie.add(pattern, c);
    }
  }
  const topics = Array.from({ length: 1000 }, (_, n) => topicOf(n % CLIENTS, n, 100));
  const rate = (fn) => {
    let ops = 0;
    const until = performance.now() + 1000;
    while (performance.now() < until) {
      for (const topic of topics) fn(topic);
      ops += topics.length;
    }
    return ops;
  };
  let sink = 0;
  const trieRate = rate((topic) => trie.match(topic, () => sink++));
  const scanRate = rate((topic) => {
    for (const p of patterns) if (topicMatches(p, topic)) sink++;
  });
  return { patterns: patterns.length, trieMatchesPerSec: trieRate, linearScanMatchesPerSec: scanRate, sink };
}

async function endToEnd(perClient, messages) {
  const socketPath = path.join(os.tmpdir(), `smartipc-pubsub-scale-${process.pid}-${perClient}.sock`);
  const server = SmartIpc.createServer({ id: 'pubsub-scale', socketPath, autoCleanupSocketFile: true });
  await server.start();
  const worker = fork(SELF, ['child', JSON.stringify({ socketPath, perClient, messages })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const killer = setTimeout(() => worker.kill('SIGKILL'), HARD_TIMEOUT_MS + 5_000);
  try {
    const figures = await new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('exit', (code, signal) => reject(new Error(`child exited (${signal ?? code}) before reporting`)));
    });
    const stats = server.getStats().pubsub;
    return {
      subscriptions: CLIENTS * perClient,
      messages,
      publishesPerSec: Math.round((messages / figures.elapsedMs) * 1000),
      elapsedMs: Math.round(figures.elapsedMs),
      dropped: stats.dropped,
    };
  } finally {
    clearTimeout(killer);
    await new Promise((resolve) => (worker.exitCode !== null || worker.signalCode !== null ? resolve() : worker.once('exit', resolve)));
    await server.stop({ graceMs: 0 });
    fs.rmSync(socketPath, { force: true });
  }
}

async function runner() {
  const messages = Number(arg('messages', '50000'));
  const matching = matchingBench();
  console.log(`matching, ${matching.patterns} patterns: trie ${matching.trieMatchesPerSec.toLocaleString('en')} matches/s, linear scan ${matching.linearScanMatchesPerSec.toLocaleString('en')} matches/s (x${(matching.trieMatchesPerSec / matching.linearScanMatchesPerSec).toFixed(0)})`);
  const results = [];
  for (const perClient of [1, 100]) {
    const r = await endToEnd(perClient, messages);
    results.push(r);
    console.log(`end to end, ${r.subscriptions} subscriptions on ${CLIENTS} clients: ${r.publishesPerSec.toLocaleString('en')} publishes/s (${r.messages} in ${r.elapsedMs} ms, dropped ${r.dropped})`);
  }
  const ratio = results[1].publishesPerSec / results[0].publishesPerSec;
  console.log(`publish rate with 10,000 subscriptions is ${(ratio * 100).toFixed(0)}% of the rate with 100`);
  const json = arg('json', undefined);
  if (json) fs.writeFileSync(json, JSON.stringify({ matching, endToEnd: results, ratio }, null, 2));
}

if (process.argv[2] === 'child') child().catch((err) => {
  console.error(err);
  process.exit(1);
});
else runner().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
