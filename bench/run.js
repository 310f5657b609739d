#!/usr/bin/env node
// The smartipc benchmark: every scenario against a hand-written node:net baseline, server and client
// in separate processes, median of several runs, a markdown table on stdout and JSON in
// bench/results/latest.json. Bounded: every child has a hard deadline and is killed after it.
//
//   node bench/run.js [--scenario S1,S3] [--impl baseline,smartipc] [--duration-ms 3000]
//                     [--warmup-ms 1000] [--runs 3] [--stream-mib 1024] [--pin[=same|split]]
//                     [--smoke] [--json <path>] [--cpu-prof] [--trace]
import { fork, spawn, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { median } from './lib/stats.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const RESULTS_DIR = path.join(BENCH_DIR, 'results');
const DIST_ENTRY = path.join(BENCH_DIR, '..', 'dist_ts', 'index.js');
const IMPLS = ['baseline', 'smartipc'];
const ROLE_SCRIPTS = { server: 'server.js', subs: 'subscribers.js', client: 'client.js', parent: 'parent.js', provider: 'provider.js' };
const MIB = 1024 * 1024;

/**
 * Each scenario: the roles started in order (each waits for the previous one's 'ready'), the
 * roles whose 'result' ends the run, and the figures shown. `target` is the issue's goal:
 * ratioMin/ratioMax compare smartipc with the baseline of the same run, absMax is absolute.
 */
const SCENARIOS = {
  S1: {
    title: 'sequential request/response, 1 in flight, ~100 B',
    roles: ['server', 'client'],
    reporters: ['client'],
    pinnable: true,
    metrics: [
      { key: 'roundTripsPerSec', label: 'round trips/s', better: 'higher' },
      { key: 'p50Us', label: 'p50 µs', better: 'lower', target: { ratioMax: 1.1 } },
      { key: 'p99Us', label: 'p99 µs', better: 'lower' },
    ],
  },
  S2: {
    title: 'pipelined requests, 100 in flight',
    roles: ['server', 'client'],
    reporters: ['client'],
    metrics: [{ key: 'requestsPerSec', label: 'requests/s', better: 'higher', target: { ratioMin: 0.9 } }],
  },
  S3: {
    title: 'one-way small messages, counted at the receiver',
    roles: ['server', 'client'],
    reporters: ['server'],
    metrics: [{ key: 'messagesPerSec', label: 'messages/s', better: 'higher', target: { ratioMin: 0.8 } }],
  },
  S4: {
    title: 'one-way 1 MiB JSON payload',
    roles: ['server', 'client'],
    reporters: ['server'],
    metrics: [{ key: 'mbPerSec', label: 'MB/s', better: 'higher', target: { ratioMin: 0.9 } }],
  },
  S5: {
    title: 'binary stream (64 KiB chunks)',
    roles: ['server', 'client'],
    reporters: ['server'],
    streams: true,
    metrics: [
      { key: 'mbPerSec', label: 'MB/s', better: 'higher', target: { ratioMin: 0.8 } },
      { key: 'clientPeakRssMiB', label: 'sender peak RSS MiB', better: 'lower' },
      { key: 'clientRssGrowthMiB', label: 'sender RSS growth MiB', better: 'lower', target: { absMax: 64 } },
      { key: 'serverPeakRssMiB', label: 'receiver peak RSS MiB', better: 'lower' },
      { key: 'serverRssGrowthMiB', label: 'receiver RSS growth MiB', better: 'lower', target: { absMax: 64 } },
    ],
  },
  S6: {
    title: 'pub/sub fan-out, 1 publisher, 10 subscribers',
    roles: ['server', 'subs', 'client'],
    reporters: ['subs'],
    metrics: [{ key: 'deliveriesPerSec', label: 'deliveries/s', better: 'higher' }],
  },
  S7: {
    title: 'request latency while a bulk stream flows on the same connection',
    roles: ['server', 'client'],
    reporters: ['client'],
    pinnable: true,
    metrics: [
      { key: 'p50Us', label: 'p50 µs', better: 'lower' },
      { key: 'p99Us', label: 'p99 µs', better: 'lower', target: { absMax: 10_000 } },
      { key: 'streamMbPerSec', label: 'stream MB/s meanwhile', better: 'higher' },
    ],
  },
  S8: {
    title: "parent/child over the private pipe (json) vs Node's child_process IPC (json)",
    roles: ['parent'],
    reporters: ['parent'],
    metrics: [
      { key: 'messagesPerSec', label: 'messages/s', better: 'higher', target: { ratioMin: 1.5 } },
      { key: 'requestsPerSec', label: 'requests/s (100 in flight)', better: 'higher', target: { ratioMin: 1.5 } },
    ],
  },
  S9: {
    title: "parent/child (advanced) vs Node's child_process IPC (advanced)",
    roles: ['parent'],
    reporters: ['parent'],
    metrics: [
      { key: 'messagesPerSec', label: 'messages/s', better: 'higher', target: { ratioMin: 1.5 } },
      { key: 'requestsPerSec', label: 'requests/s (100 in flight)', better: 'higher', target: { ratioMin: 1.5 } },
    ],
  },
  S10: {
    title: 'one-way 1 MiB Buffer payloads, default serialization (json)',
    roles: ['server', 'client'],
    reporters: ['server'],
    metrics: [{ key: 'mbPerSec', label: 'MB/s', better: 'higher', target: { ratioMin: 0.9 } }],
  },
  S11: {
    title: "one-way 1 MiB Buffer payloads, serialization 'advanced'",
    roles: ['server', 'client'],
    reporters: ['server'],
    metrics: [{ key: 'mbPerSec', label: 'MB/s', better: 'higher' }],
  },
  S12: {
    title: 'services: caller -> hub -> provider vs direct requests to the hub (smartipc only, same run)',
    roles: ['server', 'provider', 'client'],
    reporters: ['client'],
    only: 'smartipc',
    metrics: [
      { key: 'directPerSec', label: 'direct requests/s (100 in flight)', better: 'higher' },
      { key: 'routedPerSec', label: 'routed calls/s (100 in flight)', better: 'higher' },
      { key: 'routedOverDirect', label: 'routed / direct throughput', better: 'higher', target: { absMin: 0.5 } },
      { key: 'directP50Us', label: 'direct p50 µs (1 in flight)', better: 'lower' },
      { key: 'routedP50Us', label: 'routed p50 µs (1 in flight)', better: 'lower' },
      { key: 'p50RoutedOverDirect', label: 'routed / direct p50', better: 'lower', target: { absMax: 2.2 } },
      { key: 'hubCpuUsPerCall', label: 'hub CPU µs per routed call', better: 'lower' },
    ],
  },
};

// ---- options -------------------------------------------------------------------------------------

const USAGE = `usage: node bench/run.js [options]
  --scenario S1,S3     scenarios to run (default: all, S1..S12)
  --impl a,b           implementations (default: baseline,smartipc)
  --duration-ms N      measured time per scenario run (default 3000; smoke 200)
  --warmup-ms N        warm-up before each measurement (default 1000; smoke 100)
  --runs N             runs per scenario and implementation; the median is reported (default 3; smoke 1)
  --stream-mib N       S5 stream size in MiB (default 1024; smoke 16)
  --pin[=same|split]   pin the latency scenarios (S1, S7) with taskset: same (default) = both on CPU 0,
                       split = server on CPU 0, client on CPU 1
  --smoke              every scenario briefly, one run (CI: checks the bench still works)
  --json <path>        also write the JSON results there (always: bench/results/latest.json)
  --cpu-prof           run the children under node --cpu-prof (bench/results/profiles/)
  --trace              a no-op subscriber on every smartipc diagnostics channel in the smartipc
                       children (what an attached tracer costs)
  --help`;

function parseArgs(argv) {
  const options = { scenarios: Object.keys(SCENARIOS), impls: [...IMPLS], pin: undefined, smoke: false, json: undefined, cpuProf: false, trace: false };
  const explicit = {};
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const next = () => {
      if (value !== undefined) return value;
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    const int = (name) => {
      const n = Number(next());
      if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number`);
      return n;
    };
    switch (arg) {
      case '--scenario':
      case '--scenarios':
        options.scenarios = next().split(',').map((s) => s.trim().toUpperCase()).filter(Boolean);
        for (const s of options.scenarios) if (!SCENARIOS[s]) throw new Error(`unknown scenario ${s} (known: ${Object.keys(SCENARIOS).join(', ')})`);
        break;
      case '--impl':
        options.impls = next().split(',').map((s) => s.trim()).filter(Boolean);
        for (const s of options.impls) if (!IMPLS.includes(s)) throw new Error(`unknown implementation ${s} (known: ${IMPLS.join(', ')})`);
        break;
      case '--duration-ms':
        explicit.durationMs = int(arg);
        break;
      case '--warmup-ms':
        explicit.warmupMs = Number(next());
        if (!(explicit.warmupMs >= 0)) throw new Error('--warmup-ms must be >= 0');
        break;
      case '--runs':
        explicit.runs = Math.floor(int(arg));
        break;
      case '--stream-mib':
        explicit.streamMiB = int(arg);
        break;
      case '--pin':
        options.pin = value ?? 'same';
        if (options.pin !== 'split' && options.pin !== 'same') throw new Error('--pin takes split or same');
        break;
      case '--smoke':
        options.smoke = true;
        break;
      case '--json':
        options.json = next();
        break;
      case '--cpu-prof':
        options.cpuProf = true;
        break;
      case '--trace':
        options.trace = true;
        break;
      case '--help':
      case '-h':
        console.log(USAGE);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${arg}\n${USAGE}`);
    }
  }
  const base = options.smoke
    ? { durationMs: 200, warmupMs: 100, runs: 1, streamMiB: 16 }
    : { durationMs: 3000, warmupMs: 1000, runs: 3, streamMiB: 1024 };
  Object.assign(options, base, explicit);
  return options;
}

// ---- child processes -----------------------------------------------------------------------------

/** A benchmark child: its messages, its output tail, its exit. */
class Child {
  constructor(name, proc) {
    this.name = name;
    this.proc = proc;
    this.messages = [];
    this.waiters = [];
    this.tail = '';
    this.exited = false;
    this.stopping = false;
    const keep = (chunk) => {
      this.tail = (this.tail + chunk.toString()).slice(-4000);
    };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    proc.on('message', (message) => this.deliver(message));
    this.exit = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        this.exited = true;
        this.exitCode = code;
        this.exitSignal = signal;
        resolve({ code, signal });
        // An exit before 'stop' is a failure, whatever the code.
        if (!this.stopping) this.deliver({ type: 'error', message: `exited early (code ${code}, signal ${signal})` });
      });
      proc.on('error', (err) => this.deliver({ type: 'error', message: `could not start: ${err.message}` }));
    });
  }

  deliver(message) {
    if (!message || typeof message !== 'object') return;
    this.messages.push(message);
    for (const waiter of [...this.waiters]) {
      if (waiter.types.includes(message.type)) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve(message);
      }
    }
  }

  /** The first message of one of `types`, already received or yet to come. */
  waitFor(...types) {
    const seen = this.messages.find((m) => types.includes(m.type));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ types, resolve }));
  }

  failure() {
    return this.waitFor('error').then((m) => `${this.name}: ${m.message}${this.tail ? `\n--- output tail ---\n${this.tail.trim()}` : ''}`);
  }

  send(message) {
    if (!this.exited && this.proc.connected) this.proc.send(message);
  }

  kill() {
    if (!this.exited) this.proc.kill('SIGKILL');
  }
}

const TRACING_MODULE = pathToFileURL(path.join(BENCH_DIR, 'smartipc', 'tracing.js')).href;

function spawnChild({ impl, role, config, cpu, cpuProfName, trace }) {
  const script = path.join(BENCH_DIR, impl, ROLE_SCRIPTS[role]);
  const nodeArgs = trace && impl === 'smartipc' ? ['--import', TRACING_MODULE] : [];
  if (cpuProfName) {
    fs.mkdirSync(path.join(RESULTS_DIR, 'profiles'), { recursive: true });
    nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${path.join(RESULTS_DIR, 'profiles')}`, `--cpu-prof-name=${cpuProfName}`);
  }
  const stdio = ['ignore', 'pipe', 'pipe', 'ipc'];
  const proc = cpu === undefined
    ? fork(script, [JSON.stringify(config)], { stdio, execArgv: nodeArgs })
    : spawn('taskset', ['-c', String(cpu), process.execPath, ...nodeArgs, script, JSON.stringify(config)], { stdio });
  return new Child(`${impl}/${role}`, proc);
}

// ---- one run ---------------------------------------------------------------------------------------

let socketCounter = 0;

function runBudgetMs(id, options) {
  let ms = options.warmupMs + options.durationMs + 20_000;
  // Streams: allow a pessimistic 10 MB/s before calling it hung.
  if (id === 'S5') ms += ((options.streamMiB + streamWarmupMiB(options)) * MIB) / 10e6 * 1000;
  return Math.round(ms);
}

function streamWarmupMiB(options) {
  return Math.max(1, Math.min(64, Math.floor(options.streamMiB / 8)));
}

function pinFor(scenario, role, options) {
  if (!options.pin || !scenario.pinnable) return undefined;
  if (options.pin === 'same') return 0;
  return role === 'server' ? 0 : 1;
}

async function runOnce(id, impl, runIndex, options) {
  const scenario = SCENARIOS[id];
  const socketPath = path.join(os.tmpdir(), `smartipc-bench-${process.pid}-${++socketCounter}.sock`);
  const budgetMs = runBudgetMs(id, options);
  const config = {
    scenario: id,
    socketPath,
    warmupMs: options.warmupMs,
    durationMs: options.durationMs,
    streamBytes: options.streamMiB * MIB,
    warmupStreamBytes: streamWarmupMiB(options) * MIB,
    subscribers: 10,
    inFlight: 100,
    hardTimeoutMs: budgetMs + 5_000,
  };
  const children = {};
  let deadlineTimer;
  const deadline = new Promise((resolve) => {
    deadlineTimer = setTimeout(() => resolve({ kind: 'error', message: `timed out after ${budgetMs} ms` }), budgetMs);
  });
  const anyFailure = () => Promise.race(Object.values(children).map((c) => c.failure().then((message) => ({ kind: 'error', message }))));
  const anySkip = () => Promise.race(Object.values(children).map((c) => c.waitFor('skip').then((m) => ({ kind: 'skip', reason: m.reason }))));
  let outcome;
  try {
    for (const role of scenario.roles) {
      children[role] = spawnChild({
        impl,
        role,
        config: { ...config, role },
        cpu: pinFor(scenario, role, options),
        cpuProfName: options.cpuProf ? `${impl}-${id}-${role}-run${runIndex + 1}.cpuprofile` : undefined,
        trace: options.trace,
      });
      const started = await Promise.race([children[role].waitFor('ready').then(() => ({ kind: 'ready' })), anyFailure(), anySkip(), deadline]);
      if (started.kind !== 'ready') {
        outcome = started;
        break;
      }
    }
    if (!outcome) {
      const results = Promise.all(scenario.reporters.map((role) => children[role].waitFor('result'))).then((messages) => ({ kind: 'ok', messages }));
      outcome = await Promise.race([results, anyFailure(), anySkip(), deadline]);
    }
  } finally {
    clearTimeout(deadlineTimer);
  }
  const finals = await stopAll(children);
  fs.rmSync(socketPath, { force: true });
  if (outcome.kind !== 'ok') return outcome;

  const data = {};
  for (const message of outcome.messages) Object.assign(data, message.data);
  for (const [role, final] of Object.entries(finals)) {
    if (!final) continue;
    data[`${role}PeakRssMiB`] = final.peakRssBytes / MIB;
    data[`${role}RssGrowthMiB`] = final.rssGrowthBytes / MIB;
  }
  return { kind: 'ok', data };
}

/** Asks every child to stop, collects its memory figures, kills whatever is still there after 5 s. */
async function stopAll(children) {
  const finals = {};
  await Promise.all(
    Object.entries(children).map(async ([role, child]) => {
      child.stopping = true;
      child.send({ type: 'stop' });
      let timer;
      const final = await Promise.race([
        child.waitFor('final'),
        child.exit.then(() => undefined),
        new Promise((resolve) => {
          timer = setTimeout(resolve, 5_000);
        }),
      ]);
      clearTimeout(timer);
      finals[role] = final?.data;
      let killTimer;
      await Promise.race([
        child.exit,
        new Promise((resolve) => {
          killTimer = setTimeout(resolve, 2_000);
        }),
      ]);
      clearTimeout(killTimer);
      child.kill();
    }),
  );
  return finals;
}

// ---- features, machine ---------------------------------------------------------------------------

async function detectFeatures() {
  if (!fs.existsSync(DIST_ENTRY)) return { error: `${path.relative(process.cwd(), DIST_ENTRY)} is missing: run npm run build` };
  try {
    const lib = await import(pathToFileURL(DIST_ENTRY).href);
    const client = lib.SmartIpc.createClient({ id: 'bench-probe', socketPath: path.join(os.tmpdir(), 'smartipc-bench-probe.sock') });
    const { missingFeature } = await import('./smartipc/features.js');
    return { missing: Object.fromEntries(Object.keys(SCENARIOS).map((id) => [id, missingFeature(client, id)]).filter(([, m]) => m)) };
  } catch (err) {
    return { error: `cannot load the built library: ${err.message}` };
  }
}

function machineInfo() {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cpus: cpus.length,
    totalMemGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    platform: `${os.platform()} ${os.release()}`,
    node: process.version,
  };
}

function tasksetWorks() {
  try {
    execFileSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// ---- report ----------------------------------------------------------------------------------------

function formatNumber(value) {
  if (value === undefined || !Number.isFinite(value)) return '–';
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function describeTarget(target) {
  if (!target) return '';
  if (target.absMin !== undefined) return `≥ ${target.absMin}`;
  if (target.ratioMin !== undefined) return `≥ ${target.ratioMin}×`;
  if (target.ratioMax !== undefined) return `≤ ${target.ratioMax}×`;
  return `≤ ${formatNumber(target.absMax)}`;
}

function checkTarget(target, smartipcValue, ratio) {
  if (!target) return undefined;
  if (target.absMin !== undefined) return smartipcValue === undefined ? undefined : smartipcValue >= target.absMin;
  if (target.absMax !== undefined) return smartipcValue === undefined ? undefined : smartipcValue <= target.absMax;
  if (ratio === undefined || !Number.isFinite(ratio)) return undefined;
  if (target.ratioMin !== undefined) return ratio >= target.ratioMin;
  return ratio <= target.ratioMax;
}

function summarise(id, implResults) {
  const scenario = SCENARIOS[id];
  const rows = [];
  for (const metric of scenario.metrics) {
    const value = (impl) => implResults[impl]?.median?.[metric.key];
    const b = value('baseline');
    const s = value('smartipc');
    const ratio = b !== undefined && s !== undefined && b !== 0 ? s / b : undefined;
    rows.push({ ...metric, baseline: b, smartipc: s, ratio, met: checkTarget(metric.target, s, ratio) });
  }
  return rows;
}

function cellFor(implResult, value) {
  if (!implResult) return 'not run';
  if (implResult.status === 'skip') return `skipped: ${implResult.reason}`;
  if (implResult.status === 'error') return `error (${implResult.errors.length} of ${implResult.runs.length + implResult.errors.length} runs)`;
  return formatNumber(value);
}

function markdownTable(report) {
  const lines = [
    '| Scenario | Metric | baseline | smartipc | smartipc/baseline | Target | Met |',
    '|---|---|---:|---:|---:|---|---|',
  ];
  for (const [id, entry] of Object.entries(report.scenarios)) {
    entry.rows.forEach((row, i) => {
      const name = i === 0 ? `${id} ${entry.title}` : '';
      const met = row.met === undefined ? '' : row.met ? 'yes' : 'no';
      // A scenario measured on one side only says why once, not in every row.
      const baselineCell = i > 0 && entry.impls.baseline?.status === 'skip' ? '–' : cellFor(entry.impls.baseline, row.baseline);
      lines.push(`| ${name} | ${row.label} | ${baselineCell} | ${cellFor(entry.impls.smartipc, row.smartipc)} | ${row.ratio === undefined ? '–' : row.ratio.toFixed(2)} | ${describeTarget(row.target)} | ${met} |`);
    });
  }
  return lines.join('\n');
}

// ---- main ------------------------------------------------------------------------------------------

async function main() {
  let options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(err.message);
    process.exit(2);
  }
  const startedAt = new Date();
  const loadBefore = os.loadavg();
  const notes = [];
  if (options.pin && !tasksetWorks()) {
    notes.push('--pin ignored: taskset is not available');
    options.pin = undefined;
  }
  if (options.pin === 'split' && os.cpus().length < 2) {
    notes.push('--pin=split needs 2 CPUs; using --pin=same');
    options.pin = 'same';
  }
  const features = options.impls.includes('smartipc') ? await detectFeatures() : { missing: {} };
  if (features.error) notes.push(features.error);

  console.log(`smartipc bench: ${options.scenarios.join(', ')} | ${options.impls.join(' vs ')} | ${options.runs} run(s) x (${options.warmupMs} ms warm-up + ${options.durationMs} ms)` +
    `${options.scenarios.includes('S5') ? ` | S5 stream ${options.streamMiB} MiB` : ''}${options.pin ? ` | pinned (${options.pin}) for S1, S7` : ''}${options.smoke ? ' | smoke' : ''}${options.trace ? ' | tracing subscribers attached' : ''}`);

  const report = { generatedAt: startedAt.toISOString(), machine: machineInfo(), options, notes, scenarios: {} };
  let errors = 0;
  for (const id of options.scenarios) {
    const scenario = SCENARIOS[id];
    const impls = {};
    for (const impl of options.impls) impls[impl] = { status: 'ok', runs: [], errors: [] };
    for (let run = 0; run < options.runs; run++) {
      // Alternate the order so a drifting machine does not favour one side.
      const order = run % 2 === 0 ? options.impls : [...options.impls].reverse();
      for (const impl of order) {
        const entry = impls[impl];
        if (entry.status === 'skip') continue;
        if (scenario.only !== undefined && scenario.only !== impl) {
          Object.assign(entry, { status: 'skip', reason: `${id} measures ${scenario.only} only` });
          continue;
        }
        const missing = impl === 'smartipc' ? features.error ?? features.missing?.[id] : undefined;
        if (missing) {
          Object.assign(entry, { status: features.error ? 'error' : 'skip', reason: missing });
          if (features.error) entry.errors.push(missing);
          continue;
        }
        const t0 = performance.now();
        const outcome = await runOnce(id, impl, run, options);
        const secs = ((performance.now() - t0) / 1000).toFixed(1);
        if (outcome.kind === 'ok') {
          entry.runs.push(outcome.data);
          process.stderr.write(`  ${id} ${impl} run ${run + 1}/${options.runs}: ${brief(scenario, outcome.data)} (${secs} s)\n`);
        } else if (outcome.kind === 'skip') {
          Object.assign(entry, { status: 'skip', reason: outcome.reason });
          process.stderr.write(`  ${id} ${impl}: skipped: ${outcome.reason}\n`);
        } else {
          entry.errors.push(outcome.message);
          process.stderr.write(`  ${id} ${impl} run ${run + 1}/${options.runs}: ERROR ${outcome.message}\n`);
        }
      }
    }
    for (const entry of Object.values(impls)) {
      if (entry.status === 'skip') continue;
      if (entry.errors.length > 0) {
        entry.status = entry.runs.length > 0 ? 'ok' : 'error';
        errors += entry.errors.length;
      }
      const keys = new Set(entry.runs.flatMap((r) => Object.keys(r)));
      entry.median = Object.fromEntries([...keys].map((k) => [k, median(entry.runs.map((r) => r[k]))]).filter(([, v]) => v !== undefined));
    }
    report.scenarios[id] = { title: scenario.title, impls };
    report.scenarios[id].rows = summarise(id, impls);
  }
  report.loadAverage = { before: loadBefore, after: os.loadavg() };
  report.finishedAt = new Date().toISOString();

  const m = report.machine;
  console.log('');
  console.log(markdownTable(report));
  console.log('');
  console.log(`${m.cpus} x ${m.cpuModel}, ${m.totalMemGiB} GiB, ${m.platform}, Node ${m.node}; Unix socket; median of ${options.runs} run(s); ` +
    `load average ${loadBefore[0].toFixed(2)} before, ${report.loadAverage.after[0].toFixed(2)} after.`);
  if (options.smoke) notes.push('smoke run (CI): checks that every scenario still runs; its figures mean nothing');
  for (const note of notes) console.log(`note: ${note}`);

  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const json = `${JSON.stringify(report, null, 2)}\n`;
  fs.writeFileSync(path.join(RESULTS_DIR, 'latest.json'), json);
  if (options.json) {
    fs.mkdirSync(path.dirname(path.resolve(options.json)), { recursive: true });
    fs.writeFileSync(options.json, json);
  }
  if (errors > 0) {
    console.log(`${errors} run(s) failed; see above.`);
    process.exitCode = 1;
  }
}

function brief(scenario, data) {
  return scenario.metrics
    .filter((metric) => data[metric.key] !== undefined)
    .slice(0, 3)
    .map((metric) => `${formatNumber(data[metric.key])} ${metric.label}`)
    .join(', ');
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
