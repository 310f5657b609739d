#!/usr/bin/env node
// NATS scenario: smartipc's NATS bridge against the plain @nats-io/transport-node client doing the
// same work through a real nats-server on loopback. The responder runs in a child process, the
// caller here; nats-server is the third process. Bounded: every phase has a deadline, the child and
// nats-server are killed by pid at the end.
//
//   node bench/nats/run.js [--duration-ms 2000] [--runs 3] [--smoke] [--json <path>]
//
// Scenarios (payload ~100 B JSON):
//   requests   pipelined request/response, 100 in flight        (bridge: client.request -> exposed handler)
//   messages   one-way messages counted at the receiver, batches of 1000 each closed by a 'sync'
//              request (2 batches in flight), so neither side can outrun the other
//   calls      pipelined service calls, 100 in flight             (bridge: client.call -> the exposed hub's
//              own service; plain: the same request as 'requests', there is no service layer)
// Responders: plain (nc.subscribe + respond) and bridge (bridge.expose(IpcServer): the server's
// bridge hooks run the handler in-process with a handler context, no local socket hop).
// Needs `npm run build` (dist_ts) and nats-server on PATH (apt-get install -y nats-server).
import { fork, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(HERE), '..', '..');
const DIST_NATS = path.join(ROOT, 'dist_ts', 'nats', 'index.js');
const DIST_ROOT = path.join(ROOT, 'dist_ts', 'index.js');
const PAYLOAD = { seq: 0, text: 'x'.repeat(80) };
const IN_FLIGHT = 100;
const BATCH = 1000;
const TARGET_RATIO = 0.8;

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}
const has = (name) => process.argv.includes(`--${name}`);

// ---- nats-server -------------------------------------------------------------------------------

function findNatsServer() {
  for (const dir of [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/bin']) {
    const candidate = path.join(dir, 'nats-server');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  throw new Error('nats-server not found: apt-get install -y nats-server');
}

async function startNatsServer() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartipc-bench-nats-'));
  const binary = findNatsServer();
  const child = spawn(binary, ['-a', '127.0.0.1', '-p', '-1', '--ports_file_dir', dir], { stdio: 'ignore' });
  const portsFile = path.join(dir, `nats-server_${child.pid}.ports`);
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (fs.existsSync(portsFile)) {
      try {
        const url = JSON.parse(fs.readFileSync(portsFile, 'utf8')).nats[0];
        return { url, stop: () => { child.kill('SIGKILL'); fs.rmSync(dir, { recursive: true, force: true }); } };
      } catch {
        // not complete yet
      }
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  child.kill('SIGKILL');
  throw new Error('nats-server did not start');
}

// ---- responder (child process) -----------------------------------------------------------------

async function responder(impl, url, ns) {
  let count = 0;
  if (impl === 'plain') {
    const { connect } = await import('@nats-io/transport-node');
    const nc = await connect({ servers: url });
    nc.subscribe(`${ns}.echo`, { queue: 'q', callback: (_e, m) => m.respond(JSON.stringify(JSON.parse(new TextDecoder().decode(m.data)))) });
    nc.subscribe(`${ns}.note`, { queue: 'q', callback: (_e, m) => { JSON.parse(new TextDecoder().decode(m.data)); count++; } });
    nc.subscribe(`${ns}.sync`, { queue: 'q', callback: (_e, m) => m.respond(JSON.stringify(count)) });
    await nc.flush();
    process.send({ ready: true });
    process.on('message', async () => { await nc.close(); process.exit(0); });
    return;
  }
  const { NatsBridge } = await import(DIST_NATS);
  const { SmartIpc } = await import(DIST_ROOT);
  const bridge = await NatsBridge.connect({ servers: url, namespace: ns });
  const socketPath = path.join(os.tmpdir(), `smartipc-bench-nats-${process.pid}.sock`);
  const server = SmartIpc.createServer({ id: 'bench', socketPath, autoCleanupSocketFile: true, heartbeat: false });
  server.onMessage('echo', (data) => data);
  server.onMessage('note', () => { count++; });
  server.onMessage('sync', () => count);
  await server.provide(`bench-${ns}`, { echo: (params) => params });
  await server.start();
  await bridge.expose(server);
  process.send({ ready: true });
  process.on('message', async () => { await bridge.close(); await server.stop({ graceMs: 0 }); process.exit(0); });
}

// ---- caller ------------------------------------------------------------------------------------

async function makeCaller(impl, url, ns) {
  if (impl === 'plain') {
    const { connect } = await import('@nats-io/transport-node');
    const nc = await connect({ servers: url });
    const decode = (m) => JSON.parse(new TextDecoder().decode(m.data));
    return {
      request: async (data) => decode(await nc.request(`${ns}.echo`, JSON.stringify(data), { timeout: 10_000 })),
      send: (data) => { nc.publish(`${ns}.note`, JSON.stringify(data)); },
      sync: async () => decode(await nc.request(`${ns}.sync`, '', { timeout: 10_000 })),
      call: async (data) => decode(await nc.request(`${ns}.echo`, JSON.stringify(data), { timeout: 10_000 })),
      close: () => nc.close(),
    };
  }
  const { NatsBridge } = await import(DIST_NATS);
  const bridge = await NatsBridge.connect({ servers: url, namespace: ns });
  const client = bridge.createClient({ id: 'bench' });
  await client.connect();
  return {
    request: (data) => client.request('echo', data, { timeout: 10_000 }),
    send: (data) => { client.sendMessage('note', data); },
    sync: () => client.request('sync', null, { timeout: 10_000 }),
    call: (data) => client.call(`bench-${ns}`, 'echo', data, { timeout: 10_000 }),
    close: () => bridge.close(),
  };
}

async function benchRequests(caller, durationMs, op = 'request') {
  let done = 0;
  const end = performance.now() + durationMs;
  const started = performance.now();
  const lane = async () => {
    while (performance.now() < end) {
      await caller[op]({ ...PAYLOAD, seq: done });
      done++;
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  return done / ((performance.now() - started) / 1000);
}

async function benchMessages(caller, durationMs) {
  const base = await caller.sync();
  const end = performance.now() + durationMs;
  const started = performance.now();
  let sent = 0;
  let previous = Promise.resolve(base);
  let received = base;
  while (performance.now() < end) {
    for (let i = 0; i < BATCH; i++) caller.send({ ...PAYLOAD, seq: sent++ });
    const sync = caller.sync();
    received = await previous;
    previous = sync;
  }
  received = await previous;
  return (received - base) / ((performance.now() - started) / 1000);
}

async function runOne(impl, responderImpl, url, durationMs, warmupMs) {
  const ns = `bench${Math.random().toString(36).slice(2, 8)}`;
  const child = fork(HERE, ['--role', 'responder', '--impl', responderImpl, '--url', url, '--ns', ns], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const killTimer = setTimeout(() => child.kill('SIGKILL'), 60_000 + 4 * durationMs);
  try {
    await new Promise((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', (code) => reject(new Error(`responder exited (${code})`)));
    });
    const caller = await makeCaller(impl, url, ns);
    await benchRequests(caller, warmupMs);
    const requests = await benchRequests(caller, durationMs);
    await benchMessages(caller, warmupMs);
    const messages = await benchMessages(caller, durationMs);
    await benchRequests(caller, warmupMs, 'call');
    const calls = await benchRequests(caller, durationMs, 'call');
    await caller.close();
    return { requests, messages, calls };
  } finally {
    clearTimeout(killTimer);
    child.send('stop');
    await new Promise((resolve) => { child.once('exit', resolve); setTimeout(() => { child.kill('SIGKILL'); resolve(); }, 3_000).unref(); });
  }
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

async function main() {
  if (!fs.existsSync(DIST_NATS)) throw new Error('dist_ts/nats is missing: npm run build first');
  const smoke = has('smoke');
  const durationMs = Number(arg('duration-ms', smoke ? 300 : 2_000));
  const warmupMs = smoke ? 100 : Math.min(1_000, durationMs / 2);
  const runs = Number(arg('runs', smoke ? 1 : 3));
  const nats = await startNatsServer();
  const variants = [
    { name: 'plain nats.js', caller: 'plain', responder: 'plain' },
    { name: 'smartipc bridge', caller: 'bridge', responder: 'bridge' },
  ];
  const results = {};
  const samples = Object.fromEntries(variants.map((v) => [v.name, []]));
  try {
    // Interleaved (plain, bridge, plain, ...): a shared machine's noise hits both alike.
    for (let i = 0; i < runs; i++) {
      for (const variant of variants) samples[variant.name].push(await runOne(variant.caller, variant.responder, nats.url, durationMs, warmupMs));
    }
  } finally {
    nats.stop();
  }
  for (const variant of variants) {
    const list = samples[variant.name];
    results[variant.name] = { requests: median(list.map((s) => s.requests)), messages: median(list.map((s) => s.messages)), calls: median(list.map((s) => s.calls)) };
  }
  const plain = results['plain nats.js'];
  const fmt = (n) => Math.round(n).toLocaleString('en-US');
  console.log(`\nNATS bridge vs plain @nats-io/transport-node, nats-server on loopback (${runs} run(s) x ${durationMs} ms, median)\n`);
  console.log('| scenario | ' + variants.map((v) => v.name).join(' | ') + ' |');
  console.log('|---|' + variants.map(() => '---:').join('|') + '|');
  const labels = { requests: `requests/s (${IN_FLIGHT} in flight)`, messages: 'one-way messages/s', calls: `service calls/s (${IN_FLIGHT} in flight; plain: requests)` };
  for (const key of ['requests', 'messages', 'calls']) {
    const label = labels[key];
    const cells = variants.map((v) => {
      const value = results[v.name][key];
      return v.responder === 'plain' ? fmt(value) : `${fmt(value)} (${(value / plain[key]).toFixed(2)}x)`;
    });
    console.log(`| ${label} | ${cells.join(' | ')} |`);
  }
  console.log(`\ntarget: bridge >= ${TARGET_RATIO}x of plain`);
  const json = arg('json');
  if (json) fs.writeFileSync(json, JSON.stringify({ durationMs, runs, results }, null, 2));
}

if (arg('role') === 'responder') {
  responder(arg('impl'), arg('url'), arg('ns')).catch((err) => {
    console.error(err);
    process.exit(1);
  });
} else {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
