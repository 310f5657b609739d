// ping: handshake round trips. Each probe is one SmartIpc.waitForServer handshake (a probe the
// server answers without registering a client), timed; --wait lets the first one wait for a
// server that is still starting.
import { setTimeout as sleep } from 'node:timers/promises';
import { IpcError, SmartIpc, isIpcError } from '../../index.js';
import { integerFlag } from '../cli.args.js';
import type { ICommand } from '../cli.command.js';
import { describeCliEndpoint } from '../cli.endpoint.js';
import { EXIT_FAILURE, EXIT_OK } from '../cli.errors.js';
import { describeError } from '../cli.output.js';

/** One probe, bounded by timeoutMs; a probe's TIMEOUT wrapping the real cause reports the cause. */
async function probe(endpoint: object, id: string | undefined, waitMs: number, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new IpcError('TIMEOUT', `no handshake answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([SmartIpc.waitForServer({ ...endpoint, ...(id !== undefined ? { id } : {}), timeoutMs: waitMs }), deadline]);
  } catch (err) {
    // With no time to wait, waitForServer makes one probe and reports TIMEOUT with that probe's
    // failure (SERVER_UNAVAILABLE, ID_MISMATCH...) as the cause: that is what a user wants to see.
    if (waitMs === 0 && isIpcError(err, 'TIMEOUT') && isIpcError(err.cause)) throw err.cause;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

export const ping: ICommand = {
  name: 'ping',
  summary: "probe the server's handshake and print round-trip times",
  arguments: [],
  idOptional: true,
  options: {
    count: { type: 'string', short: 'c', value: 'N', description: 'probes to make (default 1)' },
    interval: { type: 'string', value: 'MS', description: 'pause between probes (default 1000)' },
    wait: { type: 'string', value: 'MS', description: 'let the first probe wait up to MS for a server that is starting (default 0)' },
  },
  description: [
    'Each probe is one handshake with the server (connect, hello, welcome) that registers no client,',
    'timed from the dial to the answer. --id is optional here: without it any server answers.',
    'Exits 0 when every probe was answered, 1 when one was not.',
  ].join('\n'),
  examples: ['smartipc ping --socket /tmp/demo.sock', 'smartipc ping --host 127.0.0.1 --port 8080 --id demo --count 5 --interval 200', 'smartipc ping --socket /tmp/demo.sock --wait 10000   # in a script: wait until it is up'],
  async run({ values, out, settings, signal }) {
    const count = integerFlag(values, 'count') ?? 1;
    const intervalMs = integerFlag(values, 'interval', { min: 0 }) ?? 1000;
    const waitMs = integerFlag(values, 'wait', { min: 0 }) ?? 0;
    const where = describeCliEndpoint(settings.endpoint);
    out.line(out.out.paint('bold', `PING ${where}${settings.id !== undefined ? ` (id "${settings.id}")` : ''}`));
    const times: number[] = [];
    let lastError: unknown;
    let sent = 0;
    for (let seq = 1; seq <= count && !signal.aborted; seq++) {
      sent++;
      const started = performance.now();
      try {
        await probe(settings.endpoint, settings.id, seq === 1 ? waitMs : 0, settings.timeoutMs + (seq === 1 ? waitMs : 0));
        const timeMs = performance.now() - started;
        times.push(timeMs);
        out.result({ type: 'probe', seq, ok: true, timeMs: Number(timeMs.toFixed(3)) }, `answer from ${where}: seq=${seq} time=${out.out.paint('green', `${timeMs.toFixed(2)} ms`)}`);
      } catch (err) {
        lastError = err;
        if (out.json) out.result({ type: 'probe', seq, ok: false, error: describeError(err) });
        else out.error(err, count === 1 ? 'smartipc ping' : `seq=${seq}`);
      }
      if (seq < count && intervalMs > 0) await sleep(intervalMs, undefined, { signal }).catch(() => undefined);
    }
    const answered = times.length;
    const summary = {
      type: 'summary',
      endpoint: where,
      sent,
      answered,
      lost: sent - answered,
      ...(answered > 0
        ? {
            minMs: Number(Math.min(...times).toFixed(3)),
            avgMs: Number((times.reduce((a, b) => a + b, 0) / answered).toFixed(3)),
            maxMs: Number(Math.max(...times).toFixed(3)),
          }
        : {}),
    };
    if (out.json) out.result(summary);
    else if (sent > 1) {
      out.line('');
      out.line(`--- ${where} ping statistics ---`);
      const stats = answered > 0 ? `; round trip min/avg/max = ${summary.minMs!.toFixed(2)}/${summary.avgMs!.toFixed(2)}/${summary.maxMs!.toFixed(2)} ms` : '';
      out.line(`${sent} probes, ${answered} answered, ${Math.round(((sent - answered) / sent) * 100)}% lost${stats}`);
    }
    return answered === sent && lastError === undefined ? EXIT_OK : EXIT_FAILURE;
  },
};
