// 1. Live-socket fuzz: malformed frames over raw node:net sockets against a server in its own
// process, while a control client sends a request every 10 ms.
// - Half go on fresh connections, one each: garbage before the handshake, lying length prefixes,
//   truncated headers, unknown kinds and flags, broken HELLOs, and fatal frames right after a
//   valid handshake. The server must close every one of them.
// - Half go on one long connection after a valid handshake: frames that are well framed but wrong
//   inside (unknown and bad-UTF-8 types, invalid JSON, ids nobody knows, invalid patterns and
//   topics, stream frames for no stream), coalesced and split across reads at random offsets. The
//   connection must survive them and answer every request and subscribe exactly once; a final
//   unknown kind must close it.
// - Then 32 more fresh connections at once, each sending a length prefix just under
//   maxMessageSize (8 MiB) and all but the last byte of that frame, never a handshake.
// Pass: no crash, every bad connection closed, control client 100 % served, server RSS growth
// < 32 MiB (in each phase), server fds back to baseline.
import * as net from 'node:net';
import { SmartIpc, defaults } from '../../../ts/index.js';
import { MIB, RssWatch, fdsOf, fmtInt, fmtMiB, fmtMs, isAlive, maxOf, quantile, sleep } from '../lib/measure.js';
import { Random, seedFromEnv } from '../lib/random.js';
import { ENC, FLAG_BUDGET, FLAG_HEADERS, FrameReader, KIND, KIND_MAX, buildFrame, dialUnix, helloFrame, jsonFrame } from '../lib/wire.js';
import { pick, progress, runScenario, socketPath, startRole, until } from '../lib/scenario.js';

const TOTAL = pick(2_000, 10_000);
/** Of the fresh connections, this many at once send a length prefix just under maxMessageSize and all but one byte of the frame, never a handshake. */
const BIG_LIARS = pick(16, 32);
const FRESH = TOTAL / 2 - BIG_LIARS;
const LONG = TOTAL / 2;
const CONCURRENCY = 48;
const REGISTER_TIMEOUT_MS = 1_000;
const CLOSE_BOUND_MS = REGISTER_TIMEOUT_MS + 2_500;
const RSS_BOUND = 32 * MIB;
const SERVER_ID = 'rel-1';

const BAD_UTF8: readonly number[][] = [[0xff], [0xfe, 0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80, 0x80], [0x80], [0xf4, 0x90, 0x80, 0x80]];

const rng = new Random(seedFromEnv());

function badUtf8(prefix = ''): Buffer {
  return Buffer.concat([Buffer.from(prefix), Buffer.from(rng.pick(BAD_UTF8)), rng.bytes(rng.int(0, 6)), Buffer.from(rng.pick(BAD_UTF8))]);
}

function prefix(length: number): Buffer {
  const buf = Buffer.alloc(4);
  buf.writeUInt32BE(length >>> 0);
  return buf;
}

function unknownKind(): number {
  return rng.next() < 0.2 ? 0 : rng.int(KIND_MAX + 1, 255);
}

interface IFreshCase {
  name: string;
  bytes: Buffer;
  /** Half-close after writing: a frame left incomplete must be dropped once the peer is gone. */
  fin?: boolean;
}

/** One malformed input for a fresh connection; the server must close the connection. */
function freshCase(n: number): IFreshCase {
  const hello = helloFrame(SERVER_ID, `fuzz-${n}`);
  const cases: Array<() => IFreshCase> = [
    () => ({ name: 'random bytes before the handshake', bytes: rng.bytes(rng.int(1, 2048)) }),
    () => ({ name: 'garbage, then a valid HELLO', bytes: Buffer.concat([rng.bytes(rng.int(1, 64)), hello]) }),
    () => ({ name: 'length prefix over maxMessageSize', bytes: Buffer.concat([prefix(rng.int(defaults.DEFAULT_MAX_MESSAGE_SIZE_BYTES + 1, 0xffffffff)), rng.bytes(rng.int(0, 256))]) }),
    () => ({ name: 'length prefix never completed (handshake timeout)', bytes: Buffer.concat([prefix(rng.int(100, 60_000)), rng.bytes(rng.int(0, 90))]) }),
    () => ({ name: 'length shorter than the header', bytes: Buffer.concat([prefix(rng.int(0, 7)), rng.bytes(rng.int(0, 16))]) }),
    () => ({ name: 'truncated header, then FIN', bytes: Buffer.concat([prefix(rng.int(8, 64)), rng.bytes(rng.int(0, 7))]), fin: true }),
    () => ({ name: 'unknown kind before the handshake', bytes: buildFrame({ kind: unknownKind(), id: rng.int(0, 9), type: 'x', payload: rng.bytes(rng.int(0, 32)) }) }),
    () => ({ name: 'unknown flag bits in a HELLO', bytes: buildFrame({ kind: KIND.Hello, flags: ENC.Json | (rng.int(1, 7) << 5), payload: '{}' }) }),
    () => ({ name: 'a request before the handshake', bytes: jsonFrame(KIND.Request, 1, 'echo', 1) }),
    () => ({ name: 'HELLO with invalid JSON', bytes: buildFrame({ kind: KIND.Hello, flags: ENC.Json, payload: Buffer.concat([Buffer.from('{"serverId":'), rng.bytes(rng.int(1, 40))]) }) }),
    () => ({ name: 'HELLO that is not an object', bytes: jsonFrame(KIND.Hello, 0, '', rng.pick([null, 42, 'hello', [1, 2], true])) }),
    () => ({ name: 'HELLO without a clientId', bytes: jsonFrame(KIND.Hello, 0, '', { serverId: SERVER_ID, protocolVersion: defaults.PROTOCOL_VERSION }) }),
    () => ({ name: 'HELLO with another protocol version', bytes: helloFrame(SERVER_ID, `fuzz-${n}`, { protocolVersion: rng.pick([0, 1, 3, 999, -1, 'two']) }) }),
    () => ({ name: 'HELLO for another service id', bytes: helloFrame(`not-${SERVER_ID}`, `fuzz-${n}`) }),
    () => ({ name: 'HELLO with a bad maxMessageSize', bytes: helloFrame(SERVER_ID, `fuzz-${n}`, { maxMessageSize: rng.pick([0, -5, 'big', null]) }) }),
    () => ({ name: 'HELLO with another serialization', bytes: helloFrame(SERVER_ID, `fuzz-${n}`, { serialization: rng.pick(['advanced', 'xml', 7]) }) }),
    // After a valid handshake: fatal frames.
    () => ({ name: 'after HELLO: unknown kind', bytes: Buffer.concat([hello, buildFrame({ kind: unknownKind(), type: badUtf8(), payload: rng.bytes(rng.int(0, 64)) })]) }),
    () => ({ name: 'after HELLO: unknown flag bits', bytes: Buffer.concat([hello, buildFrame({ kind: KIND.Request, flags: ENC.Json | 0x80, id: 1, type: 'echo', payload: '1' })]) }),
    () => ({ name: 'after HELLO: type length past the frame end', bytes: Buffer.concat([hello, (() => { const f = jsonFrame(KIND.Request, 1, 'echo', 1); f.writeUInt16BE(0xffff, 10); return f; })()]) }),
    () => ({ name: 'after HELLO: headers length past the frame end', bytes: Buffer.concat([hello, (() => { const f = buildFrame({ kind: KIND.Request, flags: ENC.Json | FLAG_HEADERS, id: 1, type: 'echo', headers: '{}', payload: '1' }); f.writeUInt32BE(0x7fffffff, 12 + 4); return f; })()]) }),
    () => ({ name: 'after HELLO: headers that are not a JSON object', bytes: Buffer.concat([hello, buildFrame({ kind: KIND.Request, flags: ENC.Json | FLAG_HEADERS, id: 1, type: 'echo', headers: rng.pick(['[1]', 'null', '{"a":', badUtf8().toString('latin1')]), payload: '1' })]) }),
    () => ({ name: 'after HELLO: deadline field cut off', bytes: Buffer.concat([hello, buildFrame({ kind: KIND.Request, flags: ENC.Json | FLAG_BUDGET, id: 1, type: 'ec' })]) }),
    () => ({ name: 'after HELLO: v8 payload on a json connection', bytes: Buffer.concat([hello, buildFrame({ kind: KIND.Request, flags: ENC.V8, id: 1, type: 'echo', payload: rng.bytes(rng.int(1, 64)) })]) }),
    () => ({ name: 'after HELLO: length shorter than the header', bytes: Buffer.concat([hello, prefix(rng.int(0, 7)), rng.bytes(8)]) }),
    () => ({ name: 'after HELLO: length prefix over maxMessageSize', bytes: Buffer.concat([hello, prefix(rng.int(defaults.DEFAULT_MAX_MESSAGE_SIZE_BYTES + 1, 0xffffffff)), rng.bytes(16)]) }),
    () => ({ name: 'after HELLO: random bytes, then FIN', bytes: Buffer.concat([hello, rng.bytes(rng.int(1, 4096))]), fin: true }),
    () => ({ name: 'after HELLO: truncated frame, then FIN', bytes: Buffer.concat([hello, jsonFrame(KIND.Request, 1, 'echo', 'x'.repeat(100)).subarray(0, rng.int(1, 100))]), fin: true }),
  ];
  return rng.pick(cases)();
}

/** Writes `bytes` split at random offsets, a turn of the event loop between pieces (separate reads on the other side). */
async function writeSplit(socket: net.Socket, bytes: Buffer, maxPieces: number): Promise<void> {
  for (const piece of rng.split(bytes, maxPieces)) {
    if (socket.destroyed) return;
    if (!socket.write(piece)) await new Promise<void>((resolve) => { socket.once('drain', resolve); socket.once('close', resolve); });
    if (rng.next() < 0.5) await new Promise((resolve) => setImmediate(resolve));
  }
}

interface IFreshOutcome {
  name: string;
  closedByServer: boolean;
  ms: number;
  answered: string;
}

async function runFresh(path: string, n: number): Promise<IFreshOutcome> {
  const input = freshCase(n);
  const socket = await dialUnix(path);
  const t0 = performance.now();
  const kinds: number[] = [];
  const reader = new FrameReader((frame) => kinds.push(frame.kind));
  socket.on('data', (chunk: Buffer) => {
    try {
      reader.push(chunk);
    } catch {
      // the server never sends garbage; a parse failure would show as a missing answer
    }
  });
  socket.on('error', () => undefined);
  const closed = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), CLOSE_BOUND_MS);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  await writeSplit(socket, input.bytes, 4);
  if (input.fin) socket.end();
  const closedByServer = await closed;
  socket.destroy();
  return { name: input.name, closedByServer, ms: performance.now() - t0, answered: kinds.map((k) => (k === KIND.Welcome ? 'welcome' : k === KIND.Reject ? 'reject' : String(k))).join(',') };
}

/** Well-framed but wrong inside: the long connection must take these and answer what expects an answer. */
function longFrame(id: number): { bytes: Buffer; expects: 'answer' | 'subscribeAck' | 'unsubscribeAck' | 'pong' | 'nothing'; name: string } {
  const choices = [
    () => ({ name: 'request with an unknown (bad UTF-8) type', expects: 'answer' as const, bytes: jsonFrame(KIND.Request, id, badUtf8('no.such.').toString('latin1'), 1) }),
    () => ({ name: 'request with bad UTF-8 in the type bytes', expects: 'answer' as const, bytes: buildFrame({ kind: KIND.Request, flags: ENC.Json, id, type: badUtf8('t'), payload: '1' }) }),
    () => ({ name: 'request with invalid JSON', expects: 'answer' as const, bytes: buildFrame({ kind: KIND.Request, flags: ENC.Json, id, type: 'echo', payload: Buffer.concat([Buffer.from('{"a":'), rng.bytes(rng.int(0, 30))]) }) }),
    () => ({ name: 'request with bad UTF-8 inside JSON', expects: 'answer' as const, bytes: buildFrame({ kind: KIND.Request, flags: ENC.Json, id, type: 'echo', payload: Buffer.concat([Buffer.from('"'), badUtf8(), Buffer.from('"')]) }) }),
    () => ({ name: 'request with odd headers and a zero deadline', expects: 'answer' as const, bytes: buildFrame({ kind: KIND.Request, flags: ENC.Json | FLAG_HEADERS | FLAG_BUDGET, id, type: 'echo', budgetMs: 0, headers: JSON.stringify({ [badUtf8().toString('latin1')]: [null, { x: 1 }] }), payload: '"h"' }) }),
    () => ({ name: 'request with no payload', expects: 'answer' as const, bytes: buildFrame({ kind: KIND.Request, flags: ENC.None, id, type: 'echo' }) }),
    () => ({ name: 'message with an unknown type', expects: 'nothing' as const, bytes: buildFrame({ kind: KIND.Message, flags: ENC.Json, type: badUtf8(), payload: '1' }) }),
    () => ({ name: 'message with invalid JSON', expects: 'nothing' as const, bytes: buildFrame({ kind: KIND.Message, flags: ENC.Json, type: 'note', payload: rng.bytes(rng.int(1, 40)) }) }),
    () => ({ name: 'response for an id nobody asked', expects: 'nothing' as const, bytes: buildFrame({ kind: KIND.Response, flags: ENC.Json, id: rng.int(1, 0xffffffff), payload: rng.bytes(rng.int(0, 40)) }) }),
    () => ({ name: 'error response with garbage', expects: 'nothing' as const, bytes: buildFrame({ kind: KIND.ErrorResponse, flags: ENC.Json, id: rng.int(0, 0xffffffff), payload: rng.bytes(rng.int(0, 40)) }) }),
    () => ({ name: 'cancel for an unknown id', expects: 'nothing' as const, bytes: buildFrame({ kind: KIND.Cancel, flags: ENC.Json, id: rng.int(0, 0xffffffff), payload: rng.bytes(rng.int(0, 40)) }) }),
    () => ({ name: 'ping with a payload', expects: 'pong' as const, bytes: buildFrame({ kind: KIND.Ping, flags: ENC.Binary, payload: rng.bytes(rng.int(0, 40)) }) }),
    () => ({ name: 'subscribe to an invalid pattern', expects: 'subscribeAck' as const, bytes: buildFrame({ kind: KIND.Subscribe, id, type: rng.pick([Buffer.from(''), Buffer.from('a..b'), Buffer.from('>.x'), Buffer.from('a\u0000b'), badUtf8('p.')]) }) }),
    () => ({ name: 'unsubscribe from a pattern never subscribed', expects: 'unsubscribeAck' as const, bytes: buildFrame({ kind: KIND.Unsubscribe, id, type: badUtf8('u.') }) }),
    () => ({ name: 'publish to an invalid topic', expects: 'nothing' as const, bytes: buildFrame({ kind: KIND.Publish, flags: ENC.Json, type: rng.pick([Buffer.from(''), Buffer.from('a.*'), Buffer.from('x..y'), Buffer.from('t\u0000z')]), payload: '1' }) }),
    () => ({ name: 'stream frame for no stream', expects: 'nothing' as const, bytes: buildFrame({ kind: rng.pick([KIND.StreamChunk, KIND.StreamEnd, KIND.StreamCredit, KIND.StreamCancel]), flags: ENC.Binary, id: rng.int(1, 0xffffffff), payload: rng.bytes(rng.int(0, 64)) }) }),
  ];
  return rng.pick(choices)();
}

interface ILongOutcome {
  inputs: number;
  expected: number;
  answered: number;
  duplicates: number;
  missing: number;
  pongs: number;
  pings: number;
  survived: boolean;
  closedOnFatal: boolean;
  error?: string;
}

async function runLong(path: string): Promise<ILongOutcome> {
  const socket = await dialUnix(path);
  socket.on('error', () => undefined);
  const outcome: ILongOutcome = { inputs: 0, expected: 0, answered: 0, duplicates: 0, missing: 0, pongs: 0, pings: 0, survived: false, closedOnFatal: false };
  const waiting = new Map<number, number>(); // id -> expected answer kind
  const seen = new Set<number>();
  let welcomed = false;
  let closed = false;
  const closedPromise = new Promise<void>((resolve) => socket.once('close', () => {
    closed = true;
    resolve();
  }));
  const reader = new FrameReader((frame) => {
    if (frame.kind === KIND.Welcome) welcomed = true;
    else if (frame.kind === KIND.Pong) outcome.pongs++;
    else if (frame.kind === KIND.Ping) socket.write(buildFrame({ kind: KIND.Pong }));
    else if (frame.kind === KIND.Response || frame.kind === KIND.ErrorResponse || frame.kind === KIND.Subscribe || frame.kind === KIND.Unsubscribe) {
      const expected = waiting.get(frame.id);
      const ok = expected === frame.kind || (expected === KIND.Response && frame.kind === KIND.ErrorResponse);
      if (ok) {
        waiting.delete(frame.id);
        seen.add(frame.id);
        outcome.answered++;
      } else if (seen.has(frame.id)) {
        outcome.duplicates++;
      }
    }
  });
  socket.on('data', (chunk: Buffer) => reader.push(chunk));
  socket.write(helloFrame(SERVER_ID, 'fuzz-long'));
  if (!(await until(() => welcomed || closed, 5_000))) throw new Error('the long connection got no WELCOME');
  if (closed) throw new Error('the long connection was refused');
  let id = 0;
  while (outcome.inputs < LONG) {
    const frames: Buffer[] = [];
    const batch = Math.min(LONG - outcome.inputs, rng.int(1, 8));
    for (let i = 0; i < batch; i++) {
      const input = longFrame(++id);
      frames.push(input.bytes);
      outcome.inputs++;
      if (input.expects === 'answer') waiting.set(id, KIND.Response);
      else if (input.expects === 'subscribeAck') waiting.set(id, KIND.Subscribe);
      else if (input.expects === 'unsubscribeAck') waiting.set(id, KIND.Unsubscribe);
      else if (input.expects === 'pong') outcome.pings++;
      if (input.expects === 'answer' || input.expects === 'subscribeAck' || input.expects === 'unsubscribeAck') outcome.expected++;
    }
    await writeSplit(socket, Buffer.concat(frames), 6);
    if (closed) break;
    // Bounded: never more than 512 answers outstanding.
    if (waiting.size > 512) await until(() => waiting.size < 128 || closed, 5_000);
  }
  // A valid request last: the connection still serves.
  const lastId = ++id;
  waiting.set(lastId, KIND.Response);
  outcome.expected++;
  socket.write(jsonFrame(KIND.Request, lastId, 'echo', 'still here'));
  await until(() => waiting.size === 0 || closed, 5_000);
  outcome.missing = waiting.size;
  outcome.survived = !closed;
  // Finally a fatal frame: the server must close the connection.
  socket.write(buildFrame({ kind: unknownKind(), payload: 'bye' }));
  await Promise.race([closedPromise, sleep(CLOSE_BOUND_MS)]);
  outcome.closedOnFatal = closed;
  socket.destroy();
  return outcome;
}

/** Connections that each announce a frame just under maxMessageSize and send all of it but one byte, before any handshake. */
async function runBigLiars(path: string, count: number): Promise<{ closed: number; ms: number }> {
  const length = defaults.DEFAULT_MAX_MESSAGE_SIZE_BYTES - 1;
  const t0 = performance.now();
  const closedFlags = await Promise.all(Array.from({ length: count }, async () => {
    const socket = await dialUnix(path);
    socket.on('error', () => undefined);
    const closed = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), CLOSE_BOUND_MS + 5_000);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    socket.write(prefix(length));
    socket.write(Buffer.alloc(length - 1, 0x61));
    const ok = await closed;
    socket.destroy();
    return ok;
  }));
  return { closed: closedFlags.filter(Boolean).length, ms: performance.now() - t0 };
}

runScenario('live-socket fuzz', async (v) => {
  const path = socketPath('s');
  const server = await startRole({ script: 'server.ts', name: 'server', config: { id: SERVER_ID, socketPath: path, options: { registerTimeoutMs: REGISTER_TIMEOUT_MS } } });
  const control = SmartIpc.createClient({ id: SERVER_ID, socketPath: path, clientOnly: true, clientId: 'control' });
  await control.connect();
  await control.request('echo', 'warm');
  // Baselines once the control client is connected and the server warm.
  await sleep(200);
  const rss = new RssWatch(server.pid);
  const rssBase = rss.baseBytes;
  const fdsBase = fdsOf(server.pid)!;
  progress(`seed ${rng.seed}; server rss ${fmtMiB(rssBase)}, ${fdsBase} fds; ${fmtInt(FRESH)} fresh connections, ${fmtInt(LONG)} frames on one long one`);

  // The control client: a request every 10 ms for the whole run.
  const latencies: number[] = [];
  let controlSent = 0;
  let controlFailed = 0;
  const controlErrors: Record<string, number> = {};
  const controlInFlight = new Set<Promise<void>>();
  const controlTimer = setInterval(() => {
    controlSent++;
    const t0 = performance.now();
    const p = control.request('echo', controlSent, { timeout: 2_000 }).then(
      () => {
        latencies.push(performance.now() - t0);
      },
      (err: { code?: string }) => {
        controlFailed++;
        controlErrors[err.code ?? 'other'] = (controlErrors[err.code ?? 'other'] ?? 0) + 1;
      },
    );
    controlInFlight.add(p);
    void p.finally(() => controlInFlight.delete(p));
  }, 10);

  const t0 = performance.now();
  const longRun = runLong(path);
  const fresh: IFreshOutcome[] = [];
  let next = 0;
  const worker = async () => {
    while (next < FRESH) {
      const n = next++;
      try {
        fresh.push(await runFresh(path, n));
      } catch (err) {
        fresh.push({ name: `dial failed: ${(err as Error).message}`, closedByServer: false, ms: 0, answered: '' });
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const long = await longRun;
  const fuzzMs = performance.now() - t0;
  const growth = rss.stop().growthBytes;
  const bigRss = new RssWatch(server.pid);
  const big = await runBigLiars(path, BIG_LIARS);
  const bigGrowth = bigRss.stop().growthBytes;
  progress(`${BIG_LIARS} connections with a ${fmtMiB(defaults.DEFAULT_MAX_MESSAGE_SIZE_BYTES - 1)} partial frame before the handshake: server RSS +${fmtMiB(bigGrowth)}, ${big.closed} closed by the server after ${fmtMs(big.ms)}`);
  clearInterval(controlTimer);
  await Promise.all([...controlInFlight]);

  const alive = isAlive(server.pid);
  const fdsBack = await until(() => fdsOf(server.pid) === fdsBase, 3_000, 50);
  const fdsAfter = fdsOf(server.pid);
  const stats = await server.call<{ counters: { messageErrors: Record<string, number>; errors: number }; connectedClients: number }>('stats');
  const stop = await server.call<{ ms: number }>('stop', { graceMs: 1_000 });
  const exit = await server.waitExit(3_000);
  await control.disconnect();

  const leftOpen = fresh.filter((o) => !o.closedByServer);
  const leftOpenNames = [...new Set(leftOpen.map((o) => o.name))];
  const closeMs = fresh.filter((o) => o.closedByServer).map((o) => o.ms);
  const p99 = quantile(latencies, 0.99);
  const controlMax = latencies.length ? maxOf(latencies) : NaN;
  progress(`fuzz took ${fmtMs(fuzzMs)}; messageError by code ${JSON.stringify(stats.counters.messageErrors)}; long connection ${JSON.stringify(long)}`);

  v.check(alive && exit.code === 0 && !exit.killed, `the server crashed or did not stop cleanly (alive ${alive}, exit ${JSON.stringify(exit)})`);
  v.check(big.closed === BIG_LIARS, `${BIG_LIARS - big.closed} of ${BIG_LIARS} connections with a partial 8 MiB frame before the handshake were not closed`);
  v.check(leftOpen.length === 0, `${leftOpen.length} of ${FRESH} bad connections were not closed by the server within ${fmtMs(CLOSE_BOUND_MS)}: ${leftOpenNames.join('; ')}`);
  v.check(long.survived, `the long connection was dropped after ${long.inputs} well-framed inputs`);
  v.check(long.missing === 0 && long.duplicates === 0, `the long connection: ${long.missing} requests unanswered, ${long.duplicates} answered twice`);
  v.check(long.pongs === long.pings, `the long connection: ${long.pings} pings, ${long.pongs} pongs`);
  v.check(long.closedOnFatal, 'the long connection was not closed after an unknown frame kind');
  v.check(controlFailed === 0 && latencies.length === controlSent, `control client served ${latencies.length}/${controlSent} (${JSON.stringify(controlErrors)})`);
  v.check(growth < RSS_BOUND, `server RSS grew ${fmtMiB(growth)} under the fuzz (bound ${fmtMiB(RSS_BOUND)})`);
  v.check(bigGrowth < RSS_BOUND, `server RSS grew ${fmtMiB(bigGrowth)} while ${BIG_LIARS} connections that never sent a handshake each held a partial frame of up to maxMessageSize (bound ${fmtMiB(RSS_BOUND)})`);
  v.check(fdsBack, `server fds ${fdsAfter} after the fuzz, ${fdsBase} before`);

  v.figure('seed', rng.seed);
  v.figure('frames', TOTAL);
  v.figure('freshConnections', FRESH);
  v.figure('freshClosedByServer', FRESH - leftOpen.length);
  v.figure('freshCloseP50Ms', quantile(closeMs, 0.5));
  v.figure('freshCloseMaxMs', closeMs.length ? maxOf(closeMs) : null);
  v.figure('longInputs', long.inputs);
  v.figure('longAnswered', long.answered);
  v.figure('controlSent', controlSent);
  v.figure('controlServed', latencies.length);
  v.figure('controlP99Ms', p99);
  v.figure('controlMaxMs', controlMax);
  v.figure('serverRssBaseMiB', rssBase / MIB);
  v.figure('serverRssGrowthMiB', growth / MIB);
  v.figure('bigLiars', BIG_LIARS);
  v.figure('bigLiarsRssGrowthMiB', bigGrowth / MIB);
  v.figure('bigLiarsClosed', big.closed);
  v.figure('serverFdsBefore', fdsBase);
  v.figure('serverFdsAfter', fdsAfter ?? null);
  v.figure('messageErrors', JSON.stringify(stats.counters.messageErrors));
  v.figure('stopMs', stop.ms);
  v.figure('fuzzMs', fuzzMs);
  return {
    scenario: 'live-socket fuzz',
    load: `control request every 10 ms (${fmtInt(controlSent)} sent)`,
    faults: '-',
    badInputs: `${fmtInt(TOTAL)} malformed frames: ${fmtInt(FRESH + BIG_LIARS)} on fresh connections (${BIG_LIARS} of them 8 MiB partial frames before the handshake), ${fmtInt(LONG)} on one long one`,
    lost: `${controlSent - latencies.length} control requests`,
    figure: `no crash; ${FRESH - leftOpen.length + big.closed}/${FRESH + BIG_LIARS} bad connections closed; long connection answered ${long.answered}/${long.expected}; control ${latencies.length}/${controlSent} served, p99 ${fmtMs(p99)}, max ${fmtMs(controlMax)}; server RSS +${fmtMiB(growth)} under the fuzz, +${fmtMiB(bigGrowth)} under ${BIG_LIARS} partial 8 MiB frames (< 32 MiB); fds ${fdsBase} -> ${fdsAfter}`,
  };
});
