// send-file PATH [--meta JSON]: a file as a stream, with a progress bar on a terminal.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { IStreamMeta } from '../../index.js';
import type { ICommand } from '../cli.command.js';
import { CliFailure, EXIT_OK, UsageError } from '../cli.errors.js';
import { formatBytes, formatDuration } from '../cli.format.js';
import { ProgressBar } from '../cli.progress.js';

export const sendFile: ICommand = {
  name: 'send-file',
  summary: 'stream a file to the server (progress bar on a terminal)',
  arguments: [{ name: 'PATH', description: 'the file to send' }],
  options: {
    meta: { type: 'string', value: 'JSON', description: "a JSON object merged over the stream's meta (type 'file', basename, size), or -" },
  },
  description: [
    "Sends PATH like client.sendFile: meta { type: 'file', basename, size, ...--meta }, chunks under",
    "flow control, a sha256 the server checks before its readable ends. The server's 'stream' event",
    'receives it. Prints the size, time, rate and sha256; on a terminal a bar shows bytes, rate and ETA.',
  ].join('\n'),
  examples: [
    'smartipc send-file ./backup.tar --socket /tmp/demo.sock --id demo',
    `smartipc send-file report.pdf --meta '{"folder":"inbox"}' --host 127.0.0.1 --port 7000 --id files --json`,
  ],
  async run({ args, values, json, connect, out, signal }) {
    const [filePath] = args;
    const extraMeta = await json.parse('--meta', typeof values.meta === 'string' ? values.meta : undefined);
    if (extraMeta !== undefined && (extraMeta === null || typeof extraMeta !== 'object' || Array.isArray(extraMeta))) {
      throw new UsageError('--meta must be a JSON object, e.g. \'{"folder":"inbox"}\'');
    }
    let stat: fs.Stats;
    try {
      stat = await fs.promises.stat(filePath);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'ERROR';
      throw new CliFailure(code, `cannot read ${filePath} (${code})`, { cause: err });
    }
    if (!stat.isFile()) throw new CliFailure('EISDIR', `${filePath} is not a regular file`);
    const size = stat.size;
    const meta: IStreamMeta = { type: 'file', basename: path.basename(filePath), size, ...(extraMeta as Record<string, unknown> | undefined) };

    const client = await connect();
    const hash = crypto.createHash('sha256');
    let bytes = 0;
    const bar = out.interactive ? new ProgressBar(size, (text) => out.writeStderr(text), () => out.stderrColumns, out.err) : undefined;
    // Counted as the library takes each chunk: under its flow control that is at most one window
    // ahead of what the server has, and sendStream resolves when the server has the last byte.
    async function* chunks(): AsyncGenerator<Buffer> {
      for await (const chunk of fs.createReadStream(filePath, { highWaterMark: 64 * 1024 })) {
        const buffer = chunk as Buffer;
        hash.update(buffer);
        bytes += buffer.length;
        bar?.update(bytes);
        yield buffer;
      }
    }
    const started = performance.now();
    try {
      await client.sendStream(chunks(), { meta, checksum: 'sha256', objectMode: false, signal });
    } catch (err) {
      bar?.finish();
      throw err;
    }
    const elapsedMs = performance.now() - started;
    bar?.finish({ clear: true });
    const sha256 = hash.digest('hex');
    const rate = elapsedMs > 0 ? (bytes / elapsedMs) * 1000 : 0;
    out.result(
      { ok: true, path: filePath, basename: meta.basename, bytes, sha256, timeMs: Number(elapsedMs.toFixed(1)) },
      `sent ${meta.basename} (${formatBytes(bytes)}) in ${formatDuration(elapsedMs)}, ${formatBytes(Math.round(rate))}/s, sha256 ${sha256}`,
    );
    return EXIT_OK;
  },
};
