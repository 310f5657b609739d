// Where the CLI writes: results on stdout (readable, or one JSON document per line with --json),
// notes and errors on stderr. Colours per stream, only on a TTY and never with NO_COLOR.
import { isIpcError } from '../index.js';
import { CliFailure, UsageError } from './cli.errors.js';
import { Painter, formatValue, jsonLine, wantsColors } from './cli.format.js';

export interface IOutputStreams {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  env: NodeJS.ProcessEnv;
}

/** What an error is reported as: a code (the IpcError's, or the CLI's own) and a message. */
export interface IErrorReport {
  code: string;
  message: string;
  remote?: { name: string; message: string; code?: string };
  retryAfterMs?: number;
}

export function describeError(error: unknown): IErrorReport {
  if (isIpcError(error)) {
    return {
      code: error.code,
      message: error.message,
      ...(error.remote ? { remote: error.remote } : {}),
      ...(error.retryAfterMs !== undefined ? { retryAfterMs: error.retryAfterMs } : {}),
    };
  }
  if (error instanceof UsageError) return { code: 'USAGE', message: error.message };
  if (error instanceof CliFailure) return { code: error.code, message: error.message };
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return { code: typeof code === 'string' ? code : 'ERROR', message: error instanceof Error ? error.message : String(error) };
}

export class Output {
  /** Colours of what goes to stdout (results). */
  public readonly out: Painter;
  /** Colours of what goes to stderr (notes, errors, the progress bar). */
  public readonly err: Painter;

  constructor(
    public readonly json: boolean,
    private readonly streams: IOutputStreams,
  ) {
    this.out = new Painter(!json && wantsColors(streams.stdout, streams.env));
    this.err = new Painter(!json && wantsColors(streams.stderr, streams.env));
  }

  /** True when stderr is a terminal and the output is for people (progress bars, hints). */
  public get interactive(): boolean {
    return !this.json && this.streams.stderr.isTTY === true;
  }

  public get stderrColumns(): number {
    return this.streams.stderr.columns || 80;
  }

  /** A result: in --json one JSON line of `doc`, otherwise the human text (or `doc` formatted). */
  public result(doc: unknown, human?: string): void {
    if (this.json) this.streams.stdout.write(`${jsonLine(doc)}\n`);
    else this.streams.stdout.write(`${human ?? formatValue(doc, this.out)}\n`);
  }

  /** A human line on stdout (nothing in --json: a command's JSON documents are printed with `result`). */
  public line(text: string): void {
    if (!this.json) this.streams.stdout.write(`${text}\n`);
  }

  /** A note for people on stderr (status, hints); silent in --json. */
  public note(text: string): void {
    if (!this.json) this.streams.stderr.write(`${this.err.paint('dim', text)}\n`);
  }

  /** Raw text on stderr (the progress bar draws itself). */
  public writeStderr(text: string): void {
    this.streams.stderr.write(text);
  }

  /** An error on stderr: `CODE: message` for people, `{"error":{...}}` in --json. */
  public error(error: unknown, prefix = 'smartipc'): void {
    const report = describeError(error);
    if (this.json) {
      this.streams.stderr.write(`${jsonLine({ error: report })}\n`);
      return;
    }
    const extra: string[] = [];
    if (report.remote && report.remote.message !== report.message) extra.push(`remote ${report.remote.name}: ${report.remote.message}`);
    else if (report.remote && report.remote.name !== 'Error') extra.push(`thrown as ${report.remote.name}${report.remote.code ? ` (${report.remote.code})` : ''}`);
    if (report.retryAfterMs !== undefined) extra.push(`retry after ${report.retryAfterMs} ms`);
    const tail = extra.length ? ` ${this.err.paint('dim', `(${extra.join('; ')})`)}` : '';
    this.streams.stderr.write(`${prefix}: ${this.err.paint('red', this.err.paint('bold', report.code))}: ${report.message}${tail}\n`);
  }

  /** Resolves once what was written to stdout and stderr has been handed to the OS. */
  public async flush(): Promise<void> {
    await Promise.all([this.streams.stdout, this.streams.stderr].map((stream) => new Promise<void>((resolve) => stream.write('', () => resolve()))));
  }
}
